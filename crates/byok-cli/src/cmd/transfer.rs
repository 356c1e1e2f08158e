//! `byok-cli full-transfer`: the four steps of BYOK in one go — KEK, download, wrap in the HSM, import — and then
//! the proof that the vault holds the key the HSM holds. Optionally a transfer record for the key-ceremony file.

use std::path::{Path, PathBuf};

use byok_blob::ByokBlob;
use byok_encoding::{KeyKind, TargetPublicKey};
use byok_keyvault::{Connection, ImportRequest, Kek, VaultKey};
use byok_pkcs11::{Error as HsmError, KeyInfo, KeyKindInfo, Pkcs11Uri, TokenSession, Verdict, WrapOptions};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::cmd::hsm::{self, HsmArgs};
use crate::cmd::import::{KeyPropertiesArgs, import_error};
use crate::cmd::vault::{self, VaultArgs, runtime};
use crate::cmd::wrap::WrapArgs;
use crate::exit::{CliError, Exit, Result};
use crate::files;
use crate::stdout_error;
use crate::ui::Ui;

const STEPS: usize = 6;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Steps: find the key in the HSM; reuse or create the KEK; download its public key; wrap in the \
                        HSM (after the wrap self-test); import; verify that the vault holds the same key (RSA/EC: the \
                        public half; AES: one block encrypted on both sides). Exit code 8 when verification fails."
)]
pub(crate) struct Args {
    #[command(flatten)]
    vault: VaultArgs,
    #[command(flatten)]
    kek: KekArgs,
    /// Create a new KEK version even if one exists.
    #[arg(long)]
    new_kek: bool,
    /// The key's name in the vault (a new version is added if it exists).
    #[arg(long, value_parser = vault::key_name)]
    name: String,
    /// The key in the HSM, as an RFC 7512 URI: pkcs11:token=LABEL;object=LABEL[;id=%01]
    #[arg(long, value_name = "URI", value_parser = hsm::parse_uri)]
    key: Pkcs11Uri,
    #[command(flatten)]
    wrap: WrapArgs,
    #[command(flatten)]
    properties: KeyPropertiesArgs,
    /// Also keep the .byok blob in this file.
    #[arg(long, value_name = "FILE")]
    keep_byok: Option<PathBuf>,
    /// Write the transfer record (JSON, no secrets) to this file; schema in docs/cli/full-transfer.md.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Replace --keep-byok and --record files that exist.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    hsm: HsmArgs,
}

/// The Key Exchange Key a transfer uses. Shared by `full-transfer` and `batch`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct KekArgs {
    /// The Key Exchange Key's name: reused if it is an import-only RSA-HSM key, created if it does not exist.
    #[arg(long, value_name = "NAME", value_parser = vault::key_name)]
    pub(crate) kek_name: String,
    /// The KEK's modulus bits when it is created: 2048, 3072 or 4096.
    #[arg(long, value_name = "BITS", default_value_t = 4096)]
    pub(crate) kek_size: usize,
}

impl KekArgs {
    pub(crate) fn size(&self) -> Result<byok_encoding::RsaSize> {
        byok_encoding::RsaSize::from_bits(self.kek_size).ok_or_else(|| {
            CliError::msg(
                Exit::Usage,
                format!("--kek-size {}: a KEK is 2048, 3072 or 4096 bits", self.kek_size),
            )
        })
    }
}

