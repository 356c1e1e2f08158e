//! One HSM key into several vaults (a fan-out): a batch of 20 keys into two Key Vaults and a Managed HSM served by
//! one local tenant, the second vault losing its access half-way; then `--resume` completes only what is missing,
//! and every key is in every vault exactly once, verified, with one record naming every destination.

use byok_encoding::{Curve, KeyKind};
use byok_tests::batch::{generate_in_nss, manifest, results};
use byok_tests::hsm::Token;
use byok_tests::vault::{LocalVault, batch_args};
use byok_tests::{run, stderr};
use serde_json::Value;

const N: usize = 20;

fn fan_out(vault: &LocalVault, manifest: &std::path::Path, dir: &std::path::Path) -> std::process::Output {
    let state = dir.join("state.jsonl").display().to_string();
    let records = dir.join("records").display().to_string();
    let args = batch_args(manifest, &["--resume", &state, "--record-dir", &records, "--jobs", "4"]);
    run(&mut vault.command_all(Some(Token::Nss), &args.iter().map(String::as_str).collect::<Vec<_>>()))
}

fn record(dir: &std::path::Path, name: &str) -> Value {
    let path = dir.join("records").join(format!("{name}.record.json"));
    serde_json::from_slice(&std::fs::read(&path).expect("a fan-out record")).expect("JSON")
}

