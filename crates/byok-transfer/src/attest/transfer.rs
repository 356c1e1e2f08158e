//! A transfer's attestations: the KEK's, checked before the first wrap (a failure stops the transfer before
//! anything is wrapped or sent), and the imported key's, checked after the import (a failure marks that version as
//! one not to use). Key Vault has no attestation API: the record says so and names the vault's HSM platform.

use byok_attestation::Roots;
use byok_blob::VaultKind;
use byok_encoding::TargetPublicKey;
use byok_keyvault::{Connection, Kek, VaultKey};

use super::record::{AttestationRecord, AttestedKey, trusted};
use super::{Binding, check};
use crate::error::{Error, Kind, Result, Step};
use crate::observe::{Event, Observer};

/// Whether a transfer checks the Managed HSM's attestations.
#[derive(Clone, Debug)]
pub enum AttestationPolicy {
    /// Check them, trusting these roots (by default Marvell's, [`Roots::marvell`]).
    Verify(Roots),
    /// Do not check: a weak choice, named in the record.
    Skip,
}

impl Default for AttestationPolicy {
    fn default() -> Self {
        Self::Verify(Roots::marvell())
    }
}

/// The KEK's verdict, and the roots the imported keys are checked with (`None`: they are not).
#[derive(Clone, Debug)]
pub struct KekAttestation {
    /// The record's attestation part so far.
    pub record: AttestationRecord,
    pub(crate) after_import: Option<Roots>,
}

/// Checks the KEK's attestation under `policy`: in a Managed HSM fetched and verified as a KEK bound to `kek`'s id and
/// public key — an error if any check fails; in a Key Vault reported as not attestable; a local vault (a host byok
/// cannot classify) is checked if it serves attestations.
pub async fn check_kek(
    conn: &Connection,
    kek: &Kek,
    policy: &AttestationPolicy,
    observer: &dyn Observer,
) -> Result<KekAttestation> {
    let roots = match policy {
        AttestationPolicy::Skip => return Ok(skipped()),
        AttestationPolicy::Verify(roots) => roots,
    };
    let kind = conn.vault().kind();
    if kind == VaultKind::KeyVault {
        return Ok(not_attestable(
            kek.hsm_platform.clone(),
            "Key Vault has no attestation API",
        ));
    }
    let (name, version) = (kek.kid.name(), kek.kid.version());
    let evidence = match conn.get_attestation(name, version).await {
        // A vault at a host byok cannot classify (this machine's) that serves no attestation is in Key Vault mode.
        Err(e) if kind == VaultKind::Other && matches!(e.status(), Some(400 | 404)) => {
            return Ok(not_attestable(
                kek.hsm_platform.clone(),
                "the local vault serves no attestation (Key Vault mode)",
            ));
        }
        Err(e) => return Err(Error::vault(Step::Kek, e).with_hint(SKIP_HINT)),
        Ok(json) => json,
    };
    let public = TargetPublicKey::from_rsa_components(kek.public.modulus(), kek.public.exponent())
        .map_err(|e| Error::new(Step::Kek, Kind::Internal, format!("the KEK's public key: {e}")))?;
    let binding = Binding {
        kid: Some(kek.kid.to_string()),
        public_key: Some(public),
        kek: true,
    };
    let attested = checked(&evidence, roots, &binding, Step::Kek)?;
    if let Some(failure) = attested.failure() {
        return Err(Error::new(
            Step::Kek,
            Kind::Attestation,
            format!("the KEK {}'s attestation failed: {failure}", kek.kid),
        )
        .with_hint(
            "nothing was wrapped or sent. Do not use this KEK: ask why the Managed HSM cannot prove it holds it; a local \
             vault's attestations verify only with the root it names (--attestation-root)",
        ));
    }
    observer.event(&Event::Detail {
        text: &format!(
            "the KEK's attestation verified (root {})",
            attested.root.as_deref().unwrap_or("?")
        ),
    });
    Ok(KekAttestation {
        record: AttestationRecord {
            status: "verified".into(),
            detail: "the KEK's attestation verified before the wrap".into(),
            trusted_roots: trusted(roots),
            kek: Some(attested),
            key: None,
        },
        after_import: Some(roots.clone()),
    })
}

const SKIP_HINT: &str = "the KEK's attestation is checked before anything is wrapped; skipping it (byok-cli: \
                         --skip-attestation) is a weak choice that the record names";

fn skipped() -> KekAttestation {
    KekAttestation {
        record: AttestationRecord {
            status: "skipped".into(),
            detail: "not checked, by choice: the KEK's provenance rests on TLS and Entra ID alone".into(),
            trusted_roots: Vec::new(),
            kek: None,
            key: None,
        },
        after_import: None,
    }
}

fn not_attestable(hsm_platform: Option<String>, why: &str) -> KekAttestation {
    let platform = hsm_platform.as_deref().map_or_else(
        || "the vault states no hsmPlatform".to_owned(),
        |p| format!("the vault states hsmPlatform {p}"),
    );
    KekAttestation {
        record: AttestationRecord {
            status: "not-attestable".into(),
            detail: format!("not attestable (Key Vault): {why}; {platform}"),
            trusted_roots: Vec::new(),
            kek: Some(AttestedKey::platform_only(hsm_platform)),
            key: None,
        },
        after_import: None,
    }
}

fn checked(evidence: &[u8], roots: &Roots, binding: &Binding, step: Step) -> Result<AttestedKey> {
    let report = check(evidence, roots, binding).map_err(|e| {
        Error::new(
            step,
            Kind::Attestation,
            format!("the vault's answer is not a key attestation: {e}"),
        )
    })?;
    Ok(AttestedKey::checked(report, evidence))
}

/// The imported key's attestation (`key` as the vault holds it now), checked to name its id and show `public` (the
/// HSM's public key; `None` for AES, whose check value the attestation does not carry), with `roots`.
pub(crate) async fn check_imported(
    conn: &Connection,
    roots: &Roots,
    key: &VaultKey,
    public: Option<&TargetPublicKey>,
) -> Result<AttestedKey> {
    let evidence = conn
        .get_attestation(key.kid.name(), key.kid.version())
        .await
        .map_err(|e| Error::vault(Step::Verify, e))?;
    let binding = Binding {
        kid: Some(key.kid.to_string()),
        public_key: public.cloned(),
        kek: false,
    };
    checked(&evidence, roots, &binding, Step::Verify)
}

/// The record's attestation once the key is in a Key Vault: its HSM platform beside the KEK's.
pub(crate) fn key_platform(record: &mut AttestationRecord, key: &VaultKey) {
    if record.status == "not-attestable" {
        record.key = Some(AttestedKey::platform_only(key.hsm_platform.clone()));
    }
}
