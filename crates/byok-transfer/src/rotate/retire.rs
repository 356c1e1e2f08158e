//! Retiring the versions a rotation replaced, once the new one is verified: each enabled older version expires
//! after a grace period (never later than it already would) or is disabled at once. Each change is recorded; one
//! that fails is recorded as failed and the others still go ahead.

use byok_keyvault::{Connection, KeyItem, KeyUpdate, Timestamp};

use super::{Retire, VersionChange};
use crate::observe::{Event, Observer};

/// Applies `retire` to the enabled versions among `older`; with `verified` false, changes nothing and says so.
pub(super) async fn apply(
    conn: &Connection,
    name: &str,
    older: &[&KeyItem],
    retire: Retire,
    verified: bool,
    observer: &dyn Observer,
) -> Vec<VersionChange> {
    let now = Timestamp::now();
    let mut changes = Vec::new();
    for item in older.iter().filter(|v| v.enabled != Some(false)) {
        let Some(version) = item.version.clone() else { continue };
        let mut change = VersionChange {
            version: version.clone(),
            action: String::new(),
            expires_before: item.expires.map(|t| t.to_string()),
            expires_after: item.expires.map(|t| t.to_string()),
            detail: None,
        };
        let update = match retire {
            Retire::Keep => continue,
            _ if !verified => {
                change.action = "not retired".into();
                change.detail = Some("the new version was not verified".into());
                changes.push(change);
                continue;
            }
            Retire::Disable => KeyUpdate {
                enabled: Some(false),
                expires: None,
            },
            Retire::ExpireAfter(after) => {
                let at = Timestamp::from_unix(now.unix() + after.signed());
                if item.expires.is_some_and(|e| e <= at) {
                    change.action = "kept".into();
                    change.detail = Some("it expires earlier already".into());
                    changes.push(change);
                    continue;
                }
                KeyUpdate {
                    enabled: None,
                    expires: Some(at),
                }
            }
        };
        match conn.update_key(name, &version, &update).await {
            Ok(key) => {
                change.action = if update.enabled == Some(false) {
                    "disabled"
                } else {
                    "expires"
                }
                .into();
                change.expires_after = key.expires.map(|t| t.to_string());
                observer.event(&Event::Detail {
                    text: &format!("{name}/{version}: {}", change.action),
                });
            }
            Err(e) => {
                change.action = "failed".into();
                change.detail = Some(e.to_string());
            }
        }
        changes.push(change);
    }
    changes
}
