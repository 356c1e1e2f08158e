//! Checking a Managed HSM key attestation: [`byok_attestation`]'s verification, then each binding the caller asks
//! for (key id, public key, KEK), every check reported with its outcome — for `byok-cli attest` and for the
//! transfer itself ([`check_kek`] before the first wrap, the imported key's after the import).

mod record;
mod transfer;

pub use record::{AttestationRecord, AttestedAttributes, AttestedKey, ChainRecord, TrustedRoot};
pub use transfer::{AttestationPolicy, KekAttestation, check_kek};
pub(crate) use transfer::{check_imported, key_platform};

use std::path::Path;

use byok_attestation::{Attestation, Check, Refusal, Root, Roots, Verified};
use byok_encoding::TargetPublicKey;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Kind, Step};
use crate::files::read_input;

/// What to check an attestation against.
#[derive(Clone, Debug)]
pub struct Binding {
    /// The key id the attestation must name; `None`: the one the attestation's file names, if any.
    pub kid: Option<String>,
    /// The public key it must show; `None`: the one the attestation's file shows, if any.
    pub public_key: Option<TargetPublicKey>,
    /// Also check it is a KEK (RSA, generated inside, never extractable, sensitive, `key_ops` `["import"]`).
    pub kek: bool,
}

/// One check and how it went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckOutcome {
    /// Its name (`vendor-root`, `signature`, `key-id`, …).
    pub check: String,
    /// `passed`, `failed`, or `not-run` (an earlier check failed).
    pub result: String,
    /// What was checked or found.
    pub detail: String,
}

/// Every check of one attestation.
#[derive(Clone, Debug, Serialize)]
pub struct AttestationReport {
    /// The JSON document's format version (docs/json-output.md).
    pub format_version: u32,
    /// Whether every check passed.
    pub verified: bool,
    /// The checks, in order.
    pub checks: Vec<CheckOutcome>,
    /// The chains, firmware and attested attributes, when the signatures verified.
    pub attestation: Option<Verified>,
}

impl AttestationReport {
    /// The names of the checks that failed.
    pub fn failed(&self) -> Vec<&str> {
        let failed = self.checks.iter().filter(|c| c.result == "failed");
        failed.map(|c| c.check.as_str()).collect()
    }
}

/// The roots to trust: Marvell's, or only the root public key (PEM) in `root` — a local vault's test root.
pub fn trust(root: Option<&Path>) -> Result<Roots, Error> {
    let Some(path) = root else {
        return Ok(Roots::marvell());
    };
    let pem = String::from_utf8(read_input(path, "attestation root")?).unwrap_or_default();
    let root = Root::from_public_key_pem(&path.display().to_string(), &pem)
        .ok_or_else(|| invalid(path, &"not an RSA public key in PEM (`BEGIN PUBLIC KEY`)"))?;
    Ok(Roots::only(vec![root]))
}

/// The public key (PEM or DER SubjectPublicKeyInfo) in `path`, if one is given.
pub fn public_key(path: Option<&Path>) -> Result<Option<TargetPublicKey>, Error> {
    let Some(path) = path else {
        return Ok(None);
    };
    let key = TargetPublicKey::from_spki(&read_input(path, "public key")?).map_err(|e| invalid(path, &e))?;
    Ok(Some(key))
}

/// [`check`] of the attestation file `path` (what `az keyvault key get-attestation --file` writes), bounded — or
/// of a transfer record's evidence: the imported key's attestation, or with [`Binding::kek`] the KEK's, bound to the
/// kid the record names unless the binding gives one.
pub fn check_file(path: &Path, roots: &Roots, binding: &Binding) -> Result<AttestationReport, Error> {
    let json = read_input(path, "attestation file")?;
    let (json, binding) = match from_record(&json, binding) {
        Some(found) => found.map_err(|e| invalid(path, &e))?,
        None => (json, binding.clone()),
    };
    check(&json, roots, &binding).map_err(|e| {
        invalid(path, &e)
            .with_hint("attest reads what `az keyvault key get-attestation --hsm-name H --name K --file F` writes")
    })
}

/// `None` if `json` is not a transfer record; else the evidence it keeps and the binding to check it with.
fn from_record(json: &[u8], binding: &Binding) -> Option<Result<(Vec<u8>, Binding), String>> {
    let doc: serde_json::Value = serde_json::from_slice(json).ok()?;
    doc.get("transfer_id")?;
    let part = if binding.kek { "kek" } else { "key" };
    let Some(evidence) = doc
        .pointer(&format!("/attestation/{part}/evidence"))
        .filter(|e| !e.is_null())
    else {
        let status = doc
            .pointer("/attestation/status")
            .and_then(|s| s.as_str())
            .unwrap_or("none");
        return Some(Err(format!(
            "a transfer record that keeps no attestation of its {} (attestation: {status})",
            if binding.kek { "KEK" } else { "key" }
        )));
    };
    let mut binding = binding.clone();
    if binding.kid.is_none() {
        binding.kid = doc
            .pointer(&format!("/{part}/kid"))
            .and_then(|k| k.as_str())
            .map(str::to_owned);
    }
    Some(
        serde_json::to_vec(evidence)
            .map(|e| (e, binding))
            .map_err(|e| e.to_string()),
    )
}

