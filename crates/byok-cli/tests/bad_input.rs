//! Bad input through the binary: each case has its exact first error line and exit code, never panics, and
//! leaves no file behind. Exit codes: docs/exit-codes.md.

use std::path::PathBuf;

use byok_tests::catalogue::{self, Case, case};
use byok_tests::{KID, byok_cli, run, stderr, testdata};

/// A throwaway working directory with a few prepared files.
struct Scene {
    dir: tempfile::TempDir,
}

impl Scene {
    fn new() -> Self {
        let scene = Self {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        let good = wrap_ok(scene.path("good.byok"));
        assert!(good, "the scene's good blob could not be made");
        scene.write("existing.byok", b"keep me");
        scene.write("empty.pem", b"");
        scene.write(
            "garbage.pem",
            b"-----BEGIN PUBLIC KEY-----\nnot base64 at all!\n-----END PUBLIC KEY-----\n",
        );
        scene.write(
            "truncated.pem",
            b"-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n",
        );
        scene.write("jwk-no-n.json", br#"{"kty":"RSA","e":"AQAB"}"#);
        std::fs::create_dir(scene.path("a-directory")).expect("mkdir");
        let good: serde_json::Value =
            serde_json::from_slice(&std::fs::read(scene.path("good.byok")).expect("good")).expect("json");
        let mut wrong_enc = good.clone();
        wrong_enc["header"]["enc"] = "CKM_RSA_AES_KEY_WRAP_PAD".into();
        scene.write("wrong-enc.byok", wrong_enc.to_string().as_bytes());
        let mut short = good.clone();
        let ct = good["ciphertext"].as_str().expect("ct");
        short["ciphertext"] = ct[..300].into();
        scene.write("truncated.byok", short.to_string().as_bytes());
        let mut not_b64 = good.clone();
        not_b64["ciphertext"] = format!("{}!!", &ct[..ct.len() - 2]).into();
        scene.write("not-base64.byok", not_b64.to_string().as_bytes());
        let mut no_kid = good.clone();
        no_kid["header"]["kid"] = "https://contoso.vault.azure.net/keys/kek".into();
        scene.write("unversioned-kid.byok", no_kid.to_string().as_bytes());
        scene.write(
            "bad-json.byok",
            &std::fs::read(scene.path("good.byok")).expect("good")[..50],
        );
        scene
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, data: &[u8]) {
        std::fs::write(self.path(name), data).expect("write scene file");
    }
}

fn wrap_ok(out: PathBuf) -> bool {
    run(byok_cli()
        .args(["wrap", "--allow-software-key", "--kek-kid", KID, "--kek-file"])
        .arg(testdata("keys/kek-rsa2048.spki.pem"))
        .arg("--key-file")
        .arg(testdata("keys/ec-p256.pkcs8.pem"))
        .arg("--out")
        .arg(out))
    .status
    .success()
}

/// `wrap` with a good set of flags, then `changes` applied: `--flag value` replaces, `-flag` removes.
fn wrap_args(changes: &[&str]) -> Vec<String> {
    let mut flags: Vec<(String, Option<String>)> = vec![
        ("--kek-file".into(), Some("%kek-rsa4096.spki.pem".into())),
        ("--kek-kid".into(), Some(KID.into())),
        ("--key-file".into(), Some("%rsa2048.pkcs8.pem".into())),
        ("--out".into(), Some("@out.byok".into())),
        ("--allow-software-key".into(), None),
    ];
    let mut i = 0;
    while i < changes.len() {
        let c = changes[i];
        if let Some(flag) = c.strip_prefix('-').filter(|f| f.starts_with("--")) {
            flags.retain(|(f, _)| f != flag);
            i += 1;
        } else if changes.get(i + 1).is_some_and(|v| !v.starts_with("--")) {
            let value = changes[i + 1].to_owned();
            match flags.iter_mut().find(|(f, _)| f == c) {
                Some(entry) => entry.1 = Some(value),
                None => flags.push((c.to_owned(), Some(value))),
            }
            i += 2;
        } else {
            flags.push((c.to_owned(), None));
            i += 1;
        }
    }
    let mut args = vec!["wrap".to_owned()];
    for (f, v) in flags {
        args.push(f);
        args.extend(v);
    }
    args
}

fn inspect(args: &[&str]) -> Vec<String> {
    std::iter::once("inspect")
        .chain(args.iter().copied())
        .map(str::to_owned)
        .collect()
}

fn cases() -> Vec<Case> {
    vec![
        // The KEK file.
        case(
            "kek missing",
            wrap_args(&["--kek-file", "@nope.pem"]),
            4,
            "error: cannot read the KEK file @nope.pem: it does not exist",
        ),
        case(
            "kek is a directory",
            wrap_args(&["--kek-file", "@a-directory"]),
            4,
            "error: cannot read the KEK file @a-directory: it is a directory",
        ),
        case(
            "kek empty",
            wrap_args(&["--kek-file", "@empty.pem"]),
            3,
            "error: the KEK file @empty.pem is empty",
        ),
        case(
            "kek not a key",
            wrap_args(&["--kek-file", "%aes256.raw"]),
            3,
            "error: the KEK file %aes256.raw was refused: KEK is not in a recognised format (expected an RSA public key as PEM, DER (SubjectPublicKeyInfo or PKCS#1) or a JWK)",
        ),
        case(
            "kek PEM garbage",
            wrap_args(&["--kek-file", "@garbage.pem"]),
            3,
            "error: the KEK file @garbage.pem was refused: KEK is malformed: PEM block `PUBLIC KEY`: PEM Base64 error: invalid Base64 encoding",
        ),
        case(
            "kek PEM truncated",
            wrap_args(&["--kek-file", "@truncated.pem"]),
            3,
            "error: the KEK file @truncated.pem was refused: KEK is malformed: PEM block `PUBLIC KEY` has no END line",
        ),
        case(
            "kek is EC",
            wrap_args(&["--kek-file", "%ec-p256.spki.pem"]),
            3,
            "error: the KEK file %ec-p256.spki.pem was refused: the KEK is not an RSA key (its algorithm is EC (1.2.840.10045.2.1))",
        ),
        Case {
            hint: Some(
                "  hint: create the KEK as RSA-HSM 2048, 3072 or 4096 bits with key_ops [\"import\"]: `az keyvault key create --kty RSA-HSM --size 4096 --ops import`",
            ),
            ..case(
                "kek RSA-1024",
                wrap_args(&["--kek-file", "%kek-rsa1024.spki.pem"]),
                3,
                "error: the KEK file %kek-rsa1024.spki.pem was refused: the KEK is RSA-1024, but Azure KEKs are RSA-2048, RSA-3072 or RSA-4096",
            )
        },
        case(
            "kek RSA-8192",
            wrap_args(&["--kek-file", "%kek-rsa8192.spki.pem"]),
            3,
            "error: the KEK file %kek-rsa8192.spki.pem was refused: the KEK is RSA-8192, but Azure KEKs are RSA-2048, RSA-3072 or RSA-4096",
        ),
        case(
            "kek is a private key",
            wrap_args(&["--kek-file", "%kek-rsa2048.pkcs8.pem"]),
            3,
            "error: the KEK file %kek-rsa2048.pkcs8.pem was refused: the KEK file holds a private key, but a KEK is the vault's public key",
        ),
        case(
            "kek JWK without n",
            wrap_args(&["--kek-file", "@jwk-no-n.json"]),
            3,
            "error: the KEK file @jwk-no-n.json was refused: the KEK JWK is invalid: it has no `n`",
        ),
        // The target key.
        case(
            "target is a directory",
            wrap_args(&["--key-file", "@a-directory"]),
            4,
            "error: cannot read the target key file @a-directory: it is a directory",
        ),
        Case {
            hint: Some(
                "  hint: decrypt it first (openssl pkcs8 -in KEY -out PLAIN.pem); better, leave it in the HSM and use the HSM source",
            ),
            ..case(
                "target encrypted PKCS#8",
                wrap_args(&["--key-file", "%rsa2048.encrypted.pem"]),
                3,
                "error: the target key file %rsa2048.encrypted.pem was refused: the target key is an encrypted PKCS#8 key (ENCRYPTED PRIVATE KEY)",
            )
        },
        case(
            "target RSA-1024",
            wrap_args(&["--key-file", "%rsa1024.pkcs8.pem"]),
            3,
            "error: the target key file %rsa1024.pkcs8.pem was refused: the target key is RSA-1024, but Azure accepts RSA-2048, RSA-3072 or RSA-4096",
        ),
        case(
            "target brainpool",
            wrap_args(&["--key-file", "%ec-brainpoolp256r1.pkcs8.pem"]),
            3,
            "error: the target key file %ec-brainpoolp256r1.pkcs8.pem was refused: the target key is on curve brainpoolP256r1 (1.3.36.3.3.2.8.1.1.7), but Azure accepts P-256, P-384, P-521 and P-256K (secp256k1)",
        ),
        case(
            "target Ed25519",
            wrap_args(&["--key-file", "%ed25519.pkcs8.pem"]),
            3,
            "error: the target key file %ed25519.pkcs8.pem was refused: the target key's algorithm 1.3.101.112 is not RSA (1.2.840.113549.1.1.1) or EC (1.2.840.10045.2.1)",
        ),
        case(
            "target is a public key",
            wrap_args(&["--key-file", "%ec-p256.spki.pem"]),
            3,
            "error: the target key file %ec-p256.spki.pem was refused: target key is a PEM `PUBLIC KEY` block, expected `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`",
        ),
        case(
            "oct of 20 bytes",
            wrap_args(&["--key-file", "%aes-20-bytes.raw", "--kty", "oct"]),
            3,
            "error: the target key file %aes-20-bytes.raw was refused: an AES key must be exactly 16, 24 or 32 bytes, this one is 20 bytes",
        ),
        Case {
            hint: Some("  hint: if this is a raw AES-256 key, pass --kty oct"),
            ..case(
                "raw AES without --kty",
                wrap_args(&["--key-file", "%aes256.raw"]),
                3,
                "error: the target key file %aes256.raw was refused: target key is not in a recognised format (expected a PEM or DER private key: PKCS#8, PKCS#1 or SEC1)",
            )
        },
        case(
            "kty disagrees with key",
            wrap_args(&["--kty", "EC"]),
            3,
            "error: the target key file %rsa2048.pkcs8.pem holds RSA-2048, but --kty says EC",
        ),
        // Flags and values.
        case(
            "kid not a URL",
            wrap_args(&["--kek-kid", "my-kek"]),
            2,
            "error: invalid value 'my-kek' for '--kek-kid <KID>': `my-kek` is not a versioned key identifier (https://{host}/keys/{name}/{version}): not a URL (relative URL without a base)",
        ),
        case(
            "kid without version",
            wrap_args(&["--kek-kid", "https://contoso.vault.azure.net/keys/kek"]),
            2,
            "error: invalid value 'https://contoso.vault.azure.net/keys/kek' for '--kek-kid <KID>': `https://contoso.vault.azure.net/keys/kek` is not a versioned key identifier (https://{host}/keys/{name}/{version}): it has no version",
        ),
        case(
            "kid missing with a PEM KEK",
            wrap_args(&["---kek-kid"]),
            2,
            "error: --kek-kid is required: the KEK file does not name its key identifier",
        ),
        case(
            "unknown kty",
            wrap_args(&["--kty", "DSA"]),
            2,
            "error: invalid value 'DSA' for '--kty <KTY>': unknown key type `DSA` (expected RSA, EC or oct)",
        ),
        case(
            "missing --out",
            wrap_args(&["---out"]),
            2,
            "error: the following required arguments were not provided:",
        ),
        case(
            "unknown flag",
            wrap_args(&["--frobnicate"]),
            2,
            "error: unexpected argument '--frobnicate' found",
        ),
        case(
            "verbose and quiet",
            {
                let mut a = wrap_args(&[]);
                a.extend(["-v".into(), "-q".into()]);
                a
            },
            2,
            "error: the argument '--verbose...' cannot be used with '--quiet'",
        ),
        Case {
            hint: Some(
                "  hint: BYOK promises that the key never exists in plaintext outside an HSM; a key file breaks that promise. Wrap inside the HSM with --key 'pkcs11:…' (the HSM source), or pass --allow-software-key if this key already lives in software",
            ),
            ..case(
                "software key not allowed",
                wrap_args(&["---allow-software-key"]),
                5,
                "error: refusing to wrap a key read from a file without --allow-software-key",
            )
        },
        Case {
            hint: Some("  hint: choose another path, or pass --force to replace the file"),
            ..case(
                "output exists",
                wrap_args(&["--out", "@existing.byok"]),
                5,
                "error: @existing.byok already exists",
            )
        },
        case(
            "output is a directory",
            wrap_args(&["--out", "@a-directory", "--force"]),
            4,
            "error: cannot write @a-directory: it is a directory",
        ),
        case(
            "output directory missing",
            wrap_args(&["--out", "@no/such/dir/x.byok"]),
            4,
            "error: cannot write @no/such/dir/x.byok: the directory @no/such/dir does not exist",
        ),
        // inspect.
        case(
            "inspect missing file",
            inspect(&["@nope.byok"]),
            4,
            "error: cannot read the .byok file @nope.byok: it does not exist",
        ),
        case(
            "inspect bad JSON",
            inspect(&["@bad-json.byok"]),
            3,
            "error: @bad-json.byok is not a valid .byok file: not a valid .byok JSON document: EOF while parsing a string at line 1 column 50",
        ),
        case(
            "inspect wrong enc",
            inspect(&["@wrong-enc.byok"]),
            3,
            "error: @wrong-enc.byok is not a valid .byok file: header.enc is `CKM_RSA_AES_KEY_WRAP_PAD`, but BYOK blobs use `CKM_RSA_AES_KEY_WRAP`",
        ),
        case(
            "inspect truncated ciphertext",
            inspect(&["@truncated.byok"]),
            3,
            "error: @truncated.byok is not a valid .byok file: the ciphertext is 225 bytes, too short for an RSA part (at least 256 bytes) and a KWP part (at least 16)",
        ),
        case(
            "inspect ciphertext not base64",
            inspect(&["@not-base64.byok"]),
            3,
            "error: @not-base64.byok is not a valid .byok file: the ciphertext is not base64url or base64 (invalid character `!` at offset 542)",
        ),
        case(
            "inspect unversioned kid",
            inspect(&["@unversioned-kid.byok"]),
            3,
            "error: @unversioned-kid.byok is not a valid .byok file: `https://contoso.vault.azure.net/keys/kek` is not a versioned key identifier (https://{host}/keys/{name}/{version}): it has no version",
        ),
        case(
            "inspect a key instead of a blob",
            inspect(&["%rsa2048.pkcs8.pem"]),
            3,
            "error: %rsa2048.pkcs8.pem is a PEM file, not a .byok file",
        ),
        Case {
            hint: Some(
                "  hint: the blob was made for another KEK, or was damaged; wrap again to the KEK you import with",
            ),
            report_on_stdout: true,
            ..case(
                "inspect with a KEK too large",
                inspect(&["@good.byok", "--kek-file", "%kek-rsa4096.spki.pem"]),
                3,
                "error: @good.byok does not fit the KEK %kek-rsa4096.spki.pem: the ciphertext is 408 bytes, too short for this KEK's 512-byte RSA part and a KWP part",
            )
        },
        case(
            "inspect with a bad KEK",
            inspect(&["@good.byok", "--kek-file", "%ec-p256.pkcs8.pem"]),
            3,
            "error: the KEK file %ec-p256.pkcs8.pem was refused: the KEK file holds a private key, but a KEK is the vault's public key",
        ),
        case(
            "no subcommand",
            vec![],
            2,
            "Bring Your Own Key to Azure Key Vault and Managed HSM",
        ),
    ]
}

#[test]
fn bad_input_catalogue() {
    let scene = Scene::new();
    let cases = cases();
    assert!(cases.len() >= 40, "the catalogue shrank to {}", cases.len());
    catalogue::check(scene.dir.path(), &cases, |_| {});
    assert_eq!(std::fs::read(scene.path("existing.byok")).expect("kept"), b"keep me");
}

#[test]
fn json_errors_are_one_object_on_stderr() {
    let scene = Scene::new();
    let args: Vec<String> = wrap_args(&["--out", "@existing.byok"])
        .iter()
        .map(|a| catalogue::expand(scene.dir.path(), a))
        .collect();
    let out = run(byok_cli().arg("--output=json").args(&args));
    assert_eq!(out.status.code(), Some(5));
    assert!(out.stdout.is_empty());
    let v: serde_json::Value = serde_json::from_str(stderr(&out).trim()).expect("one JSON object");
    assert_eq!(v["error"]["exit_code"], 5);
    assert_eq!(v["error"]["kind"], "refused");
    assert!(v["error"]["hint"].as_str().is_some_and(|h| h.contains("--force")));
}
