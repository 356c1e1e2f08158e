//! The DER structures byok builds and recognises around keys: SubjectPublicKeyInfo, PKCS#1 RSAPublicKey, PKCS#8
//! PrivateKeyInfo, EncryptedPrivateKeyInfo, and the integers and OIDs inside them.

use der::asn1::{AnyRef, BitStringRef, ObjectIdentifier, OctetStringRef};
use der::{Decode, Encode};
use pkcs8::{AlgorithmIdentifierRef, PrivateKeyInfoRef};
use spki::SubjectPublicKeyInfoRef;
use zeroize::Zeroizing;

use crate::Error;

pub(crate) const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
pub(crate) const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

/// The PKCS#1 `RSAPublicKey` DER of a modulus and exponent without leading zeros.
pub(crate) fn rsa_pkcs1_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    // Components come from already-parsed keys, so encoding cannot fail for lack of validity.
    let key = pkcs1::RsaPublicKey {
        modulus: der::asn1::UintRef::new(n).expect("modulus is a valid unsigned integer"),
        public_exponent: der::asn1::UintRef::new(e).expect("exponent is a valid unsigned integer"),
    };
    key.to_der().expect("RSAPublicKey encodes")
}

/// Builds an RSA `SubjectPublicKeyInfo` from a modulus and exponent without leading zeros.
pub(crate) fn rsa_spki_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    let pkcs1 = rsa_pkcs1_der(n, e);
    spki_der(
        AlgorithmIdentifierRef {
            oid: RSA_ENCRYPTION,
            parameters: Some(AnyRef::NULL),
        },
        &pkcs1,
    )
}

pub(crate) fn spki_der(algorithm: AlgorithmIdentifierRef<'_>, key: &[u8]) -> Vec<u8> {
    let spki = SubjectPublicKeyInfoRef {
        algorithm,
        subject_public_key: BitStringRef::from_bytes(key).expect("byte-aligned bit string"),
    };
    spki.to_der().expect("SubjectPublicKeyInfo encodes")
}

pub(crate) fn encode_pkcs8(algorithm: AlgorithmIdentifierRef<'_>, key: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    let octets = OctetStringRef::new(key).map_err(|e| Error::malformed("PKCS#8 PrivateKeyInfo", e))?;
    let info = PrivateKeyInfoRef::new(algorithm, octets);
    info.to_der()
        .map(Zeroizing::new)
        .map_err(|e| Error::malformed("PKCS#8 PrivateKeyInfo", e))
}

/// Recognises a DER `EncryptedPrivateKeyInfo` (RFC 5208 §6): an `AlgorithmIdentifier` and an `OCTET STRING`.
pub(crate) fn is_encrypted_private_key_info(input: &[u8]) -> bool {
    use der::{Reader, SliceReader};
    let Ok(mut reader) = SliceReader::new(input) else {
        return false;
    };
    let parsed: der::Result<()> = reader.sequence(|r| {
        AlgorithmIdentifierRef::decode(r)?;
        <&OctetStringRef>::decode(r)?;
        Ok(())
    });
    parsed.is_ok() && reader.is_finished()
}

pub(crate) fn strip_zeros(be: &[u8]) -> &[u8] {
    let start = be.iter().position(|&b| b != 0).unwrap_or(be.len().saturating_sub(1));
    &be[start..]
}

pub(crate) fn bit_len(be: &[u8]) -> usize {
    match be.iter().position(|&b| b != 0) {
        Some(i) => (be.len() - i) * 8 - be[i].leading_zeros() as usize,
        None => 0,
    }
}

pub(crate) fn curve_display(oid: &ObjectIdentifier) -> String {
    let dotted = oid.to_string();
    let name = match dotted.as_str() {
        "1.3.36.3.3.2.8.1.1.7" => "brainpoolP256r1",
        "1.3.36.3.3.2.8.1.1.11" => "brainpoolP384r1",
        "1.3.36.3.3.2.8.1.1.13" => "brainpoolP512r1",
        "1.3.132.0.33" => "secp224r1",
        "1.2.840.10045.3.1.1" => "secp192r1",
        "1.3.101.112" => "Ed25519",
        _ => return dotted,
    };
    format!("{name} ({dotted})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_length() {
        assert_eq!(bit_len(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(bit_len(&[0x01]), 1);
        assert_eq!(bit_len(&[0x00]), 0);
    }

    #[test]
    fn leading_zeros_are_stripped_but_zero_stays_one_byte() {
        assert_eq!(strip_zeros(&[0, 0, 1, 0]), [1, 0]);
        assert_eq!(strip_zeros(&[0, 0]), [0]);
    }
}
