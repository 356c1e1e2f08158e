//! Every public type that holds a secret — a PIN, a client secret, a plaintext key, a KEK's private key, the
//! plaintext a vault would unwrap — formats with `{:?}` without showing it, in any encoding a log could carry.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use byok_encoding::{Kty, TargetKey};
use byok_keyvault::{AuthKind, Credential};
use byok_pkcs11::Pin;
use byok_tests::testdata;
use byok_wrap::KekPrivateKey;

/// Fails when `shown` contains any 8 bytes of `secret`: as text, in hex (either case), as a Rust byte list; or its
/// first 12 bytes in base64 / base64url.
fn hidden(what: &str, shown: &str, secret: &[u8]) {
    let head = &secret[..secret.len().min(12)];
    let mut forms = vec![STANDARD.encode(head), URL_SAFE_NO_PAD.encode(head)];
    for w in secret.windows(8) {
        let hex: String = w.iter().map(|b| format!("{b:02x}")).collect();
        forms.push(hex.to_uppercase());
        forms.push(hex);
        forms.push(format!("{w:?}").trim_matches(['[', ']']).to_owned());
        if let Ok(text) = std::str::from_utf8(w) {
            forms.push(text.to_owned());
        }
    }
    for form in &forms {
        assert!(
            !shown.contains(form.as_str()),
            "{what}: `{shown}` shows the secret as `{form}`"
        );
    }
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    let pin = "correct-horse-battery-staple";
    hidden("Pin", &format!("{:?}", Pin::new(pin.to_owned())), pin.as_bytes());

    let secret = "client-secret-0123456789abcdef";
    let var = |k: &str| match k {
        "AZURE_TENANT_ID" => Some("tenant".to_owned()),
        "AZURE_CLIENT_ID" => Some("client".to_owned()),
        "AZURE_CLIENT_SECRET" => Some(secret.to_owned()),
        _ => None,
    };
    let credential = Credential::from_lookup(AuthKind::ClientSecret, var, || false).expect("complete");
    let shown = format!("{credential:?}");
    hidden("Credential", &shown, secret.as_bytes());
    assert!(shown.contains("tenant"), "the non-secret parts are shown: {shown}");
    let vault = byok_keyvault::Vault::from_url("https://127.0.0.1:1").expect("url");
    let connection = byok_keyvault::Connection::new(&vault, credential, None).expect("connection");
    hidden("Connection", &format!("{connection:?}"), secret.as_bytes());

    for (file, kty) in [
        ("keys/rsa2048.pkcs8.pem", None),
        ("keys/ec-p256.pkcs8.pem", None),
        ("keys/aes256.raw", Some(Kty::Oct)),
    ] {
        let bytes = std::fs::read(testdata(file)).expect("fixture");
        let key = match kty {
            Some(Kty::Oct) => TargetKey::from_aes_bytes(&bytes),
            _ => TargetKey::from_private_key_file(&bytes),
        }
        .expect("a key");
        let shown = format!("{key:?}");
        // The private part: for AES all of it; for PKCS#8, its last bytes (the private exponent's tail / the
        // scalar sits inside, and the tail is secret material in both).
        let plaintext = key.plaintext();
        hidden(file, &shown, &plaintext[plaintext.len() - 16..]);
        hidden(file, &shown, plaintext);
    }

    // The local Key Vault's own client secret (it prints it in its JSON line for clients, never in `Debug`).
    let vault = byok_tests::vault::LocalVault::start(false, "", |_| {});
    let shown = format!("{:?} {vault:?}", vault.info);
    hidden("byok_emulator::Info", &shown, vault.info.client_secret.as_bytes());
    assert!(
        shown.contains(&vault.info.vault_url),
        "the non-secret parts are shown: {shown}"
    );

    let kek = KekPrivateKey::generate(byok_encoding::RsaSize::Rsa2048).expect("a KEK");
    let der = kek.to_pkcs8_der().expect("DER");
    let shown = format!("{kek:?}");
    hidden("KekPrivateKey", &shown, &der[der.len() - 32..]);
    hidden("KekPrivateKey", &shown, &der);
}

#[test]
fn the_check_finds_what_it_looks_for() {
    let secret = [0xA5u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
    for shown in [
        "Key { k: \"a5000102\" }".replace("a5000102", "a501020304050607"),
        format!("Key {{ k: {:?} }}", secret.to_vec()),
        format!("Key {{ k: {} }}", URL_SAFE_NO_PAD.encode(&secret[..12])),
    ] {
        let caught = std::panic::catch_unwind(|| hidden("planted", &shown, &secret));
        assert!(caught.is_err(), "`{shown}` was not caught");
    }
}
