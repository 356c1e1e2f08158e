//! `byok-cli batch`: many keys from one token into one vault — a TOML manifest, bounded concurrency, a result per
//! key, safe to interrupt and resume. The HSM work (find, check, wrap) runs on `--hsm-sessions` sessions, one thread
//! each, taking keys in manifest order; the vault work (import, verify) of up to `--jobs` keys runs concurrently
//! behind it, and an HSM thread waits for a free job slot before it wraps (back-pressure). Memory does not grow with
//! the number of keys: nothing per key is kept once its result is written.

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use byok_encoding::{Curve, KeyKind, Kty};
use byok_keyvault::{Connection, ImportRequest, Timestamp};
use byok_pkcs11::{Pkcs11Uri, TokenSession, WrapChoice};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::cmd::hsm::{self, HsmArgs};
use crate::cmd::import::transfer_id;
use crate::cmd::transfer::{self, KekArgs, Pipeline, Verification};
use crate::cmd::vault::VaultArgs;
use crate::cmd::wrap::WrapArgs;
use crate::exit::{CliError, Exit, Result};
use crate::files;
use crate::ui::Ui;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "The manifest (TOML) lists the keys: [[key]] uri = \"pkcs11:…\", name = \"…\", and optionally kty, \
                        size, curve (checked against the token), ops, tags, enabled, not_before, expires; a [defaults] \
                        table gives ops, tags, enabled, not_before, expires for all. See docs/cli/batch.md."
)]
pub(crate) struct Args {
    #[command(flatten)]
    vault: VaultArgs,
    #[command(flatten)]
    kek: KekArgs,
    /// The manifest of keys to transfer (TOML).
    #[arg(long, value_name = "FILE")]
    manifest: PathBuf,
    /// Vault requests in flight at once.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
    /// HSM sessions wrapping at once, one thread each (a network HSM with latency gains from several).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=16))]
    hsm_sessions: u8,
    /// Record each key's result in this file (JSON lines) and skip the keys it already shows done: run again with
    /// the same file after an interruption.
    #[arg(long, value_name = "STATE")]
    resume: Option<PathBuf>,
    /// Write each key's transfer record to DIR/NAME.record.json.
    #[arg(long, value_name = "DIR")]
    record_dir: Option<PathBuf>,
    /// Check everything — every key in the token, the self-test, the KEK, the names in the vault — and report what
    /// would happen, writing nothing.
    #[arg(long)]
    dry_run: bool,
    /// Stop at the first key that fails (the ones in flight finish).
    #[arg(long)]
    fail_fast: bool,
    #[command(flatten)]
    wrap: WrapArgs,
    #[command(flatten)]
    hsm: HsmArgs,
}

/// One `[[key]]` table, or the `[defaults]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    uri: Option<String>,
    name: Option<String>,
    kty: Option<String>,
    size: Option<usize>,
    curve: Option<String>,
    ops: Option<Vec<String>>,
    tags: Option<BTreeMap<String, String>>,
    enabled: Option<bool>,
    not_before: Option<String>,
    expires: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    #[serde(default)]
    defaults: Entry,
    #[serde(default)]
    key: Vec<Entry>,
}

/// A manifest entry, checked and completed with the defaults.
#[derive(Debug, Clone)]
struct Item {
    uri: Pkcs11Uri,
    name: String,
    kty: Option<Kty>,
    size: Option<usize>,
    curve: Option<Curve>,
    ops: Option<Vec<String>>,
    tags: BTreeMap<String, String>,
    enabled: bool,
    not_before: Option<Timestamp>,
    expires: Option<Timestamp>,
}

fn manifest_error(file: &Path, what: impl std::fmt::Display) -> CliError {
    CliError::msg(Exit::InvalidInput, format!("the manifest {}: {what}", file.display()))
}

