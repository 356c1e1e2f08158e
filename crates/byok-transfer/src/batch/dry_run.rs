//! A batch's dry run: everything checked — every key in the token, the self-test, the KEK, the names in the vault —
//! and nothing written.

use byok_keyvault::{Connection, VaultKey};
use byok_pkcs11::{KeyInfo, TokenSession, Verdict, WrapChoice};

use super::Options;
use super::engine::Source;
use super::manifest::Manifest;
use super::report::chain;
use crate::error::{Error, Result, Step};
use crate::verify::{self, Expectation, Verification};
use byok_encoding::KeyKind;

/// One line of a dry run: what would happen to a key (or to the self-test, or the KEK), and whether it is a problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// The key's name, or `(self-test)`, `(KEK)`.
    pub name: String,
    /// Whether it would go well.
    pub ok: bool,
    /// What would happen, or what is wrong.
    pub plan: String,
}

/// Checks what a batch would do, writing nothing; each finding goes to `say` as it is made. Returns the number of
/// problems found.
pub fn dry_run(
    manifest: &Manifest,
    options: &Options,
    conn: &Connection,
    source: Source<'_>,
    mut say: impl FnMut(&Check),
) -> Result<usize> {
    let rt = crate::runtime::current_thread()?;
    let mut session = source
        .module
        .open(source.uri, source.pin)
        .map_err(|e| Error::hsm(Step::Preflight, e))?;
    let mut problems = 0usize;
    let mut tell = |name: &str, ok: bool, plan: String| {
        problems += usize::from(!ok);
        say(&Check {
            name: name.to_owned(),
            ok,
            plan,
        });
    };
    let report = session.self_test().map_err(|e| Error::hsm(Step::Preflight, e))?.clone();
    let forced = matches!(options.wrap.choice, WrapChoice::Path(_));
    // RSA and EC keys (PKCS#8) need a fully conformant path; AES keys also take one that is right for aligned keys.
    let pkcs8_ok = forced || report.best().is_some();
    let aes_ok = pkcs8_ok
        || report
            .paths
            .iter()
            .any(|p| matches!(p.verdict, Verdict::AlignedOnly(_)));
    let self_test = match report.best() {
        Some(p) => format!("wraps with {p}"),
        None if aes_ok => format!(
            "AES keys only (no path is conformant for RSA/EC):\n{}",
            report.summary()
        ),
        None => format!("no conformant wrap path:\n{}", report.summary()),
    };
    tell("(self-test)", aes_ok, self_test);
    let kek_name = &options.kek.name;
    match rt.block_on(conn.get_kek(kek_name, None)) {
        Ok(k) if k.is_import_only_hsm() => tell("(KEK)", true, format!("reuses {}", k.kid)),
        Ok(k) => tell(
            "(KEK)",
            false,
            format!("`{kek_name}` exists but is {} with key_ops {:?}", k.kty, k.key_ops),
        ),
        Err(e) if e.is_not_found() => tell("(KEK)", true, format!("would create `{kek_name}`")),
        Err(e) => tell("(KEK)", false, e.to_string()),
    }
    for item in &manifest.items {
        let key = match session.find_key(&item.uri) {
            Ok(k) => k,
            Err(e) => {
                tell(&item.name, false, e.to_string());
                continue;
            }
        };
        let kind = match crate::transfer::transferable(&key) {
            Ok(k) => k,
            Err(e) => {
                tell(&item.name, false, chain(&e));
                continue;
            }
        };
        if !matches!(kind, KeyKind::Aes(_)) && !pkcs8_ok {
            tell(
                &item.name,
                false,
                format!("{kind}: the token has no wrap path conformant for RSA/EC keys"),
            );
            continue;
        }
        if let Err(e) = item.request(kind, conn.vault()) {
            tell(&item.name, false, e);
            continue;
        }
        let (ok, plan) = match rt.block_on(conn.get_key(&item.name, None)) {
            Err(e) if e.is_not_found() => (true, format!("would transfer {}", key.describe())),
            Ok(existing) => match rt.block_on(same_key(conn, &session, &key, kind, &existing)) {
                Ok(true) => (true, format!("would skip: already imported as {}", existing.kid)),
                Ok(false) => (
                    false,
                    format!("the name exists in the vault with a different key ({})", existing.kid),
                ),
                Err(why) => (
                    false,
                    format!("the name exists in the vault ({}) and {why}", existing.kid),
                ),
            },
            Err(e) => (false, e.to_string()),
        };
        tell(&item.name, ok, plan);
    }
    Ok(problems)
}

/// Whether a key in the vault is the token's key, by the one comparison every transfer uses (nothing is written
/// either way). `Err` says why it cannot be told.
async fn same_key(
    conn: &Connection,
    session: &TokenSession<'_>,
    key: &KeyInfo,
    kind: KeyKind,
    existing: &VaultKey,
) -> std::result::Result<bool, String> {
    let expected = Expectation::from_hsm(session, key, kind, &existing.key_ops).map_err(|e| chain(&e))?;
    match verify::verify(conn, &expected, existing).await.map_err(|e| chain(&e))? {
        Verification::Verified { .. } => Ok(true),
        Verification::Mismatch { .. } => Ok(false),
        Verification::NotVerifiable { reason } => Err(format!("byok cannot tell whether it is this key: {reason}")),
    }
}
