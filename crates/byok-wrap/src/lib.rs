#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod kwp;

use std::fmt;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA1_MGF1SHA1, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey,
    PublicEncryptingKey,
};
use byok_encoding::{KekPublicKey, KeyKind, RsaSize, TargetKey};
use zeroize::Zeroizing;

pub use error::Error;
pub use kwp::{MAX_PLAINTEXT_LEN, kwp_unwrap, kwp_wrap, wrapped_len as kwp_wrapped_len};

/// Length of the ephemeral AES key: AES-256, as every BYOK implementation uses.
pub const EPHEMERAL_KEY_LEN: usize = 32;

/// Total length of a CKM_RSA_AES_KEY_WRAP ciphertext for a plaintext of `plaintext_len` bytes.
pub const fn wrapped_len(kek: RsaSize, plaintext_len: usize) -> usize {
    kek.bytes() + kwp::wrapped_len(plaintext_len)
}

/// A KEK public key prepared for wrapping many keys.
///
/// The RSA-OAEP parameters are the ones the Azure BYOK specification requires and Key Vault accepts:
/// **SHA-1** digest, MGF1 with **SHA-1**, empty label. SHA-1 is weak for signatures but remains sound inside
/// OAEP; Key Vault refuses OAEP-SHA-256 blobs, so this is not a choice byok can make.
pub struct KekEncryptor {
    key: OaepPublicEncryptingKey,
    size: RsaSize,
}

impl fmt::Debug for KekEncryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KekEncryptor")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl KekEncryptor {
    /// Prepares a KEK for wrapping.
    pub fn new(kek: &KekPublicKey) -> Result<Self, Error> {
        let public = PublicEncryptingKey::from_der(&kek.to_spki_der()).map_err(|_| Error::UnusableKek)?;
        let key = OaepPublicEncryptingKey::new(public).map_err(|_| Error::UnusableKek)?;
        if key.ciphertext_size() != kek.ciphertext_len() {
            return Err(Error::UnusableKek);
        }
        Ok(Self { key, size: kek.size() })
    }

    /// CKM_RSA_AES_KEY_WRAP: draws a fresh AES-256 key from the operating system, encrypts it to the KEK with
    /// RSA-OAEP (SHA-1), wraps `plaintext` under it with AES key wrap with padding (RFC 5649), and returns
    /// `rsa_part || kwp_part`. The AES key is zeroized before returning.
    pub fn wrap(&self, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let mut aes_key = Zeroizing::new([0u8; EPHEMERAL_KEY_LEN]);
        getrandom::fill(aes_key.as_mut()).map_err(|_| Error::Rng)?;
        self.dangerous_wrap_with_aes_key(&aes_key, plaintext)
    }

    /// As [`wrap`](Self::wrap), with a caller-chosen AES key. **Known-answer tests only**: reusing an AES key, or
    /// choosing a predictable one, destroys the confidentiality of every key wrapped under it.
    pub fn dangerous_wrap_with_aes_key(
        &self,
        aes_key: &[u8; EPHEMERAL_KEY_LEN],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, Error> {
        use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrapPadded};
        if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(Error::PlaintextLength {
                len: plaintext.len(),
                max: MAX_PLAINTEXT_LEN,
            });
        }
        let rsa_len = self.size.bytes();
        let kwp_len = kwp::wrapped_len(plaintext.len());
        let mut out = vec![0u8; rsa_len + kwp_len];
        let written = self
            .key
            .encrypt(&OAEP_SHA1_MGF1SHA1, aes_key, &mut out[..rsa_len], None)
            .map_err(|_| Error::OaepEncrypt)?
            .len();
        if written != rsa_len {
            return Err(Error::OaepEncrypt);
        }
        // RFC 5649 on AWS-LC (AES-NI where the CPU has it); `kwp_wrap` (aes-kw) serves the other key sizes. The
        // known answers pin both to the same bytes.
        let kek = AesKek::new(&AES_256, aes_key).map_err(|_| Error::KwpKeyLength { len: aes_key.len() })?;
        let wrapped = kek
            .wrap_with_padding(plaintext, &mut out[rsa_len..])
            .map_err(|_| Error::PlaintextLength {
                len: plaintext.len(),
                max: MAX_PLAINTEXT_LEN,
            })?
            .len();
        if wrapped != kwp_len {
            return Err(Error::PlaintextLength {
                len: plaintext.len(),
                max: MAX_PLAINTEXT_LEN,
            });
        }
        Ok(out)
    }

    /// The KEK's size.
    pub fn size(&self) -> RsaSize {
        self.size
    }
}

