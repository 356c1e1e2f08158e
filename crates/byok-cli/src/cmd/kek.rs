//! `byok-cli kek create|download`: steps 1 and 2 of BYOK.

use std::path::PathBuf;

use serde_json::json;

use crate::cmd::vault::{self, VaultArgs, runtime};
use crate::exit::Result;
use crate::stdout_error;
use crate::ui::Ui;
use byok_keyvault::KeyOp;
use byok_transfer::files;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Create an RSA-HSM Key Exchange Key whose only operation is import; prints its versioned id.
    Create {
        #[command(flatten)]
        vault: VaultArgs,
        /// The KEK's name.
        #[arg(long, value_parser = vault::key_name)]
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
        #[arg(long, value_parser = vault::key_name)]
        name: String,
        /// A specific version (default: the latest).
        #[arg(long, value_parser = vault::key_version)]
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

pub(crate) fn run(ui: Ui, command: &Command) -> Result<()> {
    match command {
        Command::Create { vault, name, size } => {
            let size = crate::cmd::transfer::kek_size("--size", *size)?;
            let conn = vault.connect(ui)?;
            ui.verbose(&format!("creating RSA-HSM KEK `{name}` ({size}) in {}", conn.vault()));
            let kek = runtime()?.block_on(conn.create_kek(name, size)).map_err(vault::error)?;
            let human = format!(
                "created KEK {}\n  {}, key_ops [\"import\"], SHA-256 {}\nnext: byok-cli kek download --name {name} --file {name}.pem …\n",
                kek.kid,
                kek.public.size(),
                kek.public.fingerprint_sha256()
            );
            let json = json!({
                "format_version": 1, "kid": kek.kid.to_string(), "kty": kek.kty.name(), "key_ops": KeyOp::names(&kek.key_ops),
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
            let conn = vault.connect(ui)?;
            let kek = runtime()?
                .block_on(conn.get_kek(name, version.as_deref()))
                .map_err(vault::error)?;
            if !kek.is_import_only_hsm() {
                ui.warn(&format!(
                    "`{name}` is {} with key_ops {:?}, not an import-only RSA-HSM KEK: Key Vault will refuse blobs wrapped to it",
                    kek.kty, KeyOp::names(&kek.key_ops)
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
                "format_version": 1, "file": file, "encoding": encoding, "kid": kek.kid.to_string(), "kty": kek.kty.name(),
                "key_ops": KeyOp::names(&kek.key_ops), "import_only_hsm": kek.is_import_only_hsm(),
                "size_bits": kek.public.size().bits(), "fingerprint_sha256": kek.public.fingerprint_sha256(),
            });
            ui.result(&human, &json).map_err(stdout_error)
        }
    }
}
