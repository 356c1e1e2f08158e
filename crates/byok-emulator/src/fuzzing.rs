//! Entry points for the `emulator_request` fuzz target (feature `fuzzing`): request bodies straight into the
//! handlers' parsing, against a Managed HSM with a KEK and an AES, an RSA and an EC key — no HTTP, no TLS.

use std::sync::{Mutex, OnceLock};

use crate::{Faults, Shared, keys, state};

struct Fixture {
    shared: Shared,
    aes: String,
    rsa: String,
    ec: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("byok-emulator-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("fuzz state dir");
        let state = state::State::load_or_create(&dir).expect("fuzz state");
        let shared = Shared {
            vault_url: "https://fuzz.managedhsm.azure.net".into(),
            authority_host: "https://127.0.0.1".into(),
            audience: "https://managedhsm.azure.net",
            audiences: vec!["https://managedhsm.azure.net"],
            managed_hsm: true,
            state_dir: dir.clone(),
            tenant_dir: dir,
            state: Mutex::new(state),
            tokens: std::sync::Arc::new(Mutex::new(crate::tokens::Tokens::default())),
            token_lifetime: std::time::Duration::from_secs(60),
            faults: Faults::default(),
            fault_rolls: std::sync::atomic::AtomicU64::new(0),
            faults_injected: std::sync::atomic::AtomicU64::new(0),
            imports_admitted: std::sync::atomic::AtomicU64::new(0),
            received_blobs: Mutex::new(Vec::new()),
            limits: None,
            windows: crate::limits::Windows::default(),
            attestation: std::sync::Arc::new(OnceLock::new()),
        };
        let create = |name: &str, body: serde_json::Value| {
            if keys::fuzz_create(&shared, name, body.to_string().as_bytes()).is_err() {
                panic!("the fixture key `{name}` cannot be created");
            }
            let s = shared.state.lock().expect("state");
            s.keys[name].last().expect("version").version.clone()
        };
        create("kek", serde_json::json!({"kty": "RSA-HSM", "key_size": 2048, "key_ops": ["import"]}));
        let aes = create(
            "aes",
            serde_json::json!({"kty": "oct-HSM", "key_size": 256, "key_ops": ["encrypt", "decrypt", "wrapKey", "unwrapKey"]}),
        );
        let rsa = create(
            "rsa",
            serde_json::json!({"kty": "RSA-HSM", "key_size": 2048, "key_ops": ["sign", "verify", "encrypt", "decrypt", "wrapKey", "unwrapKey"]}),
        );
        let ec = create("ec", serde_json::json!({"kty": "EC-HSM", "crv": "P-256", "key_ops": ["sign", "verify"]}));
        Fixture { shared, aes, rsa, ec }
    })
}

/// One request body, to the handler `selector` picks: import, create, update, or a key operation on one of the
/// fixture keys. Whatever the body, the handler answers (an error response is fine); it must not panic.
pub fn request(selector: u8, body: &[u8]) {
    let f = fixture();
    const OPS: [&str; 6] = ["encrypt", "decrypt", "wrapkey", "unwrapkey", "sign", "verify"];
    let op = OPS[usize::from(selector / 8) % OPS.len()];
    match selector % 8 {
        0 => drop(keys::fuzz_import(&f.shared, "target", body)),
        1 => drop(keys::fuzz_create(&f.shared, "new", body)),
        2 => drop(keys::fuzz_update(&f.shared, "aes", &f.aes, body)),
        3 | 4 => drop(keys::fuzz_operation(&f.shared, "aes", &f.aes, op, body)),
        5 => drop(keys::fuzz_operation(&f.shared, "rsa", &f.rsa, op, body)),
        _ => drop(keys::fuzz_operation(&f.shared, "ec", &f.ec, op, body)),
    }
    // Keys made by the input do not pile up over millions of runs.
    let mut state = f.shared.state.lock().expect("state");
    state.keys.remove("target");
    state.keys.remove("new");
}
