//! The local Key Vault over real HTTPS: authentication like Entra + Key Vault, and a BYOK import that refuses
//! every bad blob with a precise message — and keeps serving, losing nothing.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use byok_blob::{ByokBlob, KeyId};
use byok_emulator::{Config, Info, Running};
use byok_encoding::{KekPublicKey, TargetKey};
use byok_wrap::KekEncryptor;
use serde_json::{Value, json};

fn testdata(name: &str) -> Vec<u8> {
    byok_testdata::read(&format!("keys/{name}"))
}

struct Vault {
    running: Running,
    client: reqwest::Client,
    token: String,
}

fn client(info: &Info) -> reqwest::Client {
    let ca = std::fs::read(&info.ca_file).expect("ca.pem");
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("CA")])
        .build()
        .expect("client")
}

async fn token_response(info: &Info, client: &reqwest::Client, secret: &str, scope: &str) -> (u16, Value) {
    let r = client
        .post(format!("{}/{}/oauth2/v2.0/token", info.authority_host, info.tenant_id))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", info.client_id.as_str()),
            ("client_secret", secret),
            ("scope", scope),
        ])
        .send()
        .await
        .expect("token request");
    (r.status().as_u16(), r.json().await.expect("JSON"))
}

async fn start(config: Config) -> Vault {
    let running = byok_emulator::start(config).await.expect("starts");
    let client = client(&running.info);
    let scope = format!("{}/.default", running.info.audience);
    let (status, body) = token_response(&running.info, &client, &running.info.client_secret, &scope).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().expect("token").to_owned();
    Vault { running, client, token }
}

