//! The batch run: the state file, the KEK, the HSM threads and the vault tasks behind them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use byok_encoding::{AesSize, KeyKind, RsaSize};
use byok_keyvault::Connection;
use byok_pkcs11::{Module, Pin, Pkcs11Uri, TokenSession};

use super::manifest::{Item, Manifest};
use super::report::{Forward, Outcome, Report, chain};
use super::{BatchEvent, BatchObserver, CancelToken, Options, Status, Summary};
use crate::attest::{self, KekAttestation};
use crate::error::{Error, Kind, Result, Step};
use crate::kek::{self, KekChoice};
use crate::locks::KeyLocks;
use crate::state::{Binding, Previous, StateFile};
use crate::transfer::{self, Pipeline, Prepared, Transferred};
use crate::verify::Verification;

/// The token a batch reads: the module, the PIN, and the URI of the manifest's first key (which names the token).
#[derive(Clone, Copy, Debug)]
pub struct Source<'m> {
    /// The loaded PKCS#11 module.
    pub module: &'m Module,
    /// The user PIN, if the token needs one.
    pub pin: Option<&'m Pin>,
    /// A URI naming the token.
    pub uri: &'m Pkcs11Uri,
}

/// Runs a batch to its end, or until `cancel` (or `--fail-fast`, or the token going away) stops it. Per-key
/// failures are results, counted in the [`Summary`]; an error means the batch itself could not go on (the state
/// file, the KEK, a record that could not be written). Blocking: it runs its own async runtime.
pub fn run(
    manifest: &Manifest,
    options: &Options,
    conn: Arc<Connection>,
    source: Source<'_>,
    observer: Arc<dyn BatchObserver>,
    cancel: &CancelToken,
) -> Result<Summary> {
    run_fan_out(manifest, options, &[conn], source, observer, cancel)
}

/// [`run`] into several vaults: every key of the manifest into every destination, each with its own KEK (and
/// its attestation), its own wrap in the HSM, its own job slots and pace, and its own result per key (a state line
/// naming the vault). One destination failing leaves the others going; a resume does only the (vault, key) pairs
/// not done. With a record directory, each key's record is a [`crate::fan_out::FanOutRecord`] of every destination.
pub fn run_fan_out(
    manifest: &Manifest,
    options: &Options,
    destinations: &[Arc<Connection>],
    source: Source<'_>,
    observer: Arc<dyn BatchObserver>,
    cancel: &CancelToken,
) -> Result<Summary> {
    let vaults = distinct_vaults(destinations)?;
    let session = preflight(options, &source)?;
    let token = session.token();
    let binding = Binding {
        vault: vaults.join(" "),
        kek: options.kek.name.clone(),
        token: format!("{} (serial {})", token.label, token.serial),
        manifest_sha256: manifest.sha256.clone(),
    };
    let (state, previous) = match &options.state {
        Some(path) => StateFile::open(path, &binding).map(|(s, p)| (Some(s), p))?,
        None => (None, Previous::default()),
    };
    let items = &manifest.items;
    // Per destination, the keys it lacks, in manifest order: each destination goes at its own pace.
    let todo: Vec<Vec<&Item>> = vaults
        .iter()
        .map(|vault| {
            items
                .iter()
                .filter(|i| !previous.is_completed(vault, &i.name))
                .collect()
        })
        .collect();
    let total: usize = todo.iter().map(Vec::len).sum();
    if previous.completed_count() > 0 {
        observer.event(&BatchEvent::Resuming {
            done: items.len() * vaults.len() - total,
            of: items.len() * vaults.len(),
        });
    }
    let report = Arc::new(Report {
        observer: observer.clone(),
        total: total as u64,
        counts: vaults.iter().map(|_| Default::default()).collect(),
        fan_out: (vaults.len() > 1).then(Default::default),
        vaults,
        state,
        record_dir: options.record_dir.clone(),
        fail_fast: options.fail_fast,
        stop: Default::default(),
        cancel: cancel.clone(),
        fatal: Mutex::new(None),
    });
    observer.event(&BatchEvent::Starting { total: report.total });
    let started = Instant::now();
    let token_gone = if total == 0 {
        None
    } else {
        let batch = Batch {
            options,
            destinations,
            report: &report,
            todo: &todo,
            previous: &previous,
        };
        batch.transfer_all(source, session)?
    };
    let fatal = report
        .fatal
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(e) = fatal {
        return Err(e);
    }
    Ok(summarize(&report, destinations, started, token_gone))
}

