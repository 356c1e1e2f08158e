//! `byok-cli completions SHELL`: a script for each shell that names every subcommand; bash's parses.

use byok_tests::{byok_cli, run, stderr, stdout};

#[test]
fn completion_scripts_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = run(byok_cli().args(["completions", shell]));
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        for word in ["full-transfer", "batch", "import", "kek", "vault-name", "pkcs11-module"] {
            assert!(script.contains(word), "{shell}: `{word}` missing");
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("byok-cli.bash");
    std::fs::write(&file, stdout(&run(byok_cli().args(["completions", "bash"])))).expect("write");
    let syntax = std::process::Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .expect("bash runs");
    assert!(syntax.status.success(), "{}", String::from_utf8_lossy(&syntax.stderr));
    let unknown = run(byok_cli().args(["completions", "tcsh"]));
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("invalid value 'tcsh'"),
        "{}",
        stderr(&unknown)
    );
}

/// docs/man holds what the binary renders today (`cargo xtask man` after changing flags or help), page for page.
#[test]
fn man_pages_are_fresh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(byok_cli().arg("man").arg(dir.path()));
    assert!(out.status.success(), "{}", stderr(&out));
    let rendered = byok_tests::listing(dir.path());
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/man");
    assert!(rendered.len() > 8, "a page per subcommand: {rendered:?}");
    assert_eq!(
        byok_tests::listing(&docs),
        rendered,
        "docs/man lists other pages than the binary renders: run `cargo xtask man`"
    );
    for name in &rendered {
        let fresh = std::fs::read(dir.path().join(name)).expect("rendered page");
        let on_disk = std::fs::read(docs.join(name)).unwrap_or_default();
        assert!(on_disk == fresh, "docs/man/{name} is stale: run `cargo xtask man`");
    }
}

#[test]
fn the_tests_run_the_binary_cargo_built_for_them() {
    if std::env::var_os("BYOK_TEST_BYOK_CLI").is_none() {
        assert_eq!(
            byok_tests::binary("byok-cli"),
            std::path::Path::new(env!("CARGO_BIN_EXE_byok-cli"))
        );
    }
}
