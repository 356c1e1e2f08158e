//! Key kinds that Azure Key Vault and Managed HSM accept as BYOK targets, and their Azure names.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// RSA modulus sizes that Azure accepts, both for targets and for Key Exchange Keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RsaSize {
    /// 2048-bit modulus.
    Rsa2048,
    /// 3072-bit modulus.
    Rsa3072,
    /// 4096-bit modulus.
    Rsa4096,
}

impl RsaSize {
    /// All sizes, smallest first.
    pub const ALL: [Self; 3] = [Self::Rsa2048, Self::Rsa3072, Self::Rsa4096];

    /// The modulus length in bits.
    pub const fn bits(self) -> usize {
        match self {
            Self::Rsa2048 => 2048,
            Self::Rsa3072 => 3072,
            Self::Rsa4096 => 4096,
        }
    }

    /// The modulus length in bytes, which is also the length of an RSA ciphertext under this key.
    pub const fn bytes(self) -> usize {
        self.bits() / 8
    }

    /// The size for an exact modulus bit length, if Azure accepts it.
    pub fn from_bits(bits: usize) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.bits() == bits)
    }
}

impl fmt::Display for RsaSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RSA-{}", self.bits())
    }
}

/// Elliptic curves that Azure accepts for EC-HSM keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Curve {
    /// NIST P-256 (secp256r1, prime256v1).
    P256,
    /// NIST P-384 (secp384r1).
    P384,
    /// NIST P-521 (secp521r1).
    P521,
    /// secp256k1, which Azure calls `P-256K`.
    P256K,
}

impl Curve {
    /// All curves, in Azure's order.
    pub const ALL: [Self; 4] = [Self::P256, Self::P384, Self::P521, Self::P256K];

    /// The `crv` name Azure uses (`P-256`, `P-384`, `P-521`, `P-256K`).
    pub const fn azure_name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
            Self::P521 => "P-521",
            Self::P256K => "P-256K",
        }
    }

    /// The SEC 2 name (`secp256r1`, …).
    pub const fn sec_name(self) -> &'static str {
        match self {
            Self::P256 => "secp256r1",
            Self::P384 => "secp384r1",
            Self::P521 => "secp521r1",
            Self::P256K => "secp256k1",
        }
    }

    /// The named-curve object identifier, dotted.
    pub const fn oid(self) -> &'static str {
        match self {
            Self::P256 => "1.2.840.10045.3.1.7",
            Self::P384 => "1.3.132.0.34",
            Self::P521 => "1.3.132.0.35",
            Self::P256K => "1.3.132.0.10",
        }
    }

    /// The curve for a named-curve OID, dotted.
    pub fn from_oid(oid: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.oid() == oid)
    }

    /// The curve named by a DER `ECParameters` / `namedCurve` OID, as PKCS#11's `CKA_EC_PARAMS` holds it.
    pub fn from_ec_params_der(der: &[u8]) -> Result<Self, Error> {
        use der::Decode as _;
        let oid = der::asn1::ObjectIdentifier::from_der(der).map_err(|_| Error::Malformed {
            what: "EC parameters",
            reason: "not a named-curve OID (explicit curve parameters are not supported)".into(),
        })?;
        Self::from_oid(&oid.to_string()).ok_or_else(|| Error::UnsupportedCurve {
            curve: crate::der::curve_display(&oid),
        })
    }

    /// DER of the named-curve OID, for PKCS#11's `CKA_EC_PARAMS`.
    pub fn ec_params_der(self) -> Vec<u8> {
        use der::Encode as _;
        der::asn1::ObjectIdentifier::new_unwrap(self.oid())
            .to_der()
            .expect("an OID encodes")
    }

    /// Length of a private scalar in bytes (RFC 5915: ceiling of log2(n) / 8).
    pub const fn scalar_len(self) -> usize {
        match self {
            Self::P256 | Self::P256K => 32,
            Self::P384 => 48,
            Self::P521 => 66,
        }
    }
}

impl fmt::Display for Curve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.azure_name())
    }
}

impl FromStr for Curve {
    type Err = Error;

