//! `byok-cli batch` end to end: a thousand keys from the NSS token into the local Key Vault in both modes, every key
//! verified and imported once; Ctrl-C halfway and a resume that ends with every key imported exactly once; a dry run
//! that reports planted problems and writes nothing.

use std::path::Path;
use std::process::{Output, Stdio};

use byok_encoding::{AesSize, Curve, KeyKind};
use byok_tests::batch::{batch, batch_command, generate_in_nss, manifest, results, state_lines, wait_for_keys};
use byok_tests::hsm::{Token, env};
use byok_tests::vault::LocalVault;
use byok_tests::{stderr, stdout};
use serde_json::Value;

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
    let vault = LocalVault::start(true, "", |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    // A 1,000-key batch, Ctrl-C once half of it is recorded.
    const N: usize = 1000;
    let labels = generate_in_nss("batch-int", &vec![KeyKind::Ec(Curve::P256); N]);
    let manifest = manifest(dir.path(), &labels, "r");
    let state = dir.path().join("state.jsonl");
    let state_arg = state.display().to_string();
    let mut cmd = batch_command(&vault, Token::Nss, &manifest, &["--resume", &state_arg, "--jobs", "8"]);
    // stdout to a file: 1,000 JSON lines would fill a pipe nobody reads until the end.
    let stdout_file = std::fs::File::create(dir.path().join("stdout.jsonl")).expect("stdout file");
    cmd.stdin(Stdio::null()).stdout(stdout_file).stderr(Stdio::piped());
    let child = cmd.spawn().expect("batch starts");
    wait_for_keys(&state, N / 2);
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let out = child.wait_with_output().expect("batch ends");
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("interrupted after"), "{}", stderr(&out));
    let first = state_lines(&state);
    assert!(
        (N / 2..N).contains(&first),
        "interrupted halfway: {first} keys recorded"
    );

    let out = batch(&vault, Token::Nss, &manifest, &["--resume", &state_arg, "--jobs", "8"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("resuming:"), "{}", stderr(&out));
    let (_, summary) = results(&out);
    let second = summary["done"].as_u64().unwrap_or_default() + summary["skipped"].as_u64().unwrap_or_default();
    assert_eq!(first as u64 + second, N as u64, "{summary}");
    for i in 0..N {
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
    // `taken` is `fresh`'s key under another name on purpose (the vault holds another key under it).
    let out = batch(
        &vault,
        Token::SoftHsm,
        &manifest,
        &["--dry-run", "--allow-duplicate-keys"],
    );
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

/// A SoftHSM of the test's own (its own token directory, so that the token can be taken away), with `n` AES keys.
struct OwnSoftHsm {
    dir: tempfile::TempDir,
    conf: std::path::PathBuf,
    pin_file: std::path::PathBuf,
}

impl OwnSoftHsm {
    fn new(n: usize) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).expect("token dir");
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .expect("conf");
        let init = byok_tests::run(
            std::process::Command::new("softhsm2-util")
                .env("SOFTHSM2_CONF", &conf)
                .args(["--init-token", "--free", "--label", "removable"])
                .args(["--pin", "246810", "--so-pin", "13579111"]),
        );
        assert!(init.status.success(), "softhsm2-util: {}", stderr(&init));
        let pin_file = dir.path().join("pin");
        byok_tests::write_secret(&pin_file, "246810\n");
        let hsm = Self { dir, conf, pin_file };
        for i in 0..n {
            let out = byok_tests::run(&mut hsm.command(&[
                "hsm",
                "generate",
                "--token",
                "pkcs11:token=removable",
                "--label",
                &format!("rm-{i}"),
                "--kty",
                "oct",
                "--size",
                "256",
            ]));
            assert!(out.status.success(), "generate: {}", stderr(&out));
        }
        hsm
    }

    /// `byok-cli ARGS` on this token.
    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut c = byok_tests::byok_cli();
        c.args(args)
            .env("SOFTHSM2_CONF", &self.conf)
            .args(["--pkcs11-module", env()["softhsm"]["module"].as_str().expect("module")])
            .arg("--pin-file")
            .arg(&self.pin_file);
        c
    }

    /// The token's directory (SoftHSM names it by a UUID).
    fn token_dir(&self) -> std::path::PathBuf {
        let tokens = self.dir.path().join("tokens");
        let mut entries: Vec<_> = std::fs::read_dir(&tokens)
            .expect("token dir")
            .map(|e| e.expect("entry").path())
            .collect();
        assert_eq!(entries.len(), 1, "one token");
        entries.remove(0)
    }
}

