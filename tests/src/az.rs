//! The real Azure CLI against the local vault (#18): the BYOK runbook in today's az syntax, as an operator runs it —
//! a custom cloud, `az login`, `az keyvault key create --ops import`, `download`, `byok-cli wrap` (from a key file and
//! in the HSM), `az keyvault key import --byok-file`, `show`, `sign`, in Managed HSM mode an AES key and a vault-side
//! `decrypt`, and `byok-cli full-transfer --auth cli` riding on az's login. Every step is an assertion on what az
//! printed or what the vault holds; OpenSSL judges the signatures.
//!
//! az reaches the vault by name, as it reaches Azure: `byok-emulator --listen 127.0.0.1:443 --name N` and a line in
//! `/etc/hosts` that maps `N.vault.azure.net` (or `.managedhsm.azure.net`) to 127.0.0.1, which this module adds and
//! removes (its own line only), so it needs root and a free port 443.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, ensure};
use base64::Engine as _;
use byok_encoding::{Curve, KekPublicKey, TargetPublicKey};
use serde_json::{Value, json};

use crate::command::capture;
use crate::emulator::Emulator;
use crate::hosts::HostsEntry;
use crate::interop::{Report, Tools};

/// The custom cloud az is pointed at.
const CLOUD: &str = "byoklocal";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    KeyVault,
    ManagedHsm,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Self::KeyVault => "Key Vault",
            Self::ManagedHsm => "Managed HSM",
        }
    }

    fn host(self, name: &str) -> String {
        match self {
            Self::KeyVault => format!("{name}.vault.azure.net"),
            Self::ManagedHsm => format!("{name}.managedhsm.azure.net"),
        }
    }

    /// How az and byok-cli name the vault.
    fn selector(self) -> &'static str {
        match self {
            Self::KeyVault => "--vault-name",
            Self::ManagedHsm => "--hsm-name",
        }
    }
}

/// Runs the rehearsal in both modes with `tools.az` (the azure-cli package, which `cargo xtask interop` installs),
/// in `dir`; one check per step, and a mode stops at its first failed step.
pub fn run(tools: &Tools, dir: &Path) -> Result<Report> {
    let mut report = Report::default();
    for mode in [Mode::KeyVault, Mode::ManagedHsm] {
        let mode_dir = dir.join(match mode {
            Mode::KeyVault => "vault",
            Mode::ManagedHsm => "mhsm",
        });
        std::fs::create_dir_all(&mode_dir)?;
        let mut steps = Steps {
            mode,
            report: &mut report,
        };
        if let Err(e) = rehearse(tools, &mode_dir, mode, &mut steps)
            && e.downcast_ref::<Recorded>().is_none()
        {
            report
                .failed
                .push(format!("az against the local {}: {e:#}", mode.label()));
        }
    }
    Ok(report)
}

/// A step's failure, already in the report.
#[derive(Debug)]
struct Recorded;

impl std::fmt::Display for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(recorded)")
    }
}

impl std::error::Error for Recorded {}

struct Steps<'r> {
    mode: Mode,
    report: &'r mut Report,
}

impl Steps<'_> {
    fn run<T>(&mut self, name: &str, step: impl FnOnce() -> Result<T>) -> Result<T> {
        match step() {
            Ok(v) => {
                self.report.passed += 1;
                Ok(v)
            }
            Err(e) => {
                self.report
                    .failed
                    .push(format!("az against the local {}: {name}: {e:#}", self.mode.label()));
                Err(anyhow!(Recorded))
            }
        }
    }
}

