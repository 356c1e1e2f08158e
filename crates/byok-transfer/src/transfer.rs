//! One key's transfer in two halves: [`prepare`] inside the HSM (wrap after the self-test, take what verification
//! will compare; nothing is sent) and [`complete`] at the vault (import, verify). A batch runs many of each
//! concurrently; [`crate::Plan`] runs one from start to end.

use std::path::Path;

use byok_encoding::KeyKind;
use byok_keyvault::{Connection, ImportRequest, KeyOp, Timestamp, VaultKey};
use byok_pkcs11::{KeyInfo, KeyKindInfo, TokenSession, Verdict, WrapOptions};
use sha2::{Digest, Sha256};

use byok_attestation::Roots;

use crate::attest::{self, KekAttestation};
use crate::error::{Error, Result, Step};
use crate::kek::KekChoice;
use crate::observe::{Event, Observer};
use crate::record::{
    BlobRecord, ImportRecord, KekRecord, KeyRecord, SelfTestRecord, SourceRecord, TokenRecord, Tool, TransferRecord,
    VaultRecord, WrapRecord,
};
use crate::verify::{self, Expectation, Verification};

/// What every key of a transfer shares: the vault, the KEK, how to wrap, who reports.
#[derive(Clone, Copy)]
pub struct Pipeline<'a> {
    /// The vault.
    pub conn: &'a Connection,
    /// The KEK and whether this run created it.
    pub kek: &'a KekChoice,
    /// The KEK's attestation verdict ([`attest::check_kek`]), and whether imported keys' are checked.
    pub attestation: &'a KekAttestation,
    /// How to wrap.
    pub options: WrapOptions,
    /// The program named in records and blobs.
    pub tool: &'a Tool,
    /// Who hears of progress.
    pub observer: &'a dyn Observer,
}

impl std::fmt::Debug for Pipeline<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("vault", self.conn.vault())
            .field("kek", &self.kek.kek.kid)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Pipeline<'_> {
    fn step(&self, number: u8, text: &str) {
        self.observer.event(&Event::Step { number, text });
    }
}

/// One key, wrapped and ready to import: the request with its blob, what verification will compare, and the
/// record so far (source, KEK, wrap, blob).
#[derive(Debug)]
pub struct Prepared {
    request: ImportRequest,
    expectation: Expectation,
    record: TransferRecord,
    /// The roots to check the imported key's attestation with; `None`: not checked.
    attest_with: Option<Roots>,
}

impl Prepared {
    /// The import request, its blob included.
    pub fn request(&self) -> &ImportRequest {
        &self.request
    }

    /// The record so far.
    pub fn record(&self) -> &TransferRecord {
        &self.record
    }
}

/// A key the vault holds now, its record complete, and how it compared with the HSM's. A mismatch is a result,
/// not an error: the caller decides (and still keeps the record).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transferred {
    /// The complete record.
    pub record: TransferRecord,
    /// The verification.
    pub verification: Verification,
}

/// The key's kind, if byok can transfer it: a kind Azure takes, and extractable (wrapped).
pub fn transferable(key: &KeyInfo) -> Result<KeyKind> {
    let KeyKindInfo::Supported(kind) = key.kind else {
        return Err(Error::hsm(
            Step::Preflight,
            byok_pkcs11::Error::UnsupportedKey {
                key: key.describe(),
                what: key.kind.to_string(),
            },
        ));
    };
    if !key.extractable {
        return Err(Error::hsm(
            Step::Preflight,
            byok_pkcs11::Error::NotExtractable(key.describe()),
        ));
    }
    Ok(kind)
}

