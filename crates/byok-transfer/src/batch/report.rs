//! A batch's results as they come: the counts, the state file, the records, the observer.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde_json::json;

use super::{BatchEvent, BatchObserver, CancelToken, KeyResult, Status, Summary};
use crate::error::{Error, Kind, Result, Step};
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

pub(super) struct Report {
    pub(super) observer: Arc<dyn BatchObserver>,
    pub(super) vault: String,
    pub(super) total: u64,
    pub(super) counts: [AtomicU64; 4],
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
    pub(super) fn started(&self, name: &str, transfer_id: &str) -> Result<()> {
        match &self.state {
            Some(state) => state.record(&json!({
                "name": name, "status": "started", "transfer_id": transfer_id, "vault": self.vault,
            })),
            None => Ok(()),
        }
    }

    /// Counts, records and reports one key. The record first, so that `done` in the state file means a record
    /// exists; a record that cannot be written still leaves the key reported as imported, and stops the batch.
    pub(super) fn key(&self, name: &str, o: &Outcome) -> Result<()> {
        self.counts[o.status as usize].fetch_add(1, Ordering::Relaxed);
        if matches!(o.status, Status::Failed | Status::Mismatch) && self.fail_fast {
            self.stop.store(true, Ordering::Relaxed);
        }
        let record_error = match (&self.record_dir, &o.record) {
            (Some(dir), Some(record)) => record.write(&dir.join(format!("{name}.record.json")), false).err(),
            _ => None,
        };
        let result = KeyResult {
            name: name.to_owned(),
            status: o.status,
            step: o.step.clone(),
            detail: o.detail.clone(),
            kid: o.kid.clone().unwrap_or_default(),
            transfer_id: o.record.as_ref().map(|r| r.transfer_id.clone()),
            vault: self.vault.clone(),
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

    /// Keeps the first result that could not be written, and stops the batch: results must not be lost.
    pub(super) fn fatal(&self, e: Error) {
        self.stop.store(true, Ordering::Relaxed);
        let mut fatal = self.fatal.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        fatal.get_or_insert(e);
    }

    pub(super) fn summary(&self, seconds: f64, token_gone: Option<String>) -> Summary {
        let count = |s: Status| self.counts[s as usize].load(Ordering::Relaxed);
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
        }
    }
}

/// An error and its causes on one line, as `anyhow` shows them with `{:#}`.
pub(super) fn chain(e: &Error) -> String {
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
