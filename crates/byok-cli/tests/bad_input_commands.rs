//! The bad-input catalogue of the commands that talk to a vault or a token — `kek`, `import`, `full-transfer`,
//! `batch` — plus `completions`, the global flags, and a full disk. Like `bad_input.rs` (wrap, inspect) and
//! `hsm_bad_input.rs` (the token side): each case has its exact first error line and exit code, never panics, and
//! leaves no file behind. None of these reaches a vault: every refusal happens before anything is sent.

use byok_tests::catalogue::{self, Case, FullDisk, args, case};
use byok_tests::vault::LocalVault;
use byok_tests::{KID, byok_cli, listing, run, stderr, testdata};

const VAULT: &str = "https://contoso.vault.azure.net";
const KEY_HINT_NAME: &str = "is not a key name: 1 to 127 letters, digits and dashes";

/// A scene: the files the cases name with `@`.
fn scene() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, data: &[u8]| std::fs::write(dir.path().join(name), data).expect("scene file");
    write("existing.pem", b"keep me");
    write("empty", b"");
    // A PIN file as a careful operator keeps it (0600): a readable one draws a warning first.
    byok_tests::write_secret(&dir.path().join("empty-pin"), b"");
    write("text", b"hello\n");
    write("garbage.byok", br#"{"a":1}"#);
    write("bad.toml", b"not toml [[\n");
    write(
        "unknown.toml",
        b"[[key]]\nuri = \"pkcs11:token=t;object=a\"\nname = \"a\"\ncolour = \"red\"\n",
    );
    write(
        "dup.toml",
        b"[[key]]\nuri = \"pkcs11:token=t;object=a\"\nname = \"a\"\n\n[[key]]\nuri = \"pkcs11:token=t;object=b\"\nname = \"a\"\n",
    );
    write(
        "badname.toml",
        b"[[key]]\nuri = \"pkcs11:token=t;object=a\"\nname = \"a b\"\n",
    );
    write("baduri.toml", b"[[key]]\nuri = \"https://t\"\nname = \"a\"\n");
    write(
        "badtype.toml",
        b"[[key]]\nuri = \"pkcs11:token=t;object=a\"\nname = 5\n",
    );
    write(
        "badescape.toml",
        b"[[key]]\nuri = \"pkcs11:token=t;object=%zz\"\nname = \"a\"\n",
    );
    write(
        "defaults.toml",
        b"[defaults]\nname = \"x\"\n\n[[key]]\nuri = \"pkcs11:token=t;object=a\"\nname = \"a\"\n",
    );
    write("nokeys.toml", b"[defaults]\nops = [\"sign\"]\n");
    write(
        "good.toml",
        b"[[key]]\nuri = \"pkcs11:token=t;object=a\"\nname = \"a\"\n",
    );
    write("foreign.jsonl", b"{\"x\":1}\n");
    write("big.byok", &vec![b' '; 1_500_000]);
    std::fs::create_dir(dir.path().join("a-directory")).expect("mkdir");
    // A SoftHSM with no token: it shows one free, uninitialized slot.
    std::fs::create_dir(dir.path().join("no-tokens")).expect("mkdir");
    write(
        "softhsm2.conf",
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.path().join("no-tokens").display()
        )
        .as_bytes(),
    );
    let out = run(byok_cli()
        .args(["-q", "wrap", "--allow-software-key", "--kek-kid", KID, "--kek-file"])
        .arg(testdata("keys/kek-rsa2048.spki.pem"))
        .arg("--key-file")
        .arg(testdata("keys/ec-p256.pkcs8.pem"))
        .arg("--out")
        .arg(dir.path().join("good.byok")));
    assert!(out.status.success(), "the scene's blob: {}", stderr(&out));
    dir
}

/// `kek create|download` against the (never reached) vault, then `extra`.
fn kek(sub: &str, extra: &[&str]) -> Vec<String> {
    let mut a = args(&["kek", sub, "--vault-url", VAULT, "--name", "kek"]);
    a.extend(args(extra));
    a
}

/// `import` of the scene's good blob as an EC P-256 key, with `changes`: `--flag value` replaces or adds.
fn import(changes: &[&str]) -> Vec<String> {
    let mut a = args(&[
        "import",
        "--vault-url",
        VAULT,
        "--name",
        "imported",
        "--byok-file",
        "@good.byok",
        "--kty",
        "EC",
        "--curve",
        "P-256",
    ]);
    apply(&mut a, changes);
    a
}

