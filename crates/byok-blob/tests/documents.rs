//! Writing exactly, reading tolerantly, validating strictly.

use base64::Engine as _;
use byok_blob::{ByokBlob, CiphertextEncoding, Error, KeyId, key_hsm};
use serde_json::{Value, json};

const KID: &str = "https://contoso.vault.azure.net/keys/kek/0123456789abcdef0123456789abcdef";

fn blob(ciphertext_len: usize) -> ByokBlob {
    let ct = (0..ciphertext_len).map(|i| (i * 7) as u8).collect();
    ByokBlob::new(KeyId::parse(KID).expect("kid"), ct, "byok-cli 0.1.0")
}

fn read(value: &Value) -> Result<ByokBlob, Error> {
    ByokBlob::from_json(value.to_string().as_bytes())
}

#[test]
fn writes_exactly_the_specified_document() {
    let b = ByokBlob::new(KeyId::parse(KID).expect("kid"), vec![0xFB; 256 + 16], "gen");
    let text = String::from_utf8(b.to_json()).expect("utf-8");
    let ct = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xFB; 272]);
    assert!(
        ct.contains(['-', '_']) && !ct.contains('='),
        "the URL-safe alphabet, no padding"
    );
    assert_eq!(
        text,
        format!(
            r#"{{"schema_version":"1.0.0","header":{{"kid":"{KID}","alg":"dir","enc":"CKM_RSA_AES_KEY_WRAP"}},"ciphertext":"{ct}","generator":"gen"}}"#
        )
    );
}

#[test]
fn round_trips() {
    for len in [272, 296, 1488, 2896] {
        let b = blob(len);
        assert_eq!(ByokBlob::from_json(&b.to_json()).expect("reads"), b);
    }
}

#[test]
fn key_hsm_is_unpadded_base64url_of_the_file_bytes() {
    assert_eq!(key_hsm(b"{\"a\":\"\xfb\xff\"}"), "eyJhIjoi-_8ifQ");
    let b = blob(296);
    let decoded = base64_url_decode(&b.key_hsm());
    assert_eq!(decoded, b.to_json());
}

#[test]
fn reads_the_variants_other_tools_write() {
    let b = blob(296);
    let mut doc: Value = serde_json::from_slice(&b.to_json()).expect("json");
    let unpadded = doc["ciphertext"].as_str().expect("string").to_owned();

    doc["schema_version"] = json!("1.0");
    assert_eq!(read(&doc).expect("1.0 reads").schema_version(), "1.0");

    let padded = format!("{unpadded}{}", "=".repeat((4 - unpadded.len() % 4) % 4));
    assert_ne!(padded, unpadded, "296 bytes need padding");
    doc["ciphertext"] = json!(padded);
    let r = read(&doc).expect("padded reads");
    assert_eq!(r.ciphertext(), b.ciphertext());
    assert_eq!(r.ciphertext_encoding(), CiphertextEncoding::Base64UrlPadded);

    doc["ciphertext"] = json!(padded.replace('-', "+").replace('_', "/"));
    let r = read(&doc).expect("standard reads");
    assert_eq!(r.ciphertext(), b.ciphertext());

    doc["generator"] = Value::Null;
    doc["extra"] = json!({"vendor": 1});
    assert_eq!(read(&doc).expect("tolerant").generator(), None);
}

#[test]
fn strict_validation_names_the_problem() {
    let good: Value = serde_json::from_slice(&blob(296).to_json()).expect("json");
    let with = |f: &dyn Fn(&mut Value)| {
        let mut d = good.clone();
        f(&mut d);
        read(&d).err()
    };
    assert_eq!(
        with(&|d| d["schema_version"] = json!("2.0")),
        Some(Error::SchemaVersion("2.0".into()))
    );
    assert_eq!(
        with(&|d| {
            d.as_object_mut().map(|o| o.remove("header"));
        }),
        Some(Error::MissingField("header"))
    );
    assert_eq!(
        with(&|d| {
            d["header"].as_object_mut().map(|o| o.remove("kid"));
        }),
        Some(Error::MissingField("header.kid"))
    );
    assert_eq!(
        with(&|d| d["header"]["alg"] = json!("RSA-OAEP")),
        Some(Error::Alg("RSA-OAEP".into()))
    );
    assert_eq!(
        with(&|d| d["header"]["enc"] = json!("CKM_RSA_AES_KEY_WRAP_PAD")),
        Some(Error::Enc("CKM_RSA_AES_KEY_WRAP_PAD".into()))
    );
    assert!(matches!(
        with(&|d| d["header"]["kid"] = json!("https://v.vault.azure.net/keys/k")),
        Some(Error::Kid { .. })
    ));
    assert_eq!(
        with(&|d| d["ciphertext"] = json!(42)),
        Some(Error::FieldType {
            field: "ciphertext",
            expected: "string"
        })
    );
    assert!(matches!(
        with(&|d| d["ciphertext"] = json!("not base64!")),
        Some(Error::CiphertextEncoding(_))
    ));
    assert!(matches!(
        with(&|d| d["ciphertext"] = json!("ab-/")),
        Some(Error::CiphertextEncoding(_))
    ));
    assert_eq!(
        with(&|d| d["ciphertext"] = json!("AAAA")),
        Some(Error::CiphertextTooShort { len: 3 })
    );
    assert_eq!(
        ByokBlob::from_json(blob(299).to_json().as_slice()).err(),
        Some(Error::CiphertextLength { len: 299 })
    );
    assert!(matches!(
        ByokBlob::from_json(b"{\"schema_version\":"),
        Err(Error::Json(_))
    ));
    assert!(matches!(ByokBlob::from_json(b"[]"), Err(Error::Json(_))));
    let huge = vec![b' '; byok_blob::MAX_DOCUMENT_LEN + 1];
    assert!(matches!(ByokBlob::from_json(&huge), Err(Error::TooLarge { .. })));
}

#[test]
fn rsa_part_candidates() {
    assert_eq!(blob(512 + 1232).possible_rsa_part_lengths(), [256, 384, 512]);
    assert_eq!(blob(256 + 40).possible_rsa_part_lengths(), [256]);
    assert_eq!(blob(384 + 16).possible_rsa_part_lengths(), [256, 384]);
}

fn base64_url_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .expect("unpadded base64url")
}
