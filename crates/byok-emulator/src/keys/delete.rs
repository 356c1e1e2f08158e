//! `DELETE /keys/{name}` and `/deletedkeys/{name}`: soft delete, the deleted key, purge and recover.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{admit, bundle, now};
use crate::Shared;
use crate::api_error::ApiError;
use crate::state::KeyVersion;

pub(super) fn deleted_bundle(shared: &Shared, name: &str, deleted_at: i64, latest: &KeyVersion) -> Value {
    let mut b = bundle(shared, name, latest);
    b["recoveryId"] = format!("{}/deletedkeys/{name}", shared.vault_url).into();
    b["deletedDate"] = deleted_at.into();
    b["scheduledPurgeDate"] = (deleted_at + 90 * 86_400).into();
    b
}

/// `DELETE /keys/{name}`: soft delete, recoverable for 90 days (or until purged).
pub(crate) async fn delete(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admit(&shared, &headers, &query) {
        return *r;
    }
    let mut state = shared.state.lock().expect("state lock");
    let Some(versions) = state.keys.remove(&name) else {
        return ApiError::not_found(format!("A key with (name/id) {name} was not found in this key vault."))
            .into_response();
    };
    let at = now();
    let body = versions.last().map(|l| deleted_bundle(&shared, &name, at, l));
    state.deleted.insert(name.clone(), (at, versions));
    if let Err(e) = state.persist(&shared.state_dir, &name) {
        return ApiError::internal(&e).into_response();
    }
    Json(body.unwrap_or(Value::Null)).into_response()
}

/// `GET /deletedkeys/{name}`, `DELETE /deletedkeys/{name}` (purge), `POST /deletedkeys/{name}/recover`.
pub(crate) async fn deleted(
    State(shared): State<Arc<Shared>>,
    method: axum::http::Method,
    Path(path): Path<BTreeMap<String, String>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admit(&shared, &headers, &query) {
        return *r;
    }
    let name = path.get("name").cloned().unwrap_or_default();
    let recover = path.get("action").is_some_and(|a| a == "recover");
    let mut state = shared.state.lock().expect("state lock");
    let Some((at, versions)) = state.deleted.get(&name).cloned() else {
        return ApiError::not_found(format!(
            "A deleted key with (name/id) {name} was not found in this key vault."
        ))
        .into_response();
    };
    let latest = versions.last().cloned();
    let response = match (method.as_str(), recover) {
        ("GET", false) => {
            return Json(latest.map_or(Value::Null, |l| deleted_bundle(&shared, &name, at, &l))).into_response();
        }
        ("DELETE", false) => {
            state.deleted.remove(&name);
            StatusCode::NO_CONTENT.into_response()
        }
        ("POST", true) => {
            state.deleted.remove(&name);
            state.keys.insert(name.clone(), versions);
            Json(latest.map_or(Value::Null, |l| bundle(&shared, &name, &l))).into_response()
        }
        _ => {
            return ApiError::forbidden("This operation is not emulated by the local Key Vault (yet).").into_response();
        }
    };
    if let Err(e) = state.persist(&shared.state_dir, &name) {
        return ApiError::internal(&e).into_response();
    }
    response
}
