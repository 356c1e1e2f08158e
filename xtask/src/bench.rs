//! `cargo xtask bench`: byok's software wrap beside its peers, measured side by side in one run on this machine,
//! written into docs/performance.md between the `bench:begin` and `bench:end` markers.
//!
//! KEK RSA-4096; target RSA-2048 PKCS#8 (1217 bytes). Whole-process times are medians of repeated runs.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::util::exec;
use crate::util::{build_cli, capture, cargo, ensure_openssl, ensure_python, fresh_dir, root};

const PROCESS_RUNS: usize = 21;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median wall time of a whole command, in milliseconds.
fn time_process(runs: usize, mut make: impl FnMut() -> Command) -> Result<f64> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut cmd = make();
        let start = Instant::now();
        let status = cmd.stdout(std::process::Stdio::null()).status()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
        if !status.success() {
            bail!("{cmd:?} failed");
        }
    }
    Ok(median(times))
}

fn criterion_median_us(name: &str) -> Result<f64> {
    // Criterion keeps a group's benches under `group/name`, and flattens `/` to `_` in ungrouped names.
    let grouped = root().join(format!("target/criterion/{name}/new/estimates.json"));
    let flat = root().join(format!(
        "target/criterion/{}/new/estimates.json",
        name.replace('/', "_")
    ));
    let path = if grouped.exists() { grouped } else { flat };
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).with_context(|| path.display().to_string())?)?;
    Ok(v["median"]["point_estimate"].as_f64().context("no median")? / 1e3)
}

