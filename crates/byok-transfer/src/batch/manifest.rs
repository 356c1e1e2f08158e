//! The batch manifest (TOML): `[[key]]` tables naming a key in the token and its name in the vault, and a
//! `[defaults]` table. It is data from outside: bounded, checked, and never allowed to choose the code byok loads
//! or a file it reads as a PIN.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use byok_encoding::{Curve, KeyKind, Kty};
use byok_keyvault::{ImportRequest, Timestamp, Vault};
use byok_pkcs11::Pkcs11Uri;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Kind, Result, Step};
use crate::files;
use crate::request::KeyProperties;

/// One `[[key]]` table, or the `[defaults]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    uri: Option<String>,
    name: Option<String>,
    kty: Option<String>,
    size: Option<usize>,
    curve: Option<String>,
    ops: Option<Vec<String>>,
    tags: Option<BTreeMap<String, String>>,
    enabled: Option<bool>,
    not_before: Option<String>,
    expires: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    #[serde(default)]
    defaults: Entry,
    #[serde(default)]
    key: Vec<Entry>,
}

/// A manifest entry, checked and completed with the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The key in the token.
    pub uri: Pkcs11Uri,
    /// Its name in the vault.
    pub name: String,
    /// The type the token's key must have, if the manifest says.
    pub kty: Option<Kty>,
    /// The size in bits it must have (RSA, AES).
    pub size: Option<usize>,
    /// The curve it must have (EC).
    pub curve: Option<Curve>,
    /// What the imported key version gets.
    pub properties: KeyProperties,
}

fn manifest_error(file: &Path, what: impl std::fmt::Display) -> Error {
    Error::new(
        Step::Preflight,
        Kind::InvalidInput,
        format!("the manifest {}: {what}", file.display()),
    )
}

/// A batch's keys, read from a manifest file and checked.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The keys, in the file's order, completed with the defaults.
    pub items: Vec<Item>,
    /// SHA-256 of the file, hex (a state file is bound to it).
    pub sha256: String,
}

impl Manifest {
    /// Reads and checks a manifest: every key named once, one token, no URI that chooses code or a PIN file, and
    /// (unless `allow_duplicates`) no HSM key under two names.
    pub fn read(file: &Path, allow_duplicates: bool) -> Result<Self> {
        let (items, sha256) = read_manifest(file, allow_duplicates)?;
        Ok(Self { items, sha256 })
    }
}

fn read_manifest(file: &Path, allow_duplicates: bool) -> Result<(Vec<Item>, String)> {
    let bytes = files::read_manifest(file)?;
    let digest = hex::encode(Sha256::digest(&bytes));
    let text = std::str::from_utf8(&bytes).map_err(|_| manifest_error(file, "is not UTF-8 text"))?;
    let manifest: ManifestFile = toml::from_str(text).map_err(|e| {
        let at = e.span().map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: ")
        });
        manifest_error(file, format!("{}{}", at.unwrap_or_default(), e.message().trim_end()))
    })?;
    let d = &manifest.defaults;
    if d.uri.is_some() || d.name.is_some() || d.kty.is_some() || d.size.is_some() || d.curve.is_some() {
        return Err(manifest_error(
            file,
            "[defaults] takes ops, tags, enabled, not_before and expires only",
        ));
    }
    if manifest.key.is_empty() {
        return Err(manifest_error(file, "lists no [[key]]"));
    }
    let time = |s: &Option<String>, n: usize| -> Result<Option<Timestamp>> {
        s.as_deref()
            .map(Timestamp::parse)
            .transpose()
            .map_err(|e| manifest_error(file, format!("key {n}: {e}")))
    };
    let mut names = HashSet::new();
    let mut items = Vec::with_capacity(manifest.key.len());
    for (i, e) in manifest.key.iter().enumerate() {
        let n = i + 1;
        let bad = |what: String| manifest_error(file, format!("key {n}: {what}"));
        let uri: Pkcs11Uri = e
            .uri
            .as_deref()
            .ok_or_else(|| bad("`uri` is missing".into()))?
            .parse()
            .map_err(|err| bad(format!("{err}")))?;
        if uri.has_pin_value {
            return Err(bad(
                "a pin-value in a manifest URI is refused; give the PIN with --pin-file or --pin-env".into(),
            ));
        }
        // A manifest is data: it must not choose the code byok loads or the file it reads as a PIN.
        if uri.module_path.is_some() {
            return Err(bad(
                "a module-path in a manifest URI is refused (it would choose the library byok loads); give the \
                 module with --pkcs11-module"
                    .into(),
            ));
        }
        if uri.pin_source.is_some() {
            return Err(bad(
                "a pin-source in a manifest URI is refused (it would choose a file byok reads as a PIN); give the \
                 PIN with --pin-file or --pin-env"
                    .into(),
            ));
        }
        let name = e.name.clone().ok_or_else(|| bad("`name` is missing".into()))?;
        byok_keyvault::check_key_name(&name).map_err(|e| bad(e.to_string()))?;
        if !names.insert(name.clone()) {
            return Err(bad(format!("the name `{name}` is listed twice")));
        }
        let mut tags = d.tags.clone().unwrap_or_default();
        tags.extend(e.tags.clone().unwrap_or_default());
        items.push(Item {
            uri,
            name,
            kty: e
                .kty
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|err| bad(format!("{err}")))?,
            size: e.size,
            curve: e
                .curve
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|err| bad(format!("{err}")))?,
            properties: KeyProperties {
                ops: e.ops.clone().or_else(|| d.ops.clone()),
                tags,
                enabled: e.enabled.or(d.enabled).unwrap_or(true),
                not_before: time(&e.not_before, n)?.or(time(&d.not_before, n)?),
                expires: time(&e.expires, n)?.or(time(&d.expires, n)?),
                exportable: false,
                release_policy: None,
            },
        });
    }
    let token = |u: &Pkcs11Uri| {
        (
            u.token.clone(),
            u.serial.clone(),
            u.manufacturer.clone(),
            u.model.clone(),
        )
    };
    if let Some(other) = items.iter().find(|it| token(&it.uri) != token(&items[0].uri)) {
        return Err(manifest_error(
            file,
            format!(
                "`{}` names another token than the first key: a batch reads one token",
                other.name
            ),
        ));
    }
    if !allow_duplicates {
        let mut seen = std::collections::HashMap::new();
        for it in &items {
            let selector = (it.uri.object.clone(), it.uri.id.clone(), it.uri.object_type);
            if let Some(first) = seen.insert(selector, it.name.clone()) {
                return Err(
                    manifest_error(file, format!("`{first}` and `{}` name the same HSM key", it.name)).with_hint(
                        "one key under two names is usually a mistake; pass --allow-duplicate-keys if it is meant",
                    ),
                );
            }
        }
    }
    Ok((items, digest))
}