impl Vault {
    fn url(&self, path: &str) -> String {
        format!("{}{path}?api-version=7.5", self.running.info.vault_url)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Vec<u8>>) -> (u16, Value) {
        let mut req = self.client.request(method, self.url(path)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn create(&self, name: &str, body: Value) -> Value {
        let (s, v) = self
            .call(
                reqwest::Method::POST,
                &format!("/keys/{name}/create"),
                Some(body.to_string().into()),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }

    async fn import(&self, name: &str, body: &Value) -> (u16, Value) {
        self.call(
            reqwest::Method::PUT,
            &format!("/keys/{name}"),
            Some(body.to_string().into_bytes()),
        )
        .await
    }
}

impl Vault {
    /// Creates an import-only RSA-HSM KEK and returns its public key and versioned id.
    async fn kek(&self, name: &str, bits: u32) -> (KekPublicKey, KeyId) {
        kek_of(
            &self
                .create(name, json!({"kty": "RSA-HSM", "key_size": bits, "key_ops": ["import"]}))
                .await,
        )
    }
}

fn kek_of(bundle: &Value) -> (KekPublicKey, KeyId) {
    let kek = KekPublicKey::from_jwk_json(bundle.to_string().as_bytes()).expect("KEK JWK");
    let kid = KeyId::parse(bundle["key"]["kid"].as_str().expect("kid")).expect("kid");
    (kek, kid)
}

fn blob(kek: &KekPublicKey, kid: &KeyId, plaintext: &[u8]) -> Vec<u8> {
    let ct = KekEncryptor::new(kek).expect("KEK").wrap(plaintext).expect("wraps");
    ByokBlob::new(kid.clone(), ct, "byok-emulator tests").to_json()
}

fn import_body(kty: &str, crv: Option<&str>, ops: &[&str], file: &[u8]) -> Value {
    let mut key = json!({ "kty": kty, "key_ops": ops, "key_hsm": URL_SAFE_NO_PAD.encode(file) });
    if let Some(c) = crv {
        key["crv"] = c.into();
    }
    json!({ "key": key, "attributes": { "enabled": true } })
}

#[tokio::test]
async fn authentication_like_entra_and_key_vault() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::new(dir.path().to_path_buf());
    config.token_lifetime = Duration::from_secs(1);
    let vault = start(config).await;
    let info = vault.running.info.clone();

    // No token: the challenge names the authority and the resource.
    let r = vault.client.get(vault.url("/keys/x")).send().await.expect("request");
    assert_eq!(r.status().as_u16(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().expect("header").to_owned();
    assert_eq!(
        challenge,
        format!(
            "Bearer authorization=\"{}/{}\", resource=\"https://vault.azure.net\"",
            info.authority_host, info.tenant_id
        )
    );
    // Forged token.
    let r = vault
        .client
        .get(vault.url("/keys/x"))
        .bearer_auth("forged")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 401);
    let v: Value = r.json().await.expect("JSON");
    assert_eq!(
        v["error"]["message"],
        "AKV10032: Invalid token: the access token is not one this vault's tenant issued for its audience."
    );
    // Wrong secret, wrong audience, wrong tenant, wrong grant.
    let (s, v) = token_response(&info, &vault.client, "wrong", "https://vault.azure.net/.default").await;
    assert_eq!((s, v["error"].as_str()), (401, Some("invalid_client")));
    let (s, v) = token_response(
        &info,
        &vault.client,
        &info.client_secret,
        "https://managedhsm.azure.net/.default",
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_scope")));
    let r = vault
        .client
        .post(format!("{}/other-tenant/oauth2/v2.0/token", info.authority_host))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 400);
    // Expired token.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, v) = vault.call(reqwest::Method::GET, "/keys/x", None).await;
    assert_eq!(s, 401);
    assert_eq!(
        v["error"]["message"],
        "AKV10032: Invalid token: the access token has expired."
    );
    // api-version.
    let vault = start(Config::new(dir.path().to_path_buf())).await;
    let r = vault
        .client
        .get(format!("{}/keys/x?api-version=1.0", vault.running.info.vault_url))
        .bearer_auth(&vault.token)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.expect("JSON");
    assert_eq!(v["error"]["code"], "BadParameter");
    vault.running.shutdown().await.expect("stops");
}

#[tokio::test]
async fn byok_import_refuses_precisely_and_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = start(Config::new(dir.path().to_path_buf())).await;
    let (kek, kid) = vault.kek("kek", 2048).await;
    let (other, _) = vault.kek("other", 2048).await;
    let not_kek = vault
        .create(
            "not-kek",
            json!({"kty": "RSA-HSM", "key_size": 2048, "key_ops": ["wrapKey", "unwrapKey"]}),
        )
        .await;
    let (_, not_kek_kid) = kek_of(&not_kek);

    let ec = TargetKey::from_private_key_file(&testdata("ec-p256.pkcs8.pem")).expect("EC key");
    let rsa = TargetKey::from_private_key_file(&testdata("rsa2048.pkcs8.der")).expect("RSA key");
    // byok itself refuses a 1024-bit key, so its PKCS#8 is taken straight from the PEM to see the vault refuse it.
    let rsa1024 = {
        let pem = String::from_utf8(testdata("rsa1024.pkcs8.pem")).expect("pem");
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD.decode(body).expect("der")
    };
    let good = blob(&kek, &kid, ec.plaintext());
    // The good one goes in.
    let (s, v) = vault
        .import(
            "good",
            &import_body("EC-HSM", Some("P-256"), &["sign", "verify"], &good),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["key"]["crv"], "P-256");

    let kid_of = |name: &str, version: &str| {
        KeyId::parse(&format!("{}/keys/{name}/{version}", vault.running.info.vault_url)).expect("kid")
    };
    let mut wrong_enc: Value = serde_json::from_slice(&good).expect("json");
    wrong_enc["header"]["enc"] = "RSA-OAEP".into();
    let mut kwp_flip = KekEncryptor::new(&kek)
        .expect("KEK")
        .wrap(ec.plaintext())
        .expect("wraps");
    let last = kwp_flip.len() - 1;
    kwp_flip[last] ^= 1;
    let mut trailing = ec.plaintext().to_vec();
    trailing.push(0);
    let foreign =
        KeyId::parse("https://contoso.vault.azure.net/keys/kek/0123456789abcdef0123456789abcdef").expect("kid");

    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "key_hsm not base64",
            json!({"key": {"kty": "EC-HSM", "crv": "P-256", "key_hsm": "not base64!"}}),
            "The property 'key.key_hsm' is not base64url",
        ),
        (
            "wrong enc",
            import_body("EC-HSM", Some("P-256"), &["sign"], wrong_enc.to_string().as_bytes()),
            "The BYOK blob in key.key_hsm is invalid: header.enc is `RSA-OAEP`",
        ),
        (
            "kid of another vault",
            import_body(
                "EC-HSM",
                Some("P-256"),
                &["sign"],
                &blob(&kek, &foreign, ec.plaintext()),
            ),
            "is in another vault (https://contoso.vault.azure.net)",
        ),
        (
            "KEK with other ops",
            import_body(
                "EC-HSM",
                Some("P-256"),
                &["sign"],
                &blob(&kek, &not_kek_kid, ec.plaintext()),
            ),
            "is not a Key Exchange Key: it is RSA-HSM with key_ops [\"wrapKey\", \"unwrapKey\"]",
        ),
        (
            "missing KEK",
            import_body(
                "EC-HSM",
                Some("P-256"),
                &["sign"],
                &blob(&kek, &kid_of("nope", kid.version()), ec.plaintext()),
            ),
            "does not exist in this vault",
        ),
        (
            "missing KEK version",
            import_body(
                "EC-HSM",
                Some("P-256"),
                &["sign"],
                &blob(&kek, &kid_of("kek", "0123456789abcdef0123456789abcdef"), ec.plaintext()),
            ),
            "does not exist in this vault",
        ),
        (
            "blob for another KEK",
            import_body("EC-HSM", Some("P-256"), &["sign"], &blob(&other, &kid, ec.plaintext())),
            "cannot be opened with the KEK",
        ),
        (
            "KWP integrity",
            import_body(
                "EC-HSM",
                Some("P-256"),
                &["sign"],
                &ByokBlob::new(kid.clone(), kwp_flip, "t").to_json(),
            ),
            "AES key wrap integrity check failed",
        ),
        (
            "PKCS#8 with trailing bytes",
            import_body("EC-HSM", Some("P-256"), &["sign"], &blob(&kek, &kid, &trailing)),
            "is not a valid EC-HSM key: PKCS#8 PrivateKeyInfo is malformed",
        ),
        (
            "RSA-1024 target",
            import_body("RSA-HSM", None, &["sign"], &blob(&kek, &kid, &rsa1024)),
            "is not a valid RSA-HSM key: the target key is RSA-1024",
        ),
        (
            "oct-HSM in a Key Vault",
            import_body("oct-HSM", None, &["encrypt"], &blob(&kek, &kid, &[7; 32])),
            "symmetric keys can be imported only into a Managed HSM",
        ),
        (
            "EC with wrapKey",
            import_body("EC-HSM", Some("P-256"), &["sign", "wrapKey"], &good),
            "EC keys support only the sign and verify operations",
        ),
        (
            "kty contradicts the blob",
            import_body("EC-HSM", Some("P-256"), &["sign"], &blob(&kek, &kid, rsa.plaintext())),
            "is not a valid EC-HSM key: the target key is RSA-2048, but EC was asked for",
        ),
        (
            "crv contradicts the blob",
            import_body("EC-HSM", Some("P-384"), &["sign"], &good),
            "key.crv is 'P-384', but the key unwrapped from the BYOK blob is on P-256",
        ),
        (
            "software kty",
            import_body("EC", Some("P-256"), &["sign"], &good),
            "use kty 'EC-HSM', not 'EC'",
        ),
        (
            "JWK missing a component",
            json!({"key": {"kty": "RSA", "n": "AQAB", "e": "AQAB", "d": "AQAB"}}),
            "The property 'key.p' is required to import a RSA key.",
        ),
        (
            "JWK point not of the scalar",
            json!({"key": {"kty": "EC", "crv": "P-256", "d": URL_SAFE_NO_PAD.encode([1u8; 32]),
                "x": URL_SAFE_NO_PAD.encode([2u8; 32]), "y": URL_SAFE_NO_PAD.encode([3u8; 32])}}),
            "The key in 'key' is not a valid EC key: the target key is inconsistent",
        ),
    ];
    for (name, body, expect) in &cases {
        let (s, v) = vault.import("refused", body).await;
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (400, Some("BadParameter")),
            "{name}: {v}"
        );
        assert!(message.contains(expect), "{name}: `{message}` lacks `{expect}`");
    }
    // Malformed JSON and an oversized body.
    let (s, v) = vault
        .call(reqwest::Method::PUT, "/keys/refused", Some(b"{not json".to_vec()))
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("The request body is not valid JSON"))
    );
    let (s, _) = vault
        .call(reqwest::Method::PUT, "/keys/refused", Some(vec![b' '; 300 * 1024]))
        .await;
    assert_eq!(s, 413);

    // Nothing was stored for the refused imports, and the vault still serves.
    let (s, _) = vault.call(reqwest::Method::GET, "/keys/refused", None).await;
    assert_eq!(s, 404);
    let (s, v) = vault.call(reqwest::Method::GET, "/keys/good/", None).await;
    assert_eq!(s, 200, "{v}");
    vault.running.shutdown().await.expect("stops");
}

