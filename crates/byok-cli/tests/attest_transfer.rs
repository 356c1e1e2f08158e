//! Attestation inside `full-transfer` and `batch`: the local Managed HSM's KEK attestation verified before the first
//! wrap and the imported key's after the import, both in the record and re-checked offline from it; every lie the
//! emulator can tell refused before anything is wrapped or sent; `--skip-attestation` named; Key Vault reported as
//! not attestable, never passed silently.

use std::process::Output;

use byok_tests::hsm::Token;
use byok_tests::vault::LocalVault;
use byok_tests::{byok_cli, ok_json as ok, run, stderr, stdout};
use serde_json::Value;

const RSA2048: &[&str] = &["--kty", "RSA", "--size", "2048"];
const P256: &[&str] = &["--kty", "EC", "--curve", "P-256"];
const AES256: &[&str] = &["--kty", "oct", "--size", "256"];

fn generate(spec: &[&str], name: &str) -> String {
    Token::Nss.generate(spec, name)["uri"].as_str().expect("uri").to_owned()
}

fn check<'a>(attested: &'a Value, name: &str) -> &'a str {
    let checks = attested["checks"].as_array().expect("checks");
    checks
        .iter()
        .find(|c| c["check"] == name)
        .and_then(|c| c["result"].as_str())
        .unwrap_or("absent")
}

/// `byok-cli --output json attest ARGS`.
fn attest(args: &[&str]) -> Output {
    let mut cmd = byok_cli();
    cmd.args(["--output", "json", "attest"]).args(args);
    run(&mut cmd)
}

#[test]
fn a_transfer_into_the_managed_hsm_records_both_attestations_and_they_recheck_offline() {
    let vault = LocalVault::start(true, "", |_| {});
    let root = vault
        .info
        .attestation_root
        .clone()
        .expect("the root")
        .display()
        .to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    for (spec, name) in [(RSA2048, "att-rsa"), (P256, "att-ec"), (AES256, "att-aes")] {
        let file = dir.path().join(format!("{name}.record.json"));
        let file_arg = file.display().to_string();
        let uri = generate(spec, name);
        let record = ok(
            &vault.full_transfer(Token::Nss, &uri, name, &["--record", &file_arg]),
            name,
        );
        let a = &record["attestation"];
        assert_eq!(a["status"], "verified", "{a:#}");
        assert_eq!(
            a["trusted_roots"][0]["name"],
            root.as_str(),
            "the record names the root trusted"
        );
        let (kek, key) = (&a["kek"], &a["key"]);
        assert_eq!(kek["verified"], true);
        for c in [
            "vendor-root",
            "signature",
            "pool-certificate",
            "key-id",
            "public-key",
            "kek",
        ] {
            assert_eq!(check(kek, c), "passed", "KEK check {c}: {kek:#}");
        }
        assert_eq!(kek["attributes"]["local"], true);
        assert_eq!(kek["attributes"]["never_extractable"], true);
        assert_eq!(kek["chain"].as_array().map(Vec::len), Some(4), "{kek:#}");
        assert_eq!(key["verified"], true, "{key:#}");
        assert_eq!(
            key["attributes"]["local"], false,
            "an imported key is attested as imported"
        );
        assert_eq!(check(key, "key-id"), "passed");
        // RSA and EC: the attested public key is the HSM's; AES: the attestation carries no check value.
        let public = if name == "att-aes" { "absent" } else { "passed" };
        assert_eq!(check(key, "public-key"), public, "{key:#}");
        assert_eq!(record["verification"]["result"], "verified");

        // The record keeps the evidence: it re-checks offline, bound to the kids it names.
        let out = attest(&["--file", &file_arg, "--attestation-root", &root]);
        let report = ok(&out, "the key's attestation from the record");
        assert_eq!(report["verified"], true);
        assert!(
            stdout(&out).contains(record["key"]["kid"].as_str().expect("kid")),
            "{}",
            stdout(&out)
        );
        let out = attest(&["--file", &file_arg, "--kek", "--attestation-root", &root]);
        let report = ok(&out, "the KEK's attestation from the record");
        assert!(
            stdout(&out).contains(record["kek"]["kid"].as_str().expect("kid")),
            "{report}"
        );
        // …and only with the root it was made with.
        assert_eq!(attest(&["--file", &file_arg]).status.code(), Some(8));
    }
}

