//! `GET /keys/{name}/{version}/attestation` (and `/keys/{name}/attestation`, the latest version): the key bundle
//! with `attributes.attestation`, as a Managed HSM answers since api-version 7.6 — the attested attributes in the
//! `MRVL-1` layout, signed by the local vault's own test chain ([`crate::attestation`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use byok_encoding::{KeyKind, TargetKey};
use serde_json::json;

use super::{admit, b64url, bundle};
use crate::Shared;
use crate::api_error::ApiError;
use crate::faults::AttestationFault;
use crate::state::{KeyVersion, Material};

/// The api-versions that have the route (it arrived in 7.6-preview.2).
const VERSIONS: [&str; 3] = ["7.6-preview.2", "7.6", "2025-07-01"];

/// `GET /keys/{name}/attestation`.
pub(crate) async fn latest(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    version(State(shared), Path((name, String::new())), Query(query), headers).await
}

/// `GET /keys/{name}/{version}/attestation`.
pub(crate) async fn version(
    State(shared): State<Arc<Shared>>,
    Path((name, version)): Path<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admit(&shared, &headers, &query) {
        return *r;
    }
    answer(&shared, &name, &version, &query).unwrap_or_else(IntoResponse::into_response)
}

fn answer(shared: &Shared, name: &str, version: &str, query: &BTreeMap<String, String>) -> Result<Response, ApiError> {
    let api = query.get("api-version").map(String::as_str).unwrap_or_default();
    if !VERSIONS.contains(&api) {
        return Err(ApiError::bad(format!(
            "Key attestation is not available in api-version {api}: use 7.6 or later."
        )));
    }
    if !shared.managed_hsm {
        return Err(ApiError::bad("Key attestation is available on Managed HSM only."));
    }
    let v = {
        let state = shared.state.lock().expect("state lock");
        let versions = state.keys.get(name);
        let found = versions.and_then(|vs| match version {
            "" => vs.last(),
            v => vs.iter().find(|k| k.version.eq_ignore_ascii_case(v)),
        });
        found.cloned().ok_or_else(|| {
            ApiError::not_found(format!(
                "A key with (name/id) {name}/{version} was not found in this key vault."
            ))
        })?
    };
    let authority = shared
        .attestation()
        .map_err(|e| ApiError::internal(&anyhow::anyhow!("the attestation authority is unavailable: {e}")))?;
    let fault = shared.faults.attestation_of(name);
    let object = Object::of(name, &v, fault);
    let sign = |data: Vec<u8>| authority.sign(&data).map_err(|e| ApiError::internal(&e));
    let mut private = sign(object.blob(false))?;
    if fault == Some(AttestationFault::Forged) {
        let last = private.len() - 1;
        private[last] ^= 0x01;
    }
    let public = match object.public {
        Public::None => None,
        _ => Some(sign(object.blob(true))?),
    };
    let mut out = bundle(shared, name, &v);
    out["attributes"]["attestation"] = json!({
        "certificatePemFile": b64url(authority.bundle().as_bytes()),
        "privateKeyAttestation": b64url(&private),
        "publicKeyAttestation": public.map(|p| b64url(&p)),
        "version": "MRVL-1",
    });
    Ok(Json(out).into_response())
}

/// The public part an attestation shows.
enum Public {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ec { params: Vec<u8>, point: Vec<u8> },
    None,
}

/// What the HSM would say of one key object.
struct Object {
    id: String,
    label: String,
    key_type: u8,
    local: bool,
    extractable: bool,
    ops: Vec<String>,
    value_len: usize,
    public: Public,
}

