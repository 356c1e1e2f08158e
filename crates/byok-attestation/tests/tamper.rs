//! Any single-byte change to the real attestation — in either blob (data or signature) or in any certificate's DER —
//! is refused.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use byok_attestation::{Attestation, Roots};
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_slice(&byok_testdata::read("attestation/mhsm-rsa2048-uksouth.json")).expect("JSON")
}

fn field(doc: &Value, name: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(doc["attributes"]["attestation"][name].as_str().expect(name))
        .expect("base64url")
}

fn with_field(doc: &Value, name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut doc = doc.clone();
    doc["attributes"]["attestation"][name] = URL_SAFE_NO_PAD.encode(bytes).into();
    doc.to_string().into_bytes()
}

fn accepted(json: &[u8], roots: &Roots) -> bool {
    Attestation::from_json(json).and_then(|a| a.verify(roots)).is_ok()
}

#[test]
fn every_changed_byte_of_either_blob_is_refused() {
    let (doc, roots) = (fixture(), Roots::marvell());
    for name in ["privateKeyAttestation", "publicKeyAttestation"] {
        let blob = field(&doc, name);
        assert!(accepted(&with_field(&doc, name, &blob), &roots), "the untouched {name}");
        for i in 0..blob.len() {
            let mut changed = blob.clone();
            changed[i] ^= 0x01;
            assert!(
                !accepted(&with_field(&doc, name, &changed), &roots),
                "{name}: byte {i} changed, still accepted"
            );
        }
        assert!(
            !accepted(&with_field(&doc, name, &blob[..blob.len() - 1]), &roots),
            "{name} cut short"
        );
    }
}

/// The bundle's certificates as DER.
fn certificates(doc: &Value) -> Vec<Vec<u8>> {
    let pem = String::from_utf8(field(doc, "certificatePemFile")).expect("PEM text");
    pem.split("-----BEGIN CERTIFICATE-----")
        .filter_map(|block| block.split("-----END CERTIFICATE-----").next())
        .map(|b64| b64.chars().filter(|c| !c.is_whitespace()).collect::<String>())
        .filter(|b64| !b64.is_empty())
        .map(|b64| STANDARD.decode(b64).expect("base64"))
        .collect()
}

fn bundle(ders: &[Vec<u8>]) -> Vec<u8> {
    let mut pem = String::new();
    for der in ders {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in STANDARD.encode(der).as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64"));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem.into_bytes()
}

#[test]
fn every_changed_byte_of_any_certificate_is_refused() {
    let (doc, roots) = (fixture(), Roots::marvell());
    let ders = certificates(&doc);
    assert_eq!(ders.len(), 4);
    assert!(
        accepted(&with_field(&doc, "certificatePemFile", &bundle(&ders)), &roots),
        "re-encoded, untouched"
    );
    for (k, der) in ders.iter().enumerate() {
        for i in 0..der.len() {
            let mut changed = ders.clone();
            changed[k][i] ^= 0x01;
            let json = with_field(&doc, "certificatePemFile", &bundle(&changed));
            assert!(
                !accepted(&json, &roots),
                "certificate {k}: byte {i} changed, still accepted"
            );
        }
    }
}

#[test]
fn a_bundle_without_any_one_certificate_is_refused() {
    let (doc, roots) = (fixture(), Roots::marvell());
    let ders = certificates(&doc);
    for k in 0..ders.len() {
        let mut fewer = ders.clone();
        fewer.remove(k);
        assert!(
            !accepted(&with_field(&doc, "certificatePemFile", &bundle(&fewer)), &roots),
            "without {k}"
        );
    }
    let other_roots = Roots::only(Vec::new());
    assert!(
        !accepted(&doc.to_string().into_bytes(), &other_roots),
        "accepted with no trusted root"
    );
}
