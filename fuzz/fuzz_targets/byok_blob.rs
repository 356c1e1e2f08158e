//! `.byok` parsing: never panics, and what parses survives serialize → parse unchanged.
#![no_main]

use byok_blob::ByokBlob;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(blob) = ByokBlob::from_json(data) {
        let again = ByokBlob::from_json(&blob.to_json()).expect("byok reads what it writes");
        assert_eq!(again.kid(), blob.kid());
        assert_eq!(again.ciphertext(), blob.ciphertext());
        assert_eq!(again.to_json(), blob.to_json());
    }
});
