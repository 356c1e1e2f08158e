//! The batch engine: many keys from one token into one vault, or each into several (a fan-out: every destination
//! with its own KEK, its own pace and its own result per key). The HSM work (find, check, wrap) runs on
//! [`Options::hsm_sessions`] sessions, one thread each, taking keys in manifest order; the vault work (import,
//! verify) of up to [`Options::jobs`] keys runs concurrently behind it, and an HSM thread waits for a free job slot
//! before it wraps (back-pressure). Memory does not grow with the number of keys: nothing per key is kept once its
//! result is written. Results and progress go to a [`BatchObserver`]; a [`CancelToken`] stops it (the keys in
//! flight finish and are recorded).

mod dry_run;
mod engine;
mod manifest;
mod report;

pub(crate) use report::chain;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use byok_pkcs11::WrapOptions;
use serde::Serialize;

pub use dry_run::{Check, dry_run};
pub use engine::{Source, check, run, run_fan_out};
pub use manifest::{Item, Manifest};

use crate::attest::AttestationPolicy;
use crate::kek::KekPolicy;
use crate::observe::Event;
use crate::record::{Tool, TransferRecord};

/// How a batch runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// The KEK every key is wrapped to (reused or created; a batch never adds a KEK version).
    pub kek: KekPolicy,
    /// How to wrap.
    pub wrap: WrapOptions,
    /// Vault requests in flight at once (at least 1).
    pub jobs: usize,
    /// HSM sessions wrapping at once, one thread each (at least 1).
    pub hsm_sessions: usize,
    /// The state file: each key's result as a JSON line, and what a resume skips.
    pub state: Option<PathBuf>,
    /// Write each key's record to DIR/NAME.record.json.
    pub record_dir: Option<PathBuf>,
    /// Stop starting keys after the first failure.
    pub fail_fast: bool,
    /// Let one HSM key go to several names.
    pub allow_duplicate_keys: bool,
    /// The program named in records and blobs.
    pub tool: Tool,
    /// Whether the Managed HSM's attestations are checked (the KEK's once, before the first wrap; each key's after
    /// its import).
    pub attestation: AttestationPolicy,
}

/// How one key ended.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Imported (and verified, or said why not).
    Done,
    /// The vault holds this very key under that name already.
    Skipped,
    /// Not imported: the step and detail say why.
    Failed,
    /// Imported, and the vault's key differs from the HSM's: do not use that version.
    Mismatch,
}

impl Status {
    /// As the state file and the output spell it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
            Self::Mismatch => "mismatch",
        }
    }
}

/// One key's result: a line of the state file, as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyResult {
    /// The key's name in the vault.
    pub name: String,
    /// How it ended.
    pub status: Status,
    /// The step it ended at, in words.
    pub step: String,
    /// What happened.
    pub detail: String,
    /// The key version in the vault, or empty.
    pub kid: String,
    /// The transfer id, for keys this run transferred (or finished).
    pub transfer_id: Option<String>,
    /// The vault.
    pub vault: String,
    /// Why the key's record could not be written, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_error: Option<String>,
}

/// Why a batch ended, and how its keys did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// The keys this run had to do (those a resume found done are not counted).
    pub total: u64,
    /// Imported.
    pub done: u64,
    /// Already in the vault.
    pub skipped: u64,
    /// Failed.
    pub failed: u64,
    /// Imported with a different key.
    pub mismatched: u64,
    /// Seconds the run took.
    pub seconds: f64,
    /// Stopped by its [`CancelToken`].
    pub cancelled: bool,
    /// The token went away: why the HSM says so.
    pub token_gone: Option<String>,
    /// How the vault paced the imports: its `429`s and the rate byok learnt from them. In a fan-out, the
    /// destinations' counts added up, with no one capacity or window (each is in [`Self::vaults`]).
    pub pace: byok_keyvault::Pace,
    /// Each destination's counts and pace, in the order they were named (one entry for a one-vault batch).
    pub vaults: Vec<VaultSummary>,
}

/// One destination's part of a [`Summary`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VaultSummary {
    /// The vault's URL.
    pub vault: String,
    /// Imported.
    pub done: u64,
    /// Already there.
    pub skipped: u64,
    /// Failed.
    pub failed: u64,
    /// Imported with a different key.
    pub mismatched: u64,
    /// How this vault paced its imports.
    pub pace: byok_keyvault::Pace,
}

impl Summary {
    /// The keys that ended one way or another.
    pub fn finished(&self) -> u64 {
        self.done + self.skipped + self.failed + self.mismatched
    }
}

/// Something a batch did.
#[non_exhaustive]
#[derive(Debug)]
pub enum BatchEvent<'a> {
    /// The state file shows `done` of `of` keys finished by earlier runs.
    Resuming {
        /// Finished earlier.
        done: usize,
        /// In the manifest.
        of: usize,
    },
    /// The keys are about to be started.
    Starting {
        /// The keys this run does.
        total: u64,
    },
    /// A key ended (its line is in the state file already).
    Key {
        /// Its result.
        result: &'a KeyResult,
        /// Its record, for keys this run transferred.
        record: Option<&'a TransferRecord>,
    },
    /// One of the HSM sessions could not be opened; the others carry on.
    SessionUnavailable {
        /// Which (1-based).
        number: usize,
        /// Of how many.
        of: usize,
        /// Why.
        error: &'a crate::Error,
    },
    /// A step of one key's transfer (verbose detail).
    Transfer(&'a Event<'a>),
}

/// Receives a batch's events, from HSM threads and async workers alike.
pub trait BatchObserver: Send + Sync {
    /// One event.
    fn event(&self, event: &BatchEvent<'_>);
}

impl<F: Fn(&BatchEvent<'_>) + Send + Sync> BatchObserver for F {
    fn event(&self, event: &BatchEvent<'_>) {
        self(event);
    }
}

/// Stops a batch: no new keys are started; those in flight finish and are recorded. Clone it to a signal handler.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token not cancelled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the batch to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether it was asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
