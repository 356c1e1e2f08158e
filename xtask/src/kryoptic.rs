//! Kryoptic, the fourth real token: `tests/kryoptic` (its own workspace) built in release into `target/kryoptic`,
//! and a token `byok-kry` in slot 42 whose sqlite store lives in `target/hsm/kryoptic`. Its build needs libclang
//! (bindgen), pkg-config and the OpenSSL headers; its token is initialised with OpenSC's `pkcs11-tool`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::json;

use crate::util::{self, apt_install, capture, cargo, exec, root, works};

const SLOT: &str = "42";
const LABEL: &str = "byok-kry";
const SO_PIN: &str = "87654321";
const PIN: &str = "12345678";

/// Debian packages the build and the token need, by what shows each is there.
fn missing_packages() -> Vec<&'static str> {
    let mut missing = Vec::new();
    let libclang = [
        "/usr/lib/llvm-14/lib/libclang.so",
        "/usr/lib/x86_64-linux-gnu/libclang-14.so.1",
    ];
    if !libclang.iter().any(|p| Path::new(p).exists()) {
        missing.push("libclang-dev");
    }
    if !works(Command::new("pkg-config").args(["--exists", "openssl"])) {
        missing.extend(["pkg-config", "libssl-dev"]);
    }
    if !works(Command::new("pkcs11-tool").arg("--help")) && !Path::new("/usr/bin/pkcs11-tool").exists() {
        missing.push("opensc");
    }
    missing
}

/// Builds the module (once; cargo keeps it fresh) and makes the token in `dir`; returns its env.json entry.
pub(crate) fn setup(dir: &Path) -> Result<serde_json::Value> {
    let missing = missing_packages();
    if !missing.is_empty() {
        apt_install(&missing)?;
    }
    let target = root().join("target/kryoptic");
    exec(cargo().args(["build", "--release", "--locked", "--quiet"]).args([
        "--manifest-path",
        "tests/kryoptic/Cargo.toml",
        "--target-dir",
        &target.display().to_string(),
    ]))
    .context("building Kryoptic (tests/kryoptic)")?;
    let module = target.join("release/libbyok_kryoptic_token.so");
    let kdir = dir.join("kryoptic");
    std::fs::create_dir_all(&kdir)?;
    let conf = kdir.join("kryoptic.conf");
    let store = kdir.join("token.sql");
    std::fs::write(
        &conf,
        format!(
            "[[slots]]\nslot = {SLOT}\ndbtype = \"sqlite\"\ndbargs = \"{}\"\n",
            store.display()
        ),
    )?;
    let tool = |args: &[&str]| -> Result<Vec<u8>> {
        capture(
            Command::new("pkcs11-tool")
                .arg("--module")
                .arg(&module)
                .args(args)
                .env("KRYOPTIC_CONF", &conf),
        )
    };
    tool(&["--slot", SLOT, "--init-token", "--label", LABEL, "--so-pin", SO_PIN])?;
    tool(&[
        "--token-label",
        LABEL,
        "--login",
        "--login-type",
        "so",
        "--so-pin",
        SO_PIN,
        "--init-pin",
        "--pin",
        PIN,
    ])?;
    let pin_file: PathBuf = kdir.join("pin");
    util::write_secret(&pin_file, PIN)?;
    Ok(json!({ "module": module, "conf": conf, "token": LABEL, "pin_file": pin_file }))
}
