#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::sync::Arc;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{RequestContent, Transport};
use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};
use azure_security_keyvault_keys::models::{CreateKeyParameters, KeyClientGetKeyOptions, KeyOperation, KeyType};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions};
use byok_blob::{KeyId, VaultKind};
use byok_encoding::{KekPublicKey, RsaSize};
use zeroize::Zeroizing;

/// What went wrong talking to the vault: the operation, the vault, the key, and what the service said.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The vault address is unusable.
    #[error("invalid vault address `{0}`: {1}")]
    Address(String, String),
    /// The credential cannot be built.
    #[error("invalid credential: {0}")]
    Credential(String),
    /// The service (or the network) refused an operation.
    #[error("{operation} `{key}` in {vault} failed{}: {message}", status.map(|s| format!(" (HTTP {s}{})", code.as_ref().map(|c| format!(", {c}")).unwrap_or_default())).unwrap_or_default())]
    Service {
        /// `creating key`, `reading key`, …
        operation: &'static str,
        /// The vault URL.
        vault: String,
        /// The key name.
        key: String,
        /// The HTTP status, when there was a response.
        status: Option<u16>,
        /// The service's error code (`BadParameter`, `KeyNotFound`, …).
        code: Option<String>,
        /// What the service or the client said.
        message: String,
    },
    /// The vault's answer lacks what byok needs.
    #[error("the vault's answer for key `{key}` is unusable: {reason}")]
    Answer {
        /// The key name.
        key: String,
        /// What is missing or wrong.
        reason: String,
    },
}

/// A Key Vault or Managed HSM, by its URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vault {
    url: String,
}

impl Vault {
    /// `https://{name}.vault.azure.net`.
    pub fn from_vault_name(name: &str) -> Result<Self, Error> {
        Self::from_url(&format!("https://{name}.vault.azure.net"))
    }

    /// `https://{name}.managedhsm.azure.net`.
    pub fn from_hsm_name(name: &str) -> Result<Self, Error> {
        Self::from_url(&format!("https://{name}.managedhsm.azure.net"))
    }

    /// Any https URL (a local Key Vault included). http is refused: tokens would travel in clear.
    pub fn from_url(url: &str) -> Result<Self, Error> {
        let trimmed = url.trim_end_matches('/');
        let rest = trimmed
            .strip_prefix("https://")
            .ok_or_else(|| Error::Address(url.to_owned(), "only https is accepted".into()))?;
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            return Err(Error::Address(url.to_owned(), "expected https://host[:port]".into()));
        }
        Ok(Self {
            url: trimmed.to_owned(),
        })
    }

    /// The URL, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn host(&self) -> &str {
        let rest = self.url.trim_start_matches("https://");
        rest.split(':').next().unwrap_or(rest)
    }

    /// Key Vault, Managed HSM, or another host (a local Key Vault).
    pub fn kind(&self) -> VaultKind {
        VaultKind::of_host(self.host())
    }
}

impl fmt::Display for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// How to authenticate.
pub enum Credential {
    /// A service principal's client secret (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`), with an
    /// optional authority host (`AZURE_AUTHORITY_HOST`; a local Key Vault's token endpoint).
    ClientSecret {
        /// Tenant id.
        tenant_id: String,
        /// Client (application) id.
        client_id: String,
        /// The secret.
        secret: Zeroizing<String>,
        /// `https://login.microsoftonline.com` unless given.
        authority_host: Option<String>,
    },
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClientSecret {
                tenant_id,
                client_id,
                authority_host,
                ..
            } => f
                .debug_struct("ClientSecret")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("authority_host", authority_host)
                .finish_non_exhaustive(),
        }
    }
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

