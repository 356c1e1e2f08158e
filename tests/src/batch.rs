//! `byok-cli batch` driven from tests: keys made in the NSS token, manifests, runs, and reading their results.

use std::path::Path;
use std::process::Output;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use byok_encoding::KeyKind;
use byok_pkcs11::{Module, ModuleConfig};
use serde_json::Value;

use crate::hsm::{Token, env};
use crate::stdout;
use crate::vault::LocalVault;

/// NSS is loaded by one test at a time in this process (`cargo test` runs tests as threads).
static NSS: Mutex<()> = Mutex::new(());

/// Generates keys in the NSS token in-process (much faster than a process per key); returns their labels.
pub fn generate_in_nss(prefix: &str, kinds: &[KeyKind]) -> Vec<String> {
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
                // The label as CKA_ID: NSS files secret keys by CKA_ID, so ids shared by concurrent tests clobber each other.
                .generate(*kind, &label, label.as_bytes())
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            label
        })
        .collect()
}

/// A manifest naming each label's key as `{name_prefix}{i}`.
pub fn manifest(dir: &Path, labels: &[String], name_prefix: &str) -> std::path::PathBuf {
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

pub fn batch_command(vault: &LocalVault, token: Token, manifest: &Path, extra: &[&str]) -> std::process::Command {
    let args = crate::vault::batch_args(manifest, extra);
    vault.command(Some(token), &args.iter().map(String::as_str).collect::<Vec<_>>())
}

pub fn batch(vault: &LocalVault, token: Token, manifest: &Path, extra: &[&str]) -> Output {
    crate::run(&mut batch_command(vault, token, manifest, extra))
}

/// The per-key result lines and the summary of a `--output json` batch.
pub fn results(out: &Output) -> (Vec<Value>, Value) {
    let mut lines: Vec<Value> = stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let summary = lines.pop().expect("a summary line");
    (lines, summary["summary"].clone())
}

/// The keys a state file shows ended (not its header, not the `started` intents).
pub fn state_lines(state: &Path) -> usize {
    let ended = |l: &&str| {
        ["done", "skipped", "failed", "mismatch"]
            .iter()
            .any(|s| l.contains(&format!("\"status\":\"{s}\"")))
    };
    std::fs::read_to_string(state)
        .map(|t| t.lines().filter(ended).count())
        .unwrap_or(0)
}

/// Waits until the state file shows `n` keys (at most four minutes: a busy CI machine is slow).
pub fn wait_for_keys(state: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(240);
    while state_lines(state) < n {
        assert!(Instant::now() < deadline, "the batch made no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
}
