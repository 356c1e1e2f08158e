//! `byok-cli status` end to end: an inventory of 50 byok keys of mixed ages in the local Key Vault (backdated in the
//! emulator), the age and expiry exit codes, reconciliation with the batch's records (each kind of discrepancy
//! planted), the documented JSON schema, the aligned table, a Managed HSM, and bad input.

use std::collections::BTreeSet;
use std::path::Path;

use byok_encoding::{AesSize, Curve, KeyKind};
use byok_keyvault::Timestamp;
use byok_tests::batch::{batch, generate_in_nss};
use byok_tests::hsm::Token;
use byok_tests::vault::LocalVault;
use byok_tests::{assert_refused, ok_json, stdout};
use serde_json::Value;

const DAY: i64 = 86_400;
const N: usize = 50;

fn status(vault: &LocalVault, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--output", "json", "status"];
    all.extend(args);
    vault.cli(None, &all)
}

/// 50 EC keys by batch (`s0`…`s49`; `s40`…`s44` expire in 10 days), records in `records`; `s0`…`s9` backdated
/// 400 days.
fn fifty(vault: &LocalVault, dir: &Path, records: &Path) {
    let labels = generate_in_nss("status", &[KeyKind::Ec(Curve::P256); N]);
    let soon = Timestamp::from_unix(Timestamp::now().unix() + 10 * DAY).to_string();
    let mut text = String::new();
    for (i, label) in labels.iter().enumerate() {
        text.push_str(&format!(
            "[[key]]\nuri = \"pkcs11:token=NSS%20Certificate%20DB;object={label}\"\nname = \"s{i}\"\n"
        ));
        if (40..45).contains(&i) {
            text.push_str(&format!("expires = \"{soon}\"\n"));
        }
    }
    let manifest = dir.join("manifest.toml");
    std::fs::write(&manifest, text).expect("manifest");
    std::fs::create_dir(records).expect("records");
    let out = batch(
        vault,
        Token::Nss,
        &manifest,
        &["--jobs", "8", "--record-dir", records.to_str().expect("path")],
    );
    assert!(out.status.success(), "batch: {}", byok_tests::stderr(&out));
    for i in 0..10 {
        assert_eq!(
            vault
                .observed
                .set_created(&format!("s{i}"), "", Timestamp::now().unix() - 400 * DAY)
                .ok(),
            Some(true)
        );
    }
}

