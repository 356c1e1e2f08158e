//! `GET /keys`, `GET /keys/{name}`, `GET /keys/{name}/{version}`, and the versions of a key.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{admit, bundle};
use crate::Shared;
use crate::api_error::ApiError;

/// `GET /keys/{name}` and `GET /keys/{name}/`: the latest version.
pub(crate) async fn get_latest(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    get_version(State(shared), Path((name, String::new())), Query(query), headers).await
}

/// `GET /keys/{name}/{version}`.
pub(crate) async fn get_version(
    State(shared): State<Arc<Shared>>,
    Path((name, version)): Path<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admit(&shared, &headers, &query) {
        return *r;
    }
    if version == "versions" {
        return versions(&shared, &name, &query);
    }
    let state = shared.state.lock().expect("state lock");
    let found = state.keys.get(&name).and_then(|versions| {
        if version.is_empty() {
            versions.last()
        } else {
            versions.iter().find(|v| v.version.eq_ignore_ascii_case(&version))
        }
    });
    match found {
        Some(v) => Json(bundle(&shared, &name, v)).into_response(),
        None if state.keys.contains_key(&name) => ApiError::not_found(format!(
            "A key with (name/id) {name}/{version} was not found in this key vault."
        ))
        .into_response(),
        None => {
            ApiError::not_found(format!("A key with (name/id) {name} was not found in this key vault.")).into_response()
        }
    }
}

/// `GET /keys/{name}/versions`: every version of a key, a page at a time.
pub(super) fn versions(shared: &Shared, name: &str, query: &BTreeMap<String, String>) -> Response {
    let state = shared.state.lock().expect("state lock");
    let Some(versions) = state.keys.get(name) else {
        return ApiError::not_found(format!("A key with (name/id) {name} was not found in this key vault."))
            .into_response();
    };
    let items: Vec<Value> = versions
        .iter()
        .map(|v| {
            let b = bundle(shared, name, v);
            json!({ "kid": b["key"]["kid"], "attributes": b["attributes"], "tags": b.get("tags") })
        })
        .collect();
    page(shared, &format!("/keys/{name}/versions"), items, query)
}

/// `GET /keys`: every key's latest version, without material, a page at a time.
pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admit(&shared, &headers, &query) {
        return *r;
    }
    let state = shared.state.lock().expect("state lock");
    let items: Vec<Value> = state
        .keys
        .iter()
        .filter_map(|(name, versions)| versions.last().map(|v| (name, v)))
        .map(|(name, v)| {
            let b = bundle(&shared, name, v);
            json!({ "kid": format!("{}/keys/{name}", shared.vault_url), "attributes": b["attributes"], "tags": b.get("tags") })
        })
        .collect();
    page(&shared, "/keys", items, &query)
}

/// Key Vault's paging: `maxresults` 1 to 25 (25 when absent), and a `nextLink` carrying where the next page starts.
fn page(shared: &Shared, path: &str, items: Vec<Value>, query: &BTreeMap<String, String>) -> Response {
    let size = match query.get("maxresults").map(|m| m.parse::<usize>()) {
        None => 25,
        Some(Ok(n)) if (1..=25).contains(&n) => n,
        Some(_) => {
            return ApiError::bad("Invalid value for maxresults: it must be between 1 and 25.").into_response();
        }
    };
    let start = match query.get("$skiptoken").map(|t| t.parse::<usize>()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return ApiError::bad("The $skiptoken is invalid.").into_response(),
    };
    let end = items.len().min(start.saturating_add(size));
    let value: Vec<Value> = items.get(start..end).map(<[Value]>::to_vec).unwrap_or_default();
    let version = query.get("api-version").map_or("7.5", String::as_str);
    let next = (end < items.len()).then(|| {
        format!(
            "{}{path}?api-version={version}&$skiptoken={end}&maxresults={size}",
            shared.vault_url
        )
    });
    Json(json!({ "value": value, "nextLink": next })).into_response()
}
