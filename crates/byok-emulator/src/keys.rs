//! The keys API: create, get, list, and import — plain JSON Web Keys are not accepted yet; BYOK blobs are unwrapped
//! for real with the KEK's private key and parsed as strictly as a vault must.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use byok_blob::{ByokBlob, KeyId};
use byok_encoding::{Curve, KeyKind, Kty, RsaSize, TargetKey, TargetPublicKey};
use byok_wrap::KekPrivateKey;
use serde_json::{Value, json};

use crate::Shared;
use crate::auth::authorize;
use crate::state::{KeyVersion, Material, random_hex};

/// The API versions this vault answers; the SDKs' defaults among them.
pub(crate) const API_VERSIONS: [&str; 4] = ["7.4", "7.5", "7.6", "2025-07-01"];

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

/// A refusal in the service's error shape.
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn bad(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "BadParameter",
            message: message.into(),
        }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "KeyNotFound",
            message: message.into(),
        }
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            code: "Forbidden",
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({ "error": { "code": self.code, "message": self.message } })),
        )
            .into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

/// Every vault request: a bearer token first (the challenge comes before the body is read), then the api-version.
fn admit(shared: &Shared, headers: &HeaderMap, query: &BTreeMap<String, String>) -> Result<(), Box<Response>> {
    authorize(shared, headers)?;
    match query.get("api-version") {
        None => Err(Box::new(
            ApiError::bad("The api-version query parameter is required (e.g. api-version=7.5).").into_response(),
        )),
        Some(v) if API_VERSIONS.contains(&v.as_str()) => Ok(()),
        Some(v) => Err(Box::new(
            ApiError::bad(format!(
                "The specified version ({v}) is not recognized. Consider using the latest supported version (2025-07-01)."
            ))
            .into_response(),
        )),
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

fn key_ops(v: &Value) -> Result<Vec<String>, ApiError> {
    let Some(ops) = v.get("key_ops").filter(|o| !o.is_null()) else {
        return Ok(Vec::new());
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
    Ok(out)
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
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            code: "Conflict",
            message: format!(
                "Key {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged."
            ),
        });
    }
    state.keys.entry(name.to_owned()).or_default().push(version);
    state.persist(&shared.state_dir, name).map_err(|e| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "InternalError",
        message: format!("{e:#}"),
    })?;
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

fn create_inner(shared: &Shared, name: &str, body: &[u8]) -> ApiResult {
    valid_name(name)?;
    let v = parse_body(body)?;
    let kty = v
        .get("kty")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad("The property 'kty' is required."))?;
    let ops = key_ops(&v)?;
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

