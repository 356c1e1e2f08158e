//! `byok-emulator`: a local Azure Key Vault / Managed HSM over HTTPS that really unwraps BYOK blobs.

#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// A local Azure Key Vault (or Managed HSM) over HTTPS, with Entra-like client-credentials auth and a BYOK import
/// that really unwraps. When ready it prints one JSON line: vault_url, ca_file, tenant_id, client_id,
/// client_secret, authority_host, audience, and `vaults` (every vault served, with its URL and audience).
#[derive(Debug, Parser)]
#[command(name = "byok-emulator", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Where keys, credentials and the CA certificate are kept across restarts.
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    /// Behave as a Managed HSM (audience https://managedhsm.azure.net; oct-HSM keys).
    #[arg(long)]
    managed_hsm: bool,
    /// Answer as https://NAME.vault.azure.net:PORT (or NAME.managedhsm.azure.net): the certificate and key ids carry
    /// that name; clients map it to 127.0.0.1 and can keep verifying the challenge resource. Repeat it to serve
    /// several vaults (each on its own port, with its own keys and limits) behind one tenant and token endpoint.
    #[arg(long, value_name = "NAME")]
    name: Vec<String>,
    /// Also serve a Managed HSM of this name behind the same tenant (repeatable; beside --name vaults).
    #[arg(long, value_name = "NAME")]
    hsm_name: Vec<String>,
    /// Also serve N unnamed vaults of the same kind (https://127.0.0.1:PORT each), behind the same tenant.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=32))]
    more_vaults: u8,
    /// Allow a non-loopback listen address.
    #[arg(long)]
    allow_remote: bool,
    /// Inject faults into vault requests: e.g. 429=0.2,503=0.1,drop=0.05,latency=50ms,retry-after=1 (shares of
    /// requests; `drop` processes the request, then breaks the connection before the response body; `substitute`
    /// keeps a fresh key instead of an imported one; `methods=PUT+POST` limits faults to those methods; `seed=N`
    /// makes them repeatable).
    #[arg(long, value_name = "SPEC")]
    faults: Option<byok_emulator::Faults>,
    /// Enforce service limits: `azure` (Key Vault's published table; with --managed-hsm, key creation at
    /// --limits-capacity per 10 s), or a JSON table FILE (docs/emulator.md). Beyond them: 429 with Retry-After.
    #[arg(long, value_name = "azure|FILE")]
    limits: Option<String>,
    /// Run the limits' clock K times faster (tests: a 10 s window lasts 10/K s).
    #[arg(long, value_name = "K", default_value_t = 1.0, requires = "limits")]
    limits_scale: f64,
    /// With --managed-hsm --limits azure: key creations and imports per 10 s.
    #[arg(long, value_name = "N", default_value_t = 10, requires = "limits")]
    limits_capacity: u32,
}

/// The limits the flags ask for, for a vault (`managed_hsm`: a Managed HSM).
fn limits(args: &Args, managed_hsm: bool) -> anyhow::Result<Option<byok_emulator::Limits>> {
    let Some(spec) = &args.limits else { return Ok(None) };
    let mut limits = match (spec.as_str(), managed_hsm) {
        ("azure", false) => byok_emulator::Limits::key_vault(),
        ("azure", true) => byok_emulator::Limits::managed_hsm(args.limits_capacity),
        (file, _) => {
            let text = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("--limits {file}: {e}"))?;
            byok_emulator::Limits::from_json(&text).map_err(|e| anyhow::anyhow!("--limits {file}: {e}"))?
        }
    };
    if args.limits_scale != 1.0 {
        limits.scale = args.limits_scale;
    }
    Ok(Some(limits))
}

/// Every vault the flags name (`--name` ones first), the same faults and kind of limits for each.
fn config(args: &Args) -> anyhow::Result<byok_emulator::Config> {
    let faults = args.faults.clone().unwrap_or_default();
    let named = args.name.iter().map(|n| (Some(n.clone()), args.managed_hsm));
    let hsms = args.hsm_name.iter().map(|n| (Some(n.clone()), true));
    let unnamed = (0..args.more_vaults).map(|_| (None, args.managed_hsm));
    let mut vaults: Vec<_> = named.chain(hsms).collect();
    if vaults.is_empty() {
        vaults.push((None, args.managed_hsm));
    }
    vaults.extend(unnamed);
    let (name, managed_hsm) = vaults.remove(0);
    let mut config = byok_emulator::Config::new(args.state_dir.clone());
    config.listen = args.listen;
    config.managed_hsm = managed_hsm;
    config.allow_remote = args.allow_remote;
    config.faults = faults.clone();
    config.limits = limits(args, managed_hsm)?;
    config.name = name;
    for (name, managed_hsm) in vaults {
        let mut vault = byok_emulator::VaultConfig::new(managed_hsm);
        vault.name = name;
        vault.faults = faults.clone();
        vault.limits = limits(args, managed_hsm)?;
        config.more_vaults.push(vault);
    }
    Ok(config)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "byok-emulator: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<()> = runtime.block_on(async {
        let config = config(&args)?;
        let running = byok_emulator::start(config).await?;
        let line = serde_json::to_string(&running.info)?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
        drop(out);
        tokio::select! {
            r = running.wait() => r.map_err(anyhow::Error::new),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "byok-emulator: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
