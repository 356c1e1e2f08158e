//! Verifying one attestation (#14's target: under 5 ms): parse the JSON, both chains, both blobs' signatures, the
//! attributes, then the binding checks. `cargo bench -p byok-attestation`; the figure is in docs/performance.md.

use std::hint::black_box;

use byok_attestation::{Attestation, Roots};
use criterion::{Criterion, criterion_group, criterion_main};

fn verify(c: &mut Criterion) {
    let json = byok_testdata::read("attestation/mhsm-rsa2048-uksouth.json");
    let roots = Roots::marvell();
    let kid = "https://p.managedhsm.azure.net/keys/key1-hnhgsllilfcl3pdtpld/7071fabc480c0ca186f786a9b78c9456";
    c.bench_function("attestation/verify-and-bind", |b| {
        b.iter(|| {
            let attestation = Attestation::from_json(black_box(&json)).expect("parses");
            let verified = attestation.verify(&roots).expect("verifies");
            verified.check_key_id(kid).expect("binds");
            verified
        })
    });
    c.bench_function("attestation/marvell-roots", |b| b.iter(Roots::marvell));
}

criterion_group!(benches, verify);
criterion_main!(benches);
