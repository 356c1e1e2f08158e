//! What a second process, a signal, kill -9 and a careless path used to break, through the binary against the local
//! Key Vault and the NSS / SoftHSM tokens: two runs on one state file or one vault, a state file from another
//! vault, SIGTERM and SIGHUP, a key imported without its record, conflicting output paths, `--force` at a special
//! file, manifests that choose code or PIN files, untrusted state files, records, duplicate keys, PIN file modes.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use byok_encoding::{AesSize, KeyKind};
use byok_tests::batch::{batch, batch_command, generate_in_nss, manifest, results, state_lines, wait_for_keys};
use byok_tests::catalogue::FullDisk;
use byok_tests::hsm::{Token, env};
use byok_tests::vault::LocalVault;
use byok_tests::{assert_refused, byok_cli, run, stderr, stdout};
use serde_json::Value;

fn aes_keys(prefix: &str, n: usize) -> Vec<String> {
    generate_in_nss(prefix, &vec![KeyKind::Aes(AesSize::Aes256); n])
}

/// One AES key made in the NSS token: its label and URI.
fn one_aes_key(prefix: &str) -> (Vec<String>, String) {
    let labels = aes_keys(prefix, 1);
    let uri = format!("pkcs11:token=NSS%20Certificate%20DB;object={}", labels[0]);
    (labels, uri)
}

fn arg(p: &Path) -> String {
    p.display().to_string()
}

fn each_once(vault: &LocalVault, prefix: &str, n: usize) {
    for i in 0..n {
        assert_eq!(vault.versions(&format!("{prefix}{i}")), 1, "{prefix}{i}");
    }
}