#[tokio::test]
async fn restart_keeps_keys_and_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = start(Config::new(dir.path().to_path_buf())).await;
    let (kek, kid) = vault.kek("kek", 3072).await;
    let rsa = TargetKey::from_private_key_file(&testdata("rsa2048.pkcs8.pem")).expect("RSA key");
    let (s, before) = vault
        .import(
            "app",
            &import_body("RSA-HSM", None, &["sign", "verify"], &blob(&kek, &kid, rsa.plaintext())),
        )
        .await;
    assert_eq!(s, 200, "{before}");
    let info = vault.running.info.clone();
    let old_token = vault.token.clone();
    vault.running.shutdown().await.expect("stops");

    let mut again = Config::new(dir.path().to_path_buf());
    again.listen = info.vault_url.trim_start_matches("https://").parse().expect("addr");
    let mut vault = start(again).await;
    assert_eq!(
        vault.running.info.client_secret, info.client_secret,
        "credentials persist"
    );
    // A token issued before the restart is still good until it expires (clients such as az cache theirs).
    vault.token = old_token;
    let (s, after) = vault.call(reqwest::Method::GET, "/keys/app", None).await;
    assert_eq!(s, 200, "{after}");
    assert_eq!(after["key"]["n"], before["key"]["n"]);
    assert_eq!(after["key"]["kid"], before["key"]["kid"]);
    // The imported key is the source key.
    let Some((n, _)) = rsa.public_key().and_then(byok_encoding::TargetPublicKey::rsa) else {
        panic!("RSA")
    };
    assert_eq!(after["key"]["n"], URL_SAFE_NO_PAD.encode(n));
    for private in [
        "credentials.json",
        "keys/app.json",
        "keys/kek.json",
        "ca.key",
        "tokens.json",
    ] {
        let mode = std::fs::metadata(dir.path().join(private))
            .expect("state file")
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600,
            "{private}"
        );
    }
    vault.running.shutdown().await.expect("stops");
}

#[tokio::test]
async fn managed_hsm_imports_aes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::new(dir.path().to_path_buf());
    config.managed_hsm = true;
    let vault = start(config).await;
    assert_eq!(vault.running.info.audience, "https://managedhsm.azure.net");
    let (kek, kid) = vault.kek("kek", 4096).await;
    let (s, v) = vault
        .import(
            "aes",
            &import_body("oct-HSM", None, &["encrypt", "decrypt"], &blob(&kek, &kid, &[9; 24])),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["key"]["kty"], "oct-HSM");
    let (s, v) = vault
        .import(
            "aes20",
            &import_body("oct-HSM", None, &["encrypt"], &blob(&kek, &kid, &[9; 20])),
        )
        .await;
    assert_eq!(s, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("an AES key must be exactly 16, 24 or 32 bytes")),
        "{v}"
    );
    vault.running.shutdown().await.expect("stops");
}

#[tokio::test]
async fn imported_keys_sign_and_refuse_what_they_may_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = start(Config::new(dir.path().to_path_buf())).await;
    let (kek, kid) = vault.kek("kek", 2048).await;
    let ec = TargetKey::from_private_key_file(&testdata("ec-p256.pkcs8-minimal.der")).expect("EC key");
    let (s, bundle) = vault
        .import(
            "ec",
            &import_body(
                "EC-HSM",
                Some("P-256"),
                &["sign", "verify"],
                &blob(&kek, &kid, ec.plaintext()),
            ),
        )
        .await;
    assert_eq!(s, 200, "{bundle}");
    let version = version_of(&bundle);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"byok");
    let v_ref = &vault;
    let op = |op: &str, body: Value| {
        let path = format!("/keys/ec/{version}/{op}");
        let bytes = body.to_string().into_bytes();
        async move { v_ref.call(reqwest::Method::POST, &path, Some(bytes)).await }
    };
    let (s, signed) = op(
        "sign",
        json!({"alg": "ES256", "value": URL_SAFE_NO_PAD.encode(digest.as_ref())}),
    )
    .await;
    assert_eq!(s, 200, "{signed}");
    let sig = URL_SAFE_NO_PAD
        .decode(signed["value"].as_str().expect("sig"))
        .expect("b64");
    assert_eq!(sig.len(), 64, "JWS r||s");
    // The source key's public half (the HSM layout carries no point; byok derived it) verifies the vault's signature.
    let Some((_, point)) = ec.public_key().and_then(byok_encoding::TargetPublicKey::ec) else {
        panic!("EC")
    };
    aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED, point)
        .verify_digest(&digest, &sig)
        .expect("the source public key verifies the vault's signature");
    let mut bad = sig.clone();
    bad[10] ^= 1;
    let verify = |s: &[u8]| json!({"alg": "ES256", "digest": URL_SAFE_NO_PAD.encode(digest.as_ref()), "value": URL_SAFE_NO_PAD.encode(s)});
    assert_eq!(op("verify", verify(&sig)).await.1["value"], true);
    assert_eq!(op("verify", verify(&bad)).await.1["value"], false);

    let (s, v) = op(
        "sign",
        json!({"alg": "ES384", "value": URL_SAFE_NO_PAD.encode([0u8; 48])}),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["message"], "The algorithm ES384 needs a P-384 key.");
    let (s, v) = op(
        "sign",
        json!({"alg": "ES256", "value": URL_SAFE_NO_PAD.encode([0u8; 20])}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["message"].as_str()),
        (400, Some("The digest for ES256 must be 32 bytes, not 20."))
    );
    let (s, v) = op(
        "sign",
        json!({"alg": "RS256", "value": URL_SAFE_NO_PAD.encode(digest.as_ref())}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["message"].as_str()),
        (400, Some("The algorithm RS256 does not suit a EC-HSM key."))
    );
    let (s, v) = op("decrypt", json!({"alg": "RSA-OAEP", "value": "AA"})).await;
    assert_eq!(s, 403, "{v}");
    // The KEK may do nothing but import.
    let path = format!("/keys/kek/{}/sign", kid.version());
    let (s, v) = vault
        .call(
            reqwest::Method::POST,
            &path,
            Some(
                json!({"alg": "RS256", "value": URL_SAFE_NO_PAD.encode(digest.as_ref())})
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await;
    assert_eq!(
        (s, v["error"]["message"].as_str()),
        (403, Some("Operation sign is not permitted on this key."))
    );
    vault.running.shutdown().await.expect("stops");
}

#[tokio::test]
async fn faults_behave_as_documented() {
    let dir = tempfile::tempdir().expect("tempdir");
    let with = |spec: &str| {
        let mut c = Config::new(dir.path().to_path_buf());
        c.faults = spec.parse().expect("fault spec");
        c
    };
    // Throttled: 429 with Retry-After; the token endpoint is not affected (start() got a token).
    let vault = start(with("429=1,retry-after=7")).await;
    let r = vault
        .client
        .get(vault.url("/keys/x"))
        .bearer_auth(&vault.token)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    vault.running.shutdown().await.expect("stops");

    let vault = start(with("503=1")).await;
    let (s, v) = vault.call(reqwest::Method::GET, "/keys/x", None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (503, Some("ServiceUnavailable")));
    vault.running.shutdown().await.expect("stops");

    // Dropped: the key is created, but the client never gets the answer.
    let vault = start(with("drop=1,latency=20ms")).await;
    let r = vault
        .client
        .post(vault.url("/keys/ghost/create"))
        .bearer_auth(&vault.token)
        .header("content-type", "application/json")
        .body(json!({"kty": "RSA-HSM", "key_size": 2048, "key_ops": ["import"]}).to_string())
        .send()
        .await;
    let outcome = match r {
        Ok(resp) => resp.text().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(outcome.is_err(), "the client must not receive a complete answer");
    vault.running.shutdown().await.expect("stops");
    let vault = start(Config::new(dir.path().to_path_buf())).await;
    let (s, v) = vault.call(reqwest::Method::GET, "/keys/ghost", None).await;
    assert_eq!(s, 200, "the request was processed before the connection broke: {v}");
    vault.running.shutdown().await.expect("stops");

    // Access revoked after two imports: reads go on until then, then every request is 403 without Retry-After.
    let vault = start(with("forbid-after=2")).await;
    let (kek, kid) = vault.kek("kek", 2048).await;
    let ec = TargetKey::from_private_key_file(&testdata("ec-p256.pkcs8.pem")).expect("EC key");
    let body = import_body("EC-HSM", Some("P-256"), &["sign"], &blob(&kek, &kid, ec.plaintext()));
    assert_eq!(vault.import("a", &body).await.0, 200);
    assert_eq!(vault.call(reqwest::Method::GET, "/keys/a", None).await.0, 200);
    assert_eq!(vault.import("b", &body).await.0, 200);
    let r = vault
        .client
        .get(vault.url("/keys/a"))
        .bearer_auth(&vault.token)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.headers().get("retry-after").is_none(), "a refusal, not a pause");
    let (s, v) = vault.import("c", &body).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("Forbidden")));
    assert_eq!(vault.running.observations().faults_injected(), 2);
    vault.running.shutdown().await.expect("stops");
    let vault = start(Config::new(dir.path().to_path_buf())).await;
    assert_eq!(
        vault.call(reqwest::Method::GET, "/keys/c", None).await.0,
        404,
        "the refused import did nothing"
    );
    vault.running.shutdown().await.expect("stops");
}