/// `full-transfer` of a key in a token, with `changes`.
fn transfer(changes: &[&str]) -> Vec<String> {
    let mut a = args(&[
        "full-transfer",
        "--vault-url",
        VAULT,
        "--kek-name",
        "kek",
        "--name",
        "moved",
        "--key",
        "pkcs11:token=t;object=k",
        "--pkcs11-module",
        "/usr/lib/softhsm/libsofthsm2.so",
    ]);
    apply(&mut a, changes);
    a
}

/// `batch` of a manifest, with `changes`.
fn batch(manifest: &str, changes: &[&str]) -> Vec<String> {
    let mut a = args(&[
        "batch",
        "--vault-url",
        VAULT,
        "--kek-name",
        "kek",
        "--manifest",
        manifest,
        "--pkcs11-module",
        "/usr/lib/softhsm/libsofthsm2.so",
    ]);
    apply(&mut a, changes);
    a
}

/// `--flag value` replaces the flag's value or appends both; `--flag` alone (next is a flag or the end) appends it.
fn apply(a: &mut Vec<String>, changes: &[&str]) {
    let mut i = 0;
    while i < changes.len() {
        let flag = changes[i];
        match changes.get(i + 1).filter(|v| !v.starts_with("--")) {
            Some(value) => {
                match a.iter().position(|x| x == flag) {
                    Some(at) => a[at + 1] = (*value).to_owned(),
                    None => a.extend(args(&[flag, value])),
                }
                i += 2;
            }
            None => {
                a.push(flag.to_owned());
                i += 1;
            }
        }
    }
}

