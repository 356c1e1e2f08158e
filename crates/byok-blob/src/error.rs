use thiserror::Error;

/// Why a `.byok` document or a key identifier was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Larger than any real transfer blob.
    #[error("the document is {len} bytes; a .byok file is at most {max} bytes")]
    TooLarge {
        /// The length found.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not JSON, or JSON of the wrong shape.
    #[error("not a valid .byok JSON document: {0}")]
    Json(String),
    /// A required field is missing.
    #[error("the field `{0}` is missing")]
    MissingField(&'static str),
    /// A field has the wrong JSON type.
    #[error("the field `{field}` must be a {expected}")]
    FieldType {
        /// The field.
        field: &'static str,
        /// The JSON type it must have.
        expected: &'static str,
    },
    /// A schema version this reader does not know.
    #[error("unsupported schema_version `{0}` (expected 1.0.0 or 1.0)")]
    SchemaVersion(String),
    /// `alg` is not `dir`.
    #[error("header.alg is `{0}`, but BYOK blobs use `dir`")]
    Alg(String),
    /// `enc` is not `CKM_RSA_AES_KEY_WRAP`.
    #[error("header.enc is `{0}`, but BYOK blobs use `CKM_RSA_AES_KEY_WRAP`")]
    Enc(String),
    /// The ciphertext is not base64 of any accepted flavour.
    #[error("the ciphertext is not base64url or base64 ({0})")]
    CiphertextEncoding(String),
    /// The ciphertext cannot hold an RSA part and a KWP part.
    #[error(
        "the ciphertext is {len} bytes, too short for an RSA part (at least 256 bytes) and a KWP part (at least 16)"
    )]
    CiphertextTooShort {
        /// The decoded length.
        len: usize,
    },
    /// No KEK size splits the ciphertext into an RSA part and a whole number of KWP semiblocks.
    #[error(
        "the ciphertext is {len} bytes, which no KEK size splits into an RSA part and a KWP part that is a multiple of 8"
    )]
    CiphertextLength {
        /// The decoded length.
        len: usize,
    },
    /// The key identifier is not a versioned Key Vault key URL.
    #[error("`{kid}` is not a versioned key identifier (https://{{host}}/keys/{{name}}/{{version}}): {reason}")]
    Kid {
        /// The identifier given.
        kid: String,
        /// What is wrong with it.
        reason: String,
    },
}
