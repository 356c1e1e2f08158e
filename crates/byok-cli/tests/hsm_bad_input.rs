//! Bad input on the HSM path (SoftHSM from `cargo xtask setup`): exact first error line, exit code, no file left.
//! The refused keys were imported by setup (SoftHSM makes imported keys non-extractable).

use std::path::Path;
use std::process::Command;

use byok_tests::{KID, byok_cli, listing, run, stderr, testdata};
use serde_json::Value;

fn env() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/hsm/env.json");
    let text = std::fs::read(&path).unwrap_or_else(|_| {
        panic!(
            "{} is missing: run `cargo xtask setup` to make the test tokens",
            path.display()
        )
    });
    serde_json::from_slice(&text).expect("env.json")
}

struct Case {
    name: &'static str,
    args: Vec<String>,
    exit: i32,
    first_line: String,
    /// Only the start of the line is fixed (it names serial numbers or loader messages).
    prefix_only: bool,
}

#[test]
fn hsm_bad_input_catalogue() {
    let e = env();
    let module = e["softhsm"]["module"].as_str().expect("module").to_owned();
    let conf = e["softhsm"]["conf"].as_str().expect("conf").to_owned();
    let pin_file = e["pin_file"].as_str().expect("pin").to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.byok").display().to_string();
    let wrong_pin = dir.path().join("wrong-pin");
    byok_tests::write_secret(&wrong_pin, "9999\n");
    let empty_pin = dir.path().join("empty-pin");
    byok_tests::write_secret(&empty_pin, "");
    let kek = testdata("keys/kek-rsa2048.spki.pem").display().to_string();

    // Two keys sharing an id, for the ambiguity case.
    let id = format!("{:08x}", std::process::id());
    for n in 1..=2 {
        let label = format!("twin{n}-{id}");
        let o = run(byok_cli()
            .env("SOFTHSM2_CONF", &conf)
            .args([
                "hsm",
                "generate",
                "--token",
                "pkcs11:token=byok-src",
                "--kty",
                "EC",
                "--curve",
                "P-256",
            ])
            .args([
                "--label",
                &label,
                "--id",
                &id,
                "--pkcs11-module",
                &module,
                "--pin-file",
                &pin_file,
            ]));
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let id_escaped: String = (0..id.len())
        .step_by(2)
        .map(|i| format!("%{}", &id[i..i + 2]))
        .collect();

    let wrap = |key: &str, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "wrap",
            "--kek-file",
            &kek,
            "--kek-kid",
            KID,
            "--out",
            &out,
            "--key",
            key,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        v.extend(extra.iter().map(|s| (*s).to_owned()));
        v
    };
    let with = |args: Vec<String>, m: &str, pin: &str| -> Vec<String> {
        let mut a = args;
        if !m.is_empty() {
            a.extend(["--pkcs11-module".to_owned(), m.to_owned()]);
        }
        if !pin.is_empty() {
            a.extend(["--pin-file".to_owned(), pin.to_owned()]);
        }
        a
    };
    let c = |name, args, exit, line: String| Case {
        name,
        args,
        exit,
        first_line: line,
        prefix_only: false,
    };
    let p = |name, args, exit, line: String| Case {
        name,
        args,
        exit,
        first_line: line,
        prefix_only: true,
    };
    let key = |obj: &str| format!("pkcs11:token=byok-src;object={obj}");
    let cases = vec![
        c("wrong PIN", with(wrap(&key("rsa1024"), &[]), &module, &wrong_pin.display().to_string()), 6,
            "error: C_Login failed: CKR_PIN_INCORRECT".into()),
        c("PIN variable unset", with(wrap(&key("rsa1024"), &["--pin-env", "BYOK_TEST_NO_SUCH_VARIABLE"]), &module, ""), 2,
            "error: --pin-env BYOK_TEST_NO_SUCH_VARIABLE: the variable BYOK_TEST_NO_SUCH_VARIABLE is not set".into()),
        c("empty PIN file", with(wrap(&key("rsa1024"), &[]), &module, &empty_pin.display().to_string()), 3,
            format!("error: the PIN file {} is empty", empty_pin.display())),
        c("PIN needed, none given", with(wrap(&key("rsa1024"), &[]), &module, ""), 6,
            "error: token `byok-src` needs a user PIN".into()),
        p("no module, and no registered one offers the token", with(wrap("pkcs11:token=nope;object=x", &[]), "", &pin_file), 2,
            "error: no PKCS#11 module given (registered with p11-kit: ".into()),
        p("unknown p11-kit module name", with(wrap(&format!("{}?module-name=no-such-module", key("rsa1024")), &[]), "", &pin_file), 2,
            "error: module-name=no-such-module: p11-kit has no module of that name (registered: ".into()),
        c("no such module", with(wrap(&key("rsa1024"), &[]), "/nonexistent/libpkcs11.so", &pin_file), 6,
            "error: cannot load the PKCS#11 module /nonexistent/libpkcs11.so: no such file".into()),
        p("not a PKCS#11 library", with(wrap(&key("rsa1024"), &[]), &kek, &pin_file), 6,
            format!("error: cannot load the PKCS#11 module {kek}: not a PKCS#11 library")),
        p("no such token", with(wrap("pkcs11:token=nope;object=x", &[]), &module, &pin_file), 6,
            "error: no token matches token=nope (tokens present: `byok-src` (serial ".into()),
        c("token not initialized", with(wrap("pkcs11:token=;object=x", &[]), &module, &pin_file), 6,
            "error: token `` is not initialized".into()),
        c("no such key", with(wrap(&key("nope"), &[]), &module, &pin_file), 6,
            "error: no key matches pkcs11:token=byok-src;object=nope".into()),
        p("two keys match", with(wrap(&format!("pkcs11:token=byok-src;id={id_escaped}"), &[]), &module, &pin_file), 6,
            format!("error: 2 keys match pkcs11:token=byok-src;id={}: `twin1-{id}` (id {id}, EC P-256), `twin2-{id}`", id_escaped.to_uppercase())),
        c("key not extractable", with(wrap(&key("rsa2048-not-extractable"), &[]), &module, &pin_file), 6,
            "error: key `rsa2048-not-extractable` (id 0a04, RSA-2048) is not extractable (CKA_EXTRACTABLE is false)".into()),
        c("RSA-1024", with(wrap(&key("rsa1024"), &[]), &module, &pin_file), 6,
            "error: key `rsa1024` (id 0a01, RSA-1024) is RSA-1024, which Azure does not accept".into()),
        c("brainpool", with(wrap(&key("brainpool"), &[]), &module, &pin_file), 6,
            "error: key `brainpool` (id 0a02, EC brainpoolP256r1 (1.3.36.3.3.2.8.1.1.7)) is EC brainpoolP256r1 (1.3.36.3.3.2.8.1.1.7), which Azure does not accept".into()),
        c("DSA", with(wrap(&key("dsa"), &[]), &module, &pin_file), 6,
            "error: key `dsa` (id 0a03, DSA) is DSA, which Azure does not accept".into()),
        c("pin-value on argv", with(wrap(&format!("{}?pin-value=1234", key("rsa1024")), &[]), &module, ""), 2,
            "error: refusing pin-value in a pkcs11 URI on the command line".into()),
        c("forced path unsupported", with(wrap(&format!("pkcs11:token=byok-src;id={id_escaped};object=twin1-{id}"), &["--wrap-mechanism", "rsa-aes-key-wrap"]), &module, &pin_file), 6,
            "error: the token does not offer rsa-aes-key-wrap (CKM_RSA_AES_KEY_WRAP (0x1054))".into()),
        c("unknown wrap mechanism", with(wrap(&key("rsa1024"), &["--wrap-mechanism", "magic"]), &module, &pin_file), 2,
            "error: invalid value 'magic' for '--wrap-mechanism <PATH>': unknown wrap mechanism `magic` (expected auto or one of rsa-aes-key-wrap, two-step-kwp, two-step-luna-kwp, two-step-cloudhsm-kwp, two-step-nss-pad, two-step-pad)".into()),
        c("URI naming no key", with(wrap("pkcs11:token=byok-src", &[]), &module, &pin_file), 2,
            "error: invalid pkcs11 URI: name the key with object= (its label) or id=".into()),
        c("URI with a bad escape", with(wrap("pkcs11:token=byok-src;object=%zz", &[]), &module, &pin_file), 2,
            "error: invalid value 'pkcs11:token=byok-src;object=%zz' for '--key <URI>': invalid pkcs11 URI: `object` has a bad percent escape at `%zz`".into()),
        // Found by fuzzing: this panicked before (a slice inside the multi-byte `ō`).
        c("URI with a bad escape before a multi-byte character", with(wrap("pkcs11:token=byok-src;object=%2\u{14d}", &[]), &module, &pin_file), 2,
            "error: invalid value 'pkcs11:token=byok-src;object=%2\u{14d}' for '--key <URI>': invalid pkcs11 URI: `object` has a bad percent escape at `%2\u{14d}`".into()),
        c("KEK not RSA", {
            let mut a = with(wrap(&key("rsa1024"), &[]), &module, &pin_file);
            let i = a.iter().position(|x| x == &kek).expect("kek arg");
            a[i] = testdata("keys/ec-p256.spki.pem").display().to_string();
            a
        }, 3, format!("error: the KEK file {} was refused: the KEK is not an RSA key (its algorithm is EC (1.2.840.10045.2.1))", testdata("keys/ec-p256.spki.pem").display())),
        p("both sources", {
            let mut a = with(wrap(&key("rsa1024"), &[]), &module, &pin_file);
            a.extend(["--key-file".into(), kek.clone()]);
            a
        }, 2, "error: the argument '--key <URI>' cannot be used with".into()),
    ];
    assert!(cases.len() >= 20);
    let before = listing(dir.path());
    let mut failures = Vec::new();
    for case in &cases {
        let o = run(Command::new(byok_tests::binary("byok-cli"))
            .env("SOFTHSM2_CONF", &conf)
            .env_remove("BYOK_PKCS11_MODULE")
            .args(&case.args));
        let err = stderr(&o);
        let first = err.lines().next().unwrap_or_default();
        let line_ok = if case.prefix_only {
            first.starts_with(&case.first_line)
        } else {
            first == case.first_line
        };
        if o.status.code() != Some(case.exit) || !line_ok || err.contains("panicked") || !o.stdout.is_empty() {
            failures.push(format!(
                "{}: exit {:?} (want {}):\n{err}want: {}\n",
                case.name,
                o.status.code(),
                case.exit,
                case.first_line
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(listing(dir.path()), before, "no output file was left");
}
