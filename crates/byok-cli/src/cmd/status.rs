//! `byok-cli status`: the inventory of what byok brought into a vault (`byok_transfer::inventory`) as an aligned
//! table or JSON; exit 10 when a key needs rotation or the records disagree with the vault (for cron and CI).

use std::path::PathBuf;

use byok_keyvault::Timestamp;
use byok_transfer::Period;
use byok_transfer::inventory::{Inventory, Options};

use crate::cmd::vault::{VaultArgs, runtime};
use crate::exit::{CliError, Exit, Result};
use crate::stdout_error;
use crate::ui::Ui;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Lists every key with a version byok imported (its byok-transfer tag), each version with its \
                        kind, age, validity and source, from the vault and byok's tags alone. Exit code 10 when a key \
                        needs rotation (--max-age, --expiring-within, or expired) or a record disagrees with the vault."
)]
pub(crate) struct Args {
    #[command(flatten)]
    vault: VaultArgs,
    /// A key whose current version is older than this needs rotation (e.g. 365d).
    #[arg(long, value_name = "PERIOD")]
    max_age: Option<Period>,
    /// A key whose current version expires within this needs rotation (e.g. 30d); an expired one always does.
    #[arg(long, value_name = "PERIOD")]
    expiring_within: Option<Period>,
    /// Reconcile with the transfer records (*.json) in this directory.
    #[arg(long, value_name = "DIR")]
    record_dir: Option<PathBuf>,
}

pub(crate) fn run(ui: Ui, args: &Args) -> Result<()> {
    let options = Options {
        max_age: args.max_age,
        expiring_within: args.expiring_within,
        record_dir: args.record_dir.clone(),
    };
    let conn = args.vault.connect(ui)?;
    let inventory = runtime()?.block_on(Inventory::take(&conn, &options, Timestamp::now()))?;
    let json = serde_json::to_value(&inventory)
        .map_err(|e| CliError::msg(Exit::Internal, format!("cannot encode the inventory: {e}")))?;
    ui.result(&human(&inventory), &json).map_err(stdout_error)?;
    if inventory.needs_attention() {
        let (rotate, records) = (
            inventory.needs_rotation.len(),
            inventory.reconciliation.as_ref().map_or(0, |r| r.discrepancies.len()),
        );
        return Err(CliError::msg(
            Exit::Attention,
            format!("{rotate} key(s) need rotation, {records} record discrepancy(ies)"),
        )
        .hint("byok-cli rotate --name KEY brings in a new version; see docs/cli/status.md"));
    }
    Ok(())
}

fn human(inv: &Inventory) -> String {
    let dash = |s: Option<&str>| s.map_or("-".to_owned(), |s| s.get(..10).unwrap_or(s).to_owned());
    let mut rows = vec![
        [
            "NAME", "VERSION", "KIND", "CREATED", "AGE", "ENABLED", "EXPIRES", "SOURCE",
        ]
        .map(String::from),
    ];
    for key in &inv.keys {
        for v in &key.versions {
            let current = if key.current_version.as_deref() == Some(&v.version) {
                "*"
            } else {
                ""
            };
            let p = v.provenance.as_ref();
            let source = p.map_or("(not byok's)".to_owned(), |p| {
                let token = p.token_serial.as_deref().unwrap_or("?");
                format!("token {token} {}", p.key_id_digest.as_deref().unwrap_or("?"))
            });
            rows.push([
                key.name.clone(),
                format!("{}{current}", v.version),
                v.kind.clone().unwrap_or_else(|| "-".into()),
                dash(v.created.as_deref()),
                v.age_days.map_or("-".into(), |d| format!("{d}d")),
                match v.enabled {
                    Some(false) => "no",
                    _ => "yes",
                }
                .into(),
                dash(v.expires.as_deref()),
                source,
            ]);
        }
    }
    let widths: Vec<usize> = (0..8)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = format!("{} ({} keys; * the current version)\n", inv.vault, inv.keys.len());
    for row in &rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    for a in &inv.needs_rotation {
        out.push_str(&format!("needs rotation: {} ({}): {}\n", a.name, a.reason, a.detail));
    }
    if let Some(r) = &inv.reconciliation {
        out.push_str(&format!(
            "records: {} of this vault in {} ({} of others)\n",
            r.records, r.record_dir, r.other_vaults
        ));
        for d in &r.discrepancies {
            let what = d.record.as_deref().or(d.kid.as_deref()).unwrap_or("");
            out.push_str(&format!("  {}: {what}: {}\n", d.kind, d.detail));
        }
    }
    out
}