/// The counts, and each destination's pace.
fn summarize(report: &Report, destinations: &[Arc<Connection>], started: Instant, gone: Option<String>) -> Summary {
    let mut summary = report.summary(started.elapsed().as_secs_f64(), gone);
    summary.vaults = destinations
        .iter()
        .enumerate()
        .map(|(i, conn)| {
            let mut v = report.vault_summary(i);
            v.pace = conn.pace();
            v
        })
        .collect();
    summary.pace = match destinations {
        [one] => one.pace(),
        _ => summary
            .vaults
            .iter()
            .fold(byok_keyvault::Pace::default(), |mut sum, v| {
                sum.admitted += v.pace.admitted;
                sum.throttled += v.pace.throttled;
                sum.throttled_requests += v.pace.throttled_requests;
                sum
            }),
    };
    summary
}

/// The destinations' URLs, refused when there is none or one is named twice (a key would go to it twice).
fn distinct_vaults(destinations: &[Arc<Connection>]) -> Result<Vec<String>> {
    let vaults: Vec<String> = destinations.iter().map(|c| c.vault().url().to_owned()).collect();
    if vaults.is_empty() {
        return Err(Error::new(
            Step::Preflight,
            Kind::InvalidInput,
            "a batch needs a destination vault",
        ));
    }
    crate::fan_out::check_distinct(vaults.iter().map(String::as_str))?;
    Ok(vaults)
}

/// What can be refused before the token is opened, then the first session.
fn preflight<'m>(options: &Options, source: &Source<'m>) -> Result<TokenSession<'m>> {
    check(options)?;
    source
        .module
        .open(source.uri, source.pin)
        .map_err(|e| Error::hsm(Step::Preflight, e))
}

/// The options' files, checked before anything else happens: the record directory exists, the state file is one
/// byok could have written.
pub fn check(options: &Options) -> Result<()> {
    if let Some(dir) = &options.record_dir
        && !dir.is_dir()
    {
        return Err(Error::new(
            Step::Preflight,
            Kind::Io,
            format!("--record-dir {}: not a directory", dir.display()),
        ));
    }
    if let Some(state) = &options.state {
        crate::state::precheck(state)?;
    }
    Ok(())
}

/// One run's shared parts.
struct Batch<'a> {
    options: &'a Options,
    destinations: &'a [Arc<Connection>],
    report: &'a Arc<Report>,
    /// Per destination, the keys it lacks.
    todo: &'a [Vec<&'a Item>],
    previous: &'a Previous,
}

/// A destination as the HSM threads use it: its connection, its KEK, the KEK's attestation, its job slots.
struct Destination<'a> {
    conn: &'a Arc<Connection>,
    kek: KekChoice,
    attestation: KekAttestation,
    permits: Arc<tokio::sync::Semaphore>,
}