/// How the vault's key compares with the HSM's.
pub(crate) enum Verification {
    Verified { method: &'static str, detail: String },
    NotVerifiable { reason: String },
    Mismatch { method: &'static str, detail: String },
}

impl Verification {
    fn json(&self) -> Value {
        match self {
            Self::Verified { method, detail } => json!({"result": "verified", "method": method, "detail": detail}),
            Self::NotVerifiable { reason } => json!({"result": "not-verifiable", "method": null, "detail": reason}),
            Self::Mismatch { method, detail } => json!({"result": "mismatch", "method": method, "detail": detail}),
        }
    }
}

fn step(ui: Ui, n: usize, text: &str) {
    ui.note(&format!("[{n}/{STEPS}] {text}"));
}

pub(crate) fn run(ui: Ui, args: &Args) -> Result<()> {
    let outputs: Vec<(&str, &Path)> = [("--keep-byok", &args.keep_byok), ("--record", &args.record)]
        .into_iter()
        .filter_map(|(flag, f)| f.as_deref().map(|f| (flag, f)))
        .collect();
    files::check_distinct(&outputs)?;
    for (_, file) in &outputs {
        files::check_writable(file, args.force)?;
    }
    let kek_size = args.kek.size()?;
    let started = byok_keyvault::Timestamp::now();
    let conn = args.vault.connect(ui)?;
    let rt = runtime()?;
    args.hsm.with_session(&args.key, |session| {
        // 1. The source key, before anything is written anywhere.
        step(ui, 1, "finding the key in the HSM");
        let key = session.find_key(&args.key).map_err(hsm::error)?;
        let kind = transferable(&key)?;
        let request = args
            .properties
            .request(&conn, &args.name, Vec::new(), kind.kty(), kind.curve())?;
        ui.verbose(&format!("key {} in token `{}`", key.describe(), session.token().label));
        // A key this token can never wrap fails here, before a KEK is created for it.
        session.check_wrappable(kind, args.wrap.options()).map_err(hsm::error)?;

        // 2 and 3. The KEK and its public key.
        step(ui, 2, &format!("KEK `{}` in {}", args.kek.kek_name, conn.vault()));
        let (kek, kek_created) = kek(ui, &conn, &rt, &args.kek.kek_name, args.new_kek, kek_size)?;
        step(
            ui,
            3,
            &format!(
                "KEK public key {}, SHA-256 {}",
                kek.public.size(),
                kek.public.fingerprint_sha256()
            ),
        );

        // 4 to 6: wrap, import, verify.
        let pipeline = Pipeline {
            ui,
            conn: &conn,
            kek: &kek,
            kek_created,
            options: args.wrap.options(),
            show_steps: true,
        };
        let keep = args.keep_byok.as_deref().map(|f| (f, args.force));
        let prepared = prepare(&pipeline, session, &key, kind, request, started, keep)?;
        let locks = crate::locks::KeyLocks::new()
            .map_err(|e| CliError::msg(Exit::Io, format!("cannot prepare the key locks: {e}")))?;
        let _lock = rt
            .block_on(locks.lock(conn.vault().url(), &args.name))
            .map_err(|e| CliError::msg(Exit::Io, format!("cannot take the lock for key `{}`: {e}", args.name)))?;
        let (record, verification) = rt.block_on(complete(&conn, ui, true, prepared))?;
        // The key is in the vault now: whatever happens to the record, say what was imported.
        let written = args.record.as_deref().map(|file| write_record(file, &record, args.force)).transpose();
        finish(ui, &record, &verification, args)?;
        written.map(|_| ()).map_err(|e| {
            let kid = record["key"]["kid"].as_str().unwrap_or_default();
            CliError::new(
                e.exit,
                e.error.context(format!("{kid} was imported and verified as shown above, but its record was not written")),
            )
            .hint("keep the output above as the record (--output json prints the record whole); do not run the transfer again, it would add a second version")
        })
    })
}

/// Writes a transfer record (pretty JSON) without replacing one unless `force`.
pub(crate) fn write_record(file: &Path, record: &Value, force: bool) -> Result<()> {
    let mut text = serde_json::to_vec_pretty(record)
        .map_err(|e| CliError::msg(Exit::Internal, format!("cannot encode the record: {e}")))?;
    text.push(b'\n');
    files::write_atomic(file, &text, force)
}

/// What every key of a transfer shares: the vault, the KEK, how to wrap.
pub(crate) struct Pipeline<'a> {
    pub(crate) ui: Ui,
    pub(crate) conn: &'a Connection,
    pub(crate) kek: &'a Kek,
    pub(crate) kek_created: bool,
    pub(crate) options: WrapOptions,
    /// Show `[n/6]` progress lines (one transfer), or only `-v` detail (a batch).
    pub(crate) show_steps: bool,
}

impl Pipeline<'_> {
    fn step(&self, n: usize, text: &str) {
        if self.show_steps {
            step(self.ui, n, text);
        } else {
            self.ui.verbose(text);
        }
    }
}