impl Item {
    /// Checks the token's key against what the manifest says, and builds the import request. `Err` says what
    /// does not agree.
    pub fn request(&self, kind: KeyKind, vault: &Vault) -> std::result::Result<ImportRequest, String> {
        if let Some(kty) = self.kty
            && kty != kind.kty()
        {
            return Err(format!("the manifest says {kty}, the token holds {kind}"));
        }
        let size = match kind {
            KeyKind::Rsa(s) => Some(s.bits()),
            KeyKind::Aes(s) => Some(s.bits()),
            KeyKind::Ec(_) => None,
        };
        if let Some(want) = self.size
            && size != Some(want)
        {
            return Err(format!("the manifest says {want} bits, the token holds {kind}"));
        }
        if let Some(c) = self.curve
            && kind.curve() != Some(c)
        {
            return Err(format!("the manifest says curve {c}, the token holds {kind}"));
        }
        self.properties
            .request(vault, &self.name, kind.kty(), kind.curve())
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(text: &str, allow_duplicates: bool) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("m.toml");
        std::fs::write(&file, text).expect("manifest");
        match read_manifest(&file, allow_duplicates) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn manifests_are_validated() {
        let key = |uri: &str, name: &str| format!("[[key]]\nuri = \"{uri}\"\nname = \"{name}\"\n");
        let ok = key("pkcs11:token=t;object=a", "a") + &key("pkcs11:token=t;object=b", "b");
        assert_eq!(refusal(&ok, false), "");
        let cases = [
            (
                key("pkcs11:token=t;object=a?module-path=/tmp/x.so", "a"),
                "a module-path in a manifest URI is refused",
            ),
            (
                key("pkcs11:token=t;object=a?pin-source=file:/etc/shadow", "a"),
                "a pin-source in a manifest URI is refused",
            ),
            (
                key("pkcs11:token=t;object=a?pin-value=1234", "a"),
                "a pin-value in a manifest URI is refused",
            ),
            (
                key("pkcs11:token=t;object=a", "a") + &key("pkcs11:token=t;object=a", "b"),
                "`a` and `b` name the same HSM key",
            ),
            (
                key("pkcs11:token=t;object=a", "a") + &key("pkcs11:token=t;object=b", "a"),
                "the name `a` is listed twice",
            ),
            (
                key("pkcs11:token=t;object=a", "a") + &key("pkcs11:token=u;object=b", "b"),
                "names another token",
            ),
            (key("pkcs11:token=t;object=a", "a_b"), "is not a key name"),
            (
                "[defaults]\nname = \"x\"\n".to_owned() + &key("pkcs11:token=t;object=a", "a"),
                "[defaults] takes",
            ),
            ("# nothing\n".to_owned(), "lists no [[key]]"),
        ];
        for (text, needle) in cases {
            let got = refusal(&text, false);
            assert!(got.contains(needle), "{text}\n=> {got}");
        }
        let dup = key("pkcs11:token=t;object=a", "a") + &key("pkcs11:token=t;object=a", "b");
        assert_eq!(refusal(&dup, true), "", "--allow-duplicate-keys");
    }
}
