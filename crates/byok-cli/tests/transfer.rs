//! `byok-cli full-transfer` and `import` end to end: keys generated in NSS softokn and SoftHSM, the local Key Vault
//! in Vault and Managed HSM modes, client-secret credentials through its token endpoint, faults, and a vault that
//! lies about what it imported.

use std::process::Output;

use byok_tests::hsm::Token;
use byok_tests::vault::LocalVault;
use byok_tests::{byok_cli, run, stderr};
use serde_json::Value;

const RSA2048: &[&str] = &["--kty", "RSA", "--size", "2048"];
const P256: &[&str] = &["--kty", "EC", "--curve", "P-256"];
const P384: &[&str] = &["--kty", "EC", "--curve", "P-384"];
const P521: &[&str] = &["--kty", "EC", "--curve", "P-521"];
const AES128: &[&str] = &["--kty", "oct", "--size", "128"];
const AES192: &[&str] = &["--kty", "oct", "--size", "192"];
const AES256: &[&str] = &["--kty", "oct", "--size", "256"];

use byok_tests::ok_json as ok;

fn refused(out: &Output, code: i32, needle: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code} with `{needle}`:\n{}",
        stderr(out)
    );
    assert!(stderr(out).contains(needle), "expected `{needle}` in:\n{}", stderr(out));
    assert!(!stderr(out).contains("panicked"), "{}", stderr(out));
}

/// Generates a key in a token; returns its URI.
fn generate(token: Token, spec: &[&str], name: &str) -> String {
    let key = token.generate(spec, name);
    key["uri"].as_str().expect("uri").to_owned()
}

fn full_transfer(vault: &LocalVault, token: Token, uri: &str, name: &str, extra: &[&str]) -> Output {
    vault.full_transfer(token, uri, name, extra)
}

/// The record's claims, checked against the vault's own state and the token's key.
fn check_record(record: &Value, vault: &LocalVault, name: &str, kty: &str, token_label: &str) {
    assert_eq!(record["format_version"], 1);
    assert_eq!(record["verification"]["result"], "verified", "{record:#}");
    assert_eq!(record["key"]["kty"], kty);
    assert_eq!(record["source"]["token"]["label"], token_label);
    assert_eq!(record["wrap"]["conformant"], true);
    assert_eq!(record["wrap"]["self_test"]["path_verdict"], "conformant", "{record:#}");
    assert_eq!(record["vault"]["url"], vault.info.vault_url.as_str());
    let kid = record["key"]["kid"].as_str().expect("kid");
    assert!(
        kid.starts_with(&format!("{}/keys/{name}/", vault.info.vault_url)),
        "{kid}"
    );
    assert_eq!(
        record["key"]["tags"]["byok-transfer"], record["transfer_id"],
        "the transfer tag ties the key to the record"
    );
    let text = record.to_string();
    assert!(!text.contains(&vault.info.client_secret), "no secret in the record");
}