/// One key, wrapped and ready to import: the request with its blob, what verification will compare, and the
/// record's parts that come from the HSM.
pub(crate) struct Prepared {
    pub(crate) request: ImportRequest,
    kind: KeyKind,
    expectation: Expectation,
    /// The record so far (source, KEK, wrap, blob); `complete` adds the key, import and verification.
    record: Value,
}

/// What the vault's key must match, taken from the HSM before the import.
enum Expectation {
    Public(TargetPublicKey),
    /// A random block and the HSM's AES-ECB encryption of it.
    Block {
        block: [u8; 16],
        from_hsm: [u8; 16],
        size: byok_encoding::AesSize,
    },
    Unverifiable(String),
}

/// Step 4 for one key that was found and checked, inside the HSM: wrap it (after the self-test) and take what
/// verification will need. Nothing is sent yet.
pub(crate) fn prepare(
    p: &Pipeline<'_>,
    session: &mut TokenSession<'_>,
    key: &KeyInfo,
    kind: KeyKind,
    mut request: ImportRequest,
    started: byok_keyvault::Timestamp,
    keep_byok: Option<(&Path, bool)>,
) -> Result<Prepared> {
    let (ui, conn, kek, kek_created) = (p.ui, p.conn, p.kek, p.kek_created);
    // 4. Wrap inside the HSM.
    p.step(4, "wrapping in the HSM (with the wrap self-test)");
    let wrapped = session.wrap(key, &kek.public, p.options).map_err(hsm::error)?;
    // The verdict for the path used, as it applies to this key: "aligned only" is conformant for an AES key.
    let self_test = match session.self_test() {
        Ok(report) => {
            let verdict = &report.path(wrapped.path).verdict;
            let applies = match verdict {
                Verdict::Conformant => "conformant",
                Verdict::AlignedOnly(_) if matches!(kind, KeyKind::Aes(_)) => "conformant",
                _ if wrapped.nonconformant.is_some() => "non-conformant (overridden)",
                _ => "not conformant",
            };
            json!({ "path_verdict": applies, "detail": verdict.to_string() })
        }
        Err(e) => json!({ "path_verdict": "not available", "detail": e.to_string() }),
    };
    if let Some(why) = &wrapped.nonconformant {
        ui.warn(&format!("WRAPPED WITH A NON-CONFORMANT PATH ({}): {why}", wrapped.path));
    }
    let token = session.token().clone();
    // For AES the check value binds the record to the key, as the public half does for RSA and EC.
    let kcv = match kind {
        KeyKind::Aes(_) => session.check_value(key).map_err(hsm::error)?.map(|k| hsm::hex(&k)),
        _ => None,
    };
    let mut generator = format!(
        "byok-cli {}; source: {} via PKCS#11, {}",
        env!("CARGO_PKG_VERSION"),
        token.describe(),
        wrapped.path.name()
    );
    if wrapped.nonconformant.is_some() {
        generator.push_str("; NONCONFORMANT (--allow-nonconformant-wrap)");
    }
    let document = ByokBlob::new(kek.kid.clone(), wrapped.ciphertext, generator).to_json();
    ByokBlob::from_json(&document).map_err(|e| {
        CliError::new(
            Exit::Internal,
            anyhow::Error::new(e).context("the blob byok made does not validate"),
        )
    })?;
    if let Some((file, force)) = keep_byok {
        files::write_atomic(file, &document, force)?;
        ui.verbose(&format!("kept the blob in {}", file.display()));
    }
    let blob_sha256 = hex::encode(Sha256::digest(&document));

    let blob_len = document.len();
    request.byok = document;
    let expectation = expectation(session, key, kind, &request)?;
    let record = json!({
        "format_version": 1,
        "tool": { "name": "byok-cli", "version": env!("CARGO_PKG_VERSION") },
        "transfer_id": request.transfer_id,
        "started": started.to_string(),
        "finished": null,
        "vault": { "url": conn.vault().url(), "kind": conn.vault().kind().name() },
        "kek": {
            "kid": kek.kid.to_string(),
            "created_by_this_transfer": kek_created,
            "size_bits": kek.public.size().bits(),
            "fingerprint_sha256": kek.public.fingerprint_sha256(),
        },
        "source": {
            "token": {
                "label": token.label,
                "manufacturer": token.manufacturer,
                "model": token.model,
                "serial": token.serial,
                "firmware": token.firmware,
            },
            "key_uri": byok_pkcs11::key_uri(&token.label, &key.label, &key.id),
            "key_label": key.label,
            "key_id": hsm::hex(&key.id),
            "key_check_value": kcv,
        },
        "key": null,
        "wrap": {
            "path": wrapped.path.name(),
            "mechanisms": wrapped.path.mechanisms(),
            "conformant": wrapped.nonconformant.is_none(),
            "self_test": self_test,
        },
        "blob": {
            "sha256": blob_sha256,
            "bytes": blob_len,
            "kept_as": keep_byok.map(|(f, _)| f),
        },
        "import": null,
        "verification": null,
    });
    Ok(Prepared {
        request,
        kind,
        expectation,
        record,
    })
}