fn read_manifest(file: &Path) -> Result<Vec<Item>> {
    let bytes = files::read_input(file, "manifest")?;
    let text = std::str::from_utf8(&bytes).map_err(|_| manifest_error(file, "is not UTF-8 text"))?;
    let manifest: Manifest = toml::from_str(text).map_err(|e| {
        let at = e.span().map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: ")
        });
        manifest_error(file, format!("{}{}", at.unwrap_or_default(), e.message().trim_end()))
    })?;
    let d = &manifest.defaults;
    if d.uri.is_some() || d.name.is_some() || d.kty.is_some() || d.size.is_some() || d.curve.is_some() {
        return Err(manifest_error(
            file,
            "[defaults] takes ops, tags, enabled, not_before and expires only",
        ));
    }
    if manifest.key.is_empty() {
        return Err(manifest_error(file, "lists no [[key]]"));
    }
    let time = |s: &Option<String>, n: usize| -> Result<Option<Timestamp>> {
        s.as_deref()
            .map(Timestamp::parse)
            .transpose()
            .map_err(|e| manifest_error(file, format!("key {n}: {e}")))
    };
    let mut names = HashSet::new();
    let mut items = Vec::with_capacity(manifest.key.len());
    for (i, e) in manifest.key.iter().enumerate() {
        let n = i + 1;
        let bad = |what: String| manifest_error(file, format!("key {n}: {what}"));
        let uri: Pkcs11Uri = e
            .uri
            .as_deref()
            .ok_or_else(|| bad("`uri` is missing".into()))?
            .parse()
            .map_err(|err| bad(format!("{err}")))?;
        if uri.has_pin_value {
            return Err(bad(
                "a pin-value in a manifest URI is refused; give the PIN with --pin-file or --pin-env".into(),
            ));
        }
        let name = e.name.clone().ok_or_else(|| bad("`name` is missing".into()))?;
        byok_keyvault::check_key_name(&name).map_err(|e| bad(e.to_string()))?;
        if !names.insert(name.clone()) {
            return Err(bad(format!("the name `{name}` is listed twice")));
        }
        let mut tags = d.tags.clone().unwrap_or_default();
        tags.extend(e.tags.clone().unwrap_or_default());
        items.push(Item {
            uri,
            name,
            kty: e
                .kty
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|err| bad(format!("{err}")))?,
            size: e.size,
            curve: e
                .curve
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|err| bad(format!("{err}")))?,
            ops: e.ops.clone().or_else(|| d.ops.clone()),
            tags,
            enabled: e.enabled.or(d.enabled).unwrap_or(true),
            not_before: time(&e.not_before, n)?.or(time(&d.not_before, n)?),
            expires: time(&e.expires, n)?.or(time(&d.expires, n)?),
        });
    }
    let token = |u: &Pkcs11Uri| {
        (
            u.token.clone(),
            u.serial.clone(),
            u.manufacturer.clone(),
            u.model.clone(),
        )
    };
    if let Some(other) = items.iter().find(|it| token(&it.uri) != token(&items[0].uri)) {
        return Err(manifest_error(
            file,
            format!(
                "`{}` names another token than the first key: a batch reads one token",
                other.name
            ),
        ));
    }
    Ok(items)
}

impl Item {
    /// Checks the token's key against what the manifest says, and builds the import request.
    fn request(&self, kind: KeyKind, conn: &Connection) -> std::result::Result<ImportRequest, String> {
        if let Some(kty) = self.kty
            && kty != kind.kty()
        {
            return Err(format!("the manifest says {kty}, the token holds {kind}"));
        }
        let size = match kind {
            KeyKind::Rsa(s) => Some(s.bits()),
            KeyKind::Aes(s) => Some(s.bits()),
            KeyKind::Ec(_) => None,
        };
        if let Some(want) = self.size
            && size != Some(want)
        {
            return Err(format!("the manifest says {want} bits, the token holds {kind}"));
        }
        if let Some(c) = self.curve
            && kind.curve() != Some(c)
        {
            return Err(format!("the manifest says curve {c}, the token holds {kind}"));
        }
        let request = ImportRequest {
            name: self.name.clone(),
            byok: Vec::new(),
            kty: kind.kty(),
            curve: kind.curve(),
            key_ops: self
                .ops
                .clone()
                .unwrap_or_else(|| ImportRequest::default_ops(kind.kty())),
            enabled: self.enabled,
            not_before: self.not_before,
            expires: self.expires,
            tags: self.tags.clone(),
            exportable: false,
            release_policy: None,
            transfer_id: transfer_id().map_err(|e| e.error.to_string())?,
        };
        request.validate(conn.vault()).map_err(|e| e.to_string())?;
        Ok(request)
    }
}

