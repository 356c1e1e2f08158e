//! `byok-cli wrap` and `inspect` through the binary: what they write opens with the KEK and equals the source.

use std::path::Path;

use byok_blob::ByokBlob;
use byok_encoding::{Kty, TargetKey};
use byok_tests::{KID, byok_cli, listing, run, stderr, stdout, testdata};

/// Wraps `key` to the `bits` KEK through the binary and returns the blob.
fn wrap(dir: &Path, bits: u32, key: &str, extra: &[&str]) -> ByokBlob {
    let out = dir.join(format!("{}-{bits}.byok", key.replace('/', "_")));
    let output = run(byok_cli()
        .args(["wrap", "--allow-software-key", "--kek-kid", KID, "--out"])
        .arg(&out)
        .arg("--kek-file")
        .arg(testdata(&format!("keys/kek-rsa{bits}.spki.pem")))
        .arg("--key-file")
        .arg(testdata(&format!("keys/{key}")))
        .args(extra));
    assert!(output.status.success(), "{key}: {}", stderr(&output));
    ByokBlob::from_json(&std::fs::read(&out).expect("written")).expect("valid .byok")
}

#[test]
fn every_target_kind_round_trips_under_every_kek_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let targets = [
        ("rsa2048.pkcs8.pem", None),
        ("rsa2048.pkcs1.der", None),
        ("kek-rsa3072.pkcs8.pem", None),
        ("kek-rsa4096.pkcs8.pem", None),
        ("ec-p256.sec1-with-params.pem", None),
        ("ec-p256.pkcs8-minimal.der", None),
        ("ec-p384.sec1.der", None),
        ("ec-p521.pkcs8.pem", None),
        ("ec-secp256k1.pkcs8.pem", None),
        ("aes128.raw", Some("oct")),
        ("aes192.raw", Some("oct")),
        ("aes256.raw", Some("oct")),
    ];
    for bits in [2048, 3072, 4096] {
        let kek = byok_tests::kek_private(bits);
        for (key, kty) in targets {
            let extra: Vec<&str> = kty.map(|k| vec!["--kty", k]).unwrap_or_default();
            let blob = wrap(dir.path(), bits, key, &extra);
            assert_eq!(blob.kid().to_string(), KID);
            let plaintext = kek
                .unwrap(blob.ciphertext())
                .unwrap_or_else(|e| panic!("{key}/{bits}: {e}"));
            let source = std::fs::read(testdata(&format!("keys/{key}"))).expect("source");
            let expected = match kty {
                Some(_) => TargetKey::from_aes_bytes(&source).expect("AES"),
                None => TargetKey::from_private_key_file(&source).expect("key"),
            };
            // The vault's strict reading of the plaintext gives back the same key.
            let opened = TargetKey::from_plaintext(expected.kind().kty(), &plaintext).expect("strict parse");
            assert_eq!(opened.plaintext(), expected.plaintext(), "{key} under RSA-{bits}");
            assert_eq!(opened.public_key(), expected.public_key(), "{key} under RSA-{bits}");
        }
    }
}

#[test]
fn pkcs8_input_is_wrapped_byte_for_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blob = wrap(dir.path(), 2048, "rsa2048.pkcs8.der", &[]);
    let plaintext = byok_tests::kek_private(2048).unwrap(blob.ciphertext()).expect("opens");
    assert_eq!(
        *plaintext,
        std::fs::read(testdata("keys/rsa2048.pkcs8.der")).expect("source")
    );
}

#[test]
fn jwk_kek_supplies_its_kid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kek = byok_tests::kek_private(2048);
    let jwk = serde_json::json!({
        "key": {
            "kid": KID.replace("/kek/", "/jwk-kek/"),
            "kty": "RSA-HSM",
            "key_ops": ["import"],
            "n": base64url(kek.public_key().modulus()),
            "e": base64url(kek.public_key().exponent()),
        },
        "attributes": { "enabled": true }
    });
    let jwk_path = dir.path().join("kek.json");
    std::fs::write(&jwk_path, jwk.to_string()).expect("write JWK");
    let out = dir.path().join("k.byok");
    let output = run(byok_cli()
        .args(["wrap", "--allow-software-key", "--kek-file"])
        .arg(&jwk_path)
        .arg("--key-file")
        .arg(testdata("keys/ec-p256.pkcs8.pem"))
        .arg("--out")
        .arg(&out));
    assert!(output.status.success(), "{}", stderr(&output));
    let blob = ByokBlob::from_json(&std::fs::read(&out).expect("written")).expect("valid");
    assert_eq!(blob.kid().name(), "jwk-kek");
    assert!(kek.unwrap(blob.ciphertext()).is_ok());
}

