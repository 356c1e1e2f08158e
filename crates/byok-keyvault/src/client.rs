//! The connection to one vault and the operations BYOK needs: create and read a KEK, import, read a key back, and
//! the one AES operation that lets an import be verified without the key leaving either side.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;

use azure_core::http::{RequestContent, RetryOptions};
use azure_security_keyvault_keys::models::{
    CreateKeyParameters, CurveName, EncryptionAlgorithm, ImportKeyParameters, JsonWebKey, Key, KeyAttributes,
    KeyClientEncryptOptions, KeyClientGetKeyOptions, KeyOperation, KeyOperationParameters, KeyReleasePolicy, KeyType,
};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions};
use byok_blob::{KeyId, VaultKind};

use crate::Cause;
use byok_encoding::{AesSize, Curve, KekPublicKey, Kty, RsaSize, TargetPublicKey};

use crate::host::AudienceGuard;
use crate::retry::{self, Failure, RetryPolicy};
use crate::transport::{self, ProxyEnv, Timeouts};
use crate::{Credential, Error, Vault};

/// The tag byok puts on every key it imports: a random id per transfer, also in the transfer record. After a
/// connection breaks mid-import it tells byok whether the vault carried the import out, so that nothing is
/// imported twice.
pub const TRANSFER_TAG: &str = "byok-transfer";

/// A point in time, in whole seconds since the Unix epoch (how Key Vault keeps `nbf`, `exp`, `created`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// From Unix seconds.
    pub const fn from_unix(seconds: i64) -> Self {
        Self(seconds)
    }

    /// Unix seconds.
    pub const fn unix(self) -> i64 {
        self.0
    }

    /// Now.
    pub fn now() -> Self {
        Self(azure_core::time::OffsetDateTime::now_utc().unix_timestamp())
    }

    /// Parses RFC 3339 (`2027-01-31T00:00:00Z`), as `az keyvault key import --expires` takes it.
    pub fn parse(s: &str) -> Result<Self, Error> {
        azure_core::time::parse_rfc3339(s)
            .map(|t| Self(t.unix_timestamp()))
            .map_err(|_| Error::Request(format!("`{s}` is not an RFC 3339 time such as 2027-01-31T00:00:00Z")))
    }

    fn to_sdk(self) -> Option<azure_core::time::OffsetDateTime> {
        azure_core::time::OffsetDateTime::from_unix_timestamp(self.0).ok()
    }

    fn from_sdk(t: azure_core::time::OffsetDateTime) -> Self {
        Self(t.unix_timestamp())
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339, UTC.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_sdk() {
            Some(t) => f.write_str(&azure_core::time::to_rfc3339(&t)),
            None => write!(f, "@{}", self.0),
        }
    }
}

/// A key as the vault shows it (public material only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultKey {
    /// The versioned key identifier.
    pub kid: KeyId,
    /// `RSA-HSM`, `EC-HSM`, `oct-HSM`, …
    pub kty: String,
    /// The key's operations.
    pub key_ops: Vec<String>,
    /// The public half of an RSA or EC key.
    pub public: Option<TargetPublicKey>,
    /// Whether the key can be used.
    pub enabled: Option<bool>,
    /// Not usable before.
    pub not_before: Option<Timestamp>,
    /// Not usable after.
    pub expires: Option<Timestamp>,
    /// When this version was made.
    pub created: Option<Timestamp>,
    /// Whether the key may be released (exported) under its release policy.
    pub exportable: Option<bool>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// A KEK as the vault holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kek {
    /// The versioned key identifier: what a `.byok` blob names.
    pub kid: KeyId,
    /// The public key.
    pub public: KekPublicKey,
    /// `RSA-HSM`, `RSA`, …
    pub kty: String,
    /// The key's operations.
    pub key_ops: Vec<String>,
}

impl Kek {
    /// Whether this is a proper Key Exchange Key: RSA-HSM with `key_ops` exactly `["import"]`.
    pub fn is_import_only_hsm(&self) -> bool {
        self.kty == "RSA-HSM" && self.key_ops == ["import"]
    }
}

