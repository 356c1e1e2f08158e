//! Target keys: the private keys that BYOK moves, in the plaintext encoding the vault expects.
//!
//! - RSA: PKCS#8 `PrivateKeyInfo` (RFC 5208) around a PKCS#1 `RSAPrivateKey` (RFC 8017).
//! - EC: PKCS#8 around an RFC 5915 `ECPrivateKey`, the curve named in the `AlgorithmIdentifier`.
//! - AES: the raw key bytes (oct-HSM, Managed HSM only).

use std::fmt;

use der::asn1::{AnyRef, ObjectIdentifier};
use der::{Decode, Encode};
use pkcs8::{AlgorithmIdentifierRef, PrivateKeyInfoRef};
use zeroize::Zeroizing;

use crate::TargetPublicKey;
use crate::der::{
    EC_PUBLIC_KEY, RSA_ENCRYPTION, bit_len, curve_display, encode_pkcs8, is_encrypted_private_key_info, strip_zeros,
};
use crate::pem;
use crate::{AesSize, Curve, Error, KeyKind, Kty, RsaSize};

/// A private key ready to be wrapped: its kind, its BYOK plaintext encoding, and its public half.
///
/// The plaintext is zeroized on drop and never shown by `Debug`.
pub struct TargetKey {
    kind: KeyKind,
    plaintext: Zeroizing<Vec<u8>>,
    public: Option<TargetPublicKey>,
}

impl fmt::Debug for TargetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetKey")
            .field("kind", &self.kind)
            .field("plaintext_len", &self.plaintext.len())
            .finish_non_exhaustive()
    }
}

