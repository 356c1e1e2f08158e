//! Independent judges: the OpenSSL CLI and Python `cryptography` open what `byok-cli wrap` writes, and byok opens
//! what Python makes. Matrix: KEK 2048/3072/4096 × targets RSA 2048/3072/4096, EC P-256/P-384/P-521/P-256K,
//! AES 128/192/256. All key material is made fresh by OpenSSL for each run. Then the official Python SDK against
//! the local Key Vault and Managed HSM, `full-transfer`s that it confirms, and the real Azure CLI through the BYOK
//! runbook ([`crate::az`]). `cargo xtask interop` installs the
//! tools, builds the binaries and calls [`run`].

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use byok_blob::ByokBlob;
use byok_encoding::{Kty, TargetKey};
use byok_wrap::KekPrivateKey;
use serde_json::json;

use crate::command::capture;
use crate::emulator::Emulator;

/// What the suite runs: the binaries under test, the judges' Python, and the test tokens.
#[derive(Clone, Debug)]
pub struct Tools {
    /// `byok-cli`.
    pub cli: PathBuf,
    /// `byok-emulator`.
    pub emulator: PathBuf,
    /// A Python with `cryptography` and the Azure SDK installed.
    pub python: PathBuf,
    /// `target/hsm/env.json`, which `cargo xtask setup` writes.
    pub hsm_env: PathBuf,
    /// The Azure CLI (`az`, from the azure-cli Python package).
    pub az: PathBuf,
}

/// How the suite went.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Checks that passed.
    pub passed: usize,
    /// One line per check that failed.
    pub failed: Vec<String>,
}

/// The Python scripts beside this crate.
fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop").join(name)
}

const KID_BASE: &str = "https://interop.vault.azure.net/keys";
const VERSION: &str = "00112233445566778899aabbccddeeff";

struct Target {
    name: &'static str,
    kty: Kty,
    curve: Option<&'static str>,
    /// How OpenSSL makes it; `None` for AES (random bytes).
    genpkey: Option<&'static [&'static str]>,
    /// Hand byok the traditional form (PKCS#1 / SEC1) instead of PKCS#8.
    traditional: bool,
    aes_len: usize,
}