/// What to import: a `.byok` file and the properties the new key version gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportRequest {
    /// The key's name in the vault (a new version if it exists).
    pub name: String,
    /// The `.byok` file's bytes, as written (they travel as `key_hsm`, base64url).
    pub blob_bytes: Vec<u8>,
    /// RSA, EC or oct (sent as `RSA-HSM`, `EC-HSM`, `oct-HSM`).
    pub kty: Kty,
    /// The curve, for EC and only for EC.
    pub curve: Option<Curve>,
    /// The operations the key allows (`encrypt`, `decrypt`, `sign`, `verify`, `wrapKey`, `unwrapKey`).
    pub key_ops: Vec<String>,
    /// Whether the key is enabled.
    pub enabled: bool,
    /// Not usable before.
    pub not_before: Option<Timestamp>,
    /// Not usable after.
    pub expires: Option<Timestamp>,
    /// Tags (byok adds [`TRANSFER_TAG`]).
    pub tags: BTreeMap<String, String>,
    /// Exportable under `release_policy` (Managed HSM and Premium vaults).
    pub exportable: bool,
    /// The release policy document (JSON), required with `exportable`.
    pub release_policy: Option<Vec<u8>>,
    /// The transfer's random id, written to [`TRANSFER_TAG`].
    pub transfer_id: String,
}

/// The operations a key of each type may allow.
fn allowed_ops(kty: Kty) -> &'static [&'static str] {
    match kty {
        Kty::Rsa => &["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"],
        Kty::Ec => &["sign", "verify"],
        Kty::Oct => &["encrypt", "decrypt", "wrapKey", "unwrapKey"],
    }
}

/// Whether `name` can name a key in Key Vault and Managed HSM: 1 to 127 ASCII letters, digits and dashes.
pub fn check_key_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > 127 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(Error::Request(format!(
            "`{name}` is not a key name: 1 to 127 letters, digits and dashes"
        )));
    }
    Ok(())
}

impl ImportRequest {
    /// The default operations for a key type (all it may have), as `az keyvault key import` gives them.
    pub fn default_ops(kty: Kty) -> Vec<String> {
        allowed_ops(kty).iter().map(|s| (*s).to_owned()).collect()
    }

