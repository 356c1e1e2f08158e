//! Software CKM_RSA_AES_KEY_WRAP throughput. `cargo xtask bench` runs this beside the peers (Python
//! `cryptography`, the OpenSSL CLI) and records the ratios in docs/performance.md.

use std::hint::black_box;

use byok_encoding::KekPublicKey;
use byok_wrap::{KekEncryptor, KekPrivateKey};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn wrap(c: &mut Criterion) {
    let kek = KekPublicKey::parse(&byok_testdata::read("keys/kek-rsa4096.spki.pem")).expect("KEK");
    let encryptor = KekEncryptor::new(&kek).expect("KEK prepares");
    let rsa2048 = byok_testdata::read("keys/rsa2048.pkcs8.der");
    let p256 = byok_testdata::read("keys/ec-p256.pkcs8-minimal.der");

    let mut group = c.benchmark_group("wrap");
    group.throughput(Throughput::Elements(1));
    group.bench_function("kek4096-rsa2048", |b| b.iter(|| encryptor.wrap(black_box(&rsa2048))));
    group.bench_function("kek4096-ec-p256", |b| b.iter(|| encryptor.wrap(black_box(&p256))));
    group.finish();

    let private =
        KekPrivateKey::from_private_key_file(&byok_testdata::read("keys/kek-rsa4096.pkcs8.pem")).expect("KEK private");
    let blob = encryptor.wrap(&rsa2048).expect("wraps");
    c.bench_function("unwrap/kek4096-rsa2048", |b| {
        b.iter(|| private.unwrap(black_box(&blob)))
    });
}

criterion_group!(benches, wrap);
criterion_main!(benches);
