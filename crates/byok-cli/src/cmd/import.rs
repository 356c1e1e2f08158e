//! `byok-cli import`: step 4 of BYOK — send a `.byok` file to the vault, after checking everything that can be
//! checked before sending.

use std::collections::BTreeMap;
use std::path::PathBuf;

use byok_encoding::{Curve, Kty};
use byok_keyvault::{KeyOp, Timestamp};
use clap::builder::{PossibleValuesParser, TypedValueParser as _};
use serde_json::json;

use crate::cmd::vault::{self, VaultArgs, runtime};
use crate::exit::{CliError, Exit, Result};
use crate::stdout_error;
use crate::ui::Ui;
use byok_transfer::{BlobImported, KeyProperties, files};

/// What the new key version gets: operations, tags and attributes. Shared by `import` and `full-transfer`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct KeyPropertiesArgs {
    /// Operations the key allows (default: all its type supports; EC: sign verify).
    #[arg(long, value_name = "OP", num_args = 1.., value_parser = PossibleValuesParser::new(KeyOp::ALL.map(KeyOp::name)).try_map(|s| s.parse::<KeyOp>()))]
    ops: Vec<KeyOp>,
    /// Tags, as NAME=VALUE (repeatable, or several after one --tags).
    #[arg(long, value_name = "NAME=VALUE", num_args = 1.., value_parser = parse_tag)]
    tags: Vec<(String, String)>,
    /// Import the key disabled.
    #[arg(long)]
    disabled: bool,
    /// Not usable before this time (RFC 3339, e.g. 2027-01-01T00:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    not_before: Option<Timestamp>,
    /// Not usable after this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    expires: Option<Timestamp>,
    /// Allow the key to be released (exported) under --policy (Managed HSM, Premium vaults).
    #[arg(long, requires = "policy")]
    exportable: bool,
    /// The release policy (JSON) for an exportable key.
    #[arg(long, value_name = "FILE", requires = "exportable")]
    policy: Option<PathBuf>,
}

fn parse_tag(s: &str) -> std::result::Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("`{s}` is not NAME=VALUE"))?;
    if k.is_empty() {
        return Err(format!("`{s}` has an empty tag name"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

fn parse_time(s: &str) -> std::result::Result<Timestamp, String> {
    Timestamp::parse(s).map_err(|e| e.to_string())
}

impl KeyPropertiesArgs {
    /// The properties the flags give (the release policy read from its file).
    pub(crate) fn properties(&self) -> Result<KeyProperties> {
        let mut tags = BTreeMap::new();
        for (k, v) in &self.tags {
            if tags.insert(k.clone(), v.clone()).is_some() {
                return Err(CliError::msg(Exit::Usage, format!("the tag `{k}` is given twice")));
            }
        }
        let release_policy = match &self.policy {
            Some(p) => Some(files::read_input(p, "release policy file")?),
            None => None,
        };
        Ok(KeyProperties {
            ops: (!self.ops.is_empty()).then(|| self.ops.clone()),
            tags,
            enabled: !self.disabled,
            not_before: self.not_before,
            expires: self.expires,
            exportable: self.exportable,
            release_policy,
        })
    }
}

impl KeyPropertiesArgs {
    /// What `rotate` changes from the inherited properties: only what a flag gives.
    pub(crate) fn overrides(&self) -> Result<byok_transfer::rotate::Overrides> {
        let p = self.properties()?;
        Ok(byok_transfer::rotate::Overrides {
            ops: p.ops,
            tags: (!p.tags.is_empty()).then_some(p.tags),
            disabled: self.disabled,
            not_before: p.not_before,
            expires: p.expires,
            release_policy: p.release_policy,
        })
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    vault: VaultArgs,
    /// The key's name in the vault (a new version is added if it exists).
    #[arg(long, value_parser = vault::key_name)]
    name: String,
    /// The .byok file to import.
    #[arg(long, value_name = "FILE")]
    byok_file: PathBuf,
    /// The key type inside the blob: RSA, EC or oct (sent as RSA-HSM, EC-HSM, oct-HSM).
    #[arg(long, value_parser = str::parse::<Kty>)]
    kty: Kty,
    /// The curve, for EC keys only: P-256, P-384, P-521, P-256K.
    #[arg(long, value_parser = str::parse::<Curve>)]
    curve: Option<Curve>,
    #[command(flatten)]
    properties: KeyPropertiesArgs,
}

/// The vault's refusal of an import: a 400 is about the blob.
pub(crate) fn classify(e: &byok_keyvault::Error) -> (Exit, Option<String>) {
    let (exit, hint) = vault::classify(e);
    if e.status() == Some(400) {
        let hint = "the vault refused the blob: it was wrapped to a different KEK than it names, or --kty/--curve \
                    contradict the key inside (byok-cli inspect shows what the blob names; byok-cli hsm verify opens \
                    it in an HSM)";
        return (exit, Some(hint.to_owned()));
    }
    (exit, hint)
}

pub(crate) fn run(ui: Ui, args: &Args) -> Result<()> {
    let (blob_bytes, blob) = files::read_blob(&args.byok_file)?;
    let conn = args.vault.connect(ui)?;
    let mut request = args
        .properties
        .properties()?
        .request(conn.vault(), &args.name, args.kty, args.curve)?;
    request.blob_bytes = blob_bytes;
    ui.verbose(&format!("checking the KEK {} and importing", blob.kid()));
    let BlobImported { kek, imported } = runtime()?.block_on(byok_transfer::import_blob(&conn, &blob, &request))?;
    let key = &imported.key;
    let fingerprint = key.public.as_ref().map(|p| p.fingerprint_sha256());
    let mut human = format!(
        "imported {}\n  {} key_ops {:?}{}\n  transfer  {}\n",
        key.kid,
        key.kty,
        KeyOp::names(&key.key_ops),
        if key.enabled == Some(false) { " (disabled)" } else { "" },
        request.transfer_id
    );
    if let Some(fp) = &fingerprint {
        human.push_str(&format!("  public key SHA-256 {fp}\n"));
    }
    let json = json!({
        "format_version": 1,
        "kid": key.kid.to_string(),
        "kty": key.kty.name(),
        "key_ops": KeyOp::names(&key.key_ops),
        "enabled": key.enabled,
        "public_key_sha256": fingerprint,
        "transfer_id": request.transfer_id,
        "kek_kid": kek.kid.to_string(),
        "ambiguous_sends": imported.ambiguous,
    });
    ui.result(&human, &json).map_err(stdout_error)
}
