#![doc = include_str!("../README.md")]
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod ckr;
mod error;
mod module;
mod p11kit;
mod raw;
mod selftest;
mod session;
mod uri;
mod vendor;

use std::fmt;

pub use ckr::{Ckr, OtherCkr};
pub use error::Error;
pub use module::{Module, ModuleConfig, ModuleInfo, TokenInfo};
pub use p11kit::{ModuleSource, P11Kit, RegisteredModule, proxy};
pub use selftest::{PathReport, SelfTestReport, Verdict};
pub use session::{
    KeyClass, KeyInfo, KeyKindInfo, KeySummary, Pin, TokenKek, TokenSession, VerifiedKey, WrapChoice, WrapOptions,
    Wrapped,
};
pub use uri::{ObjectType, Pkcs11Uri, key_uri};
pub use vendor::{Advice, Vendor};

/// The ways a token can perform CKM_RSA_AES_KEY_WRAP, in the order `auto` tries them. Vendor mechanisms are
/// tried on every token, whoever made it: a number is only a candidate until the self-test has proved its output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WrapPath {
    /// One call: CKM_RSA_AES_KEY_WRAP (0x1054).
    OneShot,
    /// Two steps inside the token with CKM_AES_KEY_WRAP_KWP (0x210B, RFC 5649), then CKM_RSA_PKCS_OAEP.
    TwoStepKwp,
    /// Two steps with Thales Luna's vendor CKM_AES_KWP (CKM_VENDOR_DEFINED + 0x171), documented as RFC 5649.
    TwoStepLunaKwp,
    /// Two steps with AWS CloudHSM's CKM_CLOUDHSM_AES_KEY_WRAP_ZERO_PAD (CKM_VENDOR_DEFINED | 0x216F), its RFC 5649
    /// (CloudHSM's own CKM_AES_KEY_WRAP_PAD is PKCS#5 padding).
    TwoStepCloudHsmKwp,
    /// Two steps with NSS's vendor CKM_NSS_AES_KEY_WRAP_PAD (0xCE534352), NSS's padded key wrap from before 0x210B.
    TwoStepNssPad,
    /// Two steps with CKM_AES_KEY_WRAP_PAD (0x210A), which is RFC 5649 on some tokens and PKCS#7 + RFC 3394 on
    /// others: only the self-test can tell.
    TwoStepPad,
}

impl WrapPath {
    /// All paths, in `auto`'s order: the standard mechanisms, the vendors' RFC 5649, then the ambiguous 0x210A.
    pub const ALL: [Self; 6] = [
        Self::OneShot,
        Self::TwoStepKwp,
        Self::TwoStepLunaKwp,
        Self::TwoStepCloudHsmKwp,
        Self::TwoStepNssPad,
        Self::TwoStepPad,
    ];

    /// The name used on the command line and in JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Self::OneShot => "rsa-aes-key-wrap",
            Self::TwoStepKwp => "two-step-kwp",
            Self::TwoStepLunaKwp => "two-step-luna-kwp",
            Self::TwoStepCloudHsmKwp => "two-step-cloudhsm-kwp",
            Self::TwoStepNssPad => "two-step-nss-pad",
            Self::TwoStepPad => "two-step-pad",
        }
    }

    /// The mechanisms, for people.
    pub const fn mechanisms(self) -> &'static str {
        match self {
            Self::OneShot => "CKM_RSA_AES_KEY_WRAP (0x1054)",
            Self::TwoStepKwp => "CKM_AES_KEY_WRAP_KWP (0x210B) + CKM_RSA_PKCS_OAEP",
            Self::TwoStepLunaKwp => "Luna CKM_AES_KWP (0x80000171) + CKM_RSA_PKCS_OAEP",
            Self::TwoStepCloudHsmKwp => "CloudHSM CKM_CLOUDHSM_AES_KEY_WRAP_ZERO_PAD (0x8000216F) + CKM_RSA_PKCS_OAEP",
            Self::TwoStepNssPad => "NSS CKM_NSS_AES_KEY_WRAP_PAD (0xCE534352) + CKM_RSA_PKCS_OAEP",
            Self::TwoStepPad => "CKM_AES_KEY_WRAP_PAD (0x210A) + CKM_RSA_PKCS_OAEP",
        }
    }

    /// Whether the path's AES mechanism is a vendor-defined number.
    pub const fn is_vendor(self) -> bool {
        matches!(
            self,
            Self::TwoStepLunaKwp | Self::TwoStepCloudHsmKwp | Self::TwoStepNssPad
        )
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
            let names: Vec<&str> = Self::ALL.iter().map(|p| p.name()).collect();
            format!(
                "unknown wrap mechanism `{s}` (expected auto or one of {})",
                names.join(", ")
            )
        })
    }
}
