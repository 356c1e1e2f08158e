//! Helpers for the end-to-end tests of the byok binaries (in `tests/`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A versioned key identifier for tests.
pub const KID: &str = "https://contoso.vault.azure.net/keys/kek/0123456789abcdef0123456789abcdef";

/// The path of a workspace binary, built next to the test executable (`target/<profile>/`).
///
/// `cargo test` does not rebuild another package's binaries, so the first call in each test process runs
/// `cargo build` for it (quick when it is fresh): tests never run against a stale binary.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !built.iter().any(|b| b == name) {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "--bin", name, "--package", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cargo runs");
        assert!(status.success(), "cannot build {name}");
        built.push(name.to_owned());
    }
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executables live in target/<profile>/deps");
    let path = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing: build it first (`cargo build -p {name}` or `cargo test --workspace`)",
        path.display()
    );
    path
}

/// A `byok-cli` command with a clean environment for the variables byok reads.
pub fn byok_cli() -> Command {
    let mut cmd = Command::new(binary("byok-cli"));
    cmd.env_remove("BYOK_PKCS11_MODULE").env("NO_COLOR", "1");
    cmd
}

/// A file in `testdata/`.
pub fn testdata(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata").join(path)
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

/// Files in a directory, sorted, for checking that nothing was left behind.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("readable directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
