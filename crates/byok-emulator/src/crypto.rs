//! Key operations on stored keys: sign and verify a digest (RS256/384/512, PS256/384/512, ES256/384/512, ES256K),
//! as Key Vault does — so that an imported key can be proven to be the source key.

use aws_lc_rs::digest::{Digest, SHA256, SHA384, SHA512};
use aws_lc_rs::signature::{self, EcdsaKeyPair, RsaKeyPair, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::api_error::ApiError;
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
    let public = key.public_key();
    let ok = match (
        &alg.kind,
        public.and_then(|p| p.to_pkcs1_der()),
        public.and_then(|p| p.ec()),
    ) {
        // ring-style RSA verification takes the PKCS#1 RSAPublicKey.
        (AlgKind::Rsa(_, params), Some(pkcs1), _) => UnparsedPublicKey::new(*params, pkcs1)
            .verify_digest(&digest, sig)
            .is_ok(),
        (AlgKind::Ec(_, verification, crv), _, Some((curve, point))) => {
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

/// What AES-GCM carries besides the ciphertext.
#[derive(Debug, Default)]
pub(crate) struct Gcm {
    pub(crate) iv: Vec<u8>,
    pub(crate) tag: Vec<u8>,
    pub(crate) aad: Vec<u8>,
}

/// AES-GCM with an AES key of the algorithm's size: encryption draws a fresh 12-byte IV and returns it with the
/// 16-byte tag (as Managed HSM does); decryption takes the IV, tag and optional AAD back.
pub(crate) fn gcm(
    v: &KeyVersion,
    alg_name: &str,
    encrypt: bool,
    input: &[u8],
    gcm: &Gcm,
) -> Result<(Vec<u8>, Gcm), ApiError> {
    use aws_lc_rs::aead::{AES_128_GCM, AES_192_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    let Material::Oct { key } = &v.material else {
        return Err(ApiError::bad(format!(
            "The algorithm {alg_name} does not suit a {} key.",
            v.kty
        )));
    };
    let key = zeroize::Zeroizing::new(STANDARD.decode(key).map_err(|_| ApiError::bad("The key is damaged."))?);
    let (alg, want) = match alg_name {
        "A128GCM" => (&AES_128_GCM, 16),
        "A192GCM" => (&AES_192_GCM, 24),
        _ => (&AES_256_GCM, 32),
    };
    if key.len() != want {
        return Err(ApiError::bad(format!(
            "The algorithm {alg_name} needs a {}-bit key.",
            want * 8
        )));
    }
    let sealing = LessSafeKey::new(UnboundKey::new(alg, &key).map_err(|_| ApiError::bad("The key is damaged."))?);
    if encrypt {
        let mut iv = [0u8; 12];
        getrandom::fill(&mut iv).map_err(|_| ApiError::bad("The OS random generator failed."))?;
        let mut data = input.to_vec();
        let tag = sealing
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::from(&gcm.aad), &mut data)
            .map_err(|_| ApiError::bad("AES-GCM encryption failed."))?;
        return Ok((
            data,
            Gcm {
                iv: iv.to_vec(),
                tag: tag.as_ref().to_vec(),
                aad: Vec::new(),
            },
        ));
    }
    let iv: [u8; 12] = gcm
        .iv
        .as_slice()
        .try_into()
        .map_err(|_| ApiError::bad("AES-GCM decryption needs the 12-byte 'iv'."))?;
    if gcm.tag.len() != 16 {
        return Err(ApiError::bad("AES-GCM decryption needs the 16-byte 'tag'."));
    }
    let mut data = input.to_vec();
    data.extend_from_slice(&gcm.tag);
    let plain = sealing
        .open_in_place(Nonce::assume_unique_for_key(iv), Aad::from(&gcm.aad), &mut data)
        .map_err(|_| ApiError::bad("AES-GCM decryption failed: wrong key, IV, tag or AAD."))?;
    Ok((plain.to_vec(), Gcm::default()))
}

/// AES-CBC (`A128CBC`…, input a multiple of 16 bytes) and AES-CBC with PKCS#7 padding (`A128CBCPAD`…) with an AES
/// key of the algorithm's size and the caller's 16-byte IV, as Managed HSM takes it.
pub(crate) fn cbc(v: &KeyVersion, alg_name: &str, encrypt: bool, input: &[u8], iv: &[u8]) -> Result<Vec<u8>, ApiError> {
    use aws_lc_rs::cipher::{
        AES_128, AES_192, AES_256, DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext,
        PaddedBlockDecryptingKey, PaddedBlockEncryptingKey, UnboundCipherKey,
    };
    use aws_lc_rs::iv::FixedLength;
    let Material::Oct { key } = &v.material else {
        return Err(ApiError::bad(format!(
            "The algorithm {alg_name} does not suit a {} key.",
            v.kty
        )));
    };
    let key = zeroize::Zeroizing::new(STANDARD.decode(key).map_err(|_| ApiError::bad("The key is damaged."))?);
    let padded = alg_name.ends_with("PAD");
    let (algorithm, want) = match &alg_name[..4] {
        "A128" => (&AES_128, 16),
        "A192" => (&AES_192, 24),
        _ => (&AES_256, 32),
    };
    if key.len() != want {
        return Err(ApiError::bad(format!(
            "The algorithm {alg_name} needs a {}-bit key.",
            want * 8
        )));
    }
    let iv: [u8; 16] = iv
        .try_into()
        .map_err(|_| ApiError::bad(format!("{alg_name} needs a 16-byte 'iv'.")))?;
    if !padded && (input.is_empty() || !input.len().is_multiple_of(16)) {
        return Err(ApiError::bad(format!(
            "{alg_name} takes a value whose length is a multiple of 16 bytes (use {alg_name}PAD otherwise)."
        )));
    }
    let unbound = || UnboundCipherKey::new(algorithm, &key).map_err(|_| ApiError::bad("The key is damaged."));
    let failed = || ApiError::bad(format!("{alg_name} failed: wrong key, IV or padding."));
    let mut data = input.to_vec();
    match (encrypt, padded) {
        (true, false) => {
            let k = EncryptingKey::cbc(unbound()?).map_err(|_| failed())?;
            k.less_safe_encrypt(&mut data, EncryptionContext::Iv128(FixedLength::from(iv)))
                .map_err(|_| failed())?;
        }
        (true, true) => {
            let k = PaddedBlockEncryptingKey::cbc_pkcs7(unbound()?).map_err(|_| failed())?;
            k.less_safe_encrypt(&mut data, EncryptionContext::Iv128(FixedLength::from(iv)))
                .map_err(|_| failed())?;
        }
        (false, false) => {
            let k = DecryptingKey::cbc(unbound()?).map_err(|_| failed())?;
            let n = k
                .decrypt(&mut data, DecryptionContext::Iv128(FixedLength::from(iv)))
                .map_err(|_| failed())?
                .len();
            data.truncate(n);
        }
        (false, true) => {
            let k = PaddedBlockDecryptingKey::cbc_pkcs7(unbound()?).map_err(|_| failed())?;
            let n = k
                .decrypt(&mut data, DecryptionContext::Iv128(FixedLength::from(iv)))
                .map_err(|_| failed())?
                .len();
            data.truncate(n);
        }
    }
    Ok(data)
}

/// Encrypt or wrap (`forward`), decrypt or unwrap (`!forward`) with a stored key: RSA-OAEP (SHA-1) and RSA-OAEP-256
/// for RSA keys, A128KW/A192KW/A256KW (RFC 3394) for AES keys of the matching size.
pub(crate) fn cipher(v: &KeyVersion, alg_name: &str, forward: bool, input: &[u8]) -> Result<Vec<u8>, ApiError> {
    use aws_lc_rs::rsa::{
        OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
        PrivateDecryptingKey,
    };
    match (&v.material, alg_name) {
        (Material::Rsa { .. }, "RSA-OAEP" | "RSA-OAEP-256") => {
            let oaep = if alg_name == "RSA-OAEP" {
                &OAEP_SHA1_MGF1SHA1
            } else {
                &OAEP_SHA256_MGF1SHA256
            };
            let der = pkcs8(&v.material)?;
            let private = PrivateDecryptingKey::from_pkcs8(&der).map_err(|_| ApiError::bad("The key is damaged."))?;
            if forward {
                let public = OaepPublicEncryptingKey::new(private.public_key())
                    .map_err(|_| ApiError::bad("The key is damaged."))?;
                let mut out = vec![0u8; public.ciphertext_size()];
                let n = public
                    .encrypt(oaep, input, &mut out, None)
                    .map_err(|_| ApiError::bad(format!("The value is too long for {alg_name} with this key.")))?
                    .len();
                out.truncate(n);
                Ok(out)
            } else {
                let key = OaepPrivateDecryptingKey::new(private).map_err(|_| ApiError::bad("The key is damaged."))?;
                let mut out = vec![0u8; key.min_output_size()];
                let n = key
                    .decrypt(oaep, input, &mut out, None)
                    .map_err(|_| {
                        ApiError::bad(format!(
                            "{alg_name} decryption failed: the value was not encrypted to this key."
                        ))
                    })?
                    .len();
                out.truncate(n);
                Ok(out)
            }
        }
        (Material::Oct { key }, "A128KW" | "A192KW" | "A256KW") => {
            let key = zeroize::Zeroizing::new(STANDARD.decode(key).map_err(|_| ApiError::bad("The key is damaged."))?);
            let want = match alg_name {
                "A128KW" => 16,
                "A192KW" => 24,
                _ => 32,
            };
            if key.len() != want {
                return Err(ApiError::bad(format!(
                    "The algorithm {alg_name} needs a {}-bit key.",
                    want * 8
                )));
            }
            aes_kw(&key, forward, input)
        }
        (_, "RSA-OAEP" | "RSA-OAEP-256" | "A128KW" | "A192KW" | "A256KW") => Err(ApiError::bad(format!(
            "The algorithm {alg_name} does not suit a {} key.",
            v.kty
        ))),
        (_, other) => Err(ApiError::bad(format!(
            "Invalid algorithm '{other}' (emulated: RSA-OAEP, RSA-OAEP-256, A128KW, A192KW, A256KW)."
        ))),
    }
}

fn aes_kw(key: &[u8], wrap: bool, input: &[u8]) -> Result<Vec<u8>, ApiError> {
    use aes_kw::{KeyInit, KwAes128, KwAes192, KwAes256};
    macro_rules! run {
        ($t:ty) => {{
            let kw = <$t>::new_from_slice(key).map_err(|_| ApiError::bad("The key is damaged."))?;
            if wrap {
                if input.len() < 16 || input.len() % 8 != 0 {
                    return Err(ApiError::bad(
                        "AES key wrap takes a value of at least 16 bytes, a multiple of 8.",
                    ));
                }
                let mut out = vec![0u8; input.len() + 8];
                kw.wrap_key(input, &mut out)
                    .map_err(|_| ApiError::bad("AES key wrap failed."))?;
                Ok(out)
            } else {
                if input.len() < 24 || input.len() % 8 != 0 {
                    return Err(ApiError::bad("The wrapped value is not an AES key wrap output."));
                }
                let mut out = vec![0u8; input.len() - 8];
                kw.unwrap_key(input, &mut out)
                    .map_err(|_| ApiError::bad("AES key unwrap failed: the integrity check did not pass."))?;
                Ok(out)
            }
        }};
    }
    match key.len() {
        16 => run!(KwAes128),
        24 => run!(KwAes192),
        _ => run!(KwAes256),
    }
}

#[cfg(test)]
mod tests {
    /// NIST SP 800-38A F.2.5 (CBC-AES256.Encrypt), first block.
    #[test]
    fn aes_cbc_matches_sp800_38a() {
        use base64::Engine as _;
        let key = hex::decode("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4").expect("hex");
        let v = crate::state::KeyVersion {
            version: "0".repeat(32),
            kty: "oct-HSM".into(),
            key_ops: vec!["encrypt".into()],
            enabled: true,
            nbf: None,
            exp: None,
            created: 0,
            updated: 0,
            exportable: false,
            tags: Default::default(),
            origin: "generated".into(),
            material: crate::state::Material::Oct {
                key: base64::engine::general_purpose::STANDARD.encode(&key),
            },
        };
        let iv = hex::decode("000102030405060708090a0b0c0d0e0f").expect("hex");
        let plain = hex::decode("6bc1bee22e409f96e93d7e117393172a").expect("hex");
        let run = |alg: &str, enc: bool, input: &[u8]| {
            super::cbc(&v, alg, enc, input, &iv).unwrap_or_else(|e| panic!("{alg}: {}", e.message))
        };
        let out = run("A256CBC", true, &plain);
        assert_eq!(hex::encode(&out), "f58c4c04d6e5f1ba779eabfb5f7bfbd6");
        assert_eq!(run("A256CBC", false, &out), plain);
        let padded = run("A256CBCPAD", true, b"abc");
        assert_eq!(padded.len(), 16);
        assert_eq!(run("A256CBCPAD", false, &padded), b"abc");
        assert!(super::cbc(&v, "A256CBC", true, b"abc", &iv).is_err());
        assert!(
            super::cbc(&v, "A128CBC", true, &plain, &iv).is_err(),
            "a 256-bit key is not A128"
        );
    }

    /// RFC 3394 §4.6: 256 bits of key data with a 256-bit KEK.
    #[test]
    fn aes_kw_matches_rfc3394() {
        let kek = hex::decode("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F").expect("hex");
        let data = hex::decode("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F").expect("hex");
        let expected = hex::decode("28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21")
            .expect("hex");
        let wrapped = super::aes_kw(&kek, true, &data).unwrap_or_else(|_| panic!("wraps"));
        assert_eq!(hex::encode_upper(&wrapped), hex::encode_upper(&expected));
        let unwrapped = super::aes_kw(&kek, false, &expected).unwrap_or_else(|_| panic!("unwraps"));
        assert_eq!(unwrapped, data);
    }
}