fn state_text(state: &Path) -> String {
    std::fs::read_to_string(state).expect("state file")
}

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[test]
fn a_second_run_on_a_state_file_is_refused_with_the_holders_pid() {
    let vault = LocalVault::start(true, "latency=40ms", |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = manifest(dir.path(), &aes_keys("lock", 20), "l");
    let state = dir.path().join("state.jsonl");
    let mut first = batch_command(
        &vault,
        Token::Nss,
        &manifest,
        &["--resume", &arg(&state), "--jobs", "2"],
    );
    let first = first
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    wait_for_keys(&state, 1);
    let second = batch(&vault, Token::Nss, &manifest, &["--resume", &arg(&state)]);
    assert_refused(
        &second,
        5,
        &format!("is in use by another byok-cli (pid {})", first.id()),
    );
    let out = first.wait_with_output().expect("first ends");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    each_once(&vault, "l", 20);
}

#[test]
fn two_runs_without_a_state_file_import_each_key_once() {
    let vault = LocalVault::start(true, "latency=20ms", |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = manifest(dir.path(), &aes_keys("race", 20), "r");
    // The KEK first, so that the two runs do not race to create it (a KEK is created once per vault).
    let out = vault.cli(None, &["kek", "create", "--name", "kek", "--size", "2048"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let spawn = || {
        batch_command(&vault, Token::Nss, &manifest, &["--jobs", "4"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts")
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().expect("a"), b.wait_with_output().expect("b"));
    for out in [&a, &b] {
        assert!(out.status.success(), "{}", stderr(out));
    }
    let (sa, sb) = (results(&a).1, results(&b).1);
    let done = sa["done"].as_u64().expect("done") + sb["done"].as_u64().expect("done");
    assert_eq!(done, 20, "each key imported by exactly one run: {sa} {sb}");
    each_once(&vault, "r", 20);
}

#[test]
fn a_state_file_belongs_to_its_vault() {
    let (a, b) = (LocalVault::start(true, "", |_| {}), LocalVault::start(true, "", |_| {}));
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = manifest(dir.path(), &aes_keys("bind", 3), "b");
    let state = dir.path().join("state.jsonl");
    let out = batch(&a, Token::Nss, &manifest, &["--resume", &arg(&state)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = state_text(&state);
    let out = batch(&b, Token::Nss, &manifest, &["--resume", &arg(&state)]);
    assert_refused(
        &out,
        5,
        &format!(
            "belongs to another run: its vault is {}, this run's is {}",
            a.info.vault_url, b.info.vault_url
        ),
    );
    assert_eq!(b.versions("b0") + b.versions("b1") + b.versions("b2"), 0);
    assert_eq!(state_text(&state), before, "nothing appended");
    // Another KEK or another manifest is another run too.
    let (m, st) = (arg(&manifest), arg(&state));
    let other_kek = a.cli(
        Some(Token::Nss),
        &[
            "batch",
            "--kek-name",
            "kek2",
            "--kek-size",
            "2048",
            "--manifest",
            &m,
            "--resume",
            &st,
        ],
    );
    assert_refused(&other_kek, 5, "its KEK is kek, this run's is kek2");
    std::fs::write(
        &manifest,
        format!("{}\n# edited\n", std::fs::read_to_string(&manifest).expect("manifest")),
    )
    .expect("edit");
    let edited = batch(&a, Token::Nss, &manifest, &["--resume", &arg(&state)]);
    assert_refused(&edited, 5, "its manifest (SHA-256) is");
}

/// A batch stopped by `sig` once two keys are recorded: exit `code`, every key the vault holds has its done line
/// and record, and the resume finishes the rest exactly once.
fn stopped_by(sig: &str, code: i32) {
    let vault = LocalVault::start(true, "latency=150ms,methods=POST", |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    const N: usize = 12;
    let manifest = manifest(dir.path(), &aes_keys(&format!("sig{sig}"), N), "s");
    let (state, records) = (dir.path().join("state.jsonl"), dir.path().join("records"));
    std::fs::create_dir(&records).expect("records");
    let flags = ["--resume", &arg(&state), "--record-dir", &arg(&records), "--jobs", "4"];
    let child = batch_command(&vault, Token::Nss, &manifest, &flags)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    wait_for_keys(&state, 2);
    signal(child.id(), sig);
    let out = child.wait_with_output().expect("ends");
    assert_eq!(out.status.code(), Some(code), "{sig}: {}", stderr(&out));
    assert!(stderr(&out).contains("the keys in flight finished"), "{}", stderr(&out));
    let recorded = state_lines(&state);
    assert!(recorded < N, "{sig} stopped the batch before its end ({recorded})");
    for i in 0..N {
        let name = format!("s{i}");
        if vault.versions(&name) > 0 {
            assert!(
                records.join(format!("{name}.record.json")).is_file(),
                "{sig}: {name} imported without a record"
            );
            assert!(
                state_text(&state).contains(&format!("\"name\":\"{name}\",\"status\":\"done\"")),
                "{name}"
            );
        }
    }
    let out = batch(&vault, Token::Nss, &manifest, &flags);
    assert!(out.status.success(), "{}", stderr(&out));
    each_once(&vault, "s", N);
    assert!((0..N).all(|i| records.join(format!("s{i}.record.json")).is_file()));
}

#[test]
fn sigterm_and_sighup_stop_a_batch_like_ctrl_c() {
    stopped_by("TERM", 143);
    stopped_by("HUP", 129);
}

#[test]
fn a_key_imported_before_kill_9_gets_its_record_on_resume() {
    // The verification (one AES encryption, a POST) is slow: a window in which the key is in the vault and not
    // recorded. kill -9 in it.
    let vault = LocalVault::start(true, "latency=1500ms,methods=POST", |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = manifest(dir.path(), &aes_keys("kill9", 3), "k");
    let (state, records) = (dir.path().join("state.jsonl"), dir.path().join("records"));
    std::fs::create_dir(&records).expect("records");
    let flags = [
        "--resume",
        &arg(&state),
        "--record-dir",
        &arg(&records),
        "--jobs",
        "1",
        "--hsm-sessions",
        "1",
    ];
    let log = dir.path().join("stderr");
    let mut child = batch_command(&vault, Token::Nss, &manifest, &flags)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    while vault.versions("k0") == 0 {
        let ended = child.try_wait().expect("wait");
        assert!(
            ended.is_none() && Instant::now() < deadline,
            "k0 was never imported: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("kill -9");
    let _ = child.wait();
    assert!(!records.join("k0.record.json").exists(), "the window was missed");
    assert!(
        state_text(&state).contains("\"name\":\"k0\",\"status\":\"started\""),
        "{}",
        state_text(&state)
    );
    let out = batch(&vault, Token::Nss, &manifest, &flags);
    assert!(out.status.success(), "{}", stderr(&out));
    each_once(&vault, "k", 3);
    let record: Value =
        serde_json::from_slice(&std::fs::read(records.join("k0.record.json")).expect("k0's record")).expect("JSON");
    assert_eq!(record["verification"]["result"], "verified", "{record:#}");
    assert_eq!(record["import"]["completed_by_resume"], true);
    let tag = &record["key"]["tags"]["byok-transfer"];
    assert_eq!(
        &record["transfer_id"], tag,
        "the record names the transfer that imported it"
    );
    let (lines, _) = results(&out);
    let k0 = lines.iter().find(|l| l["name"] == "k0").expect("k0's line");
    assert_eq!(k0["status"], "done", "{k0}");
}

#[test]
fn a_record_that_cannot_be_written_still_reports_the_import() {
    let vault = LocalVault::start(true, "", |_| {});
    let full = FullDisk::new();
    let (labels, uri) = one_aes_key("norec");
    let record = full.path().join("r.json");
    let out = vault.full_transfer(Token::Nss, &uri, "nr", &["--record", &arg(&record)]);
    assert_refused(
        &out,
        4,
        "was imported and verified as shown above, but its record was not written",
    );
    let shown: Value = serde_json::from_str(&stdout(&out)).expect("the result is printed");
    assert!(
        shown["key"]["kid"].as_str().is_some_and(|k| k.contains("/keys/nr/")),
        "{shown}"
    );
    assert_eq!(vault.versions("nr"), 1);

    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = manifest(dir.path(), &labels, "nb");
    let state = dir.path().join("state.jsonl");
    let out = batch(
        &vault,
        Token::Nss,
        &manifest,
        &["--record-dir", &arg(full.path()), "--resume", &arg(&state)],
    );
    assert_refused(&out, 4, "`nb0` was imported as");
    let line: Value = serde_json::from_str(stdout(&out).lines().next().expect("a line")).expect("JSON");
    assert_eq!(line["status"], "done", "{line}");
    assert!(line["record_error"].as_str().is_some(), "{line}");
    assert!(state_text(&state).contains("\"record_error\""));
}

#[test]
fn conflicting_output_paths_are_refused_before_anything() {
    let vault = LocalVault::start(true, "", |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, uri) = one_aes_key("paths");
    let same = dir.path().join("out.json");
    let also = format!("{}/./out.json", dir.path().display());
    let out = vault.full_transfer(Token::Nss, &uri, "p", &["--keep-byok", &arg(&same), "--record", &also]);
    assert_refused(&out, 2, "--keep-byok and --record name the same file");
    assert_eq!(vault.versions("kek") + vault.versions("p"), 0, "nothing was created");
    assert!(!same.exists());
}

/// `wrap --force --out OUT` of a software key.
fn wrap_forced(out: &Path) -> Output {
    run(byok_cli()
        .args(["wrap", "--allow-software-key", "--force", "--kek-file"])
        .arg(byok_tests::testdata("keys/kek-rsa2048.spki.pem"))
        .args(["--kek-kid", byok_tests::KID, "--key-file"])
        .arg(byok_tests::testdata("keys/ec-p256.pkcs8.pem"))
        .arg("--out")
        .arg(out))
}

#[test]
fn force_never_replaces_a_special_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo");
    assert!(run(std::process::Command::new("mkfifo").arg(&fifo)).status.success());
    let out = wrap_forced(&fifo);
    assert_refused(&out, 5, "it is not a regular file (a device, FIFO or socket)");
    use std::os::unix::fs::FileTypeExt as _;
    assert!(
        std::fs::symlink_metadata(&fifo)
            .expect("still there")
            .file_type()
            .is_fifo()
    );
    // A regular file and a symlink are still replaced with --force (the link itself, not its target).
    let target = dir.path().join("target");
    std::fs::write(&target, "keep").expect("target");
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let out = wrap_forced(&link);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&target).expect("target"), "keep");
}

fn manifest_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("manifest");
    path
}

#[test]
fn a_manifest_chooses_neither_the_module_nor_the_pin_file() {
    let vault = LocalVault::start(true, "", |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    let evil = dir.path().join("evil.so");
    std::fs::write(&evil, "not a library, and never loaded").expect("evil");
    let cases = [
        (
            format!("module-path={}", evil.display()),
            "a module-path or module-name in a manifest URI is refused",
        ),
        (
            "pin-source=file:/etc/shadow".to_owned(),
            "a pin-source in a manifest URI is refused",
        ),
    ];
    for (attribute, message) in cases {
        let m = manifest_file(
            dir.path(),
            "m.toml",
            &format!("[[key]]\nuri = \"pkcs11:token=NSS%20Certificate%20DB;object=x?{attribute}\"\nname = \"x\"\n"),
        );
        for extra in [&[][..], &["--dry-run"][..]] {
            let out = batch(&vault, Token::Nss, &m, extra);
            assert_refused(&out, 3, message);
        }
    }
}

#[test]
fn one_hsm_key_under_two_names_is_refused_unless_allowed() {
    let vault = LocalVault::start(true, "", |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    let label = &aes_keys("dup", 1)[0];
    let by_label = format!("pkcs11:token=NSS%20Certificate%20DB;object={label}");
    let m = manifest_file(
        dir.path(),
        "same.toml",
        &format!("[[key]]\nuri = \"{by_label}\"\nname = \"d1\"\n\n[[key]]\nuri = \"{by_label}\"\nname = \"d2\"\n"),
    );
    assert_refused(
        &batch(&vault, Token::Nss, &m, &[]),
        3,
        "`d1` and `d2` name the same HSM key",
    );
    // The same key by two different URIs (label; label and type) is caught when the token shows it.
    let m = manifest_file(
        dir.path(),
        "two-uris.toml",
        &format!(
            "[[key]]\nuri = \"{by_label}\"\nname = \"d1\"\n\n[[key]]\nuri = \"{by_label};type=secret-key\"\nname = \"d2\"\n"
        ),
    );
    let out = batch(&vault, Token::Nss, &m, &["--hsm-sessions", "1"]);
    assert_eq!(out.status.code(), Some(9), "{}", stderr(&out));
    let (lines, _) = results(&out);
    let d2 = lines.iter().find(|l| l["name"] == "d2").expect("d2");
    assert!(
        d2["detail"]
            .as_str()
            .is_some_and(|d| d.contains("is the HSM key `d1` goes to already")),
        "{d2}"
    );
    assert_eq!(vault.versions("d2"), 0);
    let out = batch(&vault, Token::Nss, &m, &["--allow-duplicate-keys"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(vault.versions("d2"), 1);
}

#[test]
fn state_files_are_untrusted_input() {
    let vault = LocalVault::start(true, "", |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = manifest(dir.path(), &aes_keys("untrusted", 2), "u");
    // A manifest given as the state file is refused and left as it was.
    let before = std::fs::read(&manifest).expect("manifest");
    let out = batch(&vault, Token::Nss, &manifest, &["--resume", &arg(&manifest)]);
    assert_refused(&out, 3, "is not byok's (line 1)");
    assert_eq!(std::fs::read(&manifest).expect("manifest"), before);
    // /dev/zero (endless, no newline) is refused at once, without reading it.
    let (out, took) = timed(|| batch(&vault, Token::Nss, &manifest, &["--resume", "/dev/zero"]));
    assert_refused(&out, 5, "it is not a regular file");
    assert!(took < Duration::from_secs(10), "{took:?}");
    // A symbolic link is not followed.
    let state = dir.path().join("state.jsonl");
    let link = dir.path().join("link.jsonl");
    std::os::unix::fs::symlink(&state, &link).expect("symlink");
    assert_refused(
        &batch(&vault, Token::Nss, &manifest, &["--resume", &arg(&link)]),
        5,
        "it is a symbolic link",
    );
    // A line far longer than byok writes is refused.
    let out = batch(&vault, Token::Nss, &manifest, &["--resume", &arg(&state), "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = batch(&vault, Token::Nss, &manifest, &["--resume", &arg(&state)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let good = state_text(&state);
    std::fs::write(&state, format!("{good}{}\n", "x".repeat(100_000))).expect("long line");
    assert_refused(
        &batch(&vault, Token::Nss, &manifest, &["--resume", &arg(&state)]),
        5,
        "longer than 65536 bytes",
    );
    // A partial last line (kill -9 mid-write) is ended before anything is appended.
    std::fs::write(&state, format!("{good}{{\"name\":\"u1\",\"sta")).expect("partial");
    let out = batch(&vault, Token::Nss, &manifest, &["--resume", &arg(&state)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = state_text(&state);
    assert!(text.contains("{\"name\":\"u1\",\"sta\n"), "{text}");
    assert!(
        text.lines()
            .all(|l| l == "{\"name\":\"u1\",\"sta" || serde_json::from_str::<Value>(l).is_ok()),
        "{text}"
    );
}

fn timed(f: impl FnOnce() -> Output) -> (Output, Duration) {
    let started = Instant::now();
    let out = f();
    (out, started.elapsed())
}

#[test]
fn record_dir_does_not_overwrite_a_record() {
    let vault = LocalVault::start(true, "", |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = manifest(dir.path(), &aes_keys("norewrite", 2), "w");
    let records = dir.path().join("records");
    std::fs::create_dir(&records).expect("records");
    std::fs::write(records.join("w0.record.json"), "keep me").expect("old record");
    let out = batch(&vault, Token::Nss, &manifest, &["--record-dir", &arg(&records)]);
    assert_eq!(out.status.code(), Some(9), "{}", stderr(&out));
    let (lines, _) = results(&out);
    let w0 = lines.iter().find(|l| l["name"] == "w0").expect("w0");
    assert_eq!(w0["status"], "failed");
    assert!(
        w0["detail"]
            .as_str()
            .is_some_and(|d| d.contains("byok does not replace a record")),
        "{w0}"
    );
    assert_eq!(
        std::fs::read_to_string(records.join("w0.record.json")).expect("kept"),
        "keep me"
    );
    assert_eq!((vault.versions("w0"), vault.versions("w1")), (0, 1));
}

#[test]
fn a_kek_the_token_can_never_use_is_not_created() {
    // SoftHSM 2.6.1 wraps RSA keys with a padding bug: no path is conformant for PKCS#8. full-transfer of an RSA
    // key stops before it creates a KEK for it.
    let vault = LocalVault::start(false, "", |_| {});
    let key = Token::SoftHsm.generate(&["--kty", "RSA", "--size", "2048"], "never");
    let uri = key["uri"].as_str().expect("uri");
    let out = vault.full_transfer(Token::SoftHsm, uri, "never", &[]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(!stderr(&out).contains("created KEK"), "{}", stderr(&out));
    assert_eq!(
        vault.versions("kek"),
        0,
        "a KEK was created for a key that cannot be wrapped"
    );
}

#[test]
fn large_manifests_have_their_own_limit() {
    let vault = LocalVault::start(true, "", |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = manifest(dir.path(), &aes_keys("bigm", 1), "g");
    // 2 MiB of comments (a manifest of ~20,000 keys is that large) around one key: read, not refused.
    let padded = format!(
        "{}{}",
        "# padding\n".repeat(200_000),
        std::fs::read_to_string(&manifest).expect("m")
    );
    std::fs::write(&manifest, padded).expect("padded");
    let out = batch(&vault, Token::Nss, &manifest, &["--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let huge = dir.path().join("huge.toml");
    let f = std::fs::File::create(&huge).expect("huge");
    f.set_len(65 * 1024 * 1024).expect("sparse 65 MiB");
    assert_refused(
        &batch(&vault, Token::Nss, &huge, &[]),
        3,
        "bytes, the limit for manifests",
    );
}

#[test]
fn a_pin_file_others_can_read_draws_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pin = dir.path().join("pin");
    std::fs::copy(env()["pin_file"].as_str().expect("pin"), &pin).expect("copy");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let e = env();
    let uri = Token::SoftHsm.uri();
    let list = |pin: &Path| {
        run(byok_cli()
            .env("SOFTHSM2_CONF", e["softhsm"]["conf"].as_str().expect("conf"))
            .args([
                "hsm",
                "list",
                "--token",
                &uri,
                "--pkcs11-module",
                e["softhsm"]["module"].as_str().expect("m"),
            ])
            .arg("--pin-file")
            .arg(pin))
    };
    let out = list(&pin);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is accessible by other users (mode 0644)"),
        "{}",
        stderr(&out)
    );
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    assert!(!stderr(&list(&pin)).contains("accessible by other users"));
}

#[test]
fn aes_records_carry_the_key_check_value_and_the_directory_is_synced() {
    let vault = LocalVault::start(true, "", |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    let (labels, uri) = one_aes_key("kcv");
    let record = dir.path().join("kcv.record.json");
    let trace = dir.path().join("trace");
    let mut args = byok_tests::vault::full_transfer_args(&uri, "kcv");
    args.extend(["--record".to_owned(), arg(&record)]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cmd = vault.command(Some(Token::Nss), &args);
    // Under strace: after the record's rename, its directory is opened and fsync'ed.
    let mut traced = std::process::Command::new("strace");
    traced
        .args(["-f", "-qq", "-e", "trace=openat,rename,renameat,renameat2,fsync", "-o"])
        .arg(&trace);
    traced.arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => traced.env(k, v),
            None => traced.env_remove(k),
        };
    }
    let out = run(&mut traced);
    assert!(out.status.success(), "{}", stderr(&out));
    let record: Value = serde_json::from_slice(&std::fs::read(&record).expect("record")).expect("JSON");
    let listed = Token::Nss.json(&["hsm", "list", "--token", &Token::Nss.uri()]);
    let key = listed["keys"]
        .as_array()
        .and_then(|ks| ks.iter().find(|k| k["label"] == labels[0].as_str()))
        .unwrap_or_else(|| panic!("the key in `hsm list`: {listed}"));
    let kcv = record["source"]["key_check_value"].as_str().expect("a check value");
    assert_eq!(Some(kcv), key["kcv"].as_str(), "{key}");
    let log = std::fs::read_to_string(&trace).expect("trace");
    let lines: Vec<&str> = log.lines().collect();
    let renamed = lines
        .iter()
        .position(|l| l.contains("rename") && l.contains("kcv.record.json"))
        .unwrap_or_else(|| panic!("no rename of the record in:\n{log}"));
    let dir_text = format!("\"{}\"", dir.path().display());
    let opened = lines[renamed..]
        .iter()
        .find(|l| l.contains("openat") && l.contains(&dir_text))
        .and_then(|l| l.rsplit("= ").next())
        .and_then(|fd| fd.trim().parse::<u32>().ok())
        .unwrap_or_else(|| panic!("the directory is not opened after the rename:\n{log}"));
    assert!(
        lines[renamed..].iter().any(|l| l.contains(&format!("fsync({opened})"))),
        "the directory is not fsync'ed:\n{log}"
    );
}

#[test]
fn each_state_line_is_one_write() {
    // Under strace: every write to the state file is one whole line, so a crash never leaves half a line and a
    // line from another writer can never be interleaved into one.
    let vault = LocalVault::start(true, "", |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = manifest(dir.path(), &aes_keys("onewrite", 2), "o");
    let (state, trace) = (dir.path().join("state.jsonl"), dir.path().join("trace"));
    let cmd = batch_command(&vault, Token::Nss, &manifest, &["--resume", &arg(&state)]);
    let mut traced = std::process::Command::new("strace");
    traced
        .args(["-f", "-qq", "-s", "4096", "-e", "trace=openat,write,writev", "-o"])
        .arg(&trace);
    traced.arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => traced.env(k, v),
            None => traced.env_remove(k),
        };
    }
    let out = run(&mut traced);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = std::fs::read_to_string(&trace).expect("trace");
    let opened = format!("\"{}\"", state.display());
    let fd = log
        .lines()
        .filter(|l| l.contains("openat") && l.contains(&opened) && l.contains("O_APPEND"))
        .find_map(|l| l.rsplit("= ").next()?.trim().parse::<u32>().ok())
        .unwrap_or_else(|| panic!("the state file is not opened for appending:\n{log}"));
    let writes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&format!("write({fd}, ")) || l.contains(&format!("writev({fd}, ")))
        .collect();
    // The header, then a `started` and a `done` line per key.
    assert_eq!(writes.len(), 5, "{writes:#?}");
    for w in &writes {
        let text = w.split_once(", \"").map(|(_, t)| t).expect("a string");
        assert_eq!(text.matches("\\n").count(), 1, "one line per write: {w}");
        assert!(text.contains("}\\n\""), "the line ends in that write: {w}");
    }
}