pub(crate) fn run() -> Result<()> {
    ensure_openssl()?;
    let python = ensure_python()?;
    let dir = root().join("target/bench");
    fresh_dir(&dir)?;
    let keys = root().join("testdata/keys");
    let kek = keys.join("kek-rsa4096.spki.pem");
    let target = keys.join("rsa2048.pkcs8.der");

    // 1. In process: byok (criterion) and Python `cryptography`.
    exec(cargo().args(["bench", "--quiet", "--package", "byok-wrap", "--bench", "wrap"]))?;
    let byok_us = criterion_median_us("wrap/kek4096-rsa2048")?;
    let byok_ec_us = criterion_median_us("wrap/kek4096-ec-p256")?;
    exec(cargo().args(["bench", "--quiet", "--package", "byok-attestation", "--bench", "verify"]))?;
    let attest_ms = criterion_median_us("attestation/verify-and-bind")? / 1e3;
    let script = root().join("tests/interop/judge.py");
    let py: serde_json::Value = serde_json::from_slice(&capture(
        Command::new(&python)
            .arg(&script)
            .arg("bench")
            .arg(&kek)
            .arg(&target)
            .arg("2000"),
    )?)?;
    let python_us = py["us_per_key"].as_f64().context("python bench")?;

    // 2. One key, one process: byok-cli (release), the OpenSSL CLI recipe, a Python process.
    let cli = build_cli(true)?;
    let out = dir.join("one.byok");
    let kid = "https://bench.vault.azure.net/keys/kek/0123456789abcdef0123456789abcdef";
    let cli_ms = time_process(PROCESS_RUNS, || {
        let mut c = Command::new(&cli);
        c.args([
            "-q",
            "wrap",
            "--allow-software-key",
            "--force",
            "--kek-kid",
            kid,
            "--kek-file",
        ])
        .arg(&kek)
        .arg("--key-file")
        .arg(&target)
        .arg("--out")
        .arg(&out);
        c
    })?;
    let recipe = openssl_recipe(&dir, &kek, &target);
    let openssl_ms = time_process(PROCESS_RUNS, || {
        let mut c = Command::new("bash");
        c.args(["-c", &recipe]);
        c
    })?;
    let python_ms = time_process(PROCESS_RUNS, || {
        let mut c = Command::new(&python);
        c.arg(&script)
            .arg("wrap-one")
            .arg(&kek)
            .arg(&target)
            .arg(dir.join("py.bin"));
        c
    })?;

    // 3. The HSM sources: byok's wrap per key vs the direct PKCS#11 calls (A/B in one process), and the self-test.
    let env_file = crate::hsm::env_file();
    if !env_file.exists() {
        crate::hsm::setup()?;
    }
    let env: serde_json::Value = serde_json::from_slice(&std::fs::read(&env_file)?)?;
    let conf = env["softhsm"]["conf"].as_str().context("softhsm conf")?.to_owned();
    exec(
        cargo()
            .args(["bench", "--quiet", "--package", "byok-pkcs11", "--bench", "hsm"])
            .env("SOFTHSM2_CONF", &conf),
    )?;
    let self_test_ms = criterion_median_us("hsm/softhsm/self-test")? / 1e3;
    let ab = capture(
        cargo()
            .args(["bench", "--quiet", "--package", "byok-pkcs11", "--bench", "hsm_ab"])
            .env("SOFTHSM2_CONF", &conf),
    )?;
    let ab: Vec<serde_json::Value> = String::from_utf8(ab)?
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let hsm_row = |token: &str| -> Result<(f64, f64, f64)> {
        let v = ab
            .iter()
            .find(|v| v["token"] == token)
            .with_context(|| format!("hsm_ab printed no {token} line"))?;
        let f = |k: &str| v[k].as_f64().with_context(|| format!("hsm_ab {token}: no {k}"));
        Ok((f("byok_us")?, f("raw_us")?, f("ratio")?))
    };
    let (hsm_us, raw_us, hsm_ratio) = hsm_row("softhsm")?;
    let (nss_us, nss_raw_us, nss_ratio) = hsm_row("nss")?;

    // 4. The local Key Vault's own BYOK import capacity, loaded from this (second) process.
    let capacity = emulator_capacity(&dir)?;

    // 5. batch: 1,000 keys from an NSS token, against the vault's capacity for the same imports; memory.
    let batch = batch_bench(&dir, &cli)?;
    let batch_ratio = batch.keys_per_second / batch.capacity;
    let rss_flat = batch.rss_1000_mib <= batch.rss_100_mib * 1.2 + 2.0 && batch.rss_1000_mib < 50.0;

    // 6. status over 1,000 byok keys against the official SDK's own listing of them (tests/benches/status.rs).
    let status: serde_json::Value = String::from_utf8(capture(
        cargo()
            .args(["bench", "--quiet", "--package", "byok-tests", "--bench", "status"])
            .env("BYOK_TEST_BYOK_CLI", &cli),
    )?)?
    .lines()
    .rev()
    .find_map(|l| serde_json::from_str(l).ok())
    .context("the status bench printed no JSON line")?;
    let status_f = |k: &str| status[k].as_f64().with_context(|| format!("status bench: no {k}"));
    let (status_ms, sdk_list_ms, status_ratio) = (status_f("status_ms")?, status_f("sdk_ms")?, status_f("ratio")?);

    // 7. A batch that paces itself to Key Vault's limits (scaled clock).
    let (paced_ratio, paced_share, paced_429, paced_seconds) = paced_bench(&dir.join("paced"), &cli)?;
    // 8. One key into three vaults, each paced to its own limits.
    let (fan_ratio, fan_wraps, fan_seconds) = fan_out_bench(&dir.join("fan-out"), &cli)?;

    let throughput_ratio = python_us / byok_us;
    let process_ratio = cli_ms / openssl_ms;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = String::from_utf8(capture(Command::new("date").args(["-u", "+%Y-%m-%d"]))?)?
        .trim()
        .to_owned();
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    let table = format!(
        "Measured by `cargo xtask bench` on {date}, {cores} cores ({cpu}). KEK RSA-4096, target RSA-2048 PKCS#8 \
         (1217 bytes).\n\n\
         | measurement | byok | peer | ratio | target |\n|---|---|---|---|---|\n\
         | software wrap, in process, per key | {byok_us:.1} µs | Python `cryptography` {python_us:.1} µs | \
         byok is {throughput_ratio:.2}× as fast | ≥ 1× — {} |\n\
         | same, EC P-256 target | {byok_ec_us:.1} µs | | | |\n\
         | one key, whole process | `byok-cli wrap` {cli_ms:.1} ms | OpenSSL CLI recipe {openssl_ms:.1} ms | \
         {process_ratio:.3} of OpenSSL | ≤ 0.25 — {} |\n\
         | one key, whole process | | Python process {python_ms:.1} ms | {:.3} of Python | |\n\
         | HSM wrap per key, SoftHSM two-step 0x210A (RSA-2048 target), A/B rounds | {hsm_us:.0} µs | direct \
         PKCS#11 calls {raw_us:.0} µs | {hsm_ratio:.2}× | ≤ 1.1× — {} |\n\
         | HSM wrap per key, NSS two-step 0x210B (RSA-2048 target), A/B rounds | {nss_us:.0} µs | direct PKCS#11 \
         calls {nss_raw_us:.0} µs | {nss_ratio:.2}× | ≤ 1.1× — {} |\n\
         | HSM self-test, once per session (SoftHSM) | {self_test_ms:.2} ms | | | ≤ 5 ms — {} |\n\
         | one Managed HSM attestation verified and bound (the real one: 2 chains, 2 blobs) | {attest_ms:.2} ms | | | \
         ≤ 5 ms — {} |\n\
         | local Key Vault BYOK import capacity ({capacity}) | | | | recorded |\n\
         | batch of 1,000 keys (NSS EC P-256, 16 jobs, 2 HSM sessions, each verified) | {:.0} keys/s | the vault's capacity for the \
         same imports: {} | {batch_ratio:.2} of capacity | ≥ 0.83 — {} |\n\
         | batch peak memory (RSS) | 100 keys {:.1} MiB, 1,000 keys {:.1} MiB | | | flat, < 50 MiB — {} |\n\
         | `status` over 1,000 byok keys (whole process) | {status_ms:.0} ms | the official Rust SDK listing the keys and \
         their versions {sdk_list_ms:.0} ms | {status_ratio:.2}× | ≤ 2× — {} |\n\
         | batch of 300 keys under Key Vault's limits (`--limits azure`, clock ×20: 10 creations per 0.5 s) | \
         {paced_seconds:.2} s, {:.1} % of requests answered 429 ({paced_429}) | the floor: 300 imports at 20/s, 15 s \
         (the KEK made beforehand) | {paced_ratio:.3} of the theoretical throughput | ≥ 0.95, 429s ≤ 5 % — {} |\n\
         | fan-out of 100 keys × 3 Key Vaults of one tenant, each under its own limits (clock ×20) | {fan_seconds:.2} s, \
         {fan_wraps} distinct blobs (HSM wraps) received | the slowest vault's floor: 100 imports at 20/s, 5 s | \
         {fan_ratio:.3} of the floor | ≤ 1.1, 300 wraps — {} |\n",
        verdict(throughput_ratio >= 1.0),
        verdict(process_ratio <= 0.25),
        cli_ms / python_ms,
        verdict(hsm_ratio <= 1.1),
        verdict(nss_ratio <= 1.1),
        verdict(self_test_ms <= 5.0),
        verdict(attest_ms <= 5.0),
        batch.keys_per_second,
        batch.capacity_text,
        verdict(batch_ratio >= 1.0 / 1.2),
        batch.rss_100_mib,
        batch.rss_1000_mib,
        verdict(rss_flat),
        verdict(status_ratio <= 2.0),
        paced_share * 100.0,
        verdict(paced_ratio >= 0.95 && paced_share <= 0.05),
        verdict(fan_ratio <= 1.1 && fan_wraps == 300),
    );
    print!("\n{table}");
    write_report(&root().join("docs/performance.md"), &table)?;
    if throughput_ratio < 1.0
        || process_ratio > 0.25
        || hsm_ratio > 1.1
        || nss_ratio > 1.1
        || self_test_ms > 5.0
        || attest_ms > 5.0
        || batch_ratio < 1.0 / 1.2
        || !rss_flat
        || status_ratio > 2.0
        || paced_ratio < 0.95
        || paced_share > 0.05
        || fan_ratio > 1.1
        || fan_wraps != 300
    {
        bail!("a performance target was missed (see the table)");
    }
    Ok(())
}

