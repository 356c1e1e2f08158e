//! The connection to one vault: the client, byok's retries around each call, the error each failure becomes, and
//! the reads and writes BYOK needs apart from the import (KEK creation and reads, key reads, one AES block).

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use azure_core::http::RetryOptions;
use azure_security_keyvault_keys::models::{
    CreateKeyParameters, EncryptionAlgorithm, Key, KeyClientEncryptOptions, KeyClientGetKeyAttestationOptions,
    KeyClientGetKeyOptions, KeyOperation, KeyOperationParameters, KeyType,
};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions};
use byok_encoding::{AesSize, RsaSize};

use crate::convert::{describe, kek_from, short, vault_key};
use crate::host::AudienceGuard;
use crate::pace::{Pace, Pacer};
use crate::retry::{self, Failure, RetryPolicy};
use crate::transport::{self, ProxyEnv, Timeouts};
use crate::{Cause, Credential, Error, Kek, Vault, VaultKey};

type Observer = Arc<dyn Fn(&str) + Send + Sync>;

/// A connection to one vault.
pub struct Connection {
    pub(crate) client: KeyClient,
    pub(crate) vault: Vault,
    pub(crate) retry: RetryPolicy,
    observer: Option<Observer>,
    /// Key creations paced to what the vault admits (`pace`).
    pacer: Pacer,
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
            pacer: Pacer::default(),
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

    pub(crate) fn notify(&self, line: &str) {
        if let Some(o) = &self.observer {
            o(line);
        }
    }

    pub(crate) fn service(&self, operation: &'static str, key: &str, e: &azure_core::Error) -> Error {
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

    /// How the vault's key creations (imports, KEK creation) were paced: admitted, throttled, the rate learnt.
    pub fn pace(&self) -> Pace {
        self.pacer.pace()
    }

    /// [`Connection::send`] for a key creation: each attempt waits for the pacer, which learns from its outcome.
    pub(crate) async fn send_create<T, F, Fut>(
        &self,
        operation: &'static str,
        key: &str,
        mut call: F,
    ) -> Result<T, (Failure, azure_core::Error)>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = azure_core::Result<T>>,
    {
        self.send(operation, key, false, || {
            let attempt = call();
            async move {
                let booking = self.pacer.acquire().await;
                let result = attempt.await;
                self.pacer
                    .outcome(booking, result.as_ref().err().and_then(retry::throttled));
                result
            }
        })
        .await
    }

    /// Runs `call`, retrying what the policy allows. Returns the last failure's kind with the error.
    pub(crate) async fn send<T, F, Fut>(
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
            if retry::throttled(&e).is_some() {
                self.pacer.count_throttled();
            }
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
            .send_create("creating key", name, || async move {
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
        kek_from(name, key)
    }

    /// Reads a KEK (the latest version, or `version`).
    pub async fn get_kek(&self, name: &str, version: Option<&str>) -> Result<Kek, Error> {
        let key = self.read("reading key", name, version).await?;
        kek_from(name, key)
    }

    /// Reads any key's public properties (the latest version, or `version`).
    pub async fn get_key(&self, name: &str, version: Option<&str>) -> Result<VaultKey, Error> {
        let key = self.read("reading key", name, version).await?;
        vault_key(name, key)
    }

    /// A key version's attestation (Managed HSM, api-version 7.6 and later): the service's JSON as it came — the key
    /// bundle with `attributes.attestation` — for `byok-attestation` to verify; at most 256 KiB.
    pub async fn get_attestation(&self, name: &str, version: &str) -> Result<Vec<u8>, Error> {
        const OP: &str = "reading the attestation of key";
        const MAX: usize = 256 * 1024;
        let client = &self.client;
        let body = self
            .send(OP, name, true, || async move {
                // Always with a version: without one the SDK asks for `/keys/{name}//attestation`.
                let options = KeyClientGetKeyAttestationOptions {
                    key_version: Some(version.to_owned()),
                    ..Default::default()
                };
                let response = client.get_key_attestation(name, Some(options)).await?;
                Ok(response.into_body().as_ref().to_vec())
            })
            .await
            .map_err(|(_, e)| self.service(OP, name, &e))?;
        if body.len() > MAX {
            return Err(Error::Answer {
                key: name.to_owned(),
                reason: format!("an attestation of {} bytes (at most {MAX})", body.len()),
            });
        }
        Ok(body)
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
