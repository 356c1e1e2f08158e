//! `byok-cli attest`: check a Managed HSM key attestation — fetched from the HSM (`--hsm-name … --name …`) or
//! offline (`--file`: what `az keyvault key get-attestation` wrote, or a transfer record).

use std::path::PathBuf;

use byok_transfer::attest::{self, AttestationPolicy, AttestationReport, Binding};

use crate::cmd::vault::{self, OptionalVault};
use crate::exit::{CliError, Exit, Result};
use crate::stdout_error;
use crate::ui::Ui;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("from").required(true).args(["file", "name"])))]
pub(crate) struct Args {
    /// Offline: the key bundle JSON `az keyvault key get-attestation --file` writes, its `attestation`, or a
    /// transfer record (its key's attestation; with --kek its KEK's).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["name", "vault"])]
    file: Option<PathBuf>,
    /// Online: the key in the Managed HSM (with --hsm-name or --vault-url) whose attestation to fetch.
    #[arg(long, value_parser = vault::key_name, requires = "vault")]
    name: Option<String>,
    /// The key version to fetch (default: the latest); the HSM must name this version.
    #[arg(long, requires = "name", value_parser = vault::key_version)]
    version: Option<String>,
    #[command(flatten)]
    vault: OptionalVault,
    /// The key id it must name (https://{hsm}/keys/{name}/{version}); default: the one the file names.
    #[arg(long, value_name = "KID")]
    kid: Option<String>,
    /// The public key it must show (PEM or DER SubjectPublicKeyInfo); default: the file's JWK.
    #[arg(long, value_name = "FILE")]
    public_key: Option<PathBuf>,
    /// Also check it is a KEK: RSA, generated in the HSM, never extractable, sensitive, key_ops ["import"].
    #[arg(long)]
    kek: bool,
    /// Trust this root public key (PEM) instead of Marvell's: a local vault's test root, never by default.
    #[arg(long, value_name = "FILE")]
    attestation_root: Option<PathBuf>,
}

/// How `full-transfer` and `batch` check the Managed HSM's attestations of the KEK and the imported keys.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct TransferArgs {
    /// Do not check the Managed HSM's attestations of the KEK and the imported keys: a weak choice the record names.
    #[arg(long, conflicts_with = "attestation_root")]
    skip_attestation: bool,
    /// Trust this root public key (PEM) instead of Marvell's: a local vault's test root, never by default.
    #[arg(long, value_name = "FILE")]
    attestation_root: Option<PathBuf>,
}

impl TransferArgs {
    pub(crate) fn policy(&self, ui: Ui) -> Result<AttestationPolicy> {
        if self.skip_attestation {
            ui.warn("--skip-attestation: the KEK's provenance is not checked (the record says so)");
            return Ok(AttestationPolicy::Skip);
        }
        Ok(AttestationPolicy::Verify(attest::trust(
            self.attestation_root.as_deref(),
        )?))
    }
}

pub(crate) fn run(ui: Ui, args: &Args) -> Result<()> {
    let roots = attest::trust(args.attestation_root.as_deref())?;
    let public_key = attest::public_key(args.public_key.as_deref())?;
    let binding = Binding {
        kid: args.kid.clone(),
        public_key,
        kek: args.kek,
    };
    let report = match (&args.file, &args.vault.0, &args.name) {
        (Some(file), _, _) => attest::check_file(file, &roots, &binding)?,
        (None, Some(vault), Some(name)) => {
            attest::attestable(&vault.vault()?)?;
            let conn = vault.connect(ui)?;
            let fetched = attest::fetch(&conn, name, args.version.as_deref(), &roots, &binding);
            vault::runtime()?.block_on(fetched)?
        }
        _ => {
            return Err(CliError::msg(
                Exit::Usage,
                "give --file, or --name with --hsm-name or --vault-url",
            ));
        }
    };
    let json = serde_json::to_value(&report).map_err(|e| CliError::msg(Exit::Internal, e))?;
    ui.result(&render(&report), &json).map_err(stdout_error)?;
    let failed = report.failed();
    match failed.is_empty() {
        true => Ok(()),
        false => Err(CliError::msg(
            Exit::Verification,
            format!("attestation check {} failed", failed.join(", ")),
        )),
    }
}

fn render(report: &AttestationReport) -> String {
    let mut h = format!(
        "attestation: {}\n",
        if report.verified { "verified" } else { "NOT VERIFIED" }
    );
    for c in &report.checks {
        h.push_str(&format!("  {:<8} {:<22} {}\n", c.result, c.check, c.detail));
    }
    if let Some(v) = &report.attestation {
        h.push_str(&format!(
            "  root {} (firmware {} signature)\n",
            v.root,
            v.firmware.name()
        ));
        for c in &v.chain {
            h.push_str(&format!(
                "  {:<15} {}\n  {:<15} SHA-256 {}\n",
                c.role, c.subject, "", c.sha256
            ));
        }
        let (p, yes) = (&v.private, |b: Option<bool>| {
            b.map_or("?", |b| if b { "yes" } else { "no" })
        });
        h.push_str(&format!(
            "  key {} (generated inside {}, never extractable {}, sensitive {})\n",
            p.id.as_deref().unwrap_or("?"),
            yes(p.local),
            yes(p.never_extractable),
            yes(p.sensitive)
        ));
    }
    h
}
