//! `byok-cli rotate`: a new HSM key into an existing vault key as its next version, inheriting the current
//! version's operations, tags and lifetime; then the older versions retired if asked. The work is
//! `byok_transfer::rotate`; here: flags and rendering.

use std::path::PathBuf;

use byok_encoding::KeyKind;
use byok_pkcs11::Pkcs11Uri;
use byok_transfer::rotate::{self, Retire, Rotation, Source};
use byok_transfer::{Period, Plan, files};

use crate::cmd::hsm::{self, HsmArgs};
use crate::cmd::import::KeyPropertiesArgs;
use crate::cmd::transfer::{self, KekArgs, Progress};
use crate::cmd::vault::{self, VaultArgs};
use crate::cmd::{attest, wrap::WrapArgs};
use crate::exit::{CliError, Exit, Result};
use crate::ui::Ui;

#[derive(Debug, clap::Args)]
#[command(
    group(clap::ArgGroup::new("source").required(true).args(["key", "generate"])),
    after_help = "The new version inherits the current version's operations, tags (not byok's) and lifetime (it \
                  lives as long from now); flags override them. Refused: a key byok never imported, key material \
                  already in any version, another key type. Exit code 8 when verification fails (nothing is \
                  retired then)."
)]
pub(crate) struct Args {
    #[command(flatten)]
    vault: VaultArgs,
    #[command(flatten)]
    kek: KekArgs,
    /// The vault key to rotate (byok imported it).
    #[arg(long, value_parser = vault::key_name)]
    name: String,
    /// The new key, already in the HSM: pkcs11:token=LABEL;object=LABEL[;id=%01]
    #[arg(long, value_name = "URI", value_parser = hsm::parse_uri)]
    key: Option<Pkcs11Uri>,
    /// Generate the new key in --token: rsa:2048|3072|4096, ec:P-256|P-384|P-521|P-256K, oct:128|192|256.
    #[arg(long, value_name = "KIND", requires = "token", value_parser = rotate::kind_spec)]
    generate: Option<KeyKind>,
    /// The token to generate in: pkcs11:token=LABEL
    #[arg(long, value_name = "URI", value_parser = hsm::parse_uri, requires = "generate")]
    token: Option<Pkcs11Uri>,
    /// Inherit from this version instead of the current one.
    #[arg(long, value_name = "VERSION", value_parser = vault::key_version)]
    from_version: Option<String>,
    /// Once the new version is verified, older enabled versions expire this long from now (e.g. 30d; an earlier
    /// expiry is kept).
    #[arg(long, value_name = "PERIOD", conflicts_with = "disable_previous")]
    retire_previous: Option<Period>,
    /// Once the new version is verified, disable the older enabled versions.
    #[arg(long)]
    disable_previous: bool,
    #[command(flatten)]
    properties: KeyPropertiesArgs,
    #[command(flatten)]
    wrap: WrapArgs,
    /// Write the transfer record (JSON, with a `rotation` part) to this file.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Replace the --record file if it exists.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    attestation: attest::TransferArgs,
    #[command(flatten)]
    hsm: HsmArgs,
}

pub(crate) fn run(ui: Ui, args: &Args) -> Result<()> {
    if let Some(file) = &args.record {
        files::check_writable(file, args.force)?;
    }
    let (source, session_uri) = match (&args.key, args.generate, &args.token) {
        (Some(uri), ..) => (Source::Existing(Box::new(uri.clone())), uri),
        (None, Some(kind), Some(token)) => (Source::Generate(kind), token),
        _ => {
            return Err(CliError::msg(
                Exit::Usage,
                "give --key URI, or --generate KIND with --token URI",
            ));
        }
    };
    let retire = match (args.retire_previous, args.disable_previous) {
        (Some(after), _) => Retire::ExpireAfter(after),
        (None, true) => Retire::Disable,
        (None, false) => Retire::Keep,
    };
    let mut plan = Plan::new(session_uri.clone(), args.name.clone(), args.kek.policy(false)?);
    (plan.wrap, plan.tool, plan.attestation) = (args.wrap.options(), transfer::tool(), args.attestation.policy(ui)?);
    let rotation = Rotation {
        plan,
        source,
        from_version: args.from_version.clone(),
        overrides: args.properties.overrides()?,
        retire,
    };
    let conn = args.vault.connect(ui)?;
    args.hsm.with_session(session_uri, |session| {
        let rotated = rotation.execute(session, &conn, &Progress { ui, steps: true })?;
        let done = &rotated.transferred;
        let written = args
            .record
            .as_deref()
            .map(|f| done.record.write(f, args.force))
            .transpose();
        let extra = render(&rotated);
        transfer::finish(ui, done, args.record.as_deref(), &extra)?;
        if done
            .record
            .rotation
            .as_ref()
            .is_some_and(rotate::RotationRecord::failed)
        {
            return Err(CliError::msg(
                Exit::Vault,
                "the new version is in, but retiring an older version failed",
            )
            .hint(
                "see `previous` above (--output json: rotation.previous); retry with az keyvault key set-attributes",
            ));
        }
        written.map(|_| ()).map_err(|e| {
            CliError::from(e).context("the rotation is done as shown above, but its record was not written")
        })
    })
}

/// The rotation's lines for the human summary.
fn render(rotated: &rotate::Rotated) -> String {
    let mut out = format!("  source      {}\n", rotated.key_uri);
    if let Some(r) = &rotated.transferred.record.rotation {
        out.push_str(&format!("  inherited   from version {}\n", r.from_version));
        for c in &r.previous {
            let exp = c.expires_after.as_deref().unwrap_or("no expiry");
            let why = c.detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default();
            out.push_str(&format!("  previous    {}: {} — {exp}{why}\n", c.version, c.action));
        }
    }
    out
}