impl TargetKey {
    /// Reads a strict PKCS#8 DER `PrivateKeyInfo` of an RSA or EC key.
    ///
    /// Trailing bytes, unsupported sizes and curves, and inconsistent keys are refused. EC keys are accepted
    /// with or without the optional parameters and public key inside `ECPrivateKey`; the bytes are kept as given.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, Error> {
        let info = PrivateKeyInfoRef::from_der(der).map_err(|e| Error::malformed("PKCS#8 PrivateKeyInfo", e))?;
        let (kind, public) = check_private_key_info(&info)?;
        Ok(Self {
            kind,
            plaintext: Zeroizing::new(der.to_vec()),
            public: Some(public),
        })
    }

    /// Takes raw AES key bytes (16, 24 or 32).
    pub fn from_aes_bytes(raw: &[u8]) -> Result<Self, Error> {
        let size = AesSize::from_bytes(raw.len()).ok_or(Error::UnsupportedAesLength { len: raw.len() })?;
        Ok(Self {
            kind: KeyKind::Aes(size),
            plaintext: Zeroizing::new(raw.to_vec()),
            public: None,
        })
    }

    /// Reads the plaintext of a BYOK blob after unwrapping, strictly, as a vault must: exact PKCS#8 of the
    /// given family for RSA and EC, an exact AES length for oct.
    pub fn from_plaintext(kty: Kty, plaintext: &[u8]) -> Result<Self, Error> {
        let key = match kty {
            Kty::Oct => Self::from_aes_bytes(plaintext)?,
            Kty::Rsa | Kty::Ec => Self::from_pkcs8_der(plaintext)?,
        };
        if key.kind.kty() != kty {
            return Err(Error::KindMismatch {
                expected: kty.name(),
                found: key.kind.to_string(),
            });
        }
        Ok(key)
    }

    /// Reads an RSA or EC private key file in any common form and converts it to PKCS#8.
    ///
    /// Accepts PEM (`PRIVATE KEY`, `RSA PRIVATE KEY`, `EC PRIVATE KEY`, with an `EC PARAMETERS` block ignored)
    /// and DER (PKCS#8, PKCS#1 `RSAPrivateKey`, SEC1 `ECPrivateKey` with named-curve parameters).
    /// Encrypted PKCS#8 is refused with [`Error::EncryptedPrivateKey`].
    pub fn from_private_key_file(input: &[u8]) -> Result<Self, Error> {
        const WHAT: &str = "target key";
        const EXPECTED: &str = "`PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`";
        if pem::looks_like_pem(input) {
            let blocks = pem::blocks(input, WHAT)?;
            let block = blocks
                .iter()
                .find(|b| b.label != "EC PARAMETERS")
                .ok_or_else(|| Error::malformed(WHAT, "the PEM file holds only EC PARAMETERS, no private key"))?;
            return match block.label.as_str() {
                "PRIVATE KEY" => Self::from_pkcs8_der(&block.der),
                "RSA PRIVATE KEY" => Self::from_pkcs1_der(&block.der),
                "EC PRIVATE KEY" => Self::from_sec1_der(&block.der),
                "ENCRYPTED PRIVATE KEY" => Err(Error::EncryptedPrivateKey),
                other => Err(Error::UnexpectedPemLabel {
                    what: WHAT,
                    label: other.to_owned(),
                    expected: EXPECTED,
                }),
            };
        }
        if PrivateKeyInfoRef::from_der(input).is_ok() {
            return Self::from_pkcs8_der(input);
        }
        if is_encrypted_private_key_info(input) {
            return Err(Error::EncryptedPrivateKey);
        }
        if pkcs1::RsaPrivateKeyRef::from_der(input).is_ok() {
            return Self::from_pkcs1_der(input);
        }
        if sec1::EcPrivateKey::from_der(input).is_ok() {
            return Self::from_sec1_der(input);
        }
        Err(Error::UnrecognizedFormat {
            what: WHAT,
            expected: "a PEM or DER private key: PKCS#8, PKCS#1 or SEC1",
        })
    }

    /// Reads a PKCS#1 `RSAPrivateKey` and wraps it in PKCS#8.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self, Error> {
        let (size, public) = check_rsa(der)?;
        let algorithm = AlgorithmIdentifierRef {
            oid: RSA_ENCRYPTION,
            parameters: Some(AnyRef::NULL),
        };
        let plaintext = encode_pkcs8(algorithm, der)?;
        Ok(Self {
            kind: KeyKind::Rsa(size),
            plaintext,
            public: Some(public),
        })
    }

    /// Reads a SEC1 `ECPrivateKey` (which must name its curve) and wraps it in PKCS#8, the curve moved to the
    /// `AlgorithmIdentifier` and the public key kept (the layout OpenSSL writes).
    pub fn from_sec1_der(der: &[u8]) -> Result<Self, Error> {
        let (curve, public) = check_ec(der, None)?;
        let Some((_, point)) = public.ec() else {
            unreachable!("check_ec returns an EC public key")
        };
        let ec = sec1::EcPrivateKey::from_der(der).map_err(|e| Error::malformed("SEC1 ECPrivateKey", e))?;
        let inner = sec1::EcPrivateKey {
            private_key: ec.private_key,
            parameters: None,
            public_key: Some(point),
        };
        let inner_der = Zeroizing::new(inner.to_der().map_err(|e| Error::malformed("SEC1 ECPrivateKey", e))?);
        let curve_oid = ObjectIdentifier::new(curve.oid()).map_err(|e| Error::malformed("curve OID", e))?;
        let algorithm = AlgorithmIdentifierRef {
            oid: EC_PUBLIC_KEY,
            parameters: Some(AnyRef::from(&curve_oid)),
        };
        let plaintext = encode_pkcs8(algorithm, &inner_der)?;
        Ok(Self {
            kind: KeyKind::Ec(curve),
            plaintext,
            public: Some(public),
        })
    }

    /// Builds an RSA key from its components (as a private JWK carries them: n, e, d, p, q, dp, dq, qi), checks it
    /// like any other, and encodes it as PKCS#8.
    #[allow(clippy::too_many_arguments)]
    pub fn from_rsa_components(
        n: &[u8],
        e: &[u8],
        d: &[u8],
        p: &[u8],
        q: &[u8],
        dp: &[u8],
        dq: &[u8],
        qi: &[u8],
    ) -> Result<Self, Error> {
        fn uint<'a>(name: &str, v: &'a [u8]) -> Result<der::asn1::UintRef<'a>, Error> {
            der::asn1::UintRef::new(strip_zeros(v)).map_err(|_| Error::Malformed {
                what: "RSA key component",
                reason: format!("`{name}` is not an unsigned integer"),
            })
        }
        let key = pkcs1::RsaPrivateKey {
            modulus: uint("n", n)?,
            public_exponent: uint("e", e)?,
            private_exponent: uint("d", d)?,
            prime1: uint("p", p)?,
            prime2: uint("q", q)?,
            exponent1: uint("dp", dp)?,
            exponent2: uint("dq", dq)?,
            coefficient: uint("qi", qi)?,
            other_prime_infos: None,
        };
        let der = Zeroizing::new(key.to_der().map_err(|e| Error::malformed("PKCS#1 RSAPrivateKey", e))?);
        Self::from_pkcs1_der(&der)
    }

    /// Builds an EC key from its curve, private scalar and public point coordinates (as a private JWK carries
    /// them), checks that the point belongs to the scalar, and encodes it as PKCS#8.
    pub fn from_ec_components(curve: Curve, d: &[u8], x: &[u8], y: &[u8]) -> Result<Self, Error> {
        let n = curve.scalar_len();
        let fixed = |name: &str, v: &[u8]| -> Result<Vec<u8>, Error> {
            let v = strip_zeros(v);
            if v.len() > n {
                return Err(Error::Malformed {
                    what: "EC key component",
                    reason: format!("`{name}` is longer than {n} bytes"),
                });
            }
            let mut out = vec![0u8; n - v.len()];
            out.extend_from_slice(v);
            Ok(out)
        };
        let scalar = Zeroizing::new(fixed("d", d)?);
        let mut point = vec![0x04];
        point.extend(fixed("x", x)?);
        point.extend(fixed("y", y)?);
        let curve_oid = ObjectIdentifier::new(curve.oid()).map_err(|e| Error::malformed("curve OID", e))?;
        let ec = sec1::EcPrivateKey {
            private_key: &scalar,
            parameters: Some(sec1::EcParameters::NamedCurve(curve_oid)),
            public_key: Some(&point),
        };
        let der = Zeroizing::new(ec.to_der().map_err(|e| Error::malformed("SEC1 ECPrivateKey", e))?);
        Self::from_sec1_der(&der)
    }

    /// The key's family and size or curve.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The BYOK plaintext: PKCS#8 DER for RSA and EC, the raw bytes for AES. Handle with care.
    pub fn plaintext(&self) -> &[u8] {
        &self.plaintext
    }

    /// The public half (RSA and EC only), for later comparison with what the vault holds.
    pub fn public_key(&self) -> Option<&TargetPublicKey> {
        self.public.as_ref()
    }
}

