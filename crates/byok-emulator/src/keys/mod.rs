//! The keys API, one file per REST resource: create, import, read, update, delete, and the key operations. Here:
//! what every handler shares (admission, the key bundle, the body's fields, storing a version).

mod attest;
mod create;
mod delete;
mod import;
mod operation;
mod read;
mod update;

pub(crate) use attest::{latest as attestation_latest, version as attestation};
pub(crate) use create::create;
pub(crate) use delete::{delete, deleted};
pub(crate) use import::import;
pub(crate) use operation::operation;
pub(crate) use read::{get_latest, get_version, list};
pub(crate) use update::update;

use std::collections::BTreeMap;

use axum::Json;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use byok_encoding::{Kty, TargetKey, TargetPublicKey};
use serde_json::{Value, json};

use crate::Shared;
use crate::api_error::{ApiError, ApiResult};
use crate::api_version;
use crate::auth::authorize;
use crate::state::{KeyVersion, Material, random_hex};

const OPS: [&str; 8] = [
    "encrypt",
    "decrypt",
    "sign",
    "verify",
    "wrapKey",
    "unwrapKey",
    "import",
    "export",
];

/// Every vault request: a bearer token first (the challenge comes before the body is read), then the api-version.
fn admit(shared: &Shared, headers: &HeaderMap, query: &BTreeMap<String, String>) -> Result<(), Box<Response>> {
    authorize(shared, headers)?;
    match query.get("api-version") {
        None => Err(Box::new(
            ApiError::bad("The api-version query parameter is required (e.g. api-version=7.5).").into_response(),
        )),
        Some(v) if api_version::accepted(v) => Ok(()),
        Some(v) => Err(Box::new(ApiError::bad(api_version::refusal(v)).into_response())),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The public JWK and attributes of a key version, as the service returns them.
fn bundle(shared: &Shared, name: &str, v: &KeyVersion) -> Value {
    let mut key = json!({
        "kid": format!("{}/keys/{name}/{}", shared.vault_url, v.version),
        "kty": v.kty,
        "key_ops": v.key_ops,
    });
    let public = match &v.material {
        Material::Rsa { pkcs8 } | Material::Ec { pkcs8 } => STANDARD
            .decode(pkcs8)
            .ok()
            .and_then(|der| TargetKey::from_pkcs8_der(&der).ok())
            .and_then(|k| k.public_key().cloned()),
        Material::Oct { .. } => None,
    };
    if let Some((n, e)) = public.as_ref().and_then(TargetPublicKey::rsa) {
        key["n"] = b64url(n).into();
        key["e"] = b64url(e).into();
    }
    if let Some((curve, point)) = public.as_ref().and_then(TargetPublicKey::ec) {
        let half = (point.len() - 1) / 2;
        key["crv"] = curve.azure_name().into();
        key["x"] = b64url(&point[1..1 + half]).into();
        key["y"] = b64url(&point[1 + half..]).into();
    }
    let mut attributes = json!({
        "enabled": v.enabled,
        "created": v.created,
        "updated": v.updated,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": 90,
        "exportable": v.exportable,
    });
    // Key Vault names the HSM platform of an HSM key (platform 2: FIPS 140-3 level 3); a Managed HSM does not.
    if !shared.managed_hsm && v.kty.ends_with("-HSM") {
        attributes["hsmPlatform"] = "2".into();
    }
    if let Some(nbf) = v.nbf {
        attributes["nbf"] = nbf.into();
    }
    if let Some(exp) = v.exp {
        attributes["exp"] = exp.into();
    }
    let mut out = json!({ "key": key, "attributes": attributes });
    if !v.tags.is_empty() {
        out["tags"] = json!(v.tags);
    }
    out
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("The request body is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad("The request body must be a JSON object."));
    }
    Ok(v)
}

/// The request's `key_ops`, checked; without them, what the service grants a new key: every operation its type
/// supports (the Azure CLI creates and imports without `key_ops` unless given `--ops`).
fn key_ops_or_all(v: &Value, family: Kty) -> Result<Vec<String>, ApiError> {
    if let Some(ops) = key_ops(v)? {
        return Ok(ops);
    }
    let all: &[&str] = match family {
        Kty::Rsa => &["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"],
        Kty::Ec => &["sign", "verify"],
        Kty::Oct => &["encrypt", "decrypt", "wrapKey", "unwrapKey"],
    };
    Ok(all.iter().map(|o| (*o).to_owned()).collect())
}

/// The request's `key_ops`, checked, if it has them.
fn key_ops(v: &Value) -> Result<Option<Vec<String>>, ApiError> {
    let Some(ops) = v.get("key_ops").filter(|o| !o.is_null()) else {
        return Ok(None);
    };
    let ops = ops
        .as_array()
        .ok_or_else(|| ApiError::bad("key_ops must be an array of strings."))?;
    let mut out = Vec::new();
    for op in ops {
        let op = op
            .as_str()
            .ok_or_else(|| ApiError::bad("key_ops must be an array of strings."))?;
        if !OPS.contains(&op) {
            return Err(ApiError::bad(format!(
                "Invalid key operation '{op}'. Valid operations: {}.",
                OPS.join(", ")
            )));
        }
        if !out.iter().any(|o| o == op) {
            out.push(op.to_owned());
        }
    }
    if out.iter().any(|o| o == "import") && out.len() > 1 {
        return Err(ApiError::bad(
            "The 'import' operation is mutually exclusive with all other key operations.",
        ));
    }
    Ok(Some(out))
}

fn attributes(v: &Value) -> Result<(bool, Option<i64>, Option<i64>, bool), ApiError> {
    let a = v.get("attributes").filter(|a| !a.is_null());
    let get_bool = |k: &str, default: bool| a.and_then(|a| a.get(k)).and_then(Value::as_bool).unwrap_or(default);
    let get_time = |k: &str| a.and_then(|a| a.get(k)).and_then(Value::as_i64);
    Ok((
        get_bool("enabled", true),
        get_time("nbf"),
        get_time("exp"),
        get_bool("exportable", false),
    ))
}

fn tags(v: &Value) -> Result<BTreeMap<String, String>, ApiError> {
    let Some(t) = v.get("tags").filter(|t| !t.is_null()) else {
        return Ok(BTreeMap::new());
    };
    let t = t
        .as_object()
        .ok_or_else(|| ApiError::bad("tags must be an object of strings."))?;
    t.iter()
        .map(|(k, v)| {
            v.as_str()
                .map(|s| (k.clone(), s.to_owned()))
                .ok_or_else(|| ApiError::bad("tags must be an object of strings."))
        })
        .collect()
}

fn valid_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > 127 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(ApiError::bad(format!(
            "The key name '{name}' is invalid: use 1 to 127 letters, digits and dashes."
        )));
    }
    Ok(())
}

