//! What a transfer record keeps of the attestations: the verdicts, the chains' fingerprints, the attested
//! attributes, and the evidence itself, so that the record can be re-checked offline (`byok-cli attest --file`).

use byok_attestation::{Attributes, Roots, Verified};
use serde::{Deserialize, Serialize};

use super::{AttestationReport, CheckOutcome};

/// The Managed HSM's attestations of the KEK and of the imported key (docs/attestation.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationRecord {
    /// `verified` (the KEK's before the wrap and, once imported, the key's), `failed` (the imported key's: do not
    /// use that version), `skipped` (`--skip-attestation`: a weak choice), or `not-attestable` (Key Vault).
    pub status: String,
    /// The status in words.
    pub detail: String,
    /// The roots trusted; empty when nothing was checked.
    pub trusted_roots: Vec<TrustedRoot>,
    /// The KEK's attestation (or, in a Key Vault, its HSM platform).
    pub kek: Option<AttestedKey>,
    /// The imported key's; `None` until imported.
    pub key: Option<AttestedKey>,
}

/// A root public key the chains could end in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedRoot {
    /// Its name (Marvell's) or the file it was read from.
    pub name: String,
    /// SHA-256 of its SubjectPublicKeyInfo.
    pub public_key_sha256: String,
}

/// One key's attestation as checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestedKey {
    /// Whether every check passed.
    pub verified: bool,
    /// Key Vault's `attributes.hsmPlatform` for this key, where there is no attestation to check.
    pub hsm_platform: Option<String>,
    /// The checks, in order.
    pub checks: Vec<CheckOutcome>,
    /// The vendor root the chain ends in.
    pub root: Option<String>,
    /// The chains' certificates.
    pub chain: Vec<ChainRecord>,
    /// How the blobs were signed: `2.x` or `3.x`.
    pub firmware: Option<String>,
    /// What the HSM attests of the key (its private or secret object).
    pub attributes: Option<AttestedAttributes>,
    /// The key bundle with its attestation, as the vault sent it.
    pub evidence: Option<serde_json::Value>,
}

/// A certificate of the chains.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainRecord {
    /// `card`, `partition`, `pool` or `pool-partition`.
    pub role: String,
    /// Its subject.
    pub subject: String,
    /// SHA-256 of its DER.
    pub sha256: String,
}

/// The attested attributes a reader of the record needs (the evidence holds them all).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestedAttributes {
    /// `private-key`, `secret-key`, …
    pub class: Option<String>,
    /// `RSA`, `EC`, `AES`.
    pub key_type: Option<String>,
    /// `/keys/{name}/{version}`.
    pub id: Option<String>,
    /// Generated inside the HSM.
    pub local: Option<bool>,
    /// Never extractable.
    pub never_extractable: Option<bool>,
    /// Extractable.
    pub extractable: Option<bool>,
    /// Sensitive.
    pub sensitive: Option<bool>,
    /// RSA modulus bits.
    pub modulus_bits: Option<u64>,
    /// The operations the HSM allows.
    pub operations: Vec<String>,
}

impl From<&Attributes> for AttestedAttributes {
    fn from(a: &Attributes) -> Self {
        Self {
            class: a.class.clone(),
            key_type: a.key_type.clone(),
            id: a.id.clone(),
            local: a.local,
            never_extractable: a.never_extractable,
            extractable: a.extractable,
            sensitive: a.sensitive,
            modulus_bits: a.modulus_bits,
            operations: a.operations.iter().map(|o| (*o).to_owned()).collect(),
        }
    }
}

impl AttestedKey {
    /// A checked attestation and the bundle it came from.
    pub(crate) fn checked(report: AttestationReport, evidence: &[u8]) -> Self {
        let verified: Option<&Verified> = report.attestation.as_ref();
        Self {
            verified: report.verified,
            hsm_platform: None,
            root: verified.map(|v| v.root.clone()),
            chain: verified.map_or_else(Vec::new, |v| {
                v.chain
                    .iter()
                    .map(|c| ChainRecord {
                        role: c.role.to_owned(),
                        subject: c.subject.clone(),
                        sha256: c.sha256.clone(),
                    })
                    .collect()
            }),
            firmware: verified.map(|v| v.firmware.name().to_owned()),
            attributes: verified.map(|v| (&v.private).into()),
            evidence: serde_json::from_slice(evidence).ok(),
            checks: report.checks,
        }
    }

    /// A Key Vault key: nothing to check, its HSM platform as the vault states it.
    pub(crate) fn platform_only(hsm_platform: Option<String>) -> Self {
        Self {
            verified: false,
            hsm_platform,
            checks: Vec::new(),
            root: None,
            chain: Vec::new(),
            firmware: None,
            attributes: None,
            evidence: None,
        }
    }

    /// The first failed check, as `name: detail`.
    pub fn failure(&self) -> Option<String> {
        self.checks
            .iter()
            .find(|c| c.result == "failed")
            .map(|c| format!("{}: {}", c.check, c.detail))
    }
}

/// `roots` as the record names them.
pub(crate) fn trusted(roots: &Roots) -> Vec<TrustedRoot> {
    roots
        .iter()
        .map(|r| TrustedRoot {
            name: r.name().to_owned(),
            public_key_sha256: r.fingerprint(),
        })
        .collect()
}