#[test]
fn key_vault_mode_rsa_and_ec_from_nss() {
    // Tokens live for 1 s and every vault request takes 150 ms more: each transfer outlives its first token, so
    // byok must get new ones as it goes (the vault refuses expired tokens).
    let vault = LocalVault::start(false, "latency=150ms", |c| {
        c.token_lifetime = std::time::Duration::from_secs(1)
    });
    let dir = tempfile::tempdir().expect("tempdir");
    for (spec, name) in [(RSA2048, "t-rsa"), (P256, "t-ec256"), (P521, "t-ec521")] {
        let uri = generate(Token::Nss, spec, name);
        let record_file = dir.path().join(format!("{name}.json"));
        let byok_file = dir.path().join(format!("{name}.byok"));
        let out = full_transfer(
            &vault,
            Token::Nss,
            &uri,
            name,
            &[
                "--record",
                record_file.to_str().expect("utf-8"),
                "--keep-byok",
                byok_file.to_str().expect("utf-8"),
                "--tags",
                "owner=pki",
                "ticket=CHG-1",
            ],
        );
        let result = ok(&out, name);
        let record: Value =
            serde_json::from_slice(&std::fs::read(&record_file).expect("record written")).expect("record is JSON");
        assert_eq!(result, record, "stdout carries the record");
        check_record(
            &record,
            &vault,
            name,
            if name == "t-rsa" { "RSA-HSM" } else { "EC-HSM" },
            "NSS Certificate DB",
        );
        assert_eq!(record["key"]["tags"]["owner"], "pki");
        assert_eq!(record["key"]["tags"]["ticket"], "CHG-1");
        assert_eq!(record["kek"]["created_by_this_transfer"], name == "t-rsa");
        assert_eq!(vault.versions(name), 1);
        let blob = std::fs::read(&byok_file).expect("blob kept");
        assert_eq!(record["blob"]["sha256"], sha256_hex(&blob));
        // The steps are shown on stderr.
        for n in 1..=6 {
            assert!(stderr(&out).contains(&format!("[{n}/6]")), "{}", stderr(&out));
        }
    }
    assert_eq!(vault.versions("kek"), 1, "the KEK was reused");
    // `import` of a blob that names a key which is RSA-HSM but not import-only.
    let blob = std::fs::read_to_string(dir.path().join("t-ec256.byok")).expect("blob");
    let record: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("t-rsa.json")).expect("record")).expect("JSON");
    let (kek_kid, rsa_kid) = (
        record["kek"]["kid"].as_str().expect("kid"),
        record["key"]["kid"].as_str().expect("kid"),
    );
    let not_kek = dir.path().join("not-kek.byok");
    std::fs::write(&not_kek, blob.replace(kek_kid, rsa_kid)).expect("write");
    let path = not_kek.display().to_string();
    let out = vault.cli(
        None,
        &[
            "import",
            "--name",
            "t-y",
            "--kty",
            "EC",
            "--curve",
            "P-256",
            "--byok-file",
            &path,
        ],
    );
    refused(&out, 3, "not a Key Exchange Key");

    // Refusals.
    let uri = generate(Token::Nss, AES256, "t-aes-kv");
    let out = full_transfer(&vault, Token::Nss, &uri, "t-aes-kv", &[]);
    refused(&out, 7, "symmetric keys can be imported only into a Managed HSM");
    let uri = generate(Token::Nss, P256, "t-ec-ops");
    let out = full_transfer(&vault, Token::Nss, &uri, "t-ec-ops", &["--ops", "sign", "wrapKey"]);
    refused(&out, 2, "EC keys sign and verify; they cannot encrypt or wrap");
    assert_eq!(vault.versions("t-ec-ops"), 0, "nothing was sent");
    let record = dir.path().join("t-rsa.json");
    let out = full_transfer(
        &vault,
        Token::Nss,
        &uri,
        "t-ec-ops",
        &["--record", record.to_str().expect("utf-8")],
    );
    refused(&out, 5, "already exists");
    // A KEK name taken by a key that is not a KEK.
    let out = full_transfer(&vault, Token::Nss, &uri, "t-other", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut args = vec![
        "--output",
        "json",
        "full-transfer",
        "--kek-name",
        "t-rsa",
        "--name",
        "t-x",
        "--key",
    ];
    args.push(&uri);
    let out = vault.cli(Some(Token::Nss), &args);
    refused(&out, 5, "not an import-only RSA-HSM KEK");
    assert_eq!(
        vault.versions("t-rsa"),
        1,
        "byok did not add a version to a key that is not a KEK"
    );
}