fn invalid(path: &Path, e: &dyn std::fmt::Display) -> Error {
    Error::new(Step::Preflight, Kind::InvalidInput, format!("{}: {e}", path.display()))
}

/// Refuses a Key Vault, which has no attestation API, before anything is asked of it (a Managed HSM, or another
/// host such as a local vault, may attest).
pub fn attestable(vault: &byok_keyvault::Vault) -> Result<(), Error> {
    if vault.kind() != byok_blob::VaultKind::KeyVault {
        return Ok(());
    }
    let e = Error::new(
        Step::Preflight,
        Kind::Usage,
        format!("{vault} is a Key Vault: it has no key attestation"),
    );
    Err(e.with_hint(
        "only a Managed HSM attests its keys (--hsm-name); for Key Vault byok reports attributes.hsmPlatform",
    ))
}

/// Fetches a key version's attestation (the latest version's without one) from the vault — a Managed HSM — and
/// [`check`]s it, bound to the key id asked for unless `binding` names one: an answer about another key is refused.
pub async fn fetch(
    conn: &byok_keyvault::Connection,
    name: &str,
    version: Option<&str>,
    roots: &Roots,
    binding: &Binding,
) -> Result<AttestationReport, Error> {
    attestable(conn.vault())?;
    let version = match version {
        Some(v) => v.to_owned(),
        None => {
            let key = conn
                .get_key(name, None)
                .await
                .map_err(|e| Error::vault(Step::Verify, e))?;
            key.kid.version().to_owned()
        }
    };
    let json = conn
        .get_attestation(name, &version)
        .await
        .map_err(|e| Error::vault(Step::Verify, e))?;
    let mut binding = binding.clone();
    if binding.kid.is_none() {
        binding.kid = Some(format!("{}/keys/{name}/{version}", conn.vault().url()));
    }
    check(&json, roots, &binding).map_err(|e| {
        Error::new(
            Step::Verify,
            Kind::InvalidInput,
            format!("the vault's attestation of `{name}`: {e}"),
        )
    })
}

/// The checks [`byok_attestation`] makes, in its order.
const CHAIN_CHECKS: [(Check, &str); 6] = [
    (Check::Certificates, "the certificate bundle parses"),
    (
        Check::VendorRoot,
        "a card certificate is signed by a trusted vendor root",
    ),
    (
        Check::PartitionCertificate,
        "the partition certificate is issued by the card",
    ),
    (Check::Signature, "the blobs are signed by that partition key"),
    (
        Check::PoolCertificate,
        "the pool certificate issued one for the same partition key",
    ),
    (Check::Attributes, "the signed attributes parse"),
];

/// Checks `json` (a key bundle with `attributes.attestation`, or that object) against `roots` and `binding`. `Err`
/// only when the input is not an attestation at all.
pub fn check(json: &[u8], roots: &Roots, binding: &Binding) -> Result<AttestationReport, Refusal> {
    let attestation = Attestation::from_json(json)?;
    let mut checks = Vec::new();
    let verified = attestation.verify(roots);
    let mut reached = true;
    for (check, what) in CHAIN_CHECKS {
        let outcome = match (&verified, reached) {
            (_, false) => outcome(check, "not-run", what),
            (Err(r), true) if r.check == check => {
                reached = false;
                outcome(check, "failed", &r.detail)
            }
            _ => outcome(check, "passed", what),
        };
        checks.push(outcome);
    }
    let Ok(verified) = verified else {
        return Ok(AttestationReport {
            format_version: 1,
            verified: false,
            checks,
            attestation: None,
        });
    };
    bind(&attestation, &verified, binding, &mut checks);
    Ok(AttestationReport {
        format_version: 1,
        verified: checks.iter().all(|c| c.result == "passed"),
        checks,
        attestation: Some(verified),
    })
}

fn bind(attestation: &Attestation, verified: &Verified, binding: &Binding, checks: &mut Vec<CheckOutcome>) {
    let kid = binding.kid.as_deref().or(attestation.bundle_kid());
    if let Some(kid) = kid {
        let source = if binding.kid.is_some() { "given" } else { "the file's" };
        checks.push(result(
            Check::KeyId,
            verified.check_key_id(kid),
            &format!("names {source} kid {kid}"),
        ));
    }
    let public_key = binding.public_key.as_ref().or(attestation.bundle_public_key());
    if let Some(key) = public_key {
        let source = if binding.public_key.is_some() {
            "the given"
        } else {
            "the file's"
        };
        let what = format!("shows {source} public key (SHA-256 {})", key.fingerprint_sha256());
        checks.push(result(Check::PublicKey, verified.check_public_key(key), &what));
    }
    if binding.kek {
        let ops = attestation.bundle_key_ops().unwrap_or_default();
        let what = "an RSA key generated in the HSM, never extractable, sensitive, key_ops [\"import\"]";
        checks.push(result(Check::Kek, verified.check_kek(ops), what));
    }
}

fn outcome(check: Check, result: &str, detail: &str) -> CheckOutcome {
    CheckOutcome {
        check: check.name().to_owned(),
        result: result.to_owned(),
        detail: detail.to_owned(),
    }
}

fn result(check: Check, r: Result<(), Refusal>, what: &str) -> CheckOutcome {
    match r {
        Ok(()) => outcome(check, "passed", what),
        Err(e) => outcome(check, "failed", &e.detail),
    }
}