impl Batch<'_> {
    /// The KEK, then the HSM threads; waits for the keys in flight. Returns why the token went away, if it did.
    fn transfer_all(&self, source: Source<'_>, mut first: TokenSession<'_>) -> Result<Option<String>> {
        let internal = |what: String| Error::new(Step::Preflight, Kind::Internal, what);
        let rt = crate::runtime::multi_thread(2)?;
        // A token that can wrap nothing at all fails here, before a KEK is created for it.
        let wrap = self.options.wrap;
        if let Some(Err(e)) = [KeyKind::Aes(AesSize::Aes256), KeyKind::Rsa(RsaSize::Rsa2048)]
            .iter()
            .map(|k| first.check_wrappable(*k, wrap))
            .reduce(|a, b| a.or(b))
        {
            return Err(Error::hsm(Step::Preflight, e));
        }
        let forward = Forward(self.report.observer.clone());
        let jobs = self.options.jobs.max(1);
        // Each destination's KEK (one read, or a creation) and its attestation, before the first wrap.
        let mut destinations = Vec::new();
        for conn in self.destinations {
            let kek = rt.block_on(kek::obtain(conn, &self.options.kek, &forward))?;
            let attestation = rt.block_on(attest::check_kek(conn, &kek.kek, &self.options.attestation, &forward))?;
            destinations.push(Destination {
                conn,
                kek,
                attestation,
                permits: Arc::new(tokio::sync::Semaphore::new(jobs)),
            });
        }
        let locks = KeyLocks::new()
            .map_err(|e| Error::new(Step::Preflight, Kind::Io, format!("cannot prepare the key locks: {e}")))?;
        let work = Work {
            batch: self,
            destinations: &destinations,
            forward: &forward,
            rt: rt.handle(),
            next: self.todo.iter().map(|_| AtomicUsize::new(0)).collect(),
            gone: Mutex::new(None),
            seen_keys: Mutex::new(HashMap::new()),
            locks: Arc::new(locks),
        };
        let outcome = work.threads(source, first);
        // Wait for the keys in flight, then report what stopped the HSM side, if anything did.
        for d in &destinations {
            let all = rt
                .block_on(d.permits.acquire_many(jobs as u32))
                .map_err(|_| internal("the job slots were closed".into()))?;
            drop(all);
        }
        outcome?;
        Ok(work
            .gone
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

/// What the HSM threads share.
struct Work<'a> {
    batch: &'a Batch<'a>,
    destinations: &'a [Destination<'a>],
    forward: &'a Forward,
    rt: &'a tokio::runtime::Handle,
    /// Per destination, the next key to take from its list.
    next: Vec<AtomicUsize>,
    /// Set by the first thread that finds the token gone.
    gone: Mutex<Option<String>>,
    /// The HSM keys taken so far (label, id) and the name each goes to.
    seen_keys: Mutex<HashMap<(String, Vec<u8>), String>>,
    locks: Arc<KeyLocks>,
}

