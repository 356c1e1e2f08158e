//! Reaching the vault: which one, how to authenticate, and what its errors mean. Shared by `kek`, `import` and
//! `full-transfer`.

use std::path::PathBuf;
use std::time::Duration;

use byok_keyvault::{AuthKind, Connection, Credential, Timeouts, Vault};

use crate::exit::{CliError, Exit, Result};
use crate::ui::Ui;
use byok_transfer::files;

/// Which vault, and how to reach it.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("vault").required(true).args(["vault_name", "hsm_name", "vault_url"])))]
pub(crate) struct VaultArgs {
    /// A Key Vault by name (https://NAME.vault.azure.net). full-transfer and batch take several destinations:
    /// repeat it, --hsm-name and --vault-url (in that order of flags: names, HSM names, URLs).
    #[arg(long, value_name = "NAME", value_parser = vault_name)]
    vault_name: Vec<String>,
    /// A Managed HSM by name (https://NAME.managedhsm.azure.net).
    #[arg(long, value_name = "NAME", value_parser = vault_name)]
    hsm_name: Vec<String>,
    /// Any vault URL, https only (a local Key Vault included).
    #[arg(long, value_name = "URL")]
    vault_url: Vec<String>,
    /// An extra CA to trust (a local Key Vault, a TLS-inspecting proxy); verification is never switched off.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// How to authenticate: auto (client secret, workload identity, managed identity, Azure CLI — the first whose
    /// settings are present), cli, client-secret, managed-identity, workload-identity. Settings come from
    /// AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_FEDERATED_TOKEN_FILE, AZURE_AUTHORITY_HOST.
    #[arg(long, value_name = "KIND", default_value = "auto", value_parser = AuthKind::NAMES)]
    auth: String,
    /// Seconds to open a connection to the vault or the token endpoint (TCP and TLS).
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    connect_timeout: u64,
    /// Seconds of silence while waiting for an answer before giving up on it (retried like other transient
    /// failures; an import is looked up before it is sent again).
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    read_timeout: u64,
    /// Seconds for a whole request and its answer, however slowly the bytes come.
    #[arg(long, value_name = "SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600))]
    request_timeout: u64,
}

/// [`VaultArgs`] for a command that also works without a vault (`attest --file`): the same flags, none required;
/// `None` when no vault is named.
#[derive(Debug, Clone)]
pub(crate) struct OptionalVault(pub(crate) Option<VaultArgs>);

