//! What the library's tests run against: a throwaway PKCS#11 token and a local Key Vault, both in this process.
// Each test binary uses what it needs of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use byok_encoding::KeyKind;
use byok_pkcs11::{Module, ModuleConfig, Pkcs11Uri};
use sha2::Digest as _;

/// An NSS softokn key database made for one test in its own directory: a real token, loaded in this process with
/// its directory as a library parameter (SoftHSM would need `SOFTHSM2_CONF` in this process's environment).
#[derive(Debug)]
pub(crate) struct ThrowawayToken {
    pub(crate) module: ModuleConfig,
}

impl ThrowawayToken {
    /// The key database's token label.
    pub(crate) const LABEL: &'static str = "NSS Certificate DB";

    /// An empty key database in `dir` (with an empty password, so no login), made by NSS's own `certutil`.
    pub(crate) fn create(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("token directory");
        let db = format!("sql:{}", dir.display());
        let out = Command::new("certutil")
            .args(["-N", "-d", &db, "--empty-password"])
            .output()
            .expect("certutil runs (cargo xtask setup installs libnss3-tools)");
        assert!(
            out.status.success(),
            "certutil -N: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            module: ModuleConfig {
                path: nss_module(),
                init_args: Some(format!(
                    "configdir='{db}' certPrefix='' keyPrefix='' secmod='secmod.db' flags="
                )),
            },
        }
    }

    /// Generates a key labelled `label` in the token; returns its URI. The module is unloaded again afterwards.
    pub(crate) fn generate(&self, kind: KeyKind, label: &str) -> Pkcs11Uri {
        let module = Module::load(&self.module).expect("NSS softokn loads");
        let token: Pkcs11Uri = format!("pkcs11:token={}", Self::LABEL.replace(' ', "%20"))
            .parse()
            .expect("URI");
        let session = module.open(&token, None).expect("the key database opens");
        // NSS keeps one key per CKA_ID: each key gets its own (its label's bytes).
        session
            .generate(kind, label, label.as_bytes())
            .expect("the key is generated");
        format!("pkcs11:token={};object={label}", Self::LABEL.replace(' ', "%20"))
            .parse()
            .expect("URI")
    }
}

/// NSS softokn as `cargo xtask setup` found it (`target/hsm/env.json`).
fn nss_module() -> PathBuf {
    let env = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/hsm/env.json");
    let text =
        std::fs::read(&env).unwrap_or_else(|_| panic!("{} is missing: run `cargo xtask setup` first", env.display()));
    let env: serde_json::Value = serde_json::from_slice(&text).expect("env.json");
    PathBuf::from(env["nss"]["module"].as_str().expect("the NSS module's path"))
}

/// The local Key Vault (`byok-emulator`), in Key Vault mode on its own thread, until dropped.
#[derive(Debug)]
pub(crate) struct LocalVault(byok_emulator::Background);

impl std::ops::Deref for LocalVault {
    type Target = byok_emulator::Background;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl LocalVault {
    /// Starts it with its state in `state_dir`.
    pub(crate) fn start(state_dir: &Path) -> Self {
        let config = byok_emulator::Config::new(state_dir.to_owned());
        Self(byok_emulator::Background::start(config).expect("the local Key Vault starts"))
    }

    /// Starts it as a Managed HSM, with faults (`attestation=forged`, say).
    pub(crate) fn start_managed_hsm(state_dir: &Path, faults: &str) -> Self {
        let mut config = byok_emulator::Config::new(state_dir.to_owned());
        config.managed_hsm = true;
        config.faults = faults.parse().expect("faults");
        Self(byok_emulator::Background::start(config).expect("the local Managed HSM starts"))
    }

    /// Only its own attestation root, as a caller told to trust it would.
    pub(crate) fn attestation_roots(&self) -> byok_attestation::Roots {
        let path = self
            .info
            .attestation_root
            .as_ref()
            .expect("a Managed HSM names its root");
        let pem = std::fs::read_to_string(path).expect("the root's PEM");
        let root = byok_attestation::Root::from_public_key_pem("local", &pem).expect("an RSA key");
        byok_attestation::Roots::only(vec![root])
    }
}

impl LocalVault {
    /// A connection to it with its client-secret credential, trusting its CA.
    pub(crate) fn connection(&self) -> byok_keyvault::Connection {
        let vault = byok_keyvault::Vault::from_url(&self.info.vault_url).expect("its URL");
        let ca = std::fs::read(&self.info.ca_file).expect("its CA");
        byok_keyvault::Connection::new(&vault, self.credential(), Some(&ca)).expect("a connection")
    }

    /// Its client-secret credential.
    pub(crate) fn credential(&self) -> byok_keyvault::Credential {
        byok_keyvault::Credential::ClientSecret {
            tenant_id: self.info.tenant_id.clone(),
            client_id: self.info.client_id.clone(),
            secret: self.info.client_secret.clone().into(),
            authority_host: Some(self.info.authority_host.clone()),
        }
    }
}

/// Lower-case hex SHA-256.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}
