//! `byok-cli rotate` end to end against the local vault in both modes: RSA, EC and AES keys rotated to generated
//! and existing HSM keys, what the new version inherits, the refusal of known material, the retirement of older
//! versions (the vault's own attributes checked), and bad input that writes nothing.

use byok_keyvault::Timestamp;
use byok_tests::hsm::Token;
use byok_tests::vault::LocalVault;
use byok_tests::{assert_refused, ok_json};
use serde_json::Value;

const DAY: i64 = 86_400;

/// The key's versions as the local vault keeps them (oldest first): attributes and tags.
fn versions(vault: &LocalVault, name: &str) -> Vec<Value> {
    let path = vault.state.join("keys").join(format!("{name}.json"));
    serde_json::from_slice(&std::fs::read(path).expect("the key's state file")).expect("JSON")
}

fn rotate(vault: &LocalVault, token: Token, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--output", "json", "rotate", "--kek-name", "kek", "--kek-size", "2048"];
    all.extend(args);
    vault.cli(Some(token), &all)
}

fn assert_close(actual: &Value, expected: i64, what: &str) {
    let actual = actual.as_i64().unwrap_or_else(|| panic!("{what}: no time"));
    assert!(
        (actual - expected).abs() < 120,
        "{what}: {actual}, expected about {expected}"
    );
}

