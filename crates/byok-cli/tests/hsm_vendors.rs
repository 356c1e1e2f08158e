//! Vendors' HSMs as the shim plays them over NSS softokn (`tests/pkcs11-shim/src/personality.rs`): Luna's renumbered
//! RFC 5649 and its policies, CloudHSM's PKCS#5 "PAD" and vendor RFC 5649 and its owner-only wrap, YubiHSM's message
//! buffer, nShield's security assurances. Each is driven through the binary (`hsm info`, `wrap`, `full-transfer`,
//! `batch`, `hsm import-kek`); a blob it makes is opened in software and compared with the token's key, and a refusal
//! must say what it means on that vendor and what to do.

use std::path::Path;
use std::process::{Command, Output};

use byok_blob::ByokBlob;
use byok_encoding::{Curve, KeyKind, RsaSize};
use byok_encoding::{Kty, TargetKey};
use byok_tests::batch::{generate_in_nss, manifest, results};
use byok_tests::hsm::{Token, env, shim_over, wrap_args};
use byok_tests::vault::{LocalVault, batch_args, full_transfer_args};
use byok_tests::{byok_cli, run, stderr, stdout, testdata};
use serde_json::Value;

/// `byok-cli ARGS` on NSS through the shim playing `personality` (none when empty), with `extra` settings.
fn playing(personality: &str, args: &[&str], extra: &[(&str, &str)]) -> Command {
    let nss = env()["nss"]["module"].as_str().expect("module");
    let mut cmd = byok_cli();
    cmd.args(args)
        .arg("--pkcs11-module")
        .arg(shim_over())
        .args(["--pkcs11-init-args", env()["nss"]["init_args"].as_str().expect("init")])
        .env("BYOK_SHIM_TARGET", nss);
    if !personality.is_empty() {
        cmd.env("BYOK_SHIM_PERSONALITY", personality);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd
}

fn info(personality: &str) -> Value {
    let out = run(&mut playing(
        personality,
        &["--output", "json", "hsm", "info", "--token", &Token::Nss.uri()],
        &[],
    ));
    assert!(out.status.success(), "{personality}: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("JSON")
}

fn verdict(info: &Value, path: &str) -> String {
    let paths = info["self_test"]["paths"].as_array().expect("paths");
    let p = paths
        .iter()
        .find(|p| p["path"] == path)
        .expect("every path is reported");
    format!(
        "{}: {}",
        p["verdict"].as_str().expect("verdict"),
        p["detail"].as_str().expect("detail")
    )
}

/// `wrap` of the key to the RSA-2048 test KEK, through the personality.
fn wrap(personality: &str, key: &Value, out: &Path, extra: &[(&str, &str)], flags: &[&str]) -> Output {
    let kek = testdata("keys/kek-rsa2048.spki.pem").display().to_string();
    let uri = key["uri"].as_str().expect("uri");
    let out = out.display().to_string();
    let mut args = vec!["--output", "json"];
    args.extend(wrap_args(&kek, uri, &out));
    args.extend(flags);
    run(&mut playing(personality, &args, extra))
}

/// The blob opens in software to the token's key (its public half).
fn opens_to_the_tokens_key(blob: &Path, key: &Value) {
    let blob = ByokBlob::from_json(&std::fs::read(blob).expect("blob")).expect("valid .byok");
    let plaintext = byok_tests::kek_private(2048)
        .unwrap(blob.ciphertext())
        .expect("the blob opens");
    let kty = if key["kind"].as_str().expect("kind").starts_with("RSA") {
        Kty::Rsa
    } else {
        Kty::Ec
    };
    let parsed = TargetKey::from_plaintext(kty, &plaintext).expect("strict PKCS#8");
    assert_eq!(
        parsed.public_key().map(|p| p.fingerprint_sha256()).as_deref(),
        key["public_key_sha256"].as_str(),
        "the unwrapped key is the token's"
    );
}

/// Exit 6, and the JSON error says what the refusal means and what to do.
fn refused(out: &Output, meaning: &str, fix: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(6), "{err}");
    let last = err.lines().rev().find(|l| l.starts_with('{')).unwrap_or_default();
    let error: Value = serde_json::from_str(last).expect("a JSON error");
    let text = |field: &str| error["error"][field].as_str().unwrap_or_default().to_owned();
    assert!(text("message").contains(meaning), "the error says what it means: {err}");
    assert!(text("hint").starts_with(fix), "the hint says what to do: {err}");
}

/// `full-transfer` of `uri` into the local Managed HSM as `name`, through the personality.
fn transfer(vault: &LocalVault, personality: &str, uri: &str, name: &str) -> Output {
    into_vault(vault, personality, full_transfer_args(uri, name))
}

/// `batch` of the manifest into the local Managed HSM, through the personality.
fn batch(vault: &LocalVault, personality: &str, manifest: &Path) -> Output {
    into_vault(vault, personality, batch_args(manifest, &[]))
}

fn into_vault(vault: &LocalVault, personality: &str, mut args: Vec<String>) -> Output {
    args.extend(vault.transfer_flags());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = playing(personality, &args, &[]);
    vault.credentials(&mut cmd);
    run(&mut cmd)
}

#[test]
fn luna_rfc5649_is_found_under_its_vendor_number_and_its_policies_are_explained() {
    let luna = info("luna");
    assert_eq!(luna["tokens"][0]["vendor"], "thales-luna");
    // Luna has the one-shot mechanism (firmware ≥ 7.3), and RFC 5649 only under its own number.
    assert_eq!(luna["self_test"]["auto"], "rsa-aes-key-wrap", "{luna}");
    assert_eq!(verdict(&luna, "two-step-luna-kwp"), "conformant: conformant");
    assert!(verdict(&luna, "two-step-kwp").starts_with("unsupported"));
    let dir = tempfile::tempdir().expect("tempdir");
    let ec = Token::Nss.generate(&["--kty", "EC", "--curve", "P-256"], "luna-ec");
    for path in ["rsa-aes-key-wrap", "two-step-luna-kwp"] {
        let blob = dir.path().join(format!("{path}.byok"));
        let out = wrap("luna", &ec, &blob, &[], &["--wrap-mechanism", path]);
        assert!(out.status.success(), "{}", stderr(&out));
        let report: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
        assert_eq!(report["source"]["wrap_path"], path);
        opens_to_the_tokens_key(&blob, &ec);
    }

    // Policy 1 off: private keys are refused, secret keys still move.
    let out = wrap("luna-policy1-off", &ec, &dir.path().join("refused.byok"), &[], &[]);
    refused(
        &out,
        "CKR_KEY_NOT_WRAPPABLE: this Luna partition does not allow private-key wrapping: partition policy 1",
        "the partition SO turns it on with `partition changepolicy -policy 1 -value 1`",
    );
    assert!(!dir.path().join("refused.byok").exists());
    let aes = Token::Nss.generate(&["--kty", "oct", "--size", "256"], "luna-aes");
    let out = wrap("luna-policy1-off", &aes, &dir.path().join("aes.byok"), &[], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let blob = ByokBlob::from_json(&std::fs::read(dir.path().join("aes.byok")).expect("blob")).expect("valid .byok");
    let plaintext = byok_tests::kek_private(2048)
        .unwrap(blob.ciphertext())
        .expect("the blob opens");
    assert_eq!(plaintext.len(), 32, "the AES-256 key");
}

#[test]
fn a_luna_key_that_wraps_only_with_trusted_keys_moves_after_import_kek_and_the_so_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A KEK of this test's own: its token object must not meet other tests' wraps in the shared NSS token.
    let (kek_private, kek) = (dir.path().join("kek.pem"), dir.path().join("kek.pub.pem"));
    let openssl = |args: &[&str]| {
        assert!(
            run(Command::new("openssl").args(args)).status.success(),
            "openssl {args:?}"
        )
    };
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &kek_private.display().to_string(),
    ]);
    openssl(&[
        "pkey",
        "-in",
        &kek_private.display().to_string(),
        "-pubout",
        "-out",
        &kek.display().to_string(),
    ]);
    let kek = kek.display().to_string();
    let aes = Token::Nss.generate(&["--kty", "oct", "--size", "256"], "trusted-aes");
    let blob = dir.path().join("trusted.byok");
    let wrap_it = |so: &[(&str, &str)]| {
        let out = blob.display().to_string();
        let mut args = vec!["--output", "json"];
        args.extend(wrap_args(&kek, aes["uri"].as_str().expect("uri"), &out));
        run(&mut playing("luna-trusted", &args, so))
    };
    // The key's CKA_WRAP_WITH_TRUSTED tells this refusal apart from the policy one, and the hint gives the flow.
    refused(
        &wrap_it(&[]),
        "CKR_KEY_NOT_WRAPPABLE: the key has CKA_WRAP_WITH_TRUSTED, so only a wrapping key with CKA_TRUSTED may wrap it",
        "import the KEK into the token with `byok-cli hsm import-kek`",
    );
    assert!(!blob.exists());
    // The operator imports the KEK as a token object; a second import finds it and changes nothing.
    let label = format!("byok-kek-{}", std::process::id());
    let import = [
        "--output",
        "json",
        "hsm",
        "import-kek",
        "--token",
        &Token::Nss.uri(),
        "--kek-file",
        &kek,
    ];
    for created in [true, false] {
        let out = run(playing("luna-trusted", &import, &[]).args(["--label", &label]));
        assert!(out.status.success(), "{}", stderr(&out));
        let report: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
        assert_eq!(report["kek"]["created"], created, "{report}");
        assert_eq!(report["kek"]["label"], label.as_str());
    }
    // byok now wraps with the token object, which the SO has not trusted yet: said so.
    refused(
        &wrap_it(&[]),
        "the KEK's token object (from `byok-cli hsm import-kek`) is not trusted",
        "have the security officer set CKA_TRUSTED",
    );
    // The SO's step (simulated by the label), and the key moves.
    let out = wrap_it(&[("BYOK_SHIM_TRUSTED_LABEL", label.as_str())]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(
        report["source"]["wrap_path"], "rsa-aes-key-wrap",
        "only the one-shot wraps with the KEK alone"
    );
    let plaintext = byok_tests::openssl_unwrap(&blob, &kek_private, 256).expect("OpenSSL opens the blob");
    assert_eq!(plaintext.len(), 32);
}

