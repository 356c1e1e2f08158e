//! No session object outlives a wrap, successful or refused (NSS softokn from `cargo xtask setup`, in process).
//! The two-step paths make an ephemeral AES key and every path makes a KEK object: both must be gone.
//! And a library shared with another user in the process: byok never finalises what it did not initialise.

use byok_encoding::{AesSize, KekPublicKey, KeyKind, RsaSize};
use byok_pkcs11::{Error, Module, ModuleConfig, Pkcs11Uri, WrapChoice, WrapOptions, WrapPath};

/// Makes a DES3 token key through a second cryptoki handle on the already initialised library (byok itself cannot
/// make a key Azure would refuse), and returns its label.
fn make_des3_key(config: &ModuleConfig, label: &str) {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::mechanism::Mechanism;
    use cryptoki::object::Attribute;
    let ctx = Pkcs11::new(&config.path).expect("the library loads again");
    // Already initialised by byok's Module in this process: CKR_CRYPTOKI_ALREADY_INITIALIZED is expected.
    let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = ctx
        .get_slots_with_token()
        .expect("slots")
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .is_ok_and(|t| t.label().trim() == "NSS Certificate DB")
        })
        .expect("the NSS key database slot");
    let session = ctx.open_rw_session(slot).expect("session");
    session
        .generate_key(
            &Mechanism::Des3KeyGen,
            &[
                Attribute::Token(true),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Extractable(true),
                Attribute::Encrypt(true),
            ],
        )
        .expect("DES3 key");
}

fn nss() -> ModuleConfig {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/hsm/env.json");
    let text = std::fs::read(&path).unwrap_or_else(|_| {
        panic!(
            "{} is missing: run `cargo xtask setup` to make the test tokens",
            path.display()
        )
    });
    let env: serde_json::Value = serde_json::from_slice(&text).expect("env.json");
    ModuleConfig {
        path: env["nss"]["module"].as_str().expect("module").into(),
        init_args: env["nss"]["init_args"].as_str().map(str::to_owned),
    }
}

#[test]
fn no_session_object_survives() {
    let module = Module::load(&nss()).expect("NSS loads");
    let uri: Pkcs11Uri = "pkcs11:token=NSS%20Certificate%20DB".parse().expect("uri");
    let mut session = module.open(&uri, None).expect("session");
    assert_eq!(session.session_object_count().expect("count"), 0);
    let report = session.self_test().expect("self-test").clone();
    assert_eq!(report.best(), Some(WrapPath::TwoStepKwp));
    assert_eq!(
        session.session_object_count().expect("count"),
        0,
        "the self-test cleans up"
    );

    let kek_pem = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/keys/kek-rsa2048.spki.pem"
    ))
    .expect("KEK");
    let kek = KekPublicKey::parse(&kek_pem).expect("KEK");
    let label = format!("leak-{}", std::process::id());
    let rsa = session
        .generate(KeyKind::Rsa(RsaSize::Rsa2048), &label, b"leak-rsa")
        .expect("generate");
    let aes = session
        .generate(KeyKind::Aes(AesSize::Aes128), &format!("{label}-aes"), b"leak-aes")
        .expect("generate");

    let ok = session.wrap(&rsa, &kek, WrapOptions::default()).expect("wraps");
    assert_eq!(ok.path, WrapPath::TwoStepKwp);
    assert_eq!(session.session_object_count().expect("count"), 0, "after success");

    let forced = |path| WrapOptions {
        choice: WrapChoice::Path(path),
        allow_nonconformant: false,
    };
    assert_eq!(
        session.wrap(&rsa, &kek, forced(WrapPath::OneShot)).err(),
        Some(Error::PathUnsupported(WrapPath::OneShot))
    );
    assert!(matches!(
        session.wrap(&aes, &kek, forced(WrapPath::TwoStepPad)),
        Err(Error::UnsafeForKey { .. })
    ));
    assert_eq!(session.session_object_count().expect("count"), 0, "after refusals");

    // A key Azure refuses is refused before anything is made.
    let des_label = format!("leak-des3-{}", std::process::id());
    make_des3_key(&nss(), &des_label);
    let des_uri: Pkcs11Uri = format!("pkcs11:token=NSS%20Certificate%20DB;object={des_label}")
        .parse()
        .expect("uri");
    let des = session.find_key(&des_uri).expect("the DES3 key");
    assert!(
        matches!(session.wrap(&des, &kek, WrapOptions::default()), Err(Error::UnsupportedKey { ref what, .. }) if what == "DES3")
    );
    assert_eq!(session.session_object_count().expect("count"), 0, "after refusing DES3");

    // A wrap that runs the whole two-step path and produces a non-conformant blob on request.
    let nonconformant = WrapOptions {
        choice: WrapChoice::Path(WrapPath::TwoStepPad),
        allow_nonconformant: true,
    };
    let bad = session.wrap(&aes, &kek, nonconformant).expect("wraps on request");
    assert!(bad.nonconformant.is_some());
    assert_eq!(session.session_object_count().expect("count"), 0, "after a forced path");

    // A fresh session sees every session object of this application: none may be left, the cached KEK included.
    drop(session);
    let fresh = module.open(&uri, None).expect("a fresh session");
    assert_eq!(
        fresh.session_object_count().expect("count"),
        0,
        "a fresh session finds nothing left behind"
    );
}

/// byok inside a host process: another user of the same library initialised it first. byok must use it
/// (CKR_CRYPTOKI_ALREADY_INITIALIZED is not an error) and must not finalise a library it did not initialise.
#[test]
fn a_second_user_of_the_library_leaves_it_initialised() {
    let uri: Pkcs11Uri = "pkcs11:token=NSS%20Certificate%20DB".parse().expect("uri");
    // The host's component: it initialised the library first.
    let host = Module::load(&nss()).expect("NSS loads");
    let host_session = host.open(&uri, None).expect("the host's session");
    {
        // byok, later, in the same process: the library is initialised already.
        let byok = Module::load(&nss()).expect("an initialised library is usable");
        let session = byok.open(&uri, None).expect("byok's session");
        session.list_keys().expect("byok lists keys");
    }
    // byok is gone; the host's session and library still work.
    host_session.list_keys().expect("the host's session survives byok");
    let again = host.open(&uri, None).expect("the host opens another session");
    again.list_keys().expect("and uses it");
}