#[tokio::test]
async fn versions_update_delete_recover_purge() {
    use reqwest::Method;
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = start(Config::new(dir.path().to_path_buf())).await;
    let first = vault
        .create(
            "k",
            json!({"kty": "EC-HSM", "crv": "P-384", "key_ops": ["sign", "verify"]}),
        )
        .await;
    let second = vault
        .create(
            "k",
            json!({"kty": "EC-HSM", "crv": "P-384", "key_ops": ["sign"], "tags": {"a": "1"}}),
        )
        .await;
    let (s, v) = vault.call(Method::GET, "/keys", None).await;
    assert_eq!(s, 200, "{v}");
    let listed: Vec<&str> = v["value"]
        .as_array()
        .expect("list")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid"))
        .collect();
    assert_eq!(listed, [format!("{}/keys/k", vault.running.info.vault_url)]);
    let (s, v) = vault.call(Method::GET, "/keys/k/versions", None).await;
    assert_eq!(s, 200, "{v}");
    let kids: Vec<&str> = v["value"]
        .as_array()
        .expect("list")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid"))
        .collect();
    assert_eq!(
        kids,
        [
            first["key"]["kid"].as_str().expect("kid"),
            second["key"]["kid"].as_str().expect("kid")
        ]
    );

    let patch = json!({"attributes": {"enabled": false}, "tags": {"b": "2"}})
        .to_string()
        .into_bytes();
    let (s, v) = vault.call(Method::PATCH, "/keys/k/", Some(patch)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["attributes"]["enabled"].as_bool(), v["tags"]["b"].as_str()),
        (Some(false), Some("2"))
    );
    let kek = vault
        .create(
            "kek",
            json!({"kty": "RSA-HSM", "key_size": 2048, "key_ops": ["import"]}),
        )
        .await;
    let kek_version = kek["key"]["kid"]
        .as_str()
        .expect("kid")
        .rsplit('/')
        .next()
        .expect("v")
        .to_owned();
    let (s, v) = vault
        .call(
            Method::PATCH,
            &format!("/keys/kek/{kek_version}"),
            Some(json!({"key_ops": ["import", "sign"]}).to_string().into_bytes()),
        )
        .await;
    assert_eq!(s, 400, "{v}");

    let (s, v) = vault.call(Method::DELETE, "/keys/k", None).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["recoveryId"].as_str().is_some_and(|r| r.ends_with("/deletedkeys/k")));
    assert_eq!(vault.call(Method::GET, "/keys/k", None).await.0, 404);
    assert_eq!(vault.call(Method::GET, "/deletedkeys/k", None).await.0, 200);
    let again = json!({"kty": "EC-HSM", "crv": "P-256", "key_ops": ["sign"]})
        .to_string()
        .into_bytes();
    let (s, v) = vault.call(Method::POST, "/keys/k/create", Some(again.clone())).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("Conflict")));
    assert_eq!(vault.call(Method::POST, "/deletedkeys/k/recover", None).await.0, 200);
    assert_eq!(vault.call(Method::GET, "/keys/k", None).await.0, 200, "recovered");
    assert_eq!(vault.call(Method::DELETE, "/keys/k", None).await.0, 200);
    assert_eq!(
        vault.call(Method::DELETE, "/deletedkeys/k", None).await.0,
        204,
        "purged"
    );
    assert_eq!(vault.call(Method::GET, "/deletedkeys/k", None).await.0, 404);
    assert_eq!(
        vault.call(Method::POST, "/keys/k/create", Some(again)).await.0,
        200,
        "the name is free again"
    );
    vault.running.shutdown().await.expect("stops");
}

