//! `PUT /keys/{name}`: a BYOK blob unwrapped for real with the KEK's private key and parsed as strictly as a vault
//! must; a plain JWK import too.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use byok_blob::{ByokBlob, KeyId};
use byok_encoding::{Curve, KeyKind, Kty, TargetKey};
use byok_wrap::KekPrivateKey;
use serde_json::Value;

use super::create::generate_ec;
use super::{admit, key_ops_or_all, new_version, parse_body, store, valid_name};
use crate::Shared;
use crate::api_error::{ApiError, ApiResult};
use crate::state::Material;

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
pub(super) fn decode_key_hsm(text: &str) -> Result<Vec<u8>, ApiError> {
    let trimmed = text.trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .map_err(|_| {
            ApiError::bad("The property 'key.key_hsm' is not base64url: it must carry the .byok file's bytes.")
        })
}

pub(super) fn import_inner(shared: &Shared, name: &str, body: &[u8]) -> ApiResult {
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
    let ops = key_ops_or_all(key, kty)?;
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

pub(super) fn substitute_material(kind: KeyKind) -> Result<Material, ApiError> {
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
pub(super) fn jwk_import(shared: &Shared, name: &str, v: &Value, key: &Value) -> ApiResult {
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
    let ops = key_ops_or_all(key, target.kind().kty())?;
    check_import_ops(target.kind().kty(), &ops)?;
    let hsm = shared.managed_hsm || kty_text.ends_with("-HSM") || v.get("Hsm").and_then(Value::as_bool) == Some(true);
    let stored = if hsm { format!("{base}-HSM") } else { base.to_owned() };
    let version = new_version(&stored, ops, v, "jwk", material_of(&target))?;
    store(shared, name, version)
}

pub(super) fn check_import_ops(kty: Kty, ops: &[String]) -> Result<(), ApiError> {
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

pub(super) fn material_of(target: &TargetKey) -> Material {
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
pub(super) fn find_kek(shared: &Shared, kid: &KeyId) -> Result<KekPrivateKey, ApiError> {
    // Both sides are canonical (lowercase host, no default port): see `origin` and `KeyId::vault_url`.
    if !kid.vault_url().eq_ignore_ascii_case(&shared.vault_url) {
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
