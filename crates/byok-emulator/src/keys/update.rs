//! `PATCH /keys/{name}/{version}`: attributes, operations and tags of a version.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{admit, bundle, key_ops, now, parse_body, tags};
use crate::Shared;
use crate::api_error::{ApiError, ApiResult};

/// `PATCH /keys/{name}/{version}` (or `/keys/{name}/` for the latest): attributes, key_ops, tags.
pub(crate) async fn update(
    State(shared): State<Arc<Shared>>,
    Path(path): Path<BTreeMap<String, String>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = admit(&shared, &headers, &query) {
        return *r;
    }
    let name = path.get("name").cloned().unwrap_or_default();
    let version = path.get("version").cloned().unwrap_or_default();
    update_inner(&shared, &name, &version, &body).unwrap_or_else(IntoResponse::into_response)
}

pub(super) fn update_inner(shared: &Shared, name: &str, version: &str, body: &[u8]) -> ApiResult {
    let v = parse_body(body)?;
    let mut state = shared.state.lock().expect("state lock");
    let versions = state
        .keys
        .get_mut(name)
        .ok_or_else(|| ApiError::not_found(format!("A key with (name/id) {name} was not found in this key vault.")))?;
    let key = if version.is_empty() {
        versions.last_mut()
    } else {
        versions.iter_mut().find(|k| k.version.eq_ignore_ascii_case(version))
    }
    .ok_or_else(|| {
        ApiError::not_found(format!(
            "A key with (name/id) {name}/{version} was not found in this key vault."
        ))
    })?;
    if let Some(ops) = key_ops(&v)? {
        if (key.key_ops == ["import"]) != (ops == ["import"]) {
            return Err(ApiError::bad(
                "The 'import' operation of a KEK cannot be added or removed.",
            ));
        }
        key.key_ops = ops;
    }
    if let Some(a) = v.get("attributes").filter(|a| a.is_object()) {
        if let Some(e) = a.get("enabled").and_then(Value::as_bool) {
            key.enabled = e;
        }
        if let Some(t) = a.get("nbf") {
            key.nbf = t.as_i64();
        }
        if let Some(t) = a.get("exp") {
            key.exp = t.as_i64();
        }
    }
    if v.get("tags").is_some_and(|t| !t.is_null()) {
        key.tags = tags(&v)?;
    }
    key.updated = now();
    let updated = key.clone();
    state
        .persist(&shared.state_dir, name)
        .map_err(|e| ApiError::internal(&e))?;
    Ok(Json(bundle(shared, name, &updated)).into_response())
}
