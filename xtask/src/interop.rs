//! `cargo xtask interop [az]`: installs the judges (OpenSSL, Python `cryptography`, the Azure SDK, the Azure CLI),
//! builds the binaries, and runs the suite that lives in `byok-tests` (`tests/src/interop.rs`) — or, with `az`, only
//! its Azure CLI rehearsal (`tests/src/az.rs`).

use anyhow::{Result, bail};
use byok_tests::interop::{self, Tools};

use crate::util::{build_bin, build_cli, ensure_az, ensure_openssl, ensure_python, fresh_dir, root};

pub(crate) fn run(only_az: bool) -> Result<()> {
    ensure_openssl()?;
    let tools = Tools {
        python: ensure_python()?,
        cli: build_cli(false)?,
        emulator: build_bin("byok-emulator")?,
        hsm_env: crate::hsm::env_file(),
        az: ensure_az()?,
    };
    let dir = root().join("target/interop");
    fresh_dir(&dir)?;
    let report = if only_az {
        byok_tests::az::run(&tools, &dir)?
    } else {
        eprintln!("interop: making fresh keys with OpenSSL in {}", dir.display());
        interop::run(&tools, &dir)?
    };
    for f in &report.failed {
        eprintln!("interop: FAILED {f}");
    }
    println!("interop: {} passed, {} failed", report.passed, report.failed.len());
    if !report.failed.is_empty() {
        bail!("{} interop checks failed", report.failed.len());
    }
    Ok(())
}