fn store(shared: &Shared, name: &str, version: KeyVersion) -> ApiResult {
    let body = bundle(shared, name, &version);
    let mut state = shared.state.lock().expect("state lock");
    if state.deleted.contains_key(name) {
        return Err(ApiError::conflict(format!(
            "Key {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged."
        )));
    }
    state.keys.entry(name.to_owned()).or_default().push(version);
    state
        .persist(&shared.state_dir, name)
        .map_err(|e| ApiError::internal(&e))?;
    Ok(Json(body).into_response())
}

fn new_version(
    kty: &str,
    ops: Vec<String>,
    v: &Value,
    origin: &str,
    material: Material,
) -> Result<KeyVersion, ApiError> {
    let (enabled, nbf, exp, exportable) = attributes(v)?;
    let t = now();
    Ok(KeyVersion {
        version: random_hex(16),
        kty: kty.to_owned(),
        key_ops: ops,
        enabled,
        nbf,
        exp,
        created: t,
        updated: t,
        exportable,
        tags: tags(v)?,
        origin: origin.to_owned(),
        material,
    })
}

/// The handlers' inner functions, for the fuzz target (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_import(shared: &Shared, name: &str, body: &[u8]) -> ApiResult {
    import::import_inner(shared, name, body)
}

#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_create(shared: &Shared, name: &str, body: &[u8]) -> ApiResult {
    create::create_inner(shared, name, body)
}

#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_update(shared: &Shared, name: &str, version: &str, body: &[u8]) -> ApiResult {
    update::update_inner(shared, name, version, body)
}

#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_operation(shared: &Shared, name: &str, version: &str, op: &str, body: &[u8]) -> ApiResult {
    operation::operation_inner(shared, name, version, op, body)
}

/// Anything else under /keys.
pub(crate) async fn unsupported() -> Response {
    ApiError::forbidden("This operation is not emulated by the local Key Vault (yet).").into_response()
}