/// Steps 5 and 6: import, then verify against what the HSM showed. Returns the complete record and the
/// verification; a mismatch is not an error here (the caller decides, and still writes the record).
pub(crate) async fn complete(
    conn: &Connection,
    ui: Ui,
    show_steps: bool,
    prepared: Prepared,
) -> Result<(Value, Verification)> {
    let Prepared {
        request,
        kind,
        expectation,
        mut record,
    } = prepared;
    let say = |n: usize, text: String| {
        if show_steps {
            step(ui, n, &text);
        } else {
            ui.verbose(&text);
        }
    };
    say(
        5,
        format!("importing `{}` ({} bytes)", request.name, request.byok.len()),
    );
    let imported = conn.import_key(&request).await.map_err(import_error)?;
    say(6, format!("verifying {}", imported.key.kid));
    // The key is in the vault now: an error from here on says which version, so nothing imported goes unmentioned.
    let verification = check(conn, kind, &expectation, &imported.key).await.map_err(|e| {
        let kid = &imported.key.kid;
        CliError::new(
            e.exit,
            e.error.context(format!("{kid} was imported, but verifying it failed")),
        )
        .hint(format!(
            "look at {kid} before using it or importing again; byok did not add another version"
        ))
    })?;
    let import = json!({ "ambiguous_sends": imported.ambiguous });
    fill_record(&mut record, &imported.key, kind, &request.name, import, &verification);
    Ok((record, verification))
}

/// The record's parts that come from the vault: the key version, the import, the verification.
fn fill_record(record: &mut Value, key: &VaultKey, kind: KeyKind, name: &str, import: Value, v: &Verification) {
    record["finished"] = byok_keyvault::Timestamp::now().to_string().into();
    record["key"] = key_json(key, kind, name);
    record["import"] = import;
    record["verification"] = v.json();
}

/// A key an earlier run imported (its transfer tag is `transfer_id`) but did not see to the end — interrupted, or
/// killed: verify it against the HSM's key now and make its record, as that run would have.
pub(crate) async fn adopt(
    conn: &Connection,
    prepared: Prepared,
    existing: &VaultKey,
    transfer_id: &str,
) -> Result<(Value, Verification)> {
    let Prepared {
        request,
        kind,
        expectation,
        mut record,
    } = prepared;
    let verification = check(conn, kind, &expectation, existing).await?;
    record["transfer_id"] = transfer_id.into();
    let import = json!({ "ambiguous_sends": 0, "completed_by_resume": true });
    fill_record(&mut record, existing, kind, &request.name, import, &verification);
    // The blob described is this run's, not the one the vault received: say so rather than claim it.
    record["blob"] = json!({ "sha256": null, "bytes": null, "kept_as": null });
    Ok((record, verification))
}

/// The key's kind, if byok can transfer it: a kind Azure takes, and extractable (wrapped).
pub(crate) fn transferable(key: &KeyInfo) -> Result<KeyKind> {
    let KeyKindInfo::Supported(kind) = key.kind else {
        return Err(hsm::error(HsmError::UnsupportedKey {
            key: key.describe(),
            what: key.kind.to_string(),
        }));
    };
    if !key.extractable {
        return Err(hsm::error(HsmError::NotExtractable(key.describe())));
    }
    Ok(kind)
}

