#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod api_error;
mod api_version;
mod arm;
mod attestation;
mod auth;
mod background;
mod crypto;
mod error;
mod faults;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod identity;
mod keys;
mod limits;
mod serve;
mod state;
mod throttle;
mod tls;
mod tokens;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use serde::Serialize;

pub use background::Background;
pub use error::Error;
pub use faults::{AttestationFault, Faults};
pub use limits::{Limits, Row};

/// How to run the local Key Vault.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where to listen; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Where keys, credentials and the CA live between runs.
    pub state_dir: PathBuf,
    /// Behave as a Managed HSM (audience `https://managedhsm.azure.net`, oct-HSM keys) instead of a Key Vault.
    pub managed_hsm: bool,
    /// Listen on a non-loopback address.
    pub allow_remote: bool,
    /// How long access tokens live (Entra's default is about an hour; tests of expiry use seconds).
    pub token_lifetime: std::time::Duration,
    /// Faults to inject into vault requests (none by default).
    pub faults: Faults,
    /// A vault name: the vault then answers as `https://{name}.vault.azure.net:{port}` (or `.managedhsm.azure.net`;
    /// without `:{port}` on 443),
    /// its certificate names that host, and key ids use it. Clients map the name to 127.0.0.1 themselves (e.g.
    /// reqwest's `resolve`, curl's `--resolve`, /etc/hosts) and can keep verifying the challenge resource.
    pub name: Option<String>,
    /// Key Vault's service limits (or a Managed HSM's capacity) to enforce; none by default.
    pub limits: Option<Limits>,
    /// More vaults served by this process, as one Entra tenant serves many: each on a port of its own (the next
    /// free one, or the port after the previous vault's when `listen` names one) with its own keys (in
    /// `{state_dir}/vaults/{name}`, or `{state_dir}/vaults/{index}` for an unnamed one), limits and faults, behind the same tenant, credentials, token endpoint, CA and
    /// attestation root.
    pub more_vaults: Vec<VaultConfig>,
}

/// One more vault of [`Config::more_vaults`].
#[derive(Clone, Debug)]
pub struct VaultConfig {
    /// Its name (`https://{name}.vault.azure.net:{port}` or `.managedhsm.azure.net`), unique in the process; an
    /// unnamed vault answers as `https://127.0.0.1:{port}`.
    pub name: Option<String>,
    /// A Managed HSM rather than a Key Vault.
    pub managed_hsm: bool,
    /// Faults to inject into its requests.
    pub faults: Faults,
    /// Its service limits (its own windows).
    pub limits: Option<Limits>,
    /// Where it listens; by default the next free port (or the port after the previous vault's).
    pub listen: Option<SocketAddr>,
}

impl VaultConfig {
    /// An unnamed vault with no faults and no limits.
    pub fn new(managed_hsm: bool) -> Self {
        Self {
            name: None,
            managed_hsm,
            faults: Faults::default(),
            limits: None,
            listen: None,
        }
    }
}

impl Config {
    /// Loopback on a free port, Key Vault mode, hour-long tokens.
    pub fn new(state_dir: PathBuf) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_dir,
            managed_hsm: false,
            allow_remote: false,
            token_lifetime: auth::TOKEN_LIFETIME,
            faults: Faults::default(),
            name: None,
            limits: None,
            more_vaults: Vec::new(),
        }
    }

    /// Every vault this process serves, the first one first.
    fn vaults(&self) -> Vec<Spec> {
        let first = Spec {
            name: self.name.clone(),
            managed_hsm: self.managed_hsm,
            faults: self.faults.clone(),
            limits: self.limits.clone(),
            listen: Some(self.listen),
        };
        let more = self.more_vaults.iter().map(|v| Spec {
            name: v.name.clone(),
            managed_hsm: v.managed_hsm,
            faults: v.faults.clone(),
            limits: v.limits.clone(),
            listen: v.listen,
        });
        std::iter::once(first).chain(more).collect()
    }
}

/// One vault to serve.
struct Spec {
    name: Option<String>,
    managed_hsm: bool,
    faults: Faults,
    limits: Option<Limits>,
    listen: Option<SocketAddr>,
}