#[test]
fn rsa_and_ec_rotate_in_a_key_vault_inheriting_and_retiring() {
    let vault = LocalVault::start(false, "", |_| {});
    let first = Token::Nss.generate(&["--kty", "RSA", "--size", "2048"], "rot-rsa")["uri"]
        .as_str()
        .expect("uri")
        .to_owned();
    let exp = format!("{}", Timestamp::from_unix(Timestamp::now().unix() + 365 * DAY));
    let flags = [
        "--ops",
        "sign",
        "verify",
        "--tags",
        "owner=pki",
        "--expires",
        exp.as_str(),
    ];
    ok_json(
        &vault.full_transfer(Token::Nss, &first, "app", &flags),
        "the first version",
    );
    let v1 = versions(&vault, "app")[0].clone();
    assert_eq!(v1["tags"]["byok-kind"], "RSA-2048");
    assert!(v1["tags"]["byok-key-id"].as_str().expect("tag").starts_with("sha256:"));

    // A generated RSA-3072 key as the next version; the old one expires in 30 days.
    let dir = tempfile::tempdir().expect("tempdir");
    let record = dir.path().join("rotation.json");
    let token = Token::Nss.uri();
    let args = [
        "--name",
        "app",
        "--generate",
        "rsa:3072",
        "--token",
        &token,
        "--retire-previous",
        "30d",
    ];
    let mut with_record = args.to_vec();
    with_record.extend(["--record", record.to_str().expect("path")]);
    let out = ok_json(&rotate(&vault, Token::Nss, &with_record), "rotate");
    assert_eq!(out["verification"]["result"], "verified", "{out:#}");
    assert_eq!(out["rotation"]["from_version"], v1["version"]);
    assert_eq!(out["rotation"]["generated"], true);
    assert_eq!(out["rotation"]["previous"][0]["action"], "expires", "{out:#}");
    let written: Value = serde_json::from_slice(&std::fs::read(&record).expect("record")).expect("JSON");
    assert_eq!(written, out, "the record file is what was printed");
    let all = versions(&vault, "app");
    assert_eq!(all.len(), 2);
    let (old, new) = (&all[0], &all[1]);
    assert_eq!(
        new["key_ops"],
        serde_json::json!(["sign", "verify"]),
        "operations inherited"
    );
    assert_eq!(new["tags"]["owner"], "pki", "user tags inherited");
    assert_eq!(
        new["tags"]["byok-kind"], "RSA-3072",
        "byok's tags describe the new source"
    );
    assert_eq!(new["tags"]["byok-transfer"], out["transfer_id"]);
    assert_ne!(new["tags"]["byok-key-id"], old["tags"]["byok-key-id"]);
    assert_close(
        &new["exp"],
        Timestamp::now().unix() + 365 * DAY,
        "the lifetime is inherited",
    );
    assert_close(
        &old["exp"],
        Timestamp::now().unix() + 30 * DAY,
        "the old version expires after the grace period",
    );
    assert_eq!(old["enabled"], true);

    // The key the first version holds cannot come back as a rotation; nothing changes in the vault.
    let out = rotate(
        &vault,
        Token::Nss,
        &["--name", "app", "--key", &first, "--disable-previous"],
    );
    assert_refused(&out, 5, "already holds this key material (the same public key)");
    assert_eq!(versions(&vault, "app"), all, "a refused rotation changes nothing");

    // EC: an existing HSM key, the older version disabled at once; the new one's validity overridden.
    let ec1 = Token::Nss.generate(&["--kty", "EC", "--curve", "P-256"], "rot-ec1")["uri"]
        .as_str()
        .expect("uri")
        .to_owned();
    let ec2 = Token::Nss.generate(&["--kty", "EC", "--curve", "P-384"], "rot-ec2")["uri"]
        .as_str()
        .expect("uri")
        .to_owned();
    ok_json(&vault.full_transfer(Token::Nss, &ec1, "sig", &[]), "EC first version");
    let out = ok_json(
        &rotate(
            &vault,
            Token::Nss,
            &["--name", "sig", "--key", &ec2, "--disable-previous", "--disabled"],
        ),
        "EC rotate",
    );
    assert_eq!(out["rotation"]["generated"], false);
    let sig = versions(&vault, "sig");
    assert_eq!(
        (sig[0]["enabled"].as_bool(), sig[1]["enabled"].as_bool()),
        (Some(false), Some(false))
    );
    assert_eq!(sig[1]["tags"]["byok-kind"], "EC-P-384");
    assert_eq!(out["rotation"]["previous"][0]["action"], "disabled");
    // And a generated EC key; the disabled versions are left as they are.
    let token = Token::Nss.uri();
    let out = ok_json(
        &rotate(
            &vault,
            Token::Nss,
            &[
                "--name",
                "sig",
                "--generate",
                "ec:P-521",
                "--token",
                &token,
                "--disable-previous",
            ],
        ),
        "EC generated",
    );
    assert_eq!(
        out["rotation"]["previous"],
        serde_json::json!([]),
        "nothing enabled to retire"
    );
    assert_eq!(versions(&vault, "sig")[2]["tags"]["byok-kind"], "EC-P-521");
}

