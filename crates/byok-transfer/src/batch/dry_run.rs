//! A batch's dry run: everything checked — every key in the token, the self-test, the KEK, the names in the vault —
//! and nothing written.

use byok_keyvault::{Connection, KeyOp, VaultKey};
use byok_pkcs11::{KeyInfo, TokenSession, Verdict, WrapChoice};

use super::Options;
use super::engine::Source;
use super::manifest::{Item, Manifest};
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
    let mut tell = |check: Check| {
        problems += usize::from(!check.ok);
        say(&check);
    };
    let pkcs8_ok = self_test(&mut session, options, &mut tell)?;
    tell(kek(&rt, conn, &options.kek.name));
    for item in &manifest.items {
        let (ok, plan) = match rt.block_on(key(conn, &session, item, pkcs8_ok)) {
            Ok(plan) => (true, plan),
            Err(problem) => (false, problem),
        };
        tell(Check {
            name: item.name.clone(),
            ok,
            plan,
        });
    }
    Ok(problems)
}

/// The self-test's line; returns whether RSA and EC keys (PKCS#8) can be wrapped, which needs a fully conformant
/// path (AES keys also take one that is right for aligned keys).
fn self_test(session: &mut TokenSession<'_>, options: &Options, tell: &mut impl FnMut(Check)) -> Result<bool> {
    let report = session.self_test().map_err(|e| Error::hsm(Step::Preflight, e))?.clone();
    let forced = matches!(options.wrap.choice, WrapChoice::Path(_));
    let pkcs8_ok = forced || report.best().is_some();
    let aes_ok = pkcs8_ok
        || report
            .paths
            .iter()
            .any(|p| matches!(p.verdict, Verdict::AlignedOnly(_)));
    let plan = match report.best() {
        Some(p) => format!("wraps with {p}"),
        None if aes_ok => format!(
            "AES keys only (no path is conformant for RSA/EC):\n{}",
            report.summary()
        ),
        None => format!("no conformant wrap path:\n{}", report.summary()),
    };
    tell(Check {
        name: "(self-test)".into(),
        ok: aes_ok,
        plan,
    });
    Ok(pkcs8_ok)
}

/// The KEK's line: reused, created, or a name that holds something else.
fn kek(rt: &tokio::runtime::Runtime, conn: &Connection, name: &str) -> Check {
    let (ok, plan) = match rt.block_on(conn.get_kek(name, None)) {
        Ok(k) if k.is_import_only_hsm() => (true, format!("reuses {}", k.kid)),
        Ok(k) => (
            false,
            format!(
                "`{name}` exists but is {} with key_ops {:?}",
                k.kty,
                KeyOp::names(&k.key_ops)
            ),
        ),
        Err(e) if e.is_not_found() => (true, format!("would create `{name}`")),
        Err(e) => (false, e.to_string()),
    };
    Check {
        name: "(KEK)".into(),
        ok,
        plan,
    }
}

/// One key's plan, or the problem with it.
async fn key(
    conn: &Connection,
    session: &TokenSession<'_>,
    item: &Item,
    pkcs8_ok: bool,
) -> std::result::Result<String, String> {
    let key = session.find_key(&item.uri).map_err(|e| e.to_string())?;
    let kind = crate::transfer::transferable(&key).map_err(|e| chain(&e))?;
    if !matches!(kind, KeyKind::Aes(_)) && !pkcs8_ok {
        return Err(format!("{kind}: the token has no wrap path conformant for RSA/EC keys"));
    }
    item.request(kind, conn.vault())?;
    match conn.get_key(&item.name, None).await {
        Err(e) if e.is_not_found() => Ok(format!("would transfer {}", key.describe())),
        Ok(existing) => match same_key(conn, session, &key, kind, &existing).await {
            Ok(true) => Ok(format!("would skip: already imported as {}", existing.kid)),
            Ok(false) => Err(format!(
                "the name exists in the vault with a different key ({})",
                existing.kid
            )),
            Err(why) => Err(format!("the name exists in the vault ({}) and {why}", existing.kid)),
        },
        Err(e) => Err(e.to_string()),
    }
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
