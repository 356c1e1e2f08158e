//! The BYOK promise, checked on the outputs: a `full-transfer` run at full verbosity, with JSON output, a kept blob
//! and a record, must leave no trace of the key it moved, of the ephemeral AES key, or of the client secret — in
//! stdout, stderr or any file it wrote. The plaintext is learned the only way it can be: by opening the blob with
//! the KEK's private key, taken from the local Key Vault's state. `batch` gets the same scan (it keeps no blob; the
//! blobs are opened as the local Key Vault received them), on a token with a long PIN, also for that PIN and every
//! access token the vault issued.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use byok_blob::ByokBlob;
use byok_tests::hsm::Token;
use byok_tests::vault::LocalVault;
use byok_tests::{byok_cli, run, stderr, stdout};
use serde_json::Value;

/// Every way a secret could show up in text or bytes: raw, hex (both cases), base64 and base64url (padded or not, at
/// every alignment, any 12 bytes of it), and any 16-byte window of it, raw or hex.
fn needles(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![secret.to_vec()];
    out.push(hex(secret).into_bytes());
    out.push(hex(secret).to_uppercase().into_bytes());
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        // A secret embedded in longer data encodes differently at each of the three byte alignments; inner runs
        // of whole 4-character groups are the same whatever surrounds them.
        for skip in 0..3 {
            let text = engine.encode(&secret[skip.min(secret.len())..]);
            // Every run of 16 characters (12 bytes) starting at a group boundary, minus the possibly partial last
            // group.
            let chars: Vec<u8> = text.trim_end_matches('=').bytes().collect();
            let whole = chars.len() / 4 * 4;
            for start in (0..whole.saturating_sub(16) + 1).step_by(4).filter(|s| s + 16 <= whole) {
                out.push(chars[start..start + 16].to_vec());
            }
        }
    }
    for window in secret.windows(16) {
        out.push(window.to_vec());
        out.push(hex(window).into_bytes());
    }
    out
}

