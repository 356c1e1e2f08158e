//! The real Managed HSM attestation (testdata/attestation): verified with the pinned Marvell roots, bound to its key,
//! and refused when anything about it changes.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use byok_attestation::{Attestation, Check, Firmware, Roots, Verified};
use byok_encoding::TargetPublicKey;
use serde_json::Value;

const REAL_KID: &str = "https://clitesthsmkeyatsbvzpfrzm.managedhsm.azure.net/keys/key1-hnhgsllilfcl3pdtpld/7071fabc480c0ca186f786a9b78c9456";

fn fixture() -> Value {
    serde_json::from_slice(&byok_testdata::read("attestation/mhsm-rsa2048-uksouth.json")).expect("JSON")
}

fn verify(doc: &Value) -> Result<Verified, byok_attestation::Refusal> {
    Attestation::from_json(doc.to_string().as_bytes())?.verify(&Roots::marvell())
}

fn jwk(doc: &Value, name: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(doc["key"][name].as_str().expect(name))
        .expect("base64url")
}

#[test]
fn the_real_attestation_verifies_with_the_pinned_marvell_roots() {
    let doc = fixture();
    let v = verify(&doc).expect("verified");
    assert_eq!(v.root, "Marvell LiquidSecurity LS1");
    assert_eq!(v.firmware, Firmware::V2);
    let roles: Vec<_> = v.chain.iter().map(|c| c.role).collect();
    assert_eq!(roles, ["card", "partition", "pool", "pool-partition"]);
    assert!(
        v.chain[0].subject.contains("HSM:5.3G2142-ICM003565"),
        "{}",
        v.chain[0].subject
    );
    assert!(
        v.chain[2].subject.contains("clitesthsmkeyatsbvzpfrzm"),
        "{}",
        v.chain[2].subject
    );
    let p = &v.private;
    assert_eq!(p.class.as_deref(), Some("private-key"));
    assert_eq!(p.key_type.as_deref(), Some("RSA"));
    assert_eq!(p.label.as_deref(), Some("customer_key"));
    assert_eq!(
        (p.local, p.never_extractable, p.extractable, p.sensitive),
        (Some(true), Some(true), Some(false), Some(true))
    );
    assert_eq!(p.modulus_bits, Some(2048));
    assert_eq!(p.modulus.as_deref(), Some(jwk(&doc, "n").as_slice()));
    assert_eq!(p.count, 45);
    let public = v.public.as_ref().expect("a public key attestation");
    assert_eq!(public.class.as_deref(), Some("public-key"));
    assert_eq!(public.modulus, p.modulus);
}

#[test]
fn it_binds_to_its_key_and_to_nothing_else() {
    let doc = fixture();
    let v = verify(&doc).expect("verified");
    let key = TargetPublicKey::from_rsa_components(&jwk(&doc, "n"), &jwk(&doc, "e")).expect("RSA");
    v.check_public_key(&key).expect("its own key");
    v.check_key_id(REAL_KID).expect("its own id");

    let mut other_n = jwk(&doc, "n");
    other_n[100] ^= 1;
    let other = TargetPublicKey::from_rsa_components(&other_n, &jwk(&doc, "e")).expect("RSA");
    assert_eq!(v.check_public_key(&other).expect_err("refused").check, Check::PublicKey);
    let other_e = TargetPublicKey::from_rsa_components(&jwk(&doc, "n"), &[3]).expect("RSA");
    assert_eq!(
        v.check_public_key(&other_e).expect_err("refused").check,
        Check::PublicKey
    );

    // The recording's sanitized kid, another version, another name: all refused, naming what the HSM attests.
    let sanitized = doc["key"]["kid"].as_str().expect("kid");
    let wrong_version = REAL_KID.replace("7071fabc", "7071fabd");
    let wrong_name = REAL_KID.replace("key1-hnhg", "key2-hnhg");
    for kid in [
        sanitized,
        &wrong_version,
        &wrong_name,
        "https://h/keys/key1-hnhgsllilfcl3pdtpld",
        "not a kid",
    ] {
        let refusal = v.check_key_id(kid).expect_err("refused");
        assert_eq!(refusal.check, Check::KeyId, "{kid}");
    }
    assert!(
        v.check_key_id(sanitized)
            .expect_err("refused")
            .detail
            .contains("/keys/key1-hnhgsllilfcl3pdtpld/")
    );
}

#[test]
fn the_kek_check_says_this_key_is_sound_but_not_a_kek() {
    let doc = fixture();
    let attestation = Attestation::from_json(doc.to_string().as_bytes()).expect("parsed");
    let v = attestation.verify(&Roots::marvell()).expect("verified");
    let ops = attestation.bundle_key_ops().expect("key_ops").to_vec();
    let refusal = v.check_kek(&ops).expect_err("refused");
    assert_eq!(refusal.check, Check::Kek);
    assert!(
        refusal.detail.contains("not a KEK: its key_ops are"),
        "{}",
        refusal.detail
    );
    // Its attested properties are a KEK's (generated inside, never extractable, sensitive, RSA).
    v.check_kek(&["import".to_owned()])
        .expect("a KEK's attested properties");
}
