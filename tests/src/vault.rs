//! The local Key Vault (`byok-emulator`) in-process, and `byok-cli` pointed at it with client-secret credentials.

use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;

use crate::hsm::Token;
use crate::{byok_cli, run};

/// The local Key Vault, started in-process on its own runtime thread so that tests can run the CLI synchronously.
#[derive(Debug)]
pub struct LocalVault {
    /// What the local Key Vault printed.
    pub info: byok_emulator::Info,
    /// Its state directory.
    pub state: PathBuf,
    /// The access tokens it issued and the faults it injected.
    pub observed: byok_emulator::Observations,
    _vault: byok_emulator::Background,
    _dir: tempfile::TempDir,
}

impl LocalVault {
    /// Starts it in Vault or Managed HSM mode with `faults` and any further settings.
    pub fn start(managed_hsm: bool, faults: &str, configure: impl FnOnce(&mut byok_emulator::Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("vault");
        let mut config = byok_emulator::Config::new(state.clone());
        config.managed_hsm = managed_hsm;
        config.faults = faults.parse().expect("fault spec");
        configure(&mut config);
        let vault = byok_emulator::Background::start(config).expect("the local Key Vault starts");
        Self {
            info: vault.info.clone(),
            state,
            observed: vault.observed.clone(),
            _vault: vault,
            _dir: dir,
        }
    }

    /// Stops it, runs `between` (to change its state files), and starts it again on the same state (a new port).
    pub fn restart(self, between: impl FnOnce()) -> Self {
        let managed_hsm = self.info.audience.contains("managedhsm");
        let Self {
            state, _vault, _dir, ..
        } = self;
        drop(_vault);
        between();
        let mut config = byok_emulator::Config::new(state.clone());
        config.managed_hsm = managed_hsm;
        let vault = byok_emulator::Background::start(config).expect("the local Key Vault starts again");
        Self {
            info: vault.info.clone(),
            state,
            observed: vault.observed.clone(),
            _vault: vault,
            _dir,
        }
    }

    /// The vault flags every command takes.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--vault-url".into(),
            self.info.vault_url.clone(),
            "--ca-file".into(),
            self.info.ca_file.display().to_string(),
        ]
    }

    /// [`Self::flags`] and [`Self::attestation_flags`]: what `full-transfer` and `batch` take.
    pub fn transfer_flags(&self) -> Vec<String> {
        let mut flags = self.flags();
        flags.extend(self.attestation_flags());
        flags
    }

    /// `--attestation-root` with the root this local Managed HSM's ready line names (none in Key Vault mode): what
    /// `full-transfer` and `batch` need to verify its attestations, as a user rehearsing against it passes.
    pub fn attestation_flags(&self) -> Vec<String> {
        match &self.info.attestation_root {
            Some(root) => vec!["--attestation-root".into(), root.display().to_string()],
            None => Vec::new(),
        }
    }

    /// `byok-cli ARGS` (plus the vault flags) on a token, with client-secret credentials in the environment.
    pub fn cli(&self, token: Option<Token>, args: &[&str]) -> Output {
        run(&mut self.command(token, args))
    }

    /// The command `cli` runs, not yet started (to run it in the background).
    pub fn command(&self, token: Option<Token>, args: &[&str]) -> std::process::Command {
        let mut flags = self.flags();
        // The commands that check attestations get the local root, unless the test chooses otherwise.
        let transfers = args.iter().any(|a| matches!(*a, "full-transfer" | "batch" | "rotate"));
        let chosen = args
            .iter()
            .any(|a| matches!(*a, "--skip-attestation" | "--attestation-root"));
        if transfers && !chosen {
            flags.extend(self.attestation_flags());
        }
        let mut all: Vec<&str> = args.to_vec();
        all.extend(flags.iter().map(String::as_str));
        let mut cmd = match token {
            Some(t) => t.command(&all),
            None => {
                let mut c = byok_cli();
                c.args(&all);
                c
            }
        };
        self.credentials(&mut cmd);
        cmd
    }

    /// Gives `cmd` this vault's client-secret credentials (in its environment).
    pub fn credentials<'c>(&self, cmd: &'c mut std::process::Command) -> &'c mut std::process::Command {
        cmd.env("AZURE_TENANT_ID", &self.info.tenant_id)
            .env("AZURE_CLIENT_ID", &self.info.client_id)
            .env("AZURE_CLIENT_SECRET", &self.info.client_secret)
            .env("AZURE_AUTHORITY_HOST", &self.info.authority_host)
    }

    /// `byok-cli --output json full-transfer` of a token key into this vault, with KEK `kek` (2048 bits when created)
    /// and `extra` flags.
    pub fn full_transfer(&self, token: Token, uri: &str, name: &str, extra: &[&str]) -> Output {
        let mut args = full_transfer_args(uri, name);
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        self.cli(Some(token), &args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// A KEK version's private key, from this vault's state (the only place it exists), to open the blobs it got.
    pub fn kek_private(&self, kid: &str) -> byok_wrap::KekPrivateKey {
        use base64::Engine as _;
        let versions: Vec<Value> =
            serde_json::from_slice(&std::fs::read(self.state.join("keys/kek.json")).expect("the KEK's state file"))
                .expect("JSON");
        let version = kid.rsplit('/').next().expect("version");
        let v = versions
            .iter()
            .find(|v| v["version"].as_str() == Some(version))
            .expect("the KEK version the blob names");
        let der = base64::engine::general_purpose::STANDARD
            .decode(v["material"]["pkcs8"].as_str().expect("RSA material"))
            .expect("base64");
        byok_wrap::KekPrivateKey::from_pkcs8_der(&der).expect("a KEK")
    }

    /// `GET /keys/{name}/{version}/attestation?api-version=7.6` (Managed HSM mode): the body, as
    /// `az keyvault key get-attestation --file` writes it.
    pub fn attestation(&self, name: &str, version: &str) -> Vec<u8> {
        let info = &self.info;
        let ca = std::fs::read(&info.ca_file).expect("ca.pem");
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            let client = reqwest::Client::builder()
                .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("CA")])
                .build()
                .expect("client");
            let token: Value = client
                .post(format!("{}/{}/oauth2/v2.0/token", info.authority_host, info.tenant_id))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", info.client_id.as_str()),
                    ("client_secret", info.client_secret.as_str()),
                    ("scope", &format!("{}/.default", info.audience)),
                ])
                .send()
                .await
                .expect("token request")
                .json()
                .await
                .expect("token JSON");
            let url = format!("{}/keys/{name}/{version}/attestation?api-version=7.6", info.vault_url);
            let response = client
                .get(url)
                .bearer_auth(token["access_token"].as_str().expect("a token"))
                .send()
                .await
                .expect("attestation request");
            assert!(response.status().is_success(), "attestation: {}", response.status());
            response.bytes().await.expect("body").to_vec()
        })
    }

    /// How many versions the vault holds of a key (from its state file).
    pub fn versions(&self, name: &str) -> usize {
        let path = self.state.join("keys").join(format!("{name}.json"));
        match std::fs::read(&path) {
            Ok(text) => serde_json::from_slice::<Vec<Value>>(&text).expect("state file").len(),
            Err(_) => 0,
        }
    }
}

/// `--output json batch` of `manifest` with KEK `kek` (2048 bits when created) and `extra` flags; no vault flags.
pub fn batch_args(manifest: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--output",
        "json",
        "batch",
        "--kek-name",
        "kek",
        "--kek-size",
        "2048",
        "--manifest",
    ]
    .map(String::from)
    .to_vec();
    args.push(manifest.display().to_string());
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    args
}

/// `--output json full-transfer` of the key `uri` to the name `name`, with KEK `kek` (2048 bits when created); no
/// vault flags.
pub fn full_transfer_args(uri: &str, name: &str) -> Vec<String> {
    [
        "--output",
        "json",
        "full-transfer",
        "--kek-name",
        "kek",
        "--kek-size",
        "2048",
        "--name",
        name,
        "--key",
        uri,
    ]
    .map(String::from)
    .to_vec()
}
