#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod blob;
mod error;
mod kid;

pub use blob::{
    ALG, ByokBlob, CiphertextEncoding, ENC, MAX_DOCUMENT_LEN, RSA_PART_LENGTHS, SCHEMA_VERSION, key_hsm,
    possible_rsa_part_lengths,
};
pub use error::Error;
pub use kid::{KeyId, VaultKind};