    /// Accepts Azure's names and the usual aliases, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Error> {
        let c = match s.to_ascii_lowercase().as_str() {
            "p-256" | "p256" | "secp256r1" | "prime256v1" => Self::P256,
            "p-384" | "p384" | "secp384r1" => Self::P384,
            "p-521" | "p521" | "secp521r1" => Self::P521,
            "p-256k" | "p256k" | "secp256k1" => Self::P256K,
            _ => return Err(Error::UnknownCurveName(s.to_owned())),
        };
        Ok(c)
    }
}

/// AES key sizes that Managed HSM accepts for oct-HSM keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AesSize {
    /// 16-byte key.
    Aes128,
    /// 24-byte key.
    Aes192,
    /// 32-byte key.
    Aes256,
}

impl AesSize {
    /// All sizes, smallest first.
    pub const ALL: [Self; 3] = [Self::Aes128, Self::Aes192, Self::Aes256];

    /// The key length in bits.
    pub const fn bits(self) -> usize {
        self.bytes() * 8
    }

    /// The key length in bytes.
    pub const fn bytes(self) -> usize {
        match self {
            Self::Aes128 => 16,
            Self::Aes192 => 24,
            Self::Aes256 => 32,
        }
    }

    /// The size for a key length in bytes.
    pub fn from_bytes(len: usize) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.bytes() == len)
    }
}

impl fmt::Display for AesSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AES-{}", self.bits())
    }
}

/// The key type family, as `az keyvault key import --kty` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kty {
    /// RSA (`RSA-HSM` in the import request).
    Rsa,
    /// Elliptic curve (`EC-HSM`).
    Ec,
    /// Symmetric AES (`oct-HSM`, Managed HSM only).
    Oct,
}

impl Kty {
    /// The HSM-protected `kty` that a BYOK import request must carry.
    pub const fn azure_hsm_name(self) -> &'static str {
        match self {
            Self::Rsa => "RSA-HSM",
            Self::Ec => "EC-HSM",
            Self::Oct => "oct-HSM",
        }
    }

    /// The short name (`RSA`, `EC`, `oct`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Rsa => "RSA",
            Self::Ec => "EC",
            Self::Oct => "oct",
        }
    }
}

impl fmt::Display for Kty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kty {
    type Err = Error;

    /// Accepts `RSA`, `EC`, `oct` and their `-HSM` forms, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Error> {
        let k = match s.to_ascii_lowercase().trim_end_matches("-hsm") {
            "rsa" => Self::Rsa,
            "ec" => Self::Ec,
            "oct" => Self::Oct,
            _ => return Err(Error::UnknownKty(s.to_owned())),
        };
        Ok(k)
    }
}

/// A key that can be transferred by BYOK: its family and size or curve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// An RSA private key.
    Rsa(RsaSize),
    /// An elliptic-curve private key.
    Ec(Curve),
    /// A raw AES key.
    Aes(AesSize),
}

impl KeyKind {
    /// The key type family.
    pub const fn kty(self) -> Kty {
        match self {
            Self::Rsa(_) => Kty::Rsa,
            Self::Ec(_) => Kty::Ec,
            Self::Aes(_) => Kty::Oct,
        }
    }

    /// The curve of an EC key.
    pub const fn curve(self) -> Option<Curve> {
        match self {
            Self::Ec(c) => Some(c),
            _ => None,
        }
    }

