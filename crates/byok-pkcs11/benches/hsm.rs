//! The self-test's one-off cost per session on SoftHSM (every path tried with a throwaway target). The wrap per key
//! is measured against the direct PKCS#11 calls by `hsm_ab`.

mod common;

use byok_pkcs11::{Module, ModuleConfig, Pin, Pkcs11Uri};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let module = Module::load(&ModuleConfig {
        path: common::softhsm_module(),
        init_args: None,
    })
    .expect("SoftHSM");
    let pin = Pin::new(common::pin());
    let token: Pkcs11Uri = "pkcs11:token=byok-src".parse().expect("uri");
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