/// How one key ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Done,
    Skipped,
    Failed,
    Mismatch,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
            Self::Mismatch => "mismatch",
        }
    }
}

/// Results as they come: counts, the state file, the output lines, the progress bar.
struct Report {
    ui: Ui,
    total: u64,
    done: AtomicU64,
    skipped: AtomicU64,
    failed: AtomicU64,
    mismatched: AtomicU64,
    state: Option<Mutex<std::fs::File>>,
    record_dir: Option<PathBuf>,
    bar: Option<indicatif::ProgressBar>,
    out: Mutex<()>,
    fail_fast: bool,
    stop: Arc<AtomicBool>,
    /// The first result that could not be written.
    fatal: Mutex<Option<CliError>>,
}

impl Report {
    fn key(&self, name: &str, status: Status, step: &str, detail: &str, record: Option<&Value>) -> Result<()> {
        let counter = match status {
            Status::Done => &self.done,
            Status::Skipped => &self.skipped,
            Status::Failed => &self.failed,
            Status::Mismatch => &self.mismatched,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if matches!(status, Status::Failed | Status::Mismatch) && self.fail_fast {
            self.stop.store(true, Ordering::Relaxed);
        }
        let kid = record.and_then(|r| r["key"]["kid"].as_str()).unwrap_or_default();
        let line = json!({
            "name": name, "status": status.name(), "step": step, "detail": detail, "kid": kid,
            "transfer_id": record.map(|r| r["transfer_id"].clone()),
        });
        if let (Some(dir), Some(record)) = (&self.record_dir, record) {
            let mut text = serde_json::to_vec_pretty(record)
                .map_err(|e| CliError::msg(Exit::Internal, format!("cannot encode a record: {e}")))?;
            text.push(b'\n');
            files::write_atomic(&dir.join(format!("{name}.record.json")), &text, true)?;
        }
        if let Some(state) = &self.state {
            let mut f = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            writeln!(f, "{line}")
                .and_then(|()| f.sync_data())
                .map_err(|e| files::write_error("the state file", &e))?;
        }
        let _guard = self.out.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.ui.is_json() {
            self.ui.json_line(&line).map_err(crate::stdout_error)?;
        } else {
            let text = match status {
                Status::Done | Status::Skipped => format!("{}  {name}  {detail}", status.name()),
                _ => format!("{}  {name}  at {step}: {detail}", status.name().to_uppercase()),
            };
            match &self.bar {
                Some(bar) => bar.println(text),
                None => self.ui.note(&text),
            }
        }
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(format!("{} failed", self.failed.load(Ordering::Relaxed)));
        }
        Ok(())
    }

    fn finished(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
            + self.skipped.load(Ordering::Relaxed)
            + self.failed.load(Ordering::Relaxed)
            + self.mismatched.load(Ordering::Relaxed)
    }
}

