//! What real HSMs do and the soft tokens here do not, through a PKCS#11 module that forwards to SoftHSM and injects
//! faults (`tests/pkcs11-shim`): a session limit (CKR_SESSION_COUNT), a device removed mid-batch
//! (CKR_DEVICE_REMOVED), and a token that wants a bigger output buffer than the result needs (CKR_BUFFER_TOO_SMALL).

use std::path::Path;
use std::process::{Command, Output};

use byok_tests::hsm::{Token, env, shim_over_softhsm};
use byok_tests::vault::{LocalVault, batch_args, full_transfer_args};
use byok_tests::{byok_cli, run, stderr, stdout};
use serde_json::Value;

/// `byok-cli ARGS` on SoftHSM's `byok-src` token through the shim, with the vault's credentials and `faults`.
fn through_shim(vault: &LocalVault, args: &[String], faults: &[(&str, &str)]) -> Output {
    let (shim, softhsm) = shim_over_softhsm();
    let e = env();
    let mut cmd: Command = byok_cli();
    let transfers = args.iter().any(|a| a == "full-transfer" || a == "batch");
    cmd.args(args)
        .args(if transfers {
            vault.transfer_flags()
        } else {
            vault.flags()
        })
        .arg("--pkcs11-module")
        .arg(&shim)
        .args(["--pin-file", e["pin_file"].as_str().expect("pin")])
        .env("SOFTHSM2_CONF", e["softhsm"]["conf"].as_str().expect("conf"))
        .env("BYOK_SHIM_TARGET", &softhsm);
    for (k, v) in faults {
        cmd.env(k, v);
    }
    vault.credentials(&mut cmd);
    run(&mut cmd)
}

/// `n` fresh AES-256 keys in SoftHSM and a manifest naming them `{prefix}{i}`.
fn aes_manifest(dir: &Path, prefix: &str, n: usize) -> std::path::PathBuf {
    let mut text = String::new();
    for i in 0..n {
        let uri = Token::SoftHsm.generate(&["--kty", "oct", "--size", "256"], &format!("{prefix}-{i}"))["uri"]
            .as_str()
            .expect("uri")
            .to_owned();
        text.push_str(&format!("[[key]]\nuri = \"{uri}\"\nname = \"{prefix}{i}\"\n\n"));
    }
    let path = dir.join(format!("{prefix}.toml"));
    std::fs::write(&path, text).expect("manifest");
    path
}

fn summary(out: &Output) -> Value {
    let last = stdout(out).lines().last().map(str::to_owned).unwrap_or_default();
    serde_json::from_str::<Value>(&last).unwrap_or_default()["summary"].clone()
}

#[test]
fn an_hsm_with_one_session_still_moves_every_key() {
    let vault = LocalVault::start(true, "", |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = aes_manifest(dir.path(), "one", 6);
    let args = batch_args(&manifest, &["--hsm-sessions", "3"]);
    let out = through_shim(&vault, &args, &[("BYOK_SHIM_MAX_SESSIONS", "1")]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        err.matches("could not be opened").count(),
        2,
        "two of the three sessions are refused: {err}"
    );
    assert!(err.contains("CKR_SESSION_COUNT"), "{err}");
    assert_eq!(summary(&out)["done"], 6);
    for i in 0..6 {
        assert_eq!(vault.versions(&format!("one{i}")), 1);
    }
}

#[test]
fn a_device_removed_mid_batch_stops_it_and_the_resume_finishes() {
    const N: usize = 30;
    let vault = LocalVault::start(true, "", |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = aes_manifest(dir.path(), "gone", N);
    let state = dir.path().join("state.jsonl");
    let state_arg = state.display().to_string();
    let args = batch_args(&manifest, &["--hsm-sessions", "1", "--resume", &state_arg]);
    // The self-test wraps fewer than 16 times; each key wraps twice (the key, then the AES key). After 40 wraps the
    // token goes, in the middle of the batch.
    let out = through_shim(&vault, &args, &[("BYOK_SHIM_REMOVE_AFTER_WRAPS", "40")]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(
        err.contains("is no longer available") && err.contains("CKR_DEVICE_REMOVED"),
        "{err}"
    );
    let s = summary(&out);
    let done = s["done"].as_u64().expect("done") as usize;
    assert!((1..N).contains(&done), "removed mid-batch: {s}");
    assert_eq!(s["failed"], 1, "{s}");

    // The device is back: the resume imports every other key, each exactly once.
    let out = through_shim(&vault, &args, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary(&out)["done"].as_u64(), Some((N - done) as u64));
    for i in 0..N {
        assert_eq!(vault.versions(&format!("gone{i}")), 1, "gone{i}");
    }
}

#[test]
fn a_token_that_wants_a_bigger_buffer_gets_one() {
    let vault = LocalVault::start(true, "", |_| {});
    let uri = Token::SoftHsm.generate(&["--kty", "oct", "--size", "256"], "roomy")["uri"]
        .as_str()
        .expect("uri")
        .to_owned();
    let args = full_transfer_args(&uri, "roomy");
    // Larger than byok's first buffer (8 KiB): every wrap is first refused with CKR_BUFFER_TOO_SMALL.
    let out = through_shim(&vault, &args, &[("BYOK_SHIM_WRAP_WANTS", "10000")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let record: Value = serde_json::from_str(&stdout(&out)).expect("record");
    assert_eq!(record["verification"]["result"], "verified", "{record}");
    assert_eq!(vault.versions("roomy"), 1);

    // The same token asking for an absurd 20 MB is refused, not obeyed: byok's retry is bounded (16 MiB).
    let args: Vec<String> = args
        .into_iter()
        .map(|a| if a == "roomy" { "roomy-2".to_owned() } else { a })
        .collect();
    let out = through_shim(&vault, &args, &[("BYOK_SHIM_WRAP_WANTS", "20000000")]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(stderr(&out).contains("CKR_BUFFER_TOO_SMALL"), "{}", stderr(&out));
    assert_eq!(vault.versions("roomy-2"), 0);
}
