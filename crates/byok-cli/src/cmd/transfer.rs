//! `byok-cli full-transfer`: the four steps of BYOK in one go — KEK, download, wrap in the HSM, import — and then
//! the proof that the vault holds the key the HSM holds. Optionally a transfer record for the key-ceremony file.

use std::path::{Path, PathBuf};

use byok_keyvault::Connection;
use byok_pkcs11::Pkcs11Uri;
use byok_pkcs11::TokenSession;
use byok_transfer::fan_out::{Destination, FanOutRecord};
use byok_transfer::{Event, KekPolicy, Observer, Plan, STEPS, Transferred, Verification, files};

use crate::cmd::attest;
use crate::cmd::hsm::{self, HsmArgs};
use crate::cmd::import::KeyPropertiesArgs;
use crate::cmd::vault::{self, VaultArgs};
use crate::cmd::wrap::WrapArgs;
use crate::exit::{CliError, Exit, Result};
use crate::stdout_error;
use crate::ui::Ui;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Steps: find the key in the HSM; reuse or create the KEK; download its public key; wrap in the \
                        HSM (after the wrap self-test); import; verify that the vault holds the same key (RSA/EC: the \
                        public half; AES: one block encrypted on both sides). Exit code 8 when verification fails."
)]
pub(crate) struct Args {
    #[command(flatten)]
    vault: VaultArgs,
    #[command(flatten)]
    kek: KekArgs,
    /// Create a new KEK version even if one exists.
    #[arg(long)]
    new_kek: bool,
    /// The key's name in the vault (a new version is added if it exists).
    #[arg(long, value_parser = vault::key_name)]
    name: String,
    /// The key in the HSM, as an RFC 7512 URI: pkcs11:token=LABEL;object=LABEL[;id=%01]
    #[arg(long, value_name = "URI", value_parser = hsm::parse_uri)]
    key: Pkcs11Uri,
    #[command(flatten)]
    wrap: WrapArgs,
    #[command(flatten)]
    properties: KeyPropertiesArgs,
    /// Also keep the .byok blob in this file.
    #[arg(long, value_name = "FILE")]
    keep_byok: Option<PathBuf>,
    /// Write the transfer record (JSON, no secrets) to this file; schema in docs/cli/full-transfer.md.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Replace --keep-byok and --record files that exist.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    attestation: attest::TransferArgs,
    #[command(flatten)]
    hsm: HsmArgs,
}

/// The Key Exchange Key a transfer uses. Shared by `full-transfer` and `batch`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct KekArgs {
    /// The Key Exchange Key's name: reused if it is an import-only RSA-HSM key, created if it does not exist.
    #[arg(long, value_name = "NAME", value_parser = vault::key_name)]
    pub(crate) kek_name: String,
    /// The KEK's modulus bits when it is created: 2048, 3072 or 4096.
    #[arg(long, value_name = "BITS", default_value_t = 4096)]
    pub(crate) kek_size: usize,
}

impl KekArgs {
    /// Reuse the KEK or create it (`new_version`: create a new version in any case).
    pub(crate) fn policy(&self, new_version: bool) -> Result<KekPolicy> {
        Ok(KekPolicy {
            name: self.kek_name.clone(),
            size: self.size()?,
            new_version,
        })
    }

    fn size(&self) -> Result<byok_encoding::RsaSize> {
        kek_size("--kek-size", self.kek_size)
    }
}

/// A KEK's size in bits as `flag` gave it: 2048, 3072 or 4096.
pub(crate) fn kek_size(flag: &str, bits: usize) -> Result<byok_encoding::RsaSize> {
    byok_encoding::RsaSize::from_bits(bits)
        .ok_or_else(|| CliError::msg(Exit::Usage, format!("{flag} {bits}: a KEK is 2048, 3072 or 4096 bits")))
}

/// Renders a transfer's progress: `[n/6]` lines for one transfer, only `-v` detail for a batch's keys.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Progress {
    pub(crate) ui: Ui,
    pub(crate) steps: bool,
}

impl Observer for Progress {
    fn event(&self, event: &Event<'_>) {
        let ui = self.ui;
        match event {
            Event::Step { number, text } if self.steps => ui.note(&format!("[{number}/{STEPS}] {text}")),
            Event::Step { text, .. } | Event::Detail { text } => ui.verbose(text),
            Event::KekReused { kek } => ui.note(&format!("reusing KEK {} ({})", kek.kid, kek.public.size())),
            Event::KekCreated { kek } => ui.note(&format!("created KEK {} ({})", kek.kid, kek.public.size())),
            Event::NonconformantWrap { path, why } => {
                ui.warn(&format!("WRAPPED WITH A NON-CONFORMANT PATH ({path}): {why}"));
            }
            Event::BlobKept { file } => ui.verbose(&format!("kept the blob in {}", file.display())),
            _ => ui.verbose(&format!("{event:?}")),
        }
    }
}

/// This program, as records and blobs name it.
pub(crate) fn tool() -> byok_transfer::Tool {
    byok_transfer::Tool {
        name: "byok-cli".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    }
}