impl Work<'_> {
    /// `hsm_sessions` threads, each on its own session (the first on the session already open).
    fn threads(&self, source: Source<'_>, first: TokenSession<'_>) -> Result<()> {
        let units = self.batch.todo.iter().map(Vec::len).sum::<usize>();
        let sessions = self.batch.options.hsm_sessions.clamp(1, units.max(1));
        let report = self.batch.report;
        std::thread::scope(|scope| {
            let mut threads = vec![scope.spawn(move || self.hsm_thread(first))];
            for n in 1..sessions {
                threads.push(scope.spawn(move || match source.module.open(source.uri, source.pin) {
                    Ok(session) => self.hsm_thread(session),
                    // Some HSMs allow few sessions (CKR_SESSION_COUNT): the others carry on without this one.
                    Err(e) => {
                        let error = Error::hsm(Step::Preflight, e);
                        report.observer.event(&BatchEvent::SessionUnavailable {
                            number: n + 1,
                            of: sessions,
                            error: &error,
                        });
                        Ok(())
                    }
                }));
            }
            let mut first_error = None;
            for t in threads {
                let r = t
                    .join()
                    .unwrap_or_else(|_| Err(Error::new(Step::Wrap, Kind::Internal, "an HSM thread panicked")));
                if let Err(e) = r {
                    report.stop.store(true, Ordering::Relaxed);
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(()), Err)
        })
    }

    /// One HSM session's loop: take the next key, wait for a job slot, do its HSM side, hand its vault side to the
    /// runtime. Ends when the keys run out or the batch stops.
    fn hsm_thread(&self, mut session: TokenSession<'_>) -> Result<()> {
        let report = self.batch.report;
        loop {
            if report.stopped() {
                return Ok(());
            }
            // Back-pressure: the next key of whichever destination has a free slot first.
            let Some((permit, d, item)) = self.next_unit()? else {
                return Ok(());
            };
            let dest = &self.destinations[d];
            if report.stopped() {
                // Stopped while waiting (a signal, --fail-fast, the token gone): this key is not started.
                return Ok(());
            }
            let prepared = match self.hsm_side(&mut session, item, dest) {
                Ok(p) => p,
                Err((step, detail)) => {
                    drop(permit);
                    // A token that went away fails every key after it: stop and say so once, instead.
                    if let Err(gone) = session.check_present() {
                        report.key(&item.name, d, &Outcome::failed(step, format!("{detail} ({gone})")))?;
                        report.stop.store(true, Ordering::Relaxed);
                        let mut first = self.gone.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        first.get_or_insert(gone.to_string());
                        return Ok(());
                    }
                    report.key(&item.name, d, &Outcome::failed(step, detail))?;
                    continue;
                }
            };
            let (conn, report, locks) = (dest.conn.clone(), report.clone(), self.locks.clone());
            let vault = conn.vault().url();
            let intent = self.batch.previous.started(vault, &item.name).map(str::to_owned);
            let name = item.name.clone();
            self.rt.spawn(async move {
                let _permit = permit;
                let outcome = import_one(&conn, &report, d, &locks, prepared, intent.as_deref()).await;
                // The record and the state line are file work with fsync: off the async workers.
                let for_files = report.clone();
                let written = tokio::task::spawn_blocking(move || for_files.key(&name, d, &outcome)).await;
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => report.fatal(e),
                    Err(e) => report.fatal(Error::new(
                        Step::Record,
                        Kind::Internal,
                        format!("a result was lost: {e}"),
                    )),
                }
            });
        }
    }

    /// Waits for a free job slot of any destination with keys left, and takes that destination's next key: a
    /// destination that is slow (throttled, far away) holds only its own slots. `None` when no key is left.
    fn next_unit(&self) -> Result<Option<(tokio::sync::OwnedSemaphorePermit, usize, &Item)>> {
        let todo = self.batch.todo;
        let left = |d: &usize| self.next[*d].load(Ordering::Relaxed) < todo[*d].len();
        let mut open: Vec<usize> = (0..todo.len()).filter(left).collect();
        while !open.is_empty() {
            let waits = open
                .iter()
                .map(|d| Box::pin(self.destinations[*d].permits.clone().acquire_owned()));
            let (permit, i, _) = self.rt.block_on(futures_util::future::select_all(waits));
            let permit = permit.map_err(|_| Error::new(Step::Wrap, Kind::Internal, "the job slots were closed"))?;
            let d = open[i];
            if let Some(item) = todo[d].get(self.next[d].fetch_add(1, Ordering::Relaxed)) {
                return Ok(Some((permit, d, *item)));
            }
            open.remove(i);
        }
        Ok(None)
    }

    /// Find, check and wrap one key in the HSM. `Err` is the step and what went wrong.
    fn hsm_side(
        &self,
        session: &mut TokenSession<'_>,
        item: &Item,
        dest: &Destination<'_>,
    ) -> std::result::Result<Prepared, (String, String)> {
        if let Some(dir) = &self.batch.options.record_dir {
            check_record(
                &dir.join(format!("{}.record.json", item.name)),
                item,
                self.batch.report.fan_out.is_some(),
            )?;
        }
        let key = session
            .find_key(&item.uri)
            .map_err(|e| ("finding the key".into(), e.to_string()))?;
        if !self.batch.options.allow_duplicate_keys {
            let mut seen = self.seen_keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(other) = seen
                .insert((key.label.clone(), key.id.clone()), item.name.clone())
                .filter(|other| *other != item.name)
            {
                return Err((
                    "checking the manifest".into(),
                    format!(
                        "{} is the HSM key `{other}` goes to already; pass --allow-duplicate-keys to import one key \
                         under several names",
                        key.describe()
                    ),
                ));
            }
        }
        let kind = transfer::transferable(&key).map_err(|e| ("checking the key".into(), chain(&e)))?;
        let request = item
            .request(kind, dest.conn.vault())
            .map_err(|e| ("checking the manifest".into(), e))?;
        let pipeline = Pipeline {
            conn: dest.conn,
            kek: &dest.kek,
            attestation: &dest.attestation,
            options: self.batch.options.wrap,
            tool: &self.batch.options.tool,
            observer: self.forward,
        };
        transfer::prepare(&pipeline, session, &key, kind, request, None)
            .map_err(|e| ("wrapping in the HSM".into(), chain(&e)))
    }
}

