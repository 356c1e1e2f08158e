//! Key identifiers: `https://{host}/keys/{name}/{version}`.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// The kind of service a host name belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VaultKind {
    /// Azure Key Vault (`*.vault.azure.net` and the sovereign clouds' equivalents).
    KeyVault,
    /// Azure Key Vault Managed HSM (`*.managedhsm.azure.net`, …).
    ManagedHsm,
    /// Any other host, such as a local Key Vault.
    Other,
}

impl VaultKind {
    /// A short human name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::KeyVault => "Key Vault",
            Self::ManagedHsm => "Managed HSM",
            Self::Other => "other (not an Azure host name)",
        }
    }

    /// `key-vault`, `managed-hsm` or `other`: the stable identifier in JSON.
    pub const fn id(self) -> &'static str {
        match self {
            Self::KeyVault => "key-vault",
            Self::ManagedHsm => "managed-hsm",
            Self::Other => "other",
        }
    }

    /// The kind of a host, from its DNS suffix.
    pub fn of_host(host: &str) -> Self {
        const VAULT: [&str; 4] = [
            ".vault.azure.net",
            ".vault.azure.cn",
            ".vault.usgovcloudapi.net",
            ".vault.microsoftazure.de",
        ];
        const MHSM: [&str; 3] = [
            ".managedhsm.azure.net",
            ".managedhsm.azure.cn",
            ".managedhsm.usgovcloudapi.net",
        ];
        let host = host.to_ascii_lowercase();
        let host = host.strip_suffix('.').unwrap_or(&host);
        if VAULT.iter().any(|s| host.ends_with(s)) {
            Self::KeyVault
        } else if MHSM.iter().any(|s| host.ends_with(s)) {
            Self::ManagedHsm
        } else {
            Self::Other
        }
    }
}

impl fmt::Display for VaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A versioned key identifier, e.g. `https://contoso.vault.azure.net/keys/kek/0123456789abcdef0123456789abcdef`.
///
/// A BYOK blob names its KEK by such an identifier; it must belong to the vault the key is imported into.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyId {
    vault_url: String,
    host: String,
    name: String,
    version: String,
}

impl KeyId {
    /// Parses and checks a versioned key identifier: https, a host, `/keys/{name}/{version}` with a key name of
    /// 1 to 127 letters, digits and dashes and a version of 32 hexadecimal digits; no query, fragment or user.
    pub fn parse(kid: &str) -> Result<Self, Error> {
        let err = |reason: &str| Error::Kid {
            kid: kid.to_owned(),
            reason: reason.to_owned(),
        };
        let url = url::Url::parse(kid).map_err(|e| err(&format!("not a URL ({e})")))?;
        if url.scheme() != "https" {
            return Err(err("the scheme must be https"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(err("it must not carry user information"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(err("it must not have a query or fragment"));
        }
        let host = url.host_str().ok_or_else(|| err("it has no host"))?.to_owned();
        let segments: Vec<&str> = url.path_segments().map(Iterator::collect).unwrap_or_default();
        let (name, version) = match segments.as_slice() {
            ["keys", _] | ["keys", _, ""] => return Err(err("it has no version")),
            ["keys", name, version] => (*name, *version),
            _ => return Err(err("the path must be /keys/{name}/{version}")),
        };
        if name.is_empty() || name.len() > 127 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(err("the key name must be 1 to 127 letters, digits or dashes"));
        }
        if version.len() != 32 || !version.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err("the version must be 32 hexadecimal digits"));
        }
        let vault_url = match url.port() {
            Some(port) => format!("https://{host}:{port}"),
            None => format!("https://{host}"),
        };
        Ok(Self {
            vault_url,
            host,
            name: name.to_owned(),
            version: version.to_owned(),
        })
    }

    /// `https://{host}[:port]`, without a trailing slash.
    pub fn vault_url(&self) -> &str {
        &self.vault_url
    }

    /// The host name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key's version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Whether the host is a Key Vault, a Managed HSM, or something else.
    pub fn vault_kind(&self) -> VaultKind {
        VaultKind::of_host(&self.host)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/keys/{}/{}", self.vault_url, self.name, self.version)
    }
}

impl FromStr for KeyId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: &str = "0123456789abcdef0123456789ABCDEF";

    #[test]
    fn accepts_vault_hsm_and_local() {
        let kid = KeyId::parse(&format!("https://contoso.vault.azure.net/keys/my-kek/{V}")).expect("valid");
        assert_eq!(kid.vault_url(), "https://contoso.vault.azure.net");
        assert_eq!(kid.name(), "my-kek");
        assert_eq!(kid.version(), V);
        assert_eq!(kid.vault_kind(), VaultKind::KeyVault);
        assert_eq!(
            kid.to_string(),
            format!("https://contoso.vault.azure.net/keys/my-kek/{V}")
        );

        let hsm = KeyId::parse(&format!("https://h.managedhsm.azure.net/keys/k/{V}")).expect("valid");
        assert_eq!(hsm.vault_kind(), VaultKind::ManagedHsm);
        let local = KeyId::parse(&format!("https://127.0.0.1:8443/keys/k/{V}")).expect("valid");
        assert_eq!(local.vault_url(), "https://127.0.0.1:8443");
        assert_eq!(local.vault_kind(), VaultKind::Other);
    }

    #[test]
    fn refuses_with_reason() {
        let reason = |kid: &str| match KeyId::parse(kid) {
            Err(Error::Kid { reason, .. }) => reason,
            other => panic!("{kid}: {other:?}"),
        };
        assert!(reason("my-kek").starts_with("not a URL"));
        assert_eq!(
            reason(&format!("http://v.vault.azure.net/keys/k/{V}")),
            "the scheme must be https"
        );
        assert_eq!(reason("https://v.vault.azure.net/keys/k"), "it has no version");
        assert_eq!(reason("https://v.vault.azure.net/keys/k/"), "it has no version");
        assert_eq!(
            reason("https://v.vault.azure.net/keys/k/123"),
            "the version must be 32 hexadecimal digits"
        );
        assert_eq!(
            reason(&format!("https://v.vault.azure.net/secrets/k/{V}")),
            "the path must be /keys/{name}/{version}"
        );
        assert_eq!(
            reason(&format!("https://v.vault.azure.net/keys/k_1/{V}")),
            "the key name must be 1 to 127 letters, digits or dashes"
        );
        assert_eq!(
            reason(&format!("https://v.vault.azure.net/keys/k/{V}?x=1")),
            "it must not have a query or fragment"
        );
    }
}
