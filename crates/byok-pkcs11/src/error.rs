use std::path::PathBuf;

use thiserror::Error;

use crate::vendor::{Advice, Vendor};
use crate::{Ckr, WrapPath};

/// What went wrong with the HSM. PKCS#11 failures name the function and its CKR code.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The module could not be loaded.
    #[error("cannot load the PKCS#11 module {path}: {reason}")]
    ModuleLoad {
        /// The path given.
        path: PathBuf,
        /// The loader's reason.
        reason: String,
    },
    /// No module was named.
    #[error("no PKCS#11 module given{}", if registered.is_empty() { String::new() } else { format!(" (registered with p11-kit: {registered})") })]
    NoModule {
        /// The modules registered with p11-kit that byok could load, by name.
        registered: String,
    },
    /// A `module-name=` that names no module p11-kit would load here.
    #[error("module-name={name}: {reason}")]
    ModuleName {
        /// The name asked for.
        name: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// No module was named and several registered with p11-kit offer the token.
    #[error("the token is offered by several modules registered with p11-kit ({0}); choose one with ?module-name=")]
    AmbiguousModule(String),
    /// A PKCS#11 function failed.
    #[error("{function} failed: {code}")]
    Pkcs11 {
        /// `C_Login`, `C_WrapKey`, …
        function: String,
        /// What it returned.
        code: Ckr,
    },
    /// A PKCS#11 function refused, with what that means on the vendor's HSM and what the operator does.
    #[error("{function} failed: {code}: {}", advice.meaning)]
    Refused {
        /// `C_WrapKey`, …
        function: String,
        /// What it returned.
        code: Ckr,
        /// Whose HSM said it.
        vendor: Vendor,
        /// What it means there, and the fix.
        advice: Box<Advice>,
    },
    /// The PKCS#11 binding failed without a return value from the module (a missing function, a bad argument).
    #[error("cryptoki failed: {0}")]
    Binding(String),
    /// A `pkcs11:` URI that is not valid.
    #[error("invalid pkcs11 URI: {0}")]
    Uri(String),
    /// No token matches.
    #[error("no token matches {selector} (tokens present: {available})")]
    NoToken {
        /// What was asked for.
        selector: String,
        /// The tokens there are.
        available: String,
    },
    /// More than one token matches.
    #[error("{count} tokens match {selector}; name one by token= or serial=")]
    AmbiguousToken {
        /// What was asked for.
        selector: String,
        /// How many match.
        count: usize,
    },
    /// The token has not been initialized.
    #[error("token `{0}` is not initialized")]
    TokenNotInitialized(String),
    /// The token needs a PIN and none was given.
    #[error("token `{0}` needs a user PIN")]
    PinRequired(String),
    /// The token went away during the session.
    #[error("token `{token}` is no longer available: {reason}")]
    TokenGone {
        /// The token's label.
        token: String,
        /// What showed it.
        reason: String,
    },
    /// No key matches.
    #[error("no key matches {0}")]
    NoKey(String),
    /// More than one key matches.
    #[error("{count} keys match {selector}: {candidates}")]
    AmbiguousKey {
        /// What was asked for.
        selector: String,
        /// How many match.
        count: usize,
        /// A description of each.
        candidates: String,
    },
    /// The key cannot leave the token, even wrapped.
    #[error("key {0} is not extractable (CKA_EXTRACTABLE is false)")]
    NotExtractable(String),
    /// The key is of a kind Azure does not accept.
    #[error("key {key} is {what}, which Azure does not accept")]
    UnsupportedKey {
        /// The key.
        key: String,
        /// What it is.
        what: String,
    },
    /// The key's public half cannot be read.
    #[error("the public half of key {0} cannot be read: {1}")]
    NoPublicKey(String, String),
    /// The forced wrap path is not offered by the token.
    #[error("the token does not offer {0}")]
    PathUnsupported(WrapPath),
    /// No wrap path produced what Azure expects.
    #[error("no wrap path of this token produces what Azure expects for this key:\n{0}")]
    Nonconformant(String),
    /// A path is usable only for 8-aligned plaintexts and the target's length is not known to be aligned.
    #[error("{path} is unsafe for this key: {reason}")]
    UnsafeForKey {
        /// The path.
        path: WrapPath,
        /// Why.
        reason: String,
    },
    /// The token returned a malformed result.
    #[error("the token's {what} is malformed: {reason}")]
    BadOutput {
        /// What it returned.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An encoding problem with a key's attributes.
    #[error("{0}")]
    Encoding(String),
}

impl Error {
    pub(crate) fn raw(e: crate::raw::RawError) -> Self {
        Self::Pkcs11 {
            function: e.function.to_owned(),
            code: Ckr::from_raw(e.rv),
        }
    }

    /// The module's return value, when this is a PKCS#11 failure.
    pub fn ckr(&self) -> Option<Ckr> {
        match self {
            Self::Pkcs11 { code, .. } | Self::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// What the operator does about it, when byok knows for the vendor's HSM.
    pub fn fix(&self) -> Option<&str> {
        match self {
            Self::Refused { advice, .. } => Some(&advice.fix),
            _ => None,
        }
    }
}

impl From<cryptoki::error::Error> for Error {
    fn from(e: cryptoki::error::Error) -> Self {
        match e {
            cryptoki::error::Error::Pkcs11(rv, function) => Self::Pkcs11 {
                function: format!("C_{function:?}"),
                code: Ckr::from_rv(rv),
            },
            other => Self::Binding(other.to_string()),
        }
    }
}
