//! Credentials: which kinds, where their settings come from, and the order `auto` tries them in.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, RetryOptions, Transport};
use azure_identity::{
    AzureCliCredential, AzureCliCredentialOptions, ClientAssertionCredentialOptions, ClientSecretCredential,
    ClientSecretCredentialOptions, ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use zeroize::Zeroizing;

use crate::Error;

/// Which kind of credential to use (`--auth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthKind {
    /// The first available of: client secret, workload identity, managed identity, Azure CLI.
    Auto,
    /// The Azure CLI's signed-in account (`az account get-access-token`).
    Cli,
    /// A service principal's secret: `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`.
    ClientSecret,
    /// The managed identity of the Azure VM or App Service byok runs on (`AZURE_CLIENT_ID` picks a user-assigned
    /// one).
    ManagedIdentity,
    /// A federated token (Kubernetes workload identity, CI OIDC): `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
    /// `AZURE_FEDERATED_TOKEN_FILE`.
    WorkloadIdentity,
}

impl AuthKind {
    /// Every kind, as `--auth` names them.
    pub const NAMES: [&'static str; 5] = ["auto", "cli", "client-secret", "managed-identity", "workload-identity"];
}

impl FromStr for AuthKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => Self::Auto,
            "cli" => Self::Cli,
            "client-secret" => Self::ClientSecret,
            "managed-identity" => Self::ManagedIdentity,
            "workload-identity" => Self::WorkloadIdentity,
            _ => {
                return Err(format!(
                    "unknown credential kind `{s}` (expected {})",
                    Self::NAMES.join(", ")
                ));
            }
        })
    }
}

/// How to authenticate, with what it needs.
pub enum Credential {
    /// A service principal's client secret.
    ClientSecret {
        /// Tenant id.
        tenant_id: String,
        /// Client (application) id.
        client_id: String,
        /// The secret.
        secret: Zeroizing<String>,
        /// `https://login.microsoftonline.com` unless given (`AZURE_AUTHORITY_HOST`; a local Key Vault).
        authority_host: Option<String>,
    },
    /// A federated token in a file, exchanged for an access token.
    WorkloadIdentity {
        /// Tenant id.
        tenant_id: String,
        /// Client (application) id.
        client_id: String,
        /// The file holding the federated token (re-read as it is rotated).
        token_file: PathBuf,
        /// As for the client secret.
        authority_host: Option<String>,
    },
    /// The host's managed identity.
    ManagedIdentity {
        /// A user-assigned identity's client id; the system-assigned one when absent.
        client_id: Option<String>,
    },
    /// The Azure CLI's signed-in account.
    AzureCli {
        /// A tenant other than the CLI's default.
        tenant_id: Option<String>,
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
            Self::WorkloadIdentity {
                tenant_id,
                client_id,
                token_file,
                authority_host,
            } => f
                .debug_struct("WorkloadIdentity")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("token_file", token_file)
                .field("authority_host", authority_host)
                .finish(),
            Self::ManagedIdentity { client_id } => {
                f.debug_struct("ManagedIdentity").field("client_id", client_id).finish()
            }
            Self::AzureCli { tenant_id } => f.debug_struct("AzureCli").field("tenant_id", tenant_id).finish(),
        }
    }
}

