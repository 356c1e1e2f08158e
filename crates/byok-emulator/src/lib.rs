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
mod state;
mod throttle;
mod tls;
mod tokens;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
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
        }
    }
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
            .finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    pub(crate) vault_url: String,
    pub(crate) authority_host: String,
    pub(crate) audience: &'static str,
    pub(crate) managed_hsm: bool,
    pub(crate) state_dir: PathBuf,
    pub(crate) state: Mutex<state::State>,
    pub(crate) tokens: Mutex<tokens::Tokens>,
    pub(crate) token_lifetime: std::time::Duration,
    pub(crate) faults: Faults,
    /// How many fault rolls were drawn (the position in a seeded sequence).
    pub(crate) fault_rolls: std::sync::atomic::AtomicU64,
    /// How many faults were injected (refusals, dropped answers, substituted keys).
    pub(crate) faults_injected: std::sync::atomic::AtomicU64,
    /// The `.byok` files of BYOK imports, as received (the first [`MAX_BLOBS`]), for tests that open them.
    pub(crate) received_blobs: Mutex<Vec<Vec<u8>>>,
    /// The service limits enforced, and what they admitted and throttled.
    pub(crate) limits: Option<Limits>,
    pub(crate) windows: limits::Windows,
    /// What signs key attestations, made on the first request for one (four RSA keys take a moment).
    attestation: std::sync::OnceLock<Result<attestation::Authority, String>>,
}

impl Shared {
    pub(crate) fn attestation(&self) -> Result<&attestation::Authority, String> {
        self.attestation
            .get_or_init(|| attestation::Authority::load_or_create(&self.state_dir).map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// How many received `.byok` files [`Observations::blobs`] keeps.
pub(crate) const MAX_BLOBS: usize = 2_000;

/// A running vault.
#[derive(Debug)]
pub struct Running {
    /// How to reach it.
    pub info: Info,
    tokens: Observations,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
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
    /// A handle on what this vault does: the access tokens it issues (leak scans look for them), the faults it injects.
    pub fn observations(&self) -> Observations {
        self.tokens.clone()
    }

    /// Stops serving and waits for the server to end.
    pub async fn shutdown(self) -> Result<(), Error> {
        self.handle.shutdown();
        self.wait().await
    }

    /// Waits until the server ends by itself.
    pub async fn wait(self) -> Result<(), Error> {
        let ended = self.task.await.context("server task").and_then(|r| r.context("server"));
        ended.map_err(Error::new)
    }
}

/// Starts the vault on a tokio runtime and returns once it listens.
pub async fn start(config: Config) -> Result<Running, Error> {
    serve(config).await.map_err(Error::new)
}

async fn serve(config: Config) -> Result<Running> {
    if !config.listen.ip().is_loopback() && !config.allow_remote {
        bail!(
            "{} is not a loopback address; pass --allow-remote to listen on it",
            config.listen.ip()
        );
    }
    if let Some(limits) = &config.limits {
        limits.check().map_err(|e| anyhow::anyhow!("the limits: {e}"))?;
    }
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("cannot create the state directory {}", config.state_dir.display()))?;
    let managed_hsm = config.managed_hsm;
    let host = match &config.name {
        None => None,
        Some(name) => {
            let ok = (3..=24).contains(&name.len())
                && name.starts_with(|c: char| c.is_ascii_lowercase())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                bail!(
                    "the vault name `{name}` is invalid: use 3 to 24 lowercase letters, digits and dashes, starting with a letter"
                );
            }
            Some(format!(
                "{name}.{}",
                if managed_hsm {
                    "managedhsm.azure.net"
                } else {
                    "vault.azure.net"
                }
            ))
        }
    };
    let tls = tls::server_certificate(&config.state_dir, host.as_deref())?;
    let state = state::State::load_or_create(&config.state_dir)?;
    let rustls = axum_server::tls_rustls::RustlsConfig::from_pem(tls.cert_pem.into_bytes(), tls.key_pem.into_bytes())
        .await
        .context("TLS configuration")?;
    // Bind first: the address goes into key ids and the challenge before the first request is served.
    let listener =
        std::net::TcpListener::bind(config.listen).with_context(|| format!("cannot listen on {}", config.listen))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
    };
    let base = origin(&ip, addr.port());
    let vault_url = origin(host.as_deref().unwrap_or(&ip), addr.port());
    let audience = if managed_hsm {
        "https://managedhsm.azure.net"
    } else {
        "https://vault.azure.net"
    };
    let info = Info {
        vault_url: vault_url.clone(),
        ca_file: config.state_dir.join("ca.pem"),
        tenant_id: state.tenant_id.clone(),
        client_id: state.client_id.clone(),
        client_secret: state.client_secret.clone(),
        federated_token_file: config.state_dir.join("federated-token"),
        authority_host: base.clone(),
        identity_endpoint: format!("{base}{}", identity::PATH),
        identity_header: state.identity_header.clone(),
        audience: audience.to_owned(),
        connect_to: addr.to_string(),
        attestation_root: managed_hsm.then(|| config.state_dir.join("attestation-root.pem")),
    };
    let shared = Arc::new(Shared {
        vault_url,
        authority_host: base,
        audience,
        managed_hsm,
        state_dir: config.state_dir.clone(),
        state: Mutex::new(state),
        tokens: Mutex::new(tokens::Tokens::load(&config.state_dir)?),
        token_lifetime: config.token_lifetime,
        faults: config.faults.clone(),
        fault_rolls: std::sync::atomic::AtomicU64::new(0),
        faults_injected: std::sync::atomic::AtomicU64::new(0),
        received_blobs: Mutex::new(Vec::new()),
        limits: config.limits.clone(),
        windows: limits::Windows::default(),
        attestation: std::sync::OnceLock::new(),
    });
    if managed_hsm {
        // Made now, so that the ready line's `attestation_root` exists when a client reads it; the rest of the
        // chain waits for the first attestation request (RSA key generation takes a moment).
        attestation::root(&config.state_dir).context("the attestation root")?;
    }
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(listener, rustls)
        .context("serving TLS on the listener")?
        .handle(handle.clone());
    let task = tokio::spawn({
        let shared = shared.clone();
        async move { server.serve(router(shared).into_make_service()).await }
    });
    Ok(Running {
        info,
        tokens: Observations(shared),
        handle,
        task,
    })
}

