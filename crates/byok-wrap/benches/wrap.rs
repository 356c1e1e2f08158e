//! Software CKM_RSA_AES_KEY_WRAP throughput. `cargo xtask bench` runs this beside the peers (Python
//! `cryptography`, the OpenSSL CLI) and records the ratios in docs/performance.md.

use std::hint::black_box;

use byok_encoding::KekPublicKey;
use byok_wrap::{KekEncryptor, KekPrivateKey};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn testdata(path: &str) -> Vec<u8> {
    let full = format!("{}/../../testdata/keys/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("cannot read {full}: {e}"))
}

fn wrap(c: &mut Criterion) {
    let kek = KekPublicKey::parse(&testdata("kek-rsa4096.spki.pem")).expect("KEK");
    let encryptor = KekEncryptor::new(&kek).expect("KEK prepares");
    let rsa2048 = testdata("rsa2048.pkcs8.der");
    let p256 = testdata("ec-p256.pkcs8-minimal.der");

    let mut group = c.benchmark_group("wrap");
    group.throughput(Throughput::Elements(1));
    group.bench_function("kek4096-rsa2048", |b| b.iter(|| encryptor.wrap(black_box(&rsa2048))));
    group.bench_function("kek4096-ec-p256", |b| b.iter(|| encryptor.wrap(black_box(&p256))));
    group.finish();

    let private = KekPrivateKey::from_private_key_file(&testdata("kek-rsa4096.pkcs8.pem")).expect("KEK private");
    let blob = encryptor.wrap(&rsa2048).expect("wraps");
    c.bench_function("unwrap/kek4096-rsa2048", |b| {
        b.iter(|| private.unwrap(black_box(&blob)))
    });
}

criterion_group!(benches, wrap);
criterion_main!(benches);