/// Reuses an import-only KEK or creates one; refuses a key of that name that is something else.
pub(crate) fn kek(
    ui: Ui,
    conn: &Connection,
    rt: &tokio::runtime::Runtime,
    name: &str,
    new_kek: bool,
    size: byok_encoding::RsaSize,
) -> Result<(Kek, bool)> {
    let create = || -> Result<(Kek, bool)> {
        let kek = rt.block_on(conn.create_kek(name, size)).map_err(vault::error)?;
        if !conn.vault().owns(&kek.kid) || kek.kid.name() != name {
            return Err(CliError::msg(
                Exit::Refused,
                format!(
                    "the vault {} created KEK `{name}` as {}, a key of another vault or name",
                    conn.vault(),
                    kek.kid
                ),
            ));
        }
        ui.note(&format!("created KEK {} ({size})", kek.kid));
        Ok((kek, true))
    };
    match rt.block_on(conn.get_kek(name, None)) {
        Ok(k) if !conn.vault().owns(&k.kid) || k.kid.name() != name => Err(CliError::msg(
            Exit::Refused,
            format!(
                "the vault {} answered for KEK `{name}` with {}, a key of another vault or name",
                conn.vault(),
                k.kid
            ),
        )
        .hint(
            "a blob for that KEK would not import here; check the vault URL and what sits between byok and the vault",
        )),
        Ok(_) if new_kek => create(),
        Ok(k) if k.is_import_only_hsm() => {
            ui.note(&format!("reusing KEK {} ({})", k.kid, k.public.size()));
            Ok((k, false))
        }
        Ok(k) => Err(CliError::msg(
            Exit::Refused,
            format!(
                "`{}` exists in {} but is {} with key_ops {:?}, not an import-only RSA-HSM KEK",
                name,
                conn.vault(),
                k.kty,
                k.key_ops
            ),
        )
        .hint(
            "choose another --kek-name; byok does not add a KEK version on top of a key that is used for other things",
        )),
        Err(e) if e.is_not_found() => create(),
        Err(byok_keyvault::Error::Answer { reason, .. }) => Err(CliError::msg(
            Exit::Refused,
            format!("`{}` exists in {} but is not an RSA KEK ({reason})", name, conn.vault()),
        )
        .hint("choose another --kek-name")),
        Err(e) => Err(vault::error(e)),
    }
}

/// What verification will compare, taken from the HSM before anything is sent.
fn expectation(
    session: &TokenSession<'_>,
    key: &KeyInfo,
    kind: KeyKind,
    request: &ImportRequest,
) -> Result<Expectation> {
    Ok(match kind {
        KeyKind::Rsa(_) | KeyKind::Ec(_) => match &key.public {
            Some(p) => Expectation::Public(p.clone()),
            None => Expectation::Unverifiable("the token does not show the key's public half".into()),
        },
        KeyKind::Aes(size) => {
            if !request.key_ops.iter().any(|o| o == "encrypt") {
                return Ok(Expectation::Unverifiable(
                    "the imported key does not allow `encrypt`, which the comparison needs".into(),
                ));
            }
            let mut block = [0u8; 16];
            getrandom::fill(&mut block)
                .map_err(|e| CliError::msg(Exit::Internal, format!("the OS random generator failed: {e}")))?;
            match session.encrypt_block(key, &block).map_err(hsm::error)? {
                Some(from_hsm) => Expectation::Block { block, from_hsm, size },
                None => Expectation::Unverifiable(
                    "the key in the token does not allow encryption (CKA_ENCRYPT), which the comparison needs".into(),
                ),
            }
        }
    })
}

/// Whether a key already in the vault is the one prepared (a batch run again skips it).
pub(crate) async fn compare_existing(
    conn: &Connection,
    prepared: &Prepared,
    existing: &VaultKey,
) -> Result<Verification> {
    check(conn, prepared.kind, &prepared.expectation, existing).await
}