pub(crate) fn run(ui: Ui, args: &Args) -> Result<()> {
    let outputs: Vec<(&str, &Path)> = [("--keep-byok", &args.keep_byok), ("--record", &args.record)]
        .into_iter()
        .filter_map(|(flag, f)| f.as_deref().map(|f| (flag, f)))
        .collect();
    files::check_distinct(&outputs)?;
    for (_, file) in &outputs {
        files::check_writable(file, args.force)?;
    }
    let plan = Plan {
        key: args.key.clone(),
        name: args.name.clone(),
        kek: args.kek.policy(args.new_kek)?,
        properties: args.properties.properties()?,
        wrap: args.wrap.options(),
        keep_blob: args.keep_byok.clone(),
        replace_files: args.force,
        tool: tool(),
        attestation: args.attestation.policy(ui)?,
    };
    let conns = args.vault.connect_all(ui, &[])?;
    args.hsm.with_session(&args.key, |session| {
        let [conn] = conns.as_slice() else {
            return fan_out(ui, args, &plan, session, &conns);
        };
        let done = plan.execute(session, conn, &Progress { ui, steps: true })?;
        // The key is in the vault now: whatever happens to the record, say what was imported.
        let written = args.record.as_deref().map(|file| done.record.write(file, args.force)).transpose();
        finish(ui, &done, args.record.as_deref(), "")?;
        written.map(|_| ()).map_err(|e| {
            let kid = done.record.kid().unwrap_or_default();
            CliError::from(e)
                .context(format!("{kid} was imported and verified as shown above, but its record was not written"))
                .hint("keep the output above as the record (--output json prints the record whole); do not run the transfer again, it would add a second version")
        })
    })
}

/// Several destinations: each in turn, one record of them all; exit 8 on a mismatch, 9 when any failed.
fn fan_out(ui: Ui, args: &Args, plan: &Plan, session: &mut TokenSession<'_>, conns: &[Connection]) -> Result<()> {
    let mut record = FanOutRecord::new(&args.name);
    for (vault, outcome) in plan.execute_fan_out(session, conns, &Progress { ui, steps: true })? {
        record.set(Destination::of(&vault, &outcome));
    }
    let written = args
        .record
        .as_deref()
        .map(|file| record.write(file, args.force))
        .transpose();
    let human: String = record
        .destinations
        .iter()
        .map(|d| format!("{}  {}  {}\n", d.status, d.vault, d.detail))
        .collect();
    let json = serde_json::to_value(&record)
        .map_err(|e| CliError::msg(Exit::Internal, format!("cannot encode the record: {e}")))?;
    ui.result(&human, &json).map_err(stdout_error)?;
    written?;
    let (failed, mismatched, of) = (record.count("failed"), record.count("mismatch"), conns.len());
    if mismatched > 0 {
        let message =
            format!("{mismatched} of {of} destinations hold a different key than the HSM: do not use those versions");
        return Err(CliError::msg(Exit::Verification, message));
    }
    if failed > 0 {
        let vaults: Vec<&str> = record
            .destinations
            .iter()
            .filter(|d| d.status == "failed")
            .map(|d| d.vault.as_str())
            .collect();
        return Err(CliError::msg(Exit::Partial, format!("{failed} of {of} destinations failed: {}", vaults.join(", ")))
            .hint("the others hold the key now: run again naming only the failed vaults, or use batch --resume, which completes only what is missing"));
    }
    Ok(())
}

/// The summary of a transfer (and `extra` lines), or the record as JSON; exit 8 on a mismatch.
pub(crate) fn finish(ui: Ui, done: &Transferred, record_file: Option<&Path>, extra: &str) -> Result<()> {
    let Transferred { record, verification } = done;
    let kid = record.kid().unwrap_or_default();
    let (kty, kind) = record
        .key
        .as_ref()
        .map_or(("", ""), |k| (k.kty.as_str(), k.kind.as_str()));
    let mut human = format!(
        "transferred {kid}\n  key         {kty} {kind}\n  KEK         {}\n  wrap        {}\n  blob        SHA-256 {}\n  verification {verification}\n",
        record.kek.kid,
        record.wrap.path,
        record.blob.sha256.as_deref().unwrap_or_default(),
    );
    if let Some(a) = &record.attestation {
        human.push_str(&format!("  attestation {}: {}\n", a.status, a.detail));
    }
    human.push_str(extra);
    if let Some(file) = record_file {
        human.push_str(&format!("  record      {}\n", file.display()));
    }
    if let Verification::NotVerifiable { reason } = verification {
        ui.warn(&format!("the import could not be verified: {reason}"));
    }
    let json = serde_json::to_value(record)
        .map_err(|e| CliError::msg(Exit::Internal, format!("cannot encode the record: {e}")))?;
    ui.result(&human, &json).map_err(stdout_error)?;
    if let Verification::Mismatch { detail, method } = verification {
        let what = match *method {
            "key attestation" => "the Managed HSM cannot prove this version holds the HSM's key",
            _ => "the vault holds a different key than the HSM",
        };
        return Err(
            CliError::msg(Exit::Verification, format!("verification failed for {kid}: {detail}")).hint(format!(
                "{what}: do not use this key version; disable it (az keyvault key set-attributes --enabled false) \
                 and investigate before trying again"
            )),
        );
    }
    Ok(())
}
