#![doc = include_str!("../README.md")]
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod ckr;
mod error;
mod module;
mod raw;
mod selftest;
mod session;
mod uri;

use std::fmt;

pub use ckr::{Ckr, OtherCkr};
pub use error::Error;
pub use module::{Module, ModuleConfig, ModuleInfo, TokenInfo};
pub use selftest::{PathReport, SelfTestReport, Verdict};
pub use session::{KeyClass, KeyInfo, KeyKindInfo, Pin, TokenSession, VerifiedKey, WrapChoice, WrapOptions, Wrapped};
pub use uri::{ObjectType, Pkcs11Uri, key_uri};

/// The ways a token can perform CKM_RSA_AES_KEY_WRAP, in the order `auto` tries them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WrapPath {
    /// One call: CKM_RSA_AES_KEY_WRAP (0x1054).
    OneShot,
    /// Two steps inside the token with CKM_AES_KEY_WRAP_KWP (0x210B, RFC 5649), then CKM_RSA_PKCS_OAEP.
    TwoStepKwp,
    /// Two steps with CKM_AES_KEY_WRAP_PAD (0x210A), which is RFC 5649 on some tokens and PKCS#7 + RFC 3394 on
    /// others: only the self-test can tell.
    TwoStepPad,
}

impl WrapPath {
    /// All paths, in `auto`'s order.
    pub const ALL: [Self; 3] = [Self::OneShot, Self::TwoStepKwp, Self::TwoStepPad];

    /// The name used on the command line and in JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Self::OneShot => "rsa-aes-key-wrap",
            Self::TwoStepKwp => "two-step-kwp",
            Self::TwoStepPad => "two-step-pad",
        }
    }

    /// The mechanisms, for people.
    pub const fn mechanisms(self) -> &'static str {
        match self {
            Self::OneShot => "CKM_RSA_AES_KEY_WRAP (0x1054)",
            Self::TwoStepKwp => "CKM_AES_KEY_WRAP_KWP (0x210B) + CKM_RSA_PKCS_OAEP",
            Self::TwoStepPad => "CKM_AES_KEY_WRAP_PAD (0x210A) + CKM_RSA_PKCS_OAEP",
        }
    }
}

impl fmt::Display for WrapPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.mechanisms())
    }
}

impl std::str::FromStr for WrapPath {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| {
            format!("unknown wrap mechanism `{s}` (expected auto, rsa-aes-key-wrap, two-step-kwp or two-step-pad)")
        })
    }
}
