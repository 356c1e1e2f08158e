//! The public half of a target key, normalised so that equality means the same key.

use der::asn1::{AnyRef, ObjectIdentifier};
use pkcs8::AlgorithmIdentifierRef;
use sha2::{Digest, Sha256};

use crate::der::{EC_PUBLIC_KEY, bit_len, rsa_pkcs1_der, rsa_spki_der, spki_der, strip_zeros};
use crate::{Curve, Error, RsaSize};

/// The public half of an RSA or EC target key. Made only by constructors that normalise it (RSA without leading
/// zero bytes, EC as an uncompressed point on its curve), so that equality means the same key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetPublicKey(Public);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Public {
    /// RSA modulus and public exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An EC point, uncompressed SEC1 encoding (`04 || x || y`).
    Ec { curve: Curve, point: Vec<u8> },
}

impl TargetPublicKey {
    /// An RSA public key from its modulus and exponent, as a JWK carries them (leading zero bytes are ignored).
    /// The size must be one Azure imports.
    pub fn from_rsa_components(n: &[u8], e: &[u8]) -> Result<Self, Error> {
        let (n, e) = (strip_zeros(n), strip_zeros(e));
        if e.iter().all(|&b| b == 0) || e.last().is_some_and(|b| b & 1 == 0) {
            return Err(Error::Malformed {
                what: "RSA public key",
                reason: "the public exponent is not an odd number".into(),
            });
        }
        let bits = bit_len(n);
        if RsaSize::from_bits(bits).is_none() {
            return Err(Error::UnsupportedRsaSize { bits });
        }
        Ok(Self(Public::Rsa {
            n: n.to_vec(),
            e: e.to_vec(),
        }))
    }

    /// An EC public key from its curve and coordinates, as a JWK carries them; the point must lie on the curve.
    pub fn from_ec_components(curve: Curve, x: &[u8], y: &[u8]) -> Result<Self, Error> {
        let n = curve.scalar_len();
        let mut point = vec![0x04];
        for (name, v) in [("x", x), ("y", y)] {
            let v = strip_zeros(v);
            if v.len() > n {
                return Err(Error::Malformed {
                    what: "EC public key",
                    reason: format!("`{name}` is longer than {n} bytes for {curve}"),
                });
            }
            point.resize(point.len() + n - v.len(), 0);
            point.extend_from_slice(v);
        }
        let on_curve = match curve {
            Curve::P256 => p256::PublicKey::from_sec1_bytes(&point).is_ok(),
            Curve::P384 => p384::PublicKey::from_sec1_bytes(&point).is_ok(),
            Curve::P521 => p521::PublicKey::from_sec1_bytes(&point).is_ok(),
            Curve::P256K => k256::PublicKey::from_sec1_bytes(&point).is_ok(),
        };
        if !on_curve {
            return Err(Error::Malformed {
                what: "EC public key",
                reason: format!("the point is not on {curve}"),
            });
        }
        Ok(Self(Public::Ec { curve, point }))
    }

    /// An EC public key from its uncompressed SEC1 point (`04 || x || y`), as PKCS#11's CKA_EC_POINT holds it; the
    /// point must lie on the curve.
    pub fn from_ec_point(curve: Curve, point: &[u8]) -> Result<Self, Error> {
        let n = curve.scalar_len();
        match point.split_first() {
            Some((0x04, xy)) if xy.len() == 2 * n => Self::from_ec_components(curve, &xy[..n], &xy[n..]),
            _ => Err(Error::Malformed {
                what: "EC public key",
                reason: format!("not an uncompressed {curve} point"),
            }),
        }
    }

    /// An RSA or EC public key from a `SubjectPublicKeyInfo`, PEM (`BEGIN PUBLIC KEY`, what `openssl pkey -pubout`
    /// and `az keyvault key download` write) or DER.
    pub fn from_spki(input: &[u8]) -> Result<Self, Error> {
        use der::Decode as _;
        const WHAT: &str = "public key";
        let der = if crate::pem::looks_like_pem(input) {
            let blocks = crate::pem::blocks(input, WHAT)?;
            let block = blocks.into_iter().find(|b| b.label == "PUBLIC KEY");
            block
                .ok_or_else(|| Error::malformed(WHAT, "no `PUBLIC KEY` PEM block"))?
                .der
                .to_vec()
        } else {
            input.to_vec()
        };
        let spki = spki::SubjectPublicKeyInfoRef::from_der(&der).map_err(|e| Error::malformed(WHAT, e))?;
        let key = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| Error::malformed(WHAT, "the key bit string is not byte-aligned"))?;
        if spki.algorithm.oid == crate::der::RSA_ENCRYPTION {
            let rsa = pkcs1::RsaPublicKeyRef::from_der(key).map_err(|e| Error::malformed(WHAT, e))?;
            return Self::from_rsa_components(rsa.modulus.as_bytes(), rsa.public_exponent.as_bytes());
        }
        let curve = (spki.algorithm.oid == EC_PUBLIC_KEY)
            .then(|| {
                spki.algorithm
                    .parameters
                    .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
            })
            .flatten()
            .ok_or_else(|| Error::malformed(WHAT, format!("neither RSA nor EC: {}", spki.algorithm.oid)))?;
        let curve = Curve::from_oid(&curve.to_string()).ok_or_else(|| Error::UnsupportedCurve {
            curve: crate::der::curve_display(&curve),
        })?;
        Self::from_ec_point(curve, key)
    }

    /// The RSA modulus and public exponent (big-endian, no leading zeros), for an RSA key.
    pub fn rsa(&self) -> Option<(&[u8], &[u8])> {
        match &self.0 {
            Public::Rsa { n, e } => Some((n, e)),
            Public::Ec { .. } => None,
        }
    }

    /// The curve and the uncompressed point, for an EC key.
    pub fn ec(&self) -> Option<(Curve, &[u8])> {
        match &self.0 {
            Public::Ec { curve, point } => Some((*curve, point)),
            Public::Rsa { .. } => None,
        }
    }

    /// DER of the X.509 `SubjectPublicKeyInfo`.
    pub fn to_spki_der(&self) -> Vec<u8> {
        match &self.0 {
            Public::Rsa { n, e } => rsa_spki_der(n, e),
            Public::Ec { curve, point } => {
                let curve_oid = ObjectIdentifier::new_unwrap(curve.oid());
                spki_der(
                    AlgorithmIdentifierRef {
                        oid: EC_PUBLIC_KEY,
                        parameters: Some(AnyRef::from(&curve_oid)),
                    },
                    point,
                )
            }
        }
    }

    /// SHA-256 of the `SubjectPublicKeyInfo` DER, lowercase hex; equal to
    /// `openssl pkey -pubin -outform DER | sha256sum`.
    pub fn fingerprint_sha256(&self) -> String {
        sha256_hex(&self.to_spki_der())
    }

    /// DER of the PKCS#1 `RSAPublicKey` (RSA only).
    pub fn to_pkcs1_der(&self) -> Option<Vec<u8>> {
        self.rsa().map(|(n, e)| rsa_pkcs1_der(n, e))
    }
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}
