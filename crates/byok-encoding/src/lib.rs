#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod der;
mod error;
mod kek;
mod kind;
mod pem;
mod public;
mod target;

pub use error::Error;
pub use kek::KekPublicKey;
pub use kind::{AesSize, Curve, KeyKind, Kty, RsaSize};
pub use public::TargetPublicKey;
pub use target::TargetKey;