fn generate_ec(curve: Curve) -> Result<Vec<u8>, ApiError> {
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

/// `PUT /keys/{name}`: import.
pub(crate) async fn import(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = admit(&shared, &headers, &query) {
        return *r;
    }
    import_inner(&shared, &name, &body).unwrap_or_else(IntoResponse::into_response)
}

/// Decodes `key_hsm`: base64url without padding, as the SDKs send it, or with padding / standard base64, which
/// some tools send.
fn decode_key_hsm(text: &str) -> Result<Vec<u8>, ApiError> {
    let trimmed = text.trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .map_err(|_| {
            ApiError::bad("The property 'key.key_hsm' is not base64url: it must carry the .byok file's bytes.")
        })
}

fn import_inner(shared: &Shared, name: &str, body: &[u8]) -> ApiResult {
    valid_name(name)?;
    let v = parse_body(body)?;
    let key = v
        .get("key")
        .filter(|k| k.is_object())
        .ok_or_else(|| ApiError::bad("The property 'key' is required."))?;
    let Some(key_hsm) = key.get("key_hsm").filter(|k| !k.is_null()) else {
        return jwk_import(shared, name, &v, key);
    };
    let key_hsm = key_hsm
        .as_str()
        .ok_or_else(|| ApiError::bad("The property 'key.key_hsm' must be a string."))?;
    let kty_text = key
        .get("kty")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad("The property 'key.kty' is required."))?;
    let kty = match kty_text {
        "RSA-HSM" => Kty::Rsa,
        "EC-HSM" => Kty::Ec,
        "oct-HSM" => Kty::Oct,
        "RSA" | "EC" | "oct" => {
            return Err(ApiError::bad(format!(
                "A BYOK import needs an HSM key type: use kty '{kty_text}-HSM', not '{kty_text}'."
            )));
        }
        other => return Err(ApiError::bad(format!("Invalid kty value '{other}'."))),
    };
    if kty == Kty::Oct && !shared.managed_hsm {
        return Err(ApiError::bad(
            "Invalid kty value 'oct-HSM': symmetric keys can be imported only into a Managed HSM.",
        ));
    }
    let ops = key_ops(key)?;
    check_import_ops(kty, &ops)?;
    let file = decode_key_hsm(key_hsm)?;
    {
        let mut blobs = shared.received_blobs.lock().expect("blobs lock");
        if blobs.len() < crate::MAX_BLOBS {
            blobs.push(file.clone());
        }
    }
    let blob = ByokBlob::from_json(&file)
        .map_err(|e| ApiError::bad(format!("The BYOK blob in key.key_hsm is invalid: {e}.")))?;
    let kek = find_kek(shared, blob.kid())?;
    let plaintext = kek.unwrap(blob.ciphertext()).map_err(|e| {
        ApiError::bad(format!(
            "The BYOK blob cannot be opened with the KEK {}: {e}.",
            blob.kid()
        ))
    })?;
    let target = TargetKey::from_plaintext(kty, &plaintext).map_err(|e| {
        ApiError::bad(format!(
            "The key unwrapped from the BYOK blob is not a valid {kty_text} key: {e}."
        ))
    })?;
    if let KeyKind::Ec(curve) = target.kind() {
        match key.get("crv").and_then(Value::as_str) {
            None => {
                return Err(ApiError::bad(format!(
                    "The property 'key.crv' is required for EC-HSM (this key is {curve})."
                )));
            }
            Some(crv) if crv != curve.azure_name() => {
                return Err(ApiError::bad(format!(
                    "key.crv is '{crv}', but the key unwrapped from the BYOK blob is on {curve}."
                )));
            }
            Some(_) => {}
        }
    }
    let material = if crate::faults::substitute(shared) {
        // A vault that lies (an injected fault): it keeps a fresh key of the same kind, not the one it was sent.
        substitute_material(target.kind())?
    } else {
        material_of(&target)
    };
    let version = new_version(kty_text, ops, &v, "byok", material)?;
    store(shared, name, version)
}

fn substitute_material(kind: KeyKind) -> Result<Material, ApiError> {
    Ok(match kind {
        KeyKind::Rsa(size) => {
            let key = KekPrivateKey::generate(size).map_err(|e| ApiError::bad(e.to_string()))?;
            let der = key.to_pkcs8_der().map_err(|e| ApiError::bad(e.to_string()))?;
            Material::Rsa {
                pkcs8: STANDARD.encode(&*der),
            }
        }
        KeyKind::Ec(curve) => Material::Ec {
            pkcs8: STANDARD.encode(generate_ec(curve)?),
        },
        KeyKind::Aes(size) => {
            let mut key = zeroize::Zeroizing::new(vec![0u8; size.bytes()]);
            getrandom::fill(&mut key).map_err(|_| ApiError::bad("The OS random generator failed."))?;
            Material::Oct {
                key: STANDARD.encode(&*key),
            }
        }
    })
}

