//! Reading the keys in `testdata/keys`, made by the OpenSSL CLI (see `testdata/make-keys.sh`).

use byok_encoding::{Curve, Error, KekPublicKey, KeyKind, RsaSize, TargetKey, TargetPublicKey};

fn key_file(name: &str) -> Vec<u8> {
    let path = format!("{}/../../testdata/keys/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn target(name: &str) -> Result<TargetKey, Error> {
    TargetKey::from_private_key_file(&key_file(name))
}

#[test]
fn every_supported_target_form_is_read() {
    let cases = [
        ("rsa2048.pkcs8.pem", KeyKind::Rsa(RsaSize::Rsa2048)),
        ("rsa2048.pkcs8.der", KeyKind::Rsa(RsaSize::Rsa2048)),
        ("rsa2048.pkcs1.pem", KeyKind::Rsa(RsaSize::Rsa2048)),
        ("rsa2048.pkcs1.der", KeyKind::Rsa(RsaSize::Rsa2048)),
        ("kek-rsa3072.pkcs8.pem", KeyKind::Rsa(RsaSize::Rsa3072)),
        ("kek-rsa4096.pkcs8.pem", KeyKind::Rsa(RsaSize::Rsa4096)),
        ("ec-p256.sec1-with-params.pem", KeyKind::Ec(Curve::P256)),
        ("ec-p256.pkcs8.pem", KeyKind::Ec(Curve::P256)),
        ("ec-p256.pkcs8-minimal.der", KeyKind::Ec(Curve::P256)),
        ("ec-p384.pkcs8.pem", KeyKind::Ec(Curve::P384)),
        ("ec-p384.sec1.der", KeyKind::Ec(Curve::P384)),
        ("ec-p521.pkcs8.pem", KeyKind::Ec(Curve::P521)),
        ("ec-secp256k1.pkcs8.pem", KeyKind::Ec(Curve::P256K)),
    ];
    for (name, kind) in cases {
        let key = target(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(key.kind(), kind, "{name}");
        // The plaintext is always strict PKCS#8 of the same key.
        let again = TargetKey::from_pkcs8_der(key.plaintext()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(again.public_key(), key.public_key(), "{name}");
    }
}

#[test]
fn pkcs1_becomes_the_same_pkcs8_openssl_writes() {
    let from_pkcs1 = target("rsa2048.pkcs1.pem").expect("PKCS#1 reads");
    assert_eq!(from_pkcs1.plaintext(), key_file("rsa2048.pkcs8.der"));
}

#[test]
fn sec1_and_pkcs8_forms_of_one_ec_key_agree() {
    let sec1 = target("ec-p256.sec1-with-params.pem").expect("SEC1 reads");
    let pkcs8 = target("ec-p256.pkcs8.pem").expect("PKCS#8 reads");
    let minimal = target("ec-p256.pkcs8-minimal.der").expect("HSM layout reads");
    assert_eq!(
        sec1.plaintext(),
        pkcs8.plaintext(),
        "SEC1 converts to OpenSSL's PKCS#8 layout"
    );
    assert_eq!(
        minimal.public_key(),
        pkcs8.public_key(),
        "public point derived from the scalar"
    );
    assert_eq!(minimal.plaintext().len(), 67);
}

#[test]
fn public_fingerprint_matches_openssl_spki() {
    let key = target("ec-p256.pkcs8.pem").expect("reads");
    let Some(public) = key.public_key().filter(|p| p.ec().is_some()) else {
        panic!("EC key has an EC public half")
    };
    let spki_pem = String::from_utf8(key_file("ec-p256.spki.pem")).expect("utf-8");
    let body: String = spki_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64_decode(&body);
    assert_eq!(public.to_spki_der(), der);
}

#[test]
fn refused_targets_say_why() {
    assert_eq!(
        target("rsa1024.pkcs8.pem").err(),
        Some(Error::UnsupportedRsaSize { bits: 1024 })
    );
    assert_eq!(target("rsa2048.encrypted.pem").err(), Some(Error::EncryptedPrivateKey));
    assert!(matches!(
        target("ec-brainpoolp256r1.pkcs8.pem"),
        Err(Error::UnsupportedCurve { curve }) if curve.starts_with("brainpoolP256r1")
    ));
    assert!(matches!(
        target("ed25519.pkcs8.pem"),
        Err(Error::UnsupportedAlgorithm { .. })
    ));
    assert!(matches!(
        target("kek-rsa2048.spki.pem"),
        Err(Error::UnexpectedPemLabel { .. })
    ));
    assert!(matches!(target("aes256.raw"), Err(Error::UnrecognizedFormat { .. })));
}

#[test]
fn strict_pkcs8_refuses_trailing_bytes_and_tampering() {
    let mut der = key_file("rsa2048.pkcs8.der");
    der.push(0);
    assert!(matches!(TargetKey::from_pkcs8_der(&der), Err(Error::Malformed { .. })));

    // SoftHSM 2.6.1 zero-pads to a multiple of 8 before wrapping; a strict reader must notice.
    let mut padded = key_file("ec-p256.pkcs8-minimal.der");
    padded.extend([0; 5]);
    assert!(TargetKey::from_pkcs8_der(&padded).is_err());

    // Flip a bit of the private exponent: the components no longer agree.
    let mut der = key_file("rsa2048.pkcs8.der");
    let len = der.len();
    der[len - 400] ^= 0x01;
    assert!(matches!(
        TargetKey::from_pkcs8_der(&der),
        Err(Error::InconsistentKey(_))
    ));
}

#[test]
fn every_kek_form_is_read_and_agrees() {
    let pem = KekPublicKey::parse(&key_file("kek-rsa4096.spki.pem")).expect("SPKI PEM");
    let der = KekPublicKey::parse(&key_file("kek-rsa4096.spki.der")).expect("SPKI DER");
    assert_eq!(pem, der);
    assert_eq!(pem.size(), RsaSize::Rsa4096);
    let pkcs1 = KekPublicKey::parse(&key_file("kek-rsa3072.pkcs1.pem")).expect("PKCS#1 PEM");
    let spki = KekPublicKey::parse(&key_file("kek-rsa3072.spki.pem")).expect("SPKI PEM");
    assert_eq!(pkcs1, spki);
    assert_eq!(
        spki.to_pem().as_bytes(),
        key_file("kek-rsa3072.spki.pem"),
        "PEM output is what OpenSSL writes"
    );
}

#[test]
fn refused_keks_say_why() {
    let parse = |name: &str| KekPublicKey::parse(&key_file(name)).err();
    assert_eq!(
        parse("kek-rsa1024.spki.pem"),
        Some(Error::UnsupportedKekSize { bits: 1024 })
    );
    assert_eq!(
        parse("kek-rsa8192.spki.pem"),
        Some(Error::UnsupportedKekSize { bits: 8192 })
    );
    assert_eq!(parse("kek-rsa2048.pkcs8.pem"), Some(Error::PrivateKeyAsKek));
    assert_eq!(parse("rsa2048.pkcs8.der"), Some(Error::PrivateKeyAsKek));
    assert!(matches!(parse("ec-p256.spki.pem"), Some(Error::KekNotRsa { .. })));
    assert!(matches!(parse("aes256.raw"), Some(Error::UnrecognizedFormat { .. })));
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64 body")
}

#[test]
fn keys_rebuilt_from_components_are_the_same_keys() {
    use der::Decode as _;
    let rsa = target("rsa2048.pkcs1.der").expect("RSA");
    let pkcs1 = key_file("rsa2048.pkcs1.der");
    let k = pkcs1::RsaPrivateKeyRef::from_der(&pkcs1).expect("PKCS#1");
    let rebuilt = TargetKey::from_rsa_components(
        k.modulus.as_bytes(),
        k.public_exponent.as_bytes(),
        k.private_exponent.as_bytes(),
        k.prime1.as_bytes(),
        k.prime2.as_bytes(),
        k.exponent1.as_bytes(),
        k.exponent2.as_bytes(),
        k.coefficient.as_bytes(),
    )
    .expect("rebuilds");
    assert_eq!(rebuilt.plaintext(), rsa.plaintext());
    // A wrong prime is caught.
    let mut bad_q = k.prime2.as_bytes().to_vec();
    bad_q[10] ^= 1;
    assert!(
        TargetKey::from_rsa_components(
            k.modulus.as_bytes(),
            k.public_exponent.as_bytes(),
            k.private_exponent.as_bytes(),
            k.prime1.as_bytes(),
            &bad_q,
            k.exponent1.as_bytes(),
            k.exponent2.as_bytes(),
            k.coefficient.as_bytes(),
        )
        .is_err()
    );

    let ec = target("ec-p256.pkcs8.pem").expect("EC");
    let Some((_, point)) = ec.public_key().and_then(TargetPublicKey::ec) else {
        panic!("EC")
    };
    let info = pkcs8::PrivateKeyInfoRef::from_der(ec.plaintext()).expect("PKCS#8");
    let sec1 = sec1::EcPrivateKey::from_der(info.private_key.as_bytes()).expect("SEC1");
    let rebuilt =
        TargetKey::from_ec_components(Curve::P256, sec1.private_key, &point[1..33], &point[33..]).expect("rebuilds");
    assert_eq!(rebuilt.public_key(), ec.public_key());
    let mut wrong_y = point[33..].to_vec();
    wrong_y[0] ^= 1;
    assert!(TargetKey::from_ec_components(Curve::P256, sec1.private_key, &point[1..33], &wrong_y).is_err());
}

#[test]
fn public_halves_rebuild_from_jwk_components() {
    for name in [
        "rsa2048.pkcs8.pem",
        "kek-rsa4096.pkcs8.pem",
        "ec-p256.pkcs8.pem",
        "ec-p384.pkcs8.pem",
        "ec-p521.pkcs8.pem",
        "ec-secp256k1.pkcs8.pem",
    ] {
        let key = target(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let public = key.public_key().expect("RSA and EC keys have a public half").clone();
        let rebuilt = match (public.rsa(), public.ec()) {
            (Some((n, e)), _) => {
                // A JWK may carry a leading zero byte; it does not change the key.
                let mut padded = vec![0];
                padded.extend_from_slice(n);
                TargetPublicKey::from_rsa_components(&padded, e)
            }
            (_, Some((curve, point))) => {
                let half = (point.len() - 1) / 2;
                TargetPublicKey::from_ec_components(curve, &point[1..=half], &point[1 + half..])
            }
            _ => panic!("{name}: neither RSA nor EC"),
        }
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        // The point form PKCS#11 holds gives the same key.
        if let Some((curve, point)) = public.ec() {
            assert_eq!(
                TargetPublicKey::from_ec_point(curve, point).as_ref(),
                Ok(&public),
                "{name}"
            );
        }
        assert_eq!(rebuilt, public, "{name}");
    }
}

#[test]
fn public_components_are_checked() {
    let key = target("ec-p256.pkcs8.pem").expect("fixture");
    let Some((_, point)) = key.public_key().and_then(TargetPublicKey::ec) else {
        panic!("an EC key")
    };
    let mut y = point[33..].to_vec();
    y[31] ^= 1;
    let off_curve = TargetPublicKey::from_ec_components(Curve::P256, &point[1..33], &y);
    assert!(
        matches!(&off_curve, Err(Error::Malformed { reason, .. }) if reason.contains("not on P-256")),
        "{off_curve:?}"
    );
    // The right coordinates on the wrong curve are refused too.
    assert!(TargetPublicKey::from_ec_components(Curve::P256K, &point[1..33], &point[33..]).is_err());
    assert_eq!(
        TargetPublicKey::from_rsa_components(&[0xC5; 128], &[1, 0, 1]).err(),
        Some(Error::UnsupportedRsaSize { bits: 1024 })
    );
    assert!(TargetPublicKey::from_rsa_components(&[0xC5; 256], &[2]).is_err());
}

#[test]
fn public_keys_are_read_from_spki_pem_and_der() {
    let ec = TargetPublicKey::from_spki(&key_file("ec-p256.spki.pem")).expect("EC SPKI");
    let ec_private = target("ec-p256.pkcs8.pem").expect("EC key");
    assert_eq!(Some(&ec), ec_private.public_key());
    let pem = TargetPublicKey::from_spki(&key_file("kek-rsa4096.spki.pem")).expect("RSA SPKI PEM");
    let der = TargetPublicKey::from_spki(&key_file("kek-rsa4096.spki.der")).expect("RSA SPKI DER");
    assert_eq!(pem, der);
    let kek = KekPublicKey::parse(&key_file("kek-rsa4096.spki.pem")).expect("KEK");
    assert_eq!(pem.rsa().map(|(n, _)| n), Some(kek.modulus()));
    assert_eq!(pem.to_spki_der(), key_file("kek-rsa4096.spki.der"));
    // A private key file is not a public key; nor is an RSA size Azure does not import.
    assert!(TargetPublicKey::from_spki(&key_file("ec-p256.pkcs8.pem")).is_err());
    assert!(matches!(
        TargetPublicKey::from_spki(&key_file("kek-rsa1024.spki.pem")),
        Err(Error::UnsupportedRsaSize { bits: 1024 })
    ));
}
