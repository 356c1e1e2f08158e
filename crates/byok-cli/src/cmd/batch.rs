//! `byok-cli batch`: many keys from one token into one vault — a TOML manifest, bounded concurrency, a result per
//! key, safe to interrupt and resume. The HSM work (find, check, wrap) runs on `--hsm-sessions` sessions, one thread
//! each, taking keys in manifest order; the vault work (import, verify) of up to `--jobs` keys runs concurrently
//! behind it, and an HSM thread waits for a free job slot before it wraps (back-pressure). Memory does not grow with
//! the number of keys: nothing per key is kept once its result is written.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use byok_encoding::{Curve, KeyKind, Kty};
use byok_keyvault::{Connection, ImportRequest, Timestamp};
use byok_pkcs11::{Pkcs11Uri, TokenSession, WrapChoice};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::cmd::hsm::{self, HsmArgs};
use crate::cmd::import::transfer_id;
use crate::cmd::transfer::{self, KekArgs, Pipeline, Verification};
use crate::cmd::vault::VaultArgs;
use crate::cmd::wrap::WrapArgs;
use crate::exit::{CliError, Exit, Result};
use crate::files;
use crate::locks::KeyLocks;
use crate::state::{Binding, Previous, StateFile};
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
    /// Let one HSM key be imported under several names (refused by default: usually a manifest mistake).
    #[arg(long)]
    allow_duplicate_keys: bool,
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

