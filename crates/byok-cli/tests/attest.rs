//! `byok-cli attest` on the real Managed HSM attestation: verified when bound to its key, exit 8 naming the failed
//! check otherwise, the usual codes for unreadable input.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use byok_tests::{assert_refused, byok_cli, run, stdout, testdata};

const REAL_KID: &str = "https://clitesthsmkeyatsbvzpfrzm.managedhsm.azure.net/keys/key1-hnhgsllilfcl3pdtpld/7071fabc480c0ca186f786a9b78c9456";

fn fixture() -> String {
    testdata("attestation/mhsm-rsa2048-uksouth.json").display().to_string()
}

fn attest(args: &[&str]) -> std::process::Output {
    run(byok_cli().arg("attest").args(args))
}

#[test]
fn the_real_attestation_verifies_bound_to_its_kid() {
    let out = attest(&["--file", &fixture(), "--kid", REAL_KID]);
    assert_eq!(out.status.code(), Some(0), "{}", byok_tests::stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("attestation: verified\n"), "{text}");
    assert!(
        text.contains("root Marvell LiquidSecurity LS1 (firmware 2.x signature)"),
        "{text}"
    );

    let out = run(byok_cli().args(["--output", "json", "attest", "--file", &fixture(), "--kid", REAL_KID]));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["format_version"], 1);
    assert_eq!(doc["verified"], true);
    assert_eq!(doc["checks"].as_array().map(Vec::len), Some(8));
    assert_eq!(doc["attestation"]["chain"][0]["role"], "card");
    assert_eq!(doc["attestation"]["private"]["never_extractable"], true);
    assert_eq!(
        doc["attestation"]["private"]["id"],
        "/keys/key1-hnhgsllilfcl3pdtpld/7071fabc480c0ca186f786a9b78c9456"
    );
}

#[test]
fn each_failed_binding_exits_8_and_is_named() {
    // The recording's JSON names a sanitized kid the HSM never signed.
    assert_refused(&attest(&["--file", &fixture()]), 8, "attestation check key-id failed");
    let other_key = testdata("keys/kek-rsa2048.spki.pem").display().to_string();
    let out = attest(&["--file", &fixture(), "--kid", REAL_KID, "--public-key", &other_key]);
    assert_refused(&out, 8, "attestation check public-key failed");
    assert!(stdout(&out).contains("failed   public-key"), "{}", stdout(&out));
    assert_refused(
        &attest(&["--file", &fixture(), "--kid", REAL_KID, "--kek"]),
        8,
        "check kek failed",
    );
    // Another root trusted instead of Marvell's: the chain no longer holds.
    let out = attest(&[
        "--file",
        &fixture(),
        "--kid",
        REAL_KID,
        "--attestation-root",
        &other_key,
    ]);
    assert_refused(&out, 8, "check vendor-root failed");
}

#[test]
fn a_forged_blob_exits_8_and_bad_input_gets_its_own_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut doc: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture()).expect("fixture")).expect("JSON");
    let field = &mut doc["attributes"]["attestation"]["publicKeyAttestation"];
    let mut blob = URL_SAFE_NO_PAD
        .decode(field.as_str().expect("blob"))
        .expect("base64url");
    blob[300] ^= 1;
    *field = URL_SAFE_NO_PAD.encode(&blob).into();
    let forged = dir.path().join("forged.json");
    std::fs::write(&forged, doc.to_string()).expect("written");
    let out = attest(&["--file", forged.to_str().expect("path"), "--kid", REAL_KID]);
    assert_refused(&out, 8, "check signature failed");
    assert!(stdout(&out).contains("not-run  pool-certificate"), "{}", stdout(&out));

    let not_one = dir.path().join("bundle.json");
    std::fs::write(&not_one, r#"{"key": {"kid": "x"}, "attributes": {}}"#).expect("written");
    assert_refused(
        &attest(&["--file", not_one.to_str().expect("path")]),
        3,
        "byok reads MRVL-1",
    );
    assert_refused(&attest(&["--file", "/nonexistent/att.json"]), 4, "does not exist");
    let key = testdata("keys/ec-p256.pkcs8.pem").display().to_string();
    assert_refused(&attest(&["--file", &fixture(), "--public-key", &key]), 3, "PUBLIC KEY");
}