    /// Checks what can be checked before sending: name, operations for the type, curve, oct on a Managed HSM,
    /// times, tags, export policy.
    pub fn validate(&self, vault: &Vault) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Request(m));
        check_key_name(&self.name)?;
        let allowed = allowed_ops(self.kty);
        for op in &self.key_ops {
            if !allowed.contains(&op.as_str()) {
                let why = match (self.kty, op.as_str()) {
                    (_, "import") => " (`import` belongs to a Key Exchange Key only)".to_owned(),
                    (Kty::Ec, "encrypt" | "decrypt" | "wrapKey" | "unwrapKey") => {
                        " (EC keys sign and verify; they cannot encrypt or wrap)".to_owned()
                    }
                    _ => String::new(),
                };
                return bad(format!(
                    "operation `{op}` is not valid for {} keys{why}; valid: {}",
                    self.kty,
                    allowed.join(", ")
                ));
            }
        }
        match (self.kty, self.curve) {
            (Kty::Ec, None) => return bad("an EC key needs its curve (P-256, P-384, P-521 or P-256K)".into()),
            (Kty::Rsa | Kty::Oct, Some(c)) => {
                return bad(format!(
                    "a curve ({c}) is given, but the key type is {}, not EC",
                    self.kty
                ));
            }
            _ => {}
        }
        if self.kty == Kty::Oct && vault.kind() == VaultKind::KeyVault {
            return bad(format!(
                "{vault} is a Key Vault; AES (oct-HSM) keys can be imported into a Managed HSM only"
            ));
        }
        if let (Some(nbf), Some(exp)) = (self.not_before, self.expires)
            && exp <= nbf
        {
            return bad(format!("the key would expire ({exp}) before it becomes valid ({nbf})"));
        }
        if self.tags.len() + 1 > 15 {
            return bad(format!(
                "{} tags are given; Key Vault takes 15 per key, and byok adds `{TRANSFER_TAG}`",
                self.tags.len()
            ));
        }
        for (k, v) in &self.tags {
            if k == TRANSFER_TAG {
                return bad(format!("the tag `{TRANSFER_TAG}` is byok's own"));
            }
            if k.is_empty() || k.chars().count() > 512 || v.chars().count() > 256 {
                return bad(format!(
                    "tag `{k}`: names are 1 to 512 characters and values at most 256"
                ));
            }
        }
        match (self.exportable, &self.release_policy) {
            (true, None) => return bad("an exportable key needs a release policy".into()),
            (false, Some(_)) => return bad("a release policy is given but the key is not exportable".into()),
            (true, Some(p)) if serde_json::from_slice::<serde_json::Value>(p).is_err() => {
                return bad("the release policy is not JSON".into());
            }
            _ => {}
        }
        Ok(())
    }

    fn to_parameters(&self) -> ImportKeyParameters {
        let mut tags: HashMap<String, String> = self.tags.clone().into_iter().collect();
        tags.insert(TRANSFER_TAG.to_owned(), self.transfer_id.clone());
        let kty = match self.kty {
            Kty::Rsa => KeyType::RsaHsm,
            Kty::Ec => KeyType::EcHsm,
            Kty::Oct => KeyType::OctHsm,
        };
        let key = JsonWebKey {
            kty: Some(kty),
            crv: self.curve.map(curve_name),
            key_ops: Some(self.key_ops.clone()),
            t: Some(self.blob_bytes.clone()),
            ..Default::default()
        };
        let attributes = KeyAttributes {
            enabled: Some(self.enabled),
            not_before: self.not_before.and_then(Timestamp::to_sdk),
            expires: self.expires.and_then(Timestamp::to_sdk),
            exportable: self.exportable.then_some(true),
            ..Default::default()
        };
        ImportKeyParameters {
            hsm: Some(true),
            key: Some(key),
            key_attributes: Some(attributes),
            release_policy: self.release_policy.as_ref().map(|p| KeyReleasePolicy {
                content_type: Some("application/json; charset=utf-8".into()),
                encoded_policy: Some(p.clone()),
                immutable: None,
            }),
            tags: Some(tags),
        }
    }
}

fn curve_name(c: Curve) -> CurveName {
    match c {
        Curve::P256 => CurveName::P256,
        Curve::P384 => CurveName::P384,
        Curve::P521 => CurveName::P521,
        Curve::P256K => CurveName::P256K,
    }
}

/// What an import did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imported {
    /// The new key version.
    pub key: VaultKey,
    /// How often the connection broke after the import was sent and byok had to look whether it happened
    /// (0 normally).
    pub ambiguous: u32,
}

type Observer = Arc<dyn Fn(&str) + Send + Sync>;