/// The names a state file shows as done or skipped.
fn completed(state: &Path) -> Result<HashSet<String>> {
    let read_err =
        |e: std::io::Error| CliError::msg(Exit::Io, format!("cannot read the state file {}: {e}", state.display()));
    // Read line by line: a state file grows with the number of keys (about 200 bytes each), and an empty one is
    // what a run that stopped before its first key leaves.
    let file = match std::fs::File::open(state) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => return Err(read_err(e)),
    };
    if file.metadata().map_err(read_err)?.is_dir() {
        return Err(CliError::msg(
            Exit::Io,
            format!("the state file {} is a directory", state.display()),
        ));
    }
    let mut names = HashSet::new();
    for (i, line) in std::io::BufRead::split(std::io::BufReader::new(file), b'\n').enumerate() {
        let line = line.map_err(read_err)?;
        if line.is_empty() {
            continue;
        }
        // A line cut short by a crash is ignored: that key is simply looked at again.
        let Ok(v) = serde_json::from_slice::<Value>(&line) else {
            continue;
        };
        match (v["name"].as_str(), v["status"].as_str()) {
            (Some(n), Some("done" | "skipped")) => {
                names.insert(n.to_owned());
            }
            (Some(_), Some(_)) => {}
            _ => {
                return Err(CliError::msg(
                    Exit::InvalidInput,
                    format!("the state file {} is not byok's (line {})", state.display(), i + 1),
                ));
            }
        }
    }
    Ok(names)
}

pub(crate) fn run(ui: Ui, args: &Args) -> Result<()> {
    let items = read_manifest(&args.manifest)?;
    let kek_size = args.kek.size()?;
    if let Some(dir) = &args.record_dir
        && !dir.is_dir()
    {
        return Err(CliError::msg(
            Exit::Io,
            format!("--record-dir {}: not a directory", dir.display()),
        ));
    }
    let done_before = match &args.resume {
        Some(state) => completed(state)?,
        None => HashSet::new(),
    };
    let conn = Arc::new(args.vault.connect(ui)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::msg(Exit::Internal, format!("cannot start the async runtime: {e}")))?;
    let first = items[0].uri.clone();
    args.hsm.with_module(&first, |module, pin| {
        let mut session = module.open(&first, pin).map_err(hsm::error)?;
        if args.dry_run {
            return dry_run(ui, args, &conn, &rt, &mut session, &items);
        }
        let hsm = Hsm {
            module,
            pin,
            first: &first,
        };
        transfer_all(ui, args, &conn, &rt, &hsm, session, &items, &done_before, kek_size)
    })
}

/// What an HSM thread needs to open its own session.
struct Hsm<'m> {
    module: &'m byok_pkcs11::Module,
    pin: Option<&'m byok_pkcs11::Pin>,
    first: &'m Pkcs11Uri,
}