/// The OpenSSL CLI recipe people use today: a random AES key, OAEP to the KEK, KWP of the key, concatenated.
fn openssl_recipe(dir: &Path, kek: &Path, target: &Path) -> String {
    let d = dir.display();
    format!(
        "set -e; openssl rand -out {d}/aes 32; \
         openssl pkeyutl -encrypt -pubin -inkey {kek} -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha1 \
         -pkeyopt rsa_mgf1_md:sha1 -in {d}/aes -out {d}/rsa; \
         openssl enc -id-aes256-wrap-pad -iv A65959A6 -K $(od -An -tx1 {d}/aes | tr -d ' \\n') -in {target} -out {d}/kwp; \
         cat {d}/rsa {d}/kwp > {d}/openssl.bin",
        kek = kek.display(),
        target = target.display()
    )
}

fn write_report(path: &Path, table: &str) -> Result<()> {
    const BEGIN: &str = "<!-- bench:begin -->";
    const END: &str = "<!-- bench:end -->";
    let doc = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END)) else {
        bail!("{} lacks the {BEGIN} / {END} markers", path.display());
    };
    let updated = format!("{}{BEGIN}\n{table}{}", &doc[..b], &doc[e..]);
    std::fs::write(path, updated)?;
    eprintln!("bench: wrote the table into {}", path.display());
    Ok(())
}

