//! A logged-in session on one token: finding, describing, generating and wrapping keys.

use std::fmt;

use byok_encoding::{AesSize, Curve, KekPublicKey, KeyKind, RsaSize, TargetPublicKey};
use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::module::{Module, TokenInfo};
use crate::raw::RawMechanism;
use crate::selftest::{self, SelfTestReport, Verdict};
use crate::{Error, ObjectType, Pkcs11Uri, WrapPath};

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

/// A private or secret key object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyClass {
    /// CKO_PRIVATE_KEY.
    Private,
    /// CKO_SECRET_KEY.
    Secret,
}

impl KeyClass {
    /// `private` or `secret-key`, as RFC 7512's `type=` names the class.
    pub fn name(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::Secret => "secret-key",
        }
    }
}

/// What a key is, as far as BYOK is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyKindInfo {
    /// A kind Azure accepts.
    Supported(KeyKind),
    /// Something else, described (e.g. "RSA-1024", "EC brainpoolP256r1", "DES3").
    Unsupported(String),
}

impl fmt::Display for KeyKindInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Supported(k) => k.fmt(f),
            Self::Unsupported(s) => f.write_str(s),
        }
    }
}

/// A key in the token, with what byok needs to know about it.
#[derive(Clone, Debug)]
pub struct KeyInfo {
    handle: ObjectHandle,
    /// CKA_LABEL.
    pub label: String,
    /// CKA_ID.
    pub id: Vec<u8>,
    /// Private or secret.
    pub class: KeyClass,
    /// Its kind.
    pub kind: KeyKindInfo,
    /// CKA_EXTRACTABLE: it can leave the token wrapped.
    pub extractable: bool,
    /// CKA_SENSITIVE.
    pub sensitive: bool,
    /// The public half (RSA from the private object; EC from the public object with the same CKA_ID).
    pub public: Option<TargetPublicKey>,
}

impl KeyInfo {
    /// `label (id 0a0b, RSA-2048)` for messages.
    pub fn describe(&self) -> String {
        let id: String = self.id.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "`{}` (id {}, {})",
            self.label,
            if id.is_empty() { "none".into() } else { id },
            self.kind
        )
    }
}

/// What a token found inside a ciphertext it opened (see [`TokenSession::verify_ciphertext`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedKey {
    /// The key's kind as the token reads it.
    pub kind: KeyKindInfo,
    /// RSA: the public half.
    pub public: Option<TargetPublicKey>,
    /// AES: the key check value.
    pub kcv: Option<[u8; 3]>,
}

/// Which wrap path to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WrapChoice {
    /// The first path that passes the self-test: one-shot, then 0x210B, then 0x210A.
    #[default]
    Auto,
    /// This path.
    Path(WrapPath),
}

/// How to wrap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WrapOptions {
    /// The path.
    pub choice: WrapChoice,
    /// Proceed with a path the self-test found non-conformant (the vault may reject the blob).
    pub allow_nonconformant: bool,
}

/// The result of wrapping a key in the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wrapped {
    /// `rsa_part || kwp_part`.
    pub ciphertext: Vec<u8>,
    /// The path used.
    pub path: WrapPath,
    /// Why the path is not known to be conformant for this key, when `allow_nonconformant` let it through.
    pub nonconformant: Option<String>,
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
    /// The KEK's public key as a session object, kept for the next wrap to the same KEK (batch wraps make it once).
    kek_object: std::cell::RefCell<Option<(Vec<u8>, ObjectHandle)>>,
    /// Whether `find_key` has found a key in this session: a token that then shows none has gone away.
    found_a_key: std::cell::Cell<bool>,
}

