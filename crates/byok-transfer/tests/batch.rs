//! The batch engine through the library's own API, as a service calls it: a manifest, options, an observer that
//! collects events, a cancel token. No CLI is involved.

mod common;

use std::sync::{Arc, Mutex};

use byok_encoding::{Curve, KeyKind, RsaSize};
use byok_pkcs11::Module;
use byok_transfer::batch::{self, BatchEvent, CancelToken, Manifest, Source, Status, Summary};
use byok_transfer::{KekPolicy, Tool};

use common::{LocalVault, ThrowawayToken};

/// What the observer saw: the total announced, and each key's name and status, in order.
#[derive(Debug, Default)]
struct Seen {
    starting: Option<u64>,
    keys: Vec<(String, Status, bool)>,
    details: Vec<String>,
}

struct Setup {
    dir: tempfile::TempDir,
    token: ThrowawayToken,
    vault: LocalVault,
    manifest: Manifest,
}

/// `keys` EC P-256 keys in a throwaway token, a local Key Vault, and a manifest that moves them all.
fn setup(keys: usize) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = ThrowawayToken::create(&dir.path().join("token"));
    let mut text = String::new();
    for i in 0..keys {
        token.generate(KeyKind::Ec(Curve::P256), &format!("batch-{i}"));
        let uri = format!(
            "pkcs11:token={};object=batch-{i}",
            ThrowawayToken::LABEL.replace(' ', "%20")
        );
        text.push_str(&format!("[[key]]\nuri = \"{uri}\"\nname = \"batch-{i}\"\n"));
    }
    let file = dir.path().join("keys.toml");
    std::fs::write(&file, text).expect("manifest");
    let manifest = Manifest::read(&file, false).expect("a valid manifest");
    let vault = LocalVault::start(&dir.path().join("vault"));
    Setup {
        dir,
        token,
        vault,
        manifest,
    }
}

fn options(s: &Setup, jobs: usize) -> batch::Options {
    batch::Options {
        kek: KekPolicy::reuse_or_create("batch-kek", RsaSize::Rsa2048),
        wrap: Default::default(),
        jobs,
        hsm_sessions: 1,
        state: Some(s.dir.path().join("state.jsonl")),
        record_dir: Some(s.dir.path().to_owned()),
        fail_fast: false,
        allow_duplicate_keys: false,
        tool: Tool::library(),
        attestation: Default::default(),
    }
}

/// Runs the batch with an observer that records what it sees; `stop_after` cancels once that many keys ended.
fn run(s: &Setup, options: &batch::Options, stop_after: Option<usize>) -> (Summary, Seen) {
    let module = Module::load(&s.token.module).expect("NSS softokn loads");
    let uri = &s.manifest.items[0].uri;
    let source = Source {
        module: &module,
        pin: None,
        uri,
    };
    let cancel = CancelToken::new();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let observer = {
        let (seen, cancel) = (seen.clone(), cancel.clone());
        move |event: &BatchEvent<'_>| {
            let mut seen = seen.lock().expect("lock");
            match event {
                BatchEvent::Starting { total } => seen.starting = Some(*total),
                BatchEvent::Key { result, record } => {
                    seen.keys.push((result.name.clone(), result.status, record.is_some()));
                    seen.details.push(format!(
                        "{}: {} at {}: {}",
                        result.name,
                        result.status.name(),
                        result.step,
                        result.detail
                    ));
                    if stop_after == Some(seen.keys.len()) {
                        cancel.cancel();
                    }
                }
                _ => {}
            }
        }
    };
    let conn = Arc::new(s.vault.connection());
    let summary = batch::run(&s.manifest, options, conn, source, Arc::new(observer), &cancel).expect("the batch runs");
    let seen = Arc::try_unwrap(seen)
        .expect("the batch let go of its observer")
        .into_inner()
        .expect("lock");
    (summary, seen)
}

#[test]
fn a_batch_moves_every_key_reports_each_and_records_it() {
    let s = setup(4);
    let (summary, seen) = run(&s, &options(&s, 2), None);
    assert_eq!(
        (summary.total, summary.done, summary.failed),
        (4, 4, 0),
        "{:#?}",
        seen.details
    );
    assert!(!summary.cancelled);
    assert_eq!(seen.starting, Some(4));
    let mut names: Vec<&str> = seen.keys.iter().map(|(n, _, _)| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["batch-0", "batch-1", "batch-2", "batch-3"]);
    assert!(
        seen.keys
            .iter()
            .all(|(_, status, record)| *status == Status::Done && *record)
    );
    assert_eq!(s.vault.observed.blobs().len(), 4, "one import per key");
    for i in 0..4 {
        let record = s.dir.path().join(format!("batch-{i}.record.json"));
        let record: byok_transfer::TransferRecord =
            serde_json::from_slice(&std::fs::read(&record).expect("a record per key")).expect("a record");
        assert_eq!(record.verification.expect("verified").result, "verified");
    }
    let state = std::fs::read_to_string(s.dir.path().join("state.jsonl")).expect("the state file");
    // A header, then for each key a `started` line before its import and a `done` line after it.
    let lines: Vec<serde_json::Value> = state
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    assert_eq!(lines[0]["byok_batch_state"], 1, "{state}");
    for i in 0..4 {
        let name = format!("batch-{i}");
        let statuses: Vec<&str> = lines
            .iter()
            .filter(|l| l["name"] == name.as_str())
            .filter_map(|l| l["status"].as_str())
            .collect();
        assert_eq!(statuses, ["started", "done"], "{name} in\n{state}");
    }

    // Run again on the same state: nothing is left to do, nothing is sent.
    let (again, seen) = run(&s, &options(&s, 2), None);
    assert_eq!((again.total, again.finished()), (0, 0), "{again:?}");
    assert!(seen.keys.is_empty());
    assert_eq!(s.vault.observed.blobs().len(), 4, "a resume sends nothing twice");
}

#[test]
fn cancelling_stops_new_keys_and_a_resume_finishes_the_rest_once() {
    let s = setup(5);
    let (summary, seen) = run(&s, &options(&s, 1), Some(2));
    assert!(summary.cancelled, "{summary:?}");
    assert!(summary.finished() >= 2 && summary.finished() < 5, "{summary:?}");
    assert_eq!(seen.keys.len() as u64, summary.finished());
    let first = summary.finished();

    let (rest, _) = run(&s, &options(&s, 1), None);
    assert!(!rest.cancelled);
    assert_eq!((rest.total, rest.done), (5 - first, 5 - first), "{rest:?}");
    assert_eq!(s.vault.observed.blobs().len(), 5, "every key imported exactly once");
}
