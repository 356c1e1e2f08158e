//! `byok-cli batch`: many keys from one token into one vault — a TOML manifest, bounded concurrency, a result per
//! key, safe to interrupt and resume. The engine is `byok_transfer::batch`; this file maps flags to its options,
//! signals to its cancel token, and renders its events as lines, a progress bar and a summary.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use byok_transfer::batch::{self, BatchEvent, BatchObserver, CancelToken, Check, Manifest, Source, Status, Summary};
use serde_json::json;

use crate::cmd::attest;
use crate::cmd::hsm::HsmArgs;
use crate::cmd::transfer::{KekArgs, Progress, tool};
use crate::cmd::vault::AnyVaults;
use crate::cmd::wrap::WrapArgs;
use crate::exit::{CliError, Exit, Result};
use crate::ui::Ui;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "The manifest (TOML) lists the keys: [[key]] uri = \"pkcs11:…\", name = \"…\", and optionally kty, \
                        size, curve (checked against the token), ops, tags, enabled, not_before, expires; a [defaults] \
                        table gives ops, tags, enabled, not_before, expires for all. See docs/cli/batch.md."
)]
pub(crate) struct Args {
    #[command(flatten)]
    vault: AnyVaults,
    /// Send the keys to the vaults the manifest's `destinations` lists (refused without this flag: a manifest that
    /// chose where keys go could send them to a vault its author owns).
    #[arg(long)]
    manifest_destinations: bool,
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
    attestation: attest::TransferArgs,
    #[command(flatten)]
    hsm: HsmArgs,
}

pub(crate) fn run(ui: Ui, args: &Args) -> Result<()> {
    let manifest = Manifest::read(&args.manifest, args.allow_duplicate_keys)?;
    let options = batch::Options {
        kek: args.kek.policy(false)?,
        wrap: args.wrap.options(),
        jobs: usize::from(args.jobs),
        hsm_sessions: usize::from(args.hsm_sessions),
        state: args.resume.clone(),
        record_dir: args.record_dir.clone(),
        fail_fast: args.fail_fast,
        allow_duplicate_keys: args.allow_duplicate_keys,
        tool: tool(),
        attestation: args.attestation.policy(ui)?,
    };
    // Before the vault is reached: a wrong directory or state file is found at once.
    batch::check(&options)?;
    let from_manifest = manifest.destinations(args.manifest_destinations)?;
    let conns: Vec<_> = args
        .vault
        .0
        .connect_all(ui, from_manifest)?
        .into_iter()
        .map(Arc::new)
        .collect();
    let first = manifest.items[0].uri.clone();
    args.hsm.with_module(&first, |module, pin| {
        let source = Source {
            module,
            pin,
            uri: &first,
        };
        if args.dry_run {
            return dry_run(ui, &manifest, &options, &conns, source);
        }
        let cancel = CancelToken::new();
        let signal = on_signals(cancel.clone())?;
        let view = Arc::new(View {
            ui,
            bar: OnceLock::new(),
            out: Mutex::new(()),
            failed: Default::default(),
            conns: conns.clone(),
        });
        let summary = batch::run_fan_out(&manifest, &options, &conns, source, view.clone(), &cancel);
        if let Some(bar) = view.bar.get().and_then(Option::as_ref) {
            bar.finish_and_clear();
        }
        report(ui, &summary?, signal.load(Ordering::Relaxed), args)
    })
}

/// Maps SIGINT, SIGTERM and SIGHUP to the batch's cancel token: no new keys, the ones in flight finish and are
/// recorded. Registered before any key is started, so that a signal cannot kill the process between an import and
/// its record. Returns where the signal's number (2, 15, 1) will be.
fn on_signals(cancel: CancelToken) -> Result<Arc<AtomicU8>> {
    use tokio::signal::unix::{SignalKind, signal as listen};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::msg(Exit::Internal, format!("cannot start the async runtime: {e}")))?;
    let listen = |kind: SignalKind| {
        let _guard = rt.enter();
        listen(kind).map_err(|e| CliError::msg(Exit::Internal, format!("cannot handle signals: {e}")))
    };
    let (mut int, mut term, mut hup) = (
        listen(SignalKind::interrupt())?,
        listen(SignalKind::terminate())?,
        listen(SignalKind::hangup())?,
    );
    let signal = Arc::new(AtomicU8::new(0));
    let number = signal.clone();
    std::thread::spawn(move || {
        rt.block_on(async move {
            let n = tokio::select! {
                _ = int.recv() => 2,
                _ = term.recv() => 15,
                _ = hup.recv() => 1,
            };
            number.store(n, Ordering::Relaxed);
            cancel.cancel();
        });
    });
    Ok(signal)
}