#[test]
fn a_token_removed_mid_batch_fails_cleanly_and_resumes() {
    const N: usize = 60;
    let vault = LocalVault::start(true, "latency=40ms", |_| {});
    let hsm = OwnSoftHsm::new(N);
    let work = tempfile::tempdir().expect("tempdir");
    let mut text = String::new();
    for i in 0..N {
        text.push_str(&format!(
            "[[key]]\nuri = \"pkcs11:token=removable;object=rm-{i}\"\nname = \"rm{i}\"\n\n"
        ));
    }
    let manifest = work.path().join("manifest.toml");
    std::fs::write(&manifest, text).expect("manifest");
    let state = work.path().join("state.jsonl");
    let records = work.path().join("records");
    std::fs::create_dir(&records).expect("records");
    let (state_arg, records_arg) = (state.display().to_string(), records.display().to_string());
    let mut args = byok_tests::vault::batch_args(
        &manifest,
        &["--jobs", "2", "--resume", &state_arg, "--record-dir", &records_arg],
    );
    args.extend(vault.transfer_flags());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let with_vault = |mut c: std::process::Command| {
        vault.credentials(&mut c);
        c
    };

    let mut cmd = with_vault(hsm.command(&args));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("batch starts");
    wait_for_keys(&state, 10);
    // Pull the token: its directory goes away under the running batch.
    let token_dir = hsm.token_dir();
    let away = hsm.dir.path().join("away");
    std::fs::rename(&token_dir, &away).expect("remove the token");
    let out = child.wait_with_output().expect("batch ends");
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    // The batch notices the token is gone, stops the HSM side at once, lets the keys in flight finish, and says so.
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(err.contains("token `removable` is no longer available"), "{err}");
    assert!(err.contains("the keys in flight finished"), "{err}");
    let (lines_out, summary) = results(&out);
    let done = summary["done"].as_u64().expect("done") as usize;
    assert!((10..N).contains(&done), "removed halfway: {summary}");
    // Each HSM session (two by default) meets the missing token at most once; the rest are not started.
    let failed = summary["failed"].as_u64().expect("failed");
    assert!((1..=2).contains(&failed), "{summary}");
    assert!(summary["token_gone"].as_str().is_some(), "{summary}");
    for l in &lines_out {
        let name = l["name"].as_str().expect("name");
        let record = records.join(format!("{name}.record.json"));
        if l["status"] == "done" {
            assert_eq!(vault.versions(name), 1, "{name}");
            assert!(record.exists(), "{name}: a record");
        } else {
            assert_eq!(l["status"], "failed", "{l}");
            assert_eq!(vault.versions(name), 0, "{name}: not in the vault");
            assert!(!record.exists(), "{name}: no record claims it");
        }
    }

    // Put the token back and resume: every key ends imported exactly once.
    std::fs::rename(&away, &token_dir).expect("reinsert the token");
    let out = byok_tests::run(&mut with_vault(hsm.command(&args)));
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, summary) = results(&out);
    assert_eq!(summary["done"].as_u64(), Some((N - done) as u64), "{summary}");
    for i in 0..N {
        assert_eq!(vault.versions(&format!("rm{i}")), 1, "rm{i} imported exactly once");
    }
}