/// Step 4 for one key that was found and checked, inside the HSM: wrap it (after the self-test), make the blob,
/// keep it in `keep_blob` (file, replace) if asked, and take what verification will need. Nothing is sent.
pub fn prepare(
    p: &Pipeline<'_>,
    session: &mut TokenSession<'_>,
    key: &KeyInfo,
    kind: KeyKind,
    mut request: ImportRequest,
    keep_blob: Option<(&Path, bool)>,
) -> Result<Prepared> {
    let started = Timestamp::now();
    // byok's tags say where the key came from; checked with the request before anything is wrapped.
    let source = source_record(session, key, kind)?;
    request.provenance = crate::provenance::tags_for(&source, kind, p.tool);
    request
        .validate(p.conn.vault())
        .map_err(|e| Error::vault(Step::Preflight, e))?;
    p.step(4, "wrapping in the HSM (with the wrap self-test)");
    let kek = &p.kek.kek;
    let made = crate::blob::wrap_in_hsm(session, key, &kek.public, &kek.kid, p.options, p.tool)?;
    if let Some(why) = &made.nonconformant {
        p.observer.event(&Event::NonconformantWrap { path: made.path, why });
    }
    let wrap = wrap_record(session, &made, kind);
    let blob_bytes = made.blob.bytes;
    if let Some((file, replace)) = keep_blob {
        crate::files::write_atomic(file, &blob_bytes, replace).map_err(|e| e.at(Step::Wrap))?;
        p.observer.event(&Event::BlobKept { file });
    }
    let blob = BlobRecord {
        sha256: Some(hex::encode(Sha256::digest(&blob_bytes))),
        bytes: Some(blob_bytes.len()),
        kept_as: keep_blob.map(|(f, _)| f.to_owned()),
    };
    request.blob_bytes = blob_bytes;
    let expectation = Expectation::from_hsm(session, key, kind, &request.key_ops)?;
    let (conn, kek) = (p.conn, &p.kek.kek);
    let record = TransferRecord {
        format_version: crate::record::FORMAT_VERSION,
        tool: p.tool.clone(),
        transfer_id: request.transfer_id.clone(),
        started: started.to_string(),
        finished: None,
        vault: VaultRecord {
            url: conn.vault().url().to_owned(),
            kind: conn.vault().kind().name().to_owned(),
        },
        kek: KekRecord {
            kid: kek.kid.to_string(),
            created_by_this_transfer: p.kek.created,
            size_bits: kek.public.size().bits(),
            fingerprint_sha256: kek.public.fingerprint_sha256(),
        },
        source,
        key: None,
        wrap,
        blob,
        import: None,
        verification: None,
        attestation: Some(p.attestation.record.clone()),
        rotation: None,
    };
    Ok(Prepared {
        request,
        expectation,
        record,
        attest_with: p.attestation.after_import.clone(),
    })
}

/// The self-test's verdict for the path used, as it applies to this key: "aligned only" is conformant for AES.
fn wrap_record(session: &mut TokenSession<'_>, made: &crate::blob::HsmBlob, kind: KeyKind) -> WrapRecord {
    let path = made.path;
    let self_test = match session.self_test() {
        Ok(report) => {
            let verdict = &report.path(path).verdict;
            let applies = match verdict {
                Verdict::Conformant => "conformant",
                Verdict::AlignedOnly(_) if matches!(kind, KeyKind::Aes(_)) => "conformant",
                _ if made.nonconformant.is_some() => "non-conformant (overridden)",
                _ => "not conformant",
            };
            SelfTestRecord {
                path_verdict: applies.into(),
                detail: verdict.to_string(),
            }
        }
        Err(e) => SelfTestRecord {
            path_verdict: "not available".into(),
            detail: e.to_string(),
        },
    };
    WrapRecord {
        path: path.name().into(),
        mechanisms: path.mechanisms().into(),
        conformant: made.nonconformant.is_none(),
        self_test,
    }
}

fn source_record(session: &TokenSession<'_>, key: &KeyInfo, kind: KeyKind) -> Result<SourceRecord> {
    let token = session.token();
    // For AES the check value binds the record to the key, as the public half does for RSA and EC.
    let key_check_value = match kind {
        KeyKind::Aes(_) => session
            .check_value(key)
            .map_err(|e| Error::hsm(Step::Wrap, e))?
            .map(hex::encode),
        _ => None,
    };
    Ok(SourceRecord {
        token: TokenRecord {
            label: token.label.clone(),
            manufacturer: token.manufacturer.clone(),
            model: token.model.clone(),
            serial: token.serial.clone(),
            firmware: token.firmware.clone(),
        },
        key_uri: byok_pkcs11::key_uri(&token.label, &key.label, &key.id),
        key_label: key.label.clone(),
        key_id: hex::encode(&key.id),
        key_check_value,
    })
}

/// Steps 5 and 6: import, then verify against what the HSM showed.
pub async fn complete(conn: &Connection, observer: &dyn Observer, prepared: Prepared) -> Result<Transferred> {
    let Prepared {
        request,
        expectation,
        mut record,
        attest_with,
    } = prepared;
    let text = format!("importing `{}` ({} bytes)", request.name, request.blob_bytes.len());
    observer.event(&Event::Step { number: 5, text: &text });
    let imported = conn
        .import_key(&request)
        .await
        .map_err(|e| Error::vault(Step::Import, e))?;
    let kid = &imported.key.kid;
    observer.event(&Event::Step {
        number: 6,
        text: &format!("verifying {kid}"),
    });
    // The key is in the vault now: an error from here on says which version, so nothing imported goes unmentioned.
    let checked = async {
        let verification = verify::verify(conn, &expectation, &imported.key).await?;
        let attest = (attest_with.as_ref(), &expectation);
        attest_imported(conn, attest, &imported.key, &mut record, verification).await
    };
    let verification = checked.await.map_err(|e| {
        e.context(Step::Verify, format!("{kid} was imported, but verifying it failed"))
            .with_hint(format!(
                "look at {kid} before using it or importing again; byok did not add another version"
            ))
    })?;
    let import = ImportRecord {
        ambiguous_sends: imported.ambiguous,
        completed_by_resume: None,
    };
    fill(
        &mut record,
        &imported.key,
        expectation.kind(),
        &request.name,
        import,
        &verification,
    );
    Ok(Transferred { record, verification })
}

