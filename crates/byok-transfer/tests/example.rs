//! `examples/full_transfer.rs` as a user runs it: a key made in a throwaway token goes into a local Key Vault, and
//! the record it returns — and writes — says what the vault now holds.

// The example's `main` reads a command line; the test calls its `transfer` with a `Config` of its own.
#[allow(dead_code)]
#[path = "../examples/full_transfer.rs"]
mod example;

mod common;

use byok_encoding::{KeyKind, RsaSize};
use byok_transfer::{KekPolicy, TransferRecord};

use common::{LocalVault, ThrowawayToken};

#[test]
fn the_example_transfers_a_token_key_into_a_local_key_vault_and_records_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = ThrowawayToken::create(&dir.path().join("token"));
    let key = token.generate(KeyKind::Rsa(RsaSize::Rsa2048), "example-key");
    let vault = LocalVault::start(&dir.path().join("vault"));
    let record_file = dir.path().join("example-key.record.json");

    let record = example::transfer(example::Config {
        module: token.module.clone(),
        pin: None,
        key: key.clone(),
        vault_url: vault.info.vault_url.clone(),
        name: "example-key".into(),
        credential: vault.credential(),
        ca_pem: Some(std::fs::read(&vault.info.ca_file).expect("the local Key Vault's CA")),
        record: record_file.clone(),
        kek: KekPolicy::reuse_or_create("byok-kek", RsaSize::Rsa2048),
    })
    .expect("the example transfers the key");

    let imported = record.key.as_ref().expect("the record names the imported key");
    let prefix = format!("{}/keys/example-key/", vault.info.vault_url);
    assert!(
        imported.kid.starts_with(&prefix),
        "{} is not a version of {prefix}",
        imported.kid
    );
    assert_eq!((imported.kty.as_str(), imported.kind.as_str()), ("RSA-HSM", "RSA-2048"));
    let verification = record
        .verification
        .as_ref()
        .expect("the record says how the key was verified");
    assert_eq!(verification.result, "verified", "{verification:?}");
    assert!(
        record.kek.created_by_this_transfer,
        "the first transfer creates its KEK"
    );
    assert!(
        record
            .kek
            .kid
            .starts_with(&format!("{}/keys/byok-kek/", vault.info.vault_url))
    );
    assert_eq!(record.source.token.label, ThrowawayToken::LABEL);
    assert_eq!(record.source.key_label, "example-key");
    assert!(record.wrap.conformant, "{:?}", record.wrap);

    // The vault received exactly one blob, and its digest is the one the record gives.
    let blobs = vault.observed.blobs();
    assert_eq!(blobs.len(), 1, "one import");
    assert_eq!(
        record.blob.sha256.as_deref(),
        Some(common::sha256_hex(&blobs[0]).as_str())
    );

    // What was written is the record returned, whole.
    let written: TransferRecord =
        serde_json::from_slice(&std::fs::read(&record_file).expect("the record file")).expect("a record");
    assert_eq!(written, record);
}
