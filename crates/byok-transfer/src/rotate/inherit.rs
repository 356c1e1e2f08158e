//! What a rotated version inherits from the current one: its operations, its tags (not byok's: they describe the new
//! version's own source) and its lifetime — a version that lived from `nbf` (or `created`) to `exp` is followed by one
//! that lives as long from now. It is enabled unless told otherwise (a rotation's point is a usable key).

use std::collections::BTreeMap;

use byok_keyvault::{KeyOp, Timestamp, VaultKey, tags};

use crate::error::{Error, Kind, Result, Step};
use crate::request::KeyProperties;

/// What the new version takes from the caller instead of the current version; `None` inherits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Its operations.
    pub ops: Option<Vec<KeyOp>>,
    /// Its tags (replacing the inherited ones).
    pub tags: Option<BTreeMap<String, String>>,
    /// Imported disabled.
    pub disabled: bool,
    /// Not usable before.
    pub not_before: Option<Timestamp>,
    /// Not usable after.
    pub expires: Option<Timestamp>,
    /// Exportable under this release policy (JSON).
    pub release_policy: Option<Vec<u8>>,
}

/// The new version's properties from `base` (the version inherited from) and the overrides, at time `now`.
pub(super) fn properties(base: &VaultKey, o: &Overrides, now: Timestamp) -> Result<KeyProperties> {
    let name = base.kid.name();
    if base.exportable == Some(true) && o.release_policy.is_none() {
        return Err(Error::new(
            Step::Preflight,
            Kind::Usage,
            format!(
                "{} is exportable under a release policy, which byok cannot read back to copy",
                base.kid
            ),
        )
        .with_hint(format!(
            "give the new version of `{name}` its policy: --exportable --policy FILE (the current one: az keyvault key show --name {name})"
        )));
    }
    let inherited_tags = base
        .tags
        .iter()
        .filter(|(k, _)| !tags::is_byok(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let expires = o
        .expires
        .or_else(|| lifetime(base).map(|life| Timestamp::from_unix(now.unix() + life)));
    Ok(KeyProperties {
        ops: Some(o.ops.clone().unwrap_or_else(|| base.key_ops.clone())),
        tags: o.tags.clone().unwrap_or(inherited_tags),
        enabled: !o.disabled,
        not_before: o.not_before,
        expires,
        exportable: o.release_policy.is_some(),
        release_policy: o.release_policy.clone(),
    })
}

/// How long `key` was to live, in seconds: from `nbf` (or `created`) to `exp`; `None` without an expiry.
fn lifetime(key: &VaultKey) -> Option<i64> {
    let start = key.not_before.or(key.created)?;
    let life = key.expires?.unix() - start.unix();
    (life > 0).then_some(life)
}

#[cfg(test)]
mod tests {
    use super::*;
    use byok_blob::KeyId;
    use byok_keyvault::KeyType;

    fn base() -> VaultKey {
        VaultKey {
            kid: KeyId::parse("https://contoso.vault.azure.net/keys/app/0123456789abcdef0123456789abcdef")
                .expect("kid"),
            kty: KeyType::hsm(byok_encoding::Kty::Rsa),
            key_ops: vec![KeyOp::Sign, KeyOp::Verify],
            public: None,
            enabled: Some(true),
            not_before: None,
            expires: Some(Timestamp::from_unix(1_000 + 365 * 86_400)),
            created: Some(Timestamp::from_unix(1_000)),
            exportable: Some(false),
            hsm_platform: None,
            tags: BTreeMap::from([
                ("owner".to_owned(), "pki".to_owned()),
                (byok_keyvault::TRANSFER_TAG.to_owned(), "f".repeat(32)),
                (tags::TOKEN.to_owned(), "0123".to_owned()),
            ]),
        }
    }

    #[test]
    fn a_rotated_version_inherits_operations_user_tags_and_lifetime() {
        let now = Timestamp::from_unix(2_000_000_000);
        let p = properties(&base(), &Overrides::default(), now).expect("inherits");
        assert_eq!(p.ops, Some(vec![KeyOp::Sign, KeyOp::Verify]));
        assert_eq!(
            p.tags,
            BTreeMap::from([("owner".to_owned(), "pki".to_owned())]),
            "byok's tags are the new source's"
        );
        assert_eq!(p.expires, Some(Timestamp::from_unix(2_000_000_000 + 365 * 86_400)));
        assert!(p.enabled);
        let o = Overrides {
            ops: Some(vec![KeyOp::Verify]),
            tags: Some(BTreeMap::new()),
            disabled: true,
            expires: Some(Timestamp::from_unix(2_100_000_000)),
            ..Overrides::default()
        };
        let p = properties(&base(), &o, now).expect("overridden");
        assert_eq!((p.ops, p.tags.len(), p.enabled), (Some(vec![KeyOp::Verify]), 0, false));
        assert_eq!(p.expires, Some(Timestamp::from_unix(2_100_000_000)));
        let mut exportable = base();
        exportable.exportable = Some(true);
        let e = properties(&exportable, &Overrides::default(), now).expect_err("a policy byok cannot copy");
        assert!(e.to_string().contains("release policy"), "{e}");
    }
}
