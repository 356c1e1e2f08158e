//! Enough of Azure Resource Manager for `az login --service-principal … --allow-no-subscriptions`: the CLI lists
//! subscriptions (and may list tenants) on the cloud's resource-manager endpoint, which a rehearsal points here.
//! The same tenant's tokens are required, as ARM requires them; the answer is the tenant with no subscription.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::Shared;

fn arm_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({ "error": { "code": code, "message": message } }))).into_response()
}

/// ARM's checks, in its order: a bearer token this tenant issued, then an api-version.
fn admit(shared: &Shared, headers: &HeaderMap, query: &BTreeMap<String, String>) -> Result<(), Box<Response>> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    let Some(token) = token else {
        let message = "Authentication failed. The 'Authorization' header is missing.";
        return Err(Box::new(arm_error(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailed",
            message,
        )));
    };
    // ARM takes a token of this tenant for any of its vaults' audiences (the clients tested ask for no other).
    let tokens = shared.tokens.lock().expect("tokens lock");
    let checks: Vec<_> = shared.audiences.iter().map(|a| tokens.check(a, token)).collect();
    drop(tokens);
    if let Some(Err(why)) = checks.iter().find(|c| c.is_ok()).or(checks.first()).copied() {
        let message = format!("Authentication failed: {why}.");
        return Err(Box::new(arm_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            &message,
        )));
    }
    if !query.contains_key("api-version") {
        let message = "The api-version query parameter (?api-version=) is required for all requests.";
        return Err(Box::new(arm_error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            message,
        )));
    }
    Ok(())
}

/// `GET /subscriptions`: none (a rehearsal needs a tenant-level login only).
pub(crate) async fn subscriptions(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admit(&shared, &headers, &query) {
        return *r;
    }
    Json(json!({ "value": [], "count": { "type": "Total", "value": 0 } })).into_response()
}

/// `GET /tenants`: this vault's tenant.
pub(crate) async fn tenants(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admit(&shared, &headers, &query) {
        return *r;
    }
    let tenant_id = shared.state.lock().expect("state lock").tenant_id.clone();
    Json(json!({
        "value": [{
            "id": format!("/tenants/{tenant_id}"),
            "tenantId": tenant_id,
            "tenantCategory": "Home",
            "displayName": "byok local tenant",
        }],
        "count": { "type": "Total", "value": 1 },
    }))
    .into_response()
}