#[tokio::test]
async fn encrypt_decrypt_wrap_unwrap() {
    use reqwest::Method;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::new(dir.path().to_path_buf());
    config.managed_hsm = true;
    let vault = start(config).await;
    let rsa = vault
        .create(
            "rsa",
            json!({"kty": "RSA-HSM", "key_size": 2048, "key_ops": ["encrypt", "decrypt", "wrapKey"]}),
        )
        .await;
    let rsa_v = rsa["key"]["kid"]
        .as_str()
        .expect("kid")
        .rsplit('/')
        .next()
        .expect("v")
        .to_owned();
    let aes = vault
        .create(
            "aes",
            json!({"kty": "oct-HSM", "key_size": 128, "key_ops": ["wrapKey", "unwrapKey"]}),
        )
        .await;
    let aes_v = aes["key"]["kid"]
        .as_str()
        .expect("kid")
        .rsplit('/')
        .next()
        .expect("v")
        .to_owned();
    let op = |path: String, body: Value| {
        let v = &vault;
        async move { v.call(Method::POST, &path, Some(body.to_string().into_bytes())).await }
    };
    let secret = URL_SAFE_NO_PAD.encode([0x5A; 32]);
    for alg in ["RSA-OAEP", "RSA-OAEP-256"] {
        let (s, ct) = op(
            format!("/keys/rsa/{rsa_v}/encrypt"),
            json!({"alg": alg, "value": secret}),
        )
        .await;
        assert_eq!(s, 200, "{ct}");
        let (s, pt) = op(
            format!("/keys/rsa/{rsa_v}/decrypt"),
            json!({"alg": alg, "value": ct["value"]}),
        )
        .await;
        assert_eq!((s, pt["value"].as_str()), (200, Some(secret.as_str())), "{alg}");
    }
    let (s, v) = op(
        format!("/keys/rsa/{rsa_v}/unwrapkey"),
        json!({"alg": "RSA-OAEP", "value": secret}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["message"].as_str()),
        (403, Some("Operation unwrapkey is not permitted on this key."))
    );
    let (s, w) = op(
        format!("/keys/aes/{aes_v}/wrapkey"),
        json!({"alg": "A128KW", "value": secret}),
    )
    .await;
    assert_eq!(s, 200, "{w}");
    let (s, u) = op(
        format!("/keys/aes/{aes_v}/unwrapkey"),
        json!({"alg": "A128KW", "value": w["value"]}),
    )
    .await;
    assert_eq!((s, u["value"].as_str()), (200, Some(secret.as_str())));
    // AES-GCM: the vault draws the IV and returns it with the tag; a wrong AAD fails.
    let gcm_key = vault
        .create(
            "gcm",
            json!({"kty": "oct-HSM", "key_size": 256, "key_ops": ["encrypt", "decrypt"]}),
        )
        .await;
    let gcm_v = gcm_key["key"]["kid"]
        .as_str()
        .expect("kid")
        .rsplit('/')
        .next()
        .expect("v")
        .to_owned();
    let aad = URL_SAFE_NO_PAD.encode(b"context");
    let (s, ct) = op(
        format!("/keys/gcm/{gcm_v}/encrypt"),
        json!({"alg": "A256GCM", "value": secret, "aad": aad}),
    )
    .await;
    assert_eq!(s, 200, "{ct}");
    let back = json!({"alg": "A256GCM", "value": ct["value"], "iv": ct["iv"], "tag": ct["tag"], "aad": aad});
    let (s, pt) = op(format!("/keys/gcm/{gcm_v}/decrypt"), back.clone()).await;
    assert_eq!((s, pt["value"].as_str()), (200, Some(secret.as_str())));
    let mut wrong_aad = back;
    wrong_aad["aad"] = URL_SAFE_NO_PAD.encode(b"other").into();
    let (s, v) = op(format!("/keys/gcm/{gcm_v}/decrypt"), wrong_aad).await;
    assert_eq!(
        (s, v["error"]["message"].as_str()),
        (400, Some("AES-GCM decryption failed: wrong key, IV, tag or AAD."))
    );
    let (s, v) = op(
        format!("/keys/aes/{aes_v}/wrapkey"),
        json!({"alg": "A256KW", "value": secret}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["message"].as_str()),
        (400, Some("The algorithm A256KW needs a 256-bit key."))
    );
    let (s, v) = op(
        format!("/keys/aes/{aes_v}/wrapkey"),
        json!({"alg": "RSA-OAEP", "value": secret}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["message"].as_str()),
        (400, Some("The algorithm RSA-OAEP does not suit a oct-HSM key."))
    );
    vault.running.shutdown().await.expect("stops");
}

#[tokio::test]
async fn listens_on_loopback_only_unless_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::new(dir.path().to_path_buf());
    config.listen = "0.0.0.0:0".parse().expect("addr");
    let err = byok_emulator::start(config).await.expect_err("refused");
    assert_eq!(
        err.to_string(),
        "0.0.0.0 is not a loopback address; pass --allow-remote to listen on it"
    );
}

