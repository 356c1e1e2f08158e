//! KEK parsing (PEM, DER SubjectPublicKeyInfo or PKCS#1, JWK, Key Vault bundle): never panics, and a parsed KEK
//! reads back the same from its own DER and PEM.
#![no_main]

use byok_encoding::KekPublicKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(kek) = KekPublicKey::parse(data) {
        let der = KekPublicKey::parse(&kek.to_spki_der()).expect("byok reads its own DER");
        assert_eq!(der.modulus(), kek.modulus());
        assert_eq!(der.exponent(), kek.exponent());
        let pem = KekPublicKey::parse(kek.to_pem().as_bytes()).expect("byok reads its own PEM");
        assert_eq!(pem.fingerprint_sha256(), kek.fingerprint_sha256());
    }
});
