//! `cargo xtask fuzz [--smoke | --seconds S | --runs N] [TARGET…]` (`--smoke`: 15 s each, as CI runs it): cargo-fuzz (libFuzzer) on byok's parsers, with
//! the installed nightly. Seeds come from `testdata/` and the regression inputs in `fuzz/regressions/`; the corpus
//! grows in `target/fuzz/corpus/`. Prints, per target, the executions and the time, as libFuzzer reports them.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{self, root};

/// The targets in `fuzz/fuzz_targets/`, with the testdata that seeds each.
const TARGETS: [(&str, &[&str]); 7] = [
    ("byok_blob", &["testdata/vectors"]),
    ("attestation", &["testdata/attestation"]),
    ("kek_public_key", &["testdata/keys"]),
    ("target_key", &["testdata/keys"]),
    ("kwp_unwrap", &[]),
    ("pkcs11_uri", &[]),
    ("emulator_request", &[]),
];

/// URIs for the `pkcs11_uri` seed corpus.
const URIS: [&str; 5] = [
    "pkcs11:token=byok-src;object=app-key;id=%01%02;type=private",
    "pkcs11:token=NSS%20Certificate%20DB;object=k?pin-source=file:/run/pin&module-path=/usr/lib/softhsm/libsofthsm2.so",
    "pkcs11:serial=0000000000000000;object=a%2Fb",
    "pkcs11:model=SoftHSM%20v2;manufacturer=SoftHSM%20project;token=t",
    "pkcs11:token=t;object=o;type=secret",
];

pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut limit = vec!["-max_total_time=20".to_owned()];
    let mut chosen = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--smoke" => limit = vec!["-max_total_time=15".into()],
            "--seconds" => {
                let s: u64 = it.next().context("--seconds needs a number")?.parse()?;
                limit = vec![format!("-max_total_time={s}")];
            }
            "--runs" => {
                let n: u64 = it.next().context("--runs needs a number")?.parse()?;
                limit = vec![format!("-runs={n}")];
            }
            t if TARGETS.iter().any(|(name, _)| *name == t) => chosen.push(t.to_owned()),
            other => bail!(
                "unknown fuzz argument `{other}` (expected --smoke, --seconds S, --runs N or a target: {})",
                TARGETS.map(|(n, _)| n).join(", ")
            ),
        }
    }
    util::ensure_cargo_tool("cargo-fuzz", "cargo-fuzz", "0.13.2")?;
    let mut report = Vec::new();
    for (target, seeds) in TARGETS {
        if !chosen.is_empty() && !chosen.iter().any(|c| c == target) {
            continue;
        }
        let corpus = root().join("target/fuzz/corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        seed(&corpus, target, seeds)?;
        let mut cmd = nightly_cargo();
        cmd.current_dir(root())
            .args(["fuzz", "run", target])
            .arg(&corpus)
            .arg("--")
            .args(&limit)
            .arg("-print_final_stats=1");
        println!("fuzz: {target} {}", limit.join(" "));
        let out = cmd
            .output()
            .with_context(|| format!("cannot run cargo fuzz for {target}"))?;
        let log = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            eprintln!("{log}");
            bail!("fuzz target {target} failed: keep the crashing input in fuzz/regressions/{target}/ once fixed");
        }
        let runs = stat(&log, "stat::number_of_executed_units:").unwrap_or_default();
        let secs = log
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("Done ").and_then(|r| r.split(" in ").nth(1)))
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("?")
            .to_owned();
        report.push(format!("{target}: {runs} executions in {secs} s, no crash"));
    }
    for line in &report {
        println!("fuzz: {line}");
    }
    Ok(())
}

/// `cargo +nightly` through rustup, whatever toolchain runs this task.
fn nightly_cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg("+nightly").env_remove("RUSTUP_TOOLCHAIN").env_remove("CARGO");
    cmd
}

fn stat(log: &str, key: &str) -> Option<u64> {
    log.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
}

/// Copies seeds into the corpus: testdata files, the saved regression inputs, and built-in URIs.
fn seed(corpus: &Path, target: &str, dirs: &[&str]) -> Result<()> {
    let regressions = root().join("fuzz/regressions").join(target);
    let mut sources: Vec<std::path::PathBuf> = dirs.iter().map(|d| root().join(d)).collect();
    sources.push(regressions);
    for dir in sources.iter().filter(|d| d.is_dir()) {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_file() {
                let name = format!("seed-{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("x"));
                std::fs::copy(&path, corpus.join(name))?;
            }
        }
    }
    if target == "pkcs11_uri" {
        for (i, uri) in URIS.iter().enumerate() {
            std::fs::write(corpus.join(format!("seed-uri-{i}")), uri)?;
        }
    }
    if target == "emulator_request" {
        // One body per handler: the selector byte picks it (0 import, 1 create, 2 update, 3.. operations).
        let bodies: [(u8, &str); 6] = [
            (
                0,
                r#"{"key":{"kty":"EC-HSM","crv":"P-256","key_ops":["sign"],"key_hsm":"eyJraWQiOiJ4In0"}}"#,
            ),
            (
                0,
                r#"{"key":{"kty":"oct-HSM","k":"AAECAwQFBgcICQoLDA0ODw"},"Hsm":true}"#,
            ),
            (
                1,
                r#"{"kty":"EC-HSM","crv":"P-384","key_ops":["sign","verify"],"attributes":{"enabled":true},"tags":{"a":"b"}}"#,
            ),
            (
                2,
                r#"{"attributes":{"enabled":false,"exp":2000000000},"tags":{"x":"y"}}"#,
            ),
            (
                3,
                r#"{"alg":"A256CBC","iv":"AAAAAAAAAAAAAAAAAAAAAA","value":"AAAAAAAAAAAAAAAAAAAAAA"}"#,
            ),
            (
                13,
                r#"{"alg":"RS256","value":"47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"}"#,
            ),
        ];
        for (i, (selector, body)) in bodies.iter().enumerate() {
            let mut input = vec![*selector];
            input.extend_from_slice(body.as_bytes());
            std::fs::write(corpus.join(format!("seed-body-{i}")), input)?;
        }
    }
    if target == "kwp_unwrap" {
        // RFC 5649 §6: a 192-bit KEK (selector 1) and its 20-byte example, wrapped.
        let mut input = vec![1u8];
        input.extend(hex("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8"));
        input.extend(hex("138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"));
        std::fs::write(corpus.join("seed-rfc5649"), input)?;
    }
    Ok(())
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0))
        .collect()
}