/// Checks the invariants of a batch run: a key reported done is in the vault once, with a record saying verified; one
/// skipped is in the vault once; a key that failed names its step, has no record, and is in the vault at most once (a
/// lost answer may have landed). Returns the keys done or skipped, and the keys failed.
fn check_claims(vault: &LocalVault, out: &Output, records: &Path) -> (usize, usize) {
    let (lines, summary) = results(out);
    let (mut done, mut failed) = (0, 0);
    for l in &lines {
        let name = l["name"].as_str().expect("name");
        let record = records.join(format!("{name}.record.json"));
        match l["status"].as_str() {
            Some("done") => {
                done += 1;
                assert_eq!(vault.versions(name), 1, "{name}: {l}");
                let r: Value = serde_json::from_slice(&std::fs::read(&record).expect("record")).expect("JSON");
                assert_eq!(r["verification"]["result"], "verified", "{name}");
            }
            Some("skipped") => {
                // A key whose import landed though its run could not confirm it (the answers were lost): found.
                done += 1;
                assert_eq!(vault.versions(name), 1, "{name}: {l}");
            }
            Some("failed") => {
                failed += 1;
                assert!(vault.versions(name) <= 1, "{name} imported twice");
                assert!(!l["step"].as_str().unwrap_or_default().is_empty(), "{l}");
                assert!(!record.exists(), "{name}: a record for a failed key");
            }
            other => panic!("{name}: unexpected status {other:?}: {l}"),
        }
    }
    let counted = summary["done"].as_u64().unwrap_or_default() + summary["skipped"].as_u64().unwrap_or_default();
    assert_eq!(counted, done as u64, "{summary}");
    (done, failed)
}

