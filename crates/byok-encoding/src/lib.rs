#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod kek;
mod kind;
mod pem;
mod target;

pub use error::Error;
pub use kek::KekPublicKey;
pub use kind::{AesSize, Curve, KeyKind, Kty, RsaSize};
pub use target::{TargetKey, TargetPublicKey};
