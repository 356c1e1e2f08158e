//! byok's HSM wrap per key on SoftHSM (two-step with 0x210A, the only path SoftHSM 2.6.1 offers; forced, since
//! the self-test rightly calls it non-conformant for PKCS#8), and the self-test's one-off cost per session.
//! `hsm_raw` measures the same calls made directly through cryptoki; `cargo xtask bench` compares the two.

mod common;

use std::hint::black_box;

use byok_encoding::{KekPublicKey, KeyKind, RsaSize};
use byok_pkcs11::{Module, ModuleConfig, Pin, Pkcs11Uri, WrapChoice, WrapOptions, WrapPath};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let module = Module::load(&ModuleConfig {
        path: common::softhsm_module(),
        init_args: None,
    })
    .expect("SoftHSM");
    let pin = Pin::new(common::pin());
    let token: Pkcs11Uri = "pkcs11:token=byok-src".parse().expect("uri");
    let key_uri: Pkcs11Uri = format!("pkcs11:token=byok-src;object={}", common::TARGET_LABEL)
        .parse()
        .expect("uri");
    let mut session = module.open(&token, Some(&pin)).expect("session");
    let key = match session.find_key(&key_uri) {
        Ok(k) => k,
        Err(_) => session
            .generate(KeyKind::Rsa(RsaSize::Rsa2048), common::TARGET_LABEL, b"bench")
            .expect("generate"),
    };
    let kek = KekPublicKey::parse(&common::kek_spki_pem()).expect("KEK");
    let options = WrapOptions {
        choice: WrapChoice::Path(WrapPath::TwoStepPad),
        allow_nonconformant: true,
    };
    session.wrap(&key, &kek, options).expect("warm-up wrap");
    c.bench_function("hsm/softhsm/byok-wrap", |b| {
        b.iter(|| session.wrap(black_box(&key), &kek, options))
    });
    drop(session);

    c.bench_function("hsm/softhsm/self-test", |b| {
        b.iter_batched(
            || module.open(&token, Some(&pin)).expect("session"),
            |mut s| {
                s.self_test().expect("self-test");
                s
            },
            BatchSize::PerIteration,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