/// A connection to one vault.
pub struct Connection {
    client: KeyClient,
    vault: Vault,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("vault", &self.vault)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects (lazily: nothing is sent yet). `extra_ca_pem` adds a trusted CA (a local Key Vault, a TLS-inspecting
    /// proxy); it never disables verification. The challenge's resource is checked against the host for Azure
    /// hosts; a local Key Vault on an IP address cannot be checked that way.
    pub fn new(vault: &Vault, credential: Credential, extra_ca_pem: Option<&[u8]>) -> Result<Self, Error> {
        let mut http = reqwest::Client::builder();
        if let Some(pem) = extra_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::Credential(format!("the CA file is not PEM certificates: {e}")))?;
            http = http.tls_certs_merge(certs);
        }
        let http = http
            .build()
            .map_err(|e| Error::Credential(format!("cannot build the HTTP client: {e}")))?;
        let transport = Transport::new(Arc::new(http));
        let credential: Arc<dyn TokenCredential> = match credential {
            Credential::ClientSecret {
                tenant_id,
                client_id,
                secret,
                authority_host,
            } => {
                let mut options = ClientSecretCredentialOptions::default();
                options.client_options.transport = Some(transport.clone());
                options.client_options.retry = azure_core::http::RetryOptions::none();
                if let Some(host) = authority_host {
                    let mut cloud = CustomConfiguration::default();
                    cloud.authority_host = host;
                    options.client_options.cloud = Some(Arc::new(CloudConfiguration::Custom(cloud)));
                }
                ClientSecretCredential::new(&tenant_id, client_id, Secret::new(secret.to_string()), Some(options))
                    .map_err(|e| Error::Credential(e.to_string()))?
            }
        };
        let mut options = KeyClientOptions::default();
        options.client_options.transport = Some(transport);
        // No blind retries: a TLS or credential failure does not heal, and an import must not be re-sent without
        // first checking whether it happened. byok's own retry policy (Retry-After on 429/503) comes with import.
        options.client_options.retry = azure_core::http::RetryOptions::none();
        options.verify_challenge_resource = Some(vault.kind() != VaultKind::Other);
        let client = KeyClient::new(vault.url(), credential, Some(options))
            .map_err(|e| Error::Address(vault.url().to_owned(), e.to_string()))?;
        Ok(Self {
            client,
            vault: vault.clone(),
        })
    }

    fn service(&self, operation: &'static str, key: &str, e: &azure_core::Error) -> Error {
        let (status, code) = match e.kind() {
            azure_core::error::ErrorKind::HttpResponse { status, error_code, .. } => {
                (Some(u16::from(*status)), error_code.clone())
            }
            azure_core::error::ErrorKind::Credential => (None, Some("AuthenticationFailed".to_owned())),
            _ => (None, None),
        };
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message.push_str(&format!(": {s}"));
            source = s.source();
        }
        Error::Service {
            operation,
            vault: self.vault.url().to_owned(),
            key: key.to_owned(),
            status,
            code,
            message,
        }
    }

    /// Creates an import-only RSA-HSM Key Exchange Key of the given size.
    pub async fn create_kek(&self, name: &str, size: RsaSize) -> Result<Kek, Error> {
        let params = CreateKeyParameters {
            kty: Some(KeyType::RsaHsm),
            key_size: Some(size.bits() as i32),
            key_ops: Some(vec![KeyOperation::Import]),
            ..Default::default()
        };
        let content: RequestContent<CreateKeyParameters> = params
            .try_into()
            .map_err(|e: azure_core::Error| self.service("creating key", name, &e))?;
        let key = self
            .client
            .create_key(name, content, None)
            .await
            .and_then(|r| r.into_model())
            .map_err(|e| self.service("creating key", name, &e))?;
        kek_from(name, key.key)
    }

    /// Reads a KEK (the latest version, or `version`).
    pub async fn get_kek(&self, name: &str, version: Option<&str>) -> Result<Kek, Error> {
        let options = KeyClientGetKeyOptions {
            key_version: version.map(str::to_owned),
            ..Default::default()
        };
        let key = self
            .client
            .get_key(name, Some(options))
            .await
            .and_then(|r| r.into_model())
            .map_err(|e| self.service("reading key", name, &e))?;
        kek_from(name, key.key)
    }
}

fn kek_from(name: &str, jwk: Option<azure_security_keyvault_keys::models::JsonWebKey>) -> Result<Kek, Error> {
    let bad = |reason: &str| Error::Answer {
        key: name.to_owned(),
        reason: reason.to_owned(),
    };
    let jwk = jwk.ok_or_else(|| bad("no key material"))?;
    let kid = KeyId::parse(jwk.kid.as_deref().ok_or_else(|| bad("no kid"))?).map_err(|e| bad(&e.to_string()))?;
    let (n, e) = (
        jwk.n.ok_or_else(|| bad("not an RSA key (no n)"))?,
        jwk.e.ok_or_else(|| bad("no e"))?,
    );
    let public = KekPublicKey::from_components(&n, &e).map_err(|e| bad(&e.to_string()))?;
    let kty = jwk.kty.map(|k| k.to_string()).unwrap_or_default();
    Ok(Kek {
        kid,
        public,
        kty,
        key_ops: jwk.key_ops.unwrap_or_default(),
    })
}