#[test]
fn written_document_has_the_exact_shape() {
    let dir = tempfile::tempdir().expect("tempdir");
    wrap(dir.path(), 3072, "aes256.raw", &["--kty", "oct"]);
    let text = std::fs::read_to_string(dir.path().join("aes256.raw-3072.byok")).expect("written");
    let prefix = format!(
        r#"{{"schema_version":"1.0.0","header":{{"kid":"{KID}","alg":"dir","enc":"CKM_RSA_AES_KEY_WRAP"}},"ciphertext":""#
    );
    assert!(text.starts_with(&prefix), "{text}");
    assert!(
        text.ends_with(&format!(
            r#"","generator":"byok-cli {}; source: software key file"}}"#,
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    assert!(!text.contains('='), "unpadded base64url");
    assert_eq!(listing(dir.path()), ["aes256.raw-3072.byok"], "no temporary file left");
}

#[test]
fn force_replaces_and_json_reports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("k.byok");
    std::fs::write(&out, "old").expect("pre-existing file");
    let output = run(byok_cli()
        .args([
            "--output",
            "json",
            "wrap",
            "--allow-software-key",
            "--force",
            "--kek-kid",
            KID,
        ])
        .arg("--kek-file")
        .arg(testdata("keys/kek-rsa4096.spki.der"))
        .arg("--key-file")
        .arg(testdata("keys/ec-p384.sec1.der"))
        .arg("--out")
        .arg(&out));
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("JSON on stdout");
    assert_eq!(report["format_version"], 1);
    assert_eq!(report["target"]["kty"], "EC-HSM");
    assert_eq!(report["target"]["crv"], "P-384");
    assert_eq!(report["kek"]["size_bits"], 4096);
    assert_eq!(report["ciphertext"]["rsa_part_bytes"], 512);
    let written = std::fs::read(&out).expect("replaced");
    assert_eq!(report["bytes"], written.len());
    let blob = ByokBlob::from_json(&written).expect("valid");
    let plaintext = byok_tests::kek_private(4096).unwrap(blob.ciphertext()).expect("opens");
    assert_eq!(
        TargetKey::from_plaintext(Kty::Ec, &plaintext)
            .expect("EC")
            .kind()
            .to_string(),
        "EC P-384"
    );
    assert!(
        stderr(&output).contains("warning: wrapping EC P-384"),
        "the software-key warning is on stderr"
    );
}

#[test]
fn quiet_prints_nothing_and_verbose_explains() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = |out: &str| {
        let mut c = byok_cli();
        c.args(["wrap", "--allow-software-key", "--kek-kid", KID])
            .arg("--kek-file")
            .arg(testdata("keys/kek-rsa2048.spki.pem"))
            .arg("--key-file")
            .arg(testdata("keys/aes128.raw"))
            .args(["--kty", "oct", "--out"])
            .arg(dir.path().join(out));
        c
    };
    let quiet = run(base("q.byok").arg("-q"));
    assert!(quiet.status.success());
    assert_eq!((stdout(&quiet).as_str(), stderr(&quiet).as_str()), ("", ""));
    let verbose = run(base("v.byok").arg("-v"));
    assert!(verbose.status.success());
    assert!(
        stderr(&verbose).contains("byok: KEK https://contoso.vault.azure.net/keys/kek/"),
        "{}",
        stderr(&verbose)
    );
}

#[test]
fn inspect_reports_and_checks_against_the_kek() {
    let dir = tempfile::tempdir().expect("tempdir");
    wrap(dir.path(), 2048, "rsa2048.pkcs8.pem", &[]);
    let file = dir.path().join("rsa2048.pkcs8.pem-2048.byok");
    let human = run(byok_cli()
        .arg("inspect")
        .arg(&file)
        .arg("--kek-file")
        .arg(testdata("keys/kek-rsa2048.spki.pem")));
    assert!(human.status.success(), "{}", stderr(&human));
    let text = stdout(&human);
    for line in [
        "  schema_version  1.0.0",
        "    vault         https://contoso.vault.azure.net (Key Vault)",
        "    KEK name      kek",
        "  ciphertext      1488 bytes (base64url, unpadded)",
        "    RSA part      256 bytes",
        "    KWP part      1232 bytes: a plaintext of 1217 to 1224 bytes, likely an RSA-2048 PKCS#8 key",
        "  consistent      yes: the sizes fit this KEK",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
    }

    let json = run(byok_cli().args(["inspect", "--output", "json"]).arg(&file));
    let v: serde_json::Value = serde_json::from_str(&stdout(&json)).expect("JSON");
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["kid"]["vault_kind"], "key-vault");
    assert_eq!(v["kid"]["version"], "0123456789abcdef0123456789abcdef");
    assert_eq!(v["ciphertext"]["bytes"], 1488);
    assert_eq!(
        v["ciphertext"]["possible_rsa_part_bytes"],
        serde_json::json!([256, 384, 512])
    );
    assert!(v["kek"].is_null());
}

fn base64url(bytes: &[u8]) -> String {
    byok_blob::key_hsm(bytes)
}
