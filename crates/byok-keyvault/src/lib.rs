#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod connection;
mod convert;
mod credential;
pub mod host;
mod import;
mod list;
mod model;
mod pace;
mod request;
mod retry;
mod transport;

use std::fmt;

use byok_blob::VaultKind;

pub use connection::Connection;
pub use credential::{AuthKind, Credential};
pub use list::{KeyItem, KeyUpdate, MAX_LISTED};
pub use model::{Imported, Kek, KeyOp, KeyType, TRANSFER_TAG, Timestamp, VaultKey, tags};
pub use pace::Pace;
pub use request::{ImportRequest, check_key_name};
pub use retry::RetryPolicy;
pub use transport::{MAX_ANSWER_BYTES, Timeouts};

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
    /// The extra CA given to trust is unusable (the reason; the caller knows the file).
    #[error("the CA file is unusable: {0}")]
    CaFile(String),
    /// `--auth auto` found nothing to authenticate with.
    #[error(
        "no credential available: set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (a service principal), \
         or AZURE_FEDERATED_TOKEN_FILE (workload identity), run on a host with a managed identity, or sign in with `az login`"
    )]
    NoCredential,
    /// The request is not one the vault would accept; nothing was sent.
    #[error("{0}")]
    Request(String),
    /// The service (or the network) refused an operation, or byok refused what came back.
    #[error("{operation} `{key}` in {vault} failed{}: {message}", cause.http())]
    Service {
        /// `creating key`, `reading key`, …
        operation: &'static str,
        /// The vault URL.
        vault: String,
        /// The key name.
        key: String,
        /// Why: the service's HTTP answer, or a condition byok found.
        cause: Cause,
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

impl Error {
    /// Why an operation failed, when it reached the network.
    pub fn cause(&self) -> Option<&Cause> {
        match self {
            Self::Service { cause, .. } => Some(cause),
            _ => None,
        }
    }

    /// The HTTP status the vault answered with, when it answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self.cause() {
            Some(Cause::Status { status, .. }) => Some(*status),
            _ => None,
        }
    }

    /// Whether the vault said the key (or version) does not exist (HTTP 404).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

/// Why an operation on the vault failed: what the service answered, or which of byok's own conditions held.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cause {
    /// The service answered with an error status and, usually, its error code (`BadParameter`, `KeyNotFound`, …).
    Status {
        /// The HTTP status.
        status: u16,
        /// The service's error code.
        code: Option<String>,
    },
    /// No access token: the credential was refused, or its token endpoint failed.
    Authentication,
    /// The request was sent and its answer lost, and the vault's state does not tell whether it took effect; byok
    /// did not send it again.
    Ambiguous,
    /// The vault asked for a token for an audience that is not Key Vault's or Managed HSM's; none was fetched.
    AudienceRefused,
    /// The vault or the token endpoint answered with a redirect, which neither ever sends; it was not followed.
    Redirect,
    /// The answer is not a Key Vault answer (a proxy's page, a captive portal, another service).
    NotKeyVault,
    /// The answer is larger than [`MAX_ANSWER_BYTES`]; it was not read.
    AnswerTooLarge,
    /// No answer: the connection, TLS or a timeout failed (after the retries the policy allows).
    Unreachable,
}

impl Cause {
    /// ` (HTTP 404, KeyNotFound)` for an HTTP answer, nothing otherwise: what the error's first line shows.
    fn http(&self) -> String {
        match self {
            Self::Status { status, code } => {
                format!(
                    " (HTTP {status}{})",
                    code.as_ref().map(|c| format!(", {c}")).unwrap_or_default()
                )
            }
            _ => String::new(),
        }
    }
}

/// A Key Vault or Managed HSM, by its URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vault {
    url: String,
}

impl Vault {
    /// `https://{name}.vault.azure.net`.
    pub fn from_vault_name(name: &str) -> Result<Self, Error> {
        check_vault_name(name)?;
        Self::from_url(&format!("https://{name}.vault.azure.net"))
    }

    /// `https://{name}.managedhsm.azure.net`.
    pub fn from_hsm_name(name: &str) -> Result<Self, Error> {
        check_vault_name(name)?;
        Self::from_url(&format!("https://{name}.managedhsm.azure.net"))
    }

