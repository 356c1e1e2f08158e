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
    let script = root().join("xtask/interop/judge.py");
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

    // 3. The HSM source on SoftHSM: byok's wrap per key vs the raw cryptoki calls, and the self-test.
    let env_file = crate::hsm::env_file();
    if !env_file.exists() {
        crate::hsm::setup()?;
    }
    let env: serde_json::Value = serde_json::from_slice(&std::fs::read(&env_file)?)?;
    let conf = env["softhsm"]["conf"].as_str().context("softhsm conf")?.to_owned();
    for bench in ["hsm", "hsm_raw"] {
        exec(
            cargo()
                .args(["bench", "--quiet", "--package", "byok-pkcs11", "--bench", bench])
                .env("SOFTHSM2_CONF", &conf),
        )?;
    }
    let hsm_us = criterion_median_us("hsm/softhsm/byok-wrap")?;
    let raw_us = criterion_median_us("hsm/softhsm/raw-cryptoki")?;
    let self_test_ms = criterion_median_us("hsm/softhsm/self-test")? / 1e3;
    let hsm_ratio = hsm_us / raw_us;

    // 4. The local Key Vault's own BYOK import capacity, loaded from this (second) process.
    let capacity = emulator_capacity(&dir)?;

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
         | HSM wrap per key, SoftHSM two-step (RSA-2048 target) | {hsm_us:.0} µs | raw cryptoki calls {raw_us:.0} µs | \
         {hsm_ratio:.2}× | ≤ 1.1× — {} |\n\
         | HSM self-test, once per session (SoftHSM) | {self_test_ms:.2} ms | | | ≤ 5 ms — {} |\n\
         | local Key Vault BYOK import capacity ({capacity}) | | | | recorded for the batch work |\n",
        verdict(throughput_ratio >= 1.0),
        verdict(process_ratio <= 0.25),
        cli_ms / python_ms,
        verdict(hsm_ratio <= 1.1),
        verdict(self_test_ms <= 5.0),
    );
    print!("\n{table}");
    write_report(&root().join("docs/performance.md"), &table)?;
    if throughput_ratio < 1.0 || process_ratio > 0.25 || hsm_ratio > 1.1 || self_test_ms > 5.0 {
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

/// Imports per second the emulator sustains (release build, KEK RSA-4096, RSA-2048 targets, 16 requests in flight),
/// with p50 and p99 latency.
fn emulator_capacity(dir: &Path) -> Result<String> {
    use std::io::BufRead;
    const IMPORTS: usize = 600;
    const IN_FLIGHT: usize = 16;
    exec(cargo().args([
        "build",
        "--quiet",
        "--release",
        "--package",
        "byok-emulator",
        "--bin",
        "byok-emulator",
    ]))?;
    let state = dir.join("emulator");
    let mut child = Command::new(root().join("target/release/byok-emulator"))
        .arg("--state-dir")
        .arg(&state)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting byok-emulator")?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    let result = (|| -> Result<String> {
        let info: serde_json::Value = serde_json::from_str(line.trim())?;
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(load(&info, IMPORTS, IN_FLIGHT))
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

async fn load(info: &serde_json::Value, imports: usize, in_flight: usize) -> Result<String> {
    use base64::Engine as _;
    let s = |k: &str| info[k].as_str().unwrap_or_default().to_owned();
    let ca = std::fs::read(s("ca_file"))?;
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca)?])
        .build()?;
    let token: serde_json::Value = client
        .post(format!("{}/{}/oauth2/v2.0/token", s("authority_host"), s("tenant_id")))
        .form(&[
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", s("client_id")),
            ("client_secret", s("client_secret")),
            ("scope", format!("{}/.default", s("audience"))),
        ])
        .send()
        .await?
        .json()
        .await?;
    let token = token["access_token"].as_str().context("token")?.to_owned();
    let vault = s("vault_url");
    let kek: serde_json::Value = client
        .post(format!("{vault}/keys/kek/create?api-version=7.5"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"kty": "RSA-HSM", "key_size": 4096, "key_ops": ["import"]}))
        .send()
        .await?
        .json()
        .await?;
    let kek_public = byok_encoding::KekPublicKey::from_jwk_json(kek.to_string().as_bytes())?;
    let kid = byok_blob::KeyId::parse(kek["key"]["kid"].as_str().context("kid")?)?;
    let target = std::fs::read(root().join("testdata/keys/rsa2048.pkcs8.der"))?;
    let encryptor = byok_wrap::KekEncryptor::new(&kek_public)?;
    let bodies: Vec<String> = (0..imports)
        .map(|_| -> Result<String> {
            let blob = byok_blob::ByokBlob::new(kid.clone(), encryptor.wrap(&target)?, "bench").to_json();
            let key_hsm = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(blob);
            Ok(serde_json::json!({"key": {"kty": "RSA-HSM", "key_ops": ["sign"], "key_hsm": key_hsm}}).to_string())
        })
        .collect::<Result<_>>()?;
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(in_flight));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(imports);
    for (i, body) in bodies.into_iter().enumerate() {
        let permit = semaphore.clone().acquire_owned().await?;
        let (client, token, url) = (
            client.clone(),
            token.clone(),
            format!("{vault}/keys/bench-{i}?api-version=7.5"),
        );
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = client
                .put(url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            drop(permit);
            match r {
                Ok(resp) if resp.status().is_success() => Ok(t.elapsed().as_secs_f64() * 1e3),
                Ok(resp) => Err(anyhow::anyhow!("import refused: {}", resp.status())),
                Err(e) => Err(e.into()),
            }
        }));
    }
    let mut latencies = Vec::with_capacity(imports);
    for t in tasks {
        latencies.push(t.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    Ok(format!(
        "{:.0} imports/s, p50 {:.1} ms, p99 {:.1} ms; KEK RSA-4096, RSA-2048 targets, {in_flight} in flight, {imports} imports",
        imports as f64 / elapsed,
        pct(0.50),
        pct(0.99)
    ))
}
