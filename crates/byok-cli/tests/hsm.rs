//! The HSM source through the binary, on real soft tokens made by `cargo xtask setup`: SoftHSM 2.6.1, NSS softokn,
//! openCryptoki 3.27 (in its forky root) and Kryoptic 1.5. Every blob is opened in software, parsed strictly, compared
//! with the token's own key (public half, or an AES key check value), and opened again by OpenSSL and Python.

use std::path::Path;
use std::process::Command;

use byok_blob::ByokBlob;
use byok_encoding::{Kty, TargetKey};
use byok_tests::hsm::{Token, workspace};
use byok_tests::{KID, byok_cli, run, stderr, stdout, testdata};
use serde_json::Value;

fn aes_kcv(key: &[u8]) -> String {
    use aes::cipher::{BlockCipherEncrypt, KeyInit};
    let mut block = aes::cipher::Array::from([0u8; 16]);
    match key.len() {
        16 => aes::Aes128::new_from_slice(key).expect("key").encrypt_block(&mut block),
        24 => aes::Aes192::new_from_slice(key).expect("key").encrypt_block(&mut block),
        32 => aes::Aes256::new_from_slice(key).expect("key").encrypt_block(&mut block),
        n => panic!("AES key of {n} bytes"),
    }
    block[..3].iter().map(|b| format!("{b:02x}")).collect()
}

/// Wraps the generated key through the binary to the RSA-`bits` KEK and checks the blob every way.
fn wrap_and_check(token: Token, key: &Value, bits: u32, expect_path: &str) {
    let (host_dir, dir) = token.workdir("blobs");
    let kek_name = format!("kek-rsa{bits}.spki.pem");
    std::fs::copy(testdata(&format!("keys/{kek_name}")), host_dir.join(&kek_name)).expect("KEK copy");
    let label = key["label"].as_str().expect("label");
    let out = format!("{dir}/{label}.byok");
    let kek = format!("{dir}/{kek_name}");
    let uri = key["uri"].as_str().expect("uri");
    let report = token.json(&byok_tests::hsm::wrap_args(&kek, uri, &out));
    assert_eq!(report["source"]["wrap_path"], expect_path, "{token:?} {label}");
    assert_eq!(report["source"]["conformant"], true);

    let blob_path = host_dir.join(format!("{label}.byok"));
    let blob = ByokBlob::from_json(&std::fs::read(&blob_path).expect("blob")).expect("valid .byok");
    assert!(blob.generator().is_some_and(|g| g.contains(expect_path)));
    let plaintext = byok_tests::kek_private(bits)
        .unwrap(blob.ciphertext())
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    let kind = key["kind"].as_str().expect("kind");
    let kty = if kind.starts_with("RSA") {
        Kty::Rsa
    } else if kind.starts_with("EC") {
        Kty::Ec
    } else {
        Kty::Oct
    };
    let parsed = TargetKey::from_plaintext(kty, &plaintext).unwrap_or_else(|e| panic!("{token:?} {label}: {e}"));
    assert_eq!(parsed.kind().to_string(), kind);
    match kty {
        Kty::Oct => assert_eq!(
            Some(aes_kcv(&plaintext)).as_deref(),
            key["kcv"].as_str(),
            "{label}: KCV"
        ),
        _ => assert_eq!(
            parsed.public_key().map(|p| p.fingerprint_sha256()).as_deref(),
            key["public_key_sha256"].as_str(),
            "{label}: the unwrapped key's public half is the token's"
        ),
    }
    judges(&blob_path, bits, &plaintext, kty, kind);
}

/// OpenSSL and Python `cryptography` open the blob and find the same plaintext.
fn judges(blob: &Path, bits: u32, plaintext: &[u8], kty: Kty, kind: &str) {
    let expected = blob.with_extension("expected");
    std::fs::write(&expected, plaintext).expect("expected");
    let kek_private = testdata(&format!("keys/kek-rsa{bits}.pkcs8.pem"));
    // OpenSSL.
    let opened = byok_tests::openssl_unwrap(blob, &kek_private, bits as usize / 8).expect("OpenSSL opens it");
    assert_eq!(opened, plaintext, "OpenSSL finds the same plaintext");
    // Python.
    let python = workspace().join("target/interop-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `cargo xtask setup`",
        python.display()
    );
    let curve = kind.strip_prefix("EC ").map(str::to_owned);
    let manifest = blob.with_extension("judge.json");
    let case = serde_json::json!([{
        "name": blob.display().to_string(), "kek_private": kek_private, "blob": blob, "expected": expected,
        "kty": kty.name(), "curve": curve,
    }]);
    std::fs::write(&manifest, case.to_string()).expect("manifest");
    let out = run(Command::new(&python)
        .arg(workspace().join("tests/interop/judge.py"))
        .arg("check")
        .arg(&manifest));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap_or_else(|_| panic!("judge: {}", stderr(&out)));
    assert_eq!(report["passed"], 1, "Python: {report}");
}