impl Drop for TokenSession<'_> {
    fn drop(&mut self) {
        if let Some((_, handle)) = self.kek_object.get_mut().take() {
            // Closing the session destroys it anyway; this says so explicitly.
            let _ = self.session.destroy_object(handle);
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

    /// Every private and secret key in the token.
    pub fn list_keys(&self) -> Result<Vec<KeyInfo>, Error> {
        let mut keys = Vec::new();
        for class in [ObjectClass::PRIVATE_KEY, ObjectClass::SECRET_KEY] {
            for h in self
                .session
                .find_objects(&[Attribute::Class(class), Attribute::Token(true)])?
            {
                keys.push(self.describe(h)?);
            }
        }
        keys.sort_by(|a, b| (&a.label, &a.id).cmp(&(&b.label, &b.id)));
        Ok(keys)
    }

    /// The one key the URI names by `object=`, `id=` and `type=`; an error lists the candidates when several match.
    pub fn find_key(&self, uri: &Pkcs11Uri) -> Result<KeyInfo, Error> {
        if uri.object.is_none() && uri.id.is_none() {
            return Err(Error::Uri("name the key with object= (its label) or id=".into()));
        }
        let classes: &[ObjectClass] = match uri.object_type {
            Some(ObjectType::Private) => &[ObjectClass::PRIVATE_KEY],
            Some(ObjectType::SecretKey) => &[ObjectClass::SECRET_KEY],
            Some(ObjectType::Public) => {
                return Err(Error::Uri(
                    "type=public names a public key; BYOK moves private or secret keys".into(),
                ));
            }
            None => &[ObjectClass::PRIVATE_KEY, ObjectClass::SECRET_KEY],
        };
        let mut found = Vec::new();
        for class in classes {
            let mut template = vec![Attribute::Class(*class)];
            if let Some(label) = &uri.object {
                template.push(Attribute::Label(label.as_bytes().to_vec()));
            }
            if let Some(id) = &uri.id {
                template.push(Attribute::Id(id.clone()));
            }
            found.extend(self.session.find_objects(&template)?);
        }
        let selector = uri.to_string();
        match found.len() {
            0 => Err(Error::NoKey(selector)),
            1 => {
                self.found_a_key.set(true);
                self.describe(found[0])
            }
            count => {
                let mut keys = found
                    .iter()
                    .map(|h| self.describe(*h))
                    .collect::<Result<Vec<_>, Error>>()?;
                keys.sort_by(|a, b| (&a.label, &a.id).cmp(&(&b.label, &b.id)));
                let candidates: Vec<String> = keys.iter().map(KeyInfo::describe).collect();
                Err(Error::AmbiguousKey {
                    selector,
                    count,
                    candidates: candidates.join(", "),
                })
            }
        }
    }

    fn describe(&self, handle: ObjectHandle) -> Result<KeyInfo, Error> {
        let attrs = self.session.get_attributes(
            handle,
            &[
                AttributeType::Class,
                AttributeType::KeyType,
                AttributeType::Label,
                AttributeType::Id,
                AttributeType::Extractable,
                AttributeType::Sensitive,
            ],
        )?;
        let (mut class, mut key_type, mut label, mut id, mut extractable, mut sensitive) =
            (None, None, String::new(), Vec::new(), false, false);
        for a in attrs {
            match a {
                Attribute::Class(c) => class = Some(c),
                Attribute::KeyType(k) => key_type = Some(k),
                Attribute::Label(l) => label = String::from_utf8_lossy(&l).into_owned(),
                Attribute::Id(i) => id = i,
                Attribute::Extractable(e) => extractable = e,
                Attribute::Sensitive(s) => sensitive = s,
                _ => {}
            }
        }
        let class = match class {
            Some(ObjectClass::PRIVATE_KEY) => KeyClass::Private,
            _ => KeyClass::Secret,
        };
        let key_type = key_type.unwrap_or(KeyType::GENERIC_SECRET);
        let (kind, public) = self.kind_of(handle, key_type, &id)?;
        Ok(KeyInfo {
            handle,
            label,
            id,
            class,
            kind,
            extractable,
            sensitive,
            public,
        })
    }

    fn kind_of(
        &self,
        handle: ObjectHandle,
        key_type: KeyType,
        id: &[u8],
    ) -> Result<(KeyKindInfo, Option<TargetPublicKey>), Error> {
        if key_type == KeyType::RSA {
            let attrs = self
                .session
                .get_attributes(handle, &[AttributeType::Modulus, AttributeType::PublicExponent])?;
            let (mut n, mut e) = (Vec::new(), Vec::new());
            for a in attrs {
                match a {
                    Attribute::Modulus(m) => n = m,
                    Attribute::PublicExponent(x) => e = x,
                    _ => {}
                }
            }
            let n = strip(&n).to_vec();
            let bits = n.first().map_or(0, |t| n.len() * 8 - t.leading_zeros() as usize);
            let public = |n: &[u8], e: &[u8]| {
                TargetPublicKey::from_rsa_components(n, e).map_err(|err| Error::Encoding(err.to_string()))
            };
            return Ok(match RsaSize::from_bits(bits) {
                Some(size) => (
                    KeyKindInfo::Supported(KeyKind::Rsa(size)),
                    (!e.is_empty()).then(|| public(&n, &e)).transpose()?,
                ),
                None => (KeyKindInfo::Unsupported(format!("RSA-{bits}")), None),
            });
        }
        if key_type == KeyType::EC {
            let attrs = self.session.get_attributes(handle, &[AttributeType::EcParams])?;
            let params = attrs.into_iter().find_map(|a| match a {
                Attribute::EcParams(p) => Some(p),
                _ => None,
            });
            let Some(params) = params else {
                return Ok((KeyKindInfo::Unsupported("EC without CKA_EC_PARAMS".into()), None));
            };
            return Ok(match Curve::from_ec_params_der(&params) {
                Ok(curve) => (KeyKindInfo::Supported(KeyKind::Ec(curve)), self.ec_point(curve, id)?),
                Err(byok_encoding::Error::UnsupportedCurve { curve }) => {
                    (KeyKindInfo::Unsupported(format!("EC {curve}")), None)
                }
                Err(e) => (
                    KeyKindInfo::Unsupported(format!("EC with unusable parameters ({e})")),
                    None,
                ),
            });
        }
        if key_type == KeyType::AES {
            let attrs = self.session.get_attributes(handle, &[AttributeType::ValueLen])?;
            let len = attrs.into_iter().find_map(|a| match a {
                Attribute::ValueLen(l) => Some(u64::from(l) as usize).filter(|&n| n > 0),
                _ => None,
            });
            return Ok(match len.and_then(AesSize::from_bytes) {
                Some(size) => (KeyKindInfo::Supported(KeyKind::Aes(size)), None),
                None => (
                    KeyKindInfo::Unsupported(format!("AES of {} bytes", len.unwrap_or(0))),
                    None,
                ),
            });
        }
        Ok((KeyKindInfo::Unsupported(key_type_name(key_type)), None))
    }

    /// The EC point of the public key object with the same CKA_ID (private objects do not carry CKA_EC_POINT).
    fn ec_point(&self, curve: Curve, id: &[u8]) -> Result<Option<TargetPublicKey>, Error> {
        let found = self.session.find_objects(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::EC),
            Attribute::Id(id.to_vec()),
        ])?;
        let Some(public) = found.first() else {
            return Ok(None);
        };
        let attrs = self.session.get_attributes(*public, &[AttributeType::EcPoint])?;
        let Some(raw) = attrs.into_iter().find_map(|a| match a {
            Attribute::EcPoint(p) => Some(p),
            _ => None,
        }) else {
            return Ok(None);
        };
        let point_len = 1 + 2 * curve.scalar_len();
        // PKCS#11 says CKA_EC_POINT is a DER OCTET STRING; some tokens return the bare point.
        let point = if raw.len() == point_len && raw[0] == 0x04 {
            raw
        } else {
            use der::Decode as _;
            der::asn1::OctetString::from_der(&raw)
                .map(|o| o.into_bytes().into_vec())
                .map_err(|e| Error::Encoding(format!("CKA_EC_POINT is neither a point nor a DER OCTET STRING ({e})")))?
        };
        if point.len() != point_len || point[0] != 0x04 {
            return Err(Error::Encoding(format!(
                "CKA_EC_POINT is not an uncompressed {curve} point"
            )));
        }
        TargetPublicKey::from_ec_point(curve, &point)
            .map(Some)
            .map_err(|e| Error::Encoding(format!("CKA_EC_POINT: {e}")))
    }

    /// The conformance self-test of every path, run once per session and cached.
    pub fn self_test(&mut self) -> Result<&SelfTestReport, Error> {
        if self.self_test.is_none() {
            self.self_test = Some(selftest::run(self)?);
        }
        Ok(self.self_test.as_ref().expect("just set"))
    }

    /// Whether a key of `kind` can be wrapped by this token with `options` (the self-test, once per session): the
    /// error [`TokenSession::wrap`] would give, found before anything is written anywhere.
    pub fn check_wrappable(&mut self, kind: KeyKind, options: WrapOptions) -> Result<(), Error> {
        let aligned = matches!(kind, KeyKind::Aes(_));
        let report = self.self_test()?.clone();
        choose_path(&report, options, aligned).map(|_| ())
    }

    /// Wraps `key` to `kek` inside the token. Checks first that the key is of a kind Azure accepts, extractable,
    /// and has a readable public half; runs the self-test (once per session) and picks the path by `options`.
    pub fn wrap(&mut self, key: &KeyInfo, kek: &KekPublicKey, options: WrapOptions) -> Result<Wrapped, Error> {
        let kind = match &key.kind {
            KeyKindInfo::Supported(k) => *k,
            KeyKindInfo::Unsupported(what) => {
                return Err(Error::UnsupportedKey {
                    key: key.describe(),
                    what: what.clone(),
                });
            }
        };
        if !key.extractable {
            return Err(Error::NotExtractable(key.describe()));
        }
        if !matches!(kind, KeyKind::Aes(_)) && key.public.is_none() {
            return Err(Error::NoPublicKey(
                key.describe(),
                "no public key object with the same CKA_ID, so the import cannot be verified".into(),
            ));
        }
        // AES keys are 16, 24 or 32 bytes: 8-aligned. PKCS#8 lengths are unknown without reading the key.
        let aligned = matches!(kind, KeyKind::Aes(_));
        let report = self.self_test()?.clone();
        let (path, nonconformant) = choose_path(&report, options, aligned)?;
        let ciphertext = self.wrap_with(path, key.handle, kek)?;
        check_output(&ciphertext, kek)?;
        Ok(Wrapped {
            ciphertext,
            path,
            nonconformant,
        })
    }

    /// The KEK as a public-key session object with CKA_WRAP: made once per session and KEK, replaced (and the old
    /// one destroyed) when another KEK comes.
    fn kek_object(&self, kek: &KekPublicKey) -> Result<ObjectHandle, Error> {
        let mut cached = self.kek_object.borrow_mut();
        if let Some((modulus, handle)) = cached.as_ref()
            && modulus == kek.modulus()
        {
            return Ok(*handle);
        }
        if let Some((_, old)) = cached.take() {
            let _ = self.session.destroy_object(old);
        }
        let handle = self.session.create_object(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::RSA),
            Attribute::Token(false),
            Attribute::Private(false),
            Attribute::Modulus(kek.modulus().to_vec()),
            Attribute::PublicExponent(kek.exponent().to_vec()),
            Attribute::Wrap(true),
            Attribute::Encrypt(true),
            Attribute::Label(b"byok-kek".to_vec()),
        ])?;
        *cached = Some((kek.modulus().to_vec(), handle));
        Ok(handle)
    }

    /// Performs one path with the (cached) KEK object: one call, or the two steps with an ephemeral AES key that is
    /// destroyed on every path out.
    pub(crate) fn wrap_with(&self, path: WrapPath, target: ObjectHandle, kek: &KekPublicKey) -> Result<Vec<u8>, Error> {
        let kek_handle = self.kek_object(kek)?;
        let raw = &self.module.raw;
        let session = self.session.handle();
        match path {
            WrapPath::OneShot => raw
                .wrap_key(
                    session,
                    RawMechanism::RsaAesKeyWrap,
                    kek_handle.handle(),
                    target.handle(),
                )
                .map_err(Error::raw),
            WrapPath::TwoStepKwp | WrapPath::TwoStepPad => {
                let aes = Temporary::new(
                    &self.session,
                    self.session.generate_key(
                        &Mechanism::AesKeyGen,
                        &[
                            Attribute::Token(false),
                            Attribute::ValueLen(32.into()),
                            Attribute::Sensitive(true),
                            // It must be extractable to be RSA-wrapped; it never leaves the token otherwise.
                            Attribute::Extractable(true),
                            Attribute::Wrap(true),
                            Attribute::Encrypt(false),
                            Attribute::Decrypt(false),
                            Attribute::Label(b"byok-ephemeral".to_vec()),
                        ],
                    )?,
                );
                let kwp_mech = if path == WrapPath::TwoStepKwp {
                    RawMechanism::AesKeyWrapKwp
                } else {
                    RawMechanism::AesKeyWrapPad
                };
                let kwp = raw
                    .wrap_key(session, kwp_mech, aes.handle.handle(), target.handle())
                    .map_err(Error::raw)?;
                let mut out = raw
                    .wrap_key(
                        session,
                        RawMechanism::RsaOaepSha1,
                        kek_handle.handle(),
                        aes.handle.handle(),
                    )
                    .map_err(Error::raw)?;
                out.extend_from_slice(&kwp);
                Ok(out)
            }
        }
    }

    /// Generates a key in the token, extractable (BYOK needs it) and sensitive. Refuses a label already in use.
    pub fn generate(&self, kind: KeyKind, label: &str, id: &[u8]) -> Result<KeyInfo, Error> {
        let existing = self
            .session
            .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])?;
        if !existing.is_empty() {
            return Err(Error::Encoding(format!(
                "the token already has an object labelled `{label}`"
            )));
        }
        let common = |private: bool| {
            vec![
                Attribute::Token(true),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(id.to_vec()),
                Attribute::Private(private),
            ]
        };
        let secret_attrs = |mut v: Vec<Attribute>| {
            v.extend([Attribute::Sensitive(true), Attribute::Extractable(true)]);
            v
        };
        let handle = match kind {
            KeyKind::Rsa(size) => {
                let mut public = common(false);
                public.extend([
                    Attribute::ModulusBits((size.bits() as u64).into()),
                    Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
                    Attribute::Verify(true),
                    Attribute::Encrypt(true),
                ]);
                let mut private = secret_attrs(common(true));
                private.extend([Attribute::Sign(true), Attribute::Decrypt(true)]);
                self.session
                    .generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private)?
                    .1
            }
            KeyKind::Ec(curve) => {
                let mut public = common(false);
                public.extend([Attribute::EcParams(curve.ec_params_der()), Attribute::Verify(true)]);
                let mut private = secret_attrs(common(true));
                private.push(Attribute::Sign(true));
                self.session
                    .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)?
                    .1
            }
            KeyKind::Aes(size) => {
                let mut attrs = secret_attrs(common(true));
                attrs.extend([
                    Attribute::ValueLen((size.bytes() as u64).into()),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                ]);
                self.session.generate_key(&Mechanism::AesKeyGen, &attrs)?
            }
        };
        self.describe(handle)
    }

    /// Opens a BYOK ciphertext **inside** the token with a KEK private key held there — an HSM as an independent
    /// verifier: `C_UnwrapKey` with RSA-OAEP (SHA-1) gives a session AES key, `C_UnwrapKey` with
    /// CKM_AES_KEY_WRAP_PAD (RFC 5649 on SoftHSM) gives the target as a sensitive session object. Returns what the
    /// token says of it (for RSA the public half, for AES the check value, for EC the curve). Both objects are
    /// destroyed before returning.
    pub fn verify_ciphertext(&self, kek: &KeyInfo, ciphertext: &[u8], kind: KeyKind) -> Result<VerifiedKey, Error> {
        let KeyKindInfo::Supported(KeyKind::Rsa(size)) = kek.kind else {
            return Err(Error::UnsupportedKey {
                key: kek.describe(),
                what: format!("{} (a KEK is RSA)", kek.kind),
            });
        };
        let parts = byok_wrap::split(ciphertext, size).map_err(|e| Error::BadOutput {
            what: "ciphertext",
            reason: e.to_string(),
        })?;
        let oaep = Mechanism::RsaPkcsOaep(cryptoki::mechanism::rsa::PkcsOaepParams::new(
            cryptoki::mechanism::MechanismType::SHA1,
            cryptoki::mechanism::rsa::PkcsMgfType::MGF1_SHA1,
            cryptoki::mechanism::rsa::PkcsOaepSource::empty(),
        ));
        let aes = Temporary::new(
            &self.session,
            self.session.unwrap_key(
                &oaep,
                kek.handle,
                parts.rsa,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::Token(false),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::Unwrap(true),
                ],
            )?,
        );
        let mut template = vec![
            Attribute::Token(false),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
        ];
        match kind {
            KeyKind::Rsa(_) => template.extend([
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::KeyType(KeyType::RSA),
                Attribute::Sign(true),
            ]),
            KeyKind::Ec(_) => template.extend([
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::KeyType(KeyType::EC),
                Attribute::Sign(true),
            ]),
            KeyKind::Aes(_) => template.extend([
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Encrypt(true),
            ]),
        }
        let target = Temporary::new(
            &self.session,
            self.session
                .unwrap_key(&Mechanism::AesKeyWrapPad, aes.handle, parts.kwp, &template)?,
        );
        let described = self.describe(target.handle)?;
        let kcv = match kind {
            KeyKind::Aes(_) => self.kcv_of(target.handle)?,
            _ => None,
        };
        Ok(VerifiedKey {
            kind: described.kind,
            // An unwrapped EC private key carries no point, and no public object belongs to it.
            public: if matches!(kind, KeyKind::Ec(_)) {
                None
            } else {
                described.public
            },
            kcv,
        })
    }

    /// The key check value of an AES key: the first 3 bytes of AES-ECB of a zero block, computed by the token.
    /// Lets anyone compare a key with its copy elsewhere without reading either. `None` for other keys, or when
    /// the key may not encrypt.
    pub fn check_value(&self, key: &KeyInfo) -> Result<Option<[u8; 3]>, Error> {
        if !matches!(key.kind, KeyKindInfo::Supported(KeyKind::Aes(_))) {
            return Ok(None);
        }
        self.kcv_of(key.handle)
    }

    fn kcv_of(&self, handle: ObjectHandle) -> Result<Option<[u8; 3]>, Error> {
        Ok(self.ecb_block(handle, &[0u8; 16])?.map(|b| [b[0], b[1], b[2]]))
    }

    /// Encrypts one block with an AES key inside the token (AES-ECB). A vault that holds the same key gives the same
    /// answer to AES-CBC with a zero IV, so a random block shows that both sides hold one key without revealing it.
    /// `None` when the key is not AES or does not allow encryption.
    pub fn encrypt_block(&self, key: &KeyInfo, block: &[u8; 16]) -> Result<Option<[u8; 16]>, Error> {
        if !matches!(key.kind, KeyKindInfo::Supported(KeyKind::Aes(_))) {
            return Ok(None);
        }
        self.ecb_block(key.handle, block)
    }

    fn ecb_block(&self, handle: ObjectHandle, block: &[u8; 16]) -> Result<Option<[u8; 16]>, Error> {
        match self.session.encrypt(&Mechanism::AesEcb, handle, block) {
            Ok(out) => out.try_into().map(Some).map_err(|_| Error::BadOutput {
                what: "AES-ECB block",
                reason: "not 16 bytes".into(),
            }),
            Err(cryptoki::error::Error::Pkcs11(RvError::KeyFunctionNotPermitted, _)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// How many session objects (CKA_TOKEN false) this application can see, besides the cached KEK public key:
    /// 0 unless an ephemeral key or test secret leaked.
    pub fn session_object_count(&self) -> Result<usize, Error> {
        let cached = self.kek_object.borrow().as_ref().map(|(_, h)| *h);
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

fn choose_path(
    report: &SelfTestReport,
    options: WrapOptions,
    aligned: bool,
) -> Result<(WrapPath, Option<String>), Error> {
    let usable = |v: &Verdict| match v {
        Verdict::Conformant => true,
        Verdict::AlignedOnly(_) => aligned,
        _ => false,
    };
    match options.choice {
        WrapChoice::Auto => {
            if let Some(p) = report.paths.iter().find(|p| usable(&p.verdict)) {
                return Ok((p.path, None));
            }
            if options.allow_nonconformant
                && let Some(p) = report
                    .paths
                    .iter()
                    .find(|p| !matches!(p.verdict, Verdict::Unsupported(_)))
            {
                return Ok((p.path, Some(p.verdict.to_string())));
            }
            Err(Error::Nonconformant(report.summary()))
        }
        WrapChoice::Path(path) => {
            let verdict = &report.path(path).verdict;
            if let Verdict::Unsupported(_) = verdict {
                return Err(Error::PathUnsupported(path));
            }
            if usable(verdict) {
                Ok((path, None))
            } else if options.allow_nonconformant {
                Ok((path, Some(verdict.to_string())))
            } else {
                Err(Error::UnsafeForKey {
                    path,
                    reason: match verdict {
                        Verdict::AlignedOnly(r) => {
                            format!("{r}; this key's plaintext length is not known to be a multiple of 8")
                        }
                        other => other.to_string(),
                    },
                })
            }
        }
    }
}

/// The token's output must split into an RSA part of the KEK's size and a KWP part of whole semiblocks.
fn check_output(ciphertext: &[u8], kek: &KekPublicKey) -> Result<(), Error> {
    byok_wrap::split(ciphertext, kek.size())
        .map(|_| ())
        .map_err(|e| Error::BadOutput {
            what: "wrapped key",
            reason: e.to_string(),
        })
}

fn strip(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn key_type_name(k: KeyType) -> String {
    let known = [
        (KeyType::DES3, "DES3"),
        (KeyType::DES, "DES"),
        (KeyType::DSA, "DSA"),
        (KeyType::DH, "DH"),
        (KeyType::GENERIC_SECRET, "a generic secret"),
        (KeyType::EC_EDWARDS, "EdDSA"),
        (KeyType::EC_MONTGOMERY, "X25519/X448"),
    ];
    known
        .iter()
        .find(|(t, _)| *t == k)
        .map_or_else(|| format!("key type {k}"), |(_, n)| (*n).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selftest::PathReport;

    fn report(verdicts: [Verdict; 3]) -> SelfTestReport {
        SelfTestReport {
            paths: WrapPath::ALL
                .into_iter()
                .zip(verdicts)
                .map(|(path, verdict)| PathReport { path, verdict })
                .collect(),
        }
    }

    fn options(choice: WrapChoice, allow_nonconformant: bool) -> WrapOptions {
        WrapOptions {
            choice,
            allow_nonconformant,
        }
    }

    #[test]
    fn the_wrap_path_is_chosen_by_the_self_test() {
        let softhsm = report([
            Verdict::Unsupported("no 0x1054".into()),
            Verdict::Unsupported("no 0x210B".into()),
            Verdict::AlignedOnly("pads".into()),
        ]);
        let auto = options(WrapChoice::Auto, false);
        // An aligned-only path serves AES keys, not PKCS#8 ones.
        assert_eq!(choose_path(&softhsm, auto, true), Ok((WrapPath::TwoStepPad, None)));
        assert!(matches!(
            choose_path(&softhsm, auto, false),
            Err(Error::Nonconformant(_))
        ));
        // Overridden, it is used and the reason travels with it.
        let (path, why) = choose_path(&softhsm, options(WrapChoice::Auto, true), false).expect("overridden");
        assert_eq!(path, WrapPath::TwoStepPad);
        assert!(why.is_some_and(|w| w.contains("multiple of 8")));
        // A forced path the token does not offer is refused, whatever the override.
        assert_eq!(
            choose_path(&softhsm, options(WrapChoice::Path(WrapPath::OneShot), true), true),
            Err(Error::PathUnsupported(WrapPath::OneShot))
        );
        // A forced aligned-only path for a PKCS#8 key says why it is unsafe.
        assert!(matches!(
            choose_path(&softhsm, options(WrapChoice::Path(WrapPath::TwoStepPad), false), false),
            Err(Error::UnsafeForKey {
                path: WrapPath::TwoStepPad,
                ..
            })
        ));
        // The first conformant path in auto's order wins.
        let nss = report([
            Verdict::Unsupported("no 0x1054".into()),
            Verdict::Conformant,
            Verdict::Failed("PKCS#7".into()),
        ]);
        assert_eq!(choose_path(&nss, auto, false), Ok((WrapPath::TwoStepKwp, None)));
    }
}
