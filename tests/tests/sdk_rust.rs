//! The official Rust SDK (`azure_security_keyvault_keys` 1.x with `azure_identity`'s `ClientSecretCredential`)
//! against the local Key Vault, as a Key Vault and as a Managed HSM: challenge auth through the emulator's token
//! endpoint, an import-only KEK, BYOK imports whose public halves and signatures match the source keys.

use azure_core::http::RequestContent;
use azure_security_keyvault_keys::models::{
    CreateKeyParameters, CurveName, ImportKeyParameters, JsonWebKey, KeyClientGetKeyOptions, KeyClientSignOptions,
    KeyOperation, KeyType, SignParameters, SignatureAlgorithm,
};
use byok_blob::{ByokBlob, KeyId};
use byok_encoding::{KekPublicKey, TargetKey, TargetPublicKey};
use byok_tests::testdata;

#[path = "common/sdk.rs"]
mod sdk;
use byok_wrap::KekEncryptor;
use sdk::client;

/// An import request carrying a `.byok` document in `key_hsm`.
fn byok_import(
    kty: KeyType,
    crv: Option<CurveName>,
    ops: &[&str],
    blob: Vec<u8>,
) -> RequestContent<ImportKeyParameters> {
    let key = JsonWebKey {
        kty: Some(kty),
        crv,
        key_ops: Some(ops.iter().map(|o| (*o).to_owned()).collect()),
        t: Some(blob),
        ..Default::default()
    };
    ImportKeyParameters {
        key: Some(key),
        ..Default::default()
    }
    .try_into()
    .expect("body")
}

async fn scenario(managed_hsm: bool, name: Option<&str>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = byok_emulator::Config::new(dir.path().to_path_buf());
    config.managed_hsm = managed_hsm;
    config.name = name.map(str::to_owned);
    let running = byok_emulator::start(config).await.expect("emulator");
    let client = client(&running.info);

    // An import-only KEK.
    let create = CreateKeyParameters {
        kty: Some(KeyType::RsaHsm),
        key_size: Some(3072),
        key_ops: Some(vec![KeyOperation::Import]),
        ..Default::default()
    };
    let content: RequestContent<CreateKeyParameters> = create.try_into().expect("body");
    let kek = client
        .create_key("rust-kek", content, None)
        .await
        .expect("create KEK")
        .into_model()
        .expect("model");
    let jwk = kek.key.expect("JWK");
    assert_eq!(jwk.key_ops.as_deref(), Some(&["import".to_owned()][..]));
    let kid = KeyId::parse(jwk.kid.as_deref().expect("kid")).expect("versioned kid");
    if let Some(name) = name {
        assert!(
            kid.host().starts_with(&format!("{name}.")),
            "key ids carry the vault's name: {kid}"
        );
        assert_ne!(kid.vault_kind(), byok_blob::VaultKind::Other);
    }
    let read_back = client
        .get_key(
            "rust-kek",
            Some(KeyClientGetKeyOptions {
                key_version: Some(kid.version().to_owned()),
                ..Default::default()
            }),
        )
        .await
        .expect("get KEK")
        .into_model()
        .expect("model");
    assert_eq!(read_back.key.and_then(|k| k.n), jwk.n, "the KEK reads back");
    let kek_public =
        KekPublicKey::from_components(jwk.n.as_deref().expect("n"), jwk.e.as_deref().expect("e")).expect("KEK");

    // A BYOK import of an EC P-256 key (the HSM layout, no public point inside), read back and signed with.
    let source =
        TargetKey::from_private_key_file(&std::fs::read(testdata("keys/ec-p256.pkcs8-minimal.der")).expect("key"))
            .expect("EC key");
    let ciphertext = KekEncryptor::new(&kek_public)
        .expect("KEK")
        .wrap(source.plaintext())
        .expect("wraps");
    let blob = ByokBlob::new(kid, ciphertext, "byok sdk fidelity (Rust)").to_json();
    let content = byok_import(KeyType::EcHsm, Some(CurveName::P256), &["sign", "verify"], blob);
    let imported = client
        .import_key("rust-ec", content, None)
        .await
        .expect("BYOK import")
        .into_model()
        .expect("model");
    let got = client
        .get_key("rust-ec", None::<KeyClientGetKeyOptions<'_>>)
        .await
        .expect("get")
        .into_model()
        .expect("model");
    let got_jwk = got.key.expect("JWK");
    let Some((_, point)) = source.public_key().and_then(TargetPublicKey::ec) else {
        panic!("EC")
    };
    assert_eq!(got_jwk.x.as_deref(), Some(&point[1..33]), "x of the source key");
    assert_eq!(got_jwk.y.as_deref(), Some(&point[33..]), "y of the source key");

    let version = imported
        .key
        .and_then(|k| k.kid)
        .expect("kid")
        .rsplit('/')
        .next()
        .expect("version")
        .to_owned();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"byok fidelity");
    let sign = SignParameters {
        algorithm: Some(SignatureAlgorithm::Es256),
        value: Some(digest.as_ref().to_vec()),
    };
    let sign_options = KeyClientSignOptions {
        key_version: Some(version),
        ..Default::default()
    };
    let content: RequestContent<SignParameters> = sign.try_into().expect("body");
    let signed = client
        .sign("rust-ec", content, Some(sign_options))
        .await
        .expect("sign")
        .into_model()
        .expect("model");
    let signature = signed.result.expect("signature");
    aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED, point)
        .verify_digest(&digest, &signature)
        .expect("the source key's public half verifies the vault's signature");

    // A blob for another KEK is refused with the vault's reason, through the SDK's error.
    let other = KekPublicKey::parse(&std::fs::read(testdata("keys/kek-rsa3072.spki.pem")).expect("KEK")).expect("KEK");
    let wrong = KekEncryptor::new(&other)
        .expect("KEK")
        .wrap(source.plaintext())
        .expect("wraps");
    let kid = KeyId::parse(jwk.kid.as_deref().expect("kid")).expect("kid");
    let content = byok_import(
        KeyType::EcHsm,
        Some(CurveName::P256),
        &["sign"],
        ByokBlob::new(kid, wrong, "wrong KEK").to_json(),
    );
    let err = client
        .import_key("rust-refused", content, None)
        .await
        .expect_err("refused");
    let status = err.http_status().map(u16::from);
    assert_eq!(status, Some(400), "{err:?}");

    if managed_hsm {
        let aes = [0x3Cu8; 32];
        let ciphertext = KekEncryptor::new(&kek_public).expect("KEK").wrap(&aes).expect("wraps");
        let kid = KeyId::parse(jwk.kid.as_deref().expect("kid")).expect("kid");
        let content = byok_import(
            KeyType::OctHsm,
            None,
            &["wrapKey", "unwrapKey"],
            ByokBlob::new(kid, ciphertext, "aes").to_json(),
        );
        let imported = client
            .import_key("rust-aes", content, None)
            .await
            .expect("oct-HSM import")
            .into_model()
            .expect("model");
        assert!(matches!(imported.key.and_then(|k| k.kty), Some(KeyType::OctHsm)));
    }
    running.shutdown().await.expect("stops");
}

#[tokio::test]
async fn rust_sdk_against_the_local_key_vault() {
    scenario(false, None).await;
}

#[tokio::test]
async fn rust_sdk_against_a_named_vault_with_the_challenge_check_on() {
    scenario(false, Some("contoso")).await;
    scenario(true, Some("contoso-hsm")).await;
}

#[tokio::test]
async fn rust_sdk_against_the_local_managed_hsm() {
    scenario(true, None).await;
}