#[test]
fn the_local_managed_hsms_attestation_verifies_only_with_its_root_given() {
    let vault = byok_tests::vault::LocalVault::start(true, "", |_| {});
    let out = vault.cli(
        None,
        &["--output", "json", "kek", "create", "--name", "kek", "--size", "2048"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", byok_tests::stderr(&out));
    let kek: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let kid = kek["kid"].as_str().expect("kid").to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("kek-attestation.json");
    std::fs::write(
        &file,
        vault.attestation("kek", kid.rsplit('/').next().expect("version")),
    )
    .expect("written");
    let file = file.display().to_string();
    let root = vault
        .info
        .attestation_root
        .clone()
        .expect("a Managed HSM names its attestation root");
    let root = root.display().to_string();

    let out = attest(&["--file", &file, "--kek", "--attestation-root", &root]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        byok_tests::stderr(&out)
    );
    assert!(stdout(&out).contains("passed   kek"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(&format!("names the file's kid {kid}")),
        "{}",
        stdout(&out)
    );
    // Marvell's roots, the default, never accept the local vault's chain.
    assert_refused(&attest(&["--file", &file, "--kek"]), 8, "check vendor-root failed");
}

#[test]
fn online_the_attestation_is_fetched_bound_to_the_key_asked_for_and_its_lies_refused() {
    let vault = byok_tests::vault::LocalVault::start(true, "", |_| {});
    let out = vault.cli(
        None,
        &["--output", "json", "kek", "create", "--name", "kek", "--size", "2048"],
    );
    let kid = byok_tests::ok_json(&out, "kek create")["kid"]
        .as_str()
        .expect("kid")
        .to_owned();
    let version = kid.rsplit('/').next().expect("version");
    let root = vault
        .info
        .attestation_root
        .clone()
        .expect("a root")
        .display()
        .to_string();

    for extra in [&[][..], &["--version", version][..]] {
        let mut args = vec![
            "--output",
            "json",
            "attest",
            "--name",
            "kek",
            "--kek",
            "--attestation-root",
            &root,
        ];
        args.extend(extra);
        let report = byok_tests::ok_json(&vault.cli(None, &args), "attest --name");
        assert_eq!(report["verified"], true, "{report:#}");
        let key_id = report["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .find(|c| c["check"] == "key-id");
        assert_eq!(
            key_id.expect("key-id")["detail"],
            format!("names given kid {kid}"),
            "{report:#}"
        );
    }
    // Marvell's roots by default; a version that does not exist is the vault's not-found.
    assert_refused(
        &vault.cli(None, &["attest", "--name", "kek", "--kek"]),
        8,
        "check vendor-root failed",
    );
    let out = vault.cli(
        None,
        &[
            "attest",
            "--name",
            "kek",
            "--version",
            "0123456789abcdef0123456789abcdef",
        ],
    );
    assert_refused(&out, 7, "check the key name and the vault");
    // Key Vault has no attestation API: a vault error, never a pass.
    let key_vault = byok_tests::vault::LocalVault::start(false, "", |_| {});
    let out = key_vault.cli(None, &["kek", "create", "--name", "kek", "--size", "2048"]);
    assert_eq!(out.status.code(), Some(0), "{}", byok_tests::stderr(&out));
    assert_refused(
        &key_vault.cli(None, &["attest", "--name", "kek"]),
        7,
        "Managed HSM only",
    );
    let out = run(byok_cli().args(["attest", "--vault-name", "contoso", "--name", "kek"]));
    assert_refused(
        &out,
        2,
        "https://contoso.vault.azure.net is a Key Vault: it has no key attestation",
    );
}

#[test]
fn online_a_vault_that_lies_about_the_key_is_refused_by_what_the_hsm_signed() {
    for (fault, check) in [
        ("wrong-id", "key-id"),
        ("other-key", "public-key"),
        ("extractable", "kek"),
    ] {
        let lying = byok_tests::vault::LocalVault::start(true, &format!("attestation={fault}"), |_| {});
        let out = lying.cli(None, &["kek", "create", "--name", "kek", "--size", "2048"]);
        assert_eq!(out.status.code(), Some(0), "{}", byok_tests::stderr(&out));
        let root = lying
            .info
            .attestation_root
            .clone()
            .expect("a root")
            .display()
            .to_string();
        let out = lying.cli(None, &["attest", "--name", "kek", "--kek", "--attestation-root", &root]);
        assert_refused(&out, 8, &format!("check {check} failed"));
    }
}