/// Renders a batch's events: one line per key (text or JSON), the progress bar, notes.
struct View {
    ui: Ui,
    bar: OnceLock<Option<indicatif::ProgressBar>>,
    out: Mutex<()>,
    failed: std::sync::atomic::AtomicU64,
    /// Their paces, once learnt, are the ETA's rate: a batch under the vaults' limits goes no faster.
    conns: Vec<Arc<byok_keyvault::Connection>>,
}

impl BatchObserver for View {
    fn event(&self, event: &BatchEvent<'_>) {
        let ui = self.ui;
        match event {
            BatchEvent::Resuming { done, of } => ui.note(&format!("resuming: {done} of {of} keys are done already")),
            BatchEvent::Starting { total } => {
                let _ = self.bar.set(ui.progress_bar(*total));
            }
            BatchEvent::Key { result, .. } => self.key(result),
            BatchEvent::SessionUnavailable { number, of, error } => ui.note(&format!(
                "HSM session {number} of {of} could not be opened ({error}); continuing with fewer"
            )),
            BatchEvent::Transfer(e) => byok_transfer::Observer::event(&Progress { ui, steps: false }, e),
            _ => {}
        }
    }
}

impl View {
    fn key(&self, r: &batch::KeyResult) {
        let _guard = self.out.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if matches!(r.status, Status::Failed | Status::Mismatch) {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        let bar = self.bar.get().and_then(Option::as_ref);
        if self.ui.is_json() {
            // stdout gone (a closed pipe): the state file and the exit code still tell the result.
            if let Ok(line) = serde_json::to_value(r) {
                let _ = self.ui.json_line(&line);
            }
        } else {
            let text = match r.status {
                Status::Done | Status::Skipped => format!("{}  {}  {}", r.status.name(), r.name, r.detail),
                _ => format!(
                    "{}  {}  at {}: {}",
                    r.status.name().to_uppercase(),
                    r.name,
                    r.step,
                    r.detail
                ),
            };
            match bar {
                Some(bar) => bar.println(text),
                None => self.ui.note(&text),
            }
        }
        if let Some(bar) = bar {
            bar.inc(1);
            let left = bar.length().unwrap_or(0).saturating_sub(bar.position()) as f64;
            let rates: Option<Vec<f64>> = self.conns.iter().map(|c| c.pace().per_second()).collect();
            let rate = rates.map(|r| r.iter().sum::<f64>()).filter(|r| *r > 0.0);
            let paced = rate.map(|r| std::time::Duration::from_secs_f64(left / r));
            let eta = indicatif::HumanDuration(paced.map_or(bar.eta(), |p| p.max(bar.eta())));
            bar.set_message(format!("{} failed, ETA {eta}", self.failed.load(Ordering::Relaxed)));
        }
    }
}

/// The dry run's findings, one line each; exit 9 when there are problems.
fn dry_run(
    ui: Ui,
    manifest: &Manifest,
    options: &batch::Options,
    conns: &[Arc<byok_keyvault::Connection>],
    source: Source<'_>,
) -> Result<()> {
    let say = |c: &Check| {
        if ui.is_json() {
            // stdout gone: the exit code still tells the result.
            let _ = ui.json_line(&json!({"name": c.name, "ok": c.ok, "plan": c.plan}));
        } else if c.ok {
            ui.note(&format!("ok       {}  {}", c.name, c.plan));
        } else {
            ui.note(&format!("PROBLEM  {}  {}", c.name, c.plan));
        }
    };
    let mut problems = 0;
    for conn in conns {
        if conns.len() > 1 {
            ui.note(&format!("destination {}:", conn.vault().url()));
        }
        problems += batch::dry_run(manifest, options, conn, source, say)?;
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

/// A fan-out's counts per destination, a line each.
fn per_vault(ui: Ui, summary: &Summary) {
    for v in summary.vaults.iter().filter(|_| summary.vaults.len() > 1) {
        let (d, s, f, m) = (v.done, v.skipped, v.failed, v.mismatched);
        ui.note(&format!(
            "  {}: {d} done, {s} skipped, {f} failed, {m} mismatched",
            v.vault
        ));
    }
}

/// The summary line (or JSON), and the exit code it means.
fn report(ui: Ui, summary: &Summary, signal: u8, args: &Args) -> Result<()> {
    // A fail-fast stop cancels too, without a signal.
    let stopped_by = (summary.cancelled && signal != 0).then_some(match signal {
        1 => (Exit::HungUp, "SIGHUP"),
        15 => (Exit::Terminated, "SIGTERM"),
        _ => (Exit::Interrupted, "SIGINT"),
    });
    let Summary {
        total,
        done,
        skipped,
        failed,
        mismatched,
        seconds,
        ..
    } = *summary;
    let (finished, token_gone) = (summary.finished(), &summary.token_gone);
    let rate = finished as f64 / seconds.max(1e-3);
    if ui.is_json() {
        let json = json!({ "summary": {
            "total": total, "done": done, "skipped": skipped, "failed": failed, "mismatched": mismatched,
            "not_started": total - finished, "seconds": seconds, "keys_per_second": rate,
            "interrupted": stopped_by.is_some(), "signal": stopped_by.map(|(_, name)| name), "token_gone": token_gone,
            "throttled_requests": summary.pace.throttled_requests, "imports_throttled": summary.pace.throttled,
            "pace": { "per_second": summary.pace.per_second(), "capacity": summary.pace.capacity,
                "window_seconds": summary.pace.window.map(|w| w.as_secs_f64()) },
            "vaults": summary.vaults.iter().map(|v| json!({ "vault": v.vault, "done": v.done, "skipped": v.skipped,
                "failed": v.failed, "mismatched": v.mismatched, "throttled_requests": v.pace.throttled_requests,
                "per_second": v.pace.per_second() })).collect::<Vec<_>>(),
        }});
        ui.json_line(&json).map_err(crate::stdout_error)?;
    } else {
        let counts = format!("{done} done, {skipped} skipped, {failed} failed, {mismatched} mismatched");
        let not_started = total - finished;
        ui.note(&format!(
            "{counts}, {not_started} not started — {finished} keys in {seconds:.1} s ({rate:.1}/s)"
        ));
        per_vault(ui, summary);
        if let Some(pace) = summary.pace.per_second() {
            let throttled = summary.pace.throttled_requests;
            ui.note(&format!(
                "the vault throttled {throttled} requests; imports paced to {pace:.1}/s, as it admits"
            ));
        }
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
    if let Some((exit, name)) = stopped_by {
        let message = match exit {
            Exit::Interrupted => format!("interrupted after {finished} keys"),
            _ => format!("stopped by {name} after {finished} keys; the keys in flight finished and were recorded"),
        };
        return Err(CliError::msg(exit, message).hint(resume_hint));
    }
    if let Some(gone) = token_gone {
        let message = format!("stopped after {finished} keys: {gone}; the keys in flight finished");
        let hint = format!("reconnect the token (or restart the HSM client), then {resume_hint}");
        return Err(CliError::msg(Exit::Hsm, message).hint(hint));
    }
    if mismatched > 0 {
        let message = format!("{mismatched} keys in the vault differ from the HSM's: do not use those versions");
        return Err(CliError::msg(Exit::Verification, message));
    }
    if failed > 0 || finished < total {
        return Err(CliError::msg(Exit::Partial, format!("{failed} of {total} keys failed")).hint(resume_hint));
    }
    Ok(())
}