/// One mode, from an empty directory to a transfer az confirms.
fn rehearse(tools: &Tools, dir: &Path, mode: Mode, steps: &mut Steps<'_>) -> Result<()> {
    let name = format!("byokaz{}", std::process::id());
    let host = mode.host(&name);
    let _hosts = HostsEntry::add(Path::new("/etc/hosts"), &host)?;
    let mut args = vec!["--listen", "127.0.0.1:443", "--name", &name];
    if mode == Mode::ManagedHsm {
        args.push("--managed-hsm");
    }
    let emulator = Emulator::start(&tools.emulator, &dir.join("state"), &args)?;
    let az = Az {
        exe: tools.az.clone(),
        config: dir.join("azure-config"),
        ca: PathBuf::from(emulator.field("ca_file")?),
        vault: (mode.selector(), name.clone()),
        attestation_root: emulator.info["attestation_root"].as_str().map(PathBuf::from),
    };
    let session = Session {
        tools,
        az: &az,
        dir,
        host: &host,
    };
    steps.run("az login --service-principal against a custom cloud", || {
        login(&az, &emulator, dir)
    })?;
    let kek = steps.run("az keyvault key create --kty RSA-HSM --size 4096 --ops import", || {
        session.create_kek()
    })?;
    let kek_pem = steps.run("az keyvault key download (the KEK)", || session.download_kek(&kek))?;
    let kek = Kek {
        kid: kek.kid,
        pem: kek_pem,
    };
    session.rsa_from_a_file(steps, &kek)?;
    session.ec_from_the_hsm(steps, &kek)?;
    if mode == Mode::ManagedHsm {
        session.aes(steps, &kek)?;
    }
    steps.run(
        "byok-cli full-transfer --auth cli (az's login), confirmed by az",
        || session.full_transfer(&kek),
    )
}

/// `az` with its own configuration directory, trusting the local vault's CA, for one vault.
struct Az {
    exe: PathBuf,
    config: PathBuf,
    ca: PathBuf,
    /// `--vault-name N` or `--hsm-name N`.
    vault: (&'static str, String),
    /// The local Managed HSM's attestation root (its ready line names it).
    attestation_root: Option<PathBuf>,
}

impl Az {
    fn command(&self) -> Command {
        let mut c = Command::new(&self.exe);
        c.env("AZURE_CONFIG_DIR", &self.config)
            .env("REQUESTS_CA_BUNDLE", &self.ca)
            .env("AZURE_CORE_COLLECT_TELEMETRY", "false")
            .env("AZURE_CORE_ONLY_SHOW_ERRORS", "true");
        c
    }

    /// `az ARGS --output json`, parsed.
    fn json(&self, args: &[&str]) -> Result<Value> {
        let out = capture(self.command().args(args).args(["--output", "json"]))?;
        serde_json::from_slice(&out).with_context(|| format!("az printed no JSON: {}", String::from_utf8_lossy(&out)))
    }

    /// `az keyvault key VERB --vault-name N (or --hsm-name N) ARGS`, parsed.
    fn key(&self, verb: &str, args: &[&str]) -> Result<Value> {
        let mut all = vec!["keyvault", "key", verb, self.vault.0, &self.vault.1];
        all.extend(args);
        self.json(&all)
    }

    /// `az keyvault key download … --file FILE`, which prints nothing.
    fn download(&self, name: &str, file: &Path) -> Result<()> {
        let file = path(file);
        let args = ["--name", name, "--encoding", "PEM", "--file", &file];
        capture(
            self.command()
                .args(["keyvault", "key", "download", self.vault.0, &self.vault.1])
                .args(args),
        )?;
        Ok(())
    }
}

/// Registers the local vault as a custom cloud, switches instance discovery off and signs in as its client.
fn login(az: &Az, emulator: &Emulator, dir: &Path) -> Result<()> {
    let authority = emulator.field("authority_host")?;
    let cloud = json!({
        "endpoints": {
            "activeDirectory": authority,
            "activeDirectoryResourceId": emulator.field("audience")?,
            "resourceManager": format!("{authority}/"),
            "management": format!("{authority}/"),
            "activeDirectoryGraphResourceId": format!("{authority}/"),
            "microsoftGraphResourceId": format!("{authority}/"),
        },
        "suffixes": { "keyvaultDns": ".vault.azure.net", "mhsmDns": ".managedhsm.azure.net" },
    });
    let cloud_file = dir.join("cloud.json");
    std::fs::write(&cloud_file, serde_json::to_vec_pretty(&cloud)?)?;
    let at_file = format!("@{}", cloud_file.display());
    let register = [
        "cloud",
        "register",
        "--name",
        CLOUD,
        "--cloud-config",
        &at_file,
        "--skip-endpoint-discovery",
    ];
    capture(az.command().args(register))?;
    capture(az.command().args(["cloud", "set", "--name", CLOUD]))?;
    capture(az.command().args(["config", "set", "core.instance_discovery=false"]))?;
    let (tenant, client) = (emulator.field("tenant_id")?, emulator.field("client_id")?);
    let secret = emulator.field("client_secret")?;
    let mut cmd = az.command();
    cmd.args(["login", "--service-principal", "--username", client, "--tenant", tenant])
        .args(["--allow-no-subscriptions", "--output", "json", "--password", secret]);
    let out = cmd.output().context("cannot start az")?;
    // The secret is the local vault's throwaway one, but it still stays out of messages.
    ensure!(
        out.status.success(),
        "az login failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).replace(secret, "***")
    );
    let accounts: Value = serde_json::from_slice(&out.stdout).context("az login printed no JSON")?;
    let account = &accounts[0];
    ensure!(
        account["tenantId"] == tenant
            && account["user"]["name"] == client
            && account["user"]["type"] == "servicePrincipal"
            && account["cloudName"] == CLOUD,
        "az login signed in as something else: {accounts}"
    );
    Ok(())
}

/// The KEK as az created it.
struct CreatedKek {
    kid: String,
    modulus: Vec<u8>,
}

/// The KEK as byok-cli wrap reads it.
struct Kek {
    kid: String,
    pem: PathBuf,
}

/// What every step of one mode shares.
struct Session<'a> {
    tools: &'a Tools,
    az: &'a Az,
    dir: &'a Path,
    host: &'a str,
}

