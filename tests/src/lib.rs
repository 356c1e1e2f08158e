//! Helpers for the end-to-end tests of the byok binaries (in `tests/`).

pub mod az;
pub mod batch;
pub mod catalogue;
pub mod command;
pub mod emulator;
pub mod fake;
pub mod hosts;
pub mod hsm;
pub mod interop;
pub mod load;
pub mod vault;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A versioned key identifier for tests.
pub const KID: &str = "https://contoso.vault.azure.net/keys/kek/0123456789abcdef0123456789abcdef";

/// The path of a workspace binary, as Cargo built it for the test running now.
///
/// The end-to-end tests live in the binary's own package (`crates/byok-cli/tests`), so Cargo builds it before them
/// and names it in `CARGO_BIN_EXE_<name>` — in the test's environment too (cargo-nextest and the pinned Cargo both
/// do). No test runs `cargo build`, and none runs a stale binary. `BYOK_TEST_BYOK_CLI=/path/to/byok-cli` runs the
/// tests against another build (an installed one, or an older commit's, to see a regression test fail there).
pub fn binary(name: &str) -> PathBuf {
    let override_var = format!("BYOK_TEST_{}", name.to_ascii_uppercase().replace('-', "_"));
    let path = std::env::var_os(&override_var)
        .or_else(|| std::env::var_os(format!("CARGO_BIN_EXE_{name}")))
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "CARGO_BIN_EXE_{name} is not set: tests that run {name} belong in its package's tests/ (or set \
                 {override_var})"
            )
        });
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

/// A `byok-cli` command with a clean environment for the variables byok reads.
pub fn byok_cli() -> Command {
    let mut cmd = Command::new(binary("byok-cli"));
    cmd.env_remove("BYOK_PKCS11_MODULE").env("NO_COLOR", "1");
    cmd
}

/// Writes a secret file (a PIN) as a careful operator would: readable by its owner only.
pub fn write_secret(path: &Path, contents: impl AsRef<[u8]>) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("secret file");
    f.write_all(contents.as_ref()).expect("write the secret file");
}

/// Asserts that a command failed with exit `code`, that stderr says `needle`, and that nothing panicked.
pub fn assert_refused(out: &Output, code: i32, needle: &str) {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code} with `{needle}`:\n{err}"
    );
    assert!(err.contains(needle), "expected `{needle}` in:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// A testdata KEK's private key (`testdata/keys/kek-rsa{bits}.pkcs8.pem`), to open what byok wrapped to it.
pub fn kek_private(bits: u32) -> byok_wrap::KekPrivateKey {
    let pem = std::fs::read(testdata(&format!("keys/kek-rsa{bits}.pkcs8.pem"))).expect("KEK file");
    byok_wrap::KekPrivateKey::from_private_key_file(&pem).expect("KEK private key")
}

/// A file in `testdata/`.
pub fn testdata(path: &str) -> PathBuf {
    byok_testdata::path(path)
}

/// Runs a command and returns its output, never hanging on stdin.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(std::process::Stdio::null())
        .output()
        .expect("the binary starts")
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command that must have succeeded, and the JSON it printed on stdout.
pub fn ok_json(out: &Output, what: &str) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\n{}",
        out.status.code(),
        stderr(out)
    );
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", stdout(out)))
}

/// Files in a directory, sorted, for checking that nothing was left behind.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("readable directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The OpenSSL CLI opens a `.byok` file on its own: `pkeyutl -decrypt` with RSA-OAEP (SHA-1, MGF1-SHA-1) on the
/// first `rsa_len` bytes of the ciphertext, then `enc -d -id-aes256-wrap-pad` (RFC 5649) on the rest. Returns the
/// plaintext. Shared by the tests, `cargo xtask interop` and the demo: an independent judge of what byok writes.
pub fn openssl_unwrap(blob: &Path, kek_private: &Path, rsa_len: usize) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(blob).map_err(|e| e.to_string())?)
        .map_err(|e| format!("{}: {e}", blob.display()))?;
    let ct = doc["ciphertext"].as_str().ok_or("no ciphertext")?;
    let ct = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(ct)
        .map_err(|e| e.to_string())?;
    if ct.len() <= rsa_len {
        return Err(format!(
            "the ciphertext is {} bytes, not more than the {rsa_len}-byte RSA part",
            ct.len()
        ));
    }
    let (rsa, kwp) = ct.split_at(rsa_len);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let file = |name: &str| dir.path().join(name);
    std::fs::write(file("rsa"), rsa).map_err(|e| e.to_string())?;
    std::fs::write(file("kwp"), kwp).map_err(|e| e.to_string())?;
    let openssl = |args: &[&std::ffi::OsStr]| -> Result<(), String> {
        let out = Command::new("openssl")
            .args(args)
            .stdin(std::process::Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!("openssl {:?}: {}", args, String::from_utf8_lossy(&o.stderr))),
            Err(e) => Err(format!("cannot run openssl: {e}")),
        }
    };
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    let (rsa_f, kwp_f, aes_f, out_f) = (file("rsa"), file("kwp"), file("aes"), file("out"));
    openssl(&[
        os("pkeyutl"),
        os("-decrypt"),
        os("-inkey"),
        kek_private.as_os_str(),
        os("-pkeyopt"),
        os("rsa_padding_mode:oaep"),
        os("-pkeyopt"),
        os("rsa_oaep_md:sha1"),
        os("-pkeyopt"),
        os("rsa_mgf1_md:sha1"),
        os("-in"),
        rsa_f.as_os_str(),
        os("-out"),
        aes_f.as_os_str(),
    ])?;
    let aes = std::fs::read(&aes_f).map_err(|e| e.to_string())?;
    if aes.len() != 32 {
        return Err(format!("the RSA part holds {} bytes, not an AES-256 key", aes.len()));
    }
    let hex: String = aes.iter().map(|b| format!("{b:02x}")).collect();
    let hex = std::ffi::OsString::from(hex);
    openssl(&[
        os("enc"),
        os("-d"),
        os("-id-aes256-wrap-pad"),
        os("-iv"),
        os("A65959A6"),
        os("-K"),
        &hex,
        os("-in"),
        kwp_f.as_os_str(),
        os("-out"),
        out_f.as_os_str(),
    ])?;
    std::fs::read(&out_f).map_err(|e| e.to_string())
}
