//! `byok-cli batch` end to end: a thousand keys from the NSS token into the local Key Vault in both modes, every key
//! verified and imported once; Ctrl-C halfway and a resume that ends with every key imported exactly once; a dry run
//! that reports planted problems and writes nothing.

use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use byok_encoding::{AesSize, Curve, KeyKind};
use byok_pkcs11::{Module, ModuleConfig};
use byok_tests::hsm::{Token, env};
use byok_tests::vault::LocalVault;
use byok_tests::{stderr, stdout};
use serde_json::Value;

/// NSS is loaded by one test at a time in this process (`cargo test` runs tests as threads).
static NSS: Mutex<()> = Mutex::new(());

/// Generates keys in the NSS token in-process (much faster than a process per key); returns their labels.
fn generate_in_nss(prefix: &str, kinds: &[KeyKind]) -> Vec<String> {
    let _one = NSS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let e = env();
    let module = Module::load(&ModuleConfig {
        path: e["nss"]["module"].as_str().expect("module").into(),
        init_args: Some(e["nss"]["init_args"].as_str().expect("init args").to_owned()),
    })
    .expect("NSS loads");
    let session = module
        .open(&Token::Nss.uri().parse().expect("uri"), None)
        .expect("NSS session");
    let prefix = format!("{prefix}-{}", std::process::id());
    kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            let label = format!("{prefix}-{i}");
            session
                .generate(*kind, &label, &(i as u32).to_be_bytes())
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            label
        })
        .collect()
}

/// A manifest naming each label's key as `{name_prefix}{i}`.
fn manifest(dir: &Path, labels: &[String], name_prefix: &str) -> std::path::PathBuf {
    let mut text = String::from("[defaults]\ntags = { migration = \"batch-test\" }\n");
    for (i, label) in labels.iter().enumerate() {
        text.push_str(&format!(
            "\n[[key]]\nuri = \"pkcs11:token=NSS%20Certificate%20DB;object={label}\"\nname = \"{name_prefix}{i}\"\n"
        ));
    }
    let path = dir.join(format!("{name_prefix}manifest.toml"));
    std::fs::write(&path, text).expect("manifest");
    path
}

fn batch_command(vault: &LocalVault, token: Token, manifest: &Path, extra: &[&str]) -> std::process::Command {
    let m = manifest.display().to_string();
    let mut args = vec![
        "--output",
        "json",
        "batch",
        "--kek-name",
        "kek",
        "--kek-size",
        "2048",
        "--manifest",
        &m,
    ];
    args.extend(extra);
    vault.command(Some(token), &args)
}

fn batch(vault: &LocalVault, token: Token, manifest: &Path, extra: &[&str]) -> Output {
    byok_tests::run(&mut batch_command(vault, token, manifest, extra))
}

/// The per-key result lines and the summary of a `--output json` batch.
fn results(out: &Output) -> (Vec<Value>, Value) {
    let mut lines: Vec<Value> = stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let summary = lines.pop().expect("a summary line");
    (lines, summary["summary"].clone())
}

