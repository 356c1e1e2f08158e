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

/// The verdict in a few words: `verified: …`, `NOT VERIFIED: …`, `MISMATCH: …`.
impl std::fmt::Display for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Verified { detail, .. } => write!(f, "verified: {detail}"),
            Self::NotVerifiable { reason } => write!(f, "NOT VERIFIED: {reason}"),
            Self::Mismatch { detail, .. } => write!(f, "MISMATCH: {detail}"),
        }
    }
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

    /// The HSM key's public half (RSA, EC), when the token showed it.
    pub fn public_key(&self) -> Option<&TargetPublicKey> {
        match &self.expected {
            Expected::Public(p) => Some(p),
            _ => None,
        }
    }
}

/// Compares the vault's key with what the HSM showed. A mismatch is a result, not an error; an error means the
/// comparison itself failed (the vault did not answer the encryption).
pub async fn verify(conn: &Connection, expected: &Expectation, vault_key: &VaultKey) -> Result<Verification> {
    let (block, from_hsm, size) = match decide(expected, vault_key) {
        Decision::Done(verification) => return Ok(verification),
        Decision::EncryptBlock { block, from_hsm, size } => (block, from_hsm, size),
    };
    let from_vault = conn
        .encrypt_block(vault_key.kid.name(), vault_key.kid.version(), size, &block)
        .await
        .map_err(|e| Error::vault(Step::Verify, e))?;
    Ok(if from_hsm == from_vault {
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

/// What can be told without asking the vault again, or the one request that tells the rest.
#[derive(Debug)]
enum Decision {
    Done(Verification),
    EncryptBlock {
        block: [u8; 16],
        from_hsm: [u8; 16],
        size: AesSize,
    },
}

fn decide(expected: &Expectation, vault_key: &VaultKey) -> Decision {
    let kind = expected.kind;
    // An HSM key must arrive as an HSM key of its family: `RSA` (software) in place of `RSA-HSM` is a mismatch too.
    if vault_key.kty != KeyType::hsm(kind.kty()) {
        return Decision::Done(Verification::Mismatch {
            method: "key type",
            detail: format!("the vault holds a {} key, the HSM a {kind} key", vault_key.kty),
        });
    }
    match &expected.expected {
        Expected::Unverifiable(reason) => Decision::Done(Verification::NotVerifiable { reason: reason.clone() }),
        Expected::Public(hsm_public) => Decision::Done(compare_public(hsm_public, vault_key)),
        Expected::Block { .. } if !vault_key.key_ops.contains(&KeyOp::Encrypt) => {
            Decision::Done(Verification::NotVerifiable {
                reason: "the vault's key does not allow `encrypt`".into(),
            })
        }
        Expected::Block { block, from_hsm, size } => Decision::EncryptBlock {
            block: *block,
            from_hsm: *from_hsm,
            size: *size,
        },
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

#[cfg(test)]
mod tests {
    use byok_blob::KeyId;
    use byok_encoding::{Curve, Kty, RsaSize};

    use super::*;

    fn rsa(first: u8) -> TargetPublicKey {
        let mut n = vec![0xc5; 256];
        n[255] = first;
        TargetPublicKey::from_rsa_components(&n, &[1, 0, 1]).expect("a 2048-bit modulus")
    }

    fn vault_key(kty: KeyType, public: Option<TargetPublicKey>, key_ops: Vec<KeyOp>) -> VaultKey {
        VaultKey {
            kid: KeyId::parse("https://contoso.vault.azure.net/keys/k/0123456789abcdef0123456789abcdef").expect("kid"),
            kty,
            key_ops,
            public,
            enabled: Some(true),
            not_before: None,
            expires: None,
            created: None,
            exportable: None,
            hsm_platform: None,
            tags: Default::default(),
        }
    }

    fn expect(kind: KeyKind, expected: Expected) -> Expectation {
        Expectation { kind, expected }
    }

    fn done(expected: &Expectation, key: &VaultKey) -> Verification {
        match decide(expected, key) {
            Decision::Done(v) => v,
            other => panic!("expected an answer without the vault, got {other:?}"),
        }
    }

    #[test]
    fn public_halves_decide_rsa_and_ec() {
        let hsm = expect(KeyKind::Rsa(RsaSize::Rsa2048), Expected::Public(rsa(1)));
        let same = vault_key(KeyType::hsm(Kty::Rsa), Some(rsa(1)), vec![KeyOp::Sign]);
        assert!(matches!(
            done(&hsm, &same),
            Verification::Verified { method: PUBLIC, .. }
        ));
        let other = vault_key(KeyType::hsm(Kty::Rsa), Some(rsa(3)), vec![KeyOp::Sign]);
        let Verification::Mismatch { detail, .. } = done(&hsm, &other) else {
            panic!("another modulus is another key");
        };
        assert!(detail.contains(&rsa(3).fingerprint_sha256()) && detail.contains(&rsa(1).fingerprint_sha256()));
        let silent = vault_key(KeyType::hsm(Kty::Rsa), None, vec![KeyOp::Sign]);
        assert!(matches!(done(&hsm, &silent), Verification::NotVerifiable { .. }));
    }

    #[test]
    fn the_type_must_be_the_hsm_type_of_the_same_family() {
        let hsm = expect(KeyKind::Rsa(RsaSize::Rsa2048), Expected::Public(rsa(1)));
        for kty in [KeyType::software(Kty::Rsa), KeyType::hsm(Kty::Ec)] {
            let key = vault_key(kty, Some(rsa(1)), vec![KeyOp::Sign]);
            assert!(
                matches!(done(&hsm, &key), Verification::Mismatch { method: "key type", .. }),
                "{kty}"
            );
        }
        let ec = expect(
            KeyKind::Ec(Curve::P256),
            Expected::Unverifiable("no public half".into()),
        );
        let key = vault_key(KeyType::hsm(Kty::Ec), None, vec![KeyOp::Sign]);
        assert_eq!(
            done(&ec, &key),
            Verification::NotVerifiable {
                reason: "no public half".into()
            }
        );
    }

    #[test]
    fn aes_needs_encrypt_on_the_vault_side_then_one_block() {
        let size = byok_encoding::AesSize::from_bytes(32).expect("AES-256");
        let hsm = expect(
            KeyKind::Aes(size),
            Expected::Block {
                block: [7; 16],
                from_hsm: [9; 16],
                size,
            },
        );
        let no_encrypt = vault_key(KeyType::hsm(Kty::Oct), None, vec![KeyOp::WrapKey]);
        assert!(matches!(done(&hsm, &no_encrypt), Verification::NotVerifiable { .. }));
        let encrypt = vault_key(KeyType::hsm(Kty::Oct), None, vec![KeyOp::Encrypt]);
        let Decision::EncryptBlock { block, from_hsm, .. } = decide(&hsm, &encrypt) else {
            panic!("an AES key that allows encrypt is compared by one block");
        };
        assert_eq!((block, from_hsm), ([7; 16], [9; 16]));
    }
}