fn check_private_key_info(info: &PrivateKeyInfoRef<'_>) -> Result<(KeyKind, TargetPublicKey), Error> {
    let oid = info.algorithm.oid;
    if oid == RSA_ENCRYPTION {
        // RFC 8017 A.1: parameters NULL; some encoders omit them.
        if let Some(p) = &info.algorithm.parameters
            && !p.is_null()
        {
            return Err(Error::malformed(
                "PKCS#8 PrivateKeyInfo",
                "rsaEncryption parameters must be NULL",
            ));
        }
        let (size, public) = check_rsa(info.private_key.as_bytes())?;
        Ok((KeyKind::Rsa(size), public))
    } else if oid == EC_PUBLIC_KEY {
        let curve_oid = info
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
            .ok_or_else(|| {
                Error::malformed(
                    "PKCS#8 PrivateKeyInfo",
                    "EC algorithm parameters must be a named-curve OID",
                )
            })?;
        let (curve, public) = check_ec(info.private_key.as_bytes(), Some(curve_oid))?;
        Ok((KeyKind::Ec(curve), public))
    } else {
        Err(Error::UnsupportedAlgorithm { oid: oid.to_string() })
    }
}

fn check_rsa(pkcs1_der: &[u8]) -> Result<(RsaSize, TargetPublicKey), Error> {
    let key = pkcs1::RsaPrivateKeyRef::from_der(pkcs1_der).map_err(|e| Error::malformed("PKCS#1 RSAPrivateKey", e))?;
    if key.version() != pkcs1::Version::TwoPrime {
        return Err(Error::InconsistentKey("multi-prime RSA keys are not supported".into()));
    }
    let n = key.modulus.as_bytes();
    let bits = bit_len(n);
    let size = RsaSize::from_bits(bits).ok_or(Error::UnsupportedRsaSize { bits })?;
    // Checks that the primes, exponents and modulus belong together.
    <rsa::PrivateKey as pkcs1::DecodeRsaPrivateKey>::from_pkcs1_der(pkcs1_der)
        .map_err(|e| Error::InconsistentKey(format!("RSA key components do not agree ({e})")))?;
    let public = TargetPublicKey::from_rsa_components(n, key.public_exponent.as_bytes())?;
    Ok((size, public))
}

