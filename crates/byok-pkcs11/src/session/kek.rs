//! The KEK inside the token. By default a session copy of its public key, made once per session and KEK. Some HSMs
//! wrap a key marked CKA_WRAP_WITH_TRUSTED only with a wrapping key the security officer made CKA_TRUSTED, which a
//! session copy never is: for them the operator imports the KEK once as a token object ([`TokenSession::import_kek`]),
//! the SO marks it trusted, and byok then wraps with that object — a token object with the KEK's modulus and CKA_WRAP
//! is always preferred to a session copy.

use byok_encoding::KekPublicKey;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};

use super::TokenSession;
use crate::Error;

/// The KEK object a session wraps with.
pub(crate) struct KekObject {
    modulus: Vec<u8>,
    pub(crate) handle: ObjectHandle,
    /// Made by byok for this session (destroyed with it), not a token object the operator imported.
    pub(crate) session_copy: bool,
}

/// A KEK imported into the token as a token object (serialised as `hsm import-kek --output json` shows it).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TokenKek {
    /// The SHA-256 fingerprint of the KEK's public key.
    pub kek_sha256: String,
    /// CKA_LABEL.
    pub label: String,
    /// CKA_ID, in hex.
    pub id: String,
    /// Whether this call made it (false: the token already held the KEK, which was left as it was).
    pub created: bool,
    /// CKA_TRUSTED as the token reports it (`None` when it will not say).
    pub trusted: Option<bool>,
}

impl std::fmt::Display for TokenKek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let done = if self.created { "imported" } else { "already held" };
        let next = match self.trusted {
            Some(true) => "it is trusted",
            _ => "the security officer sets CKA_TRUSTED on it next",
        };
        write!(
            f,
            "KEK {} {done} as `{}` (id {}); {next}",
            self.kek_sha256, self.label, self.id
        )
    }
}

impl TokenSession<'_> {
    /// Imports the KEK's public key as a token object with CKA_WRAP (and no other use), for HSMs that wrap only with
    /// trusted keys; the security officer sets CKA_TRUSTED on it next. A token KEK with the same modulus is reported,
    /// not duplicated.
    pub fn import_kek(&self, kek: &KekPublicKey, label: &str) -> Result<TokenKek, Error> {
        if let Some(handle) = self.token_kek(kek)? {
            return self.describe_kek(kek, handle, false);
        }
        let id = self.random_id()?;
        let handle = self.session.create_object(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::RSA),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Modulus(kek.modulus().to_vec()),
            Attribute::PublicExponent(kek.exponent().to_vec()),
            Attribute::Wrap(true),
            Attribute::Encrypt(false),
            Attribute::Verify(false),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id),
        ])?;
        self.describe_kek(kek, handle, true)
    }

    fn describe_kek(&self, key: &KekPublicKey, handle: ObjectHandle, created: bool) -> Result<TokenKek, Error> {
        let mut kek = TokenKek {
            kek_sha256: key.fingerprint_sha256(),
            label: String::new(),
            id: String::new(),
            created,
            trusted: None,
        };
        let kinds = [AttributeType::Label, AttributeType::Id];
        for a in self.session.get_attributes(handle, &kinds)? {
            match a {
                Attribute::Label(l) => kek.label = String::from_utf8_lossy(&l).into_owned(),
                Attribute::Id(id) => kek.id = hex::encode(id),
                _ => {}
            }
        }
        // Asked alone: a token that does not know CKA_TRUSTED must not hide the label and id.
        if let Ok(attributes) = self.session.get_attributes(handle, &[AttributeType::Trusted]) {
            kek.trusted = attributes.into_iter().find_map(|a| match a {
                Attribute::Trusted(t) => Some(t),
                _ => None,
            });
        }
        Ok(kek)
    }

    /// A token object holding the KEK's public key with CKA_WRAP, if the operator imported one.
    fn token_kek(&self, kek: &KekPublicKey) -> Result<Option<ObjectHandle>, Error> {
        Ok(self
            .session
            .find_objects(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(KeyType::RSA),
                Attribute::Token(true),
                Attribute::Modulus(kek.modulus().to_vec()),
                Attribute::Wrap(true),
            ])?
            .into_iter()
            .next())
    }

    /// The KEK object to wrap with: an imported token KEK (looked for when `token_kek`), else a session copy made
    /// once per session and KEK (replaced, and the old copy destroyed, when another KEK comes).
    pub(crate) fn kek_object(&self, kek: &KekPublicKey, token_kek: bool) -> Result<ObjectHandle, Error> {
        let mut cached = self.kek_object.borrow_mut();
        if let Some(k) = cached.as_ref()
            && k.modulus == kek.modulus()
        {
            return Ok(k.handle);
        }
        if let Some(old) = cached.take()
            && old.session_copy
        {
            let _ = self.session.destroy_object(old.handle);
        }
        let found = if token_kek { self.token_kek(kek)? } else { None };
        let (handle, session_copy) = match found {
            Some(handle) => (handle, false),
            None => (self.session_copy(kek)?, true),
        };
        *cached = Some(KekObject {
            modulus: kek.modulus().to_vec(),
            handle,
            session_copy,
        });
        Ok(handle)
    }

    fn session_copy(&self, kek: &KekPublicKey) -> Result<ObjectHandle, Error> {
        Ok(self.session.create_object(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::RSA),
            Attribute::Token(false),
            Attribute::Private(false),
            Attribute::Modulus(kek.modulus().to_vec()),
            Attribute::PublicExponent(kek.exponent().to_vec()),
            Attribute::Wrap(true),
            Attribute::Encrypt(true),
            Attribute::Label(b"byok-kek".to_vec()),
        ])?)
    }
}
