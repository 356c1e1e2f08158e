//! `cargo xtask demo`: the part of the BYOK flow that exists today, narrated.
//! OpenSSL stands in for the vault's KEK; the target key is a software key (the HSM source comes next).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{self, build_cli, capture, ensure_openssl, fresh_dir, root};

fn step(n: u32, text: &str) {
    println!("\n== {n}. {text}");
}

pub(crate) fn run() -> Result<()> {
    ensure_openssl()?;
    let cli = build_cli(false)?;
    let dir = root().join("target/demo");
    fresh_dir(&dir)?;
    let p = |name: &str| dir.join(name);
    let kid = "https://contoso.vault.azure.net/keys/demo-kek/0123456789abcdef0123456789abcdef";

    step(
        1,
        "The vault's Key Exchange Key (KEK): RSA-4096, import-only. Here OpenSSL stands in for Key Vault.",
    );
    capture(
        Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:4096",
                "-out",
            ])
            .arg(p("kek-private.pem")),
    )?;
    step(
        2,
        "Download the KEK's public key as PEM (az keyvault key download --encoding PEM).",
    );
    util::exec(
        Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(p("kek-private.pem"))
            .arg("-out")
            .arg(p("kek.pem")),
    )?;

    step(
        3,
        "The key to move: an EC P-256 key (in real life it lives in your HSM).",
    );
    util::exec(
        Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
            ])
            .arg(p("app-key.pem")),
    )?;

    step(
        4,
        "Wrap it to the KEK: CKM_RSA_AES_KEY_WRAP, written as a .byok transfer blob.",
    );
    util::exec(
        Command::new(&cli)
            .args(["wrap", "--allow-software-key", "--kek-kid", kid, "--kek-file"])
            .arg(p("kek.pem"))
            .arg("--key-file")
            .arg(p("app-key.pem"))
            .arg("--out")
            .arg(p("app-key.byok")),
    )?;

    step(5, "Look inside the blob and check it fits the KEK.");
    util::exec(
        Command::new(&cli)
            .arg("inspect")
            .arg(p("app-key.byok"))
            .arg("--kek-file")
            .arg(p("kek.pem")),
    )?;

    step(
        6,
        "What Key Vault does on import, done here with OpenSSL: unwrap with the KEK's private key and compare.",
    );
    unwrap_check(&dir, &p("kek-private.pem"), &p("app-key.byok"), &p("app-key.pem"))?;
    println!(
        "\nThe unwrapped key is byte-for-byte the PKCS#8 of app-key.pem. Files are in {}.",
        dir.display()
    );
    println!("Next in byok: wrapping inside a PKCS#11 HSM, a local Key Vault, and `byok-cli full-transfer`.");
    Ok(())
}

fn unwrap_check(dir: &Path, kek_private: &Path, blob: &Path, source: &Path) -> Result<()> {
    use base64::Engine as _;
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(blob)?)?;
    let ct = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(doc["ciphertext"].as_str().context("no ciphertext")?)?;
    let (rsa, kwp) = ct.split_at(512);
    std::fs::write(dir.join("rsa-part.bin"), rsa)?;
    std::fs::write(dir.join("kwp-part.bin"), kwp)?;
    util::exec(
        Command::new("openssl")
            .args(["pkeyutl", "-decrypt", "-inkey"])
            .arg(kek_private)
            .args([
                "-pkeyopt",
                "rsa_padding_mode:oaep",
                "-pkeyopt",
                "rsa_oaep_md:sha1",
                "-pkeyopt",
                "rsa_mgf1_md:sha1",
            ])
            .arg("-in")
            .arg(dir.join("rsa-part.bin"))
            .arg("-out")
            .arg(dir.join("aes-key.bin")),
    )?;
    let aes: String = std::fs::read(dir.join("aes-key.bin"))?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    util::exec(
        Command::new("openssl")
            .args(["enc", "-d", "-id-aes256-wrap-pad", "-iv", "A65959A6", "-K", &aes, "-in"])
            .arg(dir.join("kwp-part.bin"))
            .arg("-out")
            .arg(dir.join("unwrapped.der")),
    )?;
    let expected = capture(
        Command::new("openssl")
            .args(["pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in"])
            .arg(source),
    )?;
    if std::fs::read(dir.join("unwrapped.der"))? != expected {
        bail!("the unwrapped key differs from the source");
    }
    Ok(())
}