impl Object {
    fn of(name: &str, v: &KeyVersion, fault: Option<AttestationFault>) -> Self {
        let key = match &v.material {
            Material::Rsa { pkcs8 } | Material::Ec { pkcs8 } => STANDARD
                .decode(pkcs8)
                .ok()
                .and_then(|der| TargetKey::from_pkcs8_der(&der).ok()),
            Material::Oct { .. } => None,
        };
        let mut public = match key.as_ref().and_then(|k| k.public_key().map(|p| (k.kind(), p))) {
            Some((_, p)) if p.rsa().is_some() => {
                let (n, e) = p.rsa().unwrap_or_default();
                Public::Rsa {
                    n: n.to_vec(),
                    e: e.to_vec(),
                }
            }
            Some((KeyKind::Ec(curve), p)) => {
                let point = p.ec().map(|(_, point)| point.to_vec()).unwrap_or_default();
                Public::Ec {
                    params: oid_der(curve.oid()),
                    point,
                }
            }
            _ => Public::None,
        };
        if fault == Some(AttestationFault::OtherKey) {
            match &mut public {
                Public::Rsa { n, .. } => n[10] ^= 0x01,
                Public::Ec { point, .. } => point[10] ^= 0x01,
                Public::None => {}
            }
        }
        let version = match fault {
            Some(AttestationFault::WrongId) => "00000000000000000000000000000000",
            _ => &v.version,
        };
        Self {
            id: format!("/keys/{name}/{version}"),
            label: name.to_owned(),
            key_type: match public {
                Public::Rsa { .. } => 0,
                Public::Ec { .. } => 3,
                Public::None => 0x1f,
            },
            local: v.origin == "generated" && fault != Some(AttestationFault::Imported),
            extractable: fault == Some(AttestationFault::Extractable),
            ops: v.key_ops.clone(),
            value_len: match &v.material {
                Material::Oct { key } => STANDARD.decode(key).map_or(0, |k| k.len()),
                _ => 0,
            },
            public,
        }
    }

    /// The signed data of the private (or secret) object, or of the public one: header, TLVs, padding.
    fn blob(&self, public_object: bool) -> Vec<u8> {
        let mut tlvs = Tlvs::default();
        let class = match (&self.public, public_object) {
            (_, true) => 2,
            (Public::None, false) => 4,
            _ => 3,
        };
        tlvs.number(0x000, class);
        tlvs.number(0x100, u64::from(self.key_type));
        tlvs.flag(0x001, true);
        tlvs.text(0x003, &self.label);
        tlvs.text(0x102, &self.id);
        tlvs.flag(0x163, self.local);
        if !public_object {
            tlvs.flag(0x103, true);
            tlvs.flag(0x162, self.extractable);
            tlvs.flag(0x164, self.local && !self.extractable);
            tlvs.flag(0x165, self.local);
        }
        let op_ids = [
            (0x104, "encrypt"),
            (0x105, "decrypt"),
            (0x106, "wrapKey"),
            (0x107, "unwrapKey"),
            (0x108, "sign"),
            (0x10a, "verify"),
        ];
        for (id, op) in op_ids {
            tlvs.flag(id, self.ops.iter().any(|o| o == op));
        }
        match &self.public {
            Public::Rsa { n, e } => {
                tlvs.bytes(0x120, n);
                tlvs.number(0x121, (n.len() * 8) as u64);
                tlvs.bytes(0x122, e);
            }
            Public::Ec { params, point } => {
                tlvs.bytes(0x180, params);
                let mut octets = vec![0x04, point.len() as u8];
                octets.extend(point);
                tlvs.bytes(0x181, &octets);
            }
            Public::None => tlvs.number(0x161, self.value_len as u64),
        }
        tlvs.finish()
    }
}

/// PKCS#11 TLVs in the `MRVL-1` layout: 16 reserved bytes, record length, handle, count, size, then the attributes.
#[derive(Default)]
struct Tlvs {
    count: u32,
    body: Vec<u8>,
}

impl Tlvs {
    fn bytes(&mut self, kind: u32, value: &[u8]) {
        self.count += 1;
        self.body.extend(kind.to_be_bytes());
        self.body.extend((value.len() as u32).to_be_bytes());
        self.body.extend(value);
    }

    fn number(&mut self, kind: u32, n: u64) {
        let bytes: Vec<u8> = n.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        self.bytes(kind, if bytes.is_empty() { &[0] } else { &bytes });
    }

    fn flag(&mut self, kind: u32, on: bool) {
        self.bytes(kind, &[u8::from(on)]);
    }

    /// Zero-padded to 128 bytes, as the HSM writes labels and ids.
    fn text(&mut self, kind: u32, text: &str) {
        let mut value = text.as_bytes().to_vec();
        value.resize(value.len().max(128), 0);
        self.bytes(kind, &value);
    }

    fn finish(self) -> Vec<u8> {
        let size = self.body.len() as u32;
        let mut data = vec![0u8; 16];
        for field in [size + 12, 1, self.count, size] {
            data.extend(field.to_be_bytes());
        }
        data.extend(self.body);
        data.resize(data.len() + 64, 0);
        data
    }
}

/// DER of an OBJECT IDENTIFIER (a curve's, for CKA_EC_PARAMS).
fn oid_der(dotted: &str) -> Vec<u8> {
    use der::Encode as _;
    der::asn1::ObjectIdentifier::new(dotted)
        .ok()
        .and_then(|oid| oid.to_der().ok())
        .unwrap_or_default()
}
