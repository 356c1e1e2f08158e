//! Keys made inside the token for BYOK: extractable only wrapped, sensitive.

use byok_encoding::KeyKind;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;

use crate::Error;

use super::{KeyInfo, TokenSession};

impl TokenSession<'_> {
    /// A fresh CKA_ID for a new key: 8 bytes from the token's random generator.
    pub fn random_id(&self) -> Result<Vec<u8>, Error> {
        Ok(self.session.generate_random_vec(8)?)
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
}