fn verdicts(token: Token) -> Vec<String> {
    let uri = token.uri();
    let info = token.json(&["hsm", "info", "--token", &uri]);
    info["self_test"]["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .map(|p| {
            format!(
                "{}={}",
                p["path"].as_str().unwrap_or("?"),
                p["verdict"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

#[test]
fn softhsm_self_test_finds_the_padding_bug() {
    assert_eq!(
        verdicts(Token::SoftHsm),
        [
            "rsa-aes-key-wrap=unsupported",
            "two-step-kwp=unsupported",
            "two-step-luna-kwp=unsupported",
            "two-step-cloudhsm-kwp=unsupported",
            "two-step-nss-pad=unsupported",
            "two-step-pad=aligned-only"
        ]
    );
}

#[test]
fn softhsm_wraps_aes_but_refuses_pkcs8_unless_overridden() {
    let t = Token::SoftHsm;
    let aes = t.generate(&["--kty", "oct", "--size", "256"], "sh-aes");
    wrap_and_check(t, &aes, 2048, "two-step-pad");

    let ec = t.generate(&["--kty", "EC", "--curve", "P-256"], "sh-ec");
    let (host, dir) = t.workdir("refused");
    let kek = testdata("keys/kek-rsa2048.spki.pem").display().to_string();
    let uri = ec["uri"].as_str().expect("uri");
    let out = format!("{dir}/ec.byok");
    let refused = t.cli(&[
        "wrap",
        "--kek-file",
        &kek,
        "--kek-kid",
        KID,
        "--key",
        uri,
        "--out",
        &out,
    ]);
    assert_eq!(refused.status.code(), Some(6), "{}", stderr(&refused));
    let err = stderr(&refused);
    assert!(
        err.starts_with("error: no wrap path of this token produces what Azure expects for this key:"),
        "{err}"
    );
    assert!(err.contains("pads the key with zero bytes to a multiple of 8"), "{err}");
    assert!(!host.join("ec.byok").exists());

    let forced = t.cli(&[
        "wrap",
        "--kek-file",
        &kek,
        "--kek-kid",
        KID,
        "--key",
        uri,
        "--out",
        &out,
        "--wrap-mechanism",
        "two-step-pad",
        "--allow-nonconformant-wrap",
    ]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert!(stderr(&forced).contains("warning: WRAPPED WITH A NON-CONFORMANT PATH"));
    let blob = ByokBlob::from_json(&std::fs::read(host.join("ec.byok")).expect("blob")).expect("valid");
    assert!(blob.generator().is_some_and(|g| g.contains("NONCONFORMANT")));
    // The bug itself: strict PKCS#8 followed by zero padding to a multiple of 8.
    let pt = byok_tests::kek_private(2048).unwrap(blob.ciphertext()).expect("opens");
    assert!(TargetKey::from_pkcs8_der(&pt).is_err(), "a strict reader refuses it");
    let der_len = 2 + usize::from(pt[1]); // a P-256 PKCS#8 is under 128 bytes
    assert!(pt.len().is_multiple_of(8) && pt.len() > der_len && pt[der_len..].iter().all(|&b| b == 0));
    let key = TargetKey::from_pkcs8_der(&pt[..der_len]).expect("the key before the padding");
    assert_eq!(
        key.public_key().map(|p| p.fingerprint_sha256()).as_deref(),
        ec["public_key_sha256"].as_str()
    );
}

#[test]
fn nss_self_test_prefers_kwp_and_rejects_0x210a() {
    let v = verdicts(Token::Nss);
    assert_eq!(
        v,
        [
            "rsa-aes-key-wrap=unsupported",
            "two-step-kwp=conformant",
            "two-step-luna-kwp=unsupported",
            "two-step-cloudhsm-kwp=unsupported",
            // NSS's own vendor number for padded key wrap runs, and is not RFC 5649: a name proves nothing.
            "two-step-nss-pad=failed",
            "two-step-pad=failed"
        ]
    );
}

#[test]
fn nss_matrix() {
    let t = Token::Nss;
    let specs: [(&[&str], u32); 9] = [
        (&["--kty", "RSA", "--size", "2048"], 4096),
        (&["--kty", "RSA", "--size", "3072"], 2048),
        (&["--kty", "RSA", "--size", "4096"], 3072),
        (&["--kty", "EC", "--curve", "P-256"], 4096),
        (&["--kty", "EC", "--curve", "P-384"], 2048),
        (&["--kty", "EC", "--curve", "P-521"], 3072),
        (&["--kty", "oct", "--size", "128"], 4096),
        (&["--kty", "oct", "--size", "192"], 2048),
        (&["--kty", "oct", "--size", "256"], 3072),
    ];
    for (i, (spec, bits)) in specs.iter().enumerate() {
        let key = t.generate(spec, &format!("nss-{i}"));
        wrap_and_check(t, &key, *bits, "two-step-kwp");
    }
}

#[test]
fn kryoptic_matrix() {
    let t = Token::Kryoptic;
    assert_eq!(
        verdicts(t),
        [
            "rsa-aes-key-wrap=unsupported",
            "two-step-kwp=conformant",
            "two-step-luna-kwp=unsupported",
            "two-step-cloudhsm-kwp=unsupported",
            "two-step-nss-pad=unsupported",
            "two-step-pad=unsupported"
        ]
    );
    let specs: [(&[&str], u32); 4] = [
        (&["--kty", "RSA", "--size", "2048"], 4096),
        (&["--kty", "RSA", "--size", "3072"], 2048),
        (&["--kty", "RSA", "--size", "4096"], 3072),
        (&["--kty", "oct", "--size", "256"], 2048),
    ];
    for (i, (spec, bits)) in specs.iter().enumerate() {
        let key = t.generate(spec, &format!("kry-{i}"));
        wrap_and_check(t, &key, *bits, "two-step-kwp");
    }
    // EC: Kryoptic 1.5 drops the private scalar's leading zero bytes (one P-521 key in 2, one P-256 key in 256),
    // which a strict parser rejects; byok cannot see inside a wrapped key, so it refuses EC keys before wrapping, and
    // with the override says so in the blob.
    for curve in ["P-256", "P-521"] {
        let key = t.generate(&["--kty", "EC", "--curve", curve], &format!("kry-{curve}"));
        let (host, dir) = t.workdir(&format!("kry-{curve}"));
        let kek = testdata("keys/kek-rsa2048.spki.pem").display().to_string();
        let out = format!("{dir}/ec.byok");
        let args = byok_tests::hsm::wrap_args(&kek, key["uri"].as_str().expect("uri"), &out);
        let refused = t.cli(&args);
        let err = stderr(&refused);
        assert_eq!(refused.status.code(), Some(6), "{err}");
        assert!(
            err.contains("Kryoptic 1.5 writes an EC private scalar without its leading zero bytes"),
            "{err}"
        );
        assert!(!host.join("ec.byok").exists());
        let mut forced = args.to_vec();
        forced.push("--allow-nonconformant-wrap");
        let report = t.json(&forced);
        assert_eq!(report["source"]["conformant"], false, "{report}");
        let blob = ByokBlob::from_json(&std::fs::read(host.join("ec.byok")).expect("blob")).expect("valid .byok");
        assert!(
            blob.generator().is_some_and(|g| g.contains("NONCONFORMANT")),
            "{:?}",
            blob.generator()
        );
    }
}

#[test]
fn opencryptoki_one_shot() {
    let t = Token::Ock;
    assert_eq!(
        verdicts(t),
        [
            "rsa-aes-key-wrap=conformant",
            "two-step-kwp=conformant",
            "two-step-luna-kwp=unsupported",
            "two-step-cloudhsm-kwp=unsupported",
            "two-step-nss-pad=unsupported",
            "two-step-pad=failed"
        ]
    );
    let specs: [(&[&str], u32); 5] = [
        (&["--kty", "RSA", "--size", "2048"], 4096),
        (&["--kty", "RSA", "--size", "3072"], 2048),
        (&["--kty", "EC", "--curve", "P-256"], 3072),
        (&["--kty", "EC", "--curve", "P-384"], 4096),
        (&["--kty", "oct", "--size", "256"], 2048),
    ];
    for (i, (spec, bits)) in specs.iter().enumerate() {
        let key = t.generate(spec, &format!("ock-{i}"));
        wrap_and_check(t, &key, *bits, "rsa-aes-key-wrap");
    }
}

/// `byok-cli hsm verify` on SoftHSM with the RSA-2048 KEK's private half (imported by setup): the blob opens inside
/// an HSM, and the token reports the key it found.
fn softhsm_verify(blob: &Path, kty: &[&str]) -> Value {
    let mut args = vec![
        "hsm",
        "verify",
        "--kek",
        "pkcs11:token=byok-src;object=kek-verifier",
        "--byok-file",
    ];
    let blob = blob.display().to_string();
    args.push(&blob);
    args.push("--kty");
    args.extend(kty);
    Token::SoftHsm.json(&args)
}

#[test]
fn softhsm_opens_blobs_from_software_and_the_other_tokens() {
    let (dir, _) = Token::SoftHsm.workdir("verify");
    let kek = testdata("keys/kek-rsa2048.spki.pem").display().to_string();
    // Software source.
    for (file, kty) in [
        ("rsa2048.pkcs8.pem", &["RSA", "--size", "2048"][..]),
        ("ec-p256.pkcs8.pem", &["EC", "--curve", "P-256"][..]),
        ("aes256.raw", &["oct", "--size", "256"][..]),
    ] {
        let out = dir.join(format!("{file}.byok"));
        let mut cmd = byok_cli();
        cmd.args([
            "-q",
            "wrap",
            "--allow-software-key",
            "--kek-kid",
            KID,
            "--kek-file",
            &kek,
            "--out",
        ])
        .arg(&out)
        .arg("--key-file")
        .arg(testdata(&format!("keys/{file}")));
        if kty[0] == "oct" {
            cmd.args(["--kty", "oct"]);
        }
        assert!(run(&mut cmd).status.success());
        let found = softhsm_verify(&out, kty);
        let source = std::fs::read(testdata(&format!("keys/{file}"))).expect("source");
        match kty[0] {
            "oct" => assert_eq!(found["kcv"].as_str(), Some(aes_kcv(&source).as_str()), "{file}"),
            "RSA" => {
                let key = TargetKey::from_private_key_file(&source).expect("key");
                assert_eq!(
                    found["public_key_sha256"].as_str(),
                    key.public_key().map(|p| p.fingerprint_sha256()).as_deref()
                );
            }
            _ => assert_eq!(found["kind"], "EC P-256"),
        }
    }
    // NSS and openCryptoki sources.
    for (token, spec, name) in [
        (Token::Nss, &["--kty", "RSA", "--size", "2048"][..], "v-nss-rsa"),
        (Token::Nss, &["--kty", "oct", "--size", "128"][..], "v-nss-aes"),
        (Token::Ock, &["--kty", "RSA", "--size", "2048"][..], "v-ock-rsa"),
        (Token::Ock, &["--kty", "oct", "--size", "256"][..], "v-ock-aes"),
    ] {
        let key = token.generate(spec, name);
        let (host, inside) = token.workdir("for-softhsm");
        std::fs::copy(testdata("keys/kek-rsa2048.spki.pem"), host.join("kek.pem")).expect("KEK copy");
        let (kek_in, out_in) = (format!("{inside}/kek.pem"), format!("{inside}/{name}.byok"));
        let uri = key["uri"].as_str().expect("uri");
        token.json(&[
            "wrap",
            "--kek-file",
            &kek_in,
            "--kek-kid",
            KID,
            "--key",
            uri,
            "--out",
            &out_in,
        ]);
        let kty: &[&str] = if spec[1] == "oct" {
            &["oct", "--size", spec[3]]
        } else {
            &["RSA", "--size", spec[3]]
        };
        let found = softhsm_verify(&host.join(format!("{name}.byok")), kty);
        if spec[1] == "oct" {
            assert_eq!(found["kcv"], key["kcv"], "{name}: SoftHSM finds the {token:?} key");
        } else {
            assert_eq!(
                found["public_key_sha256"], key["public_key_sha256"],
                "{name}: SoftHSM finds the {token:?} key"
            );
        }
    }
    // A damaged blob does not open.
    let good = dir.join("rsa2048.pkcs8.pem.byok");
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&good).expect("blob")).expect("json");
    let ct = doc["ciphertext"].as_str().expect("ct").to_owned();
    let flipped = format!("{}{}", &ct[..ct.len() - 1], if ct.ends_with('A') { 'B' } else { 'A' });
    doc["ciphertext"] = flipped.into();
    let bad = dir.join("damaged.byok");
    std::fs::write(&bad, doc.to_string()).expect("write");
    let bad_s = bad.display().to_string();
    let out = Token::SoftHsm.cli(&[
        "hsm",
        "verify",
        "--kek",
        "pkcs11:token=byok-src;object=kek-verifier",
        "--byok-file",
        &bad_s,
        "--kty",
        "RSA",
        "--size",
        "2048",
    ]);
    assert_eq!(out.status.code(), Some(6));
    assert!(
        stderr(&out).starts_with("error: C_UnwrapKey failed: CKR_"),
        "{}",
        stderr(&out)
    );
}