#[tokio::test]
async fn created_ec_keys_show_their_public_half_and_aes_cbc_matches_ecb() {
    use reqwest::Method;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::new(dir.path().to_path_buf());
    config.managed_hsm = true;
    let vault = start(config).await;
    for (crv, alg) in [
        ("P-256", "ES256"),
        ("P-384", "ES384"),
        ("P-521", "ES512"),
        ("P-256K", "ES256K"),
    ] {
        let name = format!("ec-{}", crv.replace('-', ""));
        let ec = vault
            .create(
                &name,
                json!({"kty": "EC-HSM", "crv": crv, "key_ops": ["sign", "verify"]}),
            )
            .await;
        let x = ec["key"]["x"].as_str().unwrap_or_else(|| panic!("{crv}: no x in {ec}"));
        assert!(!x.is_empty() && ec["key"]["y"].is_string(), "{crv}: {ec}");
        assert_eq!(ec["key"]["crv"], crv);
        let digest = URL_SAFE_NO_PAD.encode(vec![
            7u8;
            if alg == "ES384" {
                48
            } else if alg == "ES512" {
                64
            } else {
                32
            }
        ]);
        let kid = ec["key"]["kid"].as_str().expect("kid").to_owned();
        let version = kid.rsplit('/').next().expect("version");
        let (s, signed) = vault
            .call(
                Method::POST,
                &format!("/keys/{name}/{version}/sign"),
                Some(json!({"alg": alg, "value": digest}).to_string().into_bytes()),
            )
            .await;
        assert_eq!(s, 200, "{crv}: {signed}");
    }
    // AES-CBC with a zero IV over one block is AES-ECB of that block: what byok compares with an HSM.
    // NIST SP 800-38A F.1.5 (ECB-AES256.Encrypt), first block.
    let key = hex::decode("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4").expect("hex");
    let kek = vault.kek("kek", 2048).await;
    let file = blob(&kek.0, &kek.1, &key);
    let (s, v) = vault
        .import("aes", &import_body("oct-HSM", None, &["encrypt", "decrypt"], &file))
        .await;
    assert_eq!(s, 200, "{v}");
    let version = v["key"]["kid"]
        .as_str()
        .expect("kid")
        .rsplit('/')
        .next()
        .expect("v")
        .to_owned();
    let block = hex::decode("6bc1bee22e409f96e93d7e117393172a").expect("hex");
    let (s, out) = vault
        .call(
            Method::POST,
            &format!("/keys/aes/{version}/encrypt"),
            Some(
                json!({"alg": "A256CBC", "iv": URL_SAFE_NO_PAD.encode([0u8; 16]), "value": URL_SAFE_NO_PAD.encode(&block)})
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    let got = URL_SAFE_NO_PAD
        .decode(out["value"].as_str().expect("value"))
        .expect("b64");
    assert_eq!(hex::encode(got), "f3eed1bdb5d2a03c064b5a7e3db181f8");
    let (s, v) = vault
        .call(
            Method::POST,
            &format!("/keys/aes/{version}/encrypt"),
            Some(
                json!({"alg": "A256CBC", "value": URL_SAFE_NO_PAD.encode(&block)})
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await;
    assert_eq!(
        (s, v["error"]["message"].as_str()),
        (400, Some("The property 'iv' is required."))
    );
}

#[tokio::test]
async fn api_versions_as_the_service_takes_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = start(Config::new(dir.path().to_path_buf())).await;
    vault
        .create("k", json!({"kty": "EC-HSM", "crv": "P-256", "key_ops": ["sign"]}))
        .await;
    let get = |version: &str| {
        let url = format!("{}/keys/k?api-version={version}", vault.running.info.vault_url);
        let request = vault.client.get(url).bearer_auth(&vault.token);
        async move {
            let r = request.send().await.expect("request");
            (r.status().as_u16(), r.json::<Value>().await.expect("JSON"))
        }
    };
    // What the Azure CLI sends on every keys call, the SDKs' defaults, and the oldest the service still takes.
    for version in [
        "7.6-preview.2",
        "7.5",
        "7.6",
        "2025-07-01",
        "7.4-preview.1",
        "2016-10-01",
    ] {
        let (status, body) = get(version).await;
        assert_eq!(status, 200, "{version}: {body}");
        assert_eq!(body["key"]["crv"], "P-256");
    }
    for version in ["7.7", "7.6-preview.3", "latest"] {
        let (status, body) = get(version).await;
        assert_eq!(status, 400, "{version}");
        assert_eq!(
            body["error"]["message"],
            format!(
                "The specified version ({version}) is not recognized. Consider using the latest supported version (2025-07-01)."
            )
        );
    }
    vault.running.shutdown().await.expect("stops");
}

#[tokio::test]
async fn enough_resource_manager_for_az_login() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = start(Config::new(dir.path().to_path_buf())).await;
    let info = &vault.running.info;
    let list = |path: &str, token: Option<&str>| {
        let mut request = vault
            .client
            .get(format!("{}{path}?api-version=2022-12-01", info.authority_host));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        async move {
            let r = request.send().await.expect("request");
            (r.status().as_u16(), r.json::<Value>().await.expect("JSON"))
        }
    };
    let (status, body) = list("/subscriptions", Some(&vault.token)).await;
    assert_eq!((status, body["value"].clone()), (200, json!([])), "{body}");
    let (status, body) = list("/tenants", Some(&vault.token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"][0]["tenantId"], info.tenant_id.as_str());
    let (status, body) = list("/subscriptions", None).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (401, json!("AuthenticationFailed"))
    );
    let (status, body) = list("/subscriptions", Some("forged")).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (401, json!("InvalidAuthenticationToken"))
    );
    vault.running.shutdown().await.expect("stops");
}

#[tokio::test]
async fn a_managed_identity_endpoint_in_app_service_form() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = start(Config::new(dir.path().to_path_buf())).await;
    let info = &vault.running.info;
    let ask = |header: &str, query: &[(&str, &str)]| {
        // The values here need no escaping in a query.
        let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let request = vault
            .client
            .get(format!("{}?{}", info.identity_endpoint, query.join("&")))
            .header("x-identity-header", header)
            .header("metadata", "true");
        async move {
            let r = request.send().await.expect("request");
            (r.status().as_u16(), r.json::<Value>().await.expect("JSON"))
        }
    };
    let good = [("api-version", "2019-08-01"), ("resource", info.audience.as_str())];
    let (status, body) = ask(&info.identity_header, &good).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().expect("token");
    assert!(
        body["expires_on"]
            .as_str()
            .expect("a string, as App Service sends it")
            .parse::<u64>()
            .is_ok()
    );
    let r = vault
        .client
        .get(vault.url("/keys"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 200, "the token opens the vault");
    assert_eq!(ask("wrong", &good).await.0, 401);
    let graph = [
        ("api-version", "2019-08-01"),
        ("resource", "https://graph.microsoft.com"),
    ];
    assert_eq!(
        ask(&info.identity_header, &graph).await.0,
        400,
        "no token for another audience"
    );
    let other = [
        ("api-version", "2019-08-01"),
        ("resource", info.audience.as_str()),
        ("client_id", "00000000-0000-0000-0000-000000000000"),
    ];
    assert_eq!(
        ask(&info.identity_header, &other).await.0,
        400,
        "an identity not assigned"
    );
    vault.running.shutdown().await.expect("stops");
}

#[tokio::test]
async fn keys_without_key_ops_get_every_operation_their_type_supports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::new(dir.path().to_path_buf());
    config.managed_hsm = true;
    let vault = start(config).await;
    let rsa = vault.create("rsa", json!({"kty": "RSA-HSM", "key_size": 2048})).await;
    assert_eq!(
        rsa["key"]["key_ops"],
        json!(["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"])
    );
    let ec = vault.create("ec", json!({"kty": "EC-HSM", "crv": "P-256"})).await;
    assert_eq!(ec["key"]["key_ops"], json!(["sign", "verify"]));
    // What `az keyvault key import --byok-file --kty oct` sends: no key_ops.
    let (kek, kid) = vault.kek("kek", 2048).await;
    let mut body = import_body("oct-HSM", None, &[], &blob(&kek, &kid, &[7; 32]));
    body["key"].as_object_mut().expect("key").remove("key_ops");
    let (s, aes) = vault.import("aes", &body).await;
    assert_eq!(s, 200, "{aes}");
    assert_eq!(
        aes["key"]["key_ops"],
        json!(["encrypt", "decrypt", "wrapKey", "unwrapKey"])
    );
    // Given ones are kept as they are.
    let signer = vault
        .create("signer", json!({"kty": "RSA-HSM", "key_ops": ["sign"]}))
        .await;
    assert_eq!(signer["key"]["key_ops"], json!(["sign"]));
    vault.running.shutdown().await.expect("stops");
}

impl Vault {
    /// `GET {path}` at `api_version`.
    async fn get_at(&self, path: &str, api_version: &str) -> (u16, Value) {
        let url = format!("{}{path}?api-version={api_version}", self.running.info.vault_url);
        let r = self
            .client
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

/// The local vault's own attestation root, as the ready line points to it.
fn emulator_root(dir: &std::path::Path) -> byok_attestation::Roots {
    let pem = std::fs::read_to_string(dir.join("attestation-root.pem")).expect("attestation-root.pem");
    let root = byok_attestation::Root::from_public_key_pem("byok-emulator test root", &pem).expect("an RSA key");
    byok_attestation::Roots::only(vec![root])
}

async fn mhsm(faults: &str) -> (tempfile::TempDir, Vault) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::new(dir.path().to_path_buf());
    config.managed_hsm = true;
    config.faults = faults.parse().expect("faults");
    let vault = start(config).await;
    (dir, vault)
}

#[tokio::test]
async fn the_managed_hsm_attests_keys_in_the_service_format_with_its_own_chain() {
    use byok_attestation::{Attestation, Check, Firmware, Roots};
    let (dir, vault) = mhsm("").await;
    let (kek_public, kid) = vault.kek("kek", 2048).await;
    let path = format!("/keys/kek/{}/attestation", kid.version());
    let (s, body) = vault.get_at(&path, "7.6").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["key"]["kid"], kid.to_string());
    let attestation = Attestation::from_json(body.to_string().as_bytes()).expect("MRVL-1");
    let verified = attestation
        .verify(&emulator_root(dir.path()))
        .expect("verified with its root");
    assert_eq!(verified.firmware, Firmware::V3);
    verified.check_key_id(&kid.to_string()).expect("its id");
    let public = byok_encoding::TargetPublicKey::from_rsa_components(kek_public.modulus(), kek_public.exponent());
    verified.check_public_key(&public.expect("RSA")).expect("its key");
    verified.check_kek(&["import".to_owned()]).expect("a KEK");
    // Never Marvell's: a real verifier refuses the test chain.
    let refused = attestation.verify(&Roots::marvell()).expect_err("not Marvell");
    assert_eq!(refused.check, Check::VendorRoot);
    // The latest version without one; refused before 7.6.
    let (s, latest) = vault.get_at("/keys/kek/attestation", "2025-07-01").await;
    assert_eq!((s, &latest["key"]["kid"]), (200, &body["key"]["kid"]));
    let (s, old) = vault.get_at(&path, "7.5").await;
    assert_eq!(s, 400, "{old}");
    // An imported key is attested as imported, with the source's point.
    let source = TargetKey::from_private_key_file(&testdata("ec-p256.pkcs8.pem")).expect("EC key");
    let body = import_body(
        "EC-HSM",
        Some("P-256"),
        &["sign"],
        &blob(&kek_public, &kid, source.plaintext()),
    );
    let (s, imported) = vault.import("ec", &body).await;
    assert_eq!(s, 200, "{imported}");
    let version = version_of(&imported);
    let (_, att) = vault.get_at(&format!("/keys/ec/{version}/attestation"), "7.6").await;
    let verified = Attestation::from_json(att.to_string().as_bytes())
        .and_then(|a| a.verify(&emulator_root(dir.path())))
        .expect("verified");
    assert_eq!(verified.private.local, Some(false));
    verified
        .check_public_key(source.public_key().expect("public"))
        .expect("the source's point");
    assert_eq!(
        verified.check_kek(&["import".to_owned()]).expect_err("imported").check,
        Check::Kek
    );
    vault.running.shutdown().await.expect("stops");
}

#[tokio::test]
async fn each_attestation_fault_is_refused_by_the_check_it_defeats() {
    use byok_attestation::{Attestation, Check};
    let cases = [
        ("forged", Check::Signature),
        ("other-key", Check::PublicKey),
        ("extractable", Check::Kek),
        ("imported", Check::Kek),
        ("wrong-id", Check::KeyId),
    ];
    for (fault, check) in cases {
        let (dir, vault) = mhsm(&format!("attestation={fault}")).await;
        let (kek_public, kid) = vault.kek("kek", 2048).await;
        let (s, body) = vault
            .get_at(&format!("/keys/kek/{}/attestation", kid.version()), "7.6")
            .await;
        assert_eq!(s, 200, "{fault}: {body}");
        let public = byok_encoding::TargetPublicKey::from_rsa_components(kek_public.modulus(), kek_public.exponent())
            .expect("RSA");
        let outcome = Attestation::from_json(body.to_string().as_bytes())
            .and_then(|a| a.verify(&emulator_root(dir.path())))
            .and_then(|v| {
                v.check_key_id(&kid.to_string())?;
                v.check_public_key(&public)?;
                v.check_kek(&["import".to_owned()])
            });
        assert_eq!(outcome.expect_err(fault).check, check, "{fault}");
        vault.running.shutdown().await.expect("stops");
    }
}

/// The version in a key bundle's `kid`.
fn version_of(bundle: &Value) -> String {
    let kid = bundle["key"]["kid"].as_str().expect("kid");
    kid.rsplit('/').next().expect("version").to_owned()
}

#[tokio::test]
async fn service_limits_throttle_creations_weigh_reads_and_page_listings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::new(dir.path().to_path_buf());
    let mut limits = byok_emulator::Limits::key_vault();
    limits.scale = 10.0; // a 1 s window
    config.limits = Some(limits);
    let vault = start(config).await;
    let v = &vault;
    let create = |name: String| {
        let body = json!({"kty": "EC-HSM", "crv": "P-256", "key_ops": ["sign"]});
        async move {
            let path = format!("/keys/{name}/create");
            v.call(reqwest::Method::POST, &path, Some(body.to_string().into_bytes()))
                .await
        }
    };
    // Ten HSM-key creations per window; the eleventh is 429 with the waits in seconds and in milliseconds.
    for i in 0..10 {
        let (s, v) = create(format!("k{i}")).await;
        assert_eq!(s, 200, "{v}");
    }
    let r = vault
        .client
        .post(vault.url("/keys/k10/create"))
        .bearer_auth(&vault.token)
        .header("content-type", "application/json")
        .body(json!({"kty": "EC-HSM", "crv": "P-256"}).to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 429);
    let ms: u64 = r.headers()["x-ms-retry-after-ms"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("ms");
    assert!((1..=1_000).contains(&ms), "{ms}");
    assert_eq!(r.headers()["retry-after"], "1", "whole seconds, at least 1");
    let observed = vault.running.observations();
    assert_eq!(observed.limited(), (10, 1), "the challenge is not counted");
    // Reads are another class: not throttled by the creations.
    let (s, _) = vault.call(reqwest::Method::GET, "/keys/k0", None).await;
    assert_eq!(s, 200);
    // The window passes; creations go again.
    tokio::time::sleep(std::time::Duration::from_millis(ms + 20)).await;
    assert_eq!(create("k10".into()).await.0, 200);
    // A listing pages at 25 keys at most, `maxresults` fewer; the link continues on the vault.
    let (s, page) = vault.call(reqwest::Method::GET, "/keys", None).await;
    assert_eq!((s, page["value"].as_array().map(Vec::len)), (200, Some(11)));
    let r = vault
        .client
        .get(format!("{}&maxresults=4", vault.url("/keys")))
        .bearer_auth(&vault.token)
        .send()
        .await
        .expect("request");
    let page: Value = r.json().await.expect("JSON");
    assert_eq!(page["value"].as_array().map(Vec::len), Some(4));
    let next = page["nextLink"].as_str().expect("more pages");
    assert!(
        next.starts_with(&format!("{}/keys?", vault.running.info.vault_url)),
        "{next}"
    );
    let r = vault
        .client
        .get(next)
        .bearer_auth(&vault.token)
        .send()
        .await
        .expect("request");
    let page: Value = r.json().await.expect("JSON");
    assert_eq!(
        page["value"][0]["kid"],
        json!(format!("{}/keys/k3", vault.running.info.vault_url))
    );
    let r = vault
        .client
        .get(format!("{}&maxresults=26", vault.url("/keys")))
        .bearer_auth(&vault.token)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 400, "Key Vault pages at 25 at most");
    vault.running.shutdown().await.expect("stops");
}

