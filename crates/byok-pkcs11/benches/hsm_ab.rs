//! byok's HSM wrap per key against the same PKCS#11 calls made directly, on SoftHSM and on NSS softokn, measured
//! A/B in one process: rounds alternate between the two (and which goes first), so that the drift of a shared
//! machine falls on both alike. The ratio is the median of the rounds' ratios.
//!
//! The direct calls are the two-step wrap with the least a program can do — a session AES-256 key (cryptoki), the AES
//! key wrap of the target and CKM_RSA_PKCS_OAEP of the AES key (each one `C_WrapKey` into a big buffer, through the
//! module's function table: cryptoki's `wrap_key` would add a size query, and has no CKM_AES_KEY_WRAP_KWP), destroy —
//! with the KEK object made once. The AES step is CKM_AES_KEY_WRAP_PAD (0x210A) on SoftHSM, the only one SoftHSM 2.6.1
//! has, and CKM_AES_KEY_WRAP_KWP (0x210B) on NSS, byok's path there.
//!
//! Prints one JSON line per token: `{"token", "byok_us", "raw_us", "ratio", "rounds", "keys_per_round"}`.

// The direct NSS call goes through the C function table; each `unsafe` block says why it is sound.
#![allow(unsafe_code)]

mod common;

use std::hint::black_box;
use std::time::Instant;

use byok_encoding::{KekPublicKey, KeyKind, RsaSize};
use byok_pkcs11::{Module, ModuleConfig, Pin, Pkcs11Uri, WrapChoice, WrapOptions, WrapPath};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use cryptoki_sys as sys;

const ROUNDS: usize = 40;
const KEYS_PER_ROUND: usize = 25;

type WrapKeyFn = unsafe extern "C" fn(
    sys::CK_SESSION_HANDLE,
    sys::CK_MECHANISM_PTR,
    sys::CK_OBJECT_HANDLE,
    sys::CK_OBJECT_HANDLE,
    sys::CK_BYTE_PTR,
    sys::CK_ULONG_PTR,
) -> sys::CK_RV;

/// The module's own `C_WrapKey`, from a second load of the library (the loader maps the same image, kept in `_lib`).
struct Table {
    wrap_key: WrapKeyFn,
    _lib: sys::Pkcs11,
}

impl Table {
    fn load(path: &std::path::Path) -> Self {
        // SAFETY: loading a PKCS#11 library runs its initialisers; it is loaded in this process already (by byok's
        // `Module`), so this only takes another reference to the same image, kept alive in `_lib`.
        let lib = unsafe { sys::Pkcs11::new(path) }.expect("the module again");
        let mut list: sys::CK_FUNCTION_LIST_PTR = std::ptr::null_mut();
        // SAFETY: `list` is a valid place for the module to store its table pointer.
        let rv = unsafe { lib.C_GetFunctionList(&mut list) };
        assert_eq!(rv, sys::CKR_OK, "C_GetFunctionList");
        // SAFETY: the module returned CKR_OK, so `list` points to its function table, static for the library's life.
        let wrap_key = unsafe { (*list).C_WrapKey }.expect("C_WrapKey");
        Self { wrap_key, _lib: lib }
    }

    /// One `C_WrapKey` into a buffer big enough for anything wrapped here (no size query, no retry).
    fn wrap(
        &self,
        session: &Session,
        mech: &mut sys::CK_MECHANISM,
        wrapping: ObjectHandle,
        key: ObjectHandle,
    ) -> Vec<u8> {
        let mut out = vec![0u8; 4096];
        let mut len = out.len() as sys::CK_ULONG;
        // SAFETY: `mech` is a CK_MECHANISM whose parameter, if any, points to a live struct of the stated size;
        // `out` has `len` writable bytes; the session and object handles come from cryptoki on this same loaded
        // module and are alive.
        let rv = unsafe {
            (self.wrap_key)(
                session.handle(),
                mech,
                wrapping.handle(),
                key.handle(),
                out.as_mut_ptr(),
                &mut len,
            )
        };
        assert_eq!(rv, sys::CKR_OK, "C_WrapKey");
        out.truncate(len as usize);
        out
    }
}