impl Credential {
    /// `client-secret`, `workload-identity`, … as `--auth` names it.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::ClientSecret { .. } => "client-secret",
            Self::WorkloadIdentity { .. } => "workload-identity",
            Self::ManagedIdentity { .. } => "managed-identity",
            Self::AzureCli { .. } => "cli",
        }
    }

    /// Builds the credential of `kind` from the process environment (the conventional `AZURE_*` variables).
    pub fn from_env(kind: AuthKind) -> Result<Self, Error> {
        Self::from_lookup(kind, |k| std::env::var(k).ok(), azure_cli_on_path)
    }

    /// As [`Credential::from_env`], with the variables and the Azure CLI's presence supplied by the caller.
    pub fn from_lookup(
        kind: AuthKind,
        var: impl Fn(&str) -> Option<String>,
        cli_present: impl Fn() -> bool,
    ) -> Result<Self, Error> {
        let get = |k: &str| var(k).filter(|v| !v.is_empty());
        let require =
            |k: &str, why: &str| get(k).ok_or_else(|| Error::Credential(format!("{why} needs {k}, which is not set")));
        let authority_host = get("AZURE_AUTHORITY_HOST");
        let client_secret = || -> Result<Self, Error> {
            let why = "--auth client-secret";
            Ok(Self::ClientSecret {
                tenant_id: require("AZURE_TENANT_ID", why)?,
                client_id: require("AZURE_CLIENT_ID", why)?,
                secret: Zeroizing::new(require("AZURE_CLIENT_SECRET", why)?),
                authority_host: authority_host.clone(),
            })
        };
        let workload = || -> Result<Self, Error> {
            let why = "--auth workload-identity";
            Ok(Self::WorkloadIdentity {
                tenant_id: require("AZURE_TENANT_ID", why)?,
                client_id: require("AZURE_CLIENT_ID", why)?,
                token_file: require("AZURE_FEDERATED_TOKEN_FILE", why)?.into(),
                authority_host: authority_host.clone(),
            })
        };
        let managed = || Self::ManagedIdentity {
            client_id: get("AZURE_CLIENT_ID"),
        };
        let cli = || Self::AzureCli {
            tenant_id: get("AZURE_TENANT_ID"),
        };
        match kind {
            AuthKind::ClientSecret => client_secret(),
            AuthKind::WorkloadIdentity => workload(),
            AuthKind::ManagedIdentity => Ok(managed()),
            AuthKind::Cli => Ok(cli()),
            AuthKind::Auto => {
                if get("AZURE_CLIENT_SECRET").is_some() {
                    client_secret()
                } else if get("AZURE_FEDERATED_TOKEN_FILE").is_some() {
                    workload()
                } else if get("IDENTITY_ENDPOINT").is_some() || get("MSI_ENDPOINT").is_some() {
                    Ok(managed())
                } else if cli_present() {
                    Ok(cli())
                } else {
                    Err(Error::NoCredential)
                }
            }
        }
    }

    pub(crate) fn build(self, transport: &Transport) -> Result<Arc<dyn TokenCredential>, Error> {
        let client_options = |authority_host: Option<String>| {
            let mut o = ClientOptions {
                transport: Some(transport.clone()),
                retry: RetryOptions::none(),
                ..Default::default()
            };
            if let Some(host) = authority_host {
                let mut cloud = CustomConfiguration::default();
                cloud.authority_host = host;
                o.cloud = Some(Arc::new(CloudConfiguration::Custom(cloud)));
            }
            o
        };
        let failed = |e: azure_core::Error| Error::Credential(e.to_string());
        Ok(match self {
            Self::ClientSecret {
                tenant_id,
                client_id,
                secret,
                authority_host,
            } => {
                let options = ClientSecretCredentialOptions {
                    client_options: client_options(authority_host),
                };
                ClientSecretCredential::new(&tenant_id, client_id, Secret::new(secret.to_string()), Some(options))
                    .map_err(failed)?
            }
            Self::WorkloadIdentity {
                tenant_id,
                client_id,
                token_file,
                authority_host,
            } => {
                check_token_file(&token_file)?;
                let options = WorkloadIdentityCredentialOptions {
                    credential_options: ClientAssertionCredentialOptions {
                        client_options: client_options(authority_host),
                    },
                    client_id: Some(client_id),
                    tenant_id: Some(tenant_id),
                    token_file_path: Some(token_file),
                };
                WorkloadIdentityCredential::new(Some(options)).map_err(failed)?
            }
            Self::ManagedIdentity { client_id } => {
                let options = ManagedIdentityCredentialOptions {
                    user_assigned_id: client_id.map(UserAssignedId::ClientId),
                    client_options: client_options(None),
                };
                ManagedIdentityCredential::new(Some(options)).map_err(failed)?
            }
            Self::AzureCli { tenant_id } => {
                let options = AzureCliCredentialOptions {
                    tenant_id,
                    ..Default::default()
                };
                AzureCliCredential::new(Some(options)).map_err(failed)?
            }
        })
    }
}

fn check_token_file(path: &Path) -> Result<(), Error> {
    match std::fs::read(path) {
        Ok(t) if !t.iter().all(u8::is_ascii_whitespace) => Ok(()),
        Ok(_) => Err(Error::Credential(format!(
            "the federated token file {} is empty",
            path.display()
        ))),
        Err(e) => Err(Error::Credential(format!(
            "cannot read the federated token file {}: {e}",
            path.display()
        ))),
    }
}

/// Whether an `az` executable is on `PATH`.
fn azure_cli_on_path() -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join("az").is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn auto_tries_in_the_documented_order() {
        let all = &[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "s"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/f"),
            ("IDENTITY_ENDPOINT", "http://localhost"),
        ];
        let kind =
            |vars, cli| Credential::from_lookup(AuthKind::Auto, lookup(vars), move || cli).map(|c| c.kind_name());
        assert_eq!(kind(all, true), Ok("client-secret"));
        assert_eq!(
            kind(&all[3..], true).err(),
            Some(Error::Credential(
                "--auth workload-identity needs AZURE_TENANT_ID, which is not set".into()
            ))
        );
        assert_eq!(
            kind(
                &[
                    ("AZURE_TENANT_ID", "t"),
                    ("AZURE_CLIENT_ID", "c"),
                    ("AZURE_FEDERATED_TOKEN_FILE", "/f")
                ],
                true
            ),
            Ok("workload-identity")
        );
        assert_eq!(kind(&all[4..], true), Ok("managed-identity"));
        assert_eq!(
            kind(&[("AZURE_CLIENT_SECRET", "")], true),
            Ok("cli"),
            "an empty variable is unset"
        );
        assert_eq!(kind(&[], false), Err(Error::NoCredential));
    }

    #[test]
    fn explicit_kinds_name_what_is_missing() {
        let err = Credential::from_lookup(AuthKind::ClientSecret, lookup(&[("AZURE_TENANT_ID", "t")]), || false)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("invalid credential: --auth client-secret needs AZURE_CLIENT_ID, which is not set")
        );
        let shown = format!(
            "{:?}",
            Credential::from_lookup(
                AuthKind::ClientSecret,
                lookup(&[
                    ("AZURE_TENANT_ID", "t"),
                    ("AZURE_CLIENT_ID", "c"),
                    ("AZURE_CLIENT_SECRET", "hunter2")
                ]),
                || false
            )
            .expect("complete")
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