#[allow(clippy::too_many_arguments)]
fn transfer_all(
    ui: Ui,
    args: &Args,
    conn: &Arc<Connection>,
    rt: &tokio::runtime::Runtime,
    hsm: &Hsm<'_>,
    first_session: TokenSession<'_>,
    items: &[Item],
    done_before: &HashSet<String>,
    kek_size: byok_encoding::RsaSize,
) -> Result<()> {
    let todo: Vec<&Item> = items.iter().filter(|i| !done_before.contains(&i.name)).collect();
    if !done_before.is_empty() {
        ui.note(&format!(
            "resuming: {} of {} keys are done already",
            items.len() - todo.len(),
            items.len()
        ));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let (stop, interrupted) = (stop.clone(), interrupted.clone());
        rt.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupted.store(true, Ordering::Relaxed);
                stop.store(true, Ordering::Relaxed);
            }
        });
    }
    let state = match &args.resume {
        Some(path) => Some(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| CliError::msg(Exit::Io, format!("cannot open the state file {}: {e}", path.display())))?,
        )),
        None => None,
    };
    let report = Arc::new(Report {
        ui,
        total: todo.len() as u64,
        done: AtomicU64::new(0),
        skipped: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        mismatched: AtomicU64::new(0),
        state,
        record_dir: args.record_dir.clone(),
        bar: ui.progress_bar(todo.len() as u64),
        out: Mutex::new(()),
        fail_fast: args.fail_fast,
        stop: stop.clone(),
        fatal: Mutex::new(None),
    });
    let started = Instant::now();
    let mut token_gone = None;
    if !todo.is_empty() {
        let (kek, kek_created) = transfer::kek(ui, conn, rt, &args.kek.kek_name, false, kek_size)?;
        let pipeline = Pipeline {
            ui,
            conn,
            kek: &kek,
            kek_created,
            options: args.wrap.options(),
            show_steps: false,
        };
        let jobs = usize::from(args.jobs);
        let permits = Arc::new(tokio::sync::Semaphore::new(jobs));
        let next = AtomicUsize::new(0);
        let gone: Mutex<Option<String>> = Mutex::new(None);
        let work = Work {
            pipeline: &pipeline,
            rt: rt.handle(),
            permits: &permits,
            report: &report,
            todo: &todo,
            next: &next,
            gone: &gone,
            conn,
            ui,
        };
        let sessions = usize::from(args.hsm_sessions).min(todo.len()).max(1);
        let outcome: Result<()> = std::thread::scope(|scope| {
            let work = &work;
            let mut threads = vec![scope.spawn(move || work.hsm_thread(first_session))];
            for n in 1..sessions {
                threads.push(scope.spawn(move || match hsm.module.open(hsm.first, hsm.pin) {
                    Ok(session) => work.hsm_thread(session),
                    // Some HSMs allow few sessions (CKR_SESSION_COUNT): the others carry on without this one.
                    Err(e) => {
                        ui.note(&format!(
                            "HSM session {} of {sessions} could not be opened ({e}); continuing with fewer",
                            n + 1
                        ));
                        Ok(())
                    }
                }));
            }
            let mut first_error = None;
            for t in threads {
                let r = t
                    .join()
                    .unwrap_or_else(|_| Err(CliError::msg(Exit::Internal, "an HSM thread panicked")));
                if let Err(e) = r {
                    stop.store(true, Ordering::Relaxed);
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(()), Err)
        });
        token_gone = gone.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Wait for the keys in flight, then report what stopped the HSM side, if anything did.
        let all = rt
            .block_on(permits.acquire_many(jobs as u32))
            .map_err(|_| CliError::msg(Exit::Internal, "the job slots were closed"))?;
        drop(all);
        outcome?;
    }
    let fatal = report
        .fatal
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(e) = fatal {
        return Err(e);
    }
    if let Some(bar) = &report.bar {
        bar.finish_and_clear();
    }
    summary(
        ui,
        &report,
        started.elapsed(),
        Ending {
            interrupted: interrupted.load(Ordering::Relaxed),
            token_gone,
        },
        args,
    )
}

/// What the HSM threads share.
struct Work<'a> {
    pipeline: &'a Pipeline<'a>,
    rt: &'a tokio::runtime::Handle,
    permits: &'a Arc<tokio::sync::Semaphore>,
    report: &'a Arc<Report>,
    todo: &'a [&'a Item],
    /// The next key to take, in manifest order.
    next: &'a AtomicUsize,
    /// Set by the first thread that finds the token gone.
    gone: &'a Mutex<Option<String>>,
    conn: &'a Arc<Connection>,
    ui: Ui,
}

