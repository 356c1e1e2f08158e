//! `POST /keys/{name}/create`: keys made in the vault (a KEK among them), RSA, EC or AES.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use byok_encoding::{Curve, Kty, RsaSize};
use byok_wrap::KekPrivateKey;
use serde_json::Value;

use super::{admit, key_ops_or_all, new_version, parse_body, store, valid_name};
use crate::Shared;
use crate::api_error::{ApiError, ApiResult};
use crate::state::Material;

/// `POST /keys/{name}/create`.
pub(crate) async fn create(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = admit(&shared, &headers, &query) {
        return *r;
    }
    create_inner(&shared, &name, &body).unwrap_or_else(IntoResponse::into_response)
}

pub(super) fn create_inner(shared: &Shared, name: &str, body: &[u8]) -> ApiResult {
    valid_name(name)?;
    let v = parse_body(body)?;
    let kty = v
        .get("kty")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad("The property 'kty' is required."))?;
    let family = match kty {
        "EC" | "EC-HSM" => Kty::Ec,
        "oct" | "oct-HSM" => Kty::Oct,
        _ => Kty::Rsa,
    };
    let ops = key_ops_or_all(&v, family)?;
    let (stored_kty, material) = match kty {
        "RSA" | "RSA-HSM" => {
            let bits = v.get("key_size").and_then(Value::as_u64).unwrap_or(2048) as usize;
            let size = RsaSize::from_bits(bits)
                .ok_or_else(|| ApiError::bad(format!("Invalid key_size {bits} for RSA: use 2048, 3072 or 4096.")))?;
            let key = KekPrivateKey::generate(size).map_err(|e| ApiError::bad(e.to_string()))?;
            let der = key.to_pkcs8_der().map_err(|e| ApiError::bad(e.to_string()))?;
            (
                if shared.managed_hsm { "RSA-HSM" } else { kty },
                Material::Rsa {
                    pkcs8: STANDARD.encode(&*der),
                },
            )
        }
        "EC" | "EC-HSM" => {
            let crv = v.get("crv").and_then(Value::as_str).unwrap_or("P-256");
            let curve: Curve = crv
                .parse()
                .map_err(|_| ApiError::bad(format!("Invalid curve '{crv}': use P-256, P-384, P-521 or P-256K.")))?;
            if ops
                .iter()
                .any(|o| matches!(o.as_str(), "encrypt" | "decrypt" | "wrapKey" | "unwrapKey" | "import"))
            {
                return Err(ApiError::bad("EC keys support only the sign and verify operations."));
            }
            (
                if shared.managed_hsm { "EC-HSM" } else { kty },
                Material::Ec {
                    pkcs8: STANDARD.encode(generate_ec(curve)?),
                },
            )
        }
        "oct-HSM" if shared.managed_hsm => {
            let bits = v.get("key_size").and_then(Value::as_u64).unwrap_or(256) as usize;
            if !matches!(bits, 128 | 192 | 256) {
                return Err(ApiError::bad(format!(
                    "Invalid key_size {bits} for oct-HSM: use 128, 192 or 256."
                )));
            }
            let mut key = zeroize::Zeroizing::new(vec![0u8; bits / 8]);
            getrandom::fill(&mut key).map_err(|_| ApiError::bad("The OS random generator failed."))?;
            (
                "oct-HSM",
                Material::Oct {
                    key: STANDARD.encode(&*key),
                },
            )
        }
        "oct-HSM" | "oct" => {
            return Err(ApiError::bad(format!(
                "Invalid kty value '{kty}': symmetric keys exist only in a Managed HSM (as oct-HSM)."
            )));
        }
        other => return Err(ApiError::bad(format!("Invalid kty value '{other}'."))),
    };
    let version = new_version(stored_kty, ops, &v, "generated", material)?;
    store(shared, name, version)
}

pub(super) fn generate_ec(curve: Curve) -> Result<Vec<u8>, ApiError> {
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256K1_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING,
        ECDSA_P521_SHA512_ASN1_SIGNING, EcdsaKeyPair,
    };
    let alg = match curve {
        Curve::P256 => &ECDSA_P256_SHA256_ASN1_SIGNING,
        Curve::P384 => &ECDSA_P384_SHA384_ASN1_SIGNING,
        Curve::P521 => &ECDSA_P521_SHA512_ASN1_SIGNING,
        Curve::P256K => &ECDSA_P256K1_SHA256_ASN1_SIGNING,
    };
    let pair = EcdsaKeyPair::generate(alg).map_err(|_| ApiError::bad("EC key generation failed."))?;
    // PKCS#8, as every stored EC key is (the public half is read back from it).
    let der = pair
        .to_pkcs8v1()
        .map_err(|_| ApiError::bad("EC key encoding failed."))?;
    Ok(der.as_ref().to_vec())
}
