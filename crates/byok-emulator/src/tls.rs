//! A private CA, kept in the state directory so that clients that trust `ca.pem` keep trusting the server across
//! restarts, and a server certificate issued by it at every start for the names the vault answers to: `localhost`,
//! `127.0.0.1`, and with `--name` the vault's Azure-style host name.

use std::path::Path;

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};

use crate::state::{write_private, write_public};

/// PEM of the server's certificate and private key, and of the CA.
pub(crate) struct ServerTls {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

fn ca_params() -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    params
        .distinguished_name
        .push(DnType::CommonName, "byok-emulator local CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

/// Loads the CA (making it on first use) and issues a server certificate for `extra_host` besides loopback.
pub(crate) fn server_certificate(dir: &Path, extra_host: Option<&str>) -> Result<ServerTls> {
    let (ca_file, ca_key_file) = (dir.join("ca.pem"), dir.join("ca.key"));
    let ca_key = if ca_key_file.exists() && ca_file.exists() {
        KeyPair::from_pem(&std::fs::read_to_string(&ca_key_file)?).context("the CA key in the state directory")?
    } else {
        let key = KeyPair::generate().context("CA key")?;
        let cert = ca_params()?.self_signed(&key).context("CA certificate")?;
        write_private(&ca_key_file, key.serialize_pem().as_bytes())?;
        write_public(&ca_file, cert.pem().as_bytes())?;
        key
    };
    // The issuer is named by the same parameters the CA certificate was made from.
    let ca_params = ca_params()?;
    let issuer = Issuer::from_params(&ca_params, &ca_key);

    let mut names = vec!["localhost".to_owned()];
    names.extend(extra_host.map(str::to_owned));
    let server_key = KeyPair::generate().context("server key")?;
    let mut params = CertificateParams::new(names).context("server parameters")?;
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().expect("an IP address")));
    params.distinguished_name.push(DnType::CommonName, "byok-emulator");
    let cert = params.signed_by(&server_key, &issuer).context("server certificate")?;
    Ok(ServerTls {
        cert_pem: cert.pem(),
        key_pem: server_key.serialize_pem(),
    })
}