/// The direct calls' session and objects.
struct Direct {
    session: Session,
    target: ObjectHandle,
    kek: ObjectHandle,
    table: Table,
    /// CKM_AES_KEY_WRAP_PAD or CKM_AES_KEY_WRAP_KWP.
    aes_mechanism: sys::CK_MECHANISM_TYPE,
}

impl Direct {
    /// Opens its own session on the token labelled `label` of `ctx` (initialised already, by byok's `Module`).
    fn open(ctx: &Pkcs11, label: &str, pin: Option<&str>, table: Table, aes_mechanism: sys::CK_MECHANISM_TYPE) -> Self {
        let slot = ctx
            .get_slots_with_token()
            .expect("slots")
            .into_iter()
            .find(|s| ctx.get_token_info(*s).is_ok_and(|t| t.label().trim() == label))
            .expect("the token");
        let session = ctx.open_rw_session(slot).expect("session");
        if let Some(pin) = pin {
            match session.login(UserType::User, Some(&AuthPin::from(pin.to_owned()))) {
                Ok(()) | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {}
                Err(e) => panic!("login: {e}"),
            }
        }
        let target = *session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(common::TARGET_LABEL.into()),
            ])
            .expect("find")
            .first()
            .expect("the target (byok's side generates it first)");
        let kek = KekPublicKey::parse(&common::kek_spki_pem()).expect("KEK");
        let kek = session
            .create_object(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(KeyType::RSA),
                Attribute::Token(false),
                Attribute::Modulus(kek.modulus().to_vec()),
                Attribute::PublicExponent(kek.exponent().to_vec()),
                Attribute::Wrap(true),
            ])
            .expect("KEK object");
        Self {
            session,
            target,
            kek,
            table,
            aes_mechanism,
        }
    }

    fn wrap(&self) -> Vec<u8> {
        let aes = self
            .session
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
        let mut aes_mech = sys::CK_MECHANISM {
            mechanism: self.aes_mechanism,
            pParameter: std::ptr::null_mut(),
            ulParameterLen: 0,
        };
        let kwp = self
            .table
            .wrap(&self.session, &mut aes_mech, aes, black_box(self.target));
        let mut oaep = sys::CK_RSA_PKCS_OAEP_PARAMS {
            hashAlg: sys::CKM_SHA_1,
            mgf: sys::CKG_MGF1_SHA1,
            source: sys::CKZ_DATA_SPECIFIED,
            pSourceData: std::ptr::null_mut(),
            ulSourceDataLen: 0,
        };
        let mut oaep_mech = sys::CK_MECHANISM {
            mechanism: sys::CKM_RSA_PKCS_OAEP,
            pParameter: (&raw mut oaep).cast(),
            ulParameterLen: std::mem::size_of::<sys::CK_RSA_PKCS_OAEP_PARAMS>() as sys::CK_ULONG,
        };
        let mut out = self.table.wrap(&self.session, &mut oaep_mech, self.kek, aes);
        self.session.destroy_object(aes).expect("destroy");
        out.extend_from_slice(&kwp);
        out
    }
}