impl clap::Args for OptionalVault {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        VaultArgs::augment_args(cmd).mut_group("vault", |g| g.required(false))
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for OptionalVault {
    fn from_arg_matches(m: &clap::ArgMatches) -> std::result::Result<Self, clap::Error> {
        let named = m.contains_id("vault");
        Ok(Self(named.then(|| VaultArgs::from_arg_matches(m)).transpose()?))
    }
    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> std::result::Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

/// [`VaultArgs`] for `batch`, whose manifest may name the destinations instead: the same flags, none required.
#[derive(Debug, Clone)]
pub(crate) struct AnyVaults(pub(crate) VaultArgs);

impl clap::Args for AnyVaults {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        VaultArgs::augment_args(cmd).mut_group("vault", |g| g.required(false))
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for AnyVaults {
    fn from_arg_matches(m: &clap::ArgMatches) -> std::result::Result<Self, clap::Error> {
        VaultArgs::from_arg_matches(m).map(Self)
    }
    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> std::result::Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl VaultArgs {
    /// The one vault of a command that takes one.
    pub(crate) fn vault(&self) -> Result<Vault> {
        let mut vaults = self.vaults()?;
        match vaults.len() {
            1 => Ok(vaults.remove(0)),
            0 => Err(CliError::msg(
                Exit::Usage,
                "name the vault with --vault-name, --hsm-name or --vault-url",
            )),
            n => Err(CliError::msg(
                Exit::Usage,
                format!("this command takes one vault, not {n}: only full-transfer and batch send a key to several"),
            )),
        }
    }

    /// Every vault named: the --vault-name ones, then --hsm-name, then --vault-url.
    pub(crate) fn vaults(&self) -> Result<Vec<Vault>> {
        let names = self.vault_name.iter().map(|n| Vault::from_vault_name(n));
        let hsms = self.hsm_name.iter().map(|n| Vault::from_hsm_name(n));
        let urls = self.vault_url.iter().map(|u| Vault::from_url(u));
        names.chain(hsms).chain(urls).map(|v| v.map_err(error)).collect()
    }

    /// A connection to the one vault named.
    pub(crate) fn connect(&self, ui: Ui) -> Result<Connection> {
        self.connect_to(ui, &self.vault()?)
    }

    /// A connection to each vault named, in [`Self::vaults`]' order, or else to each of `or` (a manifest's).
    pub(crate) fn connect_all(&self, ui: Ui, or: &[String]) -> Result<Vec<Connection>> {
        let mut vaults = self.vaults()?;
        if !vaults.is_empty() && !or.is_empty() {
            return Err(CliError::msg(
                Exit::Usage,
                "name the destinations either in the manifest or with --vault-name/--hsm-name/--vault-url, not both",
            ));
        }
        if vaults.is_empty() {
            vaults = or
                .iter()
                .map(|u| Vault::from_url(u).map_err(error))
                .collect::<Result<_>>()?;
        }
        if vaults.is_empty() {
            return Err(CliError::msg(
                Exit::Usage,
                "name the vault with --vault-name, --hsm-name or --vault-url",
            ));
        }
        // The same vault twice would get the key twice: a usage mistake, refused before anything is reached.
        byok_transfer::fan_out::check_distinct(vaults.iter().map(Vault::url))
            .map_err(|e| CliError::msg(Exit::Usage, e.to_string()))?;
        vaults.iter().map(|v| self.connect_to(ui, v)).collect()
    }

    /// A connection whose retries are reported on stderr.
    fn connect_to(&self, ui: Ui, vault: &Vault) -> Result<Connection> {
        let kind: AuthKind = self.auth.parse().map_err(|e: String| CliError::msg(Exit::Usage, e))?;
        let credential = Credential::from_env(kind).map_err(error)?;
        ui.verbose(&format!("authenticating with {}", credential.kind_name()));
        let ca = match &self.ca_file {
            Some(path) => Some(files::read_input(path, "CA file")?),
            None => None,
        };
        let timeouts = Timeouts {
            connect: Duration::from_secs(self.connect_timeout),
            read: Duration::from_secs(self.read_timeout),
            request: Duration::from_secs(self.request_timeout),
        };
        Ok(Connection::with_timeouts(vault, credential, ca.as_deref(), timeouts)
            .map_err(|e| match (e, &self.ca_file) {
                (byok_keyvault::Error::CaFile(reason), Some(path)) => CliError::msg(
                    Exit::InvalidInput,
                    format!("the CA file {} is unusable: {reason}", path.display()),
                )
                .hint("give the CA certificate (PEM, `BEGIN CERTIFICATE`) that signed the vault's TLS certificate"),
                (e, _) => error(e),
            })?
            .on_retry(move |line| ui.note(line)))
    }
}

/// A clap value parser for vault and Managed HSM names (Azure's rule), refused before anything happens.
fn vault_name(s: &str) -> std::result::Result<String, String> {
    byok_keyvault::check_vault_name(s).map_err(|e| e.to_string())?;
    Ok(s.to_owned())
}

/// A clap value parser for key names (`--name`, `--kek-name`): refused before anything happens, not by the vault.
pub(crate) fn key_name(s: &str) -> std::result::Result<String, String> {
    byok_keyvault::check_key_name(s).map_err(|e| e.to_string())?;
    Ok(s.to_owned())
}

/// A clap value parser for key versions (`--version`): 32 hex digits as Azure makes them, or other letters and
/// digits — never a path.
pub(crate) fn key_version(s: &str) -> std::result::Result<String, String> {
    match (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()) {
        true => Ok(s.to_owned()),
        false => Err("a key version is letters and digits, e.g. 7071fabc480c0ca186f786a9b78c9456".into()),
    }
}

/// A vault error with its exit code and a hint.
pub(crate) fn error(e: byok_keyvault::Error) -> CliError {
    let (exit, hint) = classify(&e);
    CliError {
        exit,
        error: anyhow::Error::new(e),
        hint,
    }
}

/// A vault error's exit code, and how to fix it when byok knows.
pub(crate) fn classify(e: &byok_keyvault::Error) -> (Exit, Option<String>) {
    use byok_keyvault::{Cause, Error as E};
    let hint = match (e, e.cause()) {
        (_, Some(Cause::Status { status: 401 | 403, .. })) => Some(
            "check the credential and its permissions on the vault: keys/get, keys/create and keys/import (Key Vault \
             access policy or RBAC role 'Key Vault Crypto Officer'; Managed HSM local RBAC 'Managed HSM Crypto User')",
        ),
        (_, Some(Cause::Authentication)) => Some(
            "the credential was refused or could not get a token: check AZURE_TENANT_ID, AZURE_CLIENT_ID and the \
             secret or token file (and AZURE_AUTHORITY_HOST), or choose another --auth",
        ),
        (e, _) if e.is_not_found() => {
            Some("check the key name and the vault (byok never creates keys you did not ask for)")
        }
        (_, Some(Cause::Ambiguous)) => Some("nothing was sent twice; look at the key in the vault before trying again"),
        (_, Some(Cause::AudienceRefused)) => Some(
            "byok fetches tokens for Key Vault and Managed HSM only; a URL that asks for another resource is not a \
             genuine vault: use --vault-name or --hsm-name, or check where the URL came from",
        ),
        (_, Some(Cause::Redirect)) => {
            Some("use the vault's own URL (https://NAME.vault.azure.net or https://NAME.managedhsm.azure.net)")
        }
        (_, Some(Cause::NotKeyVault | Cause::AnswerTooLarge)) => Some(
            "the answer is not a Key Vault answer: a captive portal, a proxy's error page or a URL that is not a \
             vault; nothing was retried",
        ),
        (_, Some(Cause::Unreachable)) => {
            Some("the vault could not be reached: check the URL, the network, and --ca-file for a private CA")
        }
        (E::NoCredential, _) => Some("pass --auth to choose a credential kind explicitly"),
        _ => None,
    };
    let exit = match e {
        E::Address(..) | E::Credential(_) | E::NoCredential | E::Request(_) => Exit::Usage,
        _ => Exit::Vault,
    };
    (exit, hint.map(str::to_owned))
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::msg(Exit::Internal, format!("cannot start the async runtime: {e}")))
}
