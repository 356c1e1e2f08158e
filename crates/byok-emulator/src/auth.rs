//! Entra ID and Key Vault authentication, as clients meet it: a client-credentials token endpoint, the OpenID
//! documents MSAL fetches, and the `401` challenge that tells a client where to get a token and for what audience.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use serde::Deserialize;
use serde_json::json;

use crate::Shared;

/// How long an access token lives.
pub(crate) const TOKEN_LIFETIME: Duration = Duration::from_secs(3599);

#[derive(Debug, Deserialize)]
pub(crate) struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_assertion_type: Option<String>,
    client_assertion: Option<String>,
    scope: Option<String>,
}

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn oauth_error(status: StatusCode, error: &str, description: String) -> Response {
    (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

/// `POST /{tenant}/oauth2/v2.0/token`: the client-credentials grant.
pub(crate) async fn token(
    State(shared): State<std::sync::Arc<Shared>>,
    Path(tenant): Path<String>,
    Form(req): Form<TokenRequest>,
) -> Response {
    let (tenant_id, client_id, secret, federated) = {
        let state = shared.state.lock().expect("state lock");
        (
            state.tenant_id.clone(),
            state.client_id.clone(),
            state.client_secret.clone(),
            state.federated_token.clone(),
        )
    };
    if tenant != tenant_id {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("AADSTS90002: tenant '{tenant}' not found"),
        );
    }
    if req.grant_type.as_deref() != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only grant_type=client_credentials is supported".into(),
        );
    }
    if req.client_id.as_deref() != Some(client_id.as_str()) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "AADSTS700016: unknown client_id".into(),
        );
    }
    match (&req.client_secret, &req.client_assertion) {
        (Some(given), None) if *given == secret => {}
        (Some(_), None) => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "AADSTS7000215: invalid client secret".into(),
            );
        }
        (None, Some(assertion)) => {
            if req.client_assertion_type.as_deref() != Some(JWT_BEARER) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    format!("AADSTS50027: client_assertion_type must be {JWT_BEARER}"),
                );
            }
            if assertion.trim() != federated {
                return oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "AADSTS700213: no matching federated identity record found for the presented assertion".into(),
                );
            }
        }
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "AADSTS7000218: the request must contain exactly one of client_secret and client_assertion".into(),
            );
        }
    }
    // One tenant issues tokens for every vault this process serves, each token for the audience asked for.
    let scopes: Vec<&str> = req.scope.as_deref().unwrap_or_default().split(' ').collect();
    let Some(audience) = shared
        .audiences
        .iter()
        .copied()
        .find(|a| scopes.contains(&format!("{a}/.default").as_str()))
    else {
        let wanted: Vec<String> = shared.audiences.iter().map(|a| format!("{a}/.default")).collect();
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            format!(
                "AADSTS70011: the scope must be {} for this tenant's vaults",
                wanted.join(" or ")
            ),
        );
    };
    let issued = shared
        .tokens
        .lock()
        .expect("tokens lock")
        .issue(audience, shared.token_lifetime);
    let token = match issued {
        Ok(token) => token,
        Err(e) => return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", format!("{e:#}")),
    };
    Json(json!({
        "token_type": "Bearer",
        "expires_in": shared.token_lifetime.as_secs(),
        "ext_expires_in": shared.token_lifetime.as_secs(),
        "access_token": token,
    }))
    .into_response()
}

/// The OpenID configuration MSAL-based clients fetch before asking for a token.
pub(crate) async fn openid_configuration(
    State(shared): State<std::sync::Arc<Shared>>,
    Path(tenant): Path<String>,
) -> Response {
    let base = format!("{}/{tenant}", shared.authority_host);
    Json(json!({
        "issuer": format!("{base}/v2.0"),
        "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
        "token_endpoint": format!("{base}/oauth2/v2.0/token"),
        "device_authorization_endpoint": format!("{base}/oauth2/v2.0/devicecode"),
        "jwks_uri": format!("{base}/discovery/v2.0/keys"),
        "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "tenant_region_scope": "WW",
    }))
    .into_response()
}

/// The challenge: where to get a token, and for which resource.
pub(crate) fn challenge(shared: &Shared, message: &str) -> Response {
    let tenant_id = shared.state.lock().expect("state lock").tenant_id.clone();
    let value = format!(
        "Bearer authorization=\"{}/{tenant_id}\", resource=\"{}\"",
        shared.authority_host, shared.audience
    );
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(header::WWW_AUTHENTICATE, v);
    }
    (
        StatusCode::UNAUTHORIZED,
        headers,
        Json(json!({ "error": { "code": "Unauthorized", "message": message } })),
    )
        .into_response()
}

/// Checks the bearer token of a vault request; `Err` is the response to send.
pub(crate) fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Box::new(challenge(
            shared,
            "AKV10000: Request is missing a Bearer or PoP token.",
        )));
    };
    let value = value.to_str().unwrap_or_default();
    let token = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .ok_or_else(|| {
            Box::new(challenge(
                shared,
                "AKV10022: Invalid audience or token: not a Bearer token.",
            ))
        })?;
    shared
        .tokens
        .lock()
        .expect("tokens lock")
        .check(shared.audience, token)
        .map_err(|why| Box::new(challenge(shared, &format!("AKV10032: Invalid token: {why}."))))
}
