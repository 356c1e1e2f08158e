//! What the vault holds, as byok sees it: key types, operations, times, keys and KEKs (public material only).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use byok_blob::KeyId;
use byok_encoding::{KekPublicKey, Kty, TargetPublicKey};

use crate::Error;

/// The tag byok puts on every key it imports: a random id per transfer, also in the transfer record. After a
/// connection breaks mid-import it tells byok whether the vault carried the import out, so that nothing is
/// imported twice.
pub const TRANSFER_TAG: &str = "byok-transfer";

/// The tags byok writes on every key version it imports, besides [`TRANSFER_TAG`]: where the key came from and what
/// it is, so that an inventory and a rotation need nothing but the vault (docs/tags.md). None holds a secret.
pub mod tags {
    /// The source token's serial number (`C_GetTokenInfo`), as printable ASCII.
    pub const TOKEN: &str = "byok-token";
    /// A digest of the source key's CKA_ID (`sha256:` and 32 hex digits), or of its label when it has no id
    /// (`label-sha256:`): it tells keys apart without naming them.
    pub const KEY_ID: &str = "byok-key-id";
    /// The key's kind: `RSA-3072`, `EC-P-256`, `AES-256`.
    pub const KIND: &str = "byok-kind";
    /// An AES key's check value (the first 3 bytes of AES-ECB of a zero block, hex), as key ceremonies record it.
    pub const CHECK_VALUE: &str = "byok-kcv";
    /// The program that imported it: `byok-cli/0.1.0`.
    pub const TOOL: &str = "byok-tool";
    /// Every tag name byok writes ([`super::TRANSFER_TAG`] first); a user's tags may not use them.
    pub const ALL: [&str; 6] = [super::TRANSFER_TAG, TOKEN, KEY_ID, KIND, CHECK_VALUE, TOOL];

    /// Whether `name` is one of byok's tags.
    pub fn is_byok(name: &str) -> bool {
        ALL.contains(&name)
    }
}

/// A point in time, in whole seconds since the Unix epoch (how Key Vault keeps `nbf`, `exp`, `created`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// From Unix seconds.
    pub const fn from_unix(seconds: i64) -> Self {
        Self(seconds)
    }

    /// Unix seconds.
    pub const fn unix(self) -> i64 {
        self.0
    }

    /// Now.
    pub fn now() -> Self {
        Self(azure_core::time::OffsetDateTime::now_utc().unix_timestamp())
    }

    /// Parses RFC 3339 (`2027-01-31T00:00:00Z`), as `az keyvault key import --expires` takes it.
    pub fn parse(s: &str) -> Result<Self, Error> {
        azure_core::time::parse_rfc3339(s)
            .map(|t| Self(t.unix_timestamp()))
            .map_err(|_| Error::Request(format!("`{s}` is not an RFC 3339 time such as 2027-01-31T00:00:00Z")))
    }

    pub(crate) fn to_sdk(self) -> Option<azure_core::time::OffsetDateTime> {
        azure_core::time::OffsetDateTime::from_unix_timestamp(self.0).ok()
    }

    pub(crate) fn from_sdk(t: azure_core::time::OffsetDateTime) -> Self {
        Self(t.unix_timestamp())
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339, UTC.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_sdk() {
            Some(t) => f.write_str(&azure_core::time::to_rfc3339(&t)),
            None => write!(f, "@{}", self.0),
        }
    }
}

/// A key type as the vault names it (`kty`): the family, and whether an HSM protects the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyType {
    family: Kty,
    hsm: bool,
}

impl KeyType {
    /// The HSM-protected type of a family: what a BYOK import makes (`RSA-HSM`, `EC-HSM`, `oct-HSM`).
    pub const fn hsm(family: Kty) -> Self {
        Self { family, hsm: true }
    }

    /// The software-protected type of a family (`RSA`, `EC`, `oct`).
    pub const fn software(family: Kty) -> Self {
        Self { family, hsm: false }
    }

    /// RSA, EC or oct.
    pub const fn family(self) -> Kty {
        self.family
    }

    /// Whether an HSM protects the key.
    pub const fn is_hsm(self) -> bool {
        self.hsm
    }

    /// The name as the REST API spells it.
    pub const fn name(self) -> &'static str {
        if self.hsm {
            self.family.azure_hsm_name()
        } else {
            self.family.name()
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyType {
    type Err = Error;

    /// The REST API's names, exactly (`RSA-HSM`, `EC`, `oct-HSM`, …).
    fn from_str(s: &str) -> Result<Self, Error> {
        [Kty::Rsa, Kty::Ec, Kty::Oct]
            .into_iter()
            .flat_map(|k| [Self::hsm(k), Self::software(k)])
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                Error::Request(format!(
                    "`{s}` is not a key type (RSA, RSA-HSM, EC, EC-HSM, oct, oct-HSM)"
                ))
            })
    }
}

/// An operation a vault key allows (`key_ops`), as the REST API names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum KeyOp {
    /// `encrypt`
    Encrypt,
    /// `decrypt`
    Decrypt,
    /// `sign`
    Sign,
    /// `verify`
    Verify,
    /// `wrapKey`
    WrapKey,
    /// `unwrapKey`
    UnwrapKey,
    /// `import`: only a Key Exchange Key has it.
    Import,
    /// `export`
    Export,
}

