#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod attributes;
mod blob;
mod bundle;
mod chain;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod input;
mod roots;
mod rsa_key;
mod verify;

pub use attributes::Attributes;
pub use blob::Firmware;
pub use chain::ChainCertificate;
pub use error::{Check, Refusal};
pub use input::{Attestation, MAX_INPUT_LEN, VERSION};
pub use roots::{Root, Roots};
pub use verify::Verified;
