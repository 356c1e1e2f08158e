//! A batch's results as they come: the counts, the state file, the records, the observer.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde_json::json;

use super::{BatchEvent, BatchObserver, CancelToken, KeyResult, Status, Summary};
use crate::error::{Error, Kind, Result, Step};
use crate::fan_out::{Destination, FanOutRecord};
use crate::observe::{Event, Observer};
use crate::record::TransferRecord;
use crate::state::StateFile;

/// How one key ended, before it is reported.
#[derive(Debug)]
pub(super) struct Outcome {
    pub(super) status: Status,
    pub(super) step: String,
    pub(super) detail: String,
    /// The key version in the vault, when there is one.
    pub(super) kid: Option<String>,
    /// The transfer record, for keys transferred (or finished) by this run.
    pub(super) record: Option<TransferRecord>,
}

impl Outcome {
    pub(super) fn failed(step: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            status: Status::Failed,
            step: step.into(),
            detail: detail.into(),
            kid: None,
            record: None,
        }
    }
}

/// A fan-out's record writes, one at a time per key (striped by name: a key's destinations end concurrently, and
/// each merges its entry into the same file).
#[derive(Default)]
pub(super) struct RecordLocks([Mutex<()>; 16]);

impl RecordLocks {
    fn lock(&self, name: &str) -> std::sync::MutexGuard<'_, ()> {
        let stripe = name
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(usize::from(b)))
            % 16;
        self.0[stripe].lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub(super) struct Report {
    pub(super) observer: Arc<dyn BatchObserver>,
    /// The destinations' URLs, in the order they were named.
    pub(super) vaults: Vec<String>,
    pub(super) total: u64,
    /// Per destination, per [`Status`].
    pub(super) counts: Vec<[AtomicU64; 4]>,
    /// In a fan-out: the locks on its records' files.
    pub(super) fan_out: Option<RecordLocks>,
    pub(super) state: Option<StateFile>,
    pub(super) record_dir: Option<PathBuf>,
    pub(super) fail_fast: bool,
    /// Set by --fail-fast, the token going away, or a result that could not be written.
    pub(super) stop: AtomicBool,
    pub(super) cancel: CancelToken,
    /// The first result that could not be written.
    pub(super) fatal: Mutex<Option<Error>>,
}

impl Report {
    /// Whether no new key may be started.
    pub(super) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.cancel.is_cancelled()
    }

    /// Writes the intent before an import is sent: a resume that finds this transfer id on the key in the vault
    /// knows the import was this batch's and finishes it.
    pub(super) fn started(&self, name: &str, vault: usize, transfer_id: &str) -> Result<()> {
        match &self.state {
            Some(state) => state.record(&json!({
                "name": name, "status": "started", "transfer_id": transfer_id, "vault": self.vaults[vault],
            })),
            None => Ok(()),
        }
    }

    /// Counts, records and reports one key. The record first, so that `done` in the state file means a record
    /// exists; a record that cannot be written still leaves the key reported as imported, and stops the batch.
    pub(super) fn key(&self, name: &str, vault: usize, o: &Outcome) -> Result<()> {
        self.counts[vault][o.status as usize].fetch_add(1, Ordering::Relaxed);
        if matches!(o.status, Status::Failed | Status::Mismatch) && self.fail_fast {
            self.stop.store(true, Ordering::Relaxed);
        }
        let record_error = match (&self.record_dir, &self.fan_out, &o.record) {
            (Some(dir), Some(_), _) => self.fan_out_entry(dir, name, vault, o).err(),
            (Some(dir), None, Some(record)) => record.write(&dir.join(format!("{name}.record.json")), false).err(),
            _ => None,
        };
        let result = KeyResult {
            name: name.to_owned(),
            status: o.status,
            step: o.step.clone(),
            detail: o.detail.clone(),
            kid: o.kid.clone().unwrap_or_default(),
            transfer_id: o.record.as_ref().map(|r| r.transfer_id.clone()),
            vault: self.vaults[vault].clone(),
            record_error: record_error.as_ref().map(chain),
        };
        if let Some(state) = &self.state {
            let line = serde_json::to_value(&result)
                .map_err(|e| Error::new(Step::Record, Kind::Internal, format!("cannot encode a state line: {e}")))?;
            state.record(&line)?;
        }
        self.observer.event(&BatchEvent::Key {
            result: &result,
            record: o.record.as_ref(),
        });
        match record_error {
            Some(e) => Err(e.context(
                Step::Record,
                format!(
                    "`{name}` was imported as {} and verified, but its record was not written",
                    o.kid.as_deref().unwrap_or("?")
                ),
            )),
            None => Ok(()),
        }
    }

    /// A fan-out destination ended: its entry is merged into the key's fan-out record at once (a crash loses
    /// nothing, and nothing is held in memory for keys other destinations have not reached yet).
    fn fan_out_entry(&self, dir: &std::path::Path, name: &str, vault: usize, o: &Outcome) -> Result<()> {
        let Some(locks) = &self.fan_out else { return Ok(()) };
        let entry = Destination {
            vault: self.vaults[vault].clone(),
            status: o.status.name().to_owned(),
            kid: o.kid.clone().unwrap_or_default(),
            detail: o.detail.clone(),
            record: o.record.clone(),
        };
        let _lock = locks.lock(name);
        FanOutRecord::update(
            &dir.join(format!("{name}.record.json")),
            name,
            vec![entry],
            &self.vaults,
        )
    }

    /// Keeps the first result that could not be written, and stops the batch: results must not be lost.
    pub(super) fn fatal(&self, e: Error) {
        self.stop.store(true, Ordering::Relaxed);
        let mut fatal = self.fatal.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        fatal.get_or_insert(e);
    }

    pub(super) fn summary(&self, seconds: f64, token_gone: Option<String>) -> Summary {
        let count = |s: Status| self.counts.iter().map(|c| c[s as usize].load(Ordering::Relaxed)).sum();
        Summary {
            total: self.total,
            done: count(Status::Done),
            skipped: count(Status::Skipped),
            failed: count(Status::Failed),
            mismatched: count(Status::Mismatch),
            seconds,
            cancelled: self.cancel.is_cancelled(),
            token_gone,
            pace: byok_keyvault::Pace::default(),
            vaults: Vec::new(),
        }
    }

    /// One destination's counts (its pace filled in by the caller).
    pub(super) fn vault_summary(&self, vault: usize) -> super::VaultSummary {
        let count = |s: Status| self.counts[vault][s as usize].load(Ordering::Relaxed);
        super::VaultSummary {
            vault: self.vaults[vault].clone(),
            done: count(Status::Done),
            skipped: count(Status::Skipped),
            failed: count(Status::Failed),
            mismatched: count(Status::Mismatch),
            pace: byok_keyvault::Pace::default(),
        }
    }
}

/// An error and its causes on one line, as `anyhow` shows them with `{:#}`.
pub(crate) fn chain(e: &Error) -> String {
    let mut text = e.to_string();
    let mut next = std::error::Error::source(e);
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

/// A key's transfer events, passed on to the batch's observer.
pub(super) struct Forward(pub(super) Arc<dyn BatchObserver>);

impl Observer for Forward {
    fn event(&self, event: &Event<'_>) {
        self.0.event(&BatchEvent::Transfer(event));
    }
}