#[test]
fn managed_hsm_mode_aes_from_nss_and_softhsm() {
    let vault = LocalVault::start(true, "", |_| {});
    for (token, spec, name) in [
        (Token::Nss, AES256, "m-nss-aes256"),
        (Token::Nss, AES128, "m-nss-aes128"),
        (Token::SoftHsm, AES192, "m-softhsm-aes192"),
        (Token::Nss, P384, "m-nss-ec384"),
    ] {
        let uri = generate(token, spec, name);
        let record = ok(&full_transfer(&vault, token, &uri, name, &[]), name);
        let kty = if name.contains("aes") { "oct-HSM" } else { "EC-HSM" };
        let label = if token == Token::Nss {
            "NSS Certificate DB"
        } else {
            "byok-src"
        };
        check_record(&record, &vault, name, kty, label);
        if kty == "oct-HSM" {
            assert!(
                record["verification"]["method"]
                    .as_str()
                    .is_some_and(|m| m.contains("random block")),
                "{record:#}"
            );
        }
    }
    // AES without `encrypt`: imported, and explicitly not verified — never a silent pass.
    let uri = generate(Token::Nss, AES256, "m-wrap-only");
    let out = full_transfer(
        &vault,
        Token::Nss,
        &uri,
        "m-wrap-only",
        &["--ops", "wrapKey", "unwrapKey"],
    );
    let record = ok(&out, "wrap-only");
    assert_eq!(record["verification"]["result"], "not-verifiable");
    assert!(
        stderr(&out).contains("warning: the import could not be verified"),
        "{}",
        stderr(&out)
    );
    // SoftHSM 2.6.1 pads PKCS#8 keys: its self-test refuses RSA and EC before anything reaches the vault.
    let uri = generate(Token::SoftHsm, P256, "m-softhsm-ec");
    let out = full_transfer(&vault, Token::SoftHsm, &uri, "m-softhsm-ec", &[]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("non-conformant") || stderr(&out).contains("pads"),
        "{}",
        stderr(&out)
    );
    assert_eq!(vault.versions("m-softhsm-ec"), 0);
}

#[test]
fn faults_are_survived_without_duplicate_versions() {
    // Every import's answer is lost after the vault carried it out: byok must look before sending again.
    let vault = LocalVault::start(true, "drop=1,methods=PUT", |_| {});
    for (spec, name) in [(RSA2048, "f-rsa"), (AES256, "f-aes")] {
        let uri = generate(Token::Nss, spec, name);
        let out = full_transfer(&vault, Token::Nss, &uri, name, &[]);
        let record = ok(&out, name);
        assert_eq!(record["verification"]["result"], "verified");
        assert_eq!(record["import"]["ambiguous_sends"], 1);
        assert!(stderr(&out).contains("not sending again"), "{}", stderr(&out));
        assert_eq!(vault.versions(name), 1, "one import, one version");
    }
    drop(vault);

    // A KEK creation whose answer is lost is not repeated: the transfer stops at that step, one version exists.
    let vault = LocalVault::start(true, "drop=1,methods=POST", |_| {});
    let uri = generate(Token::Nss, P256, "f-kek-lost");
    let out = full_transfer(&vault, Token::Nss, &uri, "f-kek-lost", &[]);
    refused(&out, 7, "creating key `kek`");
    assert!(stderr(&out).contains("the KEK may exist now"), "{}", stderr(&out));
    assert_eq!(vault.versions("kek"), 1);
    assert_eq!(vault.versions("f-kek-lost"), 0);
    drop(vault);

    // Throttling and unavailability on every kind of request, repeatably (seeded), waited out.
    let vault = LocalVault::start(true, "429=0.35,503=0.25,latency=5ms,retry-after=0,seed=11", |_| {});
    let uri = generate(Token::Nss, P256, "f-ec");
    let out = full_transfer(&vault, Token::Nss, &uri, "f-ec", &[]);
    let record = ok(&out, "throttled");
    assert_eq!(record["verification"]["result"], "verified");
    assert!(stderr(&out).contains("HTTP 429 Throttled; retry"), "{}", stderr(&out));
    assert_eq!(vault.versions("f-ec"), 1);
    drop(vault);

    // A vault that never stops throttling: byok gives up after its retries and names the step.
    let vault = LocalVault::start(true, "429=1,retry-after=0", |_| {});
    let out = full_transfer(&vault, Token::Nss, &uri, "f-never", &[]);
    refused(&out, 7, "reading key `kek`");
    assert!(stderr(&out).contains("HTTP 429"), "{}", stderr(&out));
    assert!(stderr(&out).contains("retry 6/6"), "{}", stderr(&out));
}