const TARGETS: [Target; 10] = [
    Target {
        name: "rsa2048",
        kty: Kty::Rsa,
        curve: None,
        genpkey: Some(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
        traditional: false,
        aes_len: 0,
    },
    Target {
        name: "rsa3072",
        kty: Kty::Rsa,
        curve: None,
        genpkey: Some(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"]),
        traditional: true,
        aes_len: 0,
    },
    Target {
        name: "rsa4096",
        kty: Kty::Rsa,
        curve: None,
        genpkey: Some(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4096"]),
        traditional: false,
        aes_len: 0,
    },
    Target {
        name: "ec-p256",
        kty: Kty::Ec,
        curve: Some("P-256"),
        genpkey: Some(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
        traditional: false,
        aes_len: 0,
    },
    Target {
        name: "ec-p384",
        kty: Kty::Ec,
        curve: Some("P-384"),
        genpkey: Some(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"]),
        traditional: true,
        aes_len: 0,
    },
    Target {
        name: "ec-p521",
        kty: Kty::Ec,
        curve: Some("P-521"),
        genpkey: Some(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"]),
        traditional: false,
        aes_len: 0,
    },
    Target {
        name: "ec-p256k",
        kty: Kty::Ec,
        curve: Some("P-256K"),
        genpkey: Some(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:secp256k1"]),
        traditional: false,
        aes_len: 0,
    },
    Target {
        name: "aes128",
        kty: Kty::Oct,
        curve: None,
        genpkey: None,
        traditional: false,
        aes_len: 16,
    },
    Target {
        name: "aes192",
        kty: Kty::Oct,
        curve: None,
        genpkey: None,
        traditional: false,
        aes_len: 24,
    },
    Target {
        name: "aes256",
        kty: Kty::Oct,
        curve: None,
        genpkey: None,
        traditional: false,
        aes_len: 32,
    },
];

const KEK_BITS: [u32; 3] = [2048, 3072, 4096];

fn openssl() -> Command {
    Command::new("openssl")
}

/// Files made for one target: what byok reads, and the plaintext every judge must find.
struct Made {
    input: PathBuf,
    expected: PathBuf,
}

fn make_keys(dir: &Path) -> Result<Vec<Made>> {
    for bits in KEK_BITS {
        let private = dir.join(format!("kek{bits}.pem"));
        capture(
            openssl()
                .args([
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    &format!("rsa_keygen_bits:{bits}"),
                    "-out",
                ])
                .arg(&private),
        )?;
        capture(
            openssl()
                .args(["pkey", "-pubout", "-in"])
                .arg(&private)
                .arg("-out")
                .arg(dir.join(format!("kek{bits}.pub.pem"))),
        )?;
    }
    let mut made = Vec::new();
    for t in &TARGETS {
        let expected = dir.join(format!("{}.expected", t.name));
        let input = match t.genpkey {
            None => {
                capture(
                    openssl()
                        .args(["rand", "-out"])
                        .arg(&expected)
                        .arg(t.aes_len.to_string()),
                )?;
                expected.clone()
            }
            Some(args) => {
                let pem = dir.join(format!("{}.pem", t.name));
                capture(openssl().arg("genpkey").args(args).arg("-out").arg(&pem))?;
                // OpenSSL's own PKCS#8 DER of the key is the plaintext every judge must find.
                capture(
                    openssl()
                        .args(["pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in"])
                        .arg(&pem)
                        .arg("-out")
                        .arg(&expected),
                )?;
                if t.traditional {
                    let trad = dir.join(format!("{}.traditional.pem", t.name));
                    capture(
                        openssl()
                            .args(["pkey", "-traditional", "-in"])
                            .arg(&pem)
                            .arg("-out")
                            .arg(&trad),
                    )?;
                    trad
                } else {
                    pem
                }
            }
        };
        made.push(Made { input, expected });
    }
    Ok(made)
}

/// OpenSSL opens a blob (the shared judge in `byok-tests`) and must find the source key.
fn openssl_opens(kek_private: &Path, blob: &Path, expected: &Path, rsa_len: usize) -> Result<()> {
    let plaintext = crate::openssl_unwrap(blob, kek_private, rsa_len).map_err(anyhow::Error::msg)?;
    if plaintext != std::fs::read(expected)? {
        bail!("OpenSSL's plaintext differs from the source key");
    }
    Ok(())
}

/// Runs every check, with fresh keys in `dir` (which must exist and be empty). An `Err` means the suite could not
/// run; failed checks are in the report.
pub fn run(tools: &Tools, dir: &Path) -> Result<Report> {
    let (py, cli) = (&tools.python, &tools.cli);
    let made = make_keys(dir)?;

    let mut passed = 0usize;
    let mut failed: Vec<String> = Vec::new();
    let mut python_checks = Vec::new();
    let mut python_makes = Vec::new();

    // Forward: byok-cli wraps, OpenSSL and Python open.
    for bits in KEK_BITS {
        let kek_pub = dir.join(format!("kek{bits}.pub.pem"));
        let kek_private = dir.join(format!("kek{bits}.pem"));
        let kid = format!("{KID_BASE}/kek{bits}/{VERSION}");
        for (t, m) in TARGETS.iter().zip(&made) {
            let name = format!("KEK RSA-{bits} / {}", t.name);
            let blob = dir.join(format!("byok-{bits}-{}.byok", t.name));
            let mut wrap = Command::new(cli);
            wrap.args(["-q", "wrap", "--allow-software-key", "--kek-kid", &kid, "--kek-file"])
                .arg(&kek_pub)
                .arg("--key-file")
                .arg(&m.input)
                .arg("--out")
                .arg(&blob);
            if t.kty == Kty::Oct {
                wrap.args(["--kty", "oct"]);
            }
            if let Err(e) = capture(&mut wrap) {
                failed.push(format!("{name}: byok-cli wrap: {e:#}"));
                continue;
            }
            match openssl_opens(&kek_private, &blob, &m.expected, bits as usize / 8) {
                Ok(()) => passed += 1,
                Err(e) => failed.push(format!("{name}: OpenSSL: {e:#}")),
            }
            python_checks.push(json!({
                "name": name, "kek_private": kek_private, "blob": blob, "expected": m.expected,
                "kty": t.kty.name(), "curve": t.curve,
            }));
            python_makes.push(json!({
                "name": name, "kek_public": kek_pub, "plaintext": m.expected,
                "out": dir.join(format!("python-{bits}-{}.byok", t.name)), "kid": kid,
            }));
        }
    }
    let (p, f) = python(py, "check", &dir.join("check.json"), &python_checks)?;
    passed += p;
    failed.extend(f.into_iter().map(|e| format!("Python opens byok: {e}")));

    // Reverse: Python wraps, byok opens (strictly, as the local Key Vault will) and inspects.
    let (made_ok, f) = python(py, "make", &dir.join("make.json"), &python_makes)?;
    failed.extend(f.into_iter().map(|e| format!("Python making a blob: {e}")));
    if made_ok != python_makes.len() {
        failed.push(format!("Python made {made_ok} of {} blobs", python_makes.len()));
    }
    for bits in KEK_BITS {
        let kek = KekPrivateKey::from_private_key_file(&std::fs::read(dir.join(format!("kek{bits}.pem")))?)
            .context("reading the KEK private key")?;
        for (t, m) in TARGETS.iter().zip(&made) {
            let name = format!("byok opens Python's KEK RSA-{bits} / {}", t.name);
            let blob = dir.join(format!("python-{bits}-{}.byok", t.name));
            match byok_opens(
                cli,
                &kek,
                &blob,
                &dir.join(format!("kek{bits}.pub.pem")),
                t.kty,
                &m.expected,
            ) {
                Ok(()) => passed += 1,
                Err(e) => failed.push(format!("{name}: {e:#}")),
            }
        }
    }

    // The local Key Vault against the official Python SDK, as a Key Vault and as a Managed HSM.
    for managed_hsm in [false, true] {
        let mode = if managed_hsm { "Managed HSM" } else { "Key Vault" };
        match sdk_fidelity(tools, dir, managed_hsm) {
            Ok((p, f)) => {
                passed += p;
                failed.extend(
                    f.into_iter()
                        .map(|e| format!("Python SDK against the local {mode}: {e}")),
                );
            }
            Err(e) => failed.push(format!("Python SDK against the local {mode}: {e:#}")),
        }
    }

    // The real Azure CLI through the BYOK runbook, against the local vault by name.
    let az = crate::az::run(tools, &dir.join("az"))?;
    passed += az.passed;
    failed.extend(az.failed);

    Ok(Report { passed, failed })
}

/// Starts `byok-emulator`, runs `sdk_python.py` against it, stops it.
fn sdk_fidelity(tools: &Tools, dir: &Path, managed_hsm: bool) -> Result<(usize, Vec<String>)> {
    let python = &tools.python;
    let state = dir.join(if managed_hsm { "emulator-mhsm" } else { "emulator-vault" });
    let emulator = Emulator::start(
        &tools.emulator,
        &state,
        if managed_hsm { &["--managed-hsm"] } else { &[] },
    )?;
    let info_file = &emulator.info_file;
    let out = Command::new(python)
        .arg(script("sdk_python.py"))
        .arg(info_file)
        .output()?;
    let (mut passed, mut failed) = python_report(&out, "the SDK script")?;
    let manifest = transfers(tools, info_file, &state, managed_hsm)?;
    let out = Command::new(python)
        .arg(script("confirm_transfer.py"))
        .arg(info_file)
        .arg(&manifest)
        .output()?;
    let (p, f) = python_report(&out, "the transfer confirmation script")?;
    passed += p;
    failed.extend(f);
    Ok((passed, failed))
}

/// `byok-cli full-transfer` of keys generated in the NSS and Kryoptic test tokens into the running local Key Vault;
/// returns a manifest for `confirm_transfer.py`.
fn transfers(tools: &Tools, info_file: &Path, dir: &Path, managed_hsm: bool) -> Result<PathBuf> {
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(info_file)?)?;
    let env: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&tools.hsm_env).context("the test tokens are missing: run `cargo xtask setup`")?,
    )?;
    let cli = &tools.cli;
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned).context("a string in env.json / info");
    // The source token: NSS softokn, or Kryoptic (the `kryoptic` keys).
    let byok = |source: &str, args: &[&str]| -> Result<serde_json::Value> {
        let mut cmd = Command::new(cli);
        cmd.arg("--output").arg("json").args(args);
        if source == "kryoptic" {
            let k = &env["kryoptic"];
            cmd.args(["--pkcs11-module", &text(&k["module"])?])
                .args(["--pin-file", &text(&k["pin_file"])?])
                .env("KRYOPTIC_CONF", text(&k["conf"])?);
        } else {
            cmd.args(["--pkcs11-module", &text(&env["nss"]["module"])?])
                .args(["--pkcs11-init-args", &text(&env["nss"]["init_args"])?]);
        }
        cmd.env("AZURE_TENANT_ID", text(&info["tenant_id"])?)
            .env("AZURE_CLIENT_ID", text(&info["client_id"])?)
            .env("AZURE_CLIENT_SECRET", text(&info["client_secret"])?)
            .env("AZURE_AUTHORITY_HOST", text(&info["authority_host"])?);
        Ok(serde_json::from_slice(&capture(&mut cmd)?)?)
    };
    let mut specs = vec![
        ("rsa", vec!["--kty", "RSA", "--size", "3072"]),
        ("ec256", vec!["--kty", "EC", "--curve", "P-256"]),
        ("ec384", vec!["--kty", "EC", "--curve", "P-384"]),
        // Not EC from Kryoptic 1.5: byok refuses it (a scalar-encoding defect, docs/hsm-vendors.md).
        ("kryoptic-rsa", vec!["--kty", "RSA", "--size", "2048"]),
        ("kryoptic-rsa3072", vec!["--kty", "RSA", "--size", "3072"]),
    ];
    if managed_hsm {
        specs.push(("aes", vec!["--kty", "oct", "--size", "256"]));
        specs.push(("kryoptic-aes", vec!["--kty", "oct", "--size", "256"]));
    }
    let (vault_url, ca) = (text(&info["vault_url"])?, text(&info["ca_file"])?);
    let mut manifest = Vec::new();
    for (name, spec) in specs {
        let mode = if managed_hsm { "mhsm" } else { "vault" };
        let label = format!("interop-{mode}-{name}-{}", std::process::id());
        let source = if name.starts_with("kryoptic") {
            "kryoptic"
        } else {
            "nss"
        };
        let token = if source == "kryoptic" {
            "pkcs11:token=byok-kry"
        } else {
            "pkcs11:token=NSS%20Certificate%20DB"
        };
        let mut args = vec!["hsm", "generate", "--token", token, "--label", &label];
        args.extend(&spec);
        let key = byok(source, &args)?;
        let uri = text(&key["uri"])?;
        let vault_name = format!("transfer-{name}");
        let mut args = vec![
            "full-transfer",
            "--vault-url",
            &vault_url,
            "--ca-file",
            &ca,
            "--kek-name",
            "transfer-kek",
            "--name",
            &vault_name,
            "--key",
            &uri,
        ];
        let root = info["attestation_root"].as_str();
        args.extend(root.map(|r| ["--attestation-root", r]).into_iter().flatten());
        let record = byok(source, &args).with_context(|| format!("full-transfer of {name}"))?;
        if record["verification"]["result"] != "verified" {
            bail!("full-transfer of {name} was not verified: {}", record["verification"]);
        }
        let attested = if managed_hsm { "verified" } else { "not-attestable" };
        if record["attestation"]["status"] != attested {
            bail!(
                "full-transfer of {name}: attestation not {attested}: {}",
                record["attestation"]["detail"]
            );
        }
        manifest.push(serde_json::json!({
            "name": vault_name,
            "kid": record["key"]["kid"],
            "kty": record["key"]["kty"],
            "hsm_public_sha256": key["public_key_sha256"],
            "transfer_id": record["transfer_id"],
        }));
    }
    let path = dir.join("transfers.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest)?)?;
    Ok(path)
}

fn byok_opens(cli: &Path, kek: &KekPrivateKey, blob: &Path, kek_pub: &Path, kty: Kty, expected: &Path) -> Result<()> {
    let doc = ByokBlob::from_json(&std::fs::read(blob)?)?;
    let plaintext = kek.unwrap(doc.ciphertext())?;
    let key = TargetKey::from_plaintext(kty, &plaintext)?;
    if key.plaintext() != std::fs::read(expected)?.as_slice() {
        bail!("byok's plaintext differs from the source key");
    }
    capture(
        Command::new(cli)
            .args(["-q", "inspect"])
            .arg(blob)
            .arg("--kek-file")
            .arg(kek_pub),
    )
    .context("byok-cli inspect refused the blob")?;
    Ok(())
}

fn python(python: &Path, mode: &str, manifest: &Path, cases: &[serde_json::Value]) -> Result<(usize, Vec<String>)> {
    std::fs::write(manifest, serde_json::to_vec_pretty(cases)?)?;
    let out = Command::new(python)
        .arg(script("judge.py"))
        .arg(mode)
        .arg(manifest)
        .output()?;
    python_report(&out, "the Python judge")
}

/// The `{"passed": N, "failed": [{"name", "error"}]}` report both Python scripts print.
fn python_report(out: &std::process::Output, what: &str) -> Result<(usize, Vec<String>)> {
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{what} printed no report:\n{}", String::from_utf8_lossy(&out.stderr)))?;
    let passed = report["passed"].as_u64().context("report without `passed`")? as usize;
    let failed = report["failed"]
        .as_array()
        .context("report without `failed`")?
        .iter()
        .map(|f| {
            format!(
                "{}: {}",
                f["name"].as_str().unwrap_or("?"),
                f["error"].as_str().unwrap_or("?")
            )
        })
        .collect();
    Ok((passed, failed))
}
