//! A private CA and a server certificate for loopback (SANs `localhost`, `127.0.0.1`), kept in the state directory
//! so that clients that trust `ca.pem` keep trusting the server across restarts.

use std::path::Path;

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};

use crate::state::{write_private, write_public};

/// PEM of the server's certificate chain and private key, and of the CA.
pub(crate) struct ServerTls {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    pub(crate) ca_pem: String,
}

pub(crate) fn load_or_create(dir: &Path) -> Result<ServerTls> {
    let (ca_file, cert_file, key_file) = (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"));
    if ca_file.exists() && cert_file.exists() && key_file.exists() {
        return Ok(ServerTls {
            cert_pem: std::fs::read_to_string(&cert_file)?,
            key_pem: std::fs::read_to_string(&key_file)?,
            ca_pem: std::fs::read_to_string(&ca_file)?,
        });
    }
    let ca_key = KeyPair::generate().context("CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "byok-emulator local CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).context("CA certificate")?;
    let issuer = Issuer::from_params(&ca_params, &ca_key);

    let server_key = KeyPair::generate().context("server key")?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).context("server parameters")?;
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().expect("an IP address")));
    params.distinguished_name.push(DnType::CommonName, "byok-emulator");
    let server_cert = params.signed_by(&server_key, &issuer).context("server certificate")?;

    let tls = ServerTls {
        cert_pem: server_cert.pem(),
        key_pem: server_key.serialize_pem(),
        ca_pem: ca_cert.pem(),
    };
    write_private(&key_file, tls.key_pem.as_bytes())?;
    write_private(&cert_file, tls.cert_pem.as_bytes())?;
    write_public(&ca_file, tls.ca_pem.as_bytes())?;
    Ok(tls)
}
