//! The transfer record: what a ceremony file keeps of one transfer (no secret). Its JSON form is the schema
//! documented in docs/cli/full-transfer.md; `format_version` 1.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::attest::AttestationRecord;
use crate::error::{Error, Kind, Result, Step};
use crate::verify::Verification;

/// The record's schema version.
pub const FORMAT_VERSION: u32 = 1;

/// One transfer, from the token to the vault's key version and its verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRecord {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The program that made the transfer.
    pub tool: Tool,
    /// The random id also written to the key's `byok-transfer` tag.
    pub transfer_id: String,
    /// RFC 3339, UTC.
    pub started: String,
    /// RFC 3339, UTC; `None` until the vault side is done.
    pub finished: Option<String>,
    /// The vault.
    pub vault: VaultRecord,
    /// The KEK the blob was wrapped to.
    pub kek: KekRecord,
    /// The key in the token.
    pub source: SourceRecord,
    /// The imported key version; `None` until imported.
    pub key: Option<KeyRecord>,
    /// How the key was wrapped.
    pub wrap: WrapRecord,
    /// The `.byok` blob sent.
    pub blob: BlobRecord,
    /// The import; `None` until imported.
    pub import: Option<ImportRecord>,
    /// The comparison of the vault's key with the HSM's; `None` until verified.
    pub verification: Option<VerificationRecord>,
    /// The Managed HSM's attestations of the KEK and the key, or why there are none; `None` in records of
    /// byok versions before attestation (and of `import`, which does not check them).
    #[serde(default)]
    pub attestation: Option<AttestationRecord>,
    /// A rotation's account of the version it replaced and what became of the older ones; only in records of
    /// `rotate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<crate::rotate::RotationRecord>,
}

/// A program's name and version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tool {
    /// `byok-cli`, or the service that uses this library.
    pub name: String,
    /// Its version.
    pub version: String,
}

impl Tool {
    /// This library, when the caller does not name itself.
    pub fn library() -> Self {
        Self {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// The vault a key went to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultRecord {
    /// Its URL.
    pub url: String,
    /// `Key Vault`, `Managed HSM` or `other (not an Azure host name)`.
    pub kind: String,
}

/// The Key Exchange Key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KekRecord {
    /// The KEK version the blob names.
    pub kid: String,
    /// Whether this transfer created it.
    pub created_by_this_transfer: bool,
    /// Its modulus bits.
    pub size_bits: usize,
    /// SHA-256 of its SubjectPublicKeyInfo DER, hex.
    pub fingerprint_sha256: String,
}

/// The key in the token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// The token, as `C_GetTokenInfo` reports it.
    pub token: TokenRecord,
    /// RFC 7512 URI of the key.
    pub key_uri: String,
    /// CKA_LABEL.
    pub key_label: String,
    /// CKA_ID, hex.
    pub key_id: String,
    /// AES: the key check value (hex), binding the record to the key; `None` for RSA and EC.
    pub key_check_value: Option<String>,
}

/// A token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// `label`.
    pub label: String,
    /// `manufacturerID`.
    pub manufacturer: String,
    /// `model`.
    pub model: String,
    /// `serialNumber`.
    pub serial: String,
    /// Firmware version.
    pub firmware: String,
}

/// The imported key version, as the vault returned it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The key's name.
    pub name: String,
    /// The versioned key identifier.
    pub kid: String,
    /// The version.
    pub version: String,
    /// `RSA-HSM`, `EC-HSM`, `oct-HSM`.
    pub kty: String,
    /// `RSA-3072`, `EC P-256`, `AES-256`.
    pub kind: String,
    /// The curve, for EC.
    pub crv: Option<String>,
    /// Its operations.
    pub key_ops: Vec<String>,
    /// Whether it is enabled.
    pub enabled: Option<bool>,
    /// Not usable before (RFC 3339).
    pub not_before: Option<String>,
    /// Not usable after (RFC 3339).
    pub expires: Option<String>,
    /// Its tags.
    pub tags: std::collections::BTreeMap<String, String>,
    /// SHA-256 of the vault's public key (RSA, EC).
    pub public_key_sha256: Option<String>,
}

/// How the key was wrapped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrapRecord {
    /// The wrap path's name.
    pub path: String,
    /// Its PKCS#11 mechanisms.
    pub mechanisms: String,
    /// False only when a path the self-test failed was allowed.
    pub conformant: bool,
    /// The self-test's verdict for that path.
    pub self_test: SelfTestRecord,
}

/// The wrap self-test's verdict on the path used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfTestRecord {
    /// `conformant`, `not conformant`, `non-conformant (overridden)` or `not available`.
    pub path_verdict: String,
    /// The verdict in words.
    pub detail: String,
}

/// The blob sent; all `None` in a record a resumed batch finished (that run did not see the blob sent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRecord {
    /// SHA-256 of the `.byok` bytes, hex.
    pub sha256: Option<String>,
    /// Their length.
    pub bytes: Option<usize>,
    /// Where the blob was kept.
    pub kept_as: Option<PathBuf>,
}

/// The import.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRecord {
    /// How often the answer was lost and byok looked before resending (0 normally).
    pub ambiguous_sends: u32,
    /// True when a resumed batch found the key imported by an interrupted run and verified it then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_by_resume: Option<bool>,
}

/// The verification's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationRecord {
    /// `verified`, `not-verifiable` or `mismatch`.
    pub result: String,
    /// How it was compared; `None` when it could not be.
    pub method: Option<String>,
    /// What was found.
    pub detail: String,
}

impl From<&Verification> for VerificationRecord {
    fn from(v: &Verification) -> Self {
        let (result, method, detail) = match v {
            Verification::Verified { method, detail } => ("verified", Some(*method), detail),
            Verification::NotVerifiable { reason } => ("not-verifiable", None, reason),
            Verification::Mismatch { method, detail } => ("mismatch", Some(*method), detail),
        };
        Self {
            result: result.into(),
            method: method.map(str::to_owned),
            detail: detail.clone(),
        }
    }
}

impl TransferRecord {
    /// The imported key's identifier, once there is one.
    pub fn kid(&self) -> Option<&str> {
        self.key.as_ref().map(|k| k.kid.as_str())
    }

    /// Pretty JSON and a newline, as a record file holds it.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        let mut text = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::new(Step::Record, Kind::Internal, format!("cannot encode the record: {e}")))?;
        text.push(b'\n');
        Ok(text)
    }

    /// Writes the record atomically to `file`, never over an existing one unless `force`.
    pub fn write(&self, file: &Path, force: bool) -> Result<()> {
        crate::files::write_atomic(file, &self.to_json()?, force).map_err(|e| e.at(Step::Record))
    }
}