/// A release `byok-emulator` on a fresh state directory, killed when dropped.
struct Emulator(std::process::Child, serde_json::Value);

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn emulator(state: &Path, args: &[&str]) -> Result<Emulator> {
    use std::io::BufRead;
    exec(cargo().args([
        "build",
        "--quiet",
        "--release",
        "--package",
        "byok-emulator",
        "--bin",
        "byok-emulator",
    ]))?;
    let mut child = Command::new(root().join("target/release/byok-emulator"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting byok-emulator")?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    let info = serde_json::from_str(line.trim()).context("the emulator's address line")?;
    Ok(Emulator(child, info))
}

/// Imports per second the emulator sustains (release build, KEK RSA-4096, RSA-2048 targets, 16 requests in flight),
/// with p50 and p99 latency.
fn emulator_capacity(dir: &Path) -> Result<String> {
    let vault = emulator(&dir.join("emulator"), &[])?;
    let target = std::fs::read(root().join("testdata/keys/rsa2048.pkcs8.der"))?;
    let key = serde_json::json!({"kty": "RSA-HSM", "key_ops": ["sign"]});
    let runtime = tokio::runtime::Runtime::new()?;
    let load = runtime.block_on(byok_tests::load::imports(&vault.1, 600, 16, &target, key))?;
    Ok(format!("{}, RSA-2048 targets", load.summary))
}

/// What `batch` achieves against the local Key Vault, beside the vault's own capacity for the same imports.
struct BatchNumbers {
    keys_per_second: f64,
    capacity: f64,
    capacity_text: String,
    rss_100_mib: f64,
    rss_1000_mib: f64,
}

/// One `byok-cli batch` of the NSS keys `bench-{range}` as `{prefix}{i}` into the vault `info`: keys/s, peak RSS (MiB) and
/// the batch's JSON summary.
fn run_batch(
    cli: &Path,
    info: &serde_json::Value,
    init_args: &str,
    dir: &Path,
    range: std::ops::Range<u32>,
    prefix: &str,
    extra: &[&str],
) -> Result<(f64, f64, serde_json::Value)> {
    const JOBS: &str = "16";
    let s = |k: &str| info[k].as_str().unwrap_or_default().to_owned();
    let mut manifest = String::new();
    for i in range {
        manifest.push_str(&format!(
            "[[key]]\nuri = \"pkcs11:token=NSS%20Certificate%20DB;object=bench-{i}\"\nname = \"{prefix}{i}\"\n"
        ));
    }
    let file = dir.join(format!("{prefix}manifest.toml"));
    std::fs::write(&file, manifest)?;
    let rss = dir.join(format!("{prefix}rss"));
    let out = capture(
        Command::new("/usr/bin/time")
            .arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(&rss)
            .arg(cli)
            .args([
                "--output",
                "json",
                "batch",
                "--kek-name",
                "kek",
                "--jobs",
                JOBS,
                "--manifest",
            ])
            .arg(&file)
            .args(vault_flags(info))
            .args(extra)
            .args(["--ca-file", &s("ca_file")])
            .args([
                "--pkcs11-module",
                crate::hsm::NSS_MODULE,
                "--pkcs11-init-args",
                init_args,
            ])
            .env("AZURE_TENANT_ID", s("tenant_id"))
            .env("AZURE_CLIENT_ID", s("client_id"))
            .env("AZURE_CLIENT_SECRET", s("client_secret"))
            .env("AZURE_AUTHORITY_HOST", s("authority_host")),
    )?;
    let text = String::from_utf8(out)?;
    let summary: serde_json::Value = serde_json::from_str(text.lines().last().context("no summary")?)?;
    let kps = summary["summary"]["keys_per_second"].as_f64().context("keys/s")?;
    if summary["summary"]["failed"] != 0 || summary["summary"]["mismatched"] != 0 {
        bail!("the bench batch had failures: {summary}");
    }
    let kib: f64 = std::fs::read_to_string(&rss)?.trim().parse()?;
    Ok((kps, kib / 1024.0, summary["summary"].clone()))
}

/// `cargo xtask bench-fan-out`: the fan-out row alone, for work on the fan-out's pace.
pub(crate) fn fan_out_only() -> Result<()> {
    let cli = build_cli(true)?;
    let dir = root().join("target/bench-fan-out");
    fresh_dir(&dir)?;
    let (ratio, wraps, seconds) = fan_out_bench(&dir, &cli)?;
    println!("fan-out of 100 keys x 3 vaults: {seconds:.2} s, {ratio:.3} of the slowest vault's floor, {wraps} wraps");
    Ok(())
}

/// `--vault-url` of every vault in a ready line (one, or a fan-out's several).
fn vault_flags(info: &serde_json::Value) -> Vec<String> {
    let urls: Vec<String> = match info["vaults"].as_array() {
        Some(vaults) => vaults
            .iter()
            .filter_map(|v| v["vault_url"].as_str().map(str::to_owned))
            .collect(),
        None => vec![info["vault_url"].as_str().unwrap_or_default().to_owned()],
    };
    urls.into_iter().flat_map(|u| ["--vault-url".to_owned(), u]).collect()
}

/// A fan-out under Key Vault's limits: 100 NSS EC keys into three vaults of one release `byok-emulator` (one
/// tenant), each enforcing Key Vault's table with the clock 20 times faster, the KEKs made beforehand. Returns the
/// wall time against the slowest vault's floor (100 imports at 20/s: 5 s), the distinct blobs the records show
/// imported (each an HSM wrap), and the seconds.
fn fan_out_bench(dir: &Path, cli: &Path) -> Result<(f64, usize, f64)> {
    const KEYS: u32 = 100;
    const SCALE: &str = "20";
    let init_args = nss_keys(dir, KEYS + 1)?;
    let limits = ["--more-vaults", "2", "--limits", "azure", "--limits-scale", SCALE];
    let vault = emulator(&dir.join("fan-out-vaults"), &limits)?;
    let records = dir.join("records");
    fresh_dir(&records)?;
    let record_dir = ["--record-dir", records.to_str().context("a UTF-8 path")?];
    run_batch(cli, &vault.1, &init_args, dir, KEYS..KEYS + 1, "warm", &record_dir)?;
    std::thread::sleep(std::time::Duration::from_secs(1));
    let (_, _, summary) = run_batch(cli, &vault.1, &init_args, dir, 0..KEYS, "fan", &record_dir)?;
    if summary["done"] != 3 * KEYS {
        bail!("the fan-out did not import every key into every vault: {summary}");
    }
    let seconds = summary["seconds"].as_f64().context("seconds")?;
    let floor = f64::from(KEYS) / 20.0;
    let mut blobs = std::collections::HashSet::new();
    for i in 0..KEYS {
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(records.join(format!("fan{i}.record.json")))?)?;
        for d in record["destinations"].as_array().context("a fan-out record")? {
            blobs.insert(d["record"]["blob"]["sha256"].as_str().context("a blob")?.to_owned());
        }
    }
    Ok((seconds / floor, blobs.len(), seconds))
}

/// A batch under Key Vault's limits: 300 NSS EC keys into a local Key Vault (in process) enforcing Key Vault's
/// table with the clock 20 times faster (10 creations per 0.5 s), the KEK made beforehand; achieved against the
/// theoretical throughput (300 imports at the vault's rate), and the share of requests answered 429.
fn paced_bench(dir: &Path, cli: &Path) -> Result<(f64, f64, u64, f64)> {
    const KEYS: u32 = 300;
    const SCALE: f64 = 20.0;
    let init_args = nss_keys(dir, KEYS + 1)?;
    let mut config = byok_emulator::Config::new(dir.join("paced-vault"));
    let mut limits = byok_emulator::Limits::key_vault();
    limits.scale = SCALE;
    config.limits = Some(limits);
    let vault = byok_emulator::Background::start(config)?;
    let info = serde_json::to_value(&vault.info)?;
    // The KEK is made by a first key's batch (a one-time step, not the batch's throughput); the window then empties.
    run_batch(cli, &info, &init_args, dir, KEYS..KEYS + 1, "warm", &[])?;
    std::thread::sleep(std::time::Duration::from_secs(1));
    let (_, _, summary) = run_batch(cli, &info, &init_args, dir, 0..KEYS, "paced", &[])?;
    let seconds = summary["seconds"].as_f64().context("seconds")?;
    let floor = f64::from(KEYS) / (10.0 * SCALE / 10.0);
    let (admitted, throttled) = vault.observed.limited();
    let share = throttled as f64 / (admitted + throttled).max(1) as f64;
    Ok((floor / seconds, share, throttled, seconds))
}

/// A fresh NSS database under `dir` with `n` EC P-256 keys `bench-0…`; returns its init args.
fn nss_keys(dir: &Path, n: u32) -> Result<String> {
    let init_args = crate::hsm::nss_database(&dir.join("nss"))?;
    let module = byok_pkcs11::Module::load(&byok_pkcs11::ModuleConfig {
        path: crate::hsm::NSS_MODULE.into(),
        init_args: Some(init_args.clone()),
    })?;
    let session = module.open(&"pkcs11:token=NSS%20Certificate%20DB".parse()?, None)?;
    for i in 0..n {
        session.generate(
            byok_encoding::KeyKind::Ec(byok_encoding::Curve::P256),
            &format!("bench-{i}"),
            &i.to_be_bytes(),
        )?;
    }
    Ok(init_args)
}

/// `cargo xtask bench-ab OTHER_BYOK_CLI`: this checkout's release `byok-cli batch` against another build (an older
/// commit's) in alternating rounds of 300 keys into one release local Key Vault, which one goes first alternating;
/// the median of the rounds' ratios cancels the VM's drift that separate runs suffer. Fails above 1.05×.
pub(crate) fn batch_ab(other: &Path) -> Result<()> {
    const ROUNDS: u32 = 6;
    const KEYS: u32 = 300;
    let ours = build_cli(true)?;
    let dir = root().join("target/bench-ab");
    fresh_dir(&dir)?;
    let init_args = nss_keys(&dir, KEYS * 2)?;
    let vault = emulator(&dir.join("vault"), &[])?;
    let info = &vault.1;
    run_batch(&ours, info, &init_args, &dir, 0..50, "warm", &[])?;
    let mut ratios = Vec::new();
    for r in 0..ROUNDS {
        let keys = (r % 2) * KEYS..(r % 2 + 1) * KEYS;
        let one =
            |cli: &Path, who: &str| run_batch(cli, info, &init_args, &dir, keys.clone(), &format!("{who}{r}-"), &[]);
        let ((ours_kps, _, _), (other_kps, _, _)) = if r % 2 == 0 {
            (one(&ours, "a")?, one(other, "b")?)
        } else {
            let o = one(other, "b")?;
            (one(&ours, "a")?, o)
        };
        println!(
            "round {r}: this checkout {ours_kps:.1} keys/s, {} {other_kps:.1} keys/s",
            other.display()
        );
        ratios.push(other_kps / ours_kps);
    }
    let ratio = median(ratios);
    println!(
        "bench-ab: this checkout is {ratio:.3}x the time of {} per key (median of {ROUNDS} rounds)",
        other.display()
    );
    if ratio > 1.05 {
        bail!(
            "this checkout's batch is {ratio:.3}x slower than {} (more than 1.05x)",
            other.display()
        );
    }
    Ok(())
}

/// 1,000 EC P-256 keys (and 100 for the memory comparison) generated in a fresh NSS database, moved by
/// `byok-cli batch` (release, 16 jobs, the default 2 HSM sessions) into a release local Key Vault; then the same
/// vault's capacity for the same imports (EC P-256 PKCS#8 under the RSA-4096 KEK), loaded directly with 16 in flight.
fn batch_bench(dir: &Path, cli: &Path) -> Result<BatchNumbers> {
    let init_args = nss_keys(dir, 1100)?;
    let vault = emulator(&dir.join("batch-vault"), &[])?;
    let info = &vault.1;
    // The first run also creates the KEK; both runs then share it.
    let (_, rss_100_mib, _) = run_batch(cli, info, &init_args, dir, 0..100, "s", &[])?;
    let (keys_per_second, rss_1000_mib, _) = run_batch(cli, info, &init_args, dir, 100..1100, "b", &[])?;
    let target = byok_encoding::TargetKey::from_private_key_file(&std::fs::read(
        root().join("testdata/keys/ec-p256.pkcs8.pem"),
    )?)?;
    let key = serde_json::json!({"kty": "EC-HSM", "crv": "P-256", "key_ops": ["sign", "verify"]});
    let runtime = tokio::runtime::Runtime::new()?;
    let load = runtime.block_on(byok_tests::load::imports(info, 1000, 16, target.plaintext(), key))?;
    Ok(BatchNumbers {
        keys_per_second,
        capacity: load.rate,
        capacity_text: format!("{}, EC P-256 targets", load.summary),
        rss_100_mib,
        rss_1000_mib,
    })
}
