//! A complete BYOK transfer with `byok-transfer`: a key in a PKCS#11 token goes into Key Vault or Managed HSM,
//! wrapped inside the token, verified, and its record written.
//!
//! ```text
//! AZURE_TENANT_ID=… AZURE_CLIENT_ID=… AZURE_CLIENT_SECRET=… BYOK_PIN_FILE=pin.txt \
//!   cargo run -p byok-transfer --example full_transfer -- \
//!     /usr/lib/softhsm/libsofthsm2.so 'pkcs11:token=ceremony;object=app-key' https://contoso.vault.azure.net app-key
//! ```
//!
//! `cargo test -p byok-transfer` runs `transfer` against a local Key Vault and a throwaway token.
// An example program reports to its user: printing is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::error::Error;
use std::path::PathBuf;

use byok_keyvault::{AuthKind, Connection, Credential, Vault};
use byok_pkcs11::{Module, ModuleConfig, Pin, Pkcs11Uri};
use byok_transfer::{Event, KekPolicy, Plan, STEPS, TransferRecord, Verification};

/// Where the key is, where it goes, and how to reach both.
pub(crate) struct Config {
    pub(crate) module: ModuleConfig,
    pub(crate) pin: Option<Pin>,
    pub(crate) key: Pkcs11Uri,
    pub(crate) vault_url: String,
    pub(crate) name: String,
    pub(crate) credential: Credential,
    /// An extra CA for the vault's TLS certificate (a local Key Vault's); none for Azure.
    pub(crate) ca_pem: Option<Vec<u8>>,
    pub(crate) record: PathBuf,
    /// Which KEK wraps the key: reused if it exists, else created.
    pub(crate) kek: KekPolicy,
}

/// The transfer, in six steps reported as they start; a key the vault does not prove it holds is an error.
pub(crate) fn transfer(config: Config) -> Result<TransferRecord, Box<dyn Error>> {
    let module = Module::load(&config.module)?;
    let mut session = module.open(&config.key, config.pin.as_ref())?;
    let vault = Vault::from_url(&config.vault_url)?;
    let conn = Connection::new(&vault, config.credential, config.ca_pem.as_deref())?;
    let plan = Plan::new(config.key, config.name, config.kek);
    let done = plan.execute(&mut session, &conn, &|event: &Event<'_>| {
        if let Event::Step { number, text } = event {
            eprintln!("[{number}/{STEPS}] {text}");
        }
    })?;
    if !matches!(done.verification, Verification::Verified { .. }) {
        return Err(format!("do not use this key version: {:?}", done.verification).into());
    }
    done.record.write(&config.record, false)?;
    Ok(done.record)
}

fn main() -> Result<(), Box<dyn Error>> {
    let usage = "usage: full_transfer MODULE KEY_URI VAULT_URL NAME (PIN in the file BYOK_PIN_FILE names)";
    let [module, key, vault_url, name]: [String; 4] = std::env::args()
        .skip(1)
        .collect::<Vec<_>>()
        .try_into()
        .map_err(|_| usage)?;
    let pin_file = std::env::var_os("BYOK_PIN_FILE").map(PathBuf::from);
    let record = PathBuf::from(format!("{name}.record.json"));
    let config = Config {
        module: ModuleConfig {
            path: module.into(),
            init_args: None,
        },
        pin: pin_file.map(|f| byok_transfer::files::read_pin(&f)).transpose()?,
        key: key.parse()?,
        vault_url,
        name,
        record: record.clone(),
        credential: Credential::from_env(AuthKind::ClientSecret)?,
        ca_pem: None,
        kek: KekPolicy::reuse_or_create("byok-kek", byok_encoding::RsaSize::Rsa4096),
    };
    let done = transfer(config)?;
    println!(
        "imported and verified {}; its record is {}",
        done.kid().unwrap_or_default(),
        record.display()
    );
    Ok(())
}