    /// A kind from its type and, for RSA and AES, a size in bits (default RSA-2048, AES-256), or for EC a curve.
    pub fn from_parts(kty: Kty, bits: Option<usize>, curve: Option<Curve>) -> Result<Self, Error> {
        let refused = |why| Err(Error::KeySpec(why));
        match (kty, bits, curve) {
            (Kty::Rsa, bits, None) => RsaSize::from_bits(bits.unwrap_or(2048))
                .map(Self::Rsa)
                .map_or_else(|| refused("an RSA key is 2048, 3072 or 4096 bits"), Ok),
            (Kty::Ec, None, Some(curve)) => Ok(Self::Ec(curve)),
            (Kty::Ec, None, None) => refused("an EC key needs a curve"),
            (Kty::Oct, bits, None) => Some(bits.unwrap_or(256))
                .filter(|b| b % 8 == 0)
                .and_then(|b| AesSize::from_bytes(b / 8))
                .map(Self::Aes)
                .map_or_else(|| refused("an AES (oct) key is 128, 192 or 256 bits"), Ok),
            (Kty::Ec, Some(_), _) => refused("a size does not apply to an EC key: give its curve"),
            (_, _, Some(_)) => refused("a curve applies to EC keys only"),
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rsa(s) => s.fmt(f),
            Self::Ec(c) => write!(f, "EC {c}"),
            Self::Aes(s) => s.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_parts_default_and_refuse_what_azure_cannot_import() {
        let parts = |kty, bits, curve| KeyKind::from_parts(kty, bits, curve).map_err(|e| e.to_string());
        assert_eq!(parts(Kty::Rsa, None, None), Ok(KeyKind::Rsa(RsaSize::Rsa2048)));
        assert_eq!(parts(Kty::Rsa, Some(4096), None), Ok(KeyKind::Rsa(RsaSize::Rsa4096)));
        assert_eq!(parts(Kty::Oct, None, None), Ok(KeyKind::Aes(AesSize::Aes256)));
        assert_eq!(parts(Kty::Oct, Some(128), None), Ok(KeyKind::Aes(AesSize::Aes128)));
        assert_eq!(parts(Kty::Ec, None, Some(Curve::P384)), Ok(KeyKind::Ec(Curve::P384)));
        assert!(parts(Kty::Rsa, Some(1024), None).is_err_and(|e| e.contains("2048, 3072 or 4096")));
        assert!(parts(Kty::Oct, Some(129), None).is_err_and(|e| e.contains("128, 192 or 256")));
        assert!(parts(Kty::Oct, Some(512), None).is_err());
        assert!(parts(Kty::Ec, None, None).is_err_and(|e| e.contains("needs a curve")));
        assert!(parts(Kty::Ec, Some(256), Some(Curve::P256)).is_err_and(|e| e.contains("does not apply")));
        assert!(parts(Kty::Rsa, None, Some(Curve::P256)).is_err_and(|e| e.contains("EC keys only")));
    }

    #[test]
    fn curve_names_round_trip() {
        for c in Curve::ALL {
            assert_eq!(c.azure_name().parse::<Curve>().ok(), Some(c));
            assert_eq!(c.sec_name().parse::<Curve>().ok(), Some(c));
            assert_eq!(Curve::from_oid(c.oid()), Some(c));
        }
        assert!("brainpoolP256r1".parse::<Curve>().is_err());
        for c in Curve::ALL {
            assert_eq!(Curve::from_ec_params_der(&c.ec_params_der()).ok(), Some(c));
        }
        // brainpoolP256r1
        let brainpool = [0x06, 0x09, 0x2b, 0x24, 0x03, 0x03, 0x02, 0x08, 0x01, 0x01, 0x07];
        assert_eq!(
            Curve::from_ec_params_der(&brainpool).err(),
            Some(Error::UnsupportedCurve {
                curve: "brainpoolP256r1 (1.3.36.3.3.2.8.1.1.7)".into()
            })
        );
    }

    #[test]
    fn kty_accepts_hsm_suffix() {
        assert_eq!("RSA-HSM".parse::<Kty>().ok(), Some(Kty::Rsa));
        assert_eq!("oct".parse::<Kty>().ok(), Some(Kty::Oct));
        assert_eq!("ec".parse::<Kty>().ok(), Some(Kty::Ec));
        assert!("DSA".parse::<Kty>().is_err());
        assert_eq!(Kty::Oct.azure_hsm_name(), "oct-HSM");
    }

    #[test]
    fn sizes() {
        assert_eq!(RsaSize::from_bits(3072), Some(RsaSize::Rsa3072));
        assert_eq!(RsaSize::from_bits(1024), None);
        assert_eq!(AesSize::from_bytes(24), Some(AesSize::Aes192));
        assert_eq!(AesSize::from_bytes(20), None);
        assert_eq!(KeyKind::Ec(Curve::P521).to_string(), "EC P-521");
    }
}