#[test]
fn aes_rotates_in_a_managed_hsm_and_known_material_is_refused() {
    let vault = LocalVault::start(true, "", |_| {});
    let aes = Token::Nss.generate(&["--kty", "oct", "--size", "256"], "rot-aes")["uri"]
        .as_str()
        .expect("uri")
        .to_owned();
    ok_json(&vault.full_transfer(Token::Nss, &aes, "data", &[]), "AES first version");
    assert_eq!(versions(&vault, "data")[0]["tags"]["byok-kind"], "AES-256");
    assert_eq!(
        versions(&vault, "data")[0]["tags"]["byok-kcv"].as_str().map(str::len),
        Some(6)
    );
    let token = Token::Nss.uri();
    let out = ok_json(
        &rotate(
            &vault,
            Token::Nss,
            &["--name", "data", "--generate", "oct:256", "--token", &token],
        ),
        "AES rotate",
    );
    assert_eq!(out["verification"]["result"], "verified", "{out:#}");
    assert_eq!(
        out["rotation"]["previous"],
        serde_json::json!([]),
        "nothing retired unless asked"
    );
    assert_eq!(versions(&vault, "data").len(), 2);
    // The first key again: its check value is in the first version's tags.
    let out = rotate(&vault, Token::Nss, &["--name", "data", "--key", &aes]);
    assert_refused(&out, 5, "(the same AES check value)");
    // Without byok's tag the vault is asked: one block encrypted on both sides.
    let state = vault.state.join("keys/data.json");
    let text = std::fs::read_to_string(&state).expect("state");
    let untagged: Vec<Value> = serde_json::from_str::<Vec<Value>>(&text)
        .expect("JSON")
        .into_iter()
        .map(|mut v| {
            v["tags"].as_object_mut().expect("tags").remove("byok-kcv");
            v
        })
        .collect();
    let vault = vault.restart(|| std::fs::write(&state, serde_json::to_vec(&untagged).expect("JSON")).expect("state"));
    let out = rotate(&vault, Token::Nss, &["--name", "data", "--key", &aes]);
    assert_refused(&out, 5, "(one block encrypts the same on both sides)");
    // An existing AES key that is new to the vault goes in.
    let fresh = Token::Nss.generate(&["--kty", "oct", "--size", "256"], "rot-aes2")["uri"]
        .as_str()
        .expect("uri")
        .to_owned();
    let out = ok_json(
        &rotate(&vault, Token::Nss, &["--name", "data", "--key", &fresh]),
        "AES rotate to an existing key",
    );
    assert_eq!(
        (
            out["verification"]["result"].as_str(),
            out["rotation"]["generated"].as_bool()
        ),
        (Some("verified"), Some(false))
    );
    assert_eq!(versions(&vault, "data").len(), 3);
    // A rotation keeps the key's type, and nothing is generated for a rotation that cannot go ahead.
    let out = rotate(
        &vault,
        Token::Nss,
        &["--name", "data", "--generate", "ec:P-256", "--token", &token],
    );
    assert_refused(&out, 5, "a rotation keeps the key's type");
}

#[test]
fn bad_input_is_refused_clearly_and_writes_nothing() {
    let vault = LocalVault::start(false, "", |_| {});
    let key = Token::Nss.generate(&["--kty", "EC", "--curve", "P-256"], "rot-bad")["uri"]
        .as_str()
        .expect("uri")
        .to_owned();
    ok_json(&vault.full_transfer(Token::Nss, &key, "badin", &[]), "a first version");
    let dir = tempfile::tempdir().expect("tempdir");
    let record = dir.path().join("r.json");
    let rec = record.to_str().expect("path");
    let token = Token::Nss.uri();
    let cases: [(&[&str], i32, &str); 5] = [
        (
            &["--name", "nothing-here", "--generate", "ec:P-256", "--token", &token],
            7,
            "full-transfer --name nothing-here",
        ),
        (
            &["--name", "kek", "--generate", "rsa:2048", "--token", &token],
            5,
            "no version of `kek` was imported by byok",
        ),
        (
            &[
                "--name",
                "badin",
                "--key",
                &key,
                "--from-version",
                "0123456789abcdef0123456789abcdef",
            ],
            2,
            "has no version `0123456789abcdef0123456789abcdef`",
        ),
        (
            &["--name", "badin", "--generate", "rsa:1024", "--token", &token],
            2,
            "`rsa:1024` is not a key byok can generate",
        ),
        (&["--name", "badin", "--generate", "ec:P-256"], 2, "--token"),
    ];
    for (args, code, needle) in cases {
        let mut all = args.to_vec();
        all.extend(["--record", rec]);
        let out = rotate(&vault, Token::Nss, &all);
        assert_refused(&out, code, needle);
        assert!(!record.exists(), "{args:?}: no record written");
        assert_eq!(vault.versions("badin"), 1, "{args:?}: no version added");
    }
    let listed = Token::Nss.json(&["hsm", "list", "--token", &token]);
    let text = listed.to_string();
    assert!(
        !text.contains("\"badin-"),
        "no key generated for a refused rotation: {text}"
    );
}
