//! RFC 5649 unwrap of arbitrary input under an AES-128/192/256 key: never panics, and whatever unwraps wraps back to
//! exactly the same bytes (KWP is deterministic).
#![no_main]

use byok_wrap::{kwp_unwrap, kwp_wrap};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let key_len = [16, 24, 32][usize::from(selector % 3)];
    if rest.len() < key_len {
        return;
    }
    let (key, wrapped) = rest.split_at(key_len);
    if let Ok(plaintext) = kwp_unwrap(key, wrapped) {
        let again = kwp_wrap(key, &plaintext).expect("what unwraps can be wrapped");
        assert_eq!(again, wrapped);
    }
});
