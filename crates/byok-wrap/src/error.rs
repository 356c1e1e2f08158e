use thiserror::Error;

/// What went wrong while wrapping or unwrapping. Messages carry no key material.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Rng,
    /// The KEK could not be used for RSA-OAEP.
    #[error("the KEK cannot be used for RSA-OAEP encryption")]
    UnusableKek,
    /// RSA-OAEP encryption failed.
    #[error("RSA-OAEP encryption of the ephemeral AES key failed")]
    OaepEncrypt,
    /// RSA-OAEP decryption failed: the blob was made for another KEK, or its RSA part was altered.
    #[error("RSA-OAEP decryption failed: the blob was made for another KEK, or its RSA part was altered")]
    OaepDecrypt,
    /// The RSA part decrypted to something that is not an AES key.
    #[error("the RSA part holds {len} bytes, not an AES-128/192/256 key")]
    AesKeyLength {
        /// The length found.
        len: usize,
    },
    /// The plaintext to wrap is empty or too long for key wrap with padding.
    #[error("the key to wrap is {len} bytes; AES key wrap with padding takes 1 to {max} bytes")]
    PlaintextLength {
        /// The length given.
        len: usize,
        /// The most AES-KWP takes here.
        max: usize,
    },
    /// The ciphertext cannot hold an RSA part of the KEK's size and a KWP part.
    #[error(
        "the ciphertext is {len} bytes, too short for a {rsa_len}-byte RSA part and a KWP part of at least 16 bytes"
    )]
    CiphertextTooShort {
        /// The ciphertext length.
        len: usize,
        /// The RSA part's length under this KEK.
        rsa_len: usize,
    },
    /// The KWP part's length is not a whole number of 8-byte semiblocks.
    #[error("the KWP part is {len} bytes, not a multiple of 8")]
    KwpLength {
        /// The KWP part's length.
        len: usize,
    },
    /// The AES key wrap integrity check failed.
    #[error("AES key wrap integrity check failed: wrong AES key, or the KWP part was altered")]
    KwpIntegrity,
    /// An AES key of a length other than 16, 24 or 32 bytes was given to key wrap.
    #[error("an AES key wrap key must be 16, 24 or 32 bytes, not {len}")]
    KwpKeyLength {
        /// The length given.
        len: usize,
    },
    /// A KEK private key that cannot be used.
    #[error("the KEK private key is unusable: {0}")]
    KekPrivateKey(String),
}
