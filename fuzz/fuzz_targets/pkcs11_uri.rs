//! RFC 7512 `pkcs11:` URI parsing: never panics, and a parsed URI prints to one that parses to the same thing.
#![no_main]

use byok_pkcs11::Pkcs11Uri;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(mut uri) = text.parse::<Pkcs11Uri>() {
        let shown = uri.to_string();
        let again: Pkcs11Uri = shown.parse().expect("byok reads the URIs it prints");
        // A pin-value is never kept, so never printed.
        assert!(!again.has_pin_value);
        uri.has_pin_value = false;
        assert_eq!(again, uri, "{text:?} → {shown:?}");
    }
});
