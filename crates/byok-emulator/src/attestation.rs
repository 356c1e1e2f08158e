//! The local Managed HSM's key attestations, in the service's `MRVL-1` format but signed by a chain of its own: a
//! test "vendor root" → card → partition key, and a self-signed pool certificate that also certifies the partition
//! key. The root's key is made when a Managed HSM first starts (its public key is `attestation-root.pem`, which a
//! client trusts only when told to: `--attestation-root`), the other three on the first attestation request; all
//! are kept in `attestation/` (0600).

use std::path::Path;

use anyhow::{Context, Result};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PKCS_RSA_SHA256, RsaKeySize};

use crate::state::{write_private, write_public};

/// A key of the chain, from `attestation/NAME.key` in the state directory, made on first use.
fn key(dir: &Path, name: &str) -> Result<KeyPair> {
    let file = dir.join("attestation").join(format!("{name}.key"));
    if file.exists() {
        let pem = std::fs::read_to_string(&file)?;
        return KeyPair::from_pem_and_sign_algo(&pem, &PKCS_RSA_SHA256).with_context(|| format!("{}", file.display()));
    }
    std::fs::create_dir_all(dir.join("attestation"))?;
    let key = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).context("an attestation key")?;
    write_private(&file, key.serialize_pem().as_bytes())?;
    Ok(key)
}

/// The test root's key, and its public key written as `attestation-root.pem` for clients.
pub(crate) fn root(dir: &Path) -> Result<KeyPair> {
    let root = key(dir, "root")?;
    write_public(&dir.join("attestation-root.pem"), root.public_key_pem().as_bytes())?;
    Ok(root)
}

/// What signs attestations: the partition key, and the bundle that chains it to the root and to the pool.
pub(crate) struct Authority {
    partition: RsaKeyPair,
    bundle_pem: String,
}

impl Authority {
    /// Loads the keys from `dir` (making them on first use) and issues the four certificates.
    pub(crate) fn load_or_create(dir: &Path) -> Result<Self> {
        let (root, card, partition, pool) = (root(dir)?, key(dir, "card")?, key(dir, "partition")?, key(dir, "pool")?);
        let root_params = params("byok-emulator test vendor root (not Marvell)", true)?;
        let card_params = params("HSM:BYOK-EMULATOR-CARD, test only", true)?;
        let partition_name = "HSM:BYOK-EMULATOR:PARTN:1, test only";
        let pool_params = params("byok-emulator pool", true)?;
        let root_issuer = Issuer::from_params(&root_params, &root);
        let card_cert = card_params.signed_by(&card, &root_issuer)?;
        let card_issuer = Issuer::from_params(&card_params, &card);
        let partition_cert = params(partition_name, false)?.signed_by(&partition, &card_issuer)?;
        let pool_cert = pool_params.self_signed(&pool)?;
        let pool_issuer = Issuer::from_params(&pool_params, &pool);
        let pool_partition = params(partition_name, false)?.signed_by(&partition, &pool_issuer)?;
        let bundle_pem = [
            card_cert.pem(),
            partition_cert.pem(),
            pool_cert.pem(),
            pool_partition.pem(),
        ]
        .concat();
        let partition = RsaKeyPair::from_pkcs8(&partition.serialize_der()).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self { partition, bundle_pem })
    }

    /// The certificate bundle, PEM.
    pub(crate) fn bundle(&self) -> &str {
        &self.bundle_pem
    }

    /// `data` followed by the partition key's signature over it (RSASSA-PKCS1-v1_5 SHA-256, as firmware 3.x signs).
    pub(crate) fn sign(&self, data: &[u8]) -> Result<Vec<u8>> {
        let mut signature = vec![0u8; self.partition.public_modulus_len()];
        self.partition
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), data, &mut signature)
            .map_err(|_| anyhow::anyhow!("the partition key cannot sign"))?;
        let mut blob = data.to_vec();
        blob.extend(signature);
        Ok(blob)
    }
}

fn params(common_name: &str, ca: bool) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::OrganizationName, "byok-emulator (test only)");
    params.distinguished_name.push(DnType::CommonName, common_name);
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    Ok(params)
}
