//! byok inside a host process: another user of the same PKCS#11 library initialised it first. byok must use it
//! (CKR_CRYPTOKI_ALREADY_INITIALIZED is not an error) and must not finalise a library it did not initialise — that
//! would pull the library from under the other user.

use byok_pkcs11::{Module, ModuleConfig, Pkcs11Uri};

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
