//! The Key Exchange Key's public half, in every form a user is likely to hold it.

use std::fmt;

use base64::Engine as _;
use der::Decode;
use spki::SubjectPublicKeyInfoRef;

use crate::der::{RSA_ENCRYPTION, rsa_spki_der};
use crate::pem;
use crate::public::sha256_hex;
use crate::{Error, RsaSize};

const WHAT: &str = "KEK";

/// The public half of an RSA Key Exchange Key: an RSA-HSM key of 2048, 3072 or 4096 bits whose only
/// operation in the vault is `import`.
#[derive(Clone, PartialEq, Eq)]
pub struct KekPublicKey {
    n: Vec<u8>,
    e: Vec<u8>,
    size: RsaSize,
    kid: Option<String>,
}

impl fmt::Debug for KekPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KekPublicKey")
            .field("size", &self.size)
            .field("kid", &self.kid)
            .field("fingerprint", &self.fingerprint_sha256())
            .finish()
    }
}

impl KekPublicKey {
    /// Reads a KEK in any accepted form, detected from the content:
    /// PEM `PUBLIC KEY` (SubjectPublicKeyInfo, what `az keyvault key download` writes), PEM `RSA PUBLIC KEY`
    /// (PKCS#1), DER of either, or JSON: a JWK with `n` and `e`, or a Key Vault key bundle `{"key": {…}}`.
    pub fn parse(input: &[u8]) -> Result<Self, Error> {
        let first = input.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'{') {
            return Self::from_jwk_json(input);
        }
        if pem::looks_like_pem(input) {
            let blocks = pem::blocks(input, WHAT)?;
            let block = &blocks[0];
            return match block.label.as_str() {
                "PUBLIC KEY" => Self::from_spki_der(&block.der),
                "RSA PUBLIC KEY" => Self::from_pkcs1_der(&block.der),
                "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" => {
                    Err(Error::PrivateKeyAsKek)
                }
                other => Err(Error::UnexpectedPemLabel {
                    what: WHAT,
                    label: other.to_owned(),
                    expected: "`PUBLIC KEY` or `RSA PUBLIC KEY`",
                }),
            };
        }
        if SubjectPublicKeyInfoRef::from_der(input).is_ok() {
            return Self::from_spki_der(input);
        }
        if pkcs1::RsaPublicKeyRef::from_der(input).is_ok() {
            return Self::from_pkcs1_der(input);
        }
        if pkcs8::PrivateKeyInfoRef::from_der(input).is_ok() || pkcs1::RsaPrivateKeyRef::from_der(input).is_ok() {
            return Err(Error::PrivateKeyAsKek);
        }
        Err(Error::UnrecognizedFormat {
            what: WHAT,
            expected: "an RSA public key as PEM, DER (SubjectPublicKeyInfo or PKCS#1) or a JWK",
        })
    }

    /// Reads a DER `SubjectPublicKeyInfo`.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, Error> {
        let spki =
            SubjectPublicKeyInfoRef::from_der(der).map_err(|e| Error::malformed("KEK SubjectPublicKeyInfo", e))?;
        if spki.algorithm.oid != RSA_ENCRYPTION {
            let algorithm = match spki.algorithm.oid.to_string().as_str() {
                "1.2.840.10045.2.1" => "EC (1.2.840.10045.2.1)".to_owned(),
                "1.2.840.113549.1.1.10" => "RSASSA-PSS (1.2.840.113549.1.1.10)".to_owned(),
                other => other.to_owned(),
            };
            return Err(Error::KekNotRsa { algorithm });
        }
        let key = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| Error::malformed("KEK SubjectPublicKeyInfo", "the key bit string is not byte-aligned"))?;
        Self::from_pkcs1_der(key)
    }

    /// Reads a DER PKCS#1 `RSAPublicKey`.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self, Error> {
        let key = pkcs1::RsaPublicKeyRef::from_der(der).map_err(|e| Error::malformed("KEK RSAPublicKey", e))?;
        Self::from_components(key.modulus.as_bytes(), key.public_exponent.as_bytes())
    }

    /// Reads a JWK (`{"kty":"RSA-HSM","n":…,"e":…}`) or a Key Vault key bundle (`{"key":{…},"attributes":…}`).
    /// The `kid`, when present, is kept.
    pub fn from_jwk_json(json: &[u8]) -> Result<Self, Error> {
        let value: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| Error::InvalidJwk(format!("not valid JSON: {e}")))?;
        let jwk = value.get("key").filter(|k| k.is_object()).unwrap_or(&value);
        let field = |name: &str| -> Result<Option<&str>, Error> {
            match jwk.get(name) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(Error::InvalidJwk(format!("`{name}` is not a string"))),
            }
        };
        let kty = field("kty")?.ok_or_else(|| Error::InvalidJwk("it has no `kty`".into()))?;
        if !matches!(kty, "RSA" | "RSA-HSM") {
            return Err(Error::KekNotRsa {
                algorithm: kty.to_owned(),
            });
        }
        if field("d")?.is_some() {
            return Err(Error::PrivateKeyAsKek);
        }
        let decode = |name: &str| -> Result<Vec<u8>, Error> {
            let text = field(name)?.ok_or_else(|| Error::InvalidJwk(format!("it has no `{name}`")))?;
            decode_base64url(text).ok_or_else(|| Error::InvalidJwk(format!("`{name}` is not base64url")))
        };
        let n = decode("n")?;
        let e = decode("e")?;
        let mut kek = Self::from_components(&n, &e)?;
        kek.kid = field("kid")?.map(str::to_owned);
        Ok(kek)
    }

    /// Builds a KEK from big-endian modulus and exponent. Leading zero bytes are tolerated (Key Vault's JWK
    /// `n` can carry one); the size comes from the modulus *bit* length.
    pub fn from_components(n: &[u8], e: &[u8]) -> Result<Self, Error> {
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        let bits = match n.first() {
            Some(&top) => n.len() * 8 - top.leading_zeros() as usize,
            None => 0,
        };
        let size = RsaSize::from_bits(bits).ok_or(Error::UnsupportedKekSize { bits })?;
        let e_is_odd = e.last().is_some_and(|b| b & 1 == 1);
        if !e_is_odd || e == [1] || e.len() > n.len() {
            return Err(Error::InvalidKekExponent);
        }
        Ok(Self {
            n: n.to_vec(),
            e: e.to_vec(),
            size,
            kid: None,
        })
    }

    /// The modulus size.
    pub fn size(&self) -> RsaSize {
        self.size
    }

    /// Length of an RSA ciphertext under this key, in bytes: the first part of a BYOK ciphertext.
    pub fn ciphertext_len(&self) -> usize {
        self.size.bytes()
    }

    /// The modulus, big-endian without leading zeros.
    pub fn modulus(&self) -> &[u8] {
        &self.n
    }

    /// The public exponent, big-endian without leading zeros.
    pub fn exponent(&self) -> &[u8] {
        &self.e
    }

    /// The key identifier, when the KEK was read from a JWK that had one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// DER of the X.509 `SubjectPublicKeyInfo`.
    pub fn to_spki_der(&self) -> Vec<u8> {
        rsa_spki_der(&self.n, &self.e)
    }

    /// PEM `PUBLIC KEY` (SubjectPublicKeyInfo), as `az keyvault key download --encoding PEM` writes it.
    pub fn to_pem(&self) -> String {
        der::pem::encode_string("PUBLIC KEY", der::pem::LineEnding::LF, &self.to_spki_der())
            .expect("PEM encoding of a DER document cannot fail")
    }

    /// SHA-256 of the `SubjectPublicKeyInfo` DER, lowercase hex; equal to
    /// `openssl pkey -pubin -in kek.pem -outform DER | sha256sum`.
    pub fn fingerprint_sha256(&self) -> String {
        sha256_hex(&self.to_spki_der())
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// Decodes base64url with or without padding (JWKs should be unpadded; some tools pad).
fn decode_base64url(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modulus(bits: usize) -> Vec<u8> {
        let mut n = vec![0xC5; bits / 8];
        n[bits / 8 - 1] |= 1;
        n
    }

    #[test]
    fn sizes_from_bit_length() {
        for size in RsaSize::ALL {
            let kek = KekPublicKey::from_components(&modulus(size.bits()), &[1, 0, 1]).expect("valid size");
            assert_eq!(kek.size(), size);
            assert_eq!(kek.ciphertext_len(), size.bits() / 8);
        }
        let err = KekPublicKey::from_components(&modulus(1024), &[1, 0, 1]).err();
        assert_eq!(err, Some(Error::UnsupportedKekSize { bits: 1024 }));
        // 2047 bits is not 2048 even though it fills 256 bytes.
        let mut n = modulus(2048);
        n[0] = 0x7F;
        let err = KekPublicKey::from_components(&n, &[1, 0, 1]).err();
        assert_eq!(err, Some(Error::UnsupportedKekSize { bits: 2047 }));
    }

    #[test]
    fn leading_zero_in_modulus_is_tolerated() {
        let mut n = vec![0];
        n.extend(modulus(2048));
        let kek = KekPublicKey::from_components(&n, &[0, 1, 0, 1]).expect("leading zeros are stripped");
        assert_eq!(kek.modulus().len(), 256);
        assert_eq!(kek.exponent(), [1, 0, 1]);
    }

    #[test]
    fn even_or_unit_exponent_is_refused() {
        for e in [&[2u8][..], &[1], &[], &[0, 0]] {
            assert_eq!(
                KekPublicKey::from_components(&modulus(2048), e).err(),
                Some(Error::InvalidKekExponent)
            );
        }
    }

    #[test]
    fn forms_agree() {
        let kek = KekPublicKey::from_components(&modulus(3072), &[1, 0, 1]).expect("valid");
        let spki = kek.to_spki_der();
        assert_eq!(KekPublicKey::parse(&spki).ok(), Some(kek.clone()));
        assert_eq!(KekPublicKey::parse(kek.to_pem().as_bytes()).ok(), Some(kek.clone()));
        let jwk = format!(
            r#"{{"key":{{"kid":"https://v.vault.azure.net/keys/k/0123","kty":"RSA-HSM","n":"{}","e":"AQAB"}}}}"#,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(kek.modulus())
        );
        let from_jwk = KekPublicKey::parse(jwk.as_bytes()).expect("bundle parses");
        assert_eq!(from_jwk.kid(), Some("https://v.vault.azure.net/keys/k/0123"));
        assert_eq!(from_jwk.fingerprint_sha256(), kek.fingerprint_sha256());
    }

    #[test]
    fn jwk_errors_name_the_field() {
        let no_n = br#"{"kty":"RSA","e":"AQAB"}"#;
        assert_eq!(
            KekPublicKey::parse(no_n).err(),
            Some(Error::InvalidJwk("it has no `n`".into()))
        );
        let ec = br#"{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}"#;
        assert!(matches!(KekPublicKey::parse(ec), Err(Error::KekNotRsa { .. })));
        let private = br#"{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AQAB"}"#;
        assert_eq!(KekPublicKey::parse(private).err(), Some(Error::PrivateKeyAsKek));
    }
}