impl KeyOp {
    /// Every operation, in the REST API's order.
    pub const ALL: [Self; 8] = [
        Self::Encrypt,
        Self::Decrypt,
        Self::Sign,
        Self::Verify,
        Self::WrapKey,
        Self::UnwrapKey,
        Self::Import,
        Self::Export,
    ];

    /// The name as the REST API spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Encrypt => "encrypt",
            Self::Decrypt => "decrypt",
            Self::Sign => "sign",
            Self::Verify => "verify",
            Self::WrapKey => "wrapKey",
            Self::UnwrapKey => "unwrapKey",
            Self::Import => "import",
            Self::Export => "export",
        }
    }

    /// The names of `ops`, in order (for messages and JSON).
    pub fn names(ops: &[Self]) -> Vec<&'static str> {
        ops.iter().map(|o| o.name()).collect()
    }
}

impl fmt::Display for KeyOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyOp {
    type Err = Error;

    /// The REST API's names, exactly.
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL.into_iter().find(|o| o.name() == s).ok_or_else(|| {
            Error::Request(format!(
                "`{s}` is not a key operation; valid: {}",
                Self::names(&Self::ALL).join(", ")
            ))
        })
    }
}

/// A key as the vault shows it (public material only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultKey {
    /// The versioned key identifier.
    pub kid: KeyId,
    /// `RSA-HSM`, `EC-HSM`, `oct-HSM`, …
    pub kty: KeyType,
    /// The key's operations.
    pub key_ops: Vec<KeyOp>,
    /// The public half of an RSA or EC key.
    pub public: Option<TargetPublicKey>,
    /// Whether the key can be used.
    pub enabled: Option<bool>,
    /// Not usable before.
    pub not_before: Option<Timestamp>,
    /// Not usable after.
    pub expires: Option<Timestamp>,
    /// When this version was made.
    pub created: Option<Timestamp>,
    /// Whether the key may be released (exported) under its release policy.
    pub exportable: Option<bool>,
    /// Key Vault's `attributes.hsmPlatform` (`"1"`, `"2"`: which HSM platform holds it); a Managed HSM sends none.
    pub hsm_platform: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// A KEK as the vault holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kek {
    /// The versioned key identifier: what a `.byok` blob names.
    pub kid: KeyId,
    /// The public key.
    pub public: KekPublicKey,
    /// `RSA-HSM`, `RSA`, …
    pub kty: KeyType,
    /// The key's operations.
    pub key_ops: Vec<KeyOp>,
    /// Key Vault's `attributes.hsmPlatform`, if the answer carried it.
    pub hsm_platform: Option<String>,
}

impl Kek {
    /// Whether this is a proper Key Exchange Key: RSA-HSM with `key_ops` exactly `["import"]`.
    pub fn is_import_only_hsm(&self) -> bool {
        self.kty == KeyType::hsm(Kty::Rsa) && self.key_ops == [KeyOp::Import]
    }
}

/// What an import did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imported {
    /// The new key version.
    pub key: VaultKey,
    /// How often the connection broke after the import was sent and byok had to look whether it happened
    /// (0 normally).
    pub ambiguous: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let t = Timestamp::parse("2027-01-31T12:00:00+01:00").expect("valid");
        assert_eq!(t.to_string(), "2027-01-31T11:00:00Z");
        assert!(matches!(Timestamp::parse("tomorrow"), Err(Error::Request(m)) if m.contains("RFC 3339")));
    }

    #[test]
    fn key_types_by_their_rest_names() {
        for name in ["RSA", "RSA-HSM", "EC", "EC-HSM", "oct", "oct-HSM"] {
            assert_eq!(name.parse::<KeyType>().expect("known").to_string(), name);
        }
        assert_eq!("EC-HSM".parse::<KeyType>().map(KeyType::family).ok(), Some(Kty::Ec));
        assert!(!"RSA".parse::<KeyType>().expect("known").is_hsm());
        for unknown in ["rsa-hsm", "OKP", "", "RSA-HSM\u{1b}[31m"] {
            assert!(unknown.parse::<KeyType>().is_err(), "{unknown:?}");
        }
    }

    #[test]
    fn operations_by_their_rest_names() {
        for op in KeyOp::ALL {
            assert_eq!(op.name().parse::<KeyOp>(), Ok(op));
        }
        let Err(Error::Request(m)) = "wrapkey".parse::<KeyOp>() else {
            panic!("case matters: the REST API spells it wrapKey");
        };
        assert!(m.contains("`wrapkey` is not a key operation; valid: encrypt,"), "{m}");
    }

    #[test]
    fn only_rsa_hsm_with_import_alone_is_a_kek() {
        let public = KekPublicKey::from_components(&[0xc5; 256], &[1, 0, 1]).expect("2048-bit modulus");
        let kid = KeyId::parse("https://contoso.vault.azure.net/keys/kek/0123456789abcdef0123456789abcdef")
            .expect("valid kid");
        let kek = |kty, key_ops| Kek {
            kid: kid.clone(),
            public: public.clone(),
            kty,
            key_ops,
            hsm_platform: None,
        };
        assert!(kek(KeyType::hsm(Kty::Rsa), vec![KeyOp::Import]).is_import_only_hsm());
        assert!(!kek(KeyType::software(Kty::Rsa), vec![KeyOp::Import]).is_import_only_hsm());
        assert!(!kek(KeyType::hsm(Kty::Rsa), vec![KeyOp::Import, KeyOp::Encrypt]).is_import_only_hsm());
    }
}