#[test]
fn cloudhsm_pad_is_refused_and_its_vendor_rfc5649_moves_keys_end_to_end() {
    let cloud = info("cloudhsm");
    assert_eq!(cloud["tokens"][0]["vendor"], "aws-cloudhsm");
    assert_eq!(cloud["self_test"]["auto"], "two-step-cloudhsm-kwp", "{cloud}");
    // The standard number is offered, runs, and is not RFC 5649: the self-test says so and never picks it.
    let pad = verdict(&cloud, "two-step-pad");
    assert!(
        pad.starts_with("failed: non-conformant: the AES part is not RFC 5649"),
        "{pad}"
    );

    let vault = LocalVault::start(true, "", |_| {});
    let rsa = Token::Nss.generate(&["--kty", "RSA", "--size", "2048"], "cloud-rsa");
    let uri = rsa["uri"].as_str().expect("uri");
    let out = transfer(&vault, "cloudhsm", uri, "cloud-rsa");
    let record = byok_tests::ok_json(&out, "full-transfer");
    assert_eq!(record["wrap"]["path"], "two-step-cloudhsm-kwp", "{record}");
    assert_eq!(vault.versions("cloud-rsa"), 1);

    // A crypto user the key is only shared with may not wrap it: said before anything reaches the vault.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = wrap("cloudhsm-not-owner", &rsa, &dir.path().join("shared.byok"), &[], &[]);
    refused(
        &out,
        "CKR_KEY_FUNCTION_NOT_PERMITTED: on CloudHSM only the crypto user who owns a key can wrap it",
        "log in as the key's owner",
    );
    let out = transfer(&vault, "cloudhsm-not-owner", uri, "cloud-shared");
    refused(
        &out,
        "on CloudHSM only the crypto user who owns a key",
        "log in as the key's owner",
    );
    assert_eq!(vault.versions("cloud-shared"), 0, "nothing imported");
}

