//! Starting the vaults of one process: one tenant (credentials, tokens, CA, attestation root) in the state
//! directory, then each vault on a listener of its own with its own keys, limits and faults. Every listener also
//! serves the token endpoints; the first vault's address is the authority host all of them name.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::{
    Config, Info, Observations, Running, Shared, Spec, VaultInfo, arm, attestation, auth, faults, identity, keys,
    limits, state, throttle, tls, tokens,
};

/// One vault being served.
#[derive(Debug)]
pub(crate) struct Served {
    pub(crate) observations: Observations,
    pub(crate) handle: axum_server::Handle<SocketAddr>,
    pub(crate) task: tokio::task::JoinHandle<std::io::Result<()>>,
}

const KEY_VAULT: &str = "https://vault.azure.net";
const MANAGED_HSM: &str = "https://managedhsm.azure.net";

pub(crate) async fn serve(config: Config) -> Result<Running> {
    if !config.listen.ip().is_loopback() && !config.allow_remote {
        bail!(
            "{} is not a loopback address; pass --allow-remote to listen on it",
            config.listen.ip()
        );
    }
    let specs = config.vaults();
    let hosts = hosts(&specs)?;
    for spec in &specs {
        if let Some(limits) = &spec.limits {
            limits.check().map_err(|e| anyhow::anyhow!("the limits: {e}"))?;
        }
    }
    let dir = &config.state_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the state directory {}", dir.display()))?;
    let tenant = state::State::load_or_create(dir)?;
    let tokens = Arc::new(Mutex::new(tokens::Tokens::load(dir)?));
    let mut audiences: Vec<&'static str> = specs.iter().map(|s| audience(s.managed_hsm)).collect();
    audiences.dedup();
    audiences.sort_unstable();
    audiences.dedup();
    if specs.iter().any(|s| s.managed_hsm) {
        // Made now, so that the ready line's `attestation_root` exists when a client reads it; the rest of the
        // chain waits for the first attestation request (RSA key generation takes a moment).
        attestation::root(dir).context("the attestation root")?;
    }
    // Bind every listener first: the addresses go into key ids, challenges and the ready line.
    let listeners = listeners(&config, &specs)?;
    let authority_host = base(&listeners[0].local_addr()?);
    let authority = Arc::new(std::sync::OnceLock::new());
    let mut infos = Vec::new();
    let mut served = Vec::new();
    for (i, ((spec, host), listener)) in specs.into_iter().zip(hosts).zip(listeners).enumerate() {
        let addr = listener.local_addr()?;
        let vault_dir = match (i, &spec.name) {
            (0, _) => dir.clone(),
            (_, Some(name)) => dir.join("vaults").join(name),
            (_, None) => dir.join("vaults").join(i.to_string()),
        };
        let state = match i {
            0 => tenant.clone(),
            _ => state::State::for_vault(&vault_dir, &tenant)?,
        };
        let vault_url = origin(host.as_deref().unwrap_or(&ip(&addr)), addr.port());
        infos.push(VaultInfo {
            name: spec.name.clone(),
            vault_url: vault_url.clone(),
            audience: audience(spec.managed_hsm).to_owned(),
            connect_to: addr.to_string(),
        });
        let shared = Arc::new(Shared {
            vault_url,
            authority_host: authority_host.clone(),
            audience: audience(spec.managed_hsm),
            audiences: audiences.clone(),
            managed_hsm: spec.managed_hsm,
            state_dir: vault_dir,
            tenant_dir: dir.clone(),
            state: Mutex::new(state),
            tokens: tokens.clone(),
            token_lifetime: config.token_lifetime,
            faults: spec.faults,
            fault_rolls: std::sync::atomic::AtomicU64::new(0),
            faults_injected: std::sync::atomic::AtomicU64::new(0),
            imports_admitted: std::sync::atomic::AtomicU64::new(0),
            received_blobs: Mutex::new(Vec::new()),
            limits: spec.limits,
            windows: limits::Windows::default(),
            attestation: authority.clone(),
        });
        served.push(start_one(dir, host.as_deref(), listener, shared).await?);
    }
    let first = &infos[0];
    let info = Info {
        vault_url: first.vault_url.clone(),
        ca_file: dir.join("ca.pem"),
        tenant_id: tenant.tenant_id.clone(),
        client_id: tenant.client_id.clone(),
        client_secret: tenant.client_secret.clone(),
        federated_token_file: dir.join("federated-token"),
        authority_host: authority_host.clone(),
        identity_endpoint: format!("{authority_host}{}", identity::PATH),
        identity_header: tenant.identity_header.clone(),
        audience: first.audience.clone(),
        connect_to: first.connect_to.clone(),
        attestation_root: infos
            .iter()
            .any(|v| v.audience == MANAGED_HSM)
            .then(|| dir.join("attestation-root.pem")),
        vaults: infos,
    };
    Ok(Running { info, served })
}

fn audience(managed_hsm: bool) -> &'static str {
    if managed_hsm { MANAGED_HSM } else { KEY_VAULT }
}

/// Each vault's Azure-style host name (`None` for an unnamed vault), the names checked and distinct.
fn hosts(specs: &[Spec]) -> Result<Vec<Option<String>>> {
    let mut seen = std::collections::HashSet::new();
    specs
        .iter()
        .map(|spec| {
            let Some(name) = &spec.name else { return Ok(None) };
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
            if !seen.insert(name.clone()) {
                bail!("the vault name `{name}` is given twice: each vault of the process needs its own name");
            }
            let domain = if spec.managed_hsm { "managedhsm.azure.net" } else { "vault.azure.net" };
            Ok(Some(format!("{name}.{domain}")))
        })
        .collect()
}

/// One listener per vault: its own address if it names one, else `config.listen`'s address on the next free port
/// (or on the port after the previous vault's, when `config.listen` names a port).
fn listeners(config: &Config, specs: &[Spec]) -> Result<Vec<TcpListener>> {
    specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let mut addr = spec.listen.unwrap_or(config.listen);
            if i > 0 && spec.listen.is_none() && addr.port() != 0 {
                let port = u16::try_from(usize::from(addr.port()) + i)
                    .map_err(|_| anyhow::anyhow!("no port after {} for vault {}", config.listen, i + 1))?;
                addr.set_port(port);
            }
            if !addr.ip().is_loopback() && !config.allow_remote {
                bail!(
                    "{} is not a loopback address; pass --allow-remote to listen on it",
                    addr.ip()
                );
            }
            let listener = TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        })
        .collect()
}

async fn start_one(dir: &Path, host: Option<&str>, listener: TcpListener, shared: Arc<Shared>) -> Result<Served> {
    let tls = tls::server_certificate(dir, host)?;
    let rustls = axum_server::tls_rustls::RustlsConfig::from_pem(tls.cert_pem.into_bytes(), tls.key_pem.into_bytes())
        .await
        .context("TLS configuration")?;
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(listener, rustls)
        .context("serving TLS on the listener")?
        .handle(handle.clone());
    let task = tokio::spawn({
        let shared = shared.clone();
        async move { server.serve(router(shared).into_make_service()).await }
    });
    Ok(Served {
        observations: Observations(shared),
        handle,
        task,
    })
}

fn ip(addr: &SocketAddr) -> String {
    match addr.ip() {
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
    }
}

fn base(addr: &SocketAddr) -> String {
    origin(&ip(addr), addr.port())
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
