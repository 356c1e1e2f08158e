//! The official Rust SDK's client for the local Key Vault (`ClientSecretCredential` through its token endpoint, its
//! CA trusted), shared by the SDK tests and the `status` benchmark.

use std::sync::Arc;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::Secret;
use azure_core::http::Transport;
use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions};

/// A key client of the local vault `info` describes.
pub(crate) fn client(info: &byok_emulator::Info) -> KeyClient {
    let ca = std::fs::read(&info.ca_file).expect("ca.pem");
    let mut builder = reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("CA")]);
    let named = !info.vault_url.starts_with("https://127.0.0.1");
    if named {
        // A named vault: its Azure-style host name is mapped to the emulator, as /etc/hosts would.
        let host = info
            .vault_url
            .trim_start_matches("https://")
            .split(':')
            .next()
            .expect("host")
            .to_owned();
        builder = builder.resolve(&host, info.connect_to.parse().expect("address"));
    }
    let http = builder.build().expect("HTTP client");
    let transport = Transport::new(Arc::new(http));
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = info.authority_host.clone();
    let mut cred_options = ClientSecretCredentialOptions::default();
    cred_options.client_options.transport = Some(transport.clone());
    cred_options.client_options.cloud = Some(Arc::new(CloudConfiguration::Custom(cloud)));
    let credential = ClientSecretCredential::new(
        &info.tenant_id,
        info.client_id.clone(),
        Secret::new(info.client_secret.clone()),
        Some(cred_options),
    )
    .expect("credential");
    let mut options = KeyClientOptions::default();
    options.client_options.transport = Some(transport);
    if !named {
        // 127.0.0.1 is not under vault.azure.net; a named vault is, and keeps the SDK's default check on.
        options.verify_challenge_resource = Some(false);
    }
    KeyClient::new(&info.vault_url, credential, Some(options)).expect("key client")
}
