//! What a token can say of a key without revealing it: a ciphertext opened inside it, an AES check value, one
//! encrypted block. The verification compares these with what the vault says.

use byok_encoding::KeyKind;
use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};

use crate::Error;

use super::{KeyInfo, KeyKindInfo, Temporary, TokenSession, VerifiedKey};

impl TokenSession<'_> {
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
}
