//! A managed-identity token endpoint in App Service's form, the one the Azure SDKs read from `IDENTITY_ENDPOINT`
//! and `IDENTITY_HEADER`: `GET {endpoint}?api-version=2019-08-01&resource=…` with the secret in
//! `X-IDENTITY-HEADER`. It issues the same tokens as the client-credentials grant, for the audiences of this tenant's vaults,
//! so `--auth managed-identity` can be tested through a real transfer.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::Shared;

/// The path of the endpoint (`IDENTITY_ENDPOINT` is the authority host and this).
pub(crate) const PATH: &str = "/msi/token";

fn refusal(status: StatusCode, error: &str, description: String) -> Response {
    (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

/// `GET /msi/token`.
pub(crate) async fn token(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (secret, client_id) = {
        let state = shared.state.lock().expect("state lock");
        (state.identity_header.clone(), state.client_id.clone())
    };
    // App Service answers a missing or wrong secret with 401 and no token.
    let given = headers.get("x-identity-header").and_then(|v| v.to_str().ok());
    if given != Some(secret.as_str()) {
        let description = "the X-IDENTITY-HEADER header is missing or wrong".to_owned();
        return refusal(StatusCode::UNAUTHORIZED, "unauthorized", description);
    }
    if query.get("api-version").map(String::as_str) != Some("2019-08-01") {
        let description = "api-version must be 2019-08-01".to_owned();
        return refusal(StatusCode::BAD_REQUEST, "invalid_request", description);
    }
    let resource = query.get("resource").map(|r| r.trim_end_matches('/'));
    let Some(audience) = shared.audiences.iter().copied().find(|a| resource == Some(*a)) else {
        let description = format!(
            "the resource must be {} for this tenant's vaults",
            shared.audiences.join(" or ")
        );
        return refusal(StatusCode::BAD_REQUEST, "invalid_resource", description);
    };
    // One identity is assigned: the tenant's client. Another client id is "not assigned to this resource".
    if query.get("client_id").is_some_and(|c| *c != client_id) || query.contains_key("object_id") {
        let description = "the requested identity is not assigned to this resource".to_owned();
        return refusal(StatusCode::BAD_REQUEST, "invalid_request", description);
    }
    let issued = shared
        .tokens
        .lock()
        .expect("tokens lock")
        .issue(audience, shared.token_lifetime);
    let token = match issued {
        Ok(token) => token,
        Err(e) => return refusal(StatusCode::INTERNAL_SERVER_ERROR, "server_error", format!("{e:#}")),
    };
    let expires_on = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + shared.token_lifetime.as_secs();
    Json(json!({
        "access_token": token,
        "expires_on": expires_on.to_string(),
        "resource": audience,
        "token_type": "Bearer",
        "client_id": client_id,
    }))
    .into_response()
}
