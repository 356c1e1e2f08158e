//! `cargo xtask demo`: the BYOK flow that exists today, narrated, on throwaway keys. OpenSSL stands in for the
//! vault (its KEK, and the unwrap that Key Vault does on import); an NSS softokn database stands in for the HSM.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{self, apt_install, build_cli, capture, ensure_openssl, fresh_dir, root};

fn step(n: u32, text: &str) {
    println!("\n== {n}. {text}");
}

pub(crate) fn run() -> Result<()> {
    ensure_openssl()?;
    if !Path::new(crate::hsm::NSS_MODULE).exists() || !util::works(Command::new("certutil").arg("-H")) {
        apt_install(&["libnss3", "libnss3-tools"])?;
    }
    let cli = build_cli(false)?;
    let dir = root().join("target/demo");
    fresh_dir(&dir)?;
    let p = |name: &str| dir.join(name);
    let kid = "https://contoso.vault.azure.net/keys/demo-kek/0123456789abcdef0123456789abcdef";
    let nss = p("hsm");
    std::fs::create_dir_all(&nss)?;
    capture(
        Command::new("certutil")
            .arg("-N")
            .arg("-d")
            .arg(format!("sql:{}", nss.display()))
            .arg("--empty-password"),
    )?;
    let hsm = |args: &[&str]| {
        let mut c = Command::new(&cli);
        c.args(args).env("BYOK_PKCS11_MODULE", crate::hsm::NSS_MODULE).env(
            "BYOK_PKCS11_INIT_ARGS",
            format!(
                "configdir='sql:{}' certPrefix='' keyPrefix='' secmod='secmod.db' flags=",
                nss.display()
            ),
        );
        c
    };
    let token = "pkcs11:token=NSS%20Certificate%20DB";

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
        "The HSM (an NSS softokn database here): which wrap path produces what Azure expects?",
    );
    util::exec(&mut hsm(&["hsm", "info", "--token", token]))?;
    step(
        4,
        "The key to move: an EC P-256 key generated inside the HSM, extractable only wrapped.",
    );
    util::exec(&mut hsm(&[
        "hsm", "generate", "--token", token, "--kty", "EC", "--curve", "P-256", "--label", "app-key",
    ]))?;

    step(
        5,
        "Wrap it inside the HSM to the KEK (CKM_RSA_AES_KEY_WRAP) and write the .byok transfer blob.",
    );
    let kek = p("kek.pem").display().to_string();
    let out = p("app-key.byok").display().to_string();
    util::exec(&mut hsm(&[
        "wrap",
        "--key",
        &format!("{token};object=app-key"),
        "--kek-file",
        &kek,
        "--kek-kid",
        kid,
        "--out",
        &out,
    ]))?;

    step(6, "Look inside the blob and check it fits the KEK.");
    util::exec(
        Command::new(&cli)
            .arg("inspect")
            .arg(p("app-key.byok"))
            .arg("--kek-file")
            .arg(p("kek.pem")),
    )?;

    step(
        7,
        "What Key Vault does on import, done here with OpenSSL: unwrap with the KEK's private key.",
    );
    println!("OpenSSL: `pkeyutl -decrypt` (RSA-OAEP, SHA-1) on the RSA part, `enc -d -id-aes256-wrap-pad` on the rest");
    let unwrapped =
        byok_tests::openssl_unwrap(&p("app-key.byok"), &p("kek-private.pem"), 512).map_err(anyhow::Error::msg)?;
    std::fs::write(p("unwrapped.der"), &unwrapped)?;
    let public = capture(
        Command::new("openssl")
            .args(["pkey", "-inform", "DER", "-pubout", "-outform", "DER", "-in"])
            .arg(p("unwrapped.der")),
    )
    .context("OpenSSL cannot read the unwrapped PKCS#8")?;
    let listed: serde_json::Value = serde_json::from_slice(&capture(&mut hsm(&[
        "--output", "json", "hsm", "list", "--token", token,
    ]))?)?;
    let in_hsm = listed["keys"][0]["public_key_sha256"]
        .as_str()
        .context("public key in the HSM")?;
    let unwrapped_fp = sha256_hex(&public)?;
    println!("public key in the HSM      SHA-256 {in_hsm}\npublic key of the unwrapped SHA-256 {unwrapped_fp}");
    if unwrapped_fp != in_hsm {
        bail!("the unwrapped key is not the HSM's key");
    }
    println!("\nThe key the vault would unwrap is the HSM's key; it never existed in plaintext outside the HSM.");
    println!(
        "Files are in {}. Next in byok: `byok-cli full-transfer` against the local Key Vault.",
        dir.display()
    );
    Ok(())
}

fn sha256_hex(data: &[u8]) -> Result<String> {
    use sha2::Digest as _;
    Ok(sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect())
}
