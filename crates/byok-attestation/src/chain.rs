//! The two chains an attestation stands on: vendor root → card → partition (the HSM is a genuine Marvell part), and
//! pool → partition with the same key (that partition belongs to this Managed HSM pool).

use crate::bundle::Certificate;
use crate::error::{Check, Refusal};
use crate::roots::Roots;

/// A certificate of an established chain, for reports.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChainCertificate {
    /// Its role: `card`, `partition`, `pool` or `pool-partition`.
    pub role: &'static str,
    /// Its subject name.
    pub subject: String,
    /// SHA-256 of its DER.
    pub sha256: String,
}

/// The chains, as indexes into the bundle.
#[derive(Clone, Debug)]
pub(crate) struct Chains {
    pub(crate) root: String,
    pub(crate) card: usize,
    pub(crate) partition: usize,
    pub(crate) pool: usize,
    pub(crate) pool_partition: usize,
}

impl Chains {
    pub(crate) fn report(&self, certs: &[Certificate]) -> Vec<ChainCertificate> {
        [
            ("card", self.card),
            ("partition", self.partition),
            ("pool", self.pool),
            ("pool-partition", self.pool_partition),
        ]
        .into_iter()
        .map(|(role, i)| ChainCertificate {
            role,
            subject: certs[i].subject.clone(),
            sha256: certs[i].sha256.clone(),
        })
        .collect()
    }
}

/// Finds the vendor chain; the pool chain comes after the blob's signature (see `verify`).
pub(crate) fn vendor(certs: &[Certificate], roots: &Roots) -> Result<(String, usize, usize), Refusal> {
    let (root, card) = roots
        .iter()
        .find_map(|r| {
            certs
                .iter()
                .position(|c| !c.self_signed() && c.signed_by(r.key()))
                .map(|i| (r.name().to_owned(), i))
        })
        .ok_or_else(|| {
            let names: Vec<_> = roots.iter().map(|r| r.name().to_owned()).collect();
            Refusal::new(
                Check::VendorRoot,
                format!(
                    "no certificate of the bundle is signed by a trusted root ({})",
                    names.join(", ")
                ),
            )
        })?;
    let partition = (0..certs.len())
        .find(|&i| i != card && certs[i].issued_by(&certs[card]))
        .ok_or_else(|| {
            Refusal::new(
                Check::PartitionCertificate,
                format!(
                    "no certificate of the bundle is issued by the card certificate `{}`",
                    certs[card].subject
                ),
            )
        })?;
    Ok((root, card, partition))
}

/// A self-signed pool certificate that issued a certificate for the same key as the vendor's partition certificate.
pub(crate) fn pool(certs: &[Certificate], partition: usize) -> Result<(usize, usize), Refusal> {
    let partition_key = certs[partition].key.spki_der();
    for pool in (0..certs.len()).filter(|&i| certs[i].self_signed()) {
        let issued = (0..certs.len()).find(|&i| {
            i != pool && i != partition && certs[i].issued_by(&certs[pool]) && certs[i].key.spki_der() == partition_key
        });
        if let Some(pool_partition) = issued {
            return Ok((pool, pool_partition));
        }
    }
    Err(Refusal::new(
        Check::PoolCertificate,
        "no self-signed pool certificate issued a certificate for the partition's key",
    ))
}