fn thousand(managed_hsm: bool) {
    let vault = LocalVault::start(managed_hsm, "", |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    let kinds: Vec<KeyKind> = (0..1000)
        .map(|i| {
            if managed_hsm && i % 2 == 0 {
                KeyKind::Aes(AesSize::Aes256)
            } else {
                KeyKind::Ec(Curve::P256)
            }
        })
        .collect();
    let mode = if managed_hsm { "mhsm" } else { "kv" };
    let labels = generate_in_nss(&format!("batch-{mode}"), &kinds);
    let manifest = manifest(dir.path(), &labels, "k");
    let records = dir.path().join("records");
    std::fs::create_dir(&records).expect("records dir");
    let state = dir.path().join("state.jsonl");
    let (records_arg, state_arg) = (records.display().to_string(), state.display().to_string());
    let out = batch(
        &vault,
        Token::Nss,
        &manifest,
        &["--jobs", "8", "--record-dir", &records_arg, "--resume", &state_arg],
    );
    assert!(out.status.success(), "{mode}: {}", stderr(&out));
    let (lines, summary) = results(&out);
    assert_eq!(summary["done"], 1000, "{mode}: {summary}");
    assert_eq!(lines.len(), 1000);
    assert!(lines.iter().all(|l| l["status"] == "done"), "{mode}");
    for i in 0..1000 {
        let name = format!("k{i}");
        assert_eq!(vault.versions(&name), 1, "{mode}: {name}");
        let record: Value = serde_json::from_slice(
            &std::fs::read(records.join(format!("{name}.record.json"))).expect("a record per key"),
        )
        .expect("JSON");
        assert_eq!(record["verification"]["result"], "verified", "{mode}: {name}");
        assert_eq!(record["key"]["tags"]["migration"], "batch-test");
    }

    // Run again without the state file: every key is found in the vault with the same key, and skipped.
    let out = batch(&vault, Token::Nss, &manifest, &["--jobs", "8"]);
    assert!(out.status.success(), "{mode} again: {}", stderr(&out));
    let (_, summary) = results(&out);
    assert_eq!(
        (summary["done"].as_u64(), summary["skipped"].as_u64()),
        (Some(0), Some(1000)),
        "{summary}"
    );
    assert!(
        (0..1000).all(|i| vault.versions(&format!("k{i}")) == 1),
        "no key imported twice"
    );
}

#[test]
fn a_thousand_keys_into_a_managed_hsm() {
    thousand(true);
}

#[test]
fn a_thousand_keys_into_a_key_vault() {
    thousand(false);
}

#[test]
fn interrupted_and_resumed_imports_every_key_once() {
    let vault = LocalVault::start(true, "latency=5ms", |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    let labels = generate_in_nss("batch-int", &vec![KeyKind::Ec(Curve::P256); 300]);
    let manifest = manifest(dir.path(), &labels, "r");
    let state = dir.path().join("state.jsonl");
    let state_arg = state.display().to_string();
    let mut cmd = batch_command(&vault, Token::Nss, &manifest, &["--resume", &state_arg, "--jobs", "4"]);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("batch starts");
    let lines = || std::fs::read_to_string(&state).map(|t| t.lines().count()).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while lines() < 30 {
        assert!(Instant::now() < deadline, "the batch made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let out = child.wait_with_output().expect("batch ends");
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("interrupted after"), "{}", stderr(&out));
    let first = lines();
    assert!((30..300).contains(&first), "interrupted halfway: {first} keys recorded");

    let out = batch(&vault, Token::Nss, &manifest, &["--resume", &state_arg, "--jobs", "4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("resuming:"), "{}", stderr(&out));
    let (_, summary) = results(&out);
    let second = summary["done"].as_u64().unwrap_or_default() + summary["skipped"].as_u64().unwrap_or_default();
    assert_eq!(first as u64 + second, 300, "{summary}");
    for i in 0..300 {
        assert_eq!(vault.versions(&format!("r{i}")), 1, "r{i} imported exactly once");
    }
}

#[test]
fn dry_run_reports_planted_problems_and_writes_nothing() {
    let vault = LocalVault::start(true, "", |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    let aes = |name: &str| {
        Token::SoftHsm.generate(&["--kty", "oct", "--size", "256"], name)["uri"]
            .as_str()
            .expect("uri")
            .to_owned()
    };
    let (taken_by, fresh) = (aes("dry-a"), aes("dry-b"));
    let out = vault.full_transfer(Token::SoftHsm, &taken_by, "taken", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = format!(
        "[[key]]\nuri = \"{fresh}\"\nname = \"fresh\"\nkty = \"oct\"\nsize = 256\n\n\
         [[key]]\nuri = \"pkcs11:token=byok-src;object=rsa2048-not-extractable;type=private\"\nname = \"locked\"\n\n\
         [[key]]\nuri = \"pkcs11:token=byok-src;object=brainpool;type=private\"\nname = \"brainpool\"\n\n\
         [[key]]\nuri = \"{fresh}\"\nname = \"taken\"\n\n\
         [[key]]\nuri = \"{taken_by}\"\nname = \"fresh-2\"\nkty = \"EC\"\n"
    );
    let manifest = dir.path().join("planted.toml");
    std::fs::write(&manifest, text).expect("manifest");
    let out = batch(&vault, Token::SoftHsm, &manifest, &["--dry-run"]);
    assert_eq!(out.status.code(), Some(9), "{}", stderr(&out));
    let plans: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let plan = |name: &str| {
        plans
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name}: {plans:?}"))
    };
    assert_eq!(plan("(self-test)")["ok"], true, "SoftHSM wraps AES keys");
    assert_eq!(plan("(KEK)")["ok"], true);
    assert_eq!(plan("fresh")["ok"], true, "{}", plan("fresh"));
    for (name, why) in [
        ("locked", "extractable"),
        ("brainpool", "Azure does not accept"),
        ("taken", "exists in the vault with a different key"),
        ("fresh-2", "the manifest says EC"),
    ] {
        let p = plan(name);
        assert_eq!(p["ok"], false, "{name}: {p}");
        assert!(p["plan"].as_str().is_some_and(|t| t.contains(why)), "{name}: {p}");
    }
    assert!(stderr(&out).contains("nothing was written"), "{}", stderr(&out));
    assert_eq!(vault.versions("fresh"), 0);
    assert_eq!(vault.versions("taken"), 1);
    assert_eq!(vault.versions("kek"), 1);
}