macro_rules! ec_public_point {
    ($curve:ident, $scalar:expr, $stored:expr) => {{
        use $curve::elliptic_curve::sec1::ToSec1Point;
        let secret = $curve::SecretKey::from_slice($scalar)
            .map_err(|_| Error::InconsistentKey("the private scalar is zero or not below the group order".into()))?;
        let public = secret.public_key();
        if let Some(stored) = $stored {
            let stored = $curve::PublicKey::from_sec1_bytes(stored)
                .map_err(|_| Error::InconsistentKey("the embedded public key is not a point on the curve".into()))?;
            if stored != public {
                return Err(Error::InconsistentKey(
                    "the embedded public key does not belong to the private scalar".into(),
                ));
            }
        }
        public.to_sec1_point(false).as_bytes().to_vec()
    }};
}

fn check_ec(ec_der: &[u8], outer: Option<ObjectIdentifier>) -> Result<(Curve, TargetPublicKey), Error> {
    let key = sec1::EcPrivateKey::from_der(ec_der).map_err(|e| Error::malformed("SEC1 ECPrivateKey", e))?;
    let inner = key.parameters.map(|p| match p {
        sec1::EcParameters::NamedCurve(oid) => oid,
    });
    let oid = match (outer, inner) {
        (Some(a), Some(b)) if a != b => {
            return Err(Error::InconsistentKey(format!(
                "the PKCS#8 algorithm names curve {a} but the ECPrivateKey names {b}"
            )));
        }
        (Some(a), _) => a,
        (None, Some(b)) => b,
        (None, None) => {
            return Err(Error::malformed(
                "SEC1 ECPrivateKey",
                "it names no curve (parameters are missing)",
            ));
        }
    };
    let curve = Curve::from_oid(&oid.to_string()).ok_or_else(|| Error::UnsupportedCurve {
        curve: curve_display(&oid),
    })?;
    let scalar = key.private_key;
    if scalar.len() != curve.scalar_len() {
        return Err(Error::malformed(
            "SEC1 ECPrivateKey",
            format!(
                "the private scalar is {} bytes, {} needs exactly {} (RFC 5915)",
                scalar.len(),
                curve,
                curve.scalar_len()
            ),
        ));
    }
    let stored = key.public_key;
    let point = match curve {
        Curve::P256 => ec_public_point!(p256, scalar, stored),
        Curve::P384 => ec_public_point!(p384, scalar, stored),
        Curve::P521 => ec_public_point!(p521, scalar, stored),
        Curve::P256K => ec_public_point!(k256, scalar, stored),
    };
    Ok((curve, TargetPublicKey::from_ec_point(curve, &point)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_lengths() {
        for len in [16, 24, 32] {
            let key = TargetKey::from_aes_bytes(&vec![7; len]).expect("valid AES length");
            assert_eq!(key.kind().kty(), Kty::Oct);
            assert!(key.public_key().is_none());
        }
        assert_eq!(
            TargetKey::from_aes_bytes(&[0; 20]).err(),
            Some(Error::UnsupportedAesLength { len: 20 })
        );
    }

    #[test]
    fn debug_hides_plaintext() {
        let key = TargetKey::from_aes_bytes(&[0xAB; 16]).expect("valid");
        let shown = format!("{key:?}");
        assert!(!shown.contains("171"), "{shown}");
        assert!(!shown.to_lowercase().contains("abab"), "{shown}");
        assert!(shown.contains("plaintext_len: 16"));
    }
}