#[test]
fn yubihsm_message_buffer_which_keys_fit_and_a_clear_refusal_for_those_that_do_not() {
    let yubi = info("yubihsm");
    assert_eq!(yubi["tokens"][0]["vendor"], "yubihsm");
    let dir = tempfile::tempdir().expect("tempdir");
    // The largest target byok moves (RSA-4096: about 2,400 bytes wrapped) fits the 3,136-byte buffer.
    let big = Token::Nss.generate(&["--kty", "RSA", "--size", "4096"], "yubi-4096");
    let out = wrap("yubihsm", &big, &dir.path().join("big.byok"), &[], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    opens_to_the_tokens_key(&dir.path().join("big.byok"), &big);
    // A smaller buffer: RSA-2048 still fits, RSA-4096 is refused with the reason.
    let small = [("BYOK_SHIM_MESSAGE_LIMIT", "2048")];
    let rsa = Token::Nss.generate(&["--kty", "RSA", "--size", "2048"], "yubi-2048");
    let out = wrap("yubihsm", &rsa, &dir.path().join("fits.byok"), &small, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = wrap("yubihsm", &big, &dir.path().join("too-big.byok"), &small, &[]);
    refused(
        &out,
        "CKR_DATA_LEN_RANGE: the wrapped key does not fit YubiHSM 2's 3136-byte message buffer",
        "a smaller KEK shortens the result",
    );
    assert!(!dir.path().join("too-big.byok").exists());
}

#[test]
fn nshield_security_assurances_fail_the_self_test_with_the_reason() {
    let nshield = info("nshield");
    assert_eq!(nshield["tokens"][0]["vendor"], "entrust-nshield");
    assert_eq!(nshield["self_test"]["auto"], Value::Null, "{nshield}");
    let kwp = verdict(&nshield, "two-step-kwp");
    assert!(
        kwp.contains("CKR_FUNCTION_FAILED: nShield's security assurance mechanisms (SAMs) refuse wrapping"),
        "{kwp}"
    );
    let ec = Token::Nss.generate(&["--kty", "EC", "--curve", "P-256"], "nshield-ec");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = wrap("nshield", &ec, &dir.path().join("ec.byok"), &[], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(err.contains("nShield's security assurance mechanisms"), "{err}");
    assert!(!dir.path().join("ec.byok").exists());
}

#[test]
fn each_refusal_says_what_it_means_on_that_vendor_and_what_to_do() {
    let key = Token::Nss.generate(&["--kty", "EC", "--curve", "P-256"], "refusals");
    let dir = tempfile::tempdir().expect("tempdir");
    // (personality, the CK_RV the HSM returns for the real key, what byok says it means, the start of the fix)
    let cases = [
        (
            "",
            "0x6A",
            "CKR_KEY_UNEXTRACTABLE: the HSM will not let the key leave it, even wrapped",
            "generate the key with CKA_EXTRACTABLE=true",
        ),
        (
            "luna",
            "0x6A",
            "CKR_KEY_UNEXTRACTABLE: the HSM will not let the key leave it, even wrapped",
            "generate the key extractable (keys unwrapped into a Luna partition",
        ),
        (
            "",
            "0x69",
            "CKR_KEY_NOT_WRAPPABLE: NSS softokn will not wrap this key",
            "check the key's CKA_WRAP_WITH_TRUSTED",
        ),
        (
            "",
            "0x115",
            "CKR_WRAPPING_KEY_TYPE_INCONSISTENT: NSS softokn does not accept the KEK",
            "the KEK must be an RSA public key",
        ),
        (
            "luna",
            "0x71",
            "CKR_MECHANISM_PARAM_INVALID: Thales Luna rejects the parameters BYOK needs",
            "Azure BYOK needs Luna firmware 7.3",
        ),
        (
            "yubihsm",
            "0x71",
            "CKR_MECHANISM_PARAM_INVALID: YubiHSM 2 rejects the parameters",
            "CKM_RSA_AES_KEY_WRAP needs YubiHSM 2 firmware 2.4.0",
        ),
        (
            "",
            "0x68",
            "CKR_KEY_FUNCTION_NOT_PERMITTED: NSS softokn does not permit this key",
            "the target needs CKA_EXTRACTABLE=true",
        ),
        (
            "cloudhsm",
            "0x80000100",
            "CKR_VENDOR_DEFINED(0x80000100): AWS CloudHSM returned its own code 0x80000100",
            "look the code up in AWS CloudHSM's error table",
        ),
    ];
    for (personality, rv, meaning, fix) in cases {
        let blob = dir.path().join("refused.byok");
        let out = wrap(personality, &key, &blob, &[("BYOK_SHIM_WRAP_RV", rv)], &[]);
        refused(&out, meaning, fix);
        assert!(!blob.exists(), "{personality} {rv}: nothing written");
    }
}

#[test]
fn every_personality_through_full_transfer_and_batch() {
    let vault = LocalVault::start(true, "", |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    for (personality, path) in [
        ("luna", "rsa-aes-key-wrap"),
        ("cloudhsm", "two-step-cloudhsm-kwp"),
        ("yubihsm", "two-step-kwp"),
    ] {
        let key = Token::Nss.generate(&["--kty", "RSA", "--size", "2048"], &format!("{personality}-ft"));
        let name = format!("{personality}-ft");
        let out = transfer(&vault, personality, key["uri"].as_str().expect("uri"), &name);
        let record = byok_tests::ok_json(&out, personality);
        assert_eq!(record["wrap"]["path"], path, "{personality}: {record}");
        assert_eq!(record["verification"]["result"], "verified", "{personality}");
        assert_eq!(vault.versions(&name), 1);

        let kinds = [KeyKind::Ec(Curve::P256), KeyKind::Rsa(RsaSize::Rsa2048)];
        let labels = generate_in_nss(&format!("{personality}-batch"), &kinds);
        let prefix = format!("{personality}-b");
        let out = batch(&vault, personality, &manifest(dir.path(), &labels, &prefix));
        assert!(out.status.success(), "{personality}: {}", stderr(&out));
        let (lines, summary) = results(&out);
        assert_eq!(summary["done"], 2, "{personality}: {summary}");
        assert!(lines.iter().all(|l| l["status"] == "done"), "{personality}: {lines:?}");
        for i in 0..2 {
            assert_eq!(vault.versions(&format!("{prefix}{i}")), 1, "{personality}");
        }
    }
    // nShield's assurances refuse every path: both stop before anything is wrapped or sent.
    let key = Token::Nss.generate(&["--kty", "RSA", "--size", "2048"], "nshield-ft");
    let out = transfer(&vault, "nshield", key["uri"].as_str().expect("uri"), "nshield-ft");
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nShield's security assurance mechanisms"),
        "{}",
        stderr(&out)
    );
    assert_eq!(vault.versions("nshield-ft"), 0);
    let labels = generate_in_nss("nshield-batch", &[KeyKind::Ec(Curve::P256)]);
    let out = batch(&vault, "nshield", &manifest(dir.path(), &labels, "nshield-b"));
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nShield's security assurance mechanisms"),
        "{}",
        stderr(&out)
    );
    assert_eq!(vault.versions("nshield-b0"), 0);
}
