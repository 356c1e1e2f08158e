//! `cargo xtask`: the project's automation. Every task installs what it needs (apt packages, a Python venv
//! under `target/`, cargo tools), so a fresh machine needs nothing by hand.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod budget;
mod demo;
mod fuzz;
mod hsm;
mod interop;
mod kryoptic;
mod util;

use std::process::{Command, ExitCode};

use anyhow::{Result, bail};

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  setup     the source HSMs the tests use: SoftHSM, NSS softokn, openCryptoki (in a cached forky root)
  ci        format check, clippy (warnings denied), cargo-deny, interop, fuzz smoke, the whole test suite
  interop   OpenSSL CLI and Python `cryptography` judge byok's blobs, and byok opens theirs; the Python SDK and
            the Azure CLI against the local vault (`interop az`: only the Azure CLI's BYOK rehearsal; root)
  demo      a whole transfer on throwaway parts: local Managed HSM, NSS token, full-transfer, the record
  bench     software wrap vs Python and OpenSSL; one-key processes; writes docs/performance.md
  budget    the CLI's size rules: crates/byok-cli/src at most 2,400 lines, no function over 80 lines
  bench-fan-out  the fan-out row of bench alone (100 keys x 3 limited vaults), printed, not written
  bench-ab  OTHER_BYOK_CLI: this checkout's batch against another build, alternating rounds (fails above 1.05x)
  man       regenerate docs/man from the clap definition (a test checks it is fresh)
  fuzz      cargo-fuzz on the parsers: --smoke (15 s each, in CI), --seconds S, --runs N, [TARGET…]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("interop") => match args.get(1).map(String::as_str) {
            None => interop::run(false),
            Some("az") => interop::run(true),
            Some(other) => Err(anyhow::anyhow!("usage: cargo xtask interop [az] (not `{other}`)")),
        },
        Some("setup") => hsm::setup().map(|_| ()),
        Some("demo") => demo::run(),
        Some("bench") => bench::run(),
        Some("budget") => budget::run(),
        Some("bench-fan-out") => bench::fan_out_only(),
        Some("bench-ab") => match args.get(1) {
            Some(other) => bench::batch_ab(std::path::Path::new(other)),
            None => Err(anyhow::anyhow!(
                "usage: cargo xtask bench-ab OTHER_BYOK_CLI (a release byok-cli to compare with)"
            )),
        },
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("man") => util::build_cli(false)
            .and_then(|cli| util::exec(Command::new(cli).arg("man").arg(util::root().join("docs/man")))),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn ci() -> Result<()> {
    use util::{cargo, exec};
    exec(cargo().args(["fmt", "--all", "--check"]))?;
    // #13's size rules: the CLI only parses, calls and renders; no function longer than a screen or so.
    budget::run()?;
    exec(cargo().args([
        "clippy",
        "--locked",
        "--workspace",
        "--all-targets",
        "--quiet",
        "--",
        "-D",
        "warnings",
    ]))?;
    util::ensure_cargo_tool("cargo-deny", "cargo-deny", "0.20.2")?;
    // The advisories check needs the advisory database from the network: see docs/security.md.
    exec(cargo().args(["deny", "--log-level", "error", "check", "licenses", "bans", "sources"]))?;
    // `--locked` from here on: CI builds exactly the dependency set in Cargo.lock, or fails.
    exec(cargo().args(["build", "--locked", "--workspace", "--bins", "--quiet"]))?;
    hsm::setup()?;
    interop::run(false)?;
    exec(cargo().args(["test", "--locked", "--workspace", "--doc", "--quiet"]))?;
    // Each parser briefly under libFuzzer (nightly), the saved regressions among the seeds.
    fuzz::run(&["--smoke".to_owned()])?;
    // Last, so that the test runner's summary closes the output.
    let nextest = util::works(cargo().args(["nextest", "--version"]));
    if nextest {
        exec(cargo().args(["nextest", "run", "--locked", "--workspace", "--no-fail-fast"]))
    } else {
        exec(cargo().args(["test", "--locked", "--workspace", "--no-fail-fast"]))
    }
    .or_else(|e| bail!("tests failed: {e:#}"))
}
