//! The local Key Vault's request handling: import (BYOK blobs and JWKs), create, update and key-operation bodies,
//! straight into the handlers. Whatever the body, an answer and no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    byok_emulator::fuzzing::request(selector, body);
});