/// Seconds for `n` calls of `f`.
fn time(n: usize, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Alternating rounds of byok's wrap and the direct calls; one JSON line.
fn compare(token: &str, mut byok: impl FnMut(), direct: &Direct) {
    // Warm both up.
    time(KEYS_PER_ROUND, &mut byok);
    time(KEYS_PER_ROUND, || {
        black_box(direct.wrap());
    });
    let (mut b, mut r, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let mut byok_round = || time(KEYS_PER_ROUND, &mut byok);
        let direct_round = || {
            time(KEYS_PER_ROUND, || {
                black_box(direct.wrap());
            })
        };
        let (tb, tr) = if round % 2 == 0 {
            let tb = byok_round();
            (tb, direct_round())
        } else {
            let tr = direct_round();
            (byok_round(), tr)
        };
        b.push(tb / KEYS_PER_ROUND as f64 * 1e6);
        r.push(tr / KEYS_PER_ROUND as f64 * 1e6);
        ratios.push(tb / tr);
    }
    let line = serde_json::json!({
        "token": token, "byok_us": median(b), "raw_us": median(r), "ratio": median(ratios),
        "rounds": ROUNDS, "keys_per_round": KEYS_PER_ROUND,
    });
    // A bench's report is its output.
    #[allow(clippy::print_stdout)]
    {
        println!("{line}");
    }
}

/// byok's side: the module, a session, the target (generated the first time), and a wrap closure's inputs.
fn byok_side(config: &ModuleConfig, token: &str, pin: Option<&Pin>) -> Module {
    let module = Module::load(config).expect("the module");
    let session = module
        .open(&token.parse::<Pkcs11Uri>().expect("uri"), pin)
        .expect("session");
    let key_uri: Pkcs11Uri = format!("{token};object={}", common::TARGET_LABEL).parse().expect("uri");
    if session.find_key(&key_uri).is_err() {
        session
            .generate(KeyKind::Rsa(RsaSize::Rsa2048), common::TARGET_LABEL, b"bench")
            .expect("generate");
    }
    drop(session);
    module
}

fn run(
    config: &ModuleConfig,
    name: &str,
    token: &str,
    label: &str,
    pin: Option<&str>,
    aes_mechanism: sys::CK_MECHANISM_TYPE,
    path: WrapPath,
) {
    let pin = pin.map(|p| Pin::new(p.to_owned()));
    let module = byok_side(config, token, pin.as_ref());
    let mut session = module
        .open(&token.parse::<Pkcs11Uri>().expect("uri"), pin.as_ref())
        .expect("session");
    let key = session
        .find_key(&format!("{token};object={}", common::TARGET_LABEL).parse().expect("uri"))
        .expect("target");
    let kek = KekPublicKey::parse(&common::kek_spki_pem()).expect("KEK");
    let options = WrapOptions {
        choice: WrapChoice::Path(path),
        // SoftHSM's only path is non-conformant for PKCS#8 (its self-test says so); the cost is what is measured.
        allow_nonconformant: true,
    };
    // The direct side: cryptoki on the same (already initialised) module, its own session.
    let ctx = Pkcs11::new(&config.path).expect("cryptoki");
    let args = CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK);
    match ctx.initialize(args) {
        Ok(()) | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => panic!("initialize: {e}"),
    }
    let direct = Direct::open(
        &ctx,
        label,
        pin.as_ref().map(|_| common::pin()).as_deref(),
        Table::load(&config.path),
        aes_mechanism,
    );
    compare(
        name,
        || {
            black_box(session.wrap(black_box(&key), &kek, options).expect("byok wrap"));
        },
        &direct,
    );
    drop(direct);
    drop(session);
    drop(module);
}

fn main() {
    // `cargo bench` passes `--bench`; a filter selects tokens by name.
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    if wanted("softhsm") {
        let config = ModuleConfig {
            path: common::softhsm_module(),
            init_args: None,
        };
        run(
            &config,
            "softhsm",
            "pkcs11:token=byok-src",
            "byok-src",
            Some(&common::pin()),
            sys::CKM_AES_KEY_WRAP_PAD,
            WrapPath::TwoStepPad,
        );
    }
    if wanted("nss") {
        let (path, init_args) = common::nss();
        let config = ModuleConfig {
            path,
            init_args: Some(init_args),
        };
        let token = format!("pkcs11:token={}", common::NSS_TOKEN.replace(' ', "%20"));
        run(
            &config,
            "nss",
            &token,
            common::NSS_TOKEN,
            None,
            sys::CKM_AES_KEY_WRAP_KWP,
            WrapPath::TwoStepKwp,
        );
    }
}