/// Wraps a target key to a KEK: see [`KekEncryptor::wrap`].
pub fn wrap(kek: &KekPublicKey, target: &TargetKey) -> Result<Vec<u8>, Error> {
    KekEncryptor::new(kek)?.wrap(target.plaintext())
}

/// The two parts of a CKM_RSA_AES_KEY_WRAP ciphertext.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parts<'a> {
    /// RSA-OAEP encryption of the ephemeral AES key; as long as the KEK's modulus.
    pub rsa: &'a [u8],
    /// RFC 5649 wrap of the target under the AES key.
    pub kwp: &'a [u8],
}

/// Splits a ciphertext for a KEK of the given size, checking that the KWP part is plausible: at least 16 bytes
/// and a multiple of 8.
pub fn split(ciphertext: &[u8], kek: RsaSize) -> Result<Parts<'_>, Error> {
    let rsa_len = kek.bytes();
    if ciphertext.len() < rsa_len + 16 {
        return Err(Error::CiphertextTooShort {
            len: ciphertext.len(),
            rsa_len,
        });
    }
    let (rsa, kwp) = ciphertext.split_at(rsa_len);
    if kwp.len() % 8 != 0 {
        return Err(Error::KwpLength { len: kwp.len() });
    }
    Ok(Parts { rsa, kwp })
}

/// The private half of a KEK. byok itself never holds one: it exists for the local Key Vault, for tests and
/// for rehearsals that prove a blob can be opened.
pub struct KekPrivateKey {
    key: PrivateDecryptingKey,
    public: KekPublicKey,
}

impl fmt::Debug for KekPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KekPrivateKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl KekPrivateKey {
    /// Generates a fresh KEK.
    pub fn generate(size: RsaSize) -> Result<Self, Error> {
        let key_size = match size {
            RsaSize::Rsa2048 => KeySize::Rsa2048,
            RsaSize::Rsa3072 => KeySize::Rsa3072,
            RsaSize::Rsa4096 => KeySize::Rsa4096,
        };
        let key =
            PrivateDecryptingKey::generate(key_size).map_err(|_| Error::KekPrivateKey("generation failed".into()))?;
        Self::from_aws(key)
    }