/// What a client needs to talk to the running vault. Printed by the binary as one JSON line (the client secret with
/// it: a client needs it); never shown by `Debug`.
#[derive(Clone, Serialize)]
pub struct Info {
    /// `https://127.0.0.1:{port}`.
    pub vault_url: String,
    /// The CA certificate to trust.
    pub ca_file: PathBuf,
    /// The tenant of the token endpoint.
    pub tenant_id: String,
    /// The client-credentials client id.
    pub client_id: String,
    /// The client secret (a local test credential).
    pub client_secret: String,
    /// A file holding a federated token the token endpoint accepts as a client assertion (workload identity:
    /// `AZURE_FEDERATED_TOKEN_FILE`).
    pub federated_token_file: PathBuf,
    /// The authority host of the token endpoint (`https://127.0.0.1:{port}`).
    pub authority_host: String,
    /// The managed-identity token endpoint, App Service's form (`IDENTITY_ENDPOINT`).
    pub identity_endpoint: String,
    /// The secret that endpoint wants (`IDENTITY_HEADER`).
    pub identity_header: String,
    /// `https://vault.azure.net` or `https://managedhsm.azure.net`.
    pub audience: String,
    /// Where to connect: `127.0.0.1:{port}` (with `--name`, the vault's host name must resolve to it).
    pub connect_to: String,
    /// Managed HSM mode: the public key (PEM) of the test root its key attestations chain to — trust it only for
    /// this local vault (`byok-cli attest --attestation-root`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attestation_root: Option<PathBuf>,
    /// Every vault this process serves, the one above first: all share the tenant, the credentials, the token
    /// endpoint, the CA and the attestation root.
    pub vaults: Vec<VaultInfo>,
}

/// One vault of [`Info::vaults`].
#[derive(Clone, Debug, Serialize)]
pub struct VaultInfo {
    /// Its name, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its URL.
    pub vault_url: String,
    /// `https://vault.azure.net` or `https://managedhsm.azure.net`.
    pub audience: String,
    /// Where to connect: `127.0.0.1:{port}`.
    pub connect_to: String,
}

impl std::fmt::Debug for Info {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Info")
            .field("vault_url", &self.vault_url)
            .field("ca_file", &self.ca_file)
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("authority_host", &self.authority_host)
            .field("identity_endpoint", &self.identity_endpoint)
            .field("audience", &self.audience)
            .field("connect_to", &self.connect_to)
            .field("vaults", &self.vaults)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    pub(crate) vault_url: String,
    pub(crate) authority_host: String,
    pub(crate) audience: &'static str,
    /// The audiences of every vault this process serves: the token endpoint issues tokens for any of them.
    pub(crate) audiences: Vec<&'static str>,
    pub(crate) managed_hsm: bool,
    /// This vault's keys.
    pub(crate) state_dir: PathBuf,
    /// The tenant's: credentials, tokens, CA, attestation keys (the first vault's state directory).
    pub(crate) tenant_dir: PathBuf,
    pub(crate) state: Mutex<state::State>,
    /// Shared by every vault of the process, as one tenant's tokens are.
    pub(crate) tokens: Arc<Mutex<tokens::Tokens>>,
    pub(crate) token_lifetime: std::time::Duration,
    pub(crate) faults: Faults,
    /// How many fault rolls were drawn (the position in a seeded sequence).
    pub(crate) fault_rolls: std::sync::atomic::AtomicU64,
    /// How many faults were injected (refusals, dropped answers, substituted keys).
    pub(crate) faults_injected: std::sync::atomic::AtomicU64,
    /// Imports admitted so far, for [`Faults::forbid_after`].
    pub(crate) imports_admitted: std::sync::atomic::AtomicU64,
    /// The `.byok` files of BYOK imports, as received (the first [`MAX_BLOBS`]), for tests that open them.
    pub(crate) received_blobs: Mutex<Vec<Vec<u8>>>,
    /// The service limits enforced, and what they admitted and throttled.
    pub(crate) limits: Option<Limits>,
    pub(crate) windows: limits::Windows,
    /// What signs key attestations, made on the first request for one (four RSA keys take a moment); one for every
    /// Managed HSM of the process.
    attestation: Arc<std::sync::OnceLock<Result<attestation::Authority, String>>>,
}

