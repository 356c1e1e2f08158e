//! A vault URL from an untrusted source: a fake vault (a small HTTPS server on loopback, started here) asks for an
//! ARM token, redirects to plain HTTP, never answers, trickles, sends 50 MB or a captive portal's page; a proxy that
//! cannot be reached. byok must refuse each, say why, and send nothing it should not.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use byok_tests::fake::{FakeVault, Reply, Seen};
use byok_tests::{assert_refused, byok_cli, stderr, testdata};
use serde_json::{Value, json};

const SECRET: &str = "fake-client-secret-0123456789";
const VERSION: &str = "0123456789abcdef0123456789abcdef";

/// The KEK JSON a vault at `url` answers with (a real 2048-bit public key from testdata).
fn kek_answer(kid_base: &str) -> Value {
    let pem = std::fs::read(testdata("keys/kek-rsa2048.spki.pem")).expect("testdata");
    let kek = byok_encoding::KekPublicKey::parse(&pem).expect("KEK");
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    json!({
        "key": {
            "kid": format!("{kid_base}/keys/kek/{VERSION}"),
            "kty": "RSA-HSM", "key_ops": ["import"],
            "n": b64(kek.modulus()), "e": b64(kek.exponent()),
        },
        "attributes": {"enabled": true, "created": 1_700_000_000, "updated": 1_700_000_000},
    })
}

/// How many requests reached the fake vault with a token (the tries after the challenge).
fn authorized_tries(fake: &FakeVault) -> usize {
    fake.seen()
        .iter()
        .filter(|s| s.header("authorization").is_some())
        .count()
}

fn is_token_request(s: &Seen) -> bool {
    s.path.contains("/oauth2/v2.0/token")
}

/// A vault that authenticates like Key Vault (challenge naming `resource`, its own token endpoint) and then
/// answers every authorized request with `authorized`.
fn vault(
    names: &[&str],
    resource: &'static str,
    authorized: impl Fn(&Seen, &str) -> Reply + Send + Sync + 'static,
) -> FakeVault {
    let authority = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let base = authority.clone();
    let fake = FakeVault::https(names, move |s| {
        let url = base.get().cloned().unwrap_or_default();
        if is_token_request(s) {
            Reply::token()
        } else if s.header("authorization").is_none() {
            Reply::challenge(&url, resource)
        } else {
            authorized(s, &url)
        }
    });
    authority.set(fake.url.clone()).expect("set once");
    fake
}

/// `byok-cli ARGS --vault-url URL --ca-file CA` with client-secret settings pointing at `authority`.
fn cli(url: &str, fake: &FakeVault, authority: &str, args: &[&str]) -> Command {
    let mut cmd = byok_cli();
    cmd.args(args)
        .args(["--vault-url", url, "--ca-file"])
        .arg(&fake.ca_file)
        .env("AZURE_TENANT_ID", "tenant")
        .env("AZURE_CLIENT_ID", "client")
        .env("AZURE_CLIENT_SECRET", SECRET)
        .env("AZURE_AUTHORITY_HOST", authority)
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy");
    cmd
}

/// Runs a command, killing it after `limit` (a hang must fail the test, not stall it).
fn run_for(cmd: &mut Command, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    (out, started.elapsed())
}

fn download(fake: &FakeVault, url: &str, dir: &Path, extra: &[&str]) -> (Output, Duration) {
    let file = dir.join("kek.pem");
    let mut args = vec![
        "kek",
        "download",
        "--name",
        "kek",
        "--file",
        file.to_str().expect("utf-8"),
    ];
    args.extend(extra);
    run_for(&mut cli(url, fake, &fake.url, &args), Duration::from_secs(60))
}

/// This machine's own name, if it resolves to loopback: a host byok cannot tell from a remote one by its name.
fn own_name() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let name = name.trim().to_owned();
    let loopback = std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), 443))
        .map(|mut a| a.any(|a| a.ip().is_loopback()))
        .unwrap_or(false);
    assert!(
        loopback,
        "the test needs the host name `{name}` to resolve to loopback (it does in /etc/hosts here)"
    );
    name
}

