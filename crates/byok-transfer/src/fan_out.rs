//! The record of one HSM key sent to several vaults (a fan-out): each destination's verdict, key version and
//! transfer record, in one file. A later run (`--resume`) that completes a destination replaces that destination's
//! entry and keeps the others', so the file always says where the key is.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Kind, Result, Step};
use crate::record::{FORMAT_VERSION, TransferRecord};
use crate::transfer::Transferred;
use crate::verify::Verification;

/// The `kind` of a fan-out record, which tells it from a one-vault [`TransferRecord`].
pub const FAN_OUT_KIND: &str = "byok-fan-out-record";

/// One key into several vaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FanOutRecord {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// [`FAN_OUT_KIND`].
    pub kind: String,
    /// The key's name in every vault.
    pub name: String,
    /// Every destination this key was sent to, in the order they were named.
    pub destinations: Vec<Destination>,
}

/// One destination of a [`FanOutRecord`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// The vault's URL.
    pub vault: String,
    /// `done`, `skipped` (the vault held this very key already), `failed` or `mismatch`.
    pub status: String,
    /// The key version in that vault, or empty.
    pub kid: String,
    /// What happened, in words.
    pub detail: String,
    /// The transfer record, for a destination this key was transferred to.
    pub record: Option<TransferRecord>,
}

/// Refuses a destination named twice (by URL, as [`byok_keyvault::Vault::url`] writes it): it would get the key
/// twice, a second version. `Ok` with none or one.
pub fn check_distinct<'a>(urls: impl IntoIterator<Item = &'a str>) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for (i, url) in urls.into_iter().enumerate() {
        if !seen.insert(url) {
            let message = format!("the destination {url} is named twice (as destination {})", i + 1);
            return Err(Error::new(Step::Preflight, Kind::InvalidInput, message));
        }
    }
    Ok(())
}

impl Destination {
    /// The entry of one destination of [`crate::Plan::execute_fan_out`].
    pub fn of(vault: &str, outcome: &Result<Transferred>) -> Self {
        let (status, kid, detail, record) = match outcome {
            Ok(done) => {
                let kid = done.record.kid().unwrap_or_default().to_owned();
                let status = match done.verification {
                    Verification::Mismatch { .. } => "mismatch",
                    _ => "done",
                };
                (status, kid, done.verification.to_string(), Some(done.record.clone()))
            }
            Err(e) => ("failed", String::new(), crate::batch::chain(e), None),
        };
        Self {
            vault: vault.to_owned(),
            status: status.to_owned(),
            kid,
            detail,
            record,
        }
    }
}

impl FanOutRecord {
    /// A record of `name` with no destination yet.
    pub fn new(name: &str) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            kind: FAN_OUT_KIND.to_owned(),
            name: name.to_owned(),
            destinations: Vec::new(),
        }
    }

    /// Reads the fan-out record at `path`, if there is a file; a file that is not one is refused (byok does not
    /// replace a record of another kind, nor one of another key).
    pub fn read(path: &Path, name: &str) -> Result<Option<Self>> {
        if std::fs::symlink_metadata(path).is_err() {
            return Ok(None);
        }
        let bytes = crate::files::read_input(path, "record")?;
        let refused = |why: &str| {
            Error::new(Step::Record, Kind::Refused, format!("{} {why}", path.display()))
                .with_hint("move that file away: byok does not replace a record")
        };
        let record: Self = serde_json::from_slice(&bytes).map_err(|_| refused("is not a fan-out record"))?;
        if record.kind != FAN_OUT_KIND || record.format_version != FORMAT_VERSION {
            return Err(refused("is not a fan-out record of this format"));
        }
        if record.name != name {
            return Err(refused(&format!("records the key `{}`, not `{name}`", record.name)));
        }
        Ok(Some(record))
    }

    /// Puts `entry` in, replacing the entry of the same vault if there is one.
    pub fn set(&mut self, entry: Destination) {
        match self.destinations.iter_mut().find(|d| d.vault == entry.vault) {
            Some(old) => *old = entry,
            None => self.destinations.push(entry),
        }
    }

    /// Merges `entries` into the record at `path` (made if absent), the destinations in the order of `vaults`
    /// (others after them), and replaces it atomically.
    pub fn update(path: &Path, name: &str, entries: Vec<Destination>, vaults: &[String]) -> Result<()> {
        let mut record = Self::read(path, name)?.unwrap_or_else(|| Self::new(name));
        for entry in entries {
            record.set(entry);
        }
        record
            .destinations
            .sort_by_key(|d| vaults.iter().position(|v| *v == d.vault).unwrap_or(usize::MAX));
        record.write(path, true)
    }

    /// Writes the record atomically to `path`, never over an existing file unless `force`.
    pub fn write(&self, path: &Path, force: bool) -> Result<()> {
        let mut text = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::new(Step::Record, Kind::Internal, format!("cannot encode the record: {e}")))?;
        text.push(b'\n');
        crate::files::write_atomic(path, &text, force).map_err(|e| e.at(Step::Record))
    }

    /// How many destinations ended with `status`.
    pub fn count(&self, status: &str) -> usize {
        self.destinations.iter().filter(|d| d.status == status).count()
    }

    /// Whether every destination holds the key, verified or skipped as already there.
    pub fn complete(&self) -> bool {
        !self.destinations.is_empty()
            && self
                .destinations
                .iter()
                .all(|d| matches!(d.status.as_str(), "done" | "skipped"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(vault: &str, status: &str) -> Destination {
        Destination {
            vault: vault.into(),
            status: status.into(),
            kid: String::new(),
            detail: String::new(),
            record: None,
        }
    }

    #[test]
    fn a_resume_replaces_its_destination_and_keeps_the_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.record.json");
        let order = ["https://a".to_owned(), "https://b".to_owned()];
        let entries = vec![entry("https://b", "failed"), entry("https://a", "done")];
        FanOutRecord::update(&path, "k", entries, &order).expect("written");
        let first = FanOutRecord::read(&path, "k").expect("read").expect("there");
        assert!(!first.complete());
        FanOutRecord::update(&path, "k", vec![entry("https://b", "done")], &order).expect("merged");
        let merged = FanOutRecord::read(&path, "k").expect("read").expect("there");
        let statuses: Vec<_> = merged
            .destinations
            .iter()
            .map(|d| (d.vault.as_str(), d.status.as_str()))
            .collect();
        assert_eq!(statuses, [("https://a", "done"), ("https://b", "done")]);
        assert!(merged.complete());
        let other = FanOutRecord::read(&path, "other").expect_err("another key's record");
        assert!(other.to_string().contains("records the key `k`"), "{other}");
    }

    #[test]
    fn a_file_of_another_kind_is_refused_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.record.json");
        std::fs::write(&path, br#"{"format_version": 1, "transfer_id": "x"}"#).expect("write");
        let e = FanOutRecord::update(&path, "k", vec![entry("https://a", "done")], &[]).expect_err("refused");
        assert!(e.to_string().contains("is not a fan-out record"), "{e}");
        assert_eq!(
            std::fs::read(&path).expect("kept"),
            br#"{"format_version": 1, "transfer_id": "x"}"#
        );
    }
}
