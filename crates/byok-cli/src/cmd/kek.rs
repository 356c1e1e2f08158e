//! `byok-cli kek create|download`: steps 1 and 2 of BYOK.

use std::path::PathBuf;

use byok_encoding::RsaSize;
use byok_keyvault::{Connection, Credential, Vault};
use serde_json::json;

use crate::exit::{CliError, Exit, Result};
use crate::files;
use crate::stdout_error;
use crate::ui::Ui;

/// Which vault, and how to reach it. Credentials: `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET` and
/// optionally `AZURE_AUTHORITY_HOST` (client secret; more credential kinds come with the vault issue).
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("vault").required(true).args(["vault_name", "hsm_name", "vault_url"])))]
pub(crate) struct VaultArgs {
    /// A Key Vault by name (https://NAME.vault.azure.net).
    #[arg(long, value_name = "NAME")]
    vault_name: Option<String>,
    /// A Managed HSM by name (https://NAME.managedhsm.azure.net).
    #[arg(long, value_name = "NAME")]
    hsm_name: Option<String>,
    /// Any vault URL, https only (a local Key Vault included).
    #[arg(long, value_name = "URL")]
    vault_url: Option<String>,
    /// An extra CA to trust (a local Key Vault, a TLS-inspecting proxy); verification is never switched off.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Create an RSA-HSM Key Exchange Key whose only operation is import; prints its versioned id.
    Create {
        #[command(flatten)]
        vault: VaultArgs,
        /// The KEK's name.
        #[arg(long)]
        name: String,
        /// Modulus bits: 2048, 3072 or 4096.
        #[arg(long, default_value_t = 4096)]
        size: usize,
    },
    /// Download a KEK's public key (SubjectPublicKeyInfo) for wrapping.
    Download {
        #[command(flatten)]
        vault: VaultArgs,
        /// The KEK's name.
        #[arg(long)]
        name: String,
        /// A specific version (default: the latest).
        #[arg(long)]
        version: Option<String>,
        /// Where to write the public key.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// PEM (`BEGIN PUBLIC KEY`) or DER.
        #[arg(long, value_parser = ["PEM", "DER"], default_value = "PEM")]
        encoding: String,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
}

fn vault_error(e: byok_keyvault::Error) -> CliError {
    let hint = match &e {
        byok_keyvault::Error::Service {
            status: Some(401 | 403),
            ..
        } => Some("check the credential and its permissions on the vault (keys/create, keys/get, keys/import)"),
        byok_keyvault::Error::Service {
            status: None,
            code: Some(c),
            ..
        } if c == "AuthenticationFailed" => Some(
            "the credential was refused: check AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET (and AZURE_AUTHORITY_HOST)",
        ),
        byok_keyvault::Error::Service { status: None, .. } => {
            Some("the vault could not be reached: check the URL, the network, and --ca-file for a private CA")
        }
        _ => None,
    };
    let exit = match e {
        byok_keyvault::Error::Address(..) | byok_keyvault::Error::Credential(_) => Exit::Usage,
        _ => Exit::Vault,
    };
    let err = CliError::new(exit, anyhow::Error::new(e));
    match hint {
        Some(h) => err.hint(h),
        None => err,
    }
}

fn connect(args: &VaultArgs) -> Result<Connection> {
    let vault = match (&args.vault_name, &args.hsm_name, &args.vault_url) {
        (Some(n), _, _) => Vault::from_vault_name(n),
        (_, Some(n), _) => Vault::from_hsm_name(n),
        (_, _, Some(u)) => Vault::from_url(u),
        _ => {
            return Err(CliError::msg(
                Exit::Usage,
                "name the vault with --vault-name, --hsm-name or --vault-url",
            ));
        }
    }
    .map_err(vault_error)?;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (Some(tenant_id), Some(client_id), Some(secret)) = (
        env("AZURE_TENANT_ID"),
        env("AZURE_CLIENT_ID"),
        env("AZURE_CLIENT_SECRET"),
    ) else {
        return Err(CliError::msg(
            Exit::Usage,
            "no credential: AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET must be set",
        )
        .hint(
            "create a service principal with keys/create, keys/get and keys/import on the vault, and export its secret",
        ));
    };
    let credential = Credential::ClientSecret {
        tenant_id,
        client_id,
        secret: zeroize::Zeroizing::new(secret),
        authority_host: env("AZURE_AUTHORITY_HOST"),
    };
    let ca = match &args.ca_file {
        Some(path) => Some(files::read_input(path, "CA file")?),
        None => None,
    };
    Connection::new(&vault, credential, ca.as_deref()).map_err(vault_error)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::msg(Exit::Internal, format!("cannot start the async runtime: {e}")))
}

pub(crate) fn run(ui: Ui, command: &Command) -> Result<()> {
    match command {
        Command::Create { vault, name, size } => {
            let size = RsaSize::from_bits(*size).ok_or_else(|| {
                CliError::msg(Exit::Usage, format!("--size {size}: a KEK is 2048, 3072 or 4096 bits"))
            })?;
            let conn = connect(vault)?;
            ui.verbose(&format!(
                "creating RSA-HSM KEK `{name}` ({size}) in {}",
                vault_label(vault)
            ));
            let kek = runtime()?.block_on(conn.create_kek(name, size)).map_err(vault_error)?;
            let human = format!(
                "created KEK {}\n  {}, key_ops [\"import\"], SHA-256 {}\nnext: byok-cli kek download --name {name} --file {name}.pem …\n",
                kek.kid,
                kek.public.size(),
                kek.public.fingerprint_sha256()
            );
            let json = json!({
                "format_version": 1, "kid": kek.kid.to_string(), "kty": kek.kty, "key_ops": kek.key_ops,
                "size_bits": kek.public.size().bits(), "fingerprint_sha256": kek.public.fingerprint_sha256(),
            });
            ui.result(&human, &json).map_err(stdout_error)
        }
        Command::Download {
            vault,
            name,
            version,
            file,
            encoding,
            force,
        } => {
            files::check_writable(file, *force)?;
            let conn = connect(vault)?;
            let kek = runtime()?
                .block_on(conn.get_kek(name, version.as_deref()))
                .map_err(vault_error)?;
            if !kek.is_import_only_hsm() {
                ui.warn(&format!(
                    "`{name}` is {} with key_ops {:?}, not an import-only RSA-HSM KEK: Key Vault will refuse blobs wrapped to it",
                    kek.kty, kek.key_ops
                ));
            }
            let bytes = if encoding == "DER" {
                kek.public.to_spki_der()
            } else {
                kek.public.to_pem().into_bytes()
            };
            files::write_atomic(file, &bytes, *force)?;
            let human = format!(
                "wrote {} ({encoding}) for {}\n  {}, SHA-256 {}\n",
                file.display(),
                kek.kid,
                kek.public.size(),
                kek.public.fingerprint_sha256()
            );
            let json = json!({
                "format_version": 1, "file": file, "encoding": encoding, "kid": kek.kid.to_string(), "kty": kek.kty,
                "key_ops": kek.key_ops, "import_only_hsm": kek.is_import_only_hsm(),
                "size_bits": kek.public.size().bits(), "fingerprint_sha256": kek.public.fingerprint_sha256(),
            });
            ui.result(&human, &json).map_err(stdout_error)
        }
    }
}

fn vault_label(v: &VaultArgs) -> String {
    v.vault_url
        .clone()
        .or_else(|| v.vault_name.clone())
        .or_else(|| v.hsm_name.clone())
        .unwrap_or_default()
}