    /// Reads a PKCS#8 DER RSA private key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, Error> {
        let key = PrivateDecryptingKey::from_pkcs8(der)
            .map_err(|_| Error::KekPrivateKey("not a PKCS#8 RSA private key".into()))?;
        Self::from_aws(key)
    }

    /// Reads an RSA private key file in any form [`TargetKey::from_private_key_file`] accepts.
    pub fn from_private_key_file(input: &[u8]) -> Result<Self, Error> {
        let key = TargetKey::from_private_key_file(input).map_err(|e| Error::KekPrivateKey(e.to_string()))?;
        if !matches!(key.kind(), KeyKind::Rsa(_)) {
            return Err(Error::KekPrivateKey(format!("it is {}, not RSA", key.kind())));
        }
        Self::from_pkcs8_der(key.plaintext())
    }

    fn from_aws(key: PrivateDecryptingKey) -> Result<Self, Error> {
        let spki = AsDer::<aws_lc_rs::encoding::PublicKeyX509Der<'_>>::as_der(&key.public_key())
            .map_err(|_| Error::KekPrivateKey("public key cannot be encoded".into()))?;
        let public = KekPublicKey::from_spki_der(spki.as_ref()).map_err(|e| Error::KekPrivateKey(e.to_string()))?;
        Ok(Self { key, public })
    }

    /// The public half.
    pub fn public_key(&self) -> &KekPublicKey {
        &self.public
    }

    /// PKCS#8 DER of the private key.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        let der =
            AsDer::<Pkcs8V1Der<'_>>::as_der(&self.key).map_err(|_| Error::KekPrivateKey("cannot be encoded".into()))?;
        Ok(Zeroizing::new(der.as_ref().to_vec()))
    }

    /// RSA-OAEP decryption with SHA-1, MGF1-SHA-1 and an empty label, of any message.
    pub fn oaep_decrypt(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let oaep = OaepPrivateDecryptingKey::new(self.key.clone()).map_err(|_| Error::OaepDecrypt)?;
        let mut out = Zeroizing::new(vec![0u8; oaep.min_output_size()]);
        let len = oaep
            .decrypt(&OAEP_SHA1_MGF1SHA1, ciphertext, &mut out, None)
            .map_err(|_| Error::OaepDecrypt)?
            .len();
        out.truncate(len);
        Ok(out)
    }

    /// Decrypts the RSA part of a BYOK ciphertext, which must hold an AES-128/192/256 key.
    pub fn decrypt_aes_key(&self, rsa_part: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        if rsa_part.len() != self.public.ciphertext_len() {
            return Err(Error::OaepDecrypt);
        }
        let key = self.oaep_decrypt(rsa_part)?;
        if !matches!(key.len(), 16 | 24 | 32) {
            return Err(Error::AesKeyLength { len: key.len() });
        }
        Ok(key)
    }

    /// Opens a CKM_RSA_AES_KEY_WRAP ciphertext and returns the plaintext (PKCS#8 DER or raw AES bytes). The caller
    /// decides how strictly to parse it; [`TargetKey::from_plaintext`] is what a vault does.
    pub fn unwrap(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let parts = split(ciphertext, self.public.size())?;
        let aes_key = self.decrypt_aes_key(parts.rsa)?;
        kwp_unwrap(&aes_key, parts.kwp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let kek = KekPrivateKey::generate(RsaSize::Rsa2048).expect("generates");
        let enc = KekEncryptor::new(kek.public_key()).expect("prepares");
        let plaintext = b"67 bytes of something that is not 8-aligned, to exercise the padding";
        let ct = enc.wrap(plaintext).expect("wraps");
        assert_eq!(ct.len(), wrapped_len(RsaSize::Rsa2048, plaintext.len()));
        assert_eq!(*kek.unwrap(&ct).expect("unwraps"), plaintext[..]);
        // A fresh AES key each time.
        let again = enc.wrap(plaintext).expect("wraps");
        assert_ne!(ct[256..], again[256..]);
    }

    #[test]
    fn tampering_is_detected_in_either_part() {
        let kek = KekPrivateKey::generate(RsaSize::Rsa2048).expect("generates");
        let ct = KekEncryptor::new(kek.public_key())
            .expect("prepares")
            .wrap(&[7; 40])
            .expect("wraps");
        let mut rsa_flip = ct.clone();
        rsa_flip[10] ^= 1;
        assert_eq!(kek.unwrap(&rsa_flip).err(), Some(Error::OaepDecrypt));
        let mut kwp_flip = ct.clone();
        let last = kwp_flip.len() - 1;
        kwp_flip[last] ^= 1;
        assert_eq!(kek.unwrap(&kwp_flip).err(), Some(Error::KwpIntegrity));
        assert_eq!(
            kek.unwrap(&ct[..256 + 8]).err(),
            Some(Error::CiphertextTooShort { len: 264, rsa_len: 256 })
        );
        assert_eq!(
            kek.unwrap(&ct[..ct.len() - 3]).err(),
            Some(Error::KwpLength { len: 45 })
        );
    }

    #[test]
    fn other_kek_cannot_open() {
        let a = KekPrivateKey::generate(RsaSize::Rsa2048).expect("generates");
        let b = KekPrivateKey::generate(RsaSize::Rsa2048).expect("generates");
        let ct = KekEncryptor::new(a.public_key())
            .expect("prepares")
            .wrap(&[1; 32])
            .expect("wraps");
        assert_eq!(b.unwrap(&ct).err(), Some(Error::OaepDecrypt));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let kek = KekPrivateKey::generate(RsaSize::Rsa2048).expect("generates");
        let der = kek.to_pkcs8_der().expect("encodes");
        let shown = format!("{kek:?}");
        assert!(shown.contains("Rsa2048"));
        let hex: String = der[der.len() - 16..].iter().map(|b| format!("{b:02x}")).collect();
        assert!(!shown.contains(&hex));
        assert!(shown.len() < 400, "{shown}");
    }
}
