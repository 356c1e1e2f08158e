//! `byok-cli kek create|download` against the local Key Vault, with client-secret credentials from the environment.

use std::process::Output;

use byok_encoding::KekPublicKey;
use byok_tests::{byok_cli, run, stderr, stdout};

fn cli<S: AsRef<std::ffi::OsStr>>(info: &byok_emulator::Info, args: &[S], secret: Option<&str>) -> Output {
    let mut cmd = byok_cli();
    cmd.env("AZURE_TENANT_ID", &info.tenant_id)
        .env("AZURE_CLIENT_ID", &info.client_id)
        .env("AZURE_CLIENT_SECRET", secret.unwrap_or(&info.client_secret))
        .env("AZURE_AUTHORITY_HOST", &info.authority_host)
        .args(args);
    run(&mut cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kek_create_and_download() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = byok_emulator::start(byok_emulator::Config::new(dir.path().join("vault")))
        .await
        .expect("emulator");
    let info = running.info.clone();
    let ca = info.ca_file.display().to_string();
    let pem = dir.path().join("kek.pem").display().to_string();
    let info2 = info.clone();
    let (ca2, pem2) = (ca.clone(), pem.clone());
    tokio::task::spawn_blocking(move || {
        let (info, ca, pem) = (info2, ca2, pem2);
        let vault = ["--vault-url", info.vault_url.as_str(), "--ca-file", ca.as_str()];
        let with =
            |extra: &[&str]| -> Vec<String> { extra.iter().chain(vault.iter()).map(|s| (*s).to_owned()).collect() };

        let created = cli(
            &info,
            &with(&["--output", "json", "kek", "create", "--name", "kek", "--size", "3072"]),
            None,
        );
        assert!(created.status.success(), "{}", stderr(&created));
        let report: serde_json::Value = serde_json::from_str(&stdout(&created)).expect("JSON");
        assert_eq!(report["key_ops"], serde_json::json!(["import"]));
        assert_eq!(report["kty"], "RSA-HSM");
        assert_eq!(report["size_bits"], 3072);

        let downloaded = cli(
            &info,
            &with(&["kek", "download", "--name", "kek", "--file", &pem]),
            None,
        );
        assert!(downloaded.status.success(), "{}", stderr(&downloaded));
        let kek = KekPublicKey::parse(&std::fs::read(&pem).expect("written")).expect("a KEK");
        assert_eq!(
            kek.fingerprint_sha256(),
            report["fingerprint_sha256"].as_str().expect("fp")
        );

        // Refusals: the file exists; a missing key; a wrong secret; no CA; http; no credential.
        let again = cli(
            &info,
            &with(&["kek", "download", "--name", "kek", "--file", &pem]),
            None,
        );
        assert_eq!(again.status.code(), Some(5));
        let missing = cli(
            &info,
            &with(&["kek", "download", "--name", "nope", "--file", &format!("{pem}.2")]),
            None,
        );
        assert_eq!(missing.status.code(), Some(7));
        assert!(
            stderr(&missing).starts_with("error: reading key `nope` in "),
            "{}",
            stderr(&missing)
        );
        assert!(stderr(&missing).contains("(HTTP 404, KeyNotFound)"));
        let wrong = cli(&info, &with(&["kek", "create", "--name", "k2"]), Some("wrong"));
        assert_eq!(wrong.status.code(), Some(7));
        assert!(
            stderr(&wrong).contains("hint: the credential was refused"),
            "{}",
            stderr(&wrong)
        );
        let untrusted = cli(
            &info,
            &["kek", "create", "--name", "k3", "--vault-url", info.vault_url.as_str()],
            None,
        );
        assert_eq!(untrusted.status.code(), Some(7));
        assert!(stderr(&untrusted).contains("UnknownIssuer"), "{}", stderr(&untrusted));
        let http = info.vault_url.replace("https://", "http://");
        let plain = cli(
            &info,
            &["kek", "create", "--name", "k4", "--vault-url", http.as_str()],
            None,
        );
        assert_eq!(plain.status.code(), Some(2));
        assert!(stderr(&plain).contains("only https is accepted"));
        let mut no_cred = byok_cli();
        no_cred
            .env_remove("AZURE_CLIENT_SECRET")
            .args(with(&["kek", "create", "--name", "k5"]));
        let none = run(&mut no_cred);
        assert_eq!(none.status.code(), Some(2));
        assert!(stderr(&none).starts_with("error: no credential"));
    })
    .await
    .expect("the CLI checks ran");
    running.shutdown().await.expect("stops");
}
