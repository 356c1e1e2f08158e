//! `cargo xtask demo`: the whole BYOK transfer, narrated, on throwaway parts: a local Managed HSM (`byok-emulator`)
//! stands in for Azure, a fresh NSS softokn database for the on-premises HSM. `byok-cli full-transfer` does the
//! four steps and proves the vault holds the HSM's key; the transfer record is printed at the end.

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::util::{self, apt_install, build_bin, build_cli, fresh_dir, root};

fn step(n: u32, text: &str) {
    println!("\n== {n}. {text}");
}

/// The local vault, stopped when dropped.
struct LocalVault(Child);

impl Drop for LocalVault {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn run() -> Result<()> {
    if !Path::new(crate::hsm::NSS_MODULE).exists() || !util::works(Command::new("certutil").arg("-H")) {
        apt_install(&["libnss3", "libnss3-tools"])?;
    }
    let cli = build_cli(false)?;
    let emulator = build_bin("byok-emulator")?;
    let dir = root().join("target/demo");
    fresh_dir(&dir)?;
    let p = |name: &str| dir.join(name);

    step(
        1,
        "A local Managed HSM over HTTPS (byok-emulator) stands in for Azure: its own CA, an Entra-like token \
         endpoint, and a BYOK import that really unwraps and checks what it is sent.",
    );
    let mut child = Command::new(&emulator)
        .arg("--state-dir")
        .arg(p("vault"))
        .arg("--managed-hsm")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start byok-emulator")?;
    let stdout = child.stdout.take().context("byok-emulator's stdout")?;
    let vault = LocalVault(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let info: serde_json::Value =
        serde_json::from_str(&line).with_context(|| format!("byok-emulator printed no address: {line:?}"))?;
    let field = |k: &str| {
        info[k]
            .as_str()
            .map(str::to_owned)
            .context("the local vault's address line")
    };
    let (vault_url, ca_file) = (field("vault_url")?, field("ca_file")?);
    // The local Managed HSM signs its attestations with a test root of its own: trusted only when named.
    let root = field("attestation_root")?;
    println!("vault {vault_url}, CA {ca_file}; a service principal's secret in AZURE_CLIENT_SECRET, as in CI");

    step(
        2,
        "A throwaway HSM: a new NSS softokn database. Which wrap path produces what Azure expects?",
    );
    let nss_init = crate::hsm::nss_database(&p("hsm"))?;
    let byok = |args: &[&str]| -> Result<Command> {
        let mut c = Command::new(&cli);
        c.args(args)
            .env("BYOK_PKCS11_MODULE", crate::hsm::NSS_MODULE)
            .env("BYOK_PKCS11_INIT_ARGS", &nss_init)
            .env("AZURE_TENANT_ID", field("tenant_id")?)
            .env("AZURE_CLIENT_ID", field("client_id")?)
            .env("AZURE_CLIENT_SECRET", field("client_secret")?)
            .env("AZURE_AUTHORITY_HOST", field("authority_host")?);
        Ok(c)
    };
    let token = "pkcs11:token=NSS%20Certificate%20DB";
    util::exec(&mut byok(&["hsm", "info", "--token", token])?)?;

    step(
        3,
        "The key to move: an EC P-256 signing key generated inside the HSM (extractable only wrapped).",
    );
    util::exec(&mut byok(&[
        "hsm",
        "generate",
        "--token",
        token,
        "--kty",
        "EC",
        "--curve",
        "P-256",
        "--label",
        "app-signing-key",
    ])?)?;

    step(
        4,
        "byok-cli full-transfer: create the import-only KEK, download it, verify its attestation (the local HSM's \
         test root, named by --attestation-root), wrap inside the HSM, import, verify the key and its attestation.",
    );
    let record = p("app-signing-key.record.json").display().to_string();
    let byok_file = p("app-signing-key.byok").display().to_string();
    util::exec(&mut byok(&[
        "full-transfer",
        "--vault-url",
        &vault_url,
        "--ca-file",
        &ca_file,
        "--attestation-root",
        &root,
        "--kek-name",
        "byok-kek",
        "--name",
        "app-signing-key",
        "--key",
        &format!("{token};object=app-signing-key"),
        "--tags",
        "owner=demo",
        "--keep-byok",
        &byok_file,
        "--record",
        &record,
    ])?)?;

    step(
        5,
        "And an AES-256 key (Managed HSM only), verified by encrypting one random block on both sides.",
    );
    util::exec(&mut byok(&[
        "hsm",
        "generate",
        "--token",
        token,
        "--kty",
        "oct",
        "--size",
        "256",
        "--label",
        "app-data-key",
    ])?)?;
    util::exec(&mut byok(&[
        "full-transfer",
        "--vault-url",
        &vault_url,
        "--ca-file",
        &ca_file,
        "--attestation-root",
        &root,
        "--kek-name",
        "byok-kek",
        "--name",
        "app-data-key",
        "--key",
        &format!("{token};object=app-data-key"),
    ])?)?;

    step(
        6,
        "The transfer record of the first key, for the key-ceremony file (no secrets in it).",
    );
    let text = std::fs::read_to_string(&record).context("the record was not written")?;
    println!("{text}");
    let parsed: serde_json::Value = serde_json::from_str(&text)?;
    if parsed["verification"]["result"] != "verified" {
        bail!("the transfer was not verified: {}", parsed["verification"]);
    }
    drop(vault);
    println!(
        "The vault holds the HSM's key; it never existed in plaintext outside an HSM. Files are in {}.\n\
         Against Azure: the same command with --vault-name or --hsm-name (docs/runbook.md).",
        dir.display()
    );
    Ok(())
}
