//! An import load on a running local Key Vault: BYOK imports sent straight over HTTPS, a fixed number in flight,
//! so that `cargo xtask bench` can set what `byok-cli batch` achieves beside what the vault itself can take.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// What a load achieved.
#[derive(Clone, Debug)]
pub struct Capacity {
    /// Imports per second, over the whole load.
    pub rate: f64,
    /// One line: the rate, p50 and p99 latency, and the load's shape.
    pub summary: String,
}

/// Sends `imports` BYOK imports of `target` (the plaintext: PKCS#8 or raw AES) with the key properties `key`
/// (`kty`, `crv`, `key_ops`), `in_flight` at a time, to the vault the emulator's ready line `info` describes,
/// under a fresh RSA-4096 KEK. Every import must succeed.
pub async fn imports(info: &Value, imports: usize, in_flight: usize, target: &[u8], key: Value) -> Result<Capacity> {
    let text = |k: &str| {
        info[k]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("`{k}` in the ready line"))
    };
    let ca = std::fs::read(text("ca_file")?)?;
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca)?])
        .build()?;
    let token: Value = client
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            text("authority_host")?,
            text("tenant_id")?
        ))
        .form(&[
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", text("client_id")?),
            ("client_secret", text("client_secret")?),
            ("scope", format!("{}/.default", text("audience")?)),
        ])
        .send()
        .await?
        .json()
        .await?;
    let token = token["access_token"].as_str().context("no access_token")?.to_owned();
    let vault = text("vault_url")?;
    let bodies = bodies(&client, &vault, &token, imports, target, key).await?;
    let semaphore = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(imports);
    for (i, body) in bodies.into_iter().enumerate() {
        let permit = semaphore.clone().acquire_owned().await?;
        let request = client
            .put(format!("{vault}/keys/bench-{i}?api-version=7.5"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body);
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let sent = request.send().await;
            drop(permit);
            match sent {
                Ok(resp) if resp.status().is_success() => Ok(t.elapsed().as_secs_f64() * 1e3),
                Ok(resp) => Err(anyhow!("import refused: {}", resp.status())),
                Err(e) => Err(e.into()),
            }
        }));
    }
    let mut latencies = Vec::with_capacity(imports);
    for t in tasks {
        latencies.push(t.await??);
    }
    let rate = imports as f64 / start.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let summary = format!(
        "{rate:.0} imports/s, p50 {:.1} ms, p99 {:.1} ms; KEK RSA-4096, {in_flight} in flight, {imports} imports",
        pct(0.50),
        pct(0.99)
    );
    Ok(Capacity { rate, summary })
}

/// Creates the KEK and wraps `target` to it `imports` times, before the clock starts.
async fn bodies(
    client: &reqwest::Client,
    vault: &str,
    token: &str,
    imports: usize,
    target: &[u8],
    key: Value,
) -> Result<Vec<String>> {
    let kek: Value = client
        .post(format!("{vault}/keys/kek/create?api-version=7.5"))
        .bearer_auth(token)
        .json(&json!({"kty": "RSA-HSM", "key_size": 4096, "key_ops": ["import"]}))
        .send()
        .await?
        .json()
        .await?;
    let kek_public = byok_encoding::KekPublicKey::from_jwk_json(kek.to_string().as_bytes())?;
    let kid = byok_blob::KeyId::parse(kek["key"]["kid"].as_str().context("no kid")?)?;
    let encryptor = byok_wrap::KekEncryptor::new(&kek_public)?;
    (0..imports)
        .map(|_| -> Result<String> {
            let blob = byok_blob::ByokBlob::new(kid.clone(), encryptor.wrap(target)?, "bench").to_json();
            let mut body = json!({ "key": key.clone() });
            body["key"]["key_hsm"] = URL_SAFE_NO_PAD.encode(blob).into();
            Ok(body.to_string())
        })
        .collect()
}
