//! Why an attestation is refused: the check that failed, and what it found.

use std::fmt;

/// The checks a verification makes, in order; a refusal names the first that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Check {
    /// The input itself: JSON, base64url, sizes, the attestation format version.
    Format,
    /// The certificate bundle: PEM blocks holding X.509 certificates with RSA keys.
    Certificates,
    /// A card certificate signed by a pinned Marvell LiquidSecurity root key.
    VendorRoot,
    /// The partition certificate, issued and signed by that card certificate.
    PartitionCertificate,
    /// The attestation blobs, signed by the partition key that chains to the vendor root.
    Signature,
    /// The pool's self-signed certificate and the partition certificate it issued, with the same key.
    PoolCertificate,
    /// The attribute list inside a blob.
    Attributes,
    /// The attested key is the one the caller holds (RSA modulus and exponent, or EC point).
    PublicKey,
    /// The attested id is `/keys/{name}/{version}` of the caller's key id.
    KeyId,
    /// What a KEK must be: an RSA private key generated in the HSM, never extractable, sensitive, import only.
    Kek,
}

impl Check {
    /// Its name in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Self::Format => "format",
            Self::Certificates => "certificates",
            Self::VendorRoot => "vendor-root",
            Self::PartitionCertificate => "partition-certificate",
            Self::Signature => "signature",
            Self::PoolCertificate => "pool-certificate",
            Self::Attributes => "attributes",
            Self::PublicKey => "public-key",
            Self::KeyId => "key-id",
            Self::Kek => "kek",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An attestation refused by one check.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("attestation check `{check}` failed: {detail}")]
pub struct Refusal {
    /// The check that failed.
    pub check: Check,
    /// What it found, in words.
    pub detail: String,
}

impl Refusal {
    pub(crate) fn new(check: Check, detail: impl Into<String>) -> Self {
        Self {
            check,
            detail: detail.into(),
        }
    }
}