    /// Any https URL (a local Key Vault included). http is refused: tokens would travel in clear. The host is
    /// normalised (lowercase, without a trailing dot) so that it is classified as what it is.
    pub fn from_url(url: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::Address(url.to_owned(), why.to_owned());
        let trimmed = url.trim_end_matches('/');
        let rest = trimmed
            .strip_prefix("https://")
            .ok_or_else(|| bad("only https is accepted"))?;
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            return Err(bad("expected https://host[:port]"));
        }
        let parsed = url::Url::parse(trimmed).map_err(|e| bad(&format!("expected https://host[:port] ({e})")))?;
        let host = parsed.host_str().map(host::normalise).filter(|h| !h.is_empty());
        let host = host.ok_or_else(|| bad("expected https://host[:port]"))?;
        let shown = if host.contains(':') { format!("[{host}]") } else { host };
        let url = match parsed.port() {
            Some(port) => format!("https://{shown}:{port}"),
            None => format!("https://{shown}"),
        };
        Ok(Self { url })
    }

    /// The URL, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The host, normalised (IPv6 without brackets).
    pub fn host(&self) -> String {
        url::Url::parse(&self.url)
            .ok()
            .and_then(|u| u.host_str().map(host::normalise))
            .unwrap_or_default()
    }

    /// Key Vault, Managed HSM, or another host (a local Key Vault).
    pub fn kind(&self) -> VaultKind {
        VaultKind::of_host(&self.host())
    }

    /// Whether the vault is on this machine (127.0.0.0/8, ::1, `localhost`): the local Key Vault.
    pub fn is_loopback(&self) -> bool {
        host::is_loopback(&self.host())
    }
}

impl fmt::Display for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl Vault {
    /// Whether a key identifier names a key of this vault (scheme and host compared case-insensitively; `:443` is
    /// the default port).
    pub fn owns(&self, kid: &byok_blob::KeyId) -> bool {
        let norm = |u: &str| {
            u.to_ascii_lowercase()
                .trim_end_matches('/')
                .trim_end_matches(":443")
                .to_owned()
        };
        norm(kid.vault_url()) == norm(&self.url)
    }
}

/// Whether `name` can name a Key Vault or Managed HSM (Azure's rule): 3 to 24 letters, digits and dashes, starting
/// with a letter, not ending with a dash, no two dashes in a row. A name is never a host: `a.b` or `x/y` would
/// address another server.
pub fn check_vault_name(name: &str) -> Result<(), Error> {
    let ok = (3..=24).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && !name.ends_with('-')
        && !name.contains("--");
    if !ok {
        return Err(Error::Request(format!(
            "`{name}` is not a vault name: 3 to 24 letters, digits and single dashes, starting with a letter \
             (for a full address use --vault-url)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            Vault::from_vault_name("contoso").map(|v| v.kind()),
            Ok(VaultKind::KeyVault)
        );
        assert_eq!(
            Vault::from_hsm_name("contoso").map(|v| v.kind()),
            Ok(VaultKind::ManagedHsm)
        );
        assert!(matches!(Vault::from_url("http://127.0.0.1:8443"), Err(Error::Address(_, r)) if r.contains("https")));
        assert!(Vault::from_url("https://h/keys").is_err());
        let v = Vault::from_url("https://Contoso.vault.azure.net/").expect("valid");
        let kid = |s: &str| byok_blob::KeyId::parse(s).expect("valid kid");
        assert!(v.owns(&kid(
            "https://contoso.vault.azure.net/keys/k/0123456789abcdef0123456789abcdef"
        )));
        assert!(v.owns(&kid(
            "https://contoso.vault.azure.net:443/keys/k/0123456789abcdef0123456789abcdef"
        )));
        assert!(!v.owns(&kid(
            "https://fabrikam.vault.azure.net/keys/k/0123456789abcdef0123456789abcdef"
        )));
        let dotted = Vault::from_url("https://Contoso.Vault.Azure.Net.:8443").expect("valid");
        assert_eq!(dotted.url(), "https://contoso.vault.azure.net:8443");
        assert_eq!(
            dotted.kind(),
            VaultKind::KeyVault,
            "a trailing dot does not hide the kind"
        );
        assert!(!dotted.is_loopback());
        assert!(Vault::from_url("https://127.0.0.1:8443").expect("valid").is_loopback());
        assert!(Vault::from_url("https://[::1]:8443").expect("valid").is_loopback());
        assert!(!Vault::from_url("https://10.1.2.3").expect("valid").is_loopback());
    }
}
