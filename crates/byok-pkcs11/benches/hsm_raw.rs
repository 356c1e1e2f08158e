//! The baseline for `hsm`: the two-step wrap made directly through cryptoki on SoftHSM — a session AES-256 key,
//! CKM_AES_KEY_WRAP_PAD of the target, CKM_RSA_PKCS_OAEP of the AES key, destroy — with the KEK object made once.

mod common;

use std::hint::black_box;

use byok_encoding::KekPublicKey;
use criterion::{Criterion, criterion_group, criterion_main};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::MechanismType;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

fn bench(c: &mut Criterion) {
    let ctx = Pkcs11::new(common::softhsm_module()).expect("SoftHSM");
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("initialize");
    let slot = ctx
        .get_slots_with_token()
        .expect("slots")
        .into_iter()
        .find(|s| ctx.get_token_info(*s).is_ok_and(|t| t.label().trim() == "byok-src"))
        .expect("token byok-src");
    let session = ctx.open_rw_session(slot).expect("session");
    session
        .login(UserType::User, Some(&AuthPin::from(common::pin())))
        .expect("login");
    let target = *session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(common::TARGET_LABEL.into()),
        ])
        .expect("find")
        .first()
        .expect("run the `hsm` bench first: it generates the target");
    let kek = KekPublicKey::parse(&common::kek_spki_pem()).expect("KEK");
    let kek_object = session
        .create_object(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::RSA),
            Attribute::Token(false),
            Attribute::Modulus(kek.modulus().to_vec()),
            Attribute::PublicExponent(kek.exponent().to_vec()),
            Attribute::Wrap(true),
        ])
        .expect("KEK object");
    let oaep = Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
        MechanismType::SHA1,
        PkcsMgfType::MGF1_SHA1,
        PkcsOaepSource::empty(),
    ));
    c.bench_function("hsm/softhsm/raw-cryptoki", |b| {
        b.iter(|| {
            let aes = session
                .generate_key(
                    &Mechanism::AesKeyGen,
                    &[
                        Attribute::Token(false),
                        Attribute::ValueLen(32.into()),
                        Attribute::Sensitive(true),
                        Attribute::Extractable(true),
                        Attribute::Wrap(true),
                    ],
                )
                .expect("AES");
            let kwp = session
                .wrap_key(&Mechanism::AesKeyWrapPad, aes, black_box(target))
                .expect("KWP");
            let rsa = session.wrap_key(&oaep, kek_object, aes).expect("OAEP");
            session.destroy_object(aes).expect("destroy");
            (rsa, kwp)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
