//! p11-kit: a module registered with it is chosen by `module-name=` (RFC 7512), or with no module named, the one
//! that offers the URI's token (what p11-kit-proxy would offer); the proxy itself is refused with the reason. SoftHSM is the module (the Debian package registers it as `softhsm2`; the test registers it again under a
//! name of its own in a private `~/.config/pkcs11/modules`).

use std::path::Path;
use std::process::Command;

use byok_tests::hsm::{Token, env, wrap_args};
use byok_tests::{assert_refused, byok_cli, ok_json, run, testdata};

/// `byok-cli ARGS` on SoftHSM's token with HOME in `home` and no module named on the command line.
fn unnamed(home: &Path, args: &[&str]) -> Command {
    let e = env();
    let mut cmd = byok_cli();
    cmd.args(args)
        .args(["--pin-file", e["pin_file"].as_str().expect("pin")])
        .env("SOFTHSM2_CONF", e["softhsm"]["conf"].as_str().expect("conf"))
        .env("HOME", home)
        .env_remove("BYOK_PKCS11_MODULE");
    cmd
}

fn register(home: &Path, name: &str, text: &str) {
    let dir = home.join(".config/pkcs11/modules");
    std::fs::create_dir_all(&dir).expect("user module dir");
    std::fs::write(dir.join(format!("{name}.module")), text).expect("module file");
}

/// Wraps `uri` to the RSA-2048 test KEK with no module named, and opens the blob in software.
fn wrap_and_open(home: &Path, uri: &str, out: &Path) {
    let kek = testdata("keys/kek-rsa2048.spki.pem").display().to_string();
    let blob = out;
    let out = out.display().to_string();
    let mut args = vec!["--output", "json"];
    args.extend(wrap_args(&kek, uri, &out));
    let report = ok_json(&run(&mut unnamed(home, &args)), "wrap");
    assert_eq!(report["source"]["wrap_path"], "two-step-pad", "{report}");
    let blob = byok_blob::ByokBlob::from_json(&std::fs::read(blob).expect("blob")).expect("valid .byok");
    let key = byok_tests::kek_private(2048)
        .unwrap(blob.ciphertext())
        .expect("the blob opens");
    assert_eq!(key.len(), 32, "an AES-256 key");
}

#[test]
fn a_module_registered_with_p11kit_is_chosen_by_name() {
    let home = tempfile::tempdir().expect("home");
    let softhsm = env()["softhsm"]["module"].as_str().expect("module");
    register(
        home.path(),
        "byok-test-softhsm",
        &format!("# the test's own\nmodule: {softhsm}\n"),
    );
    register(
        home.path(),
        "not-here",
        "module: /usr/lib/no-such.so\ndisable-in: byok-cli\n",
    );
    let key = Token::SoftHsm.generate(&["--kty", "oct", "--size", "256"], "p11kit-name")["uri"]
        .as_str()
        .expect("uri")
        .to_owned();

    for name in ["byok-test-softhsm", "softhsm2"] {
        let token = format!("pkcs11:token=byok-src?module-name={name}");
        let info = ok_json(
            &run(&mut unnamed(
                home.path(),
                &["--output", "json", "hsm", "info", "--token", &token],
            )),
            name,
        );
        let path = std::fs::canonicalize(info["module"]["path"].as_str().expect("path")).expect("module exists");
        assert_eq!(path, std::fs::canonicalize(softhsm).expect("softhsm"), "{name}");
        assert_eq!(info["self_test"]["token"], "byok-src");
    }
    let out = home.path().join("by-name.byok");
    wrap_and_open(home.path(), &format!("{key}?module-name=byok-test-softhsm"), &out);

    // A name p11-kit does not know, or would not load in byok-cli, is refused with what there is and why.
    let unknown = run(&mut unnamed(
        home.path(),
        &["hsm", "info", "--token", "pkcs11:token=byok-src?module-name=nope"],
    ));
    assert_refused(
        &unknown,
        2,
        "error: module-name=nope: p11-kit has no module of that name (registered: ",
    );
    assert!(byok_tests::stderr(&unknown).contains("byok-test-softhsm"));
    let disabled = run(&mut unnamed(
        home.path(),
        &["hsm", "info", "--token", "pkcs11:token=byok-src?module-name=not-here"],
    ));
    assert_refused(&disabled, 2, "error: module-name=not-here: ");
    assert!(byok_tests::stderr(&disabled).contains("its `disable-in` lists `byok-cli`"));
    let path_like = run(&mut unnamed(
        home.path(),
        &[
            "hsm",
            "info",
            "--token",
            "pkcs11:token=byok-src?module-name=..%2Fsofthsm2",
        ],
    ));
    assert_refused(
        &path_like,
        2,
        "error: module-name=../softhsm2: a registered name is a file name",
    );
}

#[test]
fn with_no_module_named_the_registered_module_offering_the_token_is_used_and_the_proxy_is_refused() {
    let proxy = byok_pkcs11::proxy().expect("p11-kit-proxy is installed by `cargo xtask setup` (p11-kit-modules)");
    let home = tempfile::tempdir().expect("home");
    let key = Token::SoftHsm.generate(&["--kty", "oct", "--size", "256"], "p11kit-found")["uri"]
        .as_str()
        .expect("uri")
        .to_owned();
    // What the proxy would offer, found without it: SoftHSM's `byok-src` through its `softhsm2` registration.
    let token = ["hsm", "info", "--token", "pkcs11:token=byok-src"];
    let mut json = vec!["--output", "json"];
    json.extend(token);
    let info = ok_json(&run(&mut unnamed(home.path(), &json)), "hsm info");
    let path = std::fs::canonicalize(info["module"]["path"].as_str().expect("path")).expect("module exists");
    let softhsm = env()["softhsm"]["module"].as_str().expect("module");
    assert_eq!(path, std::fs::canonicalize(softhsm).expect("softhsm"));
    wrap_and_open(home.path(), &key, &home.path().join("found.byok"));

    // p11-kit-proxy 0.24 gives each C_GetFunctionList its own instance; byok needs one and says so at load.
    let mut through_proxy = unnamed(home.path(), &token);
    through_proxy.arg("--pkcs11-module").arg(&proxy);
    let out = run(&mut through_proxy);
    assert_refused(
        &out,
        6,
        &format!(
            "error: cannot load the PKCS#11 module {}: it hands out",
            proxy.display()
        ),
    );
    assert!(byok_tests::stderr(&out).contains("?module-name=NAME"));
    // No token to look for: the refusal names what is registered.
    let out = run(&mut unnamed(home.path(), &["hsm", "info"]));
    assert_refused(&out, 2, "error: no PKCS#11 module given (registered with p11-kit: ");
    assert!(
        byok_tests::stderr(&out).contains("softhsm2"),
        "the Debian package registers SoftHSM"
    );
}