impl Work<'_> {
    /// One HSM session's loop: take the next key, wait for a job slot, do its HSM side, hand its vault side to the
    /// runtime. Ends when the keys run out or the batch stops.
    fn hsm_thread(&self, mut session: TokenSession<'_>) -> Result<()> {
        loop {
            if self.report.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let Some(item) = self.todo.get(self.next.fetch_add(1, Ordering::Relaxed)) else {
                return Ok(());
            };
            // Back-pressure: wait for a free slot before doing the HSM work of the next key.
            let permit = self
                .rt
                .block_on(self.permits.clone().acquire_owned())
                .map_err(|_| CliError::msg(Exit::Internal, "the job slots were closed"))?;
            if self.report.stop.load(Ordering::Relaxed) {
                // Stopped while waiting (Ctrl-C, --fail-fast, the token gone): this key is not started.
                return Ok(());
            }
            let now = Timestamp::now();
            let hsm_side = (|| -> std::result::Result<transfer::Prepared, (String, String)> {
                let key = session
                    .find_key(&item.uri)
                    .map_err(|e| ("finding the key".into(), e.to_string()))?;
                let kind =
                    transfer::transferable(&key).map_err(|e| ("checking the key".into(), format!("{:#}", e.error)))?;
                let request = item
                    .request(kind, self.conn)
                    .map_err(|e| ("checking the manifest".into(), e))?;
                transfer::prepare(self.pipeline, &mut session, &key, kind, request, now, None)
                    .map_err(|e| ("wrapping in the HSM".into(), format!("{:#}", e.error)))
            })();
            let prepared = match hsm_side {
                Ok(p) => p,
                Err((step, detail)) => {
                    drop(permit);
                    // A token that went away fails every key after it: stop and say so once, instead.
                    if let Err(gone) = session.check_present() {
                        self.report
                            .key(&item.name, Status::Failed, &step, &format!("{detail} ({gone})"), None)?;
                        self.report.stop.store(true, Ordering::Relaxed);
                        let mut first = self.gone.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        first.get_or_insert(gone.to_string());
                        return Ok(());
                    }
                    self.report.key(&item.name, Status::Failed, &step, &detail, None)?;
                    continue;
                }
            };
            let (conn, report, name, ui) = (self.conn.clone(), self.report.clone(), item.name.clone(), self.ui);
            self.rt.spawn(async move {
                let _permit = permit;
                let outcome = match import_one(&conn, ui, prepared).await {
                    Ok((status, detail, record)) => {
                        let step = if status == Status::Skipped {
                            "looking in the vault"
                        } else {
                            "verifying"
                        };
                        report.key(&name, status, step, &detail, record.as_ref())
                    }
                    Err((step, detail)) => report.key(&name, Status::Failed, &step, &detail, None),
                };
                if let Err(e) = outcome {
                    // A result that cannot be written (state file, record) stops the batch: results must not be lost.
                    report.stop.store(true, Ordering::Relaxed);
                    let mut fatal = report.fatal.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    fatal.get_or_insert(e);
                }
            });
        }
    }
}

/// Why a batch ended before its last key, besides failures of single keys.
struct Ending {
    /// Ctrl-C.
    interrupted: bool,
    /// The token went away: why the HSM says so.
    token_gone: Option<String>,
}

/// The vault side of one key: if the name exists already with this very key, skip; if with another key, fail;
/// else import and verify. Returns the status, a detail line and the record.
async fn import_one(
    conn: &Connection,
    ui: Ui,
    prepared: transfer::Prepared,
) -> std::result::Result<(Status, String, Option<Value>), (String, String)> {
    let name = prepared.request.name.clone();
    match conn.get_key(&name, None).await {
        Ok(existing) => {
            return match transfer::compare_existing(conn, &prepared, &existing).await {
                Ok(Verification::Verified { .. }) => {
                    Ok((Status::Skipped, format!("already imported as {}", existing.kid), None))
                }
                Ok(Verification::Mismatch { detail, .. }) => Err((
                    "looking in the vault".into(),
                    format!("the name exists with a different key ({detail}); choose another name"),
                )),
                Ok(Verification::NotVerifiable { reason }) => Err((
                    "looking in the vault".into(),
                    format!("the name exists and byok cannot tell whether it holds this key ({reason})"),
                )),
                Err(e) => Err(("looking in the vault".into(), format!("{:#}", e.error))),
            };
        }
        Err(byok_keyvault::Error::Service { status: Some(404), .. }) => {}
        Err(e) => return Err(("looking in the vault".into(), e.to_string())),
    }
    match transfer::complete(conn, ui, false, prepared).await {
        Ok((record, Verification::Mismatch { detail, .. })) => Ok((Status::Mismatch, detail, Some(record))),
        Ok((record, v)) => {
            let detail = match &v {
                Verification::Verified { .. } => {
                    format!("{} verified", record["key"]["kid"].as_str().unwrap_or_default())
                }
                Verification::NotVerifiable { reason } => format!(
                    "{} imported, NOT VERIFIED: {reason}",
                    record["key"]["kid"].as_str().unwrap_or_default()
                ),
                Verification::Mismatch { .. } => unreachable!("matched above"),
            };
            Ok((Status::Done, detail, Some(record)))
        }
        Err(e) => Err(("importing".into(), format!("{:#}", e.error))),
    }
}