/// Before a key is wrapped: its record file is free, or — in a fan-out — the fan-out record of this key an earlier
/// run left, which the new entries are merged into.
fn check_record(file: &std::path::Path, item: &Item, fan_out: bool) -> std::result::Result<(), (String, String)> {
    let step = || "checking the record".to_owned();
    if fan_out {
        return crate::fan_out::FanOutRecord::read(file, &item.name)
            .map(|_| ())
            .map_err(|e| (step(), chain(&e)));
    }
    if std::fs::symlink_metadata(file).is_ok() {
        let detail = format!(
            "{} exists; byok does not replace a record (move it away first)",
            file.display()
        );
        return Err((step(), detail));
    }
    Ok(())
}

const LOOK: &str = "looking in the vault";

/// The vault side of one key, under the machine-wide lock on its name: if the name holds this very key, skip it
/// (or, when it carries the transfer id an earlier run recorded as started, finish that transfer); if another key,
/// fail; else record the intent, import and verify.
async fn import_one(
    conn: &Connection,
    report: &Arc<Report>,
    dest: usize,
    locks: &KeyLocks,
    prepared: Prepared,
    intent: Option<&str>,
) -> Outcome {
    let name = prepared.request().name.clone();
    let _lock = match locks.lock(conn.vault().url(), &name).await {
        Ok(l) => l,
        Err(e) => return Outcome::failed(LOOK, format!("cannot take the lock for the key: {e}")),
    };
    match conn.get_key(&name, None).await {
        Ok(existing) => return existing_key(conn, prepared, &existing, intent).await,
        Err(e) if e.is_not_found() => {}
        Err(e) => return Outcome::failed(LOOK, e.to_string()),
    }
    let (for_files, id) = (report.clone(), prepared.request().transfer_id.clone());
    let intent_written = tokio::task::spawn_blocking(move || for_files.started(&name, dest, &id)).await;
    match intent_written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Outcome::failed("recording the intent", chain(&e)),
        Err(e) => return Outcome::failed("recording the intent", e.to_string()),
    }
    let forward = Forward(report.observer.clone());
    match transfer::complete(conn, &forward, prepared).await {
        Ok(done) => finished(done, ""),
        Err(e) => Outcome::failed("importing", chain(&e)),
    }
}

/// The name is taken: by this key (skip), by this batch's interrupted import (finish it), or by another key.
async fn existing_key(
    conn: &Connection,
    prepared: Prepared,
    existing: &byok_keyvault::VaultKey,
    intent: Option<&str>,
) -> Outcome {
    let tag = existing.tags.get(byok_keyvault::TRANSFER_TAG).map(String::as_str);
    if let Some(id) = intent.filter(|id| tag == Some(*id)) {
        return match transfer::adopt(conn, prepared, existing, id).await {
            Ok(done) => finished(done, "finished after an interruption: "),
            Err(e) => Outcome::failed(LOOK, chain(&e)),
        };
    }
    match transfer::compare_existing(conn, &prepared, existing).await {
        Ok(Verification::Verified { .. }) => Outcome {
            status: Status::Skipped,
            step: LOOK.into(),
            detail: format!("already imported as {}", existing.kid),
            kid: Some(existing.kid.to_string()),
            record: None,
        },
        Ok(Verification::Mismatch { detail, .. }) => Outcome::failed(
            LOOK,
            format!("the name exists with a different key ({detail}); choose another name"),
        ),
        Ok(Verification::NotVerifiable { reason }) => Outcome::failed(
            LOOK,
            format!("the name exists and byok cannot tell whether it holds this key ({reason})"),
        ),
        Err(e) => Outcome::failed(LOOK, chain(&e)),
    }
}

/// The outcome of a key the vault holds now, from its record and verification.
fn finished(done: Transferred, prefix: &str) -> Outcome {
    let kid = done.record.kid().unwrap_or_default().to_owned();
    let (status, detail) = match &done.verification {
        Verification::Verified { .. } => (Status::Done, format!("{prefix}{kid} verified")),
        Verification::NotVerifiable { reason } => {
            (Status::Done, format!("{prefix}{kid} imported, NOT VERIFIED: {reason}"))
        }
        Verification::Mismatch { detail, .. } => (Status::Mismatch, detail.clone()),
    };
    Outcome {
        status,
        step: "verifying".into(),
        detail,
        kid: Some(kid),
        record: Some(done.record),
    }
}
