//! What `getKeyAttestation` answers (or `az keyvault key get-attestation` writes): the key bundle with
//! `attributes.attestation`, or that object alone. Untrusted: bounded, strictly decoded.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use byok_encoding::{Curve, TargetPublicKey};

use crate::error::{Check, Refusal};

/// Far above a real answer (12 KB), low enough to bound a hostile one.
pub const MAX_INPUT_LEN: usize = 256 * 1024;

/// The only format version defined today.
pub const VERSION: &str = "MRVL-1";

/// A key attestation as the service sends it, decoded but not yet verified.
#[derive(Clone, Debug)]
pub struct Attestation {
    pub(crate) certificates: Vec<u8>,
    pub(crate) private: Vec<u8>,
    pub(crate) public: Option<Vec<u8>>,
    kid: Option<String>,
    key_ops: Option<Vec<String>>,
    public_key: Option<TargetPublicKey>,
}

impl Attestation {
    /// From the JSON of a key bundle, or of its `attributes.attestation` object.
    pub fn from_json(json: &[u8]) -> Result<Self, Refusal> {
        let refuse = |detail: String| Refusal::new(Check::Format, detail);
        if json.len() > MAX_INPUT_LEN {
            return Err(refuse(format!("{} bytes (at most {MAX_INPUT_LEN})", json.len())));
        }
        let doc: Value = serde_json::from_slice(json).map_err(|e| refuse(format!("not JSON: {e}")))?;
        let attestation = doc
            .pointer("/attributes/attestation")
            .or_else(|| doc.get("attestation"))
            .unwrap_or(&doc);
        let version = attestation.get("version").and_then(Value::as_str);
        if version != Some(VERSION) {
            return Err(refuse(format!(
                "attestation version {version:?}: byok reads {VERSION} (Marvell LiquidSecurity)"
            )));
        }
        let field = |name: &str| -> Result<Option<Vec<u8>>, Refusal> {
            match attestation.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => URL_SAFE_NO_PAD
                    .decode(s.trim_end_matches('='))
                    .map(Some)
                    .map_err(|e| refuse(format!("`{name}` is not base64url: {e}"))),
                Some(other) => Err(refuse(format!("`{name}` is {other}, not a string"))),
            }
        };
        let required = |name: &str| field(name)?.ok_or_else(|| refuse(format!("no `{name}`")));
        Ok(Self {
            certificates: required("certificatePemFile")?,
            private: required("privateKeyAttestation")?,
            public: field("publicKeyAttestation")?,
            kid: doc.pointer("/key/kid").and_then(Value::as_str).map(str::to_owned),
            public_key: doc.get("key").and_then(jwk_public_key),
            key_ops: doc
                .pointer("/key/key_ops")
                .and_then(Value::as_array)
                .map(|ops| ops.iter().filter_map(Value::as_str).map(str::to_owned).collect()),
        })
    }

    /// The key id the bundle names beside the attestation (unsigned: the vault's word, not the HSM's).
    pub fn bundle_kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The public key the bundle's JWK shows (unsigned: bound to the HSM's only by
    /// [`crate::Verified::check_public_key`]).
    pub fn bundle_public_key(&self) -> Option<&TargetPublicKey> {
        self.public_key.as_ref()
    }

    /// The operations the bundle lists (unsigned, as the vault keeps them).
    pub fn bundle_key_ops(&self) -> Option<&[String]> {
        self.key_ops.as_deref()
    }
}

/// An RSA (`n`, `e`) or EC (`crv`, `x`, `y`) JWK's public key; `None` for anything else.
fn jwk_public_key(jwk: &Value) -> Option<TargetPublicKey> {
    let field = |name: &str| {
        let text = jwk.get(name)?.as_str()?;
        URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
    };
    if let (Some(n), Some(e)) = (field("n"), field("e")) {
        return TargetPublicKey::from_rsa_components(&n, &e).ok();
    }
    let curve: Curve = jwk.get("crv")?.as_str()?.parse().ok()?;
    TargetPublicKey::from_ec_components(curve, &field("x")?, &field("y")?).ok()
}