/// A connection to one vault.
pub struct Connection {
    client: KeyClient,
    vault: Vault,
    retry: RetryPolicy,
    observer: Option<Observer>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("vault", &self.vault)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects (lazily: nothing is sent yet) with the default [`Timeouts`]. `extra_ca_pem` adds a trusted CA (a
    /// local Key Vault, a TLS-inspecting proxy); it never disables verification.
    pub fn new(vault: &Vault, credential: Credential, extra_ca_pem: Option<&[u8]>) -> Result<Self, Error> {
        Self::with_timeouts(vault, credential, extra_ca_pem, Timeouts::default())
    }

    /// As [`Connection::new`], with the network limits given. Tokens are fetched for Key Vault and Managed HSM
    /// audiences only (see [`crate::host`]), and the challenge's resource must name the vault's domain unless the
    /// vault is on this machine. Proxies come from `HTTPS_PROXY`/`ALL_PROXY`/`NO_PROXY`.
    pub fn with_timeouts(
        vault: &Vault,
        credential: Credential,
        extra_ca_pem: Option<&[u8]>,
        timeouts: Timeouts,
    ) -> Result<Self, Error> {
        let proxies = ProxyEnv::from_lookup(|k| std::env::var(k).ok());
        let transport = transport::build(extra_ca_pem, timeouts, proxies)?;
        let credential = AudienceGuard::wrap(credential.build(&transport)?, vault.url());
        let mut options = KeyClientOptions::default();
        options.client_options.transport = Some(transport);
        // byok retries itself (see `retry`): the SDK's retries would re-send an import blindly.
        options.client_options.retry = RetryOptions::none();
        options.verify_challenge_resource = Some(!vault.is_loopback());
        let client = KeyClient::new(vault.url(), credential, Some(options))
            .map_err(|e| Error::Address(vault.url().to_owned(), e.to_string()))?;
        Ok(Self {
            client,
            vault: vault.clone(),
            retry: RetryPolicy::default(),
            observer: None,
        })
    }

    /// Replaces the retry policy.
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Calls `observer` with a line of text whenever byok waits to retry or looks whether an import happened.
    pub fn on_retry(mut self, observer: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// The vault.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    fn notify(&self, line: &str) {
        if let Some(o) = &self.observer {
            o(line);
        }
    }

    fn service(&self, operation: &'static str, key: &str, e: &azure_core::Error) -> Error {
        use azure_core::error::ErrorKind;
        let cause = match (transport::Refusal::find(e), e.kind()) {
            (Some(refusal), _) => refusal.cause.clone(),
            (None, ErrorKind::HttpResponse { status, error_code, .. }) => Cause::Status {
                status: u16::from(*status),
                code: error_code.clone(),
            },
            (None, ErrorKind::Credential) => Cause::Authentication,
            (None, ErrorKind::DataConversion) => Cause::NotKeyVault,
            (None, _) => Cause::Unreachable,
        };
        Error::Service {
            operation,
            vault: self.vault.url().to_owned(),
            key: key.to_owned(),
            cause,
            message: describe(e),
        }
    }

    /// Runs `call`, retrying what the policy allows. Returns the last failure's kind with the error.
    async fn send<T, F, Fut>(
        &self,
        operation: &'static str,
        key: &str,
        idempotent: bool,
        mut call: F,
    ) -> Result<T, (Failure, azure_core::Error)>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = azure_core::Result<T>>,
    {
        let mut retry = 0;
        let mut unreachable = 0;
        loop {
            let e = match call().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let failure = match retry::classify(&e, idempotent) {
                Failure::Brief if unreachable < retry::BRIEF_RETRIES.min(self.retry.max_retries) => {
                    unreachable += 1;
                    Failure::Retry(None)
                }
                other => other,
            };
            match failure {
                Failure::Retry(after) if retry < self.retry.max_retries => {
                    let wait = self.retry.delay(retry, after);
                    self.notify(&format!(
                        "{operation} `{key}`: {}; retry {}/{} in {:.1} s",
                        short(&e),
                        retry + 1,
                        self.retry.max_retries,
                        wait.as_secs_f64()
                    ));
                    tokio::time::sleep(wait).await;
                    retry += 1;
                }
                failure => return Err((failure, e)),
            }
        }
    }

    async fn read(&self, operation: &'static str, name: &str, version: Option<&str>) -> Result<Key, Error> {
        let client = &self.client;
        self.send(operation, name, true, || async move {
            let options = KeyClientGetKeyOptions {
                key_version: version.map(str::to_owned),
                ..Default::default()
            };
            client.get_key(name, Some(options)).await?.into_model()
        })
        .await
        .map_err(|(_, e)| self.service(operation, name, &e))
    }

    /// Creates an import-only RSA-HSM Key Exchange Key of the given size. A creation whose answer was lost is not
    /// repeated (that would make a second version); the error says so.
    pub async fn create_kek(&self, name: &str, size: RsaSize) -> Result<Kek, Error> {
        let client = &self.client;
        let key = self
            .send("creating key", name, false, || async move {
                let params = CreateKeyParameters {
                    kty: Some(KeyType::RsaHsm),
                    key_size: Some(size.bits() as i32),
                    key_ops: Some(vec![KeyOperation::Import]),
                    ..Default::default()
                };
                client.create_key(name, params.try_into()?, None).await?.into_model()
            })
            .await
            .map_err(|(failure, e)| match failure {
                Failure::Ambiguous => Error::Service {
                    operation: "creating key",
                    vault: self.vault.url().to_owned(),
                    key: name.to_owned(),
                    cause: Cause::Ambiguous,
                    message: format!(
                        "the connection broke after the request was sent ({}), so the KEK may exist now; byok does \
                         not send it again, which could make a second version. Look with `byok-cli kek download \
                         --name {name}`; `full-transfer` reuses it when it is there",
                        short(&e)
                    ),
                },
                _ => self.service("creating key", name, &e),
            })?;
        kek_from(name, key.key)
    }

    /// Reads a KEK (the latest version, or `version`).
    pub async fn get_kek(&self, name: &str, version: Option<&str>) -> Result<Kek, Error> {
        let key = self.read("reading key", name, version).await?;
        kek_from(name, key.key)
    }

    /// Reads any key's public properties (the latest version, or `version`).
    pub async fn get_key(&self, name: &str, version: Option<&str>) -> Result<VaultKey, Error> {
        let key = self.read("reading key", name, version).await?;
        vault_key(name, key)
    }

    /// Imports a `.byok` blob (`PUT /keys/{name}`). Throttling (429, 503) is waited out. When the connection breaks
    /// after the request was sent, the key is read back first: if its latest version carries this transfer's
    /// [`TRANSFER_TAG`] the import happened and is not repeated; otherwise it is sent again.
    pub async fn import_key(&self, request: &ImportRequest) -> Result<Imported, Error> {
        request.validate(&self.vault)?;
        const OP: &str = "importing key";
        let name = request.name.as_str();
        let client = &self.client;
        let mut ambiguous = 0;
        loop {
            let sent = self
                .send(OP, name, false, || async move {
                    let content: RequestContent<ImportKeyParameters> = request.to_parameters().try_into()?;
                    client.import_key(name, content, None).await?.into_model()
                })
                .await;
            let e = match sent {
                Ok(key) => {
                    return Ok(Imported {
                        key: vault_key(name, key)?,
                        ambiguous,
                    });
                }
                Err((Failure::Ambiguous, e)) if ambiguous < self.retry.max_retries => e,
                Err((_, e)) => return Err(self.service(OP, name, &e)),
            };
            let wait = self.retry.delay(ambiguous, None);
            ambiguous += 1;
            self.notify(&format!(
                "{OP} `{name}`: {}; the vault may have imported it. Looking in {:.1} s before sending again",
                short(&e),
                wait.as_secs_f64()
            ));
            tokio::time::sleep(wait).await;
            match self.get_key(name, None).await {
                Ok(key) if key.tags.get(TRANSFER_TAG) == Some(&request.transfer_id) => {
                    self.notify(&format!(
                        "{OP} `{name}`: it was imported ({}); not sending again",
                        key.kid
                    ));
                    return Ok(Imported { key, ambiguous });
                }
                Ok(_) => self.notify(&format!("{OP} `{name}`: it was not imported; sending again")),
                Err(e) if e.is_not_found() => self.notify(&format!("{OP} `{name}`: no such key yet; sending again")),
                Err(e) => {
                    return Err(Error::Service {
                        operation: OP,
                        vault: self.vault.url().to_owned(),
                        key: name.to_owned(),
                        cause: Cause::Ambiguous,
                        message: format!(
                            "the connection broke after the import was sent, and whether it happened cannot be \
                             told ({e}); look for a version tagged {TRANSFER_TAG}={} before importing again",
                            request.transfer_id
                        ),
                    });
                }
            }
        }
    }

    /// Encrypts one block with an AES key in the vault, AES-CBC with a zero IV — the same as AES-ECB of the block,
    /// which an HSM holding the same key can compute too.
    pub async fn encrypt_block(
        &self,
        name: &str,
        version: &str,
        size: AesSize,
        block: &[u8; 16],
    ) -> Result<[u8; 16], Error> {
        const OP: &str = "encrypting with key";
        let algorithm = match size.bits() {
            128 => EncryptionAlgorithm::A128Cbc,
            192 => EncryptionAlgorithm::A192Cbc,
            _ => EncryptionAlgorithm::A256Cbc,
        };
        let client = &self.client;
        let result = self
            .send(OP, name, true, || {
                let algorithm = algorithm.clone();
                async move {
                    let params = KeyOperationParameters {
                        algorithm: Some(algorithm),
                        iv: Some(vec![0; 16]),
                        value: Some(block.to_vec()),
                        ..Default::default()
                    };
                    let options = KeyClientEncryptOptions {
                        key_version: Some(version.to_owned()),
                        ..Default::default()
                    };
                    client
                        .encrypt(name, params.try_into()?, Some(options))
                        .await?
                        .into_model()
                }
            })
            .await
            .map_err(|(_, e)| self.service(OP, name, &e))?;
        result
            .result
            .and_then(|r| <[u8; 16]>::try_from(r.get(..16)?).ok())
            .ok_or_else(|| Error::Answer {
                key: name.to_owned(),
                reason: "the encryption result is not one AES block".into(),
            })
    }
}

/// The error and its sources, one line.
fn describe(e: &azure_core::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(&format!(": {text}"));
        }
        source = s.source();
    }
    message
}

