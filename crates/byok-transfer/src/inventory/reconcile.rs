//! Records against the vault: every transfer record in a directory (`*.json`, as `full-transfer --record`, `batch
//! --record-dir` and `rotate --record` write them) for this vault is looked up — its key and version must exist,
//! and the vault's public key (RSA, EC) or byok's check-value tag (AES) must match the record — and every version
//! byok tagged must have a record. The directory is untrusted input: bounded in files and sizes, links not
//! followed, a file that is not a record reported, not fatal.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use byok_keyvault::{Connection, tags};
use serde::Serialize;

use super::Inventory;
use crate::error::{Error, Kind, Result, Step};
use crate::record::TransferRecord;

/// At most this many files are read from a record directory.
const MAX_FILES: usize = 100_000;
/// A record is a few KiB; a larger file is not one.
const MAX_RECORD_BYTES: u64 = 1024 * 1024;

/// What the records say against the vault.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Reconciliation {
    /// The directory.
    pub record_dir: String,
    /// Records of this vault that were read.
    pub records: usize,
    /// Records of other vaults (left alone).
    pub other_vaults: usize,
    /// What disagrees.
    pub discrepancies: Vec<Discrepancy>,
}

/// One disagreement between the records and the vault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Discrepancy {
    /// `unreadable-record`, `missing-key`, `missing-version`, `unrecorded-version` or `fingerprint-mismatch`.
    pub kind: String,
    /// The record file, when a record is concerned.
    pub record: Option<String>,
    /// The key version concerned.
    pub kid: Option<String>,
    /// In words.
    pub detail: String,
}

impl Reconciliation {
    /// Whether anything disagrees.
    pub fn disagrees(&self) -> bool {
        !self.discrepancies.is_empty()
    }
}

pub(super) async fn run(conn: &Connection, dir: &Path, inventory: &Inventory) -> Result<Reconciliation> {
    let mut out = Reconciliation {
        record_dir: dir.display().to_string(),
        ..Reconciliation::default()
    };
    let vault = conn.vault().url();
    let mut recorded = BTreeSet::new();
    let found = |kind: &str, record: Option<&Path>, kid: Option<String>, detail: String| Discrepancy {
        kind: kind.to_owned(),
        record: record.map(|r| r.display().to_string()),
        kid,
        detail,
    };
    let versions: BTreeMap<(&str, &str), _> = inventory
        .keys
        .iter()
        .flat_map(|k| {
            k.versions
                .iter()
                .map(move |v| ((k.name.as_str(), v.version.as_str()), v))
        })
        .collect();
    let mut records = Vec::new();
    for file in record_files(dir)? {
        match read_records(&file) {
            Ok(r) => records.extend(r.into_iter().map(|r| (file.clone(), r))),
            Err(reason) => out
                .discrepancies
                .push(found("unreadable-record", Some(&file), None, reason)),
        }
    }
    for (file, record) in records {
        if record.vault.url.trim_end_matches('/') != vault.trim_end_matches('/') {
            out.other_vaults += 1;
            continue;
        }
        out.records += 1;
        recorded.insert(record.transfer_id.clone());
        let Some(key) = &record.key else { continue };
        let kid = Some(key.kid.clone());
        let known_key = inventory.keys.iter().any(|k| k.name == key.name);
        if !versions.contains_key(&(key.name.as_str(), key.version.as_str())) {
            let (kind, detail) = if known_key || key_exists(conn, &key.name).await? {
                (
                    "missing-version",
                    format!("the vault has no version {} of `{}`", key.version, key.name),
                )
            } else {
                ("missing-key", format!("the vault has no key `{}`", key.name))
            };
            out.discrepancies.push(found(kind, Some(&file), kid, detail));
            continue;
        }
        if let Some(detail) = compare(conn, &record).await? {
            out.discrepancies
                .push(found("fingerprint-mismatch", Some(&file), kid, detail));
        }
    }
    for key in &inventory.keys {
        for v in &key.versions {
            let id = v.provenance.as_ref().and_then(|p| p.transfer_id.clone());
            if let Some(id) = id.filter(|id| !recorded.contains(id)) {
                let kid = format!("{vault}/keys/{}/{}", key.name, v.version);
                let detail = format!("tagged byok-transfer={id}, but no record in the directory names that transfer");
                out.discrepancies
                    .push(found("unrecorded-version", None, Some(kid), detail));
            }
        }
    }
    Ok(out)
}