/// The needles of a key's plaintext, less those of its public half: a PKCS#8 key holds its modulus or point, which
/// records show of right (the attestation's evidence is the vault's public JWK and the HSM's attested modulus).
fn secret_needles(plaintext: &[u8]) -> Vec<Vec<u8>> {
    let key = byok_encoding::TargetKey::from_pkcs8_der(plaintext).ok();
    let public = key.as_ref().and_then(|k| k.public_key());
    let mut parts: Vec<Vec<u8>> = Vec::new();
    if let Some((n, e)) = public.and_then(|p| p.rsa()) {
        parts.extend([n.to_vec(), e.to_vec()]);
    }
    if let Some((_, point)) = public.and_then(|p| p.ec()) {
        parts.push(point.to_vec());
    }
    let shown: std::collections::HashSet<Vec<u8>> = parts.iter().flat_map(|p| needles(p)).collect();
    let mut out = needles(plaintext);
    out.retain(|n| !shown.contains(n));
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn count(haystack: &[u8], needles: &[Vec<u8>]) -> usize {
    needles
        .iter()
        .map(|n| haystack.windows(n.len()).filter(|w| w == &n.as_slice()).count())
        .sum()
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn full_transfer_leaves_no_trace_of_what_it_moved() {
    let vault = LocalVault::start(true, "", |_| {});
    let work = tempfile::tempdir().expect("tempdir");
    let mut scanned = 0usize;
    for (spec, name) in [
        (&["--kty", "RSA", "--size", "2048"][..], "leak-rsa"),
        (&["--kty", "EC", "--curve", "P-384"][..], "leak-ec"),
        (&["--kty", "oct", "--size", "256"][..], "leak-aes"),
    ] {
        let uri = Token::Nss.generate(spec, name)["uri"].as_str().expect("uri").to_owned();
        let (blob_file, record_file) = (
            work.path().join(format!("{name}.byok")),
            work.path().join(format!("{name}.json")),
        );
        let (blob_arg, record_arg) = (blob_file.to_str().expect("utf-8"), record_file.to_str().expect("utf-8"));
        let out = vault.full_transfer(
            Token::Nss,
            &uri,
            name,
            &["-vvv", "--keep-byok", blob_arg, "--record", record_arg],
        );
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let record: Value = serde_json::from_str(&stdout(&out)).expect("JSON record");
        assert_eq!(record["verification"]["result"], "verified");

        // Learn the secrets: open the blob with the KEK's private key.
        let blob = ByokBlob::from_json(&std::fs::read(&blob_file).expect("kept blob")).expect("valid blob");
        let kek = vault.kek_private(&blob.kid().to_string());
        let plaintext = kek.unwrap(blob.ciphertext()).expect("the KEK opens it");
        let rsa_len = 256; // the 2048-bit KEK's RSA part
        let aes_key = kek
            .decrypt_aes_key(&blob.ciphertext()[..rsa_len])
            .expect("the ephemeral AES key");
        assert!(plaintext.len() >= 32, "{name}: a real key");

        let mut secrets = secret_needles(&plaintext);
        secrets.extend(needles(&aes_key));
        secrets.extend(needles(vault.info.client_secret.as_bytes()));
        let tokens = vault.observed.tokens();
        assert!(!tokens.is_empty(), "{name}: the run was issued access tokens");
        for token in &tokens {
            secrets.extend(needles(token.as_bytes()));
        }
        let mut places: Vec<(String, Vec<u8>)> = vec![
            ("stdout".into(), out.stdout.clone()),
            ("stderr".into(), out.stderr.clone()),
        ];
        for f in files(work.path()) {
            places.push((f.display().to_string(), std::fs::read(&f).expect("readable")));
        }
        for (place, bytes) in &places {
            assert_eq!(count(bytes, &secrets), 0, "{name}: a secret shows in {place}");
            scanned += bytes.len();
        }
        // The check itself can fail: the plaintext planted in a copy of stderr is found.
        let mut planted = out.stderr.clone();
        planted.extend(hex(&plaintext[7..30]).bytes());
        assert!(count(&planted, &secrets) > 0, "{name}: the scan finds a planted secret");
        let mut planted = out.stderr.clone();
        planted.extend(URL_SAFE_NO_PAD.encode(&plaintext[5..]).bytes());
        assert!(
            count(&planted, &secrets) > 0,
            "{name}: the scan finds a planted base64url secret"
        );
    }
    assert!(scanned > 10_000, "the scan covered the outputs ({scanned} bytes)");
}

/// Where to look: stdout, stderr and every file under `dir`.
fn places(out: &std::process::Output, dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut places: Vec<(String, Vec<u8>)> = vec![
        ("stdout".into(), out.stdout.clone()),
        ("stderr".into(), out.stderr.clone()),
    ];
    for f in files(dir) {
        places.push((f.display().to_string(), std::fs::read(&f).expect("readable")));
    }
    places
}

/// A throwaway NSS database protected by `pin`, and the init args that open it.
fn nss_with_pin(dir: &Path, pin: &str) -> String {
    let db = dir.join("nss");
    std::fs::create_dir(&db).expect("nss dir");
    let pw = dir.join("nss-password");
    std::fs::write(&pw, pin).expect("password file");
    let out = run(Command::new("certutil")
        .args(["-N", "-d"])
        .arg(format!("sql:{}", db.display()))
        .arg("-f")
        .arg(&pw));
    assert!(out.status.success(), "certutil -N: {}", stderr(&out));
    std::fs::remove_file(&pw).expect("remove the password file");
    format!(
        "configdir='sql:{}' certPrefix='' keyPrefix='' secmod='secmod.db' flags=",
        db.display()
    )
}

/// The private key material the vault keeps for `name` (its latest version): PKCS#8 DER or raw AES bytes.
fn vault_material(vault: &LocalVault, name: &str) -> Vec<u8> {
    let versions: Vec<Value> = serde_json::from_slice(
        &std::fs::read(vault.state.join(format!("keys/{name}.json"))).expect("the key's state file"),
    )
    .expect("JSON");
    assert_eq!(versions.len(), 1, "{name}: imported once");
    let m = &versions[0]["material"];
    let text = m["pkcs8"].as_str().or(m["key"].as_str()).expect("material");
    STANDARD.decode(text).expect("base64")
}

#[test]
fn batch_leaves_no_trace_of_the_keys_the_pin_or_the_access_tokens() {
    let vault = LocalVault::start(true, "", |c| {
        // Short-lived tokens: the run is issued several, and each must stay out of the outputs.
        c.token_lifetime = std::time::Duration::from_secs(2);
    });
    let secret_dir = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    // A PIN long and random enough that finding it by chance is impossible.
    let pin = format!("pin-{:016x}{:016x}", rand_u64(), rand_u64());
    let init_args = nss_with_pin(secret_dir.path(), &pin);
    let pin_file: PathBuf = secret_dir.path().join("pin");
    byok_tests::write_secret(&pin_file, format!("{pin}\n"));
    let module = byok_tests::hsm::env()["nss"]["module"]
        .as_str()
        .expect("module")
        .to_owned();
    let hsm = |args: &[&str]| {
        let mut c = byok_cli();
        c.args(args)
            .args(["--pkcs11-module", &module, "--pkcs11-init-args", &init_args])
            .arg("--pin-file")
            .arg(&pin_file);
        c
    };
    let token = "pkcs11:token=NSS%20Certificate%20DB";
    let keys = [
        ("leak-batch-rsa", &["--kty", "RSA", "--size", "2048"][..]),
        ("leak-batch-ec", &["--kty", "EC", "--curve", "P-256"][..]),
        ("leak-batch-aes", &["--kty", "oct", "--size", "256"][..]),
        ("leak-batch-aes128", &["--kty", "oct", "--size", "128"][..]),
    ];
    let mut manifest = String::from("[defaults]\ntags = { migration = \"leak-scan\" }\n");
    for (name, spec) in keys {
        let out = run(hsm(&["hsm", "generate", "--token", token, "--label", name]).args(spec));
        assert!(out.status.success(), "generate {name}: {}", stderr(&out));
        manifest.push_str(&format!(
            "\n[[key]]\nuri = \"{token};object={name}\"\nname = \"{name}\"\n"
        ));
    }
    let manifest_file = work.path().join("manifest.toml");
    std::fs::write(&manifest_file, manifest).expect("manifest");
    let records = work.path().join("records");
    std::fs::create_dir(&records).expect("records");
    let (records_arg, state_arg) = (
        records.display().to_string(),
        work.path().join("state.jsonl").display().to_string(),
    );
    let mut args = vec!["-vvv".to_owned()];
    args.extend(byok_tests::vault::batch_args(
        &manifest_file,
        &["--jobs", "2", "--record-dir", &records_arg, "--resume", &state_arg],
    ));
    args.extend(vault.transfer_flags());
    let out = run(vault.credentials(&mut hsm(&args.iter().map(String::as_str).collect::<Vec<_>>())));
    assert!(out.status.success(), "batch: {}", stderr(&out));
    let summary: Value = serde_json::from_str(stdout(&out).lines().last().expect("summary")).expect("JSON");
    assert_eq!(summary["summary"]["done"], keys.len(), "{summary}");

    // Learn the secrets: open every blob the vault received with the KEK's private key — the keys as they left the
    // token, and each key's ephemeral AES key. The vault's own copy of each key must be the same.
    let blobs = vault.observed.blobs();
    assert_eq!(blobs.len(), keys.len(), "one blob per key");
    let mut secrets = Vec::new();
    let mut aes_keys = Vec::new();
    for file in &blobs {
        let blob = ByokBlob::from_json(file).expect("a valid blob");
        let kek = vault.kek_private(&blob.kid().to_string());
        let plaintext = kek.unwrap(blob.ciphertext()).expect("the KEK opens it");
        let aes_key = kek.decrypt_aes_key(&blob.ciphertext()[..256]).expect("the AES key");
        assert!(plaintext.len() >= 16, "a real key");
        secrets.extend(secret_needles(&plaintext));
        secrets.extend(needles(&aes_key));
        aes_keys.push(aes_key);
    }
    for (name, _) in keys {
        let material = vault_material(&vault, name);
        secrets.extend(secret_needles(&material));
    }
    secrets.extend(needles(pin.as_bytes()));
    secrets.extend(needles(vault.info.client_secret.as_bytes()));
    let tokens = vault.observed.tokens();
    assert!(!tokens.is_empty(), "the batch was issued access tokens");
    for token in &tokens {
        secrets.extend(needles(token.as_bytes()));
    }
    let places = places(&out, work.path());
    assert!(
        places.len() >= 2 + keys.len() + 2,
        "records, state and manifest are scanned"
    );
    let mut scanned = 0;
    for (place, bytes) in &places {
        assert_eq!(count(bytes, &secrets), 0, "a secret shows in {place}");
        scanned += bytes.len();
    }
    assert!(scanned > 5_000, "the scan covered the outputs ({scanned} bytes)");
    // The scan finds what it looks for: the PIN, a token, a window of an AES key and an ephemeral key planted in
    // stderr.
    for planted in [
        pin.as_bytes().to_vec(),
        tokens[0].as_bytes().to_vec(),
        hex(&vault_material(&vault, "leak-batch-aes128")[..16]).into_bytes(),
        URL_SAFE_NO_PAD.encode(&aes_keys[0][3..]).into_bytes(),
    ] {
        let mut text = out.stderr.clone();
        text.extend(planted);
        assert!(count(&text, &secrets) > 0, "the scan finds a planted secret");
    }
}

fn rand_u64() -> u64 {
    use std::io::Read as _;
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("OS random");
    u64::from_le_bytes(b)
}
