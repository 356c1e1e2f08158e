//! `POST /keys/{name}/{version}/{operation}`: encrypt, decrypt, sign, verify, wrapKey, unwrapKey with the key.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::{admit, b64url, parse_body};
use crate::Shared;
use crate::api_error::{ApiError, ApiResult};

/// `POST /keys/{name}/{version}/{operation}`: sign and verify; the other operations are not emulated yet.
pub(crate) async fn operation(
    State(shared): State<Arc<Shared>>,
    Path((name, version, op)): Path<(String, String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = admit(&shared, &headers, &query) {
        return *r;
    }
    operation_inner(&shared, &name, &version, &op, &body).unwrap_or_else(IntoResponse::into_response)
}

pub(super) fn b64_field(v: &Value, field: &str) -> Result<Vec<u8>, ApiError> {
    let text = v
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad(format!("The property '{field}' is required.")))?;
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| ApiError::bad(format!("The property '{field}' is not base64url.")))
}

pub(super) fn operation_inner(shared: &Shared, name: &str, version: &str, op: &str, body: &[u8]) -> ApiResult {
    let required_op = match op {
        "sign" | "verify" | "encrypt" | "decrypt" => op,
        "wrapkey" => "wrapKey",
        "unwrapkey" => "unwrapKey",
        _ => {
            return Err(ApiError::forbidden(format!(
                "The operation '{op}' is not emulated by the local Key Vault (yet)."
            )));
        }
    };
    let v = parse_body(body)?;
    let key = {
        let state = shared.state.lock().expect("state lock");
        state
            .keys
            .get(name)
            .and_then(|vs| vs.iter().find(|k| k.version.eq_ignore_ascii_case(version)))
            .cloned()
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "A key with (name/id) {name}/{version} was not found in this key vault."
                ))
            })?
    };
    if !key.enabled {
        return Err(ApiError::forbidden(format!(
            "Operation {op} is not allowed on a disabled key."
        )));
    }
    if !key.key_ops.iter().any(|o| o == required_op) {
        return Err(ApiError::forbidden(format!(
            "Operation {op} is not permitted on this key."
        )));
    }
    let alg = v
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad("The property 'alg' is required."))?;
    let kid = format!("{}/keys/{name}/{}", shared.vault_url, key.version);
    if matches!(op, "encrypt" | "decrypt") && alg.contains("CBC") {
        let out = crate::crypto::cbc(
            &key,
            alg,
            op == "encrypt",
            &b64_field(&v, "value")?,
            &b64_field(&v, "iv")?,
        )?;
        return Ok(Json(json!({ "kid": kid, "value": b64url(&out) })).into_response());
    }
    if matches!(op, "encrypt" | "decrypt") && alg.ends_with("GCM") {
        let input = b64_field(&v, "value")?;
        let optional = |f: &str| {
            if v.get(f).is_some_and(|x| !x.is_null()) {
                b64_field(&v, f)
            } else {
                Ok(Vec::new())
            }
        };
        let params = crate::crypto::Gcm {
            iv: optional("iv")?,
            tag: optional("tag")?,
            aad: optional("aad")?,
        };
        let (out, extra) = crate::crypto::gcm(&key, alg, op == "encrypt", &input, &params)?;
        let mut body = json!({ "kid": kid, "value": b64url(&out) });
        if op == "encrypt" {
            body["iv"] = b64url(&extra.iv).into();
            body["tag"] = b64url(&extra.tag).into();
        }
        return Ok(Json(body).into_response());
    }
    if matches!(op, "encrypt" | "decrypt" | "wrapkey" | "unwrapkey") {
        let input = b64_field(&v, "value")?;
        let out = crate::crypto::cipher(&key, alg, matches!(op, "encrypt" | "wrapkey"), &input)?;
        return Ok(Json(json!({ "kid": kid, "value": b64url(&out) })).into_response());
    }
    if op == "sign" {
        let digest = b64_field(&v, "value")?;
        let sig = crate::crypto::sign(&key, alg, &digest)?;
        return Ok(Json(json!({ "kid": kid, "value": b64url(&sig) })).into_response());
    }
    let digest = b64_field(&v, "digest")?;
    let sig = b64_field(&v, "value")?;
    let ok = crate::crypto::verify(&key, alg, &digest, &sig)?;
    Ok(Json(json!({ "value": ok })).into_response())
}