impl Session<'_> {
    fn create_kek(&self) -> Result<CreatedKek> {
        let key = self.az.key(
            "create",
            &["--name", "kek", "--kty", "RSA-HSM", "--size", "4096", "--ops", "import"],
        )?;
        let kid = text(&key["key"]["kid"])?;
        ensure!(
            kid.starts_with(&format!("https://{}/keys/kek/", self.host)),
            "the KEK's id {kid} is not a key of https://{} (without a port, as Azure writes it)",
            self.host
        );
        ensure!(
            key["key"]["kty"] == "RSA-HSM",
            "the KEK is {}, not RSA-HSM",
            key["key"]["kty"]
        );
        ensure!(
            key["key"]["keyOps"] == json!(["import"]),
            "the KEK's operations are {}",
            key["key"]["keyOps"]
        );
        let modulus = bytes(&key["key"]["n"])?;
        ensure!(
            modulus.len() == 512,
            "the KEK's modulus has {} bytes, not 512",
            modulus.len()
        );
        Ok(CreatedKek { kid, modulus })
    }

    fn download_kek(&self, kek: &CreatedKek) -> Result<PathBuf> {
        let pem = self.dir.join("kek.pem");
        self.az.download("kek", &pem)?;
        let public = KekPublicKey::parse(&std::fs::read(&pem)?).context("az's KEK download")?;
        ensure!(
            public.modulus() == kek.modulus.as_slice(),
            "the downloaded KEK is not the key az created"
        );
        Ok(pem)
    }

    /// An RSA-2048 key made by OpenSSL, wrapped by `byok-cli wrap --key-file`, imported, shown, signing.
    fn rsa_from_a_file(&self, steps: &mut Steps<'_>, kek: &Kek) -> Result<()> {
        let source = self.dir.join("rsa.pem");
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            &path(&source),
        ])?;
        let blob = steps.run("byok-cli wrap --key-file (RSA-2048)", || {
            self.wrap(kek, &["--allow-software-key", "--key-file", &path(&source)], "rsa")
        })?;
        steps.run("az keyvault key import --byok-file --kty RSA", || {
            let key = self.az.key(
                "import",
                &["--name", "rsa", "--byok-file", &path(&blob), "--kty", "RSA"],
            )?;
            ensure!(key["key"]["kty"] == "RSA-HSM", "imported as {}", key["key"]["kty"]);
            Ok(())
        })?;
        steps.run(
            "az keyvault key show: the source's RSA public key (OpenSSL's modulus)",
            || {
                let key = self.az.key("show", &["--name", "rsa"])?;
                let modulus = String::from_utf8(openssl(&["rsa", "-in", &path(&source), "-noout", "-modulus"])?)?;
                let vault = hex(&bytes(&key["key"]["n"])?);
                ensure!(
                    modulus
                        .trim()
                        .strip_prefix("Modulus=")
                        .is_some_and(|m| m.eq_ignore_ascii_case(&vault)),
                    "the vault's modulus differs from the source key's"
                );
                ensure!(key["key"]["e"] == "AQAB", "the vault's exponent is {}", key["key"]["e"]);
                Ok(())
            },
        )?;
        steps.run(
            "az keyvault key sign RS256, verified by OpenSSL with the source key",
            || {
                let public = self.dir.join("rsa.pub.pem");
                openssl(&["pkey", "-in", &path(&source), "-pubout", "-out", &path(&public)])?;
                self.sign_and_verify("rsa", "RS256", &public, |s| Ok(s.to_vec()))
            },
        )
    }

    /// An EC P-256 key made in the NSS token, wrapped there, imported with `--kty EC --curve P-256`, signing.
    fn ec_from_the_hsm(&self, steps: &mut Steps<'_>, kek: &Kek) -> Result<()> {
        let (uri, hsm_sha256) = steps.run("byok-cli hsm generate (EC P-256 in the NSS token)", || {
            self.generate("EC", &["--curve", "P-256"])
        })?;
        let blob = steps.run("byok-cli wrap --key pkcs11:… (in the HSM)", || {
            self.wrap(kek, &["--key", &uri], "ec")
        })?;
        steps.run("az keyvault key import --byok-file --kty EC --curve P-256", || {
            let args = [
                "--name",
                "ec",
                "--byok-file",
                &path(&blob),
                "--kty",
                "EC",
                "--curve",
                "P-256",
            ];
            let key = self.az.key("import", &args)?;
            ensure!(
                key["key"]["kty"] == "EC-HSM" && key["key"]["crv"] == "P-256",
                "imported as {} {}",
                key["key"]["kty"],
                key["key"]["crv"]
            );
            Ok(())
        })?;
        let public = steps.run("az keyvault key show: the HSM's public key", || {
            let key = self.az.key("show", &["--name", "ec"])?;
            let (x, y) = (bytes(&key["key"]["x"])?, bytes(&key["key"]["y"])?);
            let public = TargetPublicKey::from_ec_components(Curve::P256, &x, &y)?;
            ensure!(
                public.fingerprint_sha256() == hsm_sha256,
                "the vault holds another public key than the HSM's"
            );
            Ok(public)
        })?;
        steps.run(
            "az keyvault key sign ES256, verified by OpenSSL with the HSM's public key",
            || {
                let pem = self.dir.join("ec.pub.pem");
                self.az.download("ec", &pem)?;
                let der = openssl(&["pkey", "-pubin", "-in", &path(&pem), "-outform", "DER"])?;
                ensure!(
                    der == public.to_spki_der(),
                    "az download gave another key than the HSM's"
                );
                self.sign_and_verify("ec", "ES256", &pem, ecdsa_der)
            },
        )
    }

    /// Managed HSM only: an AES-256 key, imported with `--kty oct`, decrypting what OpenSSL encrypted with it.
    fn aes(&self, steps: &mut Steps<'_>, kek: &Kek) -> Result<()> {
        let key_file = self.dir.join("aes.bin");
        openssl(&["rand", "-out", &path(&key_file), "32"])?;
        let blob = steps.run("byok-cli wrap --key-file --kty oct (AES-256)", || {
            self.wrap(
                kek,
                &["--allow-software-key", "--kty", "oct", "--key-file", &path(&key_file)],
                "aes",
            )
        })?;
        steps.run("az keyvault key import --byok-file --kty oct", || {
            let key = self.az.key(
                "import",
                &["--name", "aes", "--byok-file", &path(&blob), "--kty", "oct"],
            )?;
            ensure!(key["key"]["kty"] == "oct-HSM", "imported as {}", key["key"]["kty"]);
            ensure!(key["key"]["k"].is_null(), "the vault showed the AES key's material");
            Ok(())
        })?;
        steps.run(
            "az keyvault key decrypt A256CBC in the HSM: OpenSSL's ciphertext opens",
            || {
                let key = hex(&std::fs::read(&key_file)?);
                let plaintext = self.dir.join("aes.plain");
                let ciphertext = self.dir.join("aes.cipher");
                openssl(&["rand", "-out", &path(&plaintext), "32"])?;
                let iv = "000102030405060708090a0b0c0d0e0f";
                let (p, c) = (path(&plaintext), path(&ciphertext));
                openssl(&[
                    "enc",
                    "-aes-256-cbc",
                    "-nopad",
                    "-K",
                    &key,
                    "-iv",
                    iv,
                    "-in",
                    &p,
                    "-out",
                    &c,
                ])?;
                let value = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&ciphertext)?);
                let args = ["--name", "aes", "--algorithm", "A256CBC", "--value", &value, "--iv", iv];
                let result = self.az.key("decrypt", &args)?;
                // az holds no key material (`k` is never shown), so a matching plaintext comes from the vault.
                ensure!(
                    bytes(&result["result"])? == std::fs::read(&plaintext)?,
                    "the vault's plaintext differs from OpenSSL's"
                );
                Ok(())
            },
        )
    }

    /// `byok-cli hsm generate` in the NSS token: the key's URI and public key SHA-256.
    fn generate(&self, kty: &str, extra: &[&str]) -> Result<(String, String)> {
        let label = format!(
            "az-{}-{kty}-{}",
            self.host.split('.').nth(1).unwrap_or("vault"),
            std::process::id()
        );
        let token = "pkcs11:token=NSS%20Certificate%20DB";
        let mut args = vec![
            "--output", "json", "hsm", "generate", "--token", token, "--label", &label, "--kty", kty,
        ];
        args.extend(extra);
        let key: Value = serde_json::from_slice(&capture(&mut self.cli(&args)?)?)?;
        Ok((text(&key["uri"])?, text(&key["public_key_sha256"])?))
    }

    /// `byok-cli -q wrap` to the KEK az downloaded; the blob's path.
    fn wrap(&self, kek: &Kek, source: &[&str], name: &str) -> Result<PathBuf> {
        let blob = self.dir.join(format!("{name}.byok"));
        let (pem, out) = (path(&kek.pem), path(&blob));
        let mut args = vec!["-q", "wrap", "--kek-file", &pem, "--kek-kid", &kek.kid, "--out", &out];
        args.extend(source);
        capture(&mut self.cli(&args)?)?;
        Ok(blob)
    }

    /// `byok-cli ARGS` with the NSS token's module.
    fn cli(&self, args: &[&str]) -> Result<Command> {
        let env: Value = serde_json::from_slice(
            &std::fs::read(&self.tools.hsm_env).context("the test tokens are missing: run `cargo xtask setup`")?,
        )?;
        let mut cmd = Command::new(&self.tools.cli);
        cmd.args(args)
            .arg("--pkcs11-module")
            .arg(text(&env["nss"]["module"])?)
            .arg("--pkcs11-init-args")
            .arg(text(&env["nss"]["init_args"])?)
            .env("NO_COLOR", "1");
        Ok(cmd)
    }

    /// Has the vault sign SHA-256("…") with key `name`; OpenSSL verifies with `public`, and refuses another message.
    fn sign_and_verify(
        &self,
        name: &str,
        algorithm: &str,
        public: &Path,
        to_der: impl Fn(&[u8]) -> Result<Vec<u8>>,
    ) -> Result<()> {
        let message = self.dir.join(format!("{name}.message"));
        std::fs::write(&message, format!("signed by {name} in the local vault through az"))?;
        let digest = openssl(&["dgst", "-sha256", "-binary", &path(&message)])?;
        let digest = base64::engine::general_purpose::STANDARD.encode(digest);
        let signed = self
            .az
            .key("sign", &["--name", name, "--algorithm", algorithm, "--digest", &digest])?;
        ensure!(
            signed["algorithm"] == algorithm,
            "az signed with {}",
            signed["algorithm"]
        );
        let signature = self.dir.join(format!("{name}.sig"));
        std::fs::write(&signature, to_der(&bytes(&signed["signature"])?)?)?;
        let verify = |msg: &Path| {
            Command::new("openssl")
                .args([
                    "dgst",
                    "-sha256",
                    "-verify",
                    &path(public),
                    "-signature",
                    &path(&signature),
                ])
                .arg(msg)
                .output()
        };
        let ok = verify(&message)?;
        ensure!(
            ok.status.success() && String::from_utf8_lossy(&ok.stdout).contains("Verified OK"),
            "OpenSSL does not verify the vault's signature: {}",
            String::from_utf8_lossy(&ok.stdout)
        );
        let other = self.dir.join(format!("{name}.other"));
        std::fs::write(&other, "another message")?;
        ensure!(
            !verify(&other)?.status.success(),
            "OpenSSL verified the signature over another message"
        );
        Ok(())
    }

    /// A transfer from the NSS token with `--auth cli` into the vault az named, reusing az's KEK; az shows its tag.
    fn full_transfer(&self, kek: &Kek) -> Result<()> {
        let (uri, hsm_sha256) = self.generate("RSA", &["--size", "2048"])?;
        let ca = path(&self.az.ca);
        let (selector, vault) = (self.az.vault.0, self.az.vault.1.as_str());
        let mut args = vec![
            "--output",
            "json",
            "full-transfer",
            selector,
            vault,
            "--auth",
            "cli",
            "--ca-file",
            &ca,
            "--kek-name",
            "kek",
            "--name",
            "transferred",
            "--key",
            &uri,
        ];
        let root = self.az.attestation_root.as_deref().map(path);
        if let Some(root) = &root {
            args.extend(["--attestation-root", root]);
        }
        let mut cmd = self.cli(&args)?;
        let az_dir = self.az.exe.parent().context("az's directory")?;
        let search = std::env::join_paths(
            std::iter::once(az_dir.to_path_buf())
                .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
        )?;
        cmd.env("PATH", search)
            .env("AZURE_CONFIG_DIR", &self.az.config)
            .env("REQUESTS_CA_BUNDLE", &self.az.ca);
        for var in [
            "AZURE_TENANT_ID",
            "AZURE_CLIENT_ID",
            "AZURE_CLIENT_SECRET",
            "AZURE_AUTHORITY_HOST",
        ] {
            cmd.env_remove(var);
        }
        let record: Value = serde_json::from_slice(&capture(&mut cmd)?)?;
        ensure!(
            record["verification"]["result"] == "verified",
            "not verified: {}",
            record["verification"]
        );
        // The Managed HSM proves where az's KEK and the imported key live; Key Vault cannot, and the record says so.
        let attested = if root.is_some() { "verified" } else { "not-attestable" };
        ensure!(
            record["attestation"]["status"] == attested,
            "the record's attestation is not {attested}: {}",
            record["attestation"]["detail"]
        );
        ensure!(
            record["kek"]["kid"] == kek.kid.as_str(),
            "byok did not reuse az's KEK: {}",
            record["kek"]
        );
        ensure!(
            record["key"]["public_key_sha256"] == hsm_sha256.as_str(),
            "the record names another key"
        );
        let shown = self.az.key("show", &["--name", "transferred"])?;
        ensure!(
            shown["key"]["kid"] == record["key"]["kid"] && shown["tags"]["byok-transfer"] == record["transfer_id"],
            "az shows another key or tag than the record's: {} {}",
            shown["key"]["kid"],
            shown["tags"]
        );
        Ok(())
    }
}