/// A key an earlier run imported (its transfer tag is `transfer_id`) but did not see to the end — interrupted, or
/// killed: verify it against the HSM's key now and make its record, as that run would have.
pub async fn adopt(
    conn: &Connection,
    prepared: Prepared,
    existing: &VaultKey,
    transfer_id: &str,
) -> Result<Transferred> {
    let Prepared {
        request,
        expectation,
        mut record,
        attest_with,
    } = prepared;
    let verification = verify::verify(conn, &expectation, existing).await?;
    let attest = (attest_with.as_ref(), &expectation);
    let verification = attest_imported(conn, attest, existing, &mut record, verification).await?;
    record.transfer_id = transfer_id.to_owned();
    let import = ImportRecord {
        ambiguous_sends: 0,
        completed_by_resume: Some(true),
    };
    fill(
        &mut record,
        existing,
        expectation.kind(),
        &request.name,
        import,
        &verification,
    );
    // The blob described is this run's, not the one the vault received: say so rather than claim it.
    record.blob = BlobRecord {
        sha256: None,
        bytes: None,
        kept_as: None,
    };
    Ok(Transferred { record, verification })
}

/// The imported key's attestation, where the KEK's was checked, into the record; a failed check makes the
/// verification a mismatch (do not use that version), whatever the comparison found.
async fn attest_imported(
    conn: &Connection,
    (roots, expectation): (Option<&Roots>, &Expectation),
    key: &VaultKey,
    record: &mut TransferRecord,
    verification: Verification,
) -> Result<Verification> {
    let Some(att) = record.attestation.as_mut() else {
        return Ok(verification);
    };
    attest::key_platform(att, key);
    let Some(roots) = roots else {
        return Ok(verification);
    };
    let attested = attest::check_imported(conn, roots, key, expectation.public_key()).await?;
    let failure = attested.failure();
    att.key = Some(attested);
    let Some(failure) = failure else {
        att.detail = "the KEK's attestation verified before the wrap, the imported key's after the import".into();
        return Ok(verification);
    };
    att.status = "failed".into();
    att.detail = format!("the imported key's attestation failed: {failure}");
    Ok(match verification {
        mismatch @ Verification::Mismatch { .. } => mismatch,
        _ => Verification::Mismatch {
            method: "key attestation",
            detail: format!("the attestation of {} failed {failure}", key.kid),
        },
    })
}

/// Whether a key already in the vault is the one prepared (a batch run again skips it).
pub async fn compare_existing(conn: &Connection, prepared: &Prepared, existing: &VaultKey) -> Result<Verification> {
    verify::verify(conn, &prepared.expectation, existing).await
}

/// The record's parts that come from the vault: the key version, the import, the verification.
fn fill(
    record: &mut TransferRecord,
    key: &VaultKey,
    kind: KeyKind,
    name: &str,
    import: ImportRecord,
    v: &Verification,
) {
    record.finished = Some(Timestamp::now().to_string());
    record.key = Some(KeyRecord {
        name: name.to_owned(),
        kid: key.kid.to_string(),
        version: key.kid.version().to_owned(),
        kty: key.kty.to_string(),
        kind: kind.to_string(),
        crv: kind.curve().map(|c| c.azure_name().to_owned()),
        key_ops: KeyOp::names(&key.key_ops).into_iter().map(str::to_owned).collect(),
        enabled: key.enabled,
        not_before: key.not_before.map(|t| t.to_string()),
        expires: key.expires.map(|t| t.to_string()),
        tags: key.tags.clone(),
        public_key_sha256: key.public.as_ref().map(|p| p.fingerprint_sha256()),
    });
    record.import = Some(import);
    record.verification = Some(v.into());
}

impl Prepared {
    /// When the transfer began, if before the wrap (a single transfer counts from its first step).
    pub(crate) fn set_started(&mut self, started: Timestamp) {
        self.record.started = started.to_string();
    }
}