fn with_env(mut c: Case, env: &[(&'static str, Option<&str>)]) -> Case {
    c.env = env.iter().map(|(k, v)| (*k, v.map(str::to_owned))).collect();
    c
}

fn with_hint(mut c: Case, hint: &'static str) -> Case {
    c.hint = Some(hint);
    c
}

fn cases() -> Vec<Case> {
    let exists_hint = "  hint: choose another path, or pass --force to replace the file";
    vec![
        // kek create / download.
        case(
            "kek create over http",
            args(&[
                "kek",
                "create",
                "--vault-url",
                "http://contoso.vault.azure.net",
                "--name",
                "kek",
            ]),
            2,
            "error: invalid vault address `http://contoso.vault.azure.net`: only https is accepted",
        ),
        case(
            "kek create 1024 bits",
            kek("create", &["--size", "1024"]),
            2,
            "error: --size 1024: a KEK is 2048, 3072 or 4096 bits",
        ),
        case(
            "kek create with a space in the name",
            args(&["kek", "create", "--vault-url", VAULT, "--name", "my kek"]),
            2,
            format!("error: invalid value 'my kek' for '--name <NAME>': `my kek` {KEY_HINT_NAME}"),
        ),
        case(
            "kek create with a name too long",
            args(&["kek", "create", "--vault-url", VAULT, "--name", &"k".repeat(128)]),
            2,
            format!(
                "error: invalid value '{0}' for '--name <NAME>': `{0}` {KEY_HINT_NAME}",
                "k".repeat(128)
            ),
        ),
        case(
            "vault name with a space",
            args(&["kek", "create", "--vault-name", "my vault", "--name", "kek"]),
            2,
            "error: invalid value 'my vault' for '--vault-name <NAME>': `my vault` is not a vault name: 3 to 24 \
             letters, digits and single dashes, starting with a letter (for a full address use --vault-url)",
        ),
        case(
            "managed HSM name that is a URL",
            args(&[
                "kek",
                "create",
                "--hsm-name",
                "https://x.managedhsm.azure.net",
                "--name",
                "kek",
            ]),
            2,
            "error: invalid value 'https://x.managedhsm.azure.net' for '--hsm-name <NAME>': \
             `https://x.managedhsm.azure.net` is not a vault name: 3 to 24 letters, digits and single dashes, \
             starting with a letter (for a full address use --vault-url)",
        ),
        case(
            "two ways of naming the vault",
            args(&[
                "kek",
                "create",
                "--vault-name",
                "contoso",
                "--vault-url",
                VAULT,
                "--name",
                "kek",
            ]),
            2,
            "error: the argument '--vault-name <NAME>' cannot be used with '--vault-url <URL>'",
        ),
        case(
            "no vault",
            args(&["kek", "create", "--name", "kek"]),
            2,
            "error: the following required arguments were not provided:",
        ),
        with_hint(
            case(
                "kek download over an existing file",
                kek("download", &["--file", "@existing.pem"]),
                5,
                "error: @existing.pem already exists",
            ),
            exists_hint,
        ),
        case(
            "kek download into a directory",
            kek("download", &["--file", "@a-directory"]),
            4,
            "error: cannot write @a-directory: it is a directory",
        ),
        case(
            "kek download into a missing directory",
            kek("download", &["--file", "@no/such/kek.pem"]),
            4,
            "error: cannot write @no/such/kek.pem: the directory @no/such does not exist",
        ),
        case(
            "kek download as XML",
            kek("download", &["--file", "@kek.pem", "--encoding", "xml"]),
            2,
            "error: invalid value 'xml' for '--encoding <ENCODING>'",
        ),
        // import.
        case(
            "import a missing blob",
            import(&["--byok-file", "@nope.byok"]),
            4,
            "error: cannot read the .byok file @nope.byok: it does not exist",
        ),
        case(
            "import a directory",
            import(&["--byok-file", "@a-directory"]),
            4,
            "error: cannot read the .byok file @a-directory: it is a directory",
        ),
        case(
            "import an empty blob",
            import(&["--byok-file", "@empty"]),
            3,
            "error: the .byok file @empty is empty",
        ),
        case(
            "import an oversized blob",
            import(&["--byok-file", "@big.byok"]),
            3,
            "error: the .byok file @big.byok is larger than 1048576 bytes, far too large to be a key or a .byok file",
        ),
        case(
            "import an unreadable file",
            import(&["--byok-file", "/proc/self/mem"]),
            4,
            "error: cannot read the .byok file /proc/self/mem: Input/output error (os error 5)",
        ),
        case(
            "import JSON that is no blob",
            import(&["--byok-file", "@garbage.byok"]),
            3,
            "error: @garbage.byok is not a valid .byok file: the field `schema_version` is missing",
        ),
        case(
            "import a private key instead of a blob",
            import(&["--byok-file", "%rsa2048.pkcs8.pem"]),
            3,
            "error: %rsa2048.pkcs8.pem is not a valid .byok file: not a valid .byok JSON document: invalid number at \
             line 1 column 2",
        ),
        case(
            "import without --kty",
            args(&[
                "import",
                "--vault-url",
                VAULT,
                "--name",
                "a",
                "--byok-file",
                "@good.byok",
            ]),
            2,
            "error: the following required arguments were not provided:",
        ),
        case(
            "import a DSA key",
            import(&["--kty", "DSA"]),
            2,
            "error: invalid value 'DSA' for '--kty <KTY>': unknown key type `DSA` (expected RSA, EC or oct)",
        ),
        case(
            "import with a curve for RSA",
            import(&["--kty", "RSA"]),
            2,
            "error: a curve (P-256) is given, but the key type is RSA, not EC",
        ),
        case(
            "import AES into a Key Vault",
            args(&[
                "import",
                "--vault-url",
                VAULT,
                "--name",
                "a",
                "--byok-file",
                "@good.byok",
                "--kty",
                "oct",
            ]),
            2,
            "error: https://contoso.vault.azure.net is a Key Vault; AES (oct-HSM) keys can be imported into a \
             Managed HSM only",
        ),
        case(
            "import with an operation EC keys lack",
            import(&["--ops", "encrypt"]),
            2,
            "error: operation `encrypt` is not valid for EC keys (EC keys sign and verify; they cannot encrypt or \
             wrap); valid: sign, verify",
        ),
        case(
            "import with an unknown operation",
            import(&["--ops", "frobnicate"]),
            2,
            "error: invalid value 'frobnicate' for '--ops <OP>...'",
        ),
        case(
            "import with a tag that is no NAME=VALUE",
            import(&["--tags", "nonsense"]),
            2,
            "error: invalid value 'nonsense' for '--tags <NAME=VALUE>...': `nonsense` is not NAME=VALUE",
        ),
        case(
            "import with a time in words",
            import(&["--not-before", "yesterday"]),
            2,
            "error: invalid value 'yesterday' for '--not-before <TIME>': `yesterday` is not an RFC 3339 time such as \
             2027-01-31T00:00:00Z",
        ),
        case(
            "import expiring before it starts",
            import(&[
                "--not-before",
                "2030-01-01T00:00:00Z",
                "--expires",
                "2029-01-01T00:00:00Z",
            ]),
            2,
            "error: the key would expire (2029-01-01T00:00:00Z) before it becomes valid (2030-01-01T00:00:00Z)",
        ),
        case(
            "import with a policy but not exportable",
            import(&["--policy", "@text"]),
            2,
            "error: the following required arguments were not provided:",
        ),
        case(
            "import with a missing policy file",
            import(&["--exportable", "--policy", "@nope.json"]),
            4,
            "error: cannot read the release policy file @nope.json: it does not exist",
        ),
        case(
            "import with a bad name",
            import(&["--name", "a_b"]),
            2,
            format!("error: invalid value 'a_b' for '--name <NAME>': `a_b` {KEY_HINT_NAME}"),
        ),
        case(
            "CA file missing",
            import(&["--ca-file", "@nope.pem"]),
            4,
            "error: cannot read the CA file @nope.pem: it does not exist",
        ),
        case(
            "CA file a directory",
            import(&["--ca-file", "@a-directory"]),
            4,
            "error: cannot read the CA file @a-directory: it is a directory",
        ),
        with_hint(
            case(
                "CA file without a certificate",
                import(&["--ca-file", "@text"]),
                3,
                "error: the CA file @text is unusable: it holds no PEM certificate",
            ),
            "  hint: give the CA certificate (PEM, `BEGIN CERTIFICATE`) that signed the vault's TLS certificate",
        ),
        case(
            "unknown credential kind",
            import(&["--auth", "kerberos"]),
            2,
            "error: invalid value 'kerberos' for '--auth <KIND>'",
        ),
        with_env(
            case(
                "client secret missing",
                import(&["--auth", "client-secret"]),
                2,
                "error: invalid credential: --auth client-secret needs AZURE_CLIENT_SECRET, which is not set",
            ),
            &[("AZURE_CLIENT_SECRET", None)],
        ),
        with_hint(
            with_env(
                case(
                    "no credential at all",
                    import(&[]),
                    2,
                    "error: no credential available: set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (a \
                     service principal), or AZURE_FEDERATED_TOKEN_FILE (workload identity), run on a host with a \
                     managed identity, or sign in with `az login`",
                ),
                &[
                    ("AZURE_CLIENT_SECRET", None),
                    ("AZURE_CLIENT_ID", None),
                    ("AZURE_TENANT_ID", None),
                    ("PATH", Some("/nonexistent")),
                ],
            ),
            "  hint: pass --auth to choose a credential kind explicitly",
        ),
        case(
            "verbose and quiet",
            import(&["-v", "-q"]),
            2,
            "error: the argument '--verbose...' cannot be used with '--quiet'",
        ),
        // full-transfer.
        case(
            "transfer to a bad name",
            transfer(&["--name", "x.y"]),
            2,
            format!("error: invalid value 'x.y' for '--name <NAME>': `x.y` {KEY_HINT_NAME}"),
        ),
        case(
            "transfer with a bad KEK name",
            transfer(&["--kek-name", "kek/1"]),
            2,
            format!("error: invalid value 'kek/1' for '--kek-name <NAME>': `kek/1` {KEY_HINT_NAME}"),
        ),
        case(
            "transfer a URL that is no pkcs11 URI",
            transfer(&["--key", "https://hsm/key"]),
            2,
            "error: invalid value 'https://hsm/key' for '--key <URI>': invalid pkcs11 URI: it must start with \
             `pkcs11:`",
        ),
        case(
            "transfer a URI with a bad escape",
            transfer(&["--key", "pkcs11:token=t;object=%zz"]),
            2,
            "error: invalid value 'pkcs11:token=t;object=%zz' for '--key <URI>': invalid pkcs11 URI: `object` has a \
             bad percent escape at `%zz`",
        ),
        case(
            "transfer a URI carrying a PIN",
            transfer(&["--key", "pkcs11:token=t;object=k;pin-value=1234"]),
            2,
            "error: invalid value 'pkcs11:token=t;object=k;pin-value=1234' for '--key <URI>': invalid pkcs11 URI: \
             unknown path attribute `pin-value`",
        ),
        with_hint(
            case(
                "transfer through a missing module",
                transfer(&["--pkcs11-module", "/nonexistent/libpkcs11.so"]),
                6,
                "error: cannot load the PKCS#11 module /nonexistent/libpkcs11.so: no such file",
            ),
            "  hint: name the token's PKCS#11 library with --pkcs11-module, e.g. /usr/lib/softhsm/libsofthsm2.so",
        ),
        with_env(
            case(
                "transfer from a token that is not there",
                transfer(&[]),
                6,
                "error: no token matches token=t (tokens present: an uninitialized token in slot 0)",
            ),
            &[("SOFTHSM2_CONF", Some("@softhsm2.conf"))],
        ),
        with_hint(
            case(
                "transfer over an existing record",
                transfer(&["--record", "@existing.pem"]),
                5,
                "error: @existing.pem already exists",
            ),
            exists_hint,
        ),
        case(
            "transfer keeping the blob in a directory",
            transfer(&["--keep-byok", "@a-directory"]),
            4,
            "error: cannot write @a-directory: it is a directory",
        ),
        case(
            "transfer with an empty PIN file",
            transfer(&["--pin-file", "@empty-pin"]),
            3,
            "error: the PIN file @empty-pin is empty",
        ),
        case(
            "transfer with a missing PIN file",
            transfer(&["--pin-file", "@nope"]),
            4,
            "error: cannot read the PIN file @nope: it does not exist",
        ),
        case(
            "transfer creating a 1024-bit KEK",
            transfer(&["--kek-size", "1024"]),
            2,
            "error: --kek-size 1024: a KEK is 2048, 3072 or 4096 bits",
        ),
        case(
            "transfer with an unknown wrap path",
            transfer(&["--wrap-mechanism", "rsa-pkcs1"]),
            2,
            "error: invalid value 'rsa-pkcs1' for '--wrap-mechanism <PATH>': unknown wrap mechanism `rsa-pkcs1` \
             (expected auto or one of rsa-aes-key-wrap, two-step-kwp, two-step-luna-kwp, two-step-cloudhsm-kwp, \
             two-step-nss-pad, two-step-pad)",
        ),
        // batch.
        case(
            "batch of a missing manifest",
            batch("@nope.toml", &[]),
            4,
            "error: cannot read the manifest @nope.toml: it does not exist",
        ),
        case(
            "batch of a directory",
            batch("@a-directory", &[]),
            4,
            "error: cannot read the manifest @a-directory: it is a directory",
        ),
        case(
            "batch of an empty manifest",
            batch("@empty", &[]),
            3,
            "error: the manifest @empty is empty",
        ),
        case(
            "batch of broken TOML",
            batch("@bad.toml", &[]),
            3,
            "error: the manifest @bad.toml: line 1, column 5: key with no value, expected `=`",
        ),
        case(
            "batch with an unknown field",
            batch("@unknown.toml", &[]),
            3,
            "error: the manifest @unknown.toml: line 4, column 1: unknown field `colour`, expected one of `uri`, \
             `name`, `kty`, `size`, `curve`, `ops`, `tags`, `enabled`, `not_before`, `expires`",
        ),
        case(
            "batch with a number for a name",
            batch("@badtype.toml", &[]),
            3,
            "error: the manifest @badtype.toml: line 3, column 8: invalid type: integer `5`, expected a string",
        ),
        case(
            "batch naming a key twice",
            batch("@dup.toml", &[]),
            3,
            "error: the manifest @dup.toml: key 2: the name `a` is listed twice",
        ),
        case(
            "batch with a bad key name",
            batch("@badname.toml", &[]),
            3,
            format!("error: the manifest @badname.toml: key 1: `a b` {KEY_HINT_NAME}"),
        ),
        case(
            "batch with a URL for a key",
            batch("@baduri.toml", &[]),
            3,
            "error: the manifest @baduri.toml: key 1: invalid pkcs11 URI: it must start with `pkcs11:`",
        ),
        case(
            "batch with a bad escape in a URI",
            batch("@badescape.toml", &[]),
            3,
            "error: the manifest @badescape.toml: key 1: invalid pkcs11 URI: `object` has a bad percent escape at \
             `%zz`",
        ),
        case(
            "batch with a name in [defaults]",
            batch("@defaults.toml", &[]),
            3,
            "error: the manifest @defaults.toml: [defaults] takes ops, tags, enabled, not_before and expires only",
        ),
        case(
            "batch of a manifest without keys",
            batch("@nokeys.toml", &[]),
            3,
            "error: the manifest @nokeys.toml: lists no [[key]]",
        ),
        case(
            "batch with no jobs",
            batch("@good.toml", &["--jobs", "0"]),
            2,
            "error: invalid value '0' for '--jobs <N>': 0 is not in 1..=64",
        ),
        case(
            "batch records into a file",
            batch("@good.toml", &["--record-dir", "@text"]),
            4,
            "error: --record-dir @text: not a directory",
        ),
        case(
            "batch records into a missing directory",
            batch("@good.toml", &["--record-dir", "@no/such"]),
            4,
            "error: --record-dir @no/such: not a directory",
        ),
        case(
            "batch state that is a directory",
            batch("@good.toml", &["--resume", "@a-directory"]),
            4,
            "error: the state file @a-directory is a directory",
        ),
        case(
            "batch state that is not byok's",
            batch("@good.toml", &["--resume", "@foreign.jsonl"]),
            3,
            "error: the state file @foreign.jsonl is not byok's (line 1)",
        ),
        // completions and the global flags.
        case(
            "completions for tcsh",
            args(&["completions", "tcsh"]),
            2,
            "error: invalid value 'tcsh' for '<SHELL>'",
        ),
        case(
            "completions for no shell",
            args(&["completions"]),
            2,
            "error: the following required arguments were not provided:",
        ),
        case(
            "output as YAML",
            args(&["--output", "yaml", "inspect", "@good.byok"]),
            2,
            "error: invalid value 'yaml' for '--output <OUTPUT>'",
        ),
        case(
            "an unknown subcommand",
            args(&["transfer"]),
            2,
            "error: unrecognized subcommand 'transfer'",
        ),
    ]
}

#[test]
fn command_bad_input_catalogue() {
    let dir = scene();
    let cases = cases();
    assert!(cases.len() >= 60, "the catalogue shrank to {}", cases.len());
    catalogue::check(dir.path(), &cases, |cmd| {
        // Settings that would reach a vault if a case got that far: none may.
        cmd.env("AZURE_TENANT_ID", "00000000-0000-0000-0000-000000000000")
            .env("AZURE_CLIENT_ID", "11111111-1111-1111-1111-111111111111")
            .env("AZURE_CLIENT_SECRET", "not-a-secret")
            .env("AZURE_AUTHORITY_HOST", "https://127.0.0.1:9")
            .env_remove("AZURE_FEDERATED_TOKEN_FILE")
            .env_remove("IDENTITY_ENDPOINT")
            .env_remove("MSI_ENDPOINT");
    });
    assert_eq!(
        std::fs::read(dir.path().join("existing.pem")).expect("kept"),
        b"keep me"
    );
}

/// Outputs onto a full disk: exit 4 with the reason in words and a hint, and nothing left there — not the output,
/// not the temporary file it was being written to.
#[test]
fn a_full_disk_leaves_nothing_half_written() {
    let disk = FullDisk::new();
    let full = disk.path().display().to_string();
    let before = listing(disk.path());
    let hint = "  hint: free some space or write somewhere else; nothing was written";
    let vault = LocalVault::start(false, "", |_| {});
    let scene = scene();
    let mut vault_args = vault.flags();
    vault_args.extend(args(&["--name", "kek"]));
    // The KEK exists: `kek download` gets as far as writing.
    let out = vault.cli(None, &["kek", "create", "--name", "kek", "--size", "2048"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cases = vec![
        with_hint(
            case(
                "wrap onto a full disk",
                args(&[
                    "-q",
                    "wrap",
                    "--allow-software-key",
                    "--kek-kid",
                    KID,
                    "--kek-file",
                    "%kek-rsa2048.spki.pem",
                    "--key-file",
                    "%ec-p384.pkcs8.pem",
                    "--out",
                    &format!("{full}/x.byok"),
                ]),
                4,
                format!("error: cannot write {full}/x.byok: no space left on the device"),
            ),
            hint,
        ),
        with_hint(
            case(
                "kek download onto a full disk",
                [
                    args(&["kek", "download"]),
                    vault_args.clone(),
                    args(&["--file", &format!("{full}/kek.pem")]),
                ]
                .concat(),
                4,
                format!("error: cannot write {full}/kek.pem: no space left on the device"),
            ),
            hint,
        ),
        with_hint(
            case(
                "kek download as DER onto a full disk",
                [
                    args(&["kek", "download"]),
                    vault_args.clone(),
                    args(&["--encoding", "DER", "--file", &format!("{full}/kek.der")]),
                ]
                .concat(),
                4,
                format!("error: cannot write {full}/kek.der: no space left on the device"),
            ),
            hint,
        ),
    ];
    catalogue::check(scene.path(), &cases, |cmd| {
        vault.credentials(cmd);
    });
    assert_eq!(listing(disk.path()), before, "nothing left on the full disk");
}