#[test]
fn a_fan_out_with_a_destination_failing_half_way_resumes_to_every_key_in_every_vault_once() {
    let vault = LocalVault::start(false, "", |c| {
        let mut revoked = byok_emulator::VaultConfig::new(false);
        revoked.faults = "forbid-after=10".parse().expect("fault spec");
        c.more_vaults = vec![revoked, byok_emulator::VaultConfig::new(true)];
    });
    let urls: Vec<String> = vault.info.vaults.iter().map(|v| v.vault_url.clone()).collect();
    let labels = generate_in_nss("fan", &[KeyKind::Ec(Curve::P256); N]);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("records")).expect("record dir");
    let manifest = manifest(dir.path(), &labels, "f");

    // The second vault refuses everything after its tenth import; the others take every key.
    let out = fan_out(&vault, &manifest, dir.path());
    assert_eq!(out.status.code(), Some(9), "some keys failed: {}", stderr(&out));
    let (lines, summary) = results(&out);
    assert_eq!(
        (summary["total"].as_u64(), lines.len()),
        (Some(3 * N as u64), 3 * N),
        "{summary}"
    );
    assert_eq!(
        (summary["done"].as_u64(), summary["failed"].as_u64()),
        (Some(50), Some(10)),
        "{summary}"
    );
    let per_vault: Vec<_> = summary["vaults"]
        .as_array()
        .expect("per vault")
        .iter()
        .map(|v| (v["done"].as_u64(), v["failed"].as_u64()))
        .collect();
    assert_eq!(
        per_vault,
        [(Some(20), Some(0)), (Some(10), Some(10)), (Some(20), Some(0))],
        "{summary}"
    );
    for line in lines.iter().filter(|l| l["status"] == "failed") {
        assert_eq!(line["vault"], urls[1].as_str(), "only the revoked vault fails: {line}");
        assert!(line["detail"].as_str().is_some_and(|d| d.contains("403")), "{line}");
    }
    let missing: Vec<String> = (0..N)
        .map(|i| format!("f{i}"))
        .filter(|n| vault.versions_in(1, n) == 0)
        .collect();
    assert_eq!(missing.len(), 10, "ten keys are missing from the revoked vault");
    let partial = record(dir.path(), &missing[0]);
    let statuses: Vec<_> = partial["destinations"]
        .as_array()
        .expect("destinations")
        .iter()
        .map(|d| d["status"].as_str())
        .collect();
    assert_eq!(statuses, [Some("done"), Some("failed"), Some("done")], "{partial}");

    // Access is back (the vault restarts without the fault, on the same URLs): the resume does only the ten.
    let vault = vault.restart(|| {});
    let out = fan_out(&vault, &manifest, dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let (lines, summary) = results(&out);
    assert_eq!(
        (summary["total"].as_u64(), summary["done"].as_u64()),
        (Some(10), Some(10)),
        "{summary}"
    );
    assert!(
        lines.iter().all(|l| l["vault"] == urls[1].as_str()),
        "only the missing destination is redone"
    );
    let mut names: Vec<&str> = lines.iter().filter_map(|l| l["name"].as_str()).collect();
    names.sort_unstable();
    let mut expected: Vec<&str> = missing.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(names, expected);

    // Every key in every vault exactly once, each verified against the HSM's key, one record naming them all.
    for i in 0..N {
        let name = format!("f{i}");
        for (v, url) in urls.iter().enumerate() {
            assert_eq!(vault.versions_in(v, &name), 1, "{name} in {url}");
        }
        let record = record(dir.path(), &name);
        let destinations = record["destinations"].as_array().expect("destinations");
        let vaults: Vec<&str> = destinations.iter().filter_map(|d| d["vault"].as_str()).collect();
        assert_eq!(vaults, urls.iter().map(String::as_str).collect::<Vec<_>>(), "{record}");
        let mut public_keys = Vec::new();
        for (d, url) in destinations.iter().zip(&urls) {
            assert_eq!(d["status"], "done", "{record}");
            assert!(
                d["kid"]
                    .as_str()
                    .is_some_and(|k| k.starts_with(&format!("{url}/keys/{name}/"))),
                "{d}"
            );
            assert_eq!(d["record"]["verification"]["result"], "verified", "{d}");
            let (source, key) = (&d["record"]["source"], &d["record"]["key"]);
            public_keys.push((
                source["key_label"].clone(),
                source["key_id"].clone(),
                key["public_key_sha256"].clone(),
            ));
        }
        assert!(
            public_keys.windows(2).all(|w| w[0] == w[1]) && !public_keys[0].2.is_null(),
            "one HSM key, the same public key in every vault: {public_keys:?}"
        );
    }

    // Each vault's inventory reconciles with the fan-out records: its own entries, the others' vaults counted apart.
    let records = dir.path().join("records").display().to_string();
    for url in &urls {
        let args = [
            "--output",
            "json",
            "status",
            "--record-dir",
            &records,
            "--vault-url",
            url,
        ];
        let mut cmd = byok_tests::byok_cli();
        cmd.args(args)
            .args(["--ca-file", &vault.info.ca_file.display().to_string()]);
        let out = run(vault.credentials(&mut cmd));
        assert!(out.status.success(), "{url}: {}", stderr(&out));
        let status: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let r = &status["reconciliation"];
        assert_eq!(
            (r["records"].as_u64(), r["other_vaults"].as_u64()),
            (Some(N as u64), Some(2 * N as u64)),
            "{r}"
        );
        assert_eq!(r["discrepancies"], serde_json::json!([]), "{r}");
    }
}

