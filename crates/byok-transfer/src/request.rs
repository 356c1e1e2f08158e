//! The properties an imported key version gets, and the one place an import request is built from them.

use std::collections::BTreeMap;

use byok_encoding::{Curve, Kty};
use byok_keyvault::{ImportRequest, KeyOp, Timestamp, Vault};

use crate::error::{Error, Kind, Result, Step};

/// What the new key version gets: operations, tags, attributes, release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyProperties {
    /// The operations it allows; `None`: all its type supports ([`ImportRequest::default_ops`]).
    pub ops: Option<Vec<KeyOp>>,
    /// Tags (byok adds its `byok-transfer` tag).
    pub tags: BTreeMap<String, String>,
    /// Whether it is enabled.
    pub enabled: bool,
    /// Not usable before.
    pub not_before: Option<Timestamp>,
    /// Not usable after.
    pub expires: Option<Timestamp>,
    /// Exportable under `release_policy` (Managed HSM, Premium vaults).
    pub exportable: bool,
    /// The release policy (JSON), with `exportable`.
    pub release_policy: Option<Vec<u8>>,
}

impl Default for KeyProperties {
    fn default() -> Self {
        Self {
            ops: None,
            tags: BTreeMap::new(),
            enabled: true,
            not_before: None,
            expires: None,
            exportable: false,
            release_policy: None,
        }
    }
}

impl KeyProperties {
    /// The import request for key `name` of type `kty` (a blob is added by the wrap), with a fresh transfer id,
    /// checked against what `vault` accepts.
    pub fn request(&self, vault: &Vault, name: &str, kty: Kty, curve: Option<Curve>) -> Result<ImportRequest> {
        let request = ImportRequest {
            name: name.to_owned(),
            blob_bytes: Vec::new(),
            kty,
            curve,
            key_ops: self.ops.clone().unwrap_or_else(|| ImportRequest::default_ops(kty)),
            enabled: self.enabled,
            not_before: self.not_before,
            expires: self.expires,
            tags: self.tags.clone(),
            exportable: self.exportable,
            release_policy: self.release_policy.clone(),
            transfer_id: transfer_id()?,
            provenance: BTreeMap::new(),
        };
        request.validate(vault).map_err(|e| Error::vault(Step::Preflight, e))?;
        Ok(request)
    }
}

/// A random 128-bit id, hex: names one transfer in the vault's tag, the record and the batch state file.
pub fn transfer_id() -> Result<String> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| {
        Error::new(
            Step::Preflight,
            Kind::Internal,
            format!("the OS random generator failed: {e}"),
        )
    })?;
    Ok(hex::encode(id))
}
