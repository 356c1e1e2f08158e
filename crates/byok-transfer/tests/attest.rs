//! `attest::check` on the real Managed HSM attestation: every check reported, bindings from the caller or the file.

use byok_attestation::Roots;
use byok_transfer::attest::{AttestationReport, Binding, check};

const REAL_KID: &str = "https://clitesthsmkeyatsbvzpfrzm.managedhsm.azure.net/keys/key1-hnhgsllilfcl3pdtpld/7071fabc480c0ca186f786a9b78c9456";

fn fixture() -> Vec<u8> {
    byok_testdata::read("attestation/mhsm-rsa2048-uksouth.json")
}

fn results(report: &AttestationReport) -> Vec<(&str, &str)> {
    report
        .checks
        .iter()
        .map(|c| (c.check.as_str(), c.result.as_str()))
        .collect()
}

const CHAIN_PASSED: [(&str, &str); 6] = [
    ("certificates", "passed"),
    ("vendor-root", "passed"),
    ("partition-certificate", "passed"),
    ("signature", "passed"),
    ("pool-certificate", "passed"),
    ("attributes", "passed"),
];

#[test]
fn bound_to_its_real_kid_it_verifies_and_the_files_own_jwk_matches() {
    let binding = Binding {
        kid: Some(REAL_KID.into()),
        public_key: None,
        kek: false,
    };
    let report = check(&fixture(), &Roots::marvell(), &binding).expect("an attestation");
    let mut expected = CHAIN_PASSED.to_vec();
    expected.extend([("key-id", "passed"), ("public-key", "passed")]);
    assert_eq!(results(&report), expected);
    assert!(report.verified);
    assert!(
        report.checks[7].detail.contains("the file's public key"),
        "{}",
        report.checks[7].detail
    );
}

#[test]
fn the_files_sanitized_kid_and_the_kek_check_fail_on_their_own() {
    let binding = Binding {
        kid: None,
        public_key: None,
        kek: true,
    };
    let report = check(&fixture(), &Roots::marvell(), &binding).expect("an attestation");
    let mut expected = CHAIN_PASSED.to_vec();
    expected.extend([("key-id", "failed"), ("public-key", "passed"), ("kek", "failed")]);
    assert_eq!(results(&report), expected);
    assert!(!report.verified);
    assert!(
        report.checks[6].detail.contains("/keys/key1-hnhgsllilfcl3pdtpld/"),
        "{}",
        report.checks[6].detail
    );
    assert!(
        report.checks[8].detail.contains("not a KEK"),
        "{}",
        report.checks[8].detail
    );
}

#[test]
fn a_forged_signature_fails_there_and_runs_nothing_after() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut doc: serde_json::Value = serde_json::from_slice(&fixture()).expect("JSON");
    let field = &mut doc["attributes"]["attestation"]["privateKeyAttestation"];
    let mut blob = URL_SAFE_NO_PAD
        .decode(field.as_str().expect("blob"))
        .expect("base64url");
    let last = blob.len() - 1;
    blob[last] ^= 0x80;
    *field = URL_SAFE_NO_PAD.encode(&blob).into();
    let binding = Binding {
        kid: Some(REAL_KID.into()),
        public_key: None,
        kek: false,
    };
    let report = check(doc.to_string().as_bytes(), &Roots::marvell(), &binding).expect("an attestation");
    assert_eq!(
        results(&report),
        [
            ("certificates", "passed"),
            ("vendor-root", "passed"),
            ("partition-certificate", "passed"),
            ("signature", "failed"),
            ("pool-certificate", "not-run"),
            ("attributes", "not-run"),
        ]
    );
    assert!(!report.verified && report.attestation.is_none());
    assert!(check(b"{\"not\": \"an attestation\"}", &Roots::marvell(), &binding).is_err());
}

mod common;

#[tokio::test(flavor = "multi_thread")]
async fn fetched_from_the_local_managed_hsm_its_kek_attestation_verifies_and_a_forged_one_does_not() {
    use byok_encoding::{RsaSize, TargetPublicKey};
    for (faults, verified) in [("", true), ("attestation=forged", false)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let vault = common::LocalVault::start_managed_hsm(&dir.path().join("vault"), faults);
        let conn = vault.connection();
        let kek = conn.create_kek("kek", RsaSize::Rsa2048).await.expect("a KEK");
        let public = TargetPublicKey::from_rsa_components(kek.public.modulus(), kek.public.exponent()).expect("RSA");
        let binding = Binding {
            kid: Some(kek.kid.to_string()),
            public_key: Some(public),
            kek: true,
        };
        let report = byok_transfer::attest::fetch(&conn, "kek", None, &vault.attestation_roots(), &binding)
            .await
            .expect("an attestation");
        assert_eq!(report.verified, verified, "{faults}: {:?}", results(&report));
        if verified {
            let mut expected = CHAIN_PASSED.to_vec();
            expected.extend([("key-id", "passed"), ("public-key", "passed"), ("kek", "passed")]);
            assert_eq!(results(&report), expected);
        } else {
            assert!(
                results(&report).contains(&("signature", "failed")),
                "{:?}",
                results(&report)
            );
        }
    }
}
