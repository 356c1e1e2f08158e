//! A batch under Key Vault's service limits (`byok-emulator`'s limits, the clock 20 times faster): it learns the
//! vault's rate from its first `429`, paces the rest, and finishes near the theoretical floor with every key imported
//! exactly once, few `429`s and no needless requests.

use std::time::Instant;

use byok_encoding::{Curve, KeyKind};
use byok_tests::batch::{batch, generate_in_nss, manifest, results};
use byok_tests::hsm::Token;
use byok_tests::stderr;
use byok_tests::vault::LocalVault;

const N: usize = 200;
const SCALE: f64 = 20.0;

#[test]
fn a_batch_paces_itself_to_the_vault_limits() {
    let vault = LocalVault::start(false, "", |c| {
        let mut limits = byok_emulator::Limits::key_vault();
        limits.scale = SCALE;
        c.limits = Some(limits);
    });
    let labels = generate_in_nss("paced", &[KeyKind::Ec(Curve::P256); N]);
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = manifest(dir.path(), &labels, "p");
    let started = Instant::now();
    let out = batch(&vault, Token::Nss, &manifest, &["--jobs", "16"]);
    let elapsed = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, summary) = results(&out);
    assert_eq!(summary["done"], N as u64, "{summary}");
    assert!(
        (0..N).all(|i| vault.versions(&format!("p{i}")) == 1),
        "every key imported exactly once"
    );

    // The floor: N imports and the KEK's creation, at 10 creations per 10 s (scaled). No client can beat the
    // vault's own window (the first window's burst aside), so the limits were real; the 1.05× target itself is
    // wall-clock time, which a test sharing two cores with the rest of the suite cannot hold to (the house rule:
    // performance targets in benchmarks) — `cargo xtask bench` measures it on 300 keys. Here: a pace that crawls
    // (the learnt rate off, or needless waits) still fails.
    let rate = 10.0 / (10.0 / SCALE);
    let floor = (N + 1) as f64 / rate;
    let physics = (N + 1 - 10) as f64 / rate;
    assert!(
        elapsed >= 0.98 * physics,
        "{elapsed:.2} s: faster than the vault admits? {summary}"
    );
    assert!(
        elapsed <= 1.6 * floor,
        "{elapsed:.2} s against a floor of {floor:.2} s: {summary}"
    );
    let (admitted, throttled) = vault.observed.limited();
    let share = throttled as f64 / (admitted + throttled) as f64;
    assert!(
        share <= 0.05,
        "{throttled} of {} requests throttled",
        admitted + throttled
    );
    assert_eq!(
        summary["throttled_requests"], throttled,
        "byok counts what the vault refused"
    );
    let pace = summary["pace"]["per_second"].as_f64().expect("a pace was learnt");
    assert!(
        (pace - rate).abs() / rate < 0.1,
        "learnt {pace:.1}/s, the vault admits {rate:.1}/s"
    );
    // Per key: the name looked up, the import; per batch: the KEK looked up and created. Nothing more.
    assert!(
        admitted <= 2 * N as u64 + 4,
        "{admitted} requests admitted for {N} keys"
    );
}
