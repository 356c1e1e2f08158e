//! A rotation must bring new material: the new key is compared with every version the vault holds — RSA and EC by
//! their public halves, AES by byok's check-value tag and, for versions without one that allow `encrypt`, by one
//! block encrypted on both sides.

use byok_encoding::KeyKind;
use byok_keyvault::{Connection, KeyItem, KeyOp, tags};
use byok_pkcs11::{KeyInfo, TokenSession};

use crate::error::{Error, Kind, Result, Step};
use crate::verify::{self, Expectation, Verification};

/// Refuses `key` if any of `versions` of `name` holds the same material.
pub(super) async fn refuse_known(
    conn: &Connection,
    session: &TokenSession<'_>,
    key: &KeyInfo,
    kind: KeyKind,
    name: &str,
    versions: &[KeyItem],
) -> Result<()> {
    let same = |version: &str, how: &str| {
        Error::new(
            Step::Preflight,
            Kind::Refused,
            format!(
                "{}/keys/{name}/{version} already holds this key material ({how}): a rotation needs a new key",
                conn.vault().url()
            ),
        )
        .with_hint("generate one in the HSM (rotate --generate KIND --token URI) or name another key with --key")
    };
    let kcv = match kind {
        KeyKind::Aes(_) => session
            .check_value(key)
            .map_err(|e| Error::hsm(Step::Preflight, e))?
            .map(hex::encode),
        _ => None,
    };
    if !matches!(kind, KeyKind::Aes(_)) && key.public.is_none() {
        return Err(Error::new(
            Step::Preflight,
            Kind::Hsm,
            format!(
                "the token does not show the public half of {}, so byok cannot tell it from the versions already in the vault",
                key.describe()
            ),
        ));
    }
    let mut block_test: Option<Expectation> = None;
    for item in versions {
        let Some(version) = item.version.as_deref() else {
            continue;
        };
        if kcv.is_some() && item.tags.get(tags::CHECK_VALUE) == kcv.as_ref() {
            return Err(same(version, "the same AES check value"));
        }
        let vault_key = conn
            .get_key(name, Some(version))
            .await
            .map_err(|e| Error::vault(Step::Preflight, e))?;
        if vault_key.kty.family() != kind.kty() {
            continue;
        }
        if let (Some(theirs), Some(ours)) = (&vault_key.public, &key.public) {
            if theirs == ours {
                return Err(same(version, "the same public key"));
            }
            continue;
        }
        if matches!(kind, KeyKind::Aes(_)) && vault_key.key_ops.contains(&KeyOp::Encrypt) {
            if block_test.is_none() {
                block_test = Some(Expectation::from_hsm(session, key, kind, &[KeyOp::Encrypt])?);
            }
            let Some(expectation) = &block_test else { continue };
            let verdict = verify::verify(conn, expectation, &vault_key).await?;
            if matches!(verdict, Verification::Verified { .. }) {
                return Err(same(version, "one block encrypts the same on both sides"));
            }
        }
    }
    Ok(())
}
