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
    /// The same, for each vault the process serves (the first is `observed`).
    pub vaults: Vec<byok_emulator::Observations>,
    config: byok_emulator::Config,
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
        let vault = byok_emulator::Background::start(config.clone()).expect("the local Key Vault starts");
        Self {
            info: vault.info.clone(),
            state,
            observed: vault.observed.clone(),
            vaults: vault.vaults.clone(),
            config,
            _vault: vault,
            _dir: dir,
        }
    }

    /// Stops it, runs `between` (to change its state files), and starts it again on the same state, the same vaults
    /// with the same limits, without faults: on a new port when it serves one vault; on the same ports when it
    /// serves several (a fan-out's state file names every vault's URL).
    pub fn restart(self, between: impl FnOnce()) -> Self {
        let Self {
            state,
            mut config,
            _vault,
            _dir,
            info,
            ..
        } = self;
        if !config.more_vaults.is_empty() {
            let port = |i: usize| info.vaults[i].connect_to.parse().expect("a socket address");
            config.listen = port(0);
            for (i, more) in config.more_vaults.iter_mut().enumerate() {
                more.listen = Some(port(i + 1));
            }
        }
        drop(_vault);
        between();
        config.faults = byok_emulator::Faults::default();
        for more in &mut config.more_vaults {
            more.faults = byok_emulator::Faults::default();
        }
        let vault = byok_emulator::Background::start(config.clone()).expect("the local Key Vault starts again");
        Self {
            info: vault.info.clone(),
            state,
            observed: vault.observed.clone(),
            vaults: vault.vaults.clone(),
            config,
            _vault: vault,
            _dir,
        }
    }

    /// `--vault-url` of every vault the process serves (`--vault-url URL` repeated) and the one `--ca-file`.
    pub fn all_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        for vault in &self.info.vaults {
            flags.extend(["--vault-url".to_owned(), vault.vault_url.clone()]);
        }
        flags.extend(["--ca-file".to_owned(), self.info.ca_file.display().to_string()]);
        flags
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
        self.command_with(self.flags(), token, args)
    }

    /// [`Self::command`] naming every vault the process serves as a destination ([`Self::all_flags`]).
    pub fn command_all(&self, token: Option<Token>, args: &[&str]) -> std::process::Command {
        self.command_with(self.all_flags(), token, args)
    }

    fn command_with(&self, mut flags: Vec<String>, token: Option<Token>, args: &[&str]) -> std::process::Command {
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
        self.versions_in(0, name)
    }

    /// How many versions vault `i` of [`byok_emulator::Info::vaults`] holds of a key (from its state file).
    pub fn versions_in(&self, i: usize, name: &str) -> usize {
        let dir = match (i, &self.info.vaults[i].name) {
            (0, _) => self.state.clone(),
            (_, Some(vault)) => self.state.join("vaults").join(vault),
            (_, None) => self.state.join("vaults").join(i.to_string()),
        };
        let path = dir.join("keys").join(format!("{name}.json"));
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
