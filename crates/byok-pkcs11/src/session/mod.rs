//! A logged-in session on one token, and whether its token is still there. What it does with keys is in the
//! submodules: finding and describing them, wrapping, generating, and checking what a token holds.

mod check;
mod find;
mod generate;
mod kek;
mod key;
mod wrap;

use std::fmt;

use cryptoki::error::RvError;
use cryptoki::object::{Attribute, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::Error;
use crate::module::{Module, TokenInfo};
use crate::raw::RawMechanism;
use crate::selftest::SelfTestReport;

pub use kek::TokenKek;
pub use key::{KeyClass, KeyInfo, KeyKindInfo, KeySummary, VerifiedKey};
pub use wrap::{WrapChoice, WrapOptions, Wrapped};

/// A user PIN. Zeroized on drop, never shown by `Debug`.
pub struct Pin(Zeroizing<String>);

impl Pin {
    /// Wraps a PIN read from a file, a variable or a prompt.
    pub fn new(pin: String) -> Self {
        Self(Zeroizing::new(pin))
    }

    fn auth(&self) -> AuthPin {
        AuthPin::from(self.0.as_str().to_owned())
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

/// A session object destroyed when dropped: on success, on error and on panic.
pub(crate) struct Temporary<'s> {
    session: &'s Session,
    pub(crate) handle: ObjectHandle,
}

impl Drop for Temporary<'_> {
    fn drop(&mut self) {
        // A failure to destroy a session object leaves it until the session closes, which follows shortly.
        let _ = self.session.destroy_object(self.handle);
    }
}

impl<'s> Temporary<'s> {
    pub(crate) fn new(session: &'s Session, handle: ObjectHandle) -> Self {
        Self { session, handle }
    }
}

/// A read-write session on one token.
pub struct TokenSession<'m> {
    module: &'m Module,
    slot: Slot,
    session: Session,
    token: TokenInfo,
    self_test: Option<SelfTestReport>,
    /// The KEK's public key in the token, kept for the next wrap to the same KEK (batch wraps make it once).
    kek_object: std::cell::RefCell<Option<kek::KekObject>>,
    /// Whether `find_key` has found a key in this session: a token that then shows none has gone away.
    found_a_key: std::cell::Cell<bool>,
}

impl Drop for TokenSession<'_> {
    fn drop(&mut self) {
        if let Some(kek) = self.kek_object.get_mut().take()
            && kek.session_copy
        {
            // Closing the session destroys it anyway; this says so explicitly. An imported token KEK stays.
            let _ = self.session.destroy_object(kek.handle);
        }
    }
}

impl fmt::Debug for TokenSession<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSession")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl<'m> TokenSession<'m> {
    pub(crate) fn open(module: &'m Module, slot: Slot, token: TokenInfo, pin: Option<&Pin>) -> Result<Self, Error> {
        let session = module.ctx().open_rw_session(slot)?;
        if token.login_required {
            let pin = pin.ok_or_else(|| Error::PinRequired(token.label.clone()))?;
            match session.login(UserType::User, Some(&pin.auth())) {
                Ok(()) | Err(cryptoki::error::Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Self {
            module,
            slot,
            session,
            token,
            self_test: None,
            kek_object: std::cell::RefCell::new(None),
            found_a_key: std::cell::Cell::new(false),
        })
    }

    /// The token.
    pub fn token(&self) -> &TokenInfo {
        &self.token
    }

    /// Whether this session's token is still there: the session is open, the slot still holds the same token, and
    /// the token still shows objects if this session has found a key in it before. After a failed operation this tells a failure of that one key apart from a
    /// token that went away (pulled, powered off, the module finalized, the session closed).
    pub fn check_present(&self) -> Result<(), Error> {
        let gone = |reason: String| Error::TokenGone {
            token: self.token.label.clone(),
            reason,
        };
        self.session
            .get_session_info()
            .map_err(|e| gone(Error::from(e).to_string()))?;
        let now = self.module.token_info(self.slot).map_err(|e| gone(e.to_string()))?;
        if (&now.label, &now.serial) != (&self.token.label, &self.token.serial) {
            return Err(gone(format!(
                "the slot now holds token `{}` (serial {})",
                now.label, now.serial
            )));
        }
        // Handles only (no attributes read): this runs after every failed key, and a token may hold thousands.
        let objects = self
            .session
            .find_objects(&[Attribute::Token(true)])
            .map_err(|e| gone(Error::from(e).to_string()))?;
        if objects.is_empty() && self.found_a_key.get() {
            return Err(gone("the token no longer shows any objects".into()));
        }
        Ok(())
    }

    pub(crate) fn session(&self) -> &Session {
        &self.session
    }

    /// How many session objects (CKA_TOKEN false) this application can see, besides the cached KEK public key:
    /// 0 unless an ephemeral key or test secret leaked.
    pub fn session_object_count(&self) -> Result<usize, Error> {
        let cached = self.kek_object.borrow().as_ref().map(|k| k.handle);
        Ok(self
            .session
            .find_objects(&[Attribute::Token(false)])?
            .into_iter()
            .filter(|h| Some(*h) != cached)
            .count())
    }

    /// Whether the token offers a raw mechanism (probing ids cryptoki cannot name).
    pub(crate) fn offers(&self, mechanism: RawMechanism) -> Result<bool, Error> {
        Ok(self
            .module
            .raw
            .mechanism_flags(self.slot.id(), mechanism)
            .map_err(Error::raw)?
            .is_some())
    }
}
