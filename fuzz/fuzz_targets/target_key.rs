//! Target key decoding (PEM or DER; PKCS#8, PKCS#1, SEC1; strict PKCS#8 as a vault reads it): never panics, and the
//! plaintext byok would wrap is strict PKCS#8 of the same key.
#![no_main]

use byok_encoding::{Kty, TargetKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = TargetKey::from_private_key_file(data) {
        let again = TargetKey::from_pkcs8_der(key.plaintext()).expect("the plaintext is strict PKCS#8");
        assert_eq!(again.kind(), key.kind());
        assert_eq!(again.public_key(), key.public_key());
    }
    if let Ok(key) = TargetKey::from_pkcs8_der(data) {
        assert_eq!(key.plaintext(), data, "strict PKCS#8 is taken as it is");
    }
    for kty in [Kty::Rsa, Kty::Ec, Kty::Oct] {
        let _ = TargetKey::from_plaintext(kty, data);
    }
});