#[test]
fn the_fake_vault_serves_a_genuine_looking_kek() {
    // The control: with the Key Vault audience, the same fake works — what the other tests refuse is the hostility.
    let fake = vault(&[], "https://vault.azure.net", |_, url| {
        Reply::json(200, &kek_answer(url))
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, _) = download(&fake, &fake.url, dir.path(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("kek.pem").is_file());
    let token = fake
        .seen()
        .into_iter()
        .find(is_token_request)
        .expect("a token was asked for");
    assert!(
        token.text().contains("scope=https%3A%2F%2Fvault.azure.net%2F.default"),
        "{}",
        token.text()
    );
}

#[test]
fn no_token_for_a_resource_that_is_not_key_vault() {
    for resource in [
        "https://management.azure.com",
        "https://graph.microsoft.com",
        "https://vault.azure.net.evil.com",
    ] {
        let resource: &'static str = Box::leak(resource.to_owned().into_boxed_str());
        let fake = vault(&[], resource, |_, url| Reply::json(200, &kek_answer(url)));
        let dir = tempfile::tempdir().expect("tempdir");
        let (out, _) = download(&fake, &fake.url, dir.path(), &[]);
        assert_refused(&out, 7, "which is not a Key Vault or Managed HSM audience");
        assert!(stderr(&out).contains("check the vault URL"), "{}", stderr(&out));
        let seen = fake.seen();
        assert!(
            !seen.iter().any(is_token_request),
            "{resource}: a token was requested: {seen:?}"
        );
        assert!(
            !seen.iter().any(|s| s.header("authorization").is_some()),
            "{resource}: a token was sent"
        );
        assert!(!dir.path().join("kek.pem").exists());
    }
}

#[test]
fn a_remote_host_must_lie_in_the_audience_domain() {
    // `vm` (this machine's name) is not recognisably loopback by name: byok treats it as remote, so a challenge for
    // https://vault.azure.net from it is refused (the SDK's domain check stays on). A trailing dot changes nothing.
    let name = own_name();
    for host in [name.clone(), format!("{}.", name.to_uppercase())] {
        let fake = vault(&[&name], "https://vault.azure.net", |_, url| {
            Reply::json(200, &kek_answer(url))
        });
        let url = format!("https://{host}:{}", fake.port);
        let dir = tempfile::tempdir().expect("tempdir");
        let (out, _) = download(&fake, &url, dir.path(), &[]);
        assert_refused(&out, 7, "doesn't match the requested domain");
        assert!(
            !fake.seen().iter().any(is_token_request),
            "{host}: a token was requested"
        );
        assert!(
            !fake.seen().iter().any(|s| s.header("authorization").is_some()),
            "{host}: a token was sent"
        );
    }
}

#[test]
fn redirects_are_not_followed() {
    let plain = FakeVault::plain(|_| Reply::json(200, &json!({})));
    let target = format!("{}/keys/kek/{VERSION}", plain.url);
    // A 302 on the KEK read.
    let to = target.clone();
    let fake = vault(&[], "https://vault.azure.net", move |_, _| Reply::redirect(302, &to));
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, _) = download(&fake, &fake.url, dir.path(), &[]);
    assert_refused(&out, 7, "a redirect to http://127.0.0.1");
    assert!(
        !dir.path().join("kek.pem").exists(),
        "a KEK served elsewhere was written"
    );

    // A 307 on the token request: the client secret must not follow it.
    let to = target.clone();
    let fake = FakeVault::https(&[], move |s| {
        if is_token_request(s) {
            Reply::redirect(307, &to)
        } else {
            Reply::challenge("https://placeholder.invalid", "https://vault.azure.net")
        }
    });
    let file = dir.path().join("kek.pem");
    let file = file.to_str().expect("utf-8");
    let mut cmd = cli(
        &fake.url,
        &fake,
        &fake.url,
        &["kek", "download", "--name", "kek", "--file", file],
    );
    let (out, _) = run_for(&mut cmd, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(stderr(&out).contains("redirect"), "{}", stderr(&out));

    // A 307 on the import: the blob must not follow it.
    let to = target.clone();
    let importer = vault(&[], "https://vault.azure.net", move |s, url| {
        if s.method == "PUT" {
            Reply::redirect(307, &to)
        } else {
            Reply::json(200, &kek_answer(url))
        }
    });
    let blob = blob_for(&importer.url, dir.path());
    let blob = blob.to_str().expect("utf-8");
    let args = ["import", "--name", "target", "--kty", "RSA", "--byok-file", blob];
    let mut cmd = cli(&importer.url, &importer, &importer.url, &args);
    let (out, _) = run_for(&mut cmd, Duration::from_secs(60));
    assert_refused(&out, 7, "redirect");
    assert!(
        importer.seen().iter().any(|s| s.method == "PUT"),
        "the import was sent to the fake vault"
    );
    assert!(
        plain.seen().is_empty(),
        "something was re-sent over plain HTTP: {:?}",
        plain.seen()
    );
}

/// A `.byok` file for the testdata KEK naming `kid_base`'s KEK (wrapped in software).
fn blob_for(kid_base: &str, dir: &Path) -> std::path::PathBuf {
    let out = dir.join("target.byok");
    let kid = format!("{kid_base}/keys/kek/{VERSION}");
    let status = byok_cli()
        .args(["wrap", "--allow-software-key", "--force", "--kek-file"])
        .arg(testdata("keys/kek-rsa2048.spki.pem"))
        .args(["--kek-kid", &kid, "--key-file"])
        .arg(testdata("keys/rsa2048.pkcs8.pem"))
        .arg("--out")
        .arg(&out)
        .output()
        .expect("wrap runs");
    assert!(status.status.success(), "{}", stderr(&status));
    out
}

#[test]
fn a_vault_that_never_answers_times_out_and_says_which_limit() {
    let fake = vault(&[], "https://vault.azure.net", |_, _| Reply::Hang);
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, took) = download(
        &fake,
        &fake.url,
        dir.path(),
        &["--read-timeout", "1", "--request-timeout", "30"],
    );
    assert_refused(&out, 7, "--read-timeout");
    // Three tries (two quick retries), each 1 s of silence, and the waits between them.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let tries = authorized_tries(&fake);
    assert_eq!(tries, 3, "a read that timed out is retried twice");

    let fake = vault(&[], "https://vault.azure.net", |_, _| Reply::Trickle {
        every: Duration::from_millis(200),
    });
    let (out, took) = download(
        &fake,
        &fake.url,
        dir.path(),
        &["--read-timeout", "5", "--request-timeout", "2"],
    );
    assert_refused(&out, 7, "--request-timeout");
    assert!(took < Duration::from_secs(25), "took {took:?}");
}

#[test]
fn a_huge_answer_is_refused_unread() {
    let big = vec![b' '; 50 * 1024 * 1024];
    let fake = vault(&[], "https://vault.azure.net", move |_, _| Reply::Http {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: big.clone(),
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, _) = download(&fake, &fake.url, dir.path(), &[]);
    assert_refused(&out, 7, "larger than 1048576 bytes");
    assert!(stderr(&out).contains("not a Key Vault answer"), "{}", stderr(&out));
}

#[test]
fn a_captive_portal_is_not_retried_and_a_server_error_briefly() {
    let fake = vault(&[], "https://vault.azure.net", |_, _| Reply::Http {
        status: 200,
        headers: vec![("content-type".into(), "text/html".into())],
        body: b"<html>Please log in to the hotel Wi-Fi</html>".to_vec(),
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, took) = download(&fake, &fake.url, dir.path(), &[]);
    assert_refused(&out, 7, "not a Key Vault answer");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let tries = authorized_tries(&fake);
    assert_eq!(tries, 1, "an answer that is not Key Vault's is not asked for again");

    let fake = vault(&[], "https://vault.azure.net", |_, _| {
        Reply::json(500, &json!({"error": {"code": "InternalError", "message": "oops"}}))
    });
    let (out, _) = download(&fake, &fake.url, dir.path(), &[]);
    assert_refused(&out, 7, "HTTP 500");
    let tries = authorized_tries(&fake);
    assert_eq!(
        tries, 3,
        "a server error gets two quick retries, as docs/cli/kek.md says"
    );
}

#[test]
fn an_unreachable_proxy_is_named() {
    // A vault reached by name (not recognisably loopback) goes through HTTPS_PROXY, which nothing listens on.
    let name = own_name();
    let fake = vault(&[&name], "https://vault.azure.net", |_, url| {
        Reply::json(200, &kek_answer(url))
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("https://{name}:{}", fake.port);
    let file = dir.path().join("kek.pem");
    let mut cmd = cli(
        &url,
        &fake,
        &fake.url,
        &[
            "kek",
            "download",
            "--name",
            "kek",
            "--file",
            file.to_str().expect("utf-8"),
        ],
    );
    cmd.env("HTTPS_PROXY", "http://127.0.0.1:9");
    let (out, _) = run_for(&mut cmd, Duration::from_secs(60));
    assert_refused(&out, 7, "through the proxy http://127.0.0.1:9 (from HTTPS_PROXY)");
}

#[test]
fn a_kek_of_another_vault_or_name_is_not_used() {
    // The fake vault answers the KEK read with a KEK whose kid names another vault (then another key): full-transfer
    // and batch refuse it before anything is wrapped to it or sent.
    let label = format!("other-kek-{}", std::process::id());
    let key = byok_tests::hsm::Token::Nss.generate(&["--kty", "EC", "--curve", "P-256"], &label);
    let uri = key["uri"].as_str().expect("uri").to_owned();
    for (kid_base, name) in [("https://fabrikam.vault.azure.net", "kek"), ("", "other")] {
        let fake = vault(&[], "https://vault.azure.net", move |_, url| {
            let base = if kid_base.is_empty() {
                url.to_owned()
            } else {
                kid_base.to_owned()
            };
            let mut answer = kek_answer(&base);
            if name != "kek" {
                answer["key"]["kid"] = format!("{base}/keys/{name}/{VERSION}").into();
            }
            Reply::json(200, &answer)
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let manifest = dir.path().join("m.toml");
        std::fs::write(&manifest, format!("[[key]]\nuri = \"{uri}\"\nname = \"target\"\n")).expect("manifest");
        let manifest = manifest.display().to_string();
        let transfer = ["full-transfer", "--kek-name", "kek", "--name", "target", "--key", &uri];
        let batch = ["batch", "--kek-name", "kek", "--manifest", &manifest];
        for args in [&transfer[..], &batch[..]] {
            let token = byok_tests::hsm::Token::Nss.command(&[]);
            let mut cmd = cli(&fake.url, &fake, &fake.url, args);
            cmd.args(token.get_args());
            let (out, _) = run_for(&mut cmd, Duration::from_secs(60));
            assert_refused(&out, 5, "a key of another vault or name");
            assert!(
                !fake.seen().iter().any(|s| s.method != "GET" && !is_token_request(s)),
                "{:?}",
                fake.seen()
            );
        }
    }
}

#[test]
fn a_next_link_elsewhere_is_not_followed_and_gets_no_token() {
    // `status` pages through the listing; a vault whose nextLink points at another host (here a plain listener that
    // records what reaches it) would collect the access token if the link were followed as the SDK's pager does.
    let elsewhere = FakeVault::plain(|_| Reply::json(200, &json!({"value": [], "nextLink": null})));
    let next = format!("{}/keys?api-version=7.5&$skiptoken=1", elsewhere.url);
    for link in [
        next.clone(),
        "https://login.microsoftonline.com.evil.example/keys".into(),
        "/keys/../../x".into(),
    ] {
        let fake = vault(&[], "https://vault.azure.net", move |_, url| {
            let item = json!({"kid": format!("{url}/keys/app"), "attributes": {"enabled": true}});
            Reply::json(200, &json!({"value": [item], "nextLink": link}))
        });
        let mut cmd = cli(&fake.url, &fake, &fake.url, &["status"]);
        let (out, _) = run_for(&mut cmd, Duration::from_secs(60));
        assert_refused(
            &out,
            7,
            "byok does not follow it (it would carry the access token there)",
        );
        assert_eq!(authorized_tries(&fake), 1, "one page asked for, no retry of a refusal");
    }
    assert!(elsewhere.seen().is_empty(), "nothing reached the other host");
    // A listed kid of another vault is refused too (its name would reach the terminal and the inventory).
    let fake = vault(&[], "https://vault.azure.net", |_, _| {
        let item = json!({"kid": "https://other.vault.azure.net/keys/app", "attributes": {}});
        Reply::json(200, &json!({"value": [item], "nextLink": null}))
    });
    let mut cmd = cli(&fake.url, &fake, &fake.url, &["status"]);
    let (out, _) = run_for(&mut cmd, Duration::from_secs(60));
    assert_refused(&out, 7, "is not a key of");
}
