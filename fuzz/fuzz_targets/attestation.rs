//! Managed HSM key attestations: the JSON, the certificate bundle and a blob's attributes. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    byok_attestation::fuzzing::parse(data);
});
