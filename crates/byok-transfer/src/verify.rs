//! Does the vault hold the HSM's key? One comparison, used after an import, by a batch that finds a name taken, by
//! a resume that finds a key an interrupted run imported, and by a dry run. Neither key leaves its home: RSA and EC
//! keys compare public halves; AES keys encrypt one random block on both sides.

use byok_encoding::{AesSize, KeyKind, TargetPublicKey};
use byok_keyvault::{Connection, KeyOp, KeyType, VaultKey};
use byok_pkcs11::{KeyInfo, TokenSession};

use crate::error::{Error, Kind, Result, Step};

/// How the vault's key compares with the HSM's.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verification {
    /// The same key.
    Verified {
        /// How it was compared.
        method: &'static str,
        /// What was found.
        detail: String,
    },
    /// It could not be told (the comparison needs something one side does not allow).
    NotVerifiable {
        /// Why.
        reason: String,
    },
    /// A different key: that version must not be used.
    Mismatch {
        /// How it was compared.
        method: &'static str,
        /// What differs.
        detail: String,
    },
}

/// What the vault's key must match, taken from the HSM before anything is sent.
#[derive(Clone, Debug)]
pub struct Expectation {
    kind: KeyKind,
    expected: Expected,
}

#[derive(Clone, Debug)]
enum Expected {
    Public(TargetPublicKey),
    /// A random block and the HSM's AES-ECB encryption of it (neither is secret: the key stays in both homes).
    Block {
        block: [u8; 16],
        from_hsm: [u8; 16],
        size: AesSize,
    },
    Unverifiable(String),
}

const PUBLIC: &str = "public key comparison";
const BLOCK: &str = "one random block encrypted on both sides (HSM AES-ECB, vault AES-CBC with a zero IV)";

impl Expectation {
    /// Takes what the comparison needs from the token's key. `key_ops` are the operations the vault's key will
    /// allow: an AES key can only be compared if they include `encrypt`.
    pub fn from_hsm(session: &TokenSession<'_>, key: &KeyInfo, kind: KeyKind, key_ops: &[KeyOp]) -> Result<Self> {
        let expected = match kind {
            KeyKind::Rsa(_) | KeyKind::Ec(_) => match &key.public {
                Some(p) => Expected::Public(p.clone()),
                None => Expected::Unverifiable("the token does not show the key's public half".into()),
            },
            KeyKind::Aes(_) if !key_ops.contains(&KeyOp::Encrypt) => {
                Expected::Unverifiable("the imported key does not allow `encrypt`, which the comparison needs".into())
            }
            KeyKind::Aes(size) => {
                let mut block = [0u8; 16];
                getrandom::fill(&mut block).map_err(|e| {
                    Error::new(
                        Step::Verify,
                        Kind::Internal,
                        format!("the OS random generator failed: {e}"),
                    )
                })?;
                match session
                    .encrypt_block(key, &block)
                    .map_err(|e| Error::hsm(Step::Verify, e))?
                {
                    Some(from_hsm) => Expected::Block { block, from_hsm, size },
                    None => Expected::Unverifiable(
                        "the key in the token does not allow encryption (CKA_ENCRYPT), which the comparison needs"
                            .into(),
                    ),
                }
            }
        };
        Ok(Self { kind, expected })
    }

    /// The HSM key's kind.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }
}

/// Compares the vault's key with what the HSM showed. A mismatch is a result, not an error; an error means the
/// comparison itself failed (the vault did not answer the encryption).
pub async fn verify(conn: &Connection, expected: &Expectation, vault_key: &VaultKey) -> Result<Verification> {
    let kind = expected.kind;
    if vault_key.kty != KeyType::hsm(kind.kty()) {
        return Ok(Verification::Mismatch {
            method: "key type",
            detail: format!("the vault holds a {} key, the HSM a {kind} key", vault_key.kty),
        });
    }
    match &expected.expected {
        Expected::Unverifiable(reason) => Ok(Verification::NotVerifiable { reason: reason.clone() }),
        Expected::Public(hsm_public) => Ok(compare_public(hsm_public, vault_key)),
        Expected::Block { block, from_hsm, size } => {
            if !vault_key.key_ops.contains(&KeyOp::Encrypt) {
                return Ok(Verification::NotVerifiable {
                    reason: "the vault's key does not allow `encrypt`".into(),
                });
            }
            let from_vault = conn
                .encrypt_block(vault_key.kid.name(), vault_key.kid.version(), *size, block)
                .await
                .map_err(|e| Error::vault(Step::Verify, e))?;
            Ok(if *from_hsm == from_vault {
                Verification::Verified {
                    method: BLOCK,
                    detail: "both sides encrypt a random block to the same ciphertext".into(),
                }
            } else {
                Verification::Mismatch {
                    method: BLOCK,
                    detail: "the vault's key encrypts a random block differently from the HSM's".into(),
                }
            })
        }
    }
}

fn compare_public(hsm_public: &TargetPublicKey, vault_key: &VaultKey) -> Verification {
    let Some(vault_public) = &vault_key.public else {
        return Verification::NotVerifiable {
            reason: "the vault did not return the key's public half".into(),
        };
    };
    let (h, v) = (hsm_public.fingerprint_sha256(), vault_public.fingerprint_sha256());
    if hsm_public == vault_public {
        Verification::Verified {
            method: PUBLIC,
            detail: format!("the vault's public key equals the HSM's (SHA-256 {h})"),
        }
    } else {
        Verification::Mismatch {
            method: PUBLIC,
            detail: format!("the vault's public key (SHA-256 {v}) differs from the HSM's (SHA-256 {h})"),
        }
    }
}