#[test]
fn vault_faults_lose_nothing_and_import_nothing_twice() {
    const N: usize = 40;
    let vault = LocalVault::start(
        true,
        // Harsh enough that some requests outlast the retries: a try fails 74% of the time (0.65 refused, then a
        // quarter of the rest dropped), so 7 failures in a row are ~12% likely.
        "429=0.45,503=0.2,drop=0.25,latency=2ms,retry-after=0,seed=23",
        |_| {},
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let labels = generate_in_nss("batch-faults", &[KeyKind::Ec(Curve::P256); N]);
    let manifest = manifest(dir.path(), &labels, "f");
    let records = dir.path().join("records");
    std::fs::create_dir(&records).expect("records");
    let state = dir.path().join("state.jsonl");
    let (records_arg, state_arg) = (records.display().to_string(), state.display().to_string());
    let args = [
        "--jobs",
        "4",
        "--hsm-sessions",
        "4",
        "--record-dir",
        &records_arg,
        "--resume",
        &state_arg,
    ];
    let (mut total_done, mut total_failed) = (0, 0);
    let mut runs = 0;
    loop {
        runs += 1;
        let out = batch(&vault, Token::Nss, &manifest, &args);
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{err}");
        // A run gives up on ~12% of requests (the 7-in-a-row above); two of them (the KEK and its attestation) stop
        // a whole run and three more fail a key. Simulated, 8 runs leave the batch unfinished ~7% of the time, 16 runs
        // 0.02%; 24 runs is beyond reach of bad luck yet still catches a batch that never converges.
        assert!(runs < 24, "the faults never let the batch finish in {runs} runs: {err}");
        if out.status.code() == Some(7) {
            // Reading or creating the KEK outlasted the retries: the batch stops before any key, and says so.
            assert!(err.contains("`kek`") && stdout(&out).is_empty(), "{err}");
            continue;
        }
        let (done, failed) = check_claims(&vault, &out, &records);
        total_done += done;
        total_failed += failed;
        match out.status.code() {
            Some(0) => break,
            Some(9) => assert!(failed > 0, "exit 9 with no failed key: {err}"),
            other => panic!("run {runs}: exit {other:?}: {err}"),
        }
    }
    assert_eq!(
        total_done, N,
        "every key done (or found done) exactly once over {runs} runs"
    );
    assert!(
        total_failed > 0,
        "the faults made some keys fail (else this test shows nothing)"
    );
    let faults = vault.observed.faults_injected();
    assert!(faults >= 50, "the vault injected {faults} faults");
    for i in 0..N {
        assert_eq!(vault.versions(&format!("f{i}")), 1, "f{i}");
    }
}

#[test]
fn a_lying_vault_is_caught_key_by_key() {
    const N: usize = 12;
    let vault = LocalVault::start(true, "substitute=0.4,methods=PUT,seed=4", |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    let kinds: Vec<KeyKind> = (0..N)
        .map(|i| {
            if i % 2 == 0 {
                KeyKind::Aes(AesSize::Aes256)
            } else {
                KeyKind::Ec(Curve::P384)
            }
        })
        .collect();
    let labels = generate_in_nss("batch-lie", &kinds);
    let manifest = manifest(dir.path(), &labels, "l");
    let records = dir.path().join("records");
    std::fs::create_dir(&records).expect("records");
    let records_arg = records.display().to_string();
    let out = batch(&vault, Token::Nss, &manifest, &["--record-dir", &records_arg]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(8), "{err}");
    assert!(
        err.contains("differ from the HSM's: do not use those versions"),
        "{err}"
    );
    let (lines, summary) = results(&out);
    let mismatched: Vec<&Value> = lines.iter().filter(|l| l["status"] == "mismatch").collect();
    assert!(!mismatched.is_empty() && mismatched.len() < N, "{summary}");
    assert_eq!(summary["mismatched"].as_u64(), Some(mismatched.len() as u64));
    for l in &lines {
        let name = l["name"].as_str().expect("name");
        let record: Value =
            serde_json::from_slice(&std::fs::read(records.join(format!("{name}.record.json"))).expect("a record"))
                .expect("JSON");
        let expected = if l["status"] == "mismatch" {
            "mismatch"
        } else {
            "verified"
        };
        assert_eq!(record["verification"]["result"], expected, "{name}: {l}");
    }
}

#[test]
fn resume_takes_empty_and_large_state_files() {
    let vault = LocalVault::start(true, "", |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    let labels = generate_in_nss(
        "batch-state",
        &[KeyKind::Aes(AesSize::Aes256), KeyKind::Ec(Curve::P256)],
    );
    let manifest = manifest(dir.path(), &labels, "s");
    // A run that stopped before its first key leaves an empty state file: the next run starts from the beginning.
    let state = dir.path().join("state.jsonl");
    std::fs::write(&state, "").expect("empty state");
    let state_arg = state.display().to_string();
    let out = batch(&vault, Token::Nss, &manifest, &["--resume", &state_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(results(&out).1["done"], 2);
    // A state file of a large migration (50,000 keys, over 5 MiB) is read, and its keys are skipped.
    let written = std::fs::read_to_string(&state).expect("state");
    let (header, rest) = written.split_once('\n').expect("a header line");
    let mut big = format!("{header}\n");
    let url = &vault.info.vault_url;
    for i in 0..50_000 {
        big.push_str(&format!(
            "{{\"name\":\"other-{i}\",\"status\":\"done\",\"step\":\"verifying\",\"detail\":\"{url}/keys/other-{i}/0123456789abcdef0123456789abcdef verified\",\"vault\":\"{url}\"}}\n"
        ));
    }
    big.push_str(rest);
    assert!(big.len() > 5 << 20);
    std::fs::write(&state, big).expect("big state");
    let out = batch(&vault, Token::Nss, &manifest, &["--resume", &state_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("resuming: 2 of 2 keys are done already"),
        "{}",
        stderr(&out)
    );
    assert_eq!(vault.versions("s0") + vault.versions("s1"), 2);
}

#[test]
fn a_missing_key_is_not_a_missing_token() {
    // A token that has no keys at all, and a manifest naming one: the key fails, the token is not called gone.
    let vault = LocalVault::start(true, "", |_| {});
    let hsm = OwnSoftHsm::new(0);
    let work = tempfile::tempdir().expect("tempdir");
    let manifest = work.path().join("manifest.toml");
    std::fs::write(
        &manifest,
        "[[key]]\nuri = \"pkcs11:token=removable;object=absent\"\nname = \"absent\"\n",
    )
    .expect("manifest");
    let mut args = byok_tests::vault::batch_args(&manifest, &[]);
    args.extend(vault.transfer_flags());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = byok_tests::run(vault.credentials(&mut hsm.command(&args)));
    assert_eq!(out.status.code(), Some(9), "{}", stderr(&out));
    let (lines, summary) = results(&out);
    assert_eq!(lines[0]["step"], "finding the key", "{}", lines[0]);
    assert!(summary["token_gone"].is_null(), "{summary}");
}