#[tokio::test]
async fn one_tenant_serves_several_vaults_each_with_its_own_keys_and_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::new(dir.path().to_path_buf());
    let mut second = byok_emulator::VaultConfig::new(false);
    second.limits = Some(byok_emulator::Limits::key_vault()); // a 10 s window: the RSA creations below fit in it
    config.more_vaults = vec![second, byok_emulator::VaultConfig::new(true)];
    let first = start(config).await;
    let info = first.running.info.clone();
    let urls: Vec<&str> = info.vaults.iter().map(|v| v.vault_url.as_str()).collect();
    assert_eq!(urls.len(), 3, "the ready line lists every vault: {urls:?}");
    assert_eq!(urls[0], info.vault_url);
    assert!(urls[1] != urls[0] && urls[2] != urls[1], "{urls:?}");
    assert_eq!(info.vaults[2].audience, "https://managedhsm.azure.net");
    assert!(info.attestation_root.is_some(), "a Managed HSM is among them");
    // One Key Vault token works on both Key Vaults; the same KEK name holds a different key in each.
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = start(Config::new(other_dir.path().to_path_buf())).await;
    let at = |i: usize, path: &str| format!("{}{path}?api-version=7.5", info.vaults[i].vault_url);
    let call = |i: usize, method: reqwest::Method, path: &str, token: &str| {
        let request = first.client.request(method, at(i, path)).bearer_auth(token.to_owned());
        async move {
            let r = request
                .header("content-type", "application/json")
                .body(json!({"kty": "RSA-HSM", "key_size": 2048, "key_ops": ["import"]}).to_string())
                .send()
                .await
                .expect("request");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (s, kek0) = call(0, reqwest::Method::POST, "/keys/kek/create", &first.token).await;
    assert_eq!(s, 200, "{kek0}");
    let (s, kek1) = call(1, reqwest::Method::POST, "/keys/kek/create", &first.token).await;
    assert_eq!(s, 200, "{kek1}");
    assert_ne!(kek0["key"]["n"], kek1["key"]["n"], "each vault has its own keys");
    assert!(kek1["key"]["kid"].as_str().expect("kid").starts_with(urls[1]), "{kek1}");
    let (s, _) = call(0, reqwest::Method::GET, "/keys/kek", &first.token).await;
    assert_eq!(s, 200);
    // The Managed HSM wants a token for its own audience: the Key Vault one is refused, one for it works.
    let (s, refused) = call(2, reqwest::Method::GET, "/keys/kek", &first.token).await;
    assert_eq!(s, 401, "{refused}");
    let scope = "https://managedhsm.azure.net/.default";
    let (s, body) = token_response(&info, &first.client, &info.client_secret, scope).await;
    assert_eq!(s, 200, "{body}");
    let hsm_token = body["access_token"].as_str().expect("token").to_owned();
    let (s, missing) = call(2, reqwest::Method::GET, "/keys/kek", &hsm_token).await;
    assert_eq!(s, 404, "the Managed HSM has no KEK yet: {missing}");
    // A token of another process (another tenant) is refused everywhere.
    assert_eq!(call(1, reqwest::Method::GET, "/keys/kek", &other.token).await.0, 401);
    // Only the second vault is limited: ten creations a window there, none on the first.
    for i in 0..11 {
        assert_eq!(
            call(0, reqwest::Method::POST, &format!("/keys/a{i}/create"), &first.token)
                .await
                .0,
            200
        );
    }
    let mut statuses = Vec::new();
    for i in 0..10 {
        statuses.push(
            call(1, reqwest::Method::POST, &format!("/keys/b{i}/create"), &first.token)
                .await
                .0,
        );
    }
    assert!(
        statuses.contains(&429),
        "the second vault's window (KEK + 9 more) is full: {statuses:?}"
    );
    let observed = first.running.all_observations();
    assert_eq!(observed[0].limited(), (0, 0), "the first vault has no limits");
    assert_eq!(observed[1].limited().1, 1, "{:?}", observed[1].limited());
    // The keys live apart: the second vault's in its own directory.
    assert!(dir.path().join("keys/a0.json").exists());
    assert!(dir.path().join("vaults/1/keys/kek.json").exists());
    assert!(!dir.path().join("vaults/1/keys/a0.json").exists());
    other.running.shutdown().await.expect("stops");
    first.running.shutdown().await.expect("stops");
}