/// The OpenSSL CLI's stdout.
fn openssl(args: &[&str]) -> Result<Vec<u8>> {
    capture(Command::new("openssl").args(args))
}

/// A JWS ECDSA signature (`r‖s`) as the DER `SEQUENCE { INTEGER r, INTEGER s }` OpenSSL verifies.
fn ecdsa_der(raw: &[u8]) -> Result<Vec<u8>> {
    ensure!(raw.len() == 64, "an ES256 signature of {} bytes, not 64", raw.len());
    let integer = |half: &[u8]| {
        let trimmed: Vec<u8> = half.iter().copied().skip_while(|b| *b == 0).collect();
        let mut body = if trimmed.first().is_some_and(|b| b & 0x80 != 0) || trimmed.is_empty() {
            vec![0]
        } else {
            Vec::new()
        };
        body.extend(trimmed);
        let mut out = vec![0x02, body.len() as u8];
        out.extend(body);
        out
    };
    let (r, s) = (integer(&raw[..32]), integer(&raw[32..]));
    let mut der = vec![0x30, (r.len() + s.len()) as u8];
    der.extend(r);
    der.extend(s);
    Ok(der)
}

/// A JSON string.
fn text(v: &Value) -> Result<String> {
    v.as_str()
        .map(str::to_owned)
        .with_context(|| format!("expected a string, found {v}"))
}

/// Bytes az printed: standard base64 (az's output) or base64url.
fn bytes(v: &Value) -> Result<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let s = v.as_str().with_context(|| format!("expected base64, found {v}"))?;
    STANDARD
        .decode(s)
        .or_else(|_| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')))
        .map_err(|e| anyhow!("not base64 ({e}): {s}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::ecdsa_der;

    #[test]
    fn ecdsa_signatures_become_der_with_minimal_integers() {
        let mut raw = vec![0u8; 64];
        raw[1] = 0x7f; // r: one leading zero to drop, no sign byte
        raw[32] = 0x80; // s: high bit set, needs a zero in front
        let der = ecdsa_der(&raw).expect("64 bytes");
        assert_eq!(&der[..4], &[0x30, 33 + 35, 0x02, 31]);
        assert_eq!(der[4], 0x7f);
        assert_eq!(&der[35..39], &[0x02, 33, 0x00, 0x80]);
        assert!(ecdsa_der(&raw[..63]).is_err());
    }
}
