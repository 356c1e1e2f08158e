//! Shared by the HSM benches: the SoftHSM token and the NSS database `cargo xtask setup` made, and one RSA-2048
//! target in each.

// Each bench binary compiles this module and uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub(crate) const TARGET_LABEL: &str = "bench-rsa2048";

pub(crate) fn env() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/hsm/env.json");
    let text =
        std::fs::read(&path).unwrap_or_else(|_| panic!("{} is missing: run `cargo xtask setup` first", path.display()));
    serde_json::from_slice(&text).expect("env.json")
}

/// SoftHSM reads its configuration from the environment at load time; `cargo xtask bench` sets it.
pub(crate) fn softhsm_module() -> PathBuf {
    let env = env();
    let conf = env["softhsm"]["conf"].as_str().expect("conf");
    assert_eq!(
        std::env::var("SOFTHSM2_CONF").ok().as_deref(),
        Some(conf),
        "run the HSM benches through `cargo xtask bench` (it sets SOFTHSM2_CONF={conf})"
    );
    PathBuf::from(env["softhsm"]["module"].as_str().expect("module"))
}

pub(crate) fn pin() -> String {
    env()["softhsm"]["pin"].as_str().expect("pin").to_owned()
}

pub(crate) fn kek_spki_pem() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/keys/kek-rsa4096.spki.pem"
    ))
    .expect("KEK")
}

/// NSS softokn: the module and the library parameters (`C_Initialize`'s `pReserved`) that open the test database.
pub(crate) fn nss() -> (PathBuf, String) {
    let env = env();
    (
        PathBuf::from(env["nss"]["module"].as_str().expect("module")),
        env["nss"]["init_args"].as_str().expect("init args").to_owned(),
    )
}

/// The NSS database's token.
pub(crate) const NSS_TOKEN: &str = "NSS Certificate DB";
