//! Running commands and installing what the tasks need, so that a fresh machine needs nothing by hand.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

/// The workspace root (the parent of `xtask/`).
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// `cargo`, as the one running us (respects the pinned toolchain).
pub(crate) fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c
}

pub(crate) use byok_tests::command::{capture, describe};

/// Runs a command with inherited output; fails if it fails.
pub(crate) fn exec(cmd: &mut Command) -> Result<()> {
    let shown = describe(cmd);
    eprintln!("$ {shown}");
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Whether a program runs at all.
pub(crate) fn works(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs Debian packages (root on these machines), running `apt-get update` once per process.
pub(crate) fn apt_install(packages: &[&str]) -> Result<()> {
    static UPDATED: OnceLock<()> = OnceLock::new();
    if UPDATED.get().is_none() {
        exec(Command::new("apt-get").args(["update", "-qq"]))?;
        let _ = UPDATED.set(());
    }
    exec(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// The OpenSSL CLI, installed from Debian if missing.
pub(crate) fn ensure_openssl() -> Result<()> {
    if !works(Command::new("openssl").arg("version")) {
        apt_install(&["openssl"])?;
    }
    Ok(())
}

/// The Python packages the judges and the SDK fidelity checks run; pinned so results repeat.
const PYTHON_PACKAGES: [&str; 3] = [
    "cryptography==50.0.2",
    "azure-keyvault-keys==4.11.3",
    "azure-identity==1.27.0",
];

/// A Python virtual environment under `target/` with the pinned packages; returns its interpreter.
pub(crate) fn ensure_python() -> Result<PathBuf> {
    let venv = root().join("target/interop-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        if !works(Command::new("python3").args(["-m", "venv", "--help"])) {
            apt_install(&["python3", "python3-venv"])?;
        }
        if let Err(e) = exec(Command::new("python3").arg("-m").arg("venv").arg(&venv)) {
            // Debian's python3 without ensurepip fails here until python3-venv is installed.
            let _ = std::fs::remove_dir_all(&venv);
            apt_install(&["python3-venv"]).context(e)?;
            exec(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        }
    }
    let check = "import sys, importlib.metadata as m; \
                 sys.exit(any(m.version(p.split('==')[0]) != p.split('==')[1] for p in sys.argv[1:]))";
    let has_them = works(Command::new(&python).args(["-c", check]).args(PYTHON_PACKAGES));
    if !has_them {
        exec(
            Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
                .args(PYTHON_PACKAGES),
        )?;
    }
    Ok(python)
}

/// The Azure CLI the interop suite rehearses with: pinned, in its own venv (its dependencies would otherwise
/// choose the SDK judges' versions); returns `az`.
pub(crate) fn ensure_az() -> Result<PathBuf> {
    const AZURE_CLI: &str = "azure-cli==2.91.0";
    let venv = root().join("target/az-venv");
    let az = venv.join("bin/az");
    let python = venv.join("bin/python");
    if !python.exists() {
        ensure_python()?; // python3-venv, as the judges need it
        exec(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    let check = format!(
        "import sys, importlib.metadata as m; sys.exit(m.version('azure-cli') != '{}')",
        AZURE_CLI.trim_start_matches("azure-cli==")
    );
    if !az.exists() || !works(Command::new(&python).args(["-c", &check])) {
        eprintln!(
            "interop: installing {AZURE_CLI} into {} (a few minutes, once)",
            venv.display()
        );
        exec(Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            AZURE_CLI,
        ]))?;
    }
    Ok(az)
}

/// A cargo subcommand binary, installed with `cargo install --locked` when missing.
pub(crate) fn ensure_cargo_tool(bin: &str, krate: &str, version: &str) -> Result<()> {
    let mut probe = cargo();
    probe.args([bin.trim_start_matches("cargo-"), "--version"]);
    if !works(&mut probe) {
        exec(cargo().args(["install", "--locked", krate, "--version", version]))?;
    }
    Ok(())
}

/// A fresh, empty directory.
pub(crate) fn fresh_dir(path: &Path) -> Result<()> {
    if path.exists() {
        std::fs::remove_dir_all(path).with_context(|| format!("cannot remove {}", path.display()))?;
    }
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))
}

/// Builds a workspace binary (debug) and returns its path.
pub(crate) fn build_bin(name: &str) -> Result<PathBuf> {
    exec(cargo().args(["build", "--quiet", "--package", name, "--bin", name]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    Ok(target.join("debug").join(name))
}

/// Builds `byok-cli` in the given profile and returns its path.
pub(crate) fn build_cli(release: bool) -> Result<PathBuf> {
    let mut c = cargo();
    c.args(["build", "--quiet", "--package", "byok-cli", "--bin", "byok-cli"]);
    if release {
        c.arg("--release");
    }
    exec(&mut c)?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    Ok(target.join(if release { "release" } else { "debug" }).join("byok-cli"))
}

/// Writes a secret file (a test token's PIN) readable by its owner only, as byok expects of PIN files.
pub(crate) fn write_secret(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An older setup left it 0644: tighten what exists.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}