/// `https://host[:port]`, the default port left out, as Azure writes vault URLs and key ids: a client that
/// compares a kid with the vault's URL (byok, the SDKs) sees the same string the service would send.
fn origin(host: &str, port: u16) -> String {
    if port == 443 {
        format!("https://{host}")
    } else {
        format!("https://{host}:{port}")
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let mut vault = Router::new()
        .route("/keys", get(keys::list))
        .route(
            "/keys/{name}",
            get(keys::get_latest)
                .put(keys::import)
                .delete(keys::delete)
                .patch(keys::update),
        )
        .route("/keys/{name}/", get(keys::get_latest).patch(keys::update))
        .route("/keys/{name}/create", post(keys::create))
        .route(
            "/keys/{name}/{version}",
            get(keys::get_version).patch(keys::update).fallback(keys::unsupported),
        )
        .route("/deletedkeys/{name}", get(keys::deleted).delete(keys::deleted))
        .route("/deletedkeys/{name}/{action}", post(keys::deleted))
        .route("/keys/{name}/{version}/{operation}", post(keys::operation))
        .route("/keys/{name}/{version}/attestation", get(keys::attestation))
        .route("/keys/{name}/attestation", get(keys::attestation_latest));
    if shared.limits.is_some() {
        vault = vault.layer(axum::middleware::from_fn_with_state(shared.clone(), throttle::enforce));
    }
    if shared.faults.any() {
        vault = vault.layer(axum::middleware::from_fn_with_state(shared.clone(), faults::inject));
    }
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(auth::token))
        .route(identity::PATH, get(identity::token))
        .route("/subscriptions", get(arm::subscriptions))
        .route("/tenants", get(arm::tenants))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(auth::openid_configuration),
        )
        .route(
            "/{tenant}/.well-known/openid-configuration",
            get(auth::openid_configuration),
        )
        .merge(vault)
        .layer(DefaultBodyLimit::max(256 * 1024))
        .with_state(shared)
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_leave_out_the_default_port_as_azure_writes_them() {
        assert_eq!(super::origin("n.vault.azure.net", 443), "https://n.vault.azure.net");
        assert_eq!(super::origin("127.0.0.1", 8443), "https://127.0.0.1:8443");
        assert_eq!(super::origin("[::1]", 443), "https://[::1]");
    }
}