/// A private key given as a JSON Web Key (the service accepts them; the key then existed in plaintext).
fn jwk_import(shared: &Shared, name: &str, v: &Value, key: &Value) -> ApiResult {
    let kty_text = key
        .get("kty")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad("The property 'key.kty' is required."))?;
    let field = |f: &str| -> Result<zeroize::Zeroizing<Vec<u8>>, ApiError> {
        let text = key.get(f).and_then(Value::as_str).ok_or_else(|| {
            ApiError::bad(format!(
                "The property 'key.{f}' is required to import a {kty_text} key."
            ))
        })?;
        URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map(zeroize::Zeroizing::new)
            .map_err(|_| ApiError::bad(format!("The property 'key.{f}' is not base64url.")))
    };
    let invalid =
        |e: byok_encoding::Error| ApiError::bad(format!("The key in 'key' is not a valid {kty_text} key: {e}."));
    let (base, target) = match kty_text {
        "RSA" | "RSA-HSM" => (
            "RSA",
            TargetKey::from_rsa_components(
                &field("n")?,
                &field("e")?,
                &field("d")?,
                &field("p")?,
                &field("q")?,
                &field("dp")?,
                &field("dq")?,
                &field("qi")?,
            )
            .map_err(invalid)?,
        ),
        "EC" | "EC-HSM" => {
            let crv = key
                .get("crv")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::bad("The property 'key.crv' is required for EC."))?;
            let curve: Curve = crv
                .parse()
                .map_err(|_| ApiError::bad(format!("Invalid curve '{crv}': use P-256, P-384, P-521 or P-256K.")))?;
            (
                "EC",
                TargetKey::from_ec_components(curve, &field("d")?, &field("x")?, &field("y")?).map_err(invalid)?,
            )
        }
        "oct" | "oct-HSM" if shared.managed_hsm => ("oct", TargetKey::from_aes_bytes(&field("k")?).map_err(invalid)?),
        "oct" | "oct-HSM" => {
            return Err(ApiError::bad(format!(
                "Invalid kty value '{kty_text}': symmetric keys exist only in a Managed HSM."
            )));
        }
        other => return Err(ApiError::bad(format!("Invalid kty value '{other}'."))),
    };
    let ops = key_ops(key)?;
    check_import_ops(target.kind().kty(), &ops)?;
    let hsm = shared.managed_hsm || kty_text.ends_with("-HSM") || v.get("Hsm").and_then(Value::as_bool) == Some(true);
    let stored = if hsm { format!("{base}-HSM") } else { base.to_owned() };
    let version = new_version(&stored, ops, v, "jwk", material_of(&target))?;
    store(shared, name, version)
}

fn check_import_ops(kty: Kty, ops: &[String]) -> Result<(), ApiError> {
    if kty == Kty::Ec
        && ops
            .iter()
            .any(|o| matches!(o.as_str(), "encrypt" | "decrypt" | "wrapKey" | "unwrapKey"))
    {
        return Err(ApiError::bad(
            "EC keys support only the sign and verify operations; remove the others from key_ops.",
        ));
    }
    if ops.iter().any(|o| o == "import") {
        return Err(ApiError::bad(
            "An imported key cannot have the 'import' operation (only a KEK has it).",
        ));
    }
    Ok(())
}

fn material_of(target: &TargetKey) -> Material {
    match target.kind() {
        KeyKind::Rsa(_) => Material::Rsa {
            pkcs8: STANDARD.encode(target.plaintext()),
        },
        KeyKind::Ec(_) => Material::Ec {
            pkcs8: STANDARD.encode(target.plaintext()),
        },
        KeyKind::Aes(_) => Material::Oct {
            key: STANDARD.encode(target.plaintext()),
        },
    }
}

/// The KEK a blob names: in this vault, existing, RSA-HSM, with key_ops exactly ["import"].
fn find_kek(shared: &Shared, kid: &KeyId) -> Result<KekPrivateKey, ApiError> {
    if kid.vault_url() != shared.vault_url {
        return Err(ApiError::bad(format!(
            "The BYOK blob's KEK {kid} is in another vault ({}); a blob can be imported only into the vault or \
             Managed HSM that holds its KEK ({}).",
            kid.vault_url(),
            shared.vault_url
        )));
    }
    let state = shared.state.lock().expect("state lock");
    let version = state
        .keys
        .get(kid.name())
        .and_then(|versions| versions.iter().find(|v| v.version.eq_ignore_ascii_case(kid.version())))
        .ok_or_else(|| ApiError::bad(format!("The BYOK blob's KEK {kid} does not exist in this vault.")))?;
    if version.kty != "RSA-HSM" || version.key_ops != ["import"] {
        return Err(ApiError::bad(format!(
            "The BYOK blob's KEK {kid} is not a Key Exchange Key: it is {} with key_ops {:?}, but a KEK is RSA-HSM with \
             key_ops exactly [\"import\"].",
            version.kty, version.key_ops
        )));
    }
    let Material::Rsa { pkcs8 } = &version.material else {
        return Err(ApiError::bad(format!("The BYOK blob's KEK {kid} is not an RSA key.")));
    };
    let der = zeroize::Zeroizing::new(
        STANDARD
            .decode(pkcs8)
            .map_err(|_| ApiError::bad("The KEK is damaged."))?,
    );
    KekPrivateKey::from_pkcs8_der(&der).map_err(|e| ApiError::bad(format!("The KEK is damaged: {e}.")))
}

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
        return versions(&shared, &name);
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