#[test]
fn an_inventory_of_fifty_keys_ages_expiry_and_records() {
    let vault = LocalVault::start(false, "", |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    let records = dir.path().join("records");
    fifty(&vault, dir.path(), &records);

    let inv = ok_json(&status(&vault, &[]), "status");
    let names: Vec<&str> = inv["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["name"].as_str().expect("name"))
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(
        (names.len(), &names),
        (N, &sorted),
        "every byok key, sorted; the KEK is not byok's import"
    );
    let s0 = &inv["keys"][0];
    assert_eq!(s0["name"], "s0");
    let v = &s0["versions"][0];
    assert_eq!(
        (v["kind"].as_str(), v["imported_by_byok"].as_bool()),
        (Some("EC-P-256"), Some(true))
    );
    assert_eq!(v["age_days"], 400);
    assert_eq!(s0["current_version"], v["version"]);
    let serial = Token::Nss.json(&["hsm", "info"])["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["label"] == "NSS Certificate DB")
        .map(|t| t["serial"].as_str().expect("serial").trim().to_owned());
    assert_eq!(v["provenance"]["token_serial"].as_str().map(str::to_owned), serial);
    assert!(
        v["provenance"]["key_id_digest"]
            .as_str()
            .expect("digest")
            .starts_with("sha256:")
    );
    assert_eq!(
        inv["needs_rotation"],
        serde_json::json!([]),
        "nothing asked, nothing due"
    );

    // Age and expiry: exit 10 and the keys that need rotation, for cron and CI.
    let out = status(&vault, &["--max-age", "365d", "--expiring-within", "30d"]);
    assert_eq!(out.status.code(), Some(10), "{}", byok_tests::stderr(&out));
    let inv: Value = serde_json::from_str(&stdout(&out)).expect("JSON on stdout");
    let due: BTreeSet<(String, String)> = inv["needs_rotation"]
        .as_array()
        .expect("list")
        .iter()
        .map(|a| {
            (
                a["name"].as_str().expect("name").to_owned(),
                a["reason"].as_str().expect("reason").to_owned(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = (0..10)
        .map(|i| (format!("s{i}"), "max-age".to_owned()))
        .chain((40..45).map(|i| (format!("s{i}"), "expiring".to_owned())))
        .collect();
    assert_eq!(due, expected);
    assert_eq!(
        status(&vault, &["--max-age", "401d", "--expiring-within", "9d"])
            .status
            .code(),
        Some(0)
    );

    // Reconciled with the batch's records: all agree.
    let rec = records.to_str().expect("path");
    let inv = ok_json(&status(&vault, &["--record-dir", rec]), "reconciled");
    assert_eq!(
        (
            inv["reconciliation"]["records"].as_u64(),
            inv["reconciliation"]["discrepancies"].as_array().map(Vec::len)
        ),
        (Some(N as u64), Some(0))
    );

    // Each discrepancy planted once.
    let record = |name: &str| -> Value {
        serde_json::from_slice(&std::fs::read(records.join(format!("{name}.record.json"))).expect("record"))
            .expect("JSON")
    };
    std::fs::remove_file(records.join("s1.record.json")).expect("remove");
    let mut missing_version = record("s2");
    missing_version["key"]["version"] = "0123456789abcdef0123456789abcdef".into();
    missing_version["transfer_id"] = "1".repeat(32).into();
    let mut missing_key = record("s3");
    missing_key["key"]["name"] = "gone".into();
    missing_key["transfer_id"] = "2".repeat(32).into();
    let mut mismatch = record("s4");
    mismatch["key"]["public_key_sha256"] = "00".repeat(32).into();
    for (file, v) in [("mv.json", missing_version), ("mk.json", missing_key)] {
        std::fs::write(records.join(file), v.to_string()).expect("write");
    }
    std::fs::write(records.join("s4.record.json"), mismatch.to_string()).expect("write");
    std::fs::write(records.join("junk.json"), "{ not a record").expect("write");
    let out = status(&vault, &["--record-dir", rec]);
    assert_eq!(out.status.code(), Some(10), "{}", byok_tests::stderr(&out));
    let inv: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let found: BTreeSet<(String, String)> = inv["reconciliation"]["discrepancies"]
        .as_array()
        .expect("list")
        .iter()
        .map(|d| {
            let at = d["record"].as_str().or(d["kid"].as_str()).expect("where");
            let at = at.rsplit('/').next().expect("file").to_owned();
            (d["kind"].as_str().expect("kind").to_owned(), at)
        })
        .collect();
    let s1 = inv["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["name"] == "s1")
        .expect("s1")["current_version"]
        .as_str()
        .expect("version")
        .to_owned();
    let expected: BTreeSet<(String, String)> = [
        ("unrecorded-version", s1.as_str()),
        ("missing-version", "mv.json"),
        ("missing-key", "mk.json"),
        ("fingerprint-mismatch", "s4.record.json"),
        ("unreadable-record", "junk.json"),
    ]
    .map(|(k, at)| (k.to_owned(), at.to_owned()))
    .into_iter()
    .collect();
    assert_eq!(found, expected);

    // The table: sorted, aligned, one row per version.
    let out = vault.cli(None, &["status"]);
    assert!(out.status.success());
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().skip(1).collect();
    assert!(lines[0].starts_with("NAME") && lines.len() == N + 1, "{text}");
    let kind_at = lines[0].find("KIND").expect("KIND column");
    assert!(
        lines[1..].iter().all(|l| l[kind_at..].starts_with("EC-P-256")),
        "aligned:\n{text}"
    );
    assert!(
        lines[1].starts_with("s0 ") && lines[2].starts_with("s1 ") && lines[3].starts_with("s10 "),
        "{text}"
    );
}

#[test]
fn the_json_matches_its_documented_schema() {
    let vault = LocalVault::start(true, "", |_| {});
    let labels = generate_in_nss(
        "status-mhsm",
        &[KeyKind::Aes(AesSize::Aes256), KeyKind::Ec(Curve::P384)],
    );
    for (i, label) in labels.iter().enumerate() {
        let uri = format!("pkcs11:token=NSS%20Certificate%20DB;object={label}");
        ok_json(
            &vault.full_transfer(Token::Nss, &uri, &format!("m{i}"), &[]),
            "transfer",
        );
    }
    assert_eq!(
        vault
            .observed
            .set_created("m1", "", Timestamp::now().unix() - 2 * DAY)
            .ok(),
        Some(true)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let out = status(
        &vault,
        &["--record-dir", dir.path().to_str().expect("path"), "--max-age", "1d"],
    );
    assert_eq!(out.status.code(), Some(10), "m1 is too old, and no records: unrecorded");
    let inv: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(inv["keys"][0]["versions"][0]["kind"], "AES-256");
    assert_eq!(
        inv["keys"][0]["versions"][0]["provenance"]["check_value"]
            .as_str()
            .map(str::len),
        Some(6)
    );
    assert_eq!(inv["keys"][1]["versions"][0]["kind"], "EC-P-384");
    let doc =
        std::fs::read_to_string(byok_tests::hsm::workspace().join("docs/cli/status.md")).expect("docs/cli/status.md");
    let example = doc
        .split("```json\n")
        .nth(1)
        .and_then(|s| s.split("\n```").next())
        .expect("a JSON example in the doc");
    let example: Value = serde_json::from_str(example).expect("the documented example is JSON");
    assert_eq!(
        paths(&inv, ""),
        paths(&example, ""),
        "docs/cli/status.md's example shows every field"
    );
}

/// Every field path of a JSON value (arrays as `[]`).
fn paths(v: &Value, at: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = format!("{at}.{k}");
                out.insert(p.clone());
                out.extend(paths(v, &p));
            }
        }
        Value::Array(a) => a.iter().for_each(|v| out.extend(paths(v, &format!("{at}[]")))),
        _ => {}
    }
    out
}

#[test]
fn bad_input_gives_a_clear_error() {
    let vault = LocalVault::start(false, "", |_| {});
    assert_refused(&status(&vault, &["--max-age", "1y"]), 2, "`1y` is not a period");
    assert_refused(
        &status(&vault, &["--record-dir", "/nonexistent/records"]),
        4,
        "cannot read the record directory",
    );
    let out = ok_json(&status(&vault, &[]), "an empty vault");
    assert_eq!(out["keys"], serde_json::json!([]));
}