#[test]
fn full_transfer_into_several_vaults_keeps_going_past_one_that_fails_and_records_them_all() {
    let vault = LocalVault::start(false, "", |c| {
        let mut refusing = byok_emulator::VaultConfig::new(false);
        refusing.faults = "forbid-after=0".parse().expect("fault spec");
        c.more_vaults = vec![refusing, byok_emulator::VaultConfig::new(true)];
    });
    let urls: Vec<String> = vault.info.vaults.iter().map(|v| v.vault_url.clone()).collect();
    let label = generate_in_nss("fanone", &[KeyKind::Ec(Curve::P256)]).remove(0);
    let uri = format!("pkcs11:token=NSS%20Certificate%20DB;object={label}");
    let dir = tempfile::tempdir().expect("tempdir");
    let record_file = dir.path().join("app.record.json");
    let mut args = byok_tests::vault::full_transfer_args(&uri, "app");
    args.extend(["--record".to_owned(), record_file.display().to_string()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&mut vault.command_all(Some(Token::Nss), &argv));
    assert_eq!(out.status.code(), Some(9), "one destination failed: {}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("1 of 3 destinations failed: {}", urls[1])),
        "{}",
        stderr(&out)
    );
    let record: Value = serde_json::from_slice(&std::fs::read(&record_file).expect("the record")).expect("JSON");
    assert_eq!(
        record,
        serde_json::from_slice::<Value>(&out.stdout).expect("stdout is the record")
    );
    let d = record["destinations"].as_array().expect("destinations");
    let got: Vec<_> = d.iter().map(|d| (d["vault"].as_str(), d["status"].as_str())).collect();
    let want = [
        (Some(urls[0].as_str()), Some("done")),
        (Some(urls[1].as_str()), Some("failed")),
        (Some(urls[2].as_str()), Some("done")),
    ];
    assert_eq!(got, want, "{record}");
    assert!(d[1]["detail"].as_str().is_some_and(|t| t.contains("403")), "{record}");
    for i in [0, 2] {
        assert_eq!(d[i]["record"]["verification"]["result"], "verified", "{record}");
        assert_eq!(vault.versions_in(i, "app"), 1);
    }
    assert_eq!(vault.versions_in(1, "app"), 0, "the refusing vault holds nothing");
    assert_eq!(
        d[2]["record"]["attestation"]["status"], "verified",
        "the Managed HSM's attestations are checked"
    );

    // One kept .byok file cannot hold a blob per destination: refused before anything is sent.
    let keep = dir.path().join("app.byok").display().to_string();
    let mut args = byok_tests::vault::full_transfer_args(&uri, "other");
    args.extend(["--keep-byok".to_owned(), keep]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&mut vault.command_all(Some(Token::Nss), &argv));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("a fan-out makes one per destination"),
        "{}",
        stderr(&out)
    );
    assert_eq!(vault.versions_in(0, "other"), 0);
}

#[test]
fn a_manifest_names_destinations_only_when_the_operator_accepts_them() {
    let vault = LocalVault::start(false, "", |c| {
        c.more_vaults = vec![byok_emulator::VaultConfig::new(false)]
    });
    let urls: Vec<String> = vault.info.vaults.iter().map(|v| v.vault_url.clone()).collect();
    let labels = generate_in_nss("fanman", &[KeyKind::Ec(Curve::P256); 2]);
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = manifest(dir.path(), &labels, "m");
    let listed = dir.path().join("destinations.toml");
    let quoted: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    let text = format!(
        "destinations = [{}]\n{}",
        quoted.join(", "),
        std::fs::read_to_string(&plain).expect("manifest")
    );
    std::fs::write(&listed, text).expect("manifest with destinations");
    let ca = vault.info.ca_file.display().to_string();
    let batch = |extra: &[&str]| {
        let mut args = batch_args(&listed, &["--ca-file", &ca]);
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = Token::Nss.command(&argv);
        vault.credentials(&mut cmd);
        run(&mut cmd)
    };
    // Not accepted: refused before any vault is reached, naming the vaults it lists.
    let out = batch(&[]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&urls[1]) && stderr(&out).contains("--manifest-destinations"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        vault.versions_in(0, "kek") + vault.versions_in(1, "kek"),
        0,
        "no vault was touched"
    );
    // Accepted: both keys into both vaults.
    let out = batch(&["--manifest-destinations"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, summary) = results(&out);
    assert_eq!(summary["done"], 4, "{summary}");
    assert!((0..2).all(|v| (0..2).all(|k| vault.versions_in(v, &format!("m{k}")) == 1)));
    // Flags and manifest destinations together are ambiguous; a one-vault command refuses two vaults.
    let out = batch(&["--manifest-destinations", "--vault-url", &urls[0]]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = vault.cli(None, &["kek", "create", "--name", "kek2", "--vault-url", &urls[1]]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("this command takes one vault, not 2"),
        "{}",
        stderr(&out)
    );
    // The same vault twice (here with a trailing slash) would get the keys twice: refused before anything happens.
    let twice = format!("{}/", urls[0]);
    let args = batch_args(&plain, &["--vault-url", &twice]);
    let out = run(&mut vault.command(Some(Token::Nss), &args.iter().map(String::as_str).collect::<Vec<_>>()));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is named twice"), "{}", stderr(&out));
}