/// Compares the vault's key with what the HSM showed, without either key leaving its home.
async fn check(conn: &Connection, kind: KeyKind, expected: &Expectation, imported: &VaultKey) -> Result<Verification> {
    let expected_kty = kind.kty().azure_hsm_name();
    if !imported.kty.eq_ignore_ascii_case(expected_kty) {
        return Ok(Verification::Mismatch {
            method: "key type",
            detail: format!("the vault holds a {} key, the HSM a {kind} key", imported.kty),
        });
    }
    match expected {
        Expectation::Unverifiable(reason) => Ok(Verification::NotVerifiable { reason: reason.clone() }),
        Expectation::Public(hsm_public) => {
            let method = "public key comparison";
            let Some(vault_public) = &imported.public else {
                return Ok(Verification::NotVerifiable {
                    reason: "the vault did not return the key's public half".into(),
                });
            };
            let (h, v) = (hsm_public.fingerprint_sha256(), vault_public.fingerprint_sha256());
            Ok(if hsm_public == vault_public {
                Verification::Verified {
                    method,
                    detail: format!("the vault's public key equals the HSM's (SHA-256 {h})"),
                }
            } else {
                Verification::Mismatch {
                    method,
                    detail: format!("the vault's public key (SHA-256 {v}) differs from the HSM's (SHA-256 {h})"),
                }
            })
        }
        Expectation::Block { block, from_hsm, size } => {
            let method = "one random block encrypted on both sides (HSM AES-ECB, vault AES-CBC with a zero IV)";
            if !imported.key_ops.iter().any(|o| o == "encrypt") {
                return Ok(Verification::NotVerifiable {
                    reason: "the vault's key does not allow `encrypt`".into(),
                });
            }
            let from_vault = conn
                .encrypt_block(imported.kid.name(), imported.kid.version(), *size, block)
                .await
                .map_err(vault::error)?;
            Ok(if *from_hsm == from_vault {
                Verification::Verified {
                    method,
                    detail: "both sides encrypt a random block to the same ciphertext".into(),
                }
            } else {
                Verification::Mismatch {
                    method,
                    detail: "the vault's key encrypts a random block differently from the HSM's".into(),
                }
            })
        }
    }
}

fn key_json(key: &VaultKey, kind: KeyKind, name: &str) -> Value {
    json!({
        "name": name,
        "kid": key.kid.to_string(),
        "version": key.kid.version(),
        "kty": key.kty,
        "kind": kind.to_string(),
        "crv": kind.curve().map(|c| c.azure_name()),
        "key_ops": key.key_ops,
        "enabled": key.enabled,
        "not_before": key.not_before.map(|t| t.to_string()),
        "expires": key.expires.map(|t| t.to_string()),
        "tags": key.tags,
        "public_key_sha256": key.public.as_ref().map(|p| p.fingerprint_sha256()),
    })
}

fn finish(ui: Ui, record: &Value, verification: &Verification, args: &Args) -> Result<()> {
    let kid = record["key"]["kid"].as_str().unwrap_or_default();
    let verdict = match verification {
        Verification::Verified { detail, .. } => format!("verified: {detail}"),
        Verification::NotVerifiable { reason } => format!("NOT VERIFIED: {reason}"),
        Verification::Mismatch { detail, .. } => format!("MISMATCH: {detail}"),
    };
    let mut human = format!(
        "transferred {kid}\n  key         {} {}\n  KEK         {}\n  wrap        {}\n  blob        SHA-256 {}\n  verification {verdict}\n",
        record["key"]["kty"].as_str().unwrap_or_default(),
        record["key"]["kind"].as_str().unwrap_or_default(),
        record["kek"]["kid"].as_str().unwrap_or_default(),
        record["wrap"]["path"].as_str().unwrap_or_default(),
        record["blob"]["sha256"].as_str().unwrap_or_default(),
    );
    if let Some(file) = &args.record {
        human.push_str(&format!("  record      {}\n", file.display()));
    }
    if let Verification::NotVerifiable { reason } = verification {
        ui.warn(&format!("the import could not be verified: {reason}"));
    }
    ui.result(&human, record).map_err(stdout_error)?;
    if let Verification::Mismatch { detail, .. } = verification {
        return Err(
            CliError::msg(Exit::Verification, format!("verification failed for {kid}: {detail}")).hint(
                "the vault holds a different key than the HSM: do not use this key version; disable it \
             (az keyvault key set-attributes --enabled false) and investigate before trying again",
            ),
        );
    }
    Ok(())
}