/// The vault's key against the record: the public key's fingerprint (RSA, EC), byok's check-value tag (AES).
async fn compare(conn: &Connection, record: &TransferRecord) -> Result<Option<String>> {
    let Some(key) = &record.key else { return Ok(None) };
    let vault_key = conn
        .get_key(&key.name, Some(&key.version))
        .await
        .map_err(|e| Error::vault(Step::Verify, e))?;
    let theirs = vault_key.public.as_ref().map(|p| p.fingerprint_sha256());
    if let Some(ours) = &key.public_key_sha256 {
        return Ok((theirs.as_ref() != Some(ours)).then(|| {
            format!(
                "the record's public key SHA-256 is {ours}, the vault's is {}",
                theirs.as_deref().unwrap_or("none")
            )
        }));
    }
    let ours = record.source.key_check_value.as_deref().and_then(|v| v.get(..6));
    let tagged = vault_key.tags.get(tags::CHECK_VALUE).map(String::as_str);
    Ok(match (ours, tagged) {
        (Some(ours), Some(tagged)) if !ours.eq_ignore_ascii_case(tagged) => Some(format!(
            "the record's AES check value is {ours}, the version's byok-kcv tag says {tagged}"
        )),
        _ => None,
    })
}

async fn key_exists(conn: &Connection, name: &str) -> Result<bool> {
    match conn.get_key(name, None).await {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(Error::vault(Step::Verify, e)),
    }
}

/// The directory's `*.json` files that are regular files (links are not followed), sorted.
fn record_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let io = |e: std::io::Error| {
        Error::new(
            Step::Preflight,
            Kind::Io,
            format!("cannot read the record directory {}: {e}", dir.display()),
        )
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let is_file = entry.file_type().map_err(io)?.is_file();
        if is_file && path.extension().is_some_and(|e| e == "json") {
            files.push(path);
        }
        if files.len() > MAX_FILES {
            return Err(Error::new(
                Step::Preflight,
                Kind::InvalidInput,
                format!("{} holds more than {MAX_FILES} records", dir.display()),
            ));
        }
    }
    files.sort();
    Ok(files)
}

/// A record file's transfer records: one, or a fan-out record's, one per destination transferred to.
fn read_records(file: &Path) -> std::result::Result<Vec<TransferRecord>, String> {
    use std::io::Read as _;
    let f = std::fs::File::open(file).map_err(|e| format!("cannot read it: {e}"))?;
    let mut text = Vec::new();
    f.take(MAX_RECORD_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if text.len() as u64 > MAX_RECORD_BYTES {
        return Err(format!("larger than {MAX_RECORD_BYTES} bytes: not a transfer record"));
    }
    let value: serde_json::Value = serde_json::from_slice(&text).map_err(|e| format!("not a transfer record: {e}"))?;
    if value["kind"] == crate::fan_out::FAN_OUT_KIND {
        let fan_out: crate::fan_out::FanOutRecord =
            serde_json::from_value(value).map_err(|e| format!("not a fan-out record: {e}"))?;
        return Ok(fan_out.destinations.into_iter().filter_map(|d| d.record).collect());
    }
    let record: TransferRecord = serde_json::from_value(value).map_err(|e| format!("not a transfer record: {e}"))?;
    if record.format_version != crate::record::FORMAT_VERSION {
        return Err(format!(
            "a record of format_version {} (this byok reads {})",
            record.format_version,
            crate::record::FORMAT_VERSION
        ));
    }
    Ok(vec![record])
}