fn summary(ui: Ui, report: &Report, elapsed: std::time::Duration, ending: Ending, args: &Args) -> Result<()> {
    let Ending {
        interrupted,
        token_gone,
    } = ending;
    let (done, skipped, failed, mismatched) = (
        report.done.load(Ordering::Relaxed),
        report.skipped.load(Ordering::Relaxed),
        report.failed.load(Ordering::Relaxed),
        report.mismatched.load(Ordering::Relaxed),
    );
    let finished = report.finished();
    let rate = finished as f64 / elapsed.as_secs_f64().max(1e-3);
    let json = json!({
        "summary": {
            "total": report.total, "done": done, "skipped": skipped, "failed": failed, "mismatched": mismatched,
            "not_started": report.total - finished, "seconds": elapsed.as_secs_f64(), "keys_per_second": rate,
            "interrupted": interrupted, "token_gone": token_gone,
        }
    });
    if ui.is_json() {
        ui.json_line(&json).map_err(crate::stdout_error)?;
    } else {
        ui.note(&format!(
            "{done} done, {skipped} skipped, {failed} failed, {mismatched} mismatched, {} not started — {finished} keys in {:.1} s ({rate:.1}/s)",
            report.total - finished,
            elapsed.as_secs_f64()
        ));
    }
    let resume_hint = match &args.resume {
        Some(state) => format!(
            "run the same command again: --resume {} skips what is done",
            state.display()
        ),
        None => {
            "run again with --resume STATE to keep track; keys already imported with the same key are skipped".into()
        }
    };
    if interrupted {
        return Err(CliError::msg(Exit::Interrupted, format!("interrupted after {finished} keys")).hint(resume_hint));
    }
    if let Some(gone) = token_gone {
        return Err(CliError::msg(
            Exit::Hsm,
            format!("stopped after {finished} keys: {gone}; the keys in flight finished"),
        )
        .hint(format!(
            "reconnect the token (or restart the HSM client), then {resume_hint}"
        )));
    }
    if mismatched > 0 {
        return Err(CliError::msg(
            Exit::Verification,
            format!("{mismatched} keys in the vault differ from the HSM's: do not use those versions"),
        ));
    }
    if failed > 0 || finished < report.total {
        return Err(
            CliError::msg(Exit::Partial, format!("{failed} of {} keys failed", report.total)).hint(resume_hint),
        );
    }
    Ok(())
}

