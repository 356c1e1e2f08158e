//! What byok knows of a key in a token: its class, kind, identity and public half.

use std::fmt;

use byok_encoding::{KeyKind, TargetPublicKey};
use cryptoki::object::ObjectHandle;

/// A private or secret key object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyClass {
    /// CKO_PRIVATE_KEY.
    Private,
    /// CKO_SECRET_KEY.
    Secret,
}

impl KeyClass {
    /// `private` or `secret-key`, as RFC 7512's `type=` names the class.
    pub fn name(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::Secret => "secret-key",
        }
    }
}

/// What a key is, as far as BYOK is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyKindInfo {
    /// A kind Azure accepts.
    Supported(KeyKind),
    /// Something else, described (e.g. "RSA-1024", "EC brainpoolP256r1", "DES3").
    Unsupported(String),
}

impl fmt::Display for KeyKindInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Supported(k) => k.fmt(f),
            Self::Unsupported(s) => f.write_str(s),
        }
    }
}

/// A key in the token, with what byok needs to know about it.
#[derive(Clone, Debug)]
pub struct KeyInfo {
    pub(super) handle: ObjectHandle,
    /// CKA_LABEL.
    pub label: String,
    /// CKA_ID.
    pub id: Vec<u8>,
    /// Private or secret.
    pub class: KeyClass,
    /// Its kind.
    pub kind: KeyKindInfo,
    /// CKA_EXTRACTABLE: it can leave the token wrapped.
    pub extractable: bool,
    /// CKA_SENSITIVE.
    pub sensitive: bool,
    /// The public half (RSA from the private object; EC from the public object with the same CKA_ID).
    pub public: Option<TargetPublicKey>,
}

/// A key as `hsm list` and `hsm generate` show it in JSON: nothing secret, the public half by its fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KeySummary {
    /// The AES key check value (hex), for secret keys whose token computes one.
    pub kcv: Option<String>,
    /// CKA_LABEL.
    pub label: String,
    /// CKA_ID, in hex.
    pub id: String,
    /// `private` or `secret`.
    pub class: &'static str,
    /// Its kind, e.g. `RSA-3072`.
    pub kind: String,
    /// Whether Azure accepts the kind.
    pub supported: bool,
    /// CKA_EXTRACTABLE.
    pub extractable: bool,
    /// CKA_SENSITIVE.
    pub sensitive: bool,
    /// The SHA-256 fingerprint of the public half.
    pub public_key_sha256: Option<String>,
}

impl KeyInfo {
    /// What `hsm list` shows of the key, with its check value when one was computed.
    pub fn summary(&self, kcv: Option<[u8; 3]>) -> KeySummary {
        KeySummary {
            kcv: kcv.map(hex::encode),
            label: self.label.clone(),
            id: hex::encode(&self.id),
            class: self.class.name(),
            kind: self.kind.to_string(),
            supported: matches!(self.kind, KeyKindInfo::Supported(_)),
            extractable: self.extractable,
            sensitive: self.sensitive,
            public_key_sha256: self.public.as_ref().map(TargetPublicKey::fingerprint_sha256),
        }
    }

    /// `label (id 0a0b, RSA-2048)` for messages.
    pub fn describe(&self) -> String {
        let id = hex::encode(&self.id);
        format!(
            "`{}` (id {}, {})",
            self.label,
            if id.is_empty() { "none".into() } else { id },
            self.kind
        )
    }
}

/// What a token found inside a ciphertext it opened (see [`TokenSession::verify_ciphertext`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedKey {
    /// The key's kind as the token reads it.
    pub kind: KeyKindInfo,
    /// RSA: the public half.
    pub public: Option<TargetPublicKey>,
    /// AES: the key check value.
    pub kcv: Option<[u8; 3]>,
}