#[test]
fn every_lie_in_the_kek_attestation_stops_the_transfer_before_the_wrap() {
    for (fault, check) in [
        ("forged", "signature"),
        ("other-key", "public-key"),
        ("extractable", "kek"),
        ("imported", "kek"),
        ("wrong-id", "key-id"),
    ] {
        let vault = LocalVault::start(true, &format!("attestation={fault}"), |_| {});
        let uri = generate(RSA2048, &format!("lie-{fault}"));
        let out = vault.full_transfer(Token::Nss, &uri, "lied-to", &[]);
        assert_eq!(out.status.code(), Some(8), "{fault}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(&format!("attestation failed: {check}")), "{fault}: {err}");
        assert!(err.contains("nothing was wrapped or sent"), "{fault}: {err}");
        assert!(!err.contains("[4/6]"), "{fault}: nothing is wrapped: {err}");
        assert_eq!(vault.versions("lied-to"), 0, "{fault}: the vault received no import");
    }
}

#[test]
fn marvells_roots_refuse_the_local_vault_and_skipping_is_named() {
    let vault = LocalVault::start(true, "", |_| {});
    let uri = generate(P256, "att-default-roots");
    // Without --attestation-root only Marvell's roots are trusted: the local chain is refused, before any wrap.
    let mut args = byok_tests::vault::full_transfer_args(&uri, "default-roots");
    args.extend(vault.flags());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = byok_tests::run(vault.credentials(&mut Token::Nss.command(&args)));
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    assert!(stderr(&out).contains("vendor-root"), "{}", stderr(&out));
    assert_eq!(vault.versions("default-roots"), 0);

    let out = vault.full_transfer(Token::Nss, &uri, "skipped", &["--skip-attestation"]);
    let record = ok(&out, "--skip-attestation");
    assert_eq!(record["attestation"]["status"], "skipped");
    assert!(record["attestation"]["kek"].is_null() && record["attestation"]["key"].is_null());
    assert!(stderr(&out).contains("warning: --skip-attestation"), "{}", stderr(&out));
    let out = vault.full_transfer(
        Token::Nss,
        &uri,
        "both",
        &["--skip-attestation", "--attestation-root", "/dev/null"],
    );
    assert_eq!(out.status.code(), Some(2), "the two contradict: {}", stderr(&out));
}

#[test]
fn an_imported_key_whose_attestation_lies_is_marked_not_to_use() {
    let vault = LocalVault::start(true, "attestation=other-key,attestation-key=lying", |_| {});
    let uri = generate(RSA2048, "att-lying");
    let out = vault.full_transfer(Token::Nss, &uri, "lying", &[]);
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    let record: Value = serde_json::from_str(&stdout(&out)).expect("the record is printed");
    assert_eq!(record["attestation"]["status"], "failed", "{:#}", record["attestation"]);
    assert_eq!(record["attestation"]["kek"]["verified"], true, "the KEK's was true");
    assert_eq!(check(&record["attestation"]["key"], "public-key"), "failed");
    assert_eq!(record["verification"]["result"], "mismatch");
    assert_eq!(record["verification"]["method"], "key attestation");
    assert!(stderr(&out).contains("do not use this key version"), "{}", stderr(&out));
}

#[test]
fn key_vault_is_not_attestable_and_says_so() {
    let vault = LocalVault::start(false, "", |_| {});
    let uri = generate(P256, "att-kv");
    let record = ok(&vault.full_transfer(Token::Nss, &uri, "kv", &[]), "Key Vault");
    let a = &record["attestation"];
    assert_eq!(a["status"], "not-attestable", "{a:#}");
    assert!(
        a["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("not attestable (Key Vault)")),
        "{a:#}"
    );
    assert_eq!(a["kek"]["hsm_platform"], "2", "the vault's HSM platform is reported");
    assert_eq!(a["key"]["hsm_platform"], "2");
}

#[test]
fn a_batch_checks_the_kek_once_before_any_key_and_each_key_after_import() {
    let vault = LocalVault::start(true, "", |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("keys.toml");
    let mut text = String::new();
    for name in ["b-att-1", "b-att-2"] {
        let uri = generate(P256, name);
        text.push_str(&format!("[[key]]\nuri = \"{uri}\"\nname = \"{name}\"\n"));
    }
    std::fs::write(&manifest, text).expect("manifest");
    let records = dir.path().join("records");
    std::fs::create_dir(&records).expect("dir");
    let records_arg = records.display().to_string();
    let args = byok_tests::vault::batch_args(&manifest, &["--record-dir", &records_arg]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = vault.cli(Some(Token::Nss), &args);
    assert!(out.status.success(), "{}", stderr(&out));
    for name in ["b-att-1", "b-att-2"] {
        let record: Value =
            serde_json::from_slice(&std::fs::read(records.join(format!("{name}.record.json"))).expect("record"))
                .expect("JSON");
        assert_eq!(record["attestation"]["status"], "verified", "{name}");
        assert_eq!(check(&record["attestation"]["key"], "public-key"), "passed", "{name}");
    }

    // A lying KEK attestation: the batch stops before any key is wrapped, and nothing is imported.
    let lying = LocalVault::start(true, "attestation=forged", |_| {});
    let out = lying.cli(
        Some(Token::Nss),
        &byok_tests::vault::batch_args(&manifest, &[])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("attestation failed: signature"),
        "{}",
        stderr(&out)
    );
    assert_eq!(lying.versions("b-att-1") + lying.versions("b-att-2"), 0);
}