/// Checks everything a batch would do, writing nothing.
fn dry_run(
    ui: Ui,
    args: &Args,
    conn: &Connection,
    rt: &tokio::runtime::Runtime,
    session: &mut TokenSession<'_>,
    items: &[Item],
) -> Result<()> {
    let mut problems = 0usize;
    let mut say = |name: &str, ok: bool, text: String| {
        if !ok {
            problems += 1;
        }
        if ui.is_json() {
            // stdout gone: the exit code still tells the result.
            let _ = ui.json_line(&json!({"name": name, "ok": ok, "plan": text}));
        } else if ok {
            ui.note(&format!("ok       {name}  {text}"));
        } else {
            ui.note(&format!("PROBLEM  {name}  {text}"));
        }
    };
    let report = session.self_test().map_err(hsm::error)?.clone();
    let forced = matches!(args.wrap.wrap_mechanism, WrapChoice::Path(_));
    // RSA and EC keys (PKCS#8) need a fully conformant path; AES keys also take one that is right for aligned keys.
    let pkcs8_ok = forced || report.best().is_some();
    let aes_ok = pkcs8_ok
        || report
            .paths
            .iter()
            .any(|p| matches!(p.verdict, byok_pkcs11::Verdict::AlignedOnly(_)));
    say(
        "(self-test)",
        aes_ok,
        match report.best() {
            Some(p) => format!("wraps with {p}"),
            None if aes_ok => format!(
                "AES keys only (no path is conformant for RSA/EC):\n{}",
                report.summary()
            ),
            None => format!("no conformant wrap path:\n{}", report.summary()),
        },
    );
    match rt.block_on(conn.get_kek(&args.kek.kek_name, None)) {
        Ok(k) if k.is_import_only_hsm() => say("(KEK)", true, format!("reuses {}", k.kid)),
        Ok(k) => say(
            "(KEK)",
            false,
            format!(
                "`{}` exists but is {} with key_ops {:?}",
                args.kek.kek_name, k.kty, k.key_ops
            ),
        ),
        Err(byok_keyvault::Error::Service { status: Some(404), .. }) => {
            say("(KEK)", true, format!("would create `{}`", args.kek.kek_name))
        }
        Err(e) => say("(KEK)", false, e.to_string()),
    }
    for item in items {
        let key = match session.find_key(&item.uri) {
            Ok(k) => k,
            Err(e) => {
                say(&item.name, false, e.to_string());
                continue;
            }
        };
        let kind = match transfer::transferable(&key) {
            Ok(k) => k,
            Err(e) => {
                say(&item.name, false, format!("{:#}", e.error));
                continue;
            }
        };
        if !matches!(kind, KeyKind::Aes(_)) && !pkcs8_ok {
            say(
                &item.name,
                false,
                format!("{kind}: the token has no wrap path conformant for RSA/EC keys"),
            );
            continue;
        }
        if let Err(e) = item.request(kind, conn) {
            say(&item.name, false, e);
            continue;
        }
        match rt.block_on(conn.get_key(&item.name, None)) {
            Err(byok_keyvault::Error::Service { status: Some(404), .. }) => {
                say(&item.name, true, format!("would transfer {}", key.describe()))
            }
            Ok(existing) => match same_key(conn, rt, session, &key, kind, &existing) {
                Ok(true) => say(
                    &item.name,
                    true,
                    format!("would skip: already imported as {}", existing.kid),
                ),
                Ok(false) => say(
                    &item.name,
                    false,
                    format!("the name exists in the vault with a different key ({})", existing.kid),
                ),
                Err(why) => say(
                    &item.name,
                    false,
                    format!("the name exists in the vault ({}) and {why}", existing.kid),
                ),
            },
            Err(e) => say(&item.name, false, e.to_string()),
        }
    }
    if problems > 0 {
        return Err(CliError::msg(
            Exit::Partial,
            format!("the dry run found {problems} problems; nothing was written"),
        ));
    }
    ui.note("the dry run found no problem; nothing was written");
    Ok(())
}

/// Whether a key in the vault is the token's key — public halves, or one random block encrypted on both sides
/// (nothing is written either way). `Err` says why it cannot be told.
fn same_key(
    conn: &Connection,
    rt: &tokio::runtime::Runtime,
    session: &TokenSession<'_>,
    key: &byok_pkcs11::KeyInfo,
    kind: KeyKind,
    existing: &byok_keyvault::VaultKey,
) -> std::result::Result<bool, String> {
    if !existing.kty.eq_ignore_ascii_case(kind.kty().azure_hsm_name()) {
        return Ok(false);
    }
    match kind {
        KeyKind::Rsa(_) | KeyKind::Ec(_) => match (&key.public, &existing.public) {
            (Some(h), Some(v)) => Ok(h == v),
            _ => Err("the public halves cannot be compared".into()),
        },
        KeyKind::Aes(size) => {
            if !existing.key_ops.iter().any(|o| o == "encrypt") {
                return Err("it does not allow `encrypt`, so byok cannot tell whether it is this key".into());
            }
            let mut block = [0u8; 16];
            getrandom::fill(&mut block).map_err(|e| e.to_string())?;
            let from_hsm = session
                .encrypt_block(key, &block)
                .map_err(|e| e.to_string())?
                .ok_or("the token key does not allow encryption, so byok cannot tell whether it is this key")?;
            let from_vault = rt
                .block_on(conn.encrypt_block(existing.kid.name(), existing.kid.version(), size, &block))
                .map_err(|e| e.to_string())?;
            Ok(from_hsm == from_vault)
        }
    }
}
