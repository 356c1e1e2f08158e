//! Key operations on stored keys: sign and verify a digest (RS256/384/512, PS256/384/512, ES256/384/512, ES256K),
//! as Key Vault does — so that an imported key can be proven to be the source key.

use aws_lc_rs::digest::{Digest, SHA256, SHA384, SHA512};
use aws_lc_rs::signature::{self, EcdsaKeyPair, RsaKeyPair, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::keys::ApiError;
use crate::state::{KeyVersion, Material};

struct Alg {
    digest: &'static aws_lc_rs::digest::Algorithm,
    kind: AlgKind,
}

enum AlgKind {
    Rsa(&'static dyn signature::RsaEncoding, &'static signature::RsaParameters),
    Ec(
        &'static signature::EcdsaSigningAlgorithm,
        &'static signature::EcdsaVerificationAlgorithm,
        &'static str,
    ),
}

fn alg(name: &str) -> Result<Alg, ApiError> {
    use AlgKind::{Ec, Rsa};
    let a = match name {
        "RS256" => Alg {
            digest: &SHA256,
            kind: Rsa(&signature::RSA_PKCS1_SHA256, &signature::RSA_PKCS1_2048_8192_SHA256),
        },
        "RS384" => Alg {
            digest: &SHA384,
            kind: Rsa(&signature::RSA_PKCS1_SHA384, &signature::RSA_PKCS1_2048_8192_SHA384),
        },
        "RS512" => Alg {
            digest: &SHA512,
            kind: Rsa(&signature::RSA_PKCS1_SHA512, &signature::RSA_PKCS1_2048_8192_SHA512),
        },
        "PS256" => Alg {
            digest: &SHA256,
            kind: Rsa(&signature::RSA_PSS_SHA256, &signature::RSA_PSS_2048_8192_SHA256),
        },
        "PS384" => Alg {
            digest: &SHA384,
            kind: Rsa(&signature::RSA_PSS_SHA384, &signature::RSA_PSS_2048_8192_SHA384),
        },
        "PS512" => Alg {
            digest: &SHA512,
            kind: Rsa(&signature::RSA_PSS_SHA512, &signature::RSA_PSS_2048_8192_SHA512),
        },
        "ES256" => Alg {
            digest: &SHA256,
            kind: Ec(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &signature::ECDSA_P256_SHA256_FIXED,
                "P-256",
            ),
        },
        "ES384" => Alg {
            digest: &SHA384,
            kind: Ec(
                &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                &signature::ECDSA_P384_SHA384_FIXED,
                "P-384",
            ),
        },
        "ES512" => Alg {
            digest: &SHA512,
            kind: Ec(
                &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
                &signature::ECDSA_P521_SHA512_FIXED,
                "P-521",
            ),
        },
        "ES256K" => Alg {
            digest: &SHA256,
            kind: Ec(
                &signature::ECDSA_P256K1_SHA256_FIXED_SIGNING,
                &signature::ECDSA_P256K1_SHA256_FIXED,
                "P-256K",
            ),
        },
        other => return Err(ApiError::bad(format!("Invalid algorithm '{other}' for sign/verify."))),
    };
    Ok(a)
}

fn pkcs8(material: &Material) -> Result<zeroize::Zeroizing<Vec<u8>>, ApiError> {
    match material {
        Material::Rsa { pkcs8 } | Material::Ec { pkcs8 } => STANDARD
            .decode(pkcs8)
            .map(zeroize::Zeroizing::new)
            .map_err(|_| ApiError::bad("The key is damaged.")),
        Material::Oct { .. } => Err(ApiError::bad("Symmetric keys cannot sign or verify.")),
    }
}

fn digest_of(alg: &Alg, name: &str, digest: &[u8]) -> Result<Digest, ApiError> {
    Digest::import_less_safe(digest, alg.digest).map_err(|_| {
        ApiError::bad(format!(
            "The digest for {name} must be {} bytes, not {}.",
            alg.digest.output_len(),
            digest.len()
        ))
    })
}

fn curve_of(v: &KeyVersion) -> Option<String> {
    let der = pkcs8(&v.material).ok()?;
    let key = byok_encoding::TargetKey::from_pkcs8_der(&der).ok()?;
    key.kind().curve().map(|c| c.azure_name().to_owned())
}

/// Signs a digest with a stored key. The key must allow `sign` and suit the algorithm.
pub(crate) fn sign(v: &KeyVersion, alg_name: &str, digest: &[u8]) -> Result<Vec<u8>, ApiError> {
    let alg = alg(alg_name)?;
    let digest = digest_of(&alg, alg_name, digest)?;
    let der = pkcs8(&v.material)?;
    match (&alg.kind, &v.material) {
        (AlgKind::Rsa(encoding, _), Material::Rsa { .. }) => {
            let pair = RsaKeyPair::from_pkcs8(&der).map_err(|_| ApiError::bad("The RSA key cannot sign."))?;
            let mut sig = vec![0u8; pair.public_modulus_len()];
            pair.sign_digest(*encoding, &digest, &mut sig)
                .map_err(|_| ApiError::bad("RSA signing failed."))?;
            Ok(sig)
        }
        (AlgKind::Ec(signing, _, crv), Material::Ec { .. }) => {
            if curve_of(v).as_deref() != Some(crv) {
                return Err(ApiError::bad(format!("The algorithm {alg_name} needs a {crv} key.")));
            }
            let pair = EcdsaKeyPair::from_pkcs8(signing, &der).map_err(|_| ApiError::bad("The EC key cannot sign."))?;
            let sig = pair
                .sign_digest(&digest)
                .map_err(|_| ApiError::bad("EC signing failed."))?;
            Ok(sig.as_ref().to_vec())
        }
        _ => Err(ApiError::bad(format!(
            "The algorithm {alg_name} does not suit a {} key.",
            v.kty
        ))),
    }
}

/// Verifies a signature over a digest with a stored key's public half.
pub(crate) fn verify(v: &KeyVersion, alg_name: &str, digest: &[u8], sig: &[u8]) -> Result<bool, ApiError> {
    let alg = alg(alg_name)?;
    let digest = digest_of(&alg, alg_name, digest)?;
    let der = pkcs8(&v.material)?;
    let key = byok_encoding::TargetKey::from_pkcs8_der(&der).map_err(|_| ApiError::bad("The key is damaged."))?;
    let ok = match (&alg.kind, key.public_key()) {
        (AlgKind::Rsa(_, params), Some(public @ byok_encoding::TargetPublicKey::Rsa { .. })) => {
            // ring-style RSA verification takes the PKCS#1 RSAPublicKey.
            let pkcs1 = public
                .to_pkcs1_der()
                .ok_or_else(|| ApiError::bad("The key is damaged."))?;
            UnparsedPublicKey::new(*params, pkcs1)
                .verify_digest(&digest, sig)
                .is_ok()
        }
        (AlgKind::Ec(_, verification, crv), Some(byok_encoding::TargetPublicKey::Ec { curve, point })) => {
            if curve.azure_name() != *crv {
                return Err(ApiError::bad(format!("The algorithm {alg_name} needs a {crv} key.")));
            }
            UnparsedPublicKey::new(*verification, point)
                .verify_digest(&digest, sig)
                .is_ok()
        }
        _ => {
            return Err(ApiError::bad(format!(
                "The algorithm {alg_name} does not suit a {} key.",
                v.kty
            )));
        }
    };
    Ok(ok)
}
