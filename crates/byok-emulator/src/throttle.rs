//! The service limits at work: the middleware that sorts each vault request into Key Vault's classes, weighs it by
//! the key it names, and admits it or answers `429` (`limits` holds the table and the windows).

use std::time::Duration;

use crate::limits::Class;

/// The middleware: counts each authorized vault request in its class and answers `429` beyond the threshold, with
/// `Retry-After` (whole seconds, at least 1, as the service sends it) and `x-ms-retry-after-ms` (the exact wait; a
/// scaled clock's waits are shorter than a second).
pub(crate) async fn enforce(
    axum::extract::State(shared): axum::extract::State<std::sync::Arc<crate::Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let Some(limits) = &shared.limits else {
        return next.run(request).await;
    };
    // The challenge (a request without a token) is answered before anything is counted.
    if !request.headers().contains_key(axum::http::header::AUTHORIZATION) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 256 * 1024).await else {
        return crate::api_error::ApiError::bad("The request body is too large.").into_response();
    };
    let (class, kind) = classify(&shared, &parts.method, parts.uri.path(), &bytes);
    match limits.cost(&kind, class) {
        Some((budget, weight)) => {
            if let Err(wait) = shared.windows.admit(class, budget, weight, limits.window()) {
                return throttled(wait);
            }
        }
        None => {
            shared
                .windows
                .counted
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

fn throttled(wait: Duration) -> axum::response::Response {
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::IntoResponse as _;
    let body = serde_json::json!({ "error": { "code": "Throttled", "message":
        "Request was not processed because too many requests were received. Reason: A1 (service limits)" } });
    let mut r = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    if let Ok(v) = HeaderValue::from_str(&seconds.max(1).to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&wait.as_millis().max(1).to_string()) {
        r.headers_mut().insert("x-ms-retry-after-ms", v);
    }
    r
}

/// A request's class and the kind of key it is about: imports and creations are CREATEs (HSM unless a software
/// type is created), everything else counts against the key it names as its latest version is.
fn classify(shared: &crate::Shared, method: &axum::http::Method, path: &str, body: &[u8]) -> (Class, String) {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let body: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let is_create = match segments.as_slice() {
        ["keys", _] => method == axum::http::Method::PUT,
        ["keys", _, "create"] => method == axum::http::Method::POST,
        _ => false,
    };
    if is_create {
        let kty = body["kty"].as_str().or(body["key"]["kty"].as_str()).unwrap_or("");
        let software = !(kty.ends_with("-HSM") || body["Hsm"] == true || body["key"]["key_hsm"].is_string());
        let class = if software {
            Class::SoftwareCreate
        } else {
            Class::HsmCreate
        };
        return (class, "EC".to_owned());
    }
    let (hsm, kind) = segments
        .get(1)
        .filter(|_| segments.first().is_some_and(|s| *s == "keys" || *s == "deletedkeys"))
        .and_then(|name| key_kind(shared, name))
        .unwrap_or((true, "EC".to_owned()));
    (if hsm { Class::HsmOther } else { Class::SoftwareOther }, kind)
}

/// Whether key `name`'s latest version is an HSM key, and its row: `RSA-2048`…, `EC`, `oct`.
fn key_kind(shared: &crate::Shared, name: &str) -> Option<(bool, String)> {
    use base64::Engine as _;
    let state = shared.state.lock().expect("state lock");
    let v = state.keys.get(name)?.last()?;
    let hsm = v.kty.ends_with("-HSM");
    let kind = match &v.material {
        crate::state::Material::Rsa { pkcs8 } => base64::engine::general_purpose::STANDARD
            .decode(pkcs8)
            .ok()
            .and_then(|der| byok_encoding::TargetKey::from_pkcs8_der(&der).ok())
            .map_or("RSA-2048".to_owned(), |k| k.kind().to_string()),
        crate::state::Material::Ec { .. } => "EC".to_owned(),
        crate::state::Material::Oct { .. } => "oct".to_owned(),
    };
    Some((hsm, kind))
}
