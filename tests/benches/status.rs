//! `byok-cli status` over 1,000 byok keys against the same listing done with the official Rust SDK alone: the keys,
//! then each key's versions, one listing at a time (as `status` does). The local Key Vault (release build, in
//! process) is seeded with 1,000 byok-tagged keys; each side runs 5 times from a fresh start (a new process for
//! byok-cli, a new client and token for the SDK) and the medians are compared. Prints one JSON line for `cargo xtask
//! bench`. `BYOK_TEST_BYOK_CLI` names the byok-cli to time (the release build).

use std::time::Instant;

use azure_security_keyvault_keys::models::ListKeyPropertiesResult;
use futures_util::{StreamExt as _, TryStreamExt as _};

#[path = "../tests/common/sdk.rs"]
mod sdk;

const KEYS: usize = 1_000;
const RUNS: usize = 5;

/// Writes `KEYS` keys into a state directory as the emulator keeps them, each tagged as byok tags its imports.
fn seed(state: &std::path::Path) {
    let keys = state.join("keys");
    std::fs::create_dir_all(&keys).expect("state dir");
    for i in 0..KEYS {
        let version = serde_json::json!([{
            "version": format!("{i:032x}"),
            "kty": "EC-HSM",
            "key_ops": ["sign", "verify"],
            "enabled": true, "nbf": null, "exp": null,
            "created": 1_700_000_000 + i, "updated": 1_700_000_000 + i,
            "exportable": false,
            "tags": {
                "byok-transfer": format!("{i:032x}"), "byok-token": "5a3c00e1",
                "byok-key-id": format!("sha256:{i:032x}"), "byok-kind": "EC-P-256", "byok-tool": "byok-cli/0.1.0"
            },
            "origin": "byok",
            "material": {"type": "oct", "key": "AAAAAAAAAAAAAAAAAAAAAA=="}
        }]);
        std::fs::write(keys.join(format!("k{i}.json")), version.to_string()).expect("key file");
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The SDK alone: every key, then every key's versions; returns how many versions it saw.
async fn sdk_listing(info: &byok_emulator::Info) -> usize {
    let client = sdk::client(info);
    let keys: Vec<String> = client
        .list_key_properties(None)
        .expect("pager")
        .map_ok(|k| k.kid.unwrap_or_default())
        .try_collect()
        .await
        .expect("keys");
    let client = &client;
    let counts: Vec<usize> = futures_util::stream::iter(keys)
        .map(|kid| async move {
            let name = kid.rsplit('/').next().expect("name").to_owned();
            let pages = client
                .list_key_properties_versions(&name, None)
                .expect("pager")
                .into_pages();
            let pages: Vec<ListKeyPropertiesResult> = pages
                .map_ok(|p| p.into_model().expect("page"))
                .try_collect()
                .await
                .expect("versions");
            pages.iter().map(|p| p.value.len()).sum::<usize>()
        })
        .buffered(1)
        .collect()
        .await;
    counts.iter().sum()
}

#[allow(clippy::print_stdout)]
fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("vault");
    seed(&state);
    let vault = byok_emulator::Background::start(byok_emulator::Config::new(state)).expect("the local Key Vault");
    let info = &vault.info;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (mut sdk_ms, mut status_ms) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let start = Instant::now();
        assert_eq!(runtime.block_on(sdk_listing(info)), KEYS);
        sdk_ms.push(start.elapsed().as_secs_f64() * 1e3);
        let start = Instant::now();
        let out = byok_tests::byok_cli()
            .args([
                "--output",
                "json",
                "status",
                "--vault-url",
                &info.vault_url,
                "--ca-file",
            ])
            .arg(&info.ca_file)
            .env("AZURE_TENANT_ID", &info.tenant_id)
            .env("AZURE_CLIENT_ID", &info.client_id)
            .env("AZURE_CLIENT_SECRET", &info.client_secret)
            .env("AZURE_AUTHORITY_HOST", &info.authority_host)
            .output()
            .expect("byok-cli runs");
        status_ms.push(start.elapsed().as_secs_f64() * 1e3);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let inv: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(
            inv["keys"].as_array().map(Vec::len),
            Some(KEYS),
            "status sees every key"
        );
    }
    let (sdk, status) = (median(sdk_ms), median(status_ms));
    // The one line `cargo xtask bench` reads.
    println!(
        "{}",
        serde_json::json!({"keys": KEYS, "sdk_ms": sdk, "status_ms": status, "ratio": status / sdk})
    );
}
