//! RSA public keys and the two PKCS#1 v1.5 signature forms Marvell partitions use.

use rsa::pkcs8::DecodePublicKey as _;
use rsa::{Pkcs1v15Sign, PublicKey as RsaPublicKey};
use sha2::{Digest as _, Sha256};

/// An RSA public key from a SubjectPublicKeyInfo, with that DER kept for comparisons and fingerprints.
#[derive(Clone, Debug)]
pub(crate) struct RsaKey {
    key: RsaPublicKey,
    spki_der: Vec<u8>,
}

impl RsaKey {
    /// `None` if the DER is not an RSA SubjectPublicKeyInfo.
    pub(crate) fn from_spki_der(der: &[u8]) -> Option<Self> {
        let key = RsaPublicKey::from_public_key_der(der).ok()?;
        Some(Self {
            key,
            spki_der: der.to_vec(),
        })
    }

    pub(crate) fn from_spki_pem(pem: &str) -> Option<Self> {
        let key = RsaPublicKey::from_public_key_pem(pem).ok()?;
        let spki_der = rsa::pkcs8::EncodePublicKey::to_public_key_der(&key).ok()?.into_vec();
        Some(Self { key, spki_der })
    }

    pub(crate) fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// SHA-256 of the SubjectPublicKeyInfo, lowercase hex.
    pub(crate) fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(&self.spki_der))
    }

    /// Bytes of a signature made with this key.
    pub(crate) fn size(&self) -> usize {
        rsa::traits::PublicKeyParts::size(&self.key)
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 (the DigestInfo form): certificates, and blobs of firmware 3.x.
    pub(crate) fn verifies_sha256(&self, message: &[u8], signature: &[u8]) -> bool {
        let hashed = Sha256::digest(message);
        self.key
            .verify(Pkcs1v15Sign::new::<Sha256>(), &hashed, signature)
            .is_ok()
    }

    /// PKCS#1 v1.5 type-1 padding around a bare SHA-256 (no DigestInfo): blobs of firmware 2.x. Checked whole —
    /// the padding too, not only the trailing hash.
    pub(crate) fn verifies_bare_sha256(&self, message: &[u8], signature: &[u8]) -> bool {
        let hashed = Sha256::digest(message);
        self.key
            .verify(Pkcs1v15Sign::new_unprefixed(), &hashed, signature)
            .is_ok()
    }
}
