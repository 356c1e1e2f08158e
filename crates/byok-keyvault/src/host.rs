//! Which hosts byok talks to and which tokens it will fetch for them. A token goes to whoever the vault URL names,
//! so the URL decides nothing alone: a token is only ever asked for a Key Vault or Managed HSM audience, and the
//! vault's host must lie in that audience's domain unless it is this machine (the local Key Vault).

use std::net::IpAddr;
use std::sync::Arc;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};

/// The audiences of Key Vault and Managed HSM in the public and sovereign clouds: the only resources byok asks
/// Entra tokens for.
pub const AUDIENCES: [&str; 7] = [
    "https://vault.azure.net",
    "https://vault.azure.cn",
    "https://vault.usgovcloudapi.net",
    "https://vault.microsoftazure.de",
    "https://managedhsm.azure.net",
    "https://managedhsm.azure.cn",
    "https://managedhsm.usgovcloudapi.net",
];

/// A host as byok compares it: lowercase, without one trailing dot (`Contoso.vault.azure.net.` is
/// `contoso.vault.azure.net`), IPv6 without brackets.
pub fn normalise(host: &str) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// Whether a (normalised) host is this machine: 127.0.0.0/8, ::1, or `localhost`.
pub fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The audience a token scope asks for (`https://vault.azure.net/.default` → `https://vault.azure.net`), if it is
/// one of [`AUDIENCES`].
fn allowed(scope: &str) -> bool {
    let resource = scope.strip_suffix("/.default").unwrap_or(scope).trim_end_matches('/');
    AUDIENCES.iter().any(|a| a.eq_ignore_ascii_case(resource))
}

/// A credential that fetches tokens for Key Vault and Managed HSM audiences only, whatever a vault's challenge
/// asks for: a fake vault that asks for `https://management.azure.com` gets an error, not an ARM token.
#[derive(Debug)]
pub(crate) struct AudienceGuard {
    inner: Arc<dyn TokenCredential>,
    vault: String,
}

impl AudienceGuard {
    pub(crate) fn wrap(inner: Arc<dyn TokenCredential>, vault: &str) -> Arc<dyn TokenCredential> {
        Arc::new(Self {
            inner,
            vault: vault.to_owned(),
        })
    }
}

#[async_trait::async_trait]
impl TokenCredential for AudienceGuard {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        if let Some(bad) = scopes.iter().find(|s| !allowed(s)).or(scopes.is_empty().then_some(&"")) {
            return Err(crate::transport::Refusal::error(
                crate::Cause::AudienceRefused,
                format!(
                    "{} asked for a token for `{bad}`, which is not a Key Vault or Managed HSM audience; byok does not \
                     fetch it (a genuine vault asks for https://vault.azure.net or https://managedhsm.azure.net — \
                     check the vault URL)",
                    self.vault
                ),
            ));
        }
        self.inner.get_token(scopes, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_normalised_and_classified() {
        assert_eq!(normalise("Contoso.Vault.Azure.NET."), "contoso.vault.azure.net");
        assert_eq!(normalise("[::1]"), "::1");
        for h in ["127.0.0.1", "127.8.9.10", "::1", "localhost"] {
            assert!(is_loopback(&normalise(h)), "{h}");
        }
        for h in [
            "10.0.0.1",
            "192.168.1.1",
            "localhost.evil.com",
            "contoso.vault.azure.net",
            "::2",
        ] {
            assert!(!is_loopback(&normalise(h)), "{h}");
        }
    }

    #[test]
    fn only_vault_audiences_are_allowed() {
        assert!(allowed("https://vault.azure.net/.default"));
        assert!(allowed("https://managedhsm.azure.net/.default"));
        assert!(allowed("https://vault.usgovcloudapi.net/"));
        assert!(!allowed("https://management.azure.com/.default"));
        assert!(!allowed("https://graph.microsoft.com/.default"));
        assert!(!allowed("https://vault.azure.net.evil.com/.default"));
        assert!(!allowed("https://storage.azure.com"));
    }
}
