use thiserror::Error;

/// What went wrong while reading a key or a KEK.
///
/// Messages are lowercase, name the thing that was wrong, and carry no key material.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The input is neither PEM, DER nor (for KEKs) a JWK.
    #[error("{what} is not in a recognised format (expected {expected})")]
    UnrecognizedFormat {
        /// What was being read ("KEK", "target key").
        what: &'static str,
        /// The formats that are accepted.
        expected: &'static str,
    },
    /// A PEM block with a label that does not belong here.
    #[error("{what} is a PEM `{label}` block, expected {expected}")]
    UnexpectedPemLabel {
        /// What was being read.
        what: &'static str,
        /// The label found.
        label: String,
        /// The labels that are accepted.
        expected: &'static str,
    },
    /// A DER or PEM structure could not be decoded.
    #[error("{what} is malformed: {reason}")]
    Malformed {
        /// What was being decoded ("PKCS#8 PrivateKeyInfo", "RSA public key", …).
        what: &'static str,
        /// The decoder's reason.
        reason: String,
    },
    /// An encrypted PKCS#8 private key was given.
    #[error("the target key is an encrypted PKCS#8 key (ENCRYPTED PRIVATE KEY)")]
    EncryptedPrivateKey,
    /// A private key was given where the KEK (a public key) is expected.
    #[error("the KEK file holds a private key, but a KEK is the vault's public key")]
    PrivateKeyAsKek,
    /// The KEK is not an RSA key.
    #[error("the KEK is not an RSA key (its algorithm is {algorithm})")]
    KekNotRsa {
        /// The algorithm found, by name or OID.
        algorithm: String,
    },
    /// The KEK's modulus has a size Azure does not use.
    #[error("the KEK is RSA-{bits}, but Azure KEKs are RSA-2048, RSA-3072 or RSA-4096")]
    UnsupportedKekSize {
        /// The modulus length in bits.
        bits: usize,
    },
    /// The KEK's public exponent is unusable.
    #[error("the KEK's public exponent is invalid (it must be odd and at least 3)")]
    InvalidKekExponent,
    /// A JWK that is not a usable RSA public key.
    #[error("the KEK JWK is invalid: {0}")]
    InvalidJwk(String),
    /// The target's RSA modulus has a size Azure does not accept.
    #[error("the target key is RSA-{bits}, but Azure accepts RSA-2048, RSA-3072 or RSA-4096")]
    UnsupportedRsaSize {
        /// The modulus length in bits.
        bits: usize,
    },
    /// The target is on a curve Azure does not accept.
    #[error("the target key is on curve {curve}, but Azure accepts P-256, P-384, P-521 and P-256K (secp256k1)")]
    UnsupportedCurve {
        /// The curve's name where known, else its OID.
        curve: String,
    },
    /// The target's algorithm is neither RSA nor EC.
    #[error("the target key's algorithm {oid} is not RSA (1.2.840.113549.1.1.1) or EC (1.2.840.10045.2.1)")]
    UnsupportedAlgorithm {
        /// The algorithm OID, dotted.
        oid: String,
    },
    /// A raw AES key of a length Azure does not accept.
    #[error("an AES key must be exactly 16, 24 or 32 bytes, this one is {len} bytes")]
    UnsupportedAesLength {
        /// The length found.
        len: usize,
    },
    /// The parts of a private key do not belong together.
    #[error("the target key is inconsistent: {0}")]
    InconsistentKey(String),
    /// The key is of another family than was asked for.
    #[error("the target key is {found}, but {expected} was asked for")]
    KindMismatch {
        /// The family that was asked for.
        expected: &'static str,
        /// What the key is.
        found: String,
    },
    /// An unknown curve name.
    #[error("unknown curve `{0}` (expected P-256, P-384, P-521 or P-256K)")]
    UnknownCurveName(String),
    /// An unknown key type name.
    #[error("unknown key type `{0}` (expected RSA, EC or oct)")]
    UnknownKty(String),
    /// A key type with a size or curve that does not describe a key byok can transfer.
    #[error("{0}")]
    KeySpec(&'static str),
}

impl Error {
    pub(crate) fn malformed(what: &'static str, reason: impl ToString) -> Self {
        Self::Malformed {
            what,
            reason: reason.to_string(),
        }
    }
}