/// `GET /keys/{name}/versions`: every version of a key.
fn versions(shared: &Shared, name: &str) -> Response {
    let state = shared.state.lock().expect("state lock");
    let Some(versions) = state.keys.get(name) else {
        return ApiError::not_found(format!("A key with (name/id) {name} was not found in this key vault."))
            .into_response();
    };
    let value: Vec<Value> = versions
        .iter()
        .map(|v| {
            let b = bundle(shared, name, v);
            json!({ "kid": b["key"]["kid"], "attributes": b["attributes"], "tags": b.get("tags") })
        })
        .collect();
    Json(json!({ "value": value, "nextLink": null })).into_response()
}

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

fn update_inner(shared: &Shared, name: &str, version: &str, body: &[u8]) -> ApiResult {
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
    if v.get("key_ops").is_some_and(|o| !o.is_null()) {
        let ops = key_ops(&v)?;
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
    state.persist(&shared.state_dir, name).map_err(|e| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "InternalError",
        message: format!("{e:#}"),
    })?;
    Ok(Json(bundle(shared, name, &updated)).into_response())
}

fn deleted_bundle(shared: &Shared, name: &str, deleted_at: i64, latest: &KeyVersion) -> Value {
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
        return ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "InternalError",
            message: format!("{e:#}"),
        }
        .into_response();
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
        return ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "InternalError",
            message: format!("{e:#}"),
        }
        .into_response();
    }
    response
}

/// `GET /keys`: every key's latest version, without material.
pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admit(&shared, &headers, &query) {
        return *r;
    }
    let state = shared.state.lock().expect("state lock");
    let value: Vec<Value> = state
        .keys
        .iter()
        .filter_map(|(name, versions)| versions.last().map(|v| (name, v)))
        .map(|(name, v)| {
            let b = bundle(&shared, name, v);
            json!({ "kid": format!("{}/keys/{name}", shared.vault_url), "attributes": b["attributes"], "tags": b.get("tags") })
        })
        .collect();
    Json(json!({ "value": value, "nextLink": null })).into_response()
}

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

fn b64_field(v: &Value, field: &str) -> Result<Vec<u8>, ApiError> {
    let text = v
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad(format!("The property '{field}' is required.")))?;
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| ApiError::bad(format!("The property '{field}' is not base64url.")))
}

fn operation_inner(shared: &Shared, name: &str, version: &str, op: &str, body: &[u8]) -> ApiResult {
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

/// The handlers' inner functions, for the fuzz target (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_import(shared: &Shared, name: &str, body: &[u8]) -> ApiResult {
    import_inner(shared, name, body)
}

#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_create(shared: &Shared, name: &str, body: &[u8]) -> ApiResult {
    create_inner(shared, name, body)
}

#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_update(shared: &Shared, name: &str, version: &str, body: &[u8]) -> ApiResult {
    update_inner(shared, name, version, body)
}

#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_operation(shared: &Shared, name: &str, version: &str, op: &str, body: &[u8]) -> ApiResult {
    operation_inner(shared, name, version, op, body)
}

/// Anything else under /keys.
pub(crate) async fn unsupported() -> Response {
    ApiError::forbidden("This operation is not emulated by the local Key Vault (yet).").into_response()
}