#[test]
fn verification_catches_a_vault_that_keeps_another_key() {
    let vault = LocalVault::start(true, "substitute=1", |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    for (spec, name) in [(RSA2048, "s-rsa"), (P256, "s-ec"), (AES256, "s-aes")] {
        let uri = generate(Token::Nss, spec, name);
        let record_file = dir.path().join(format!("{name}.json"));
        let out = full_transfer(
            &vault,
            Token::Nss,
            &uri,
            name,
            &["--record", record_file.to_str().expect("utf-8")],
        );
        refused(&out, 8, "verification failed");
        let record: Value =
            serde_json::from_slice(&std::fs::read(&record_file).expect("the record is written")).expect("JSON");
        assert_eq!(record["verification"]["result"], "mismatch", "{name}");
        assert!(
            stderr(&out).contains("\"kind\":\"verification-failed\"")
                || stderr(&out).contains("error: verification failed")
        );
    }
}

#[test]
fn import_checks_before_sending() {
    let vault = LocalVault::start(false, "", |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    let file = |n: &str| dir.path().join(n).display().to_string();
    // A KEK, created and downloaded; `kek download --output json` names the versioned kid a blob must carry.
    let make_kek = |name: &str| -> String {
        let create = ["--output", "json", "kek", "create", "--name", name, "--size", "2048"];
        ok(&vault.cli(None, &create), "kek create");
        let pem = file(&format!("{name}.pem"));
        let download = ["--output", "json", "kek", "download", "--name", name, "--file", &pem];
        ok(&vault.cli(None, &download), "kek download")["kid"]
            .as_str()
            .expect("kid")
            .to_owned()
    };
    let uri = generate(Token::Nss, P384, "i-ec");
    let wrap = |kek_pem: &str, kid: &str, out: &str| {
        let (pem, out) = (file(kek_pem), file(out));
        let wrapped = Token::Nss.cli(&[
            "wrap",
            "--kek-file",
            &pem,
            "--kek-kid",
            kid,
            "--key",
            &uri,
            "--out",
            &out,
        ]);
        assert!(wrapped.status.success(), "{}", stderr(&wrapped));
    };
    let kid = make_kek("kek");
    wrap("kek.pem", &kid, "ec.byok");
    let import = |extra: &[&str]| {
        let mut args = vec!["--output", "json", "import", "--byok-file"];
        let path = file("ec.byok");
        args.push(&path);
        args.extend(extra);
        vault.cli(None, &args)
    };
    let done = ok(
        &import(&["--name", "i-ec", "--kty", "EC", "--curve", "P-384"]),
        "import",
    );
    assert_eq!(done["kty"], "EC-HSM");
    assert_eq!(done["key_ops"], serde_json::json!(["sign", "verify"]));
    assert_eq!(vault.versions("i-ec"), 1);

    refused(&import(&["--name", "i-2", "--kty", "EC"]), 2, "needs its curve");
    refused(
        &import(&["--name", "i-2", "--kty", "RSA", "--curve", "P-384"]),
        2,
        "not EC",
    );
    refused(
        &import(&["--name", "i-2", "--kty", "EC", "--curve", "P-384", "--ops", "encrypt"]),
        2,
        "cannot encrypt or wrap",
    );
    refused(
        &import(&["--name", "bad_name", "--kty", "EC", "--curve", "P-384"]),
        2,
        "not a key name",
    );
    refused(
        &import(&[
            "--name",
            "i-2",
            "--kty",
            "EC",
            "--curve",
            "P-384",
            "--not-before",
            "soon",
        ]),
        2,
        "RFC 3339",
    );
    let import_as_ec = |blob: &str| {
        let path = file(blob);
        vault.cli(
            None,
            &[
                "import",
                "--name",
                "i-2",
                "--kty",
                "EC",
                "--curve",
                "P-384",
                "--byok-file",
                &path,
            ],
        )
    };
    // --kty contradicting the content: the vault refuses, and the hint explains.
    let out = import(&["--name", "i-2", "--kty", "RSA"]);
    refused(&out, 7, "HTTP 400, BadParameter");
    assert!(
        stderr(&out).contains("--kty/--curve contradict the key inside"),
        "{}",
        stderr(&out)
    );
    // A blob for another vault.
    let blob = std::fs::read_to_string(file("ec.byok")).expect("blob");
    let host = vault.info.vault_url.trim_start_matches("https://");
    std::fs::write(file("other.byok"), blob.replace(host, "fabrikam.vault.azure.net")).expect("write");
    refused(&import_as_ec("other.byok"), 3, "wrapped to a KEK of another vault");
    // A blob naming a KEK version that does not exist.
    let missing = blob.replace(kid.rsplit('/').next().expect("version"), &"0".repeat(32));
    std::fs::write(file("missing.byok"), missing).expect("write");
    refused(&import_as_ec("missing.byok"), 7, "does not exist in");
    // A blob naming a key that is not a KEK (the imported EC key itself).
    let ec_kid = done["kid"].as_str().expect("kid");
    std::fs::write(file("notkek.byok"), blob.replace(&kid, ec_kid)).expect("write");
    let out = import_as_ec("notkek.byok");
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(stderr(&out).contains("not an RSA key"), "{}", stderr(&out));
    // A blob wrapped to another KEK than it names.
    make_kek("kek2");
    wrap("kek2.pem", &kid, "mixed.byok");
    refused(&import_as_ec("mixed.byok"), 7, "cannot be opened with the KEK");
    // Wrong secret, and unknown credentials.
    let mut cmd = byok_cli();
    cmd.args(["kek", "create", "--name", "k9"])
        .args(vault.flags())
        .env("AZURE_TENANT_ID", &vault.info.tenant_id)
        .env("AZURE_CLIENT_ID", &vault.info.client_id)
        .env("AZURE_CLIENT_SECRET", "wrong")
        .env("AZURE_AUTHORITY_HOST", &vault.info.authority_host);
    refused(&run(&mut cmd), 7, "the credential was refused");
    // A vault host that does not resolve: two quick tries, then a clear refusal.
    let mut cmd = byok_cli();
    cmd.args([
        "kek",
        "create",
        "--name",
        "k9",
        "--vault-url",
        "https://byok-test.invalid",
    ])
    .env("AZURE_TENANT_ID", &vault.info.tenant_id)
    .env("AZURE_CLIENT_ID", &vault.info.client_id)
    .env("AZURE_CLIENT_SECRET", &vault.info.client_secret);
    refused(&run(&mut cmd), 7, "the vault could not be reached");
    let mut cmd = byok_cli();
    cmd.args(["kek", "create", "--name", "k9", "--auth", "client-secret"])
        .args(vault.flags());
    refused(&run(&mut cmd), 2, "--auth client-secret needs AZURE_TENANT_ID");
    assert_eq!(vault.versions("i-2"), 0, "no refused import left a version");
}

fn sha256_hex(data: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn workload_identity_and_auto() {
    let vault = LocalVault::start(false, "", |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = vault.info.federated_token_file.display().to_string();
    let kek = |auth: &str, name: &str, file: &str| {
        let mut cmd = byok_cli();
        cmd.args([
            "--output", "json", "-v", "kek", "create", "--size", "2048", "--name", name, "--auth", auth,
        ])
        .args(vault.flags())
        .env("AZURE_TENANT_ID", &vault.info.tenant_id)
        .env("AZURE_CLIENT_ID", &vault.info.client_id)
        .env("AZURE_FEDERATED_TOKEN_FILE", file)
        .env("AZURE_AUTHORITY_HOST", &vault.info.authority_host)
        .env_remove("AZURE_CLIENT_SECRET");
        run(&mut cmd)
    };
    let out = kek("workload-identity", "wi-kek", &token_file);
    assert_eq!(ok(&out, "workload identity")["key_ops"], serde_json::json!(["import"]));
    // `auto` without a secret but with a token file chooses workload identity, and says so with -v.
    let out = kek("auto", "wi-kek2", &token_file);
    ok(&out, "auto");
    assert!(
        stderr(&out).contains("authenticating with workload-identity"),
        "{}",
        stderr(&out)
    );
    // A token the tenant does not know, an empty file, a missing file.
    let forged = dir.path().join("forged");
    std::fs::write(&forged, "not-the-federated-token").expect("write");
    refused(
        &kek("workload-identity", "wi-x", forged.to_str().expect("utf-8")),
        7,
        "no matching federated identity record",
    );
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").expect("write");
    refused(
        &kek("workload-identity", "wi-x", empty.to_str().expect("utf-8")),
        2,
        "is empty",
    );
    let missing = dir.path().join("missing").display().to_string();
    refused(
        &kek("workload-identity", "wi-x", &missing),
        2,
        "cannot read the federated token file",
    );
    assert_eq!(vault.versions("wi-x"), 0);
}

#[test]
fn kek_and_import_commands_in_a_managed_hsm() {
    let vault = LocalVault::start(true, "", |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = dir.path().join("kek.pem").display().to_string();
    let blob = dir.path().join("aes.byok").display().to_string();
    let created = ok(
        &vault.cli(
            None,
            &["--output", "json", "kek", "create", "--name", "kek", "--size", "3072"],
        ),
        "kek create",
    );
    assert_eq!(created["kty"], "RSA-HSM");
    let downloaded = ok(
        &vault.cli(
            None,
            &["--output", "json", "kek", "download", "--name", "kek", "--file", &pem],
        ),
        "kek download",
    );
    let kid = downloaded["kid"].as_str().expect("kid");
    assert_eq!(downloaded["import_only_hsm"], true);
    let uri = generate(Token::Nss, AES256, "m-import-aes");
    let wrapped = Token::Nss.cli(&[
        "wrap",
        "--kek-file",
        &pem,
        "--kek-kid",
        kid,
        "--key",
        &uri,
        "--out",
        &blob,
    ]);
    assert!(wrapped.status.success(), "{}", stderr(&wrapped));
    let imported = ok(
        &vault.cli(
            None,
            &[
                "--output",
                "json",
                "import",
                "--name",
                "m-aes",
                "--kty",
                "oct",
                "--byok-file",
                &blob,
                "--tags",
                "a=b",
            ],
        ),
        "import",
    );
    assert_eq!(imported["kty"], "oct-HSM");
    assert_eq!(imported["kek_kid"], kid);
    assert_eq!(vault.versions("m-aes"), 1);
}

#[test]
fn managed_identity_through_a_full_transfer() {
    let vault = LocalVault::start(false, "", |_| {});
    let uri = generate(Token::Nss, P256, &format!("mi-{}", std::process::id()));
    let transfer = |header: &str, name: &str| {
        let mut cmd = vault.command(
            Some(Token::Nss),
            &byok_tests::vault::full_transfer_args(&uri, name)
                .iter()
                .map(String::as_str)
                .chain(["--auth", "managed-identity"])
                .collect::<Vec<_>>(),
        );
        // Only what App Service gives a process: the endpoint and its secret (no tenant, no client secret).
        cmd.env_remove("AZURE_CLIENT_SECRET")
            .env_remove("AZURE_TENANT_ID")
            .env_remove("AZURE_CLIENT_ID")
            .env("IDENTITY_ENDPOINT", &vault.info.identity_endpoint)
            .env("IDENTITY_HEADER", header);
        run(&mut cmd)
    };
    let record = ok(&transfer(&vault.info.identity_header, "mi-key"), "managed identity");
    check_record(&record, &vault, "mi-key", "EC-HSM", "NSS Certificate DB");
    let refused_out = transfer("not-the-identity-header", "mi-key2");
    assert_eq!(refused_out.status.code(), Some(7), "{}", stderr(&refused_out));
    assert!(
        stderr(&refused_out).contains("X-IDENTITY-HEADER"),
        "{}",
        stderr(&refused_out)
    );
    assert_eq!(vault.versions("mi-key2"), 0, "nothing imported without a token");
}