/// The manifest's keys, and the SHA-256 of the file (a state file is bound to it).
fn read_manifest(file: &Path, allow_duplicates: bool) -> Result<(Vec<Item>, String)> {
    let bytes = files::read_manifest(file)?;
    let digest = hex::encode(Sha256::digest(&bytes));
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
        // A manifest is data: it must not choose the code byok loads or the file it reads as a PIN.
        if uri.module_path.is_some() {
            return Err(bad(
                "a module-path in a manifest URI is refused (it would choose the library byok loads); give the \
                 module with --pkcs11-module"
                    .into(),
            ));
        }
        if uri.pin_source.is_some() {
            return Err(bad(
                "a pin-source in a manifest URI is refused (it would choose a file byok reads as a PIN); give the \
                 PIN with --pin-file or --pin-env"
                    .into(),
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
    if !allow_duplicates {
        let mut seen = std::collections::HashMap::new();
        for it in &items {
            let selector = (it.uri.object.clone(), it.uri.id.clone(), it.uri.object_type);
            if let Some(first) = seen.insert(selector, it.name.clone()) {
                return Err(
                    manifest_error(file, format!("`{first}` and `{}` name the same HSM key", it.name)).hint(
                        "one key under two names is usually a mistake; pass --allow-duplicate-keys if it is meant",
                    ),
                );
            }
        }
    }
    Ok((items, digest))
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

/// How one key ended, as reported.
struct Outcome {
    status: Status,
    step: String,
    detail: String,
    /// The key version in the vault, when there is one.
    kid: Option<String>,
    /// The transfer record, for keys transferred (or finished) by this run.
    record: Option<Value>,
}

impl Outcome {
    fn failed(step: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            status: Status::Failed,
            step: step.into(),
            detail: detail.into(),
            kid: None,
            record: None,
        }
    }
}

/// Results as they come: counts, the state file, the output lines, the progress bar.
struct Report {
    ui: Ui,
    vault: String,
    total: u64,
    done: AtomicU64,
    skipped: AtomicU64,
    failed: AtomicU64,
    mismatched: AtomicU64,
    state: Option<StateFile>,
    record_dir: Option<PathBuf>,
    bar: Option<indicatif::ProgressBar>,
    out: Mutex<()>,
    fail_fast: bool,
    stop: Arc<AtomicBool>,
    /// The first result that could not be written.
    fatal: Mutex<Option<CliError>>,
}

impl Report {
    /// Writes the intent before an import is sent: a resume that finds this transfer id on the key in the vault
    /// knows the import was this batch's and finishes it.
    fn started(&self, name: &str, transfer_id: &str) -> Result<()> {
        match &self.state {
            Some(state) => state.record(&json!({
                "name": name, "status": "started", "transfer_id": transfer_id, "vault": self.vault,
            })),
            None => Ok(()),
        }
    }

    fn key(&self, name: &str, o: &Outcome) -> Result<()> {
        let counter = match o.status {
            Status::Done => &self.done,
            Status::Skipped => &self.skipped,
            Status::Failed => &self.failed,
            Status::Mismatch => &self.mismatched,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if matches!(o.status, Status::Failed | Status::Mismatch) && self.fail_fast {
            self.stop.store(true, Ordering::Relaxed);
        }
        // The record first, so that `done` in the state file means a record exists; a record that cannot be
        // written still leaves the key reported as imported, and stops the batch.
        let record_error = match (&self.record_dir, &o.record) {
            (Some(dir), Some(record)) => {
                transfer::write_record(&dir.join(format!("{name}.record.json")), record, false).err()
            }
            _ => None,
        };
        let mut line = json!({
            "name": name, "status": o.status.name(), "step": o.step, "detail": o.detail,
            "kid": o.kid.as_deref().unwrap_or_default(),
            "transfer_id": o.record.as_ref().map(|r| r["transfer_id"].clone()), "vault": self.vault,
        });
        if let Some(e) = &record_error {
            line["record_error"] = format!("{:#}", e.error).into();
        }
        if let Some(state) = &self.state {
            state.record(&line)?;
        }
        self.show(name, o, &line);
        match record_error {
            Some(e) => Err(CliError::new(
                e.exit,
                e.error.context(format!(
                    "`{name}` was imported as {} and verified, but its record was not written",
                    o.kid.as_deref().unwrap_or("?")
                )),
            )),
            None => Ok(()),
        }
    }

    fn show(&self, name: &str, o: &Outcome, line: &Value) {
        let _guard = self.out.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.ui.is_json() {
            // stdout gone (a closed pipe): the state file and the exit code still tell the result.
            let _ = self.ui.json_line(line);
        } else {
            let text = match o.status {
                Status::Done | Status::Skipped => format!("{}  {name}  {}", o.status.name(), o.detail),
                _ => format!(
                    "{}  {name}  at {}: {}",
                    o.status.name().to_uppercase(),
                    o.step,
                    o.detail
                ),
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
    }

    fn finished(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
            + self.skipped.load(Ordering::Relaxed)
            + self.failed.load(Ordering::Relaxed)
            + self.mismatched.load(Ordering::Relaxed)
    }
}

pub(crate) fn run(ui: Ui, args: &Args) -> Result<()> {
    let (items, manifest_sha256) = read_manifest(&args.manifest, args.allow_duplicate_keys)?;
    let kek_size = args.kek.size()?;
    if let Some(dir) = &args.record_dir
        && !dir.is_dir()
    {
        return Err(CliError::msg(
            Exit::Io,
            format!("--record-dir {}: not a directory", dir.display()),
        ));
    }
    if let Some(state) = &args.resume {
        crate::state::precheck(state)?;
    }
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
        let token = session.token();
        let binding = Binding {
            vault: conn.vault().url().to_owned(),
            kek: args.kek.kek_name.clone(),
            token: format!("{} (serial {})", token.label, token.serial),
            manifest_sha256: manifest_sha256.clone(),
        };
        let (state, previous) = match &args.resume {
            Some(path) => {
                let (state, previous) = StateFile::open(path, &binding)?;
                (Some(state), previous)
            }
            None => (None, Previous::default()),
        };
        let hsm = Hsm {
            module,
            pin,
            first: &first,
        };
        let run = Run {
            ui,
            args,
            conn: &conn,
            rt: &rt,
            kek_size,
        };
        transfer_all(&run, &hsm, session, &items, state, &previous)
    })
}

/// What one batch run works with.
struct Run<'a> {
    ui: Ui,
    args: &'a Args,
    conn: &'a Arc<Connection>,
    rt: &'a tokio::runtime::Runtime,
    kek_size: byok_encoding::RsaSize,
}

/// Maps SIGINT, SIGTERM and SIGHUP to a stop: no new keys, the ones in flight finish and are recorded. Registered
/// before any key is started, so that a signal cannot kill the process between an import and its record.
fn on_signals(rt: &tokio::runtime::Runtime, stop: Arc<AtomicBool>, signal: Arc<AtomicU8>) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal as listen};
    let _guard = rt.enter();
    let listen = |kind: SignalKind| {
        listen(kind).map_err(|e| CliError::msg(Exit::Internal, format!("cannot handle signals: {e}")))
    };
    let (mut int, mut term, mut hup) = (
        listen(SignalKind::interrupt())?,
        listen(SignalKind::terminate())?,
        listen(SignalKind::hangup())?,
    );
    rt.spawn(async move {
        let number = tokio::select! {
            _ = int.recv() => 2,
            _ = term.recv() => 15,
            _ = hup.recv() => 1,
        };
        signal.store(number, Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
    });
    Ok(())
}

/// What an HSM thread needs to open its own session.
struct Hsm<'m> {
    module: &'m byok_pkcs11::Module,
    pin: Option<&'m byok_pkcs11::Pin>,
    first: &'m Pkcs11Uri,
}

fn transfer_all(
    run: &Run<'_>,
    hsm: &Hsm<'_>,
    first_session: TokenSession<'_>,
    items: &[Item],
    state: Option<StateFile>,
    previous: &Previous,
) -> Result<()> {
    let Run {
        ui,
        args,
        conn,
        rt,
        kek_size,
    } = *run;
    let todo: Vec<&Item> = items.iter().filter(|i| !previous.completed.contains(&i.name)).collect();
    if !previous.completed.is_empty() {
        ui.note(&format!(
            "resuming: {} of {} keys are done already",
            items.len() - todo.len(),
            items.len()
        ));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let signal = Arc::new(AtomicU8::new(0));
    on_signals(rt, stop.clone(), signal.clone())?;
    let report = Arc::new(Report {
        ui,
        vault: conn.vault().url().to_owned(),
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
        let mut first_session = first_session;
        // A token that can wrap nothing at all fails here, before a KEK is created for it.
        let options = args.wrap.options();
        let any_kind = [
            KeyKind::Aes(byok_encoding::AesSize::Aes256),
            KeyKind::Rsa(byok_encoding::RsaSize::Rsa2048),
        ];
        if let Some(Err(e)) = any_kind
            .iter()
            .map(|k| first_session.check_wrappable(*k, options))
            .reduce(|a, b| a.or(b))
        {
            return Err(hsm::error(e));
        }
        let (kek, kek_created) = transfer::kek(ui, conn, rt, &args.kek.kek_name, false, kek_size)?;
        let pipeline = Pipeline {
            ui,
            conn,
            kek: &kek,
            kek_created,
            options,
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
            previous,
            record_dir: args.record_dir.as_deref(),
            seen_keys: Mutex::new(HashMap::new()),
            allow_duplicate_keys: args.allow_duplicate_keys,
            locks: Arc::new(
                KeyLocks::new().map_err(|e| CliError::msg(Exit::Io, format!("cannot prepare the key locks: {e}")))?,
            ),
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
            signal: signal.load(Ordering::Relaxed),
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
    /// What the state file showed of earlier runs.
    previous: &'a Previous,
    record_dir: Option<&'a Path>,
    /// The HSM keys taken so far (label, id) and the name each goes to.
    seen_keys: Mutex<HashMap<(String, Vec<u8>), String>>,
    allow_duplicate_keys: bool,
    locks: Arc<KeyLocks>,
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
                // Stopped while waiting (a signal, --fail-fast, the token gone): this key is not started.
                return Ok(());
            }
            let prepared = match self.hsm_side(&mut session, item) {
                Ok(p) => p,
                Err((step, detail)) => {
                    drop(permit);
                    // A token that went away fails every key after it: stop and say so once, instead.
                    if let Err(gone) = session.check_present() {
                        let detail = format!("{detail} ({gone})");
                        self.report.key(&item.name, &Outcome::failed(step, detail))?;
                        self.report.stop.store(true, Ordering::Relaxed);
                        let mut first = self.gone.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        first.get_or_insert(gone.to_string());
                        return Ok(());
                    }
                    self.report.key(&item.name, &Outcome::failed(step, detail))?;
                    continue;
                }
            };
            let (conn, report, ui, locks) = (self.conn.clone(), self.report.clone(), self.ui, self.locks.clone());
            let (name, intent) = (item.name.clone(), self.previous.started.get(&item.name).cloned());
            self.rt.spawn(async move {
                let _permit = permit;
                let outcome = import_one(&conn, ui, &report, &locks, prepared, intent.as_deref()).await;
                if let Err(e) = report.key(&name, &outcome) {
                    // A result that cannot be written (state file, record) stops the batch: results must not be lost.
                    report.stop.store(true, Ordering::Relaxed);
                    let mut fatal = report.fatal.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    fatal.get_or_insert(e);
                }
            });
        }
    }

    /// Find, check and wrap one key in the HSM. `Err` is the step and what went wrong.
    fn hsm_side(
        &self,
        session: &mut TokenSession<'_>,
        item: &Item,
    ) -> std::result::Result<transfer::Prepared, (String, String)> {
        if let Some(dir) = self.record_dir {
            let file = dir.join(format!("{}.record.json", item.name));
            if std::fs::symlink_metadata(&file).is_ok() {
                return Err((
                    "checking the record".into(),
                    format!(
                        "{} exists; byok does not replace a record (move it away first)",
                        file.display()
                    ),
                ));
            }
        }
        let key = session
            .find_key(&item.uri)
            .map_err(|e| ("finding the key".into(), e.to_string()))?;
        if !self.allow_duplicate_keys {
            let mut seen = self.seen_keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(other) = seen.insert((key.label.clone(), key.id.clone()), item.name.clone()) {
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
        let kind = transfer::transferable(&key).map_err(|e| ("checking the key".into(), format!("{:#}", e.error)))?;
        let request = item
            .request(kind, self.conn)
            .map_err(|e| ("checking the manifest".into(), e))?;
        transfer::prepare(self.pipeline, session, &key, kind, request, Timestamp::now(), None)
            .map_err(|e| ("wrapping in the HSM".into(), format!("{:#}", e.error)))
    }
}

/// Why a batch ended before its last key, besides failures of single keys.
struct Ending {
    /// The signal that stopped it (2 SIGINT, 15 SIGTERM, 1 SIGHUP), or 0.
    signal: u8,
    /// The token went away: why the HSM says so.
    token_gone: Option<String>,
}

/// The vault side of one key, under the machine-wide lock on its name: if the name holds this very key, skip it
/// (or, when it carries the transfer id an earlier run recorded as started, finish that transfer); if another key,
/// fail; else record the intent, import and verify.
async fn import_one(
    conn: &Connection,
    ui: Ui,
    report: &Report,
    locks: &KeyLocks,
    prepared: transfer::Prepared,
    intent: Option<&str>,
) -> Outcome {
    let name = prepared.request.name.clone();
    let _lock = match locks.lock(conn.vault().url(), &name).await {
        Ok(l) => l,
        Err(e) => return Outcome::failed("looking in the vault", format!("cannot take the lock for the key: {e}")),
    };
    const LOOK: &str = "looking in the vault";
    match conn.get_key(&name, None).await {
        Ok(existing) => {
            let tag = existing.tags.get(byok_keyvault::TRANSFER_TAG).map(String::as_str);
            if let Some(id) = intent.filter(|id| tag == Some(*id)) {
                return match transfer::adopt(conn, prepared, &existing, id).await {
                    Ok((record, v)) => finished(record, &v, "finished after an interruption: "),
                    Err(e) => Outcome::failed(LOOK, format!("{:#}", e.error)),
                };
            }
            return match transfer::compare_existing(conn, &prepared, &existing).await {
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
                Err(e) => Outcome::failed(LOOK, format!("{:#}", e.error)),
            };
        }
        Err(e) if e.is_not_found() => {}
        Err(e) => return Outcome::failed(LOOK, e.to_string()),
    }
    if let Err(e) = report.started(&name, &prepared.request.transfer_id) {
        return Outcome::failed("recording the intent", format!("{:#}", e.error));
    }
    match transfer::complete(conn, ui, false, prepared).await {
        Ok((record, v)) => finished(record, &v, ""),
        Err(e) => Outcome::failed("importing", format!("{:#}", e.error)),
    }
}

/// The outcome of a key the vault holds now, from its record and verification.
fn finished(record: Value, v: &Verification, prefix: &str) -> Outcome {
    let kid = record["key"]["kid"].as_str().unwrap_or_default().to_owned();
    let (status, detail) = match v {
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
        record: Some(record),
    }
}

fn summary(ui: Ui, report: &Report, elapsed: std::time::Duration, ending: Ending, args: &Args) -> Result<()> {
    let Ending { signal, token_gone } = ending;
    let (interrupted, signal_name) = match signal {
        0 => (false, None),
        1 => (true, Some("SIGHUP")),
        15 => (true, Some("SIGTERM")),
        _ => (true, Some("SIGINT")),
    };
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
            "interrupted": interrupted, "signal": signal_name, "token_gone": token_gone,
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
    if let Some(name) = signal_name {
        let exit = match signal {
            1 => Exit::HungUp,
            15 => Exit::Terminated,
            _ => Exit::Interrupted,
        };
        let message = match exit {
            Exit::Interrupted => format!("interrupted after {finished} keys"),
            _ => format!("stopped by {name} after {finished} keys; the keys in flight finished and were recorded"),
        };
        return Err(CliError::msg(exit, message).hint(resume_hint));
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
        Err(e) if e.is_not_found() => say("(KEK)", true, format!("would create `{}`", args.kek.kek_name)),
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
            Err(e) if e.is_not_found() => say(&item.name, true, format!("would transfer {}", key.describe())),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(text: &str, allow_duplicates: bool) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("m.toml");
        std::fs::write(&file, text).expect("manifest");
        match read_manifest(&file, allow_duplicates) {
            Ok(_) => String::new(),
            Err(e) => e.error.to_string(),
        }
    }

    #[test]
    fn manifests_are_validated() {
        let key = |uri: &str, name: &str| format!("[[key]]\nuri = \"{uri}\"\nname = \"{name}\"\n");
        let ok = key("pkcs11:token=t;object=a", "a") + &key("pkcs11:token=t;object=b", "b");
        assert_eq!(refusal(&ok, false), "");
        let cases = [
            (
                key("pkcs11:token=t;object=a?module-path=/tmp/x.so", "a"),
                "a module-path in a manifest URI is refused",
            ),
            (
                key("pkcs11:token=t;object=a?pin-source=file:/etc/shadow", "a"),
                "a pin-source in a manifest URI is refused",
            ),
            (
                key("pkcs11:token=t;object=a?pin-value=1234", "a"),
                "a pin-value in a manifest URI is refused",
            ),
            (
                key("pkcs11:token=t;object=a", "a") + &key("pkcs11:token=t;object=a", "b"),
                "`a` and `b` name the same HSM key",
            ),
            (
                key("pkcs11:token=t;object=a", "a") + &key("pkcs11:token=t;object=b", "a"),
                "the name `a` is listed twice",
            ),
            (
                key("pkcs11:token=t;object=a", "a") + &key("pkcs11:token=u;object=b", "b"),
                "names another token",
            ),
            (key("pkcs11:token=t;object=a", "a_b"), "is not a key name"),
            (
                "[defaults]\nname = \"x\"\n".to_owned() + &key("pkcs11:token=t;object=a", "a"),
                "[defaults] takes",
            ),
            ("# nothing\n".to_owned(), "lists no [[key]]"),
        ];
        for (text, needle) in cases {
            let got = refusal(&text, false);
            assert!(got.contains(needle), "{text}\n=> {got}");
        }
        let dup = key("pkcs11:token=t;object=a", "a") + &key("pkcs11:token=t;object=a", "b");
        assert_eq!(refusal(&dup, true), "", "--allow-duplicate-keys");
    }
}
