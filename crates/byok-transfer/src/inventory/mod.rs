//! The inventory (`status`): every key in a vault that byok imported a version of, each version with what byok's
//! tags and the vault's own attributes say — kind, created, enabled, validity, source, age — and the keys whose
//! current version is too old or about to expire. Optionally reconciled with a directory of transfer records
//! (`reconcile`). It reads only: a list of keys, each key's versions, and (reconciling) the versions records name.

mod reconcile;

use std::path::PathBuf;

use byok_keyvault::{Connection, KeyItem, Timestamp};
use futures_util::StreamExt as _;
use serde::Serialize;

use crate::error::{Error, Result, Step};
use crate::period::Period;
use crate::provenance::Provenance;

pub use reconcile::{Discrepancy, Reconciliation};

/// The inventory's schema version (docs/cli/status.md).
pub const FORMAT_VERSION: u32 = 1;
/// Listings of versions in flight at once. One: measured against the local vault, 8 in flight took 6× as long as 1
/// (2.7 s against 0.44 s for 1,000 keys, both sides idle: requests stall each other somewhere in the HTTP stack —
/// an open question, docs/performance.md); one at a time also stays far under Key Vault's limits.
const CONCURRENT_LISTINGS: usize = 1;

/// What to look for.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// A key whose current version is older than this needs rotation.
    pub max_age: Option<Period>,
    /// A key whose current version expires within this needs rotation.
    pub expiring_within: Option<Period>,
    /// Reconcile with the transfer records in this directory.
    pub record_dir: Option<PathBuf>,
}

/// The inventory of one vault.
#[derive(Clone, Debug, Serialize)]
pub struct Inventory {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The vault's URL.
    pub vault: String,
    /// When it was taken (RFC 3339).
    pub taken: String,
    /// byok's keys, by name.
    pub keys: Vec<InventoryKey>,
    /// The keys that need rotation, and why.
    pub needs_rotation: Vec<Attention>,
    /// The records compared with the vault, with `record_dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconciliation: Option<Reconciliation>,
}

/// A key byok imported a version of.
#[derive(Clone, Debug, Serialize)]
pub struct InventoryKey {
    /// Its name.
    pub name: String,
    /// Its newest version.
    pub current_version: Option<String>,
    /// Every version, oldest first.
    pub versions: Vec<InventoryVersion>,
}

/// One version.
#[derive(Clone, Debug, Serialize)]
pub struct InventoryVersion {
    /// The version.
    pub version: String,
    /// Whether byok imported it (it carries a well-formed `byok-transfer` tag).
    pub imported_by_byok: bool,
    /// `RSA-3072`, `EC-P-256`, `AES-256` (from byok's tag; `None` for versions byok did not import).
    pub kind: Option<String>,
    /// When it was made (RFC 3339).
    pub created: Option<String>,
    /// Its age in whole days.
    pub age_days: Option<i64>,
    /// Whether it can be used.
    pub enabled: Option<bool>,
    /// Not usable before.
    pub not_before: Option<String>,
    /// Not usable after.
    pub expires: Option<String>,
    /// What byok's tags say of its source and transfer.
    pub provenance: Option<Provenance>,
}

/// A key that needs rotation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attention {
    /// The key.
    pub name: String,
    /// Its current version.
    pub version: String,
    /// `max-age`, `expiring` or `expired`.
    pub reason: String,
    /// In words.
    pub detail: String,
}

impl Inventory {
    /// Takes the inventory of `conn`'s vault at `now`.
    pub async fn take(conn: &Connection, options: &Options, now: Timestamp) -> Result<Self> {
        let keys = conn.list_keys().await.map_err(|e| Error::vault(Step::Preflight, e))?;
        let names: Vec<String> = keys.into_iter().filter(|k| !k.managed).map(|k| k.name).collect();
        let listed: Vec<Result<(String, Vec<KeyItem>)>> = futures_util::stream::iter(names)
            .map(|name| async move {
                let versions = conn.list_versions(&name).await;
                versions
                    .map(|v| (name, v))
                    .map_err(|e| Error::vault(Step::Preflight, e))
            })
            .buffered(CONCURRENT_LISTINGS)
            .collect()
            .await;
        let mut inventory = Self {
            format_version: FORMAT_VERSION,
            vault: conn.vault().url().to_owned(),
            taken: now.to_string(),
            keys: Vec::new(),
            needs_rotation: Vec::new(),
            reconciliation: None,
        };
        for listing in listed {
            let (name, mut versions) = listing?;
            if !versions.iter().any(|v| Provenance::from_tags(&v.tags).is_some()) {
                continue;
            }
            versions.sort_by_key(|v| v.created);
            let key = describe(&name, &versions, now);
            inventory
                .needs_rotation
                .extend(attention(&name, &versions, options, now));
            inventory.keys.push(key);
        }
        inventory.keys.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(dir) = &options.record_dir {
            inventory.reconciliation = Some(reconcile::run(conn, dir, &inventory).await?);
        }
        Ok(inventory)
    }

    /// Whether anything needs attention: a key to rotate, or a record that disagrees with the vault.
    pub fn needs_attention(&self) -> bool {
        !self.needs_rotation.is_empty() || self.reconciliation.as_ref().is_some_and(Reconciliation::disagrees)
    }
}

fn describe(name: &str, versions: &[KeyItem], now: Timestamp) -> InventoryKey {
    let time = |t: Option<Timestamp>| t.map(|t| t.to_string());
    InventoryKey {
        name: name.to_owned(),
        current_version: crate::rotate::newest(versions).and_then(|v| v.version.clone()),
        versions: versions
            .iter()
            .map(|v| {
                let provenance = Provenance::from_tags(&v.tags);
                InventoryVersion {
                    version: v.version.clone().unwrap_or_default(),
                    imported_by_byok: provenance.is_some(),
                    kind: provenance.as_ref().and_then(|p| p.kind.clone()),
                    created: time(v.created),
                    age_days: v.created.map(|c| (now.unix() - c.unix()).div_euclid(86_400)),
                    enabled: v.enabled,
                    not_before: time(v.not_before),
                    expires: time(v.expires),
                    provenance,
                }
            })
            .collect(),
    }
}

/// Why `name`'s current version needs rotation, if it does.
fn attention(name: &str, versions: &[KeyItem], options: &Options, now: Timestamp) -> Vec<Attention> {
    let Some(current) = crate::rotate::newest(versions) else {
        return Vec::new();
    };
    let version = current.version.clone().unwrap_or_default();
    let found = |reason: &str, detail: String| Attention {
        name: name.to_owned(),
        version: version.clone(),
        reason: reason.to_owned(),
        detail,
    };
    let mut out = Vec::new();
    if let (Some(max), Some(created)) = (options.max_age, current.created)
        && now.unix() - created.unix() > max.signed()
    {
        let days = (now.unix() - created.unix()) / 86_400;
        out.push(found(
            "max-age",
            format!("made {created}, {days} days ago (more than {max})"),
        ));
    }
    if let Some(exp) = current.expires {
        if exp <= now {
            out.push(found("expired", format!("expired {exp}")));
        } else if let Some(within) = options.expiring_within
            && exp.unix() - now.unix() <= within.signed()
        {
            out.push(found("expiring", format!("expires {exp} (within {within})")));
        }
    }
    out
}