impl Shared {
    pub(crate) fn attestation(&self) -> Result<&attestation::Authority, String> {
        self.attestation
            .get_or_init(|| attestation::Authority::load_or_create(&self.tenant_dir).map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// How many received `.byok` files [`Observations::blobs`] keeps.
pub(crate) const MAX_BLOBS: usize = 2_000;

/// A running vault (or several, behind one tenant).
#[derive(Debug)]
pub struct Running {
    /// How to reach it.
    pub info: Info,
    /// One per vault, in the order of [`Info::vaults`].
    served: Vec<serve::Served>,
}

/// What a running vault has done that tests check on: the access tokens it issued, the faults it injected, the blobs
/// it received. Readable
/// while it runs and after it stopped.
#[derive(Clone)]
pub struct Observations(Arc<Shared>);

impl Observations {
    /// Every access token issued so far, oldest first (expired ones included; the first 10,000 of a long run).
    pub fn tokens(&self) -> Vec<String> {
        self.0.tokens.lock().expect("tokens lock").history()
    }

    /// The `.byok` files of the BYOK imports received so far, in order (the first 2,000): a test opens them with the
    /// KEK's private key to learn what was moved.
    pub fn blobs(&self) -> Vec<Vec<u8>> {
        self.0.received_blobs.lock().expect("blobs lock").clone()
    }

    /// How many faults the vault has injected so far (refusals, dropped answers, substituted keys).
    pub fn faults_injected(&self) -> u64 {
        self.0.faults_injected.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Under service limits: how many vault requests were admitted and how many answered `429` (authorized
    /// requests only; the challenge is not counted).
    pub fn limited(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.0.windows.counted.load(Relaxed),
            self.0.windows.throttled.load(Relaxed),
        )
    }

    /// Backdates a key version (the latest when `version` is empty): its `created` and `updated` become `created`
    /// (Unix seconds), as if it had been made then — for tests of key age, which a real vault cannot fake. Returns
    /// whether the version exists; the change is kept in the state directory.
    pub fn set_created(&self, name: &str, version: &str, created: i64) -> Result<bool, Error> {
        let mut state = self.0.state.lock().expect("state lock");
        let Some(versions) = state.keys.get_mut(name) else {
            return Ok(false);
        };
        let found = if version.is_empty() {
            versions.last_mut()
        } else {
            versions.iter_mut().find(|v| v.version == version)
        };
        let Some(v) = found else {
            return Ok(false);
        };
        (v.created, v.updated) = (created, created);
        state.persist(&self.0.state_dir, name).map_err(Error::new)?;
        Ok(true)
    }
}

impl std::fmt::Debug for Observations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observations").finish_non_exhaustive()
    }
}

impl Running {
    /// A handle on what the first vault does: the access tokens its tenant issues (leak scans look for them), the
    /// faults it injects.
    pub fn observations(&self) -> Observations {
        self.served[0].observations.clone()
    }

    /// What each vault does, in the order of [`Info::vaults`].
    pub fn all_observations(&self) -> Vec<Observations> {
        self.served.iter().map(|s| s.observations.clone()).collect()
    }

    /// Stops serving and waits for the servers to end.
    pub async fn shutdown(self) -> Result<(), Error> {
        for s in &self.served {
            s.handle.shutdown();
        }
        self.wait().await
    }

    /// Waits until the servers end by themselves (the first error, if one fails).
    pub async fn wait(self) -> Result<(), Error> {
        let mut first = Ok(());
        for s in self.served {
            let ended = s.task.await.context("server task").and_then(|r| r.context("server"));
            if first.is_ok() {
                first = ended.map_err(Error::new);
            }
        }
        first
    }
}

/// Starts the vault (or vaults) on a tokio runtime and returns once they listen.
pub async fn start(config: Config) -> Result<Running, Error> {
    serve::serve(config).await.map_err(Error::new)
}