/// A short reason for progress lines: the status and service code, or the innermost cause.
fn short(e: &azure_core::Error) -> String {
    if let azure_core::error::ErrorKind::HttpResponse { status, error_code, .. } = e.kind() {
        return format!(
            "HTTP {}{}",
            u16::from(*status),
            error_code.as_ref().map(|c| format!(" {c}")).unwrap_or_default()
        );
    }
    let mut last = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

fn answer_error(name: &str, reason: impl Into<String>) -> Error {
    Error::Answer {
        key: name.to_owned(),
        reason: reason.into(),
    }
}

fn vault_key(name: &str, key: Key) -> Result<VaultKey, Error> {
    let jwk = key.key.ok_or_else(|| answer_error(name, "no key material"))?;
    let kid = KeyId::parse(jwk.kid.as_deref().ok_or_else(|| answer_error(name, "no kid"))?)
        .map_err(|e| answer_error(name, e.to_string()))?;
    let kty = jwk.kty.as_ref().map(ToString::to_string).unwrap_or_default();
    let public = match (kty.trim_end_matches("-HSM"), &jwk.n, &jwk.e, &jwk.crv, &jwk.x, &jwk.y) {
        ("RSA", Some(n), Some(e), ..) => {
            Some(TargetPublicKey::from_rsa_components(n, e).map_err(|e| answer_error(name, e.to_string()))?)
        }
        ("EC", _, _, Some(crv), Some(x), Some(y)) => {
            let curve = Curve::from_str(crv.as_ref()).map_err(|e| answer_error(name, e.to_string()))?;
            Some(TargetPublicKey::from_ec_components(curve, x, y).map_err(|e| answer_error(name, e.to_string()))?)
        }
        ("RSA" | "EC", ..) => return Err(answer_error(name, format!("a {kty} key without its public half"))),
        _ => None,
    };
    let attributes = key.attributes.unwrap_or_default();
    Ok(VaultKey {
        kid,
        kty,
        key_ops: jwk.key_ops.unwrap_or_default(),
        public,
        enabled: attributes.enabled,
        not_before: attributes.not_before.map(Timestamp::from_sdk),
        expires: attributes.expires.map(Timestamp::from_sdk),
        created: attributes.created.map(Timestamp::from_sdk),
        exportable: attributes.exportable,
        tags: key.tags.unwrap_or_default().into_iter().collect(),
    })
}

fn kek_from(name: &str, jwk: Option<JsonWebKey>) -> Result<Kek, Error> {
    let jwk = jwk.ok_or_else(|| answer_error(name, "no key material"))?;
    let kid = KeyId::parse(jwk.kid.as_deref().ok_or_else(|| answer_error(name, "no kid"))?)
        .map_err(|e| answer_error(name, e.to_string()))?;
    let (n, e) = (
        jwk.n.ok_or_else(|| answer_error(name, "not an RSA key (no n)"))?,
        jwk.e.ok_or_else(|| answer_error(name, "no e"))?,
    );
    let public = KekPublicKey::from_components(&n, &e).map_err(|e| answer_error(name, e.to_string()))?;
    let kty = jwk.kty.map(|k| k.to_string()).unwrap_or_default();
    Ok(Kek {
        kid,
        public,
        kty,
        key_ops: jwk.key_ops.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(kty: Kty) -> ImportRequest {
        ImportRequest {
            name: "target".into(),
            blob_bytes: b"{}".to_vec(),
            kty,
            curve: (kty == Kty::Ec).then_some(Curve::P256),
            key_ops: ImportRequest::default_ops(kty),
            enabled: true,
            not_before: None,
            expires: None,
            tags: BTreeMap::new(),
            exportable: false,
            release_policy: None,
            transfer_id: "0".repeat(32),
        }
    }

    fn refusal(r: &ImportRequest, vault: &Vault) -> String {
        match r.validate(vault) {
            Err(Error::Request(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn preflight() {
        let kv = Vault::from_vault_name("contoso").expect("valid");
        let hsm = Vault::from_hsm_name("contoso").expect("valid");
        for kty in [Kty::Rsa, Kty::Ec] {
            assert_eq!(request(kty).validate(&kv), Ok(()));
        }
        assert_eq!(request(Kty::Oct).validate(&hsm), Ok(()));
        assert!(refusal(&request(Kty::Oct), &kv).contains("Managed HSM only"));
        let mut r = request(Kty::Ec);
        r.key_ops.push("wrapKey".into());
        assert!(refusal(&r, &kv).contains("cannot encrypt or wrap"));
        r.key_ops = vec!["import".into()];
        assert!(refusal(&r, &kv).contains("Key Exchange Key only"));
        let mut r = request(Kty::Ec);
        r.curve = None;
        assert!(refusal(&r, &kv).contains("needs its curve"));
        let mut r = request(Kty::Rsa);
        r.curve = Some(Curve::P384);
        assert!(refusal(&r, &kv).contains("not EC"));
        let mut r = request(Kty::Rsa);
        r.name = "bad_name".into();
        assert!(refusal(&r, &kv).contains("not a key name"));
        let mut r = request(Kty::Rsa);
        r.not_before = Some(Timestamp::from_unix(2_000_000_000));
        r.expires = Some(Timestamp::from_unix(1_900_000_000));
        assert!(refusal(&r, &kv).contains("expire"));
        let mut r = request(Kty::Rsa);
        r.tags = (0..15).map(|i| (format!("t{i}"), String::new())).collect();
        assert!(refusal(&r, &kv).contains("15 per key"));
        let mut r = request(Kty::Rsa);
        r.tags.insert(TRANSFER_TAG.into(), "x".into());
        assert!(refusal(&r, &kv).contains("byok's own"));
        let mut r = request(Kty::Rsa);
        r.exportable = true;
        assert!(refusal(&r, &kv).contains("release policy"));
    }

    #[test]
    fn parameters_carry_the_blob_and_the_tag() {
        let mut r = request(Kty::Ec);
        r.tags.insert("owner".into(), "pki".into());
        r.expires = Some(Timestamp::parse("2030-01-01T00:00:00Z").expect("valid"));
        let json = serde_json::to_value(r.to_parameters()).expect("serializes");
        assert_eq!(json["key"]["kty"], "EC-HSM");
        assert_eq!(json["key"]["crv"], "P-256");
        assert_eq!(json["key"]["key_hsm"], "e30", "base64url of `{{}}` without padding");
        assert_eq!(json["key"]["key_ops"], serde_json::json!(["sign", "verify"]));
        assert_eq!(json["Hsm"], true);
        assert_eq!(json["attributes"]["exp"], 1_893_456_000);
        assert_eq!(json["tags"][TRANSFER_TAG], "0".repeat(32));
        assert_eq!(json["tags"]["owner"], "pki");
    }

    #[test]
    fn timestamps() {
        let t = Timestamp::parse("2027-01-31T12:00:00+01:00").expect("valid");
        assert_eq!(t.to_string(), "2027-01-31T11:00:00Z");
        assert!(matches!(Timestamp::parse("tomorrow"), Err(Error::Request(m)) if m.contains("RFC 3339")));
    }
}
