//! The batch manifest (TOML): `[[key]]` tables naming a key in the token and its name in the vault, and a
//! `[defaults]` table. It is data from outside: bounded, checked, and never allowed to choose the code byok loads
//! or a file it reads as a PIN.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use byok_encoding::{Curve, KeyKind, Kty};
use byok_keyvault::{ImportRequest, KeyOp, Timestamp, Vault};
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
    destinations: Vec<String>,
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
    /// The vaults the manifest names (`destinations = ["https://…", …]`), checked and in their canonical form; a
    /// caller uses them only when the operator says so (a manifest that chose where keys go could send them to a
    /// vault its author owns).
    pub destinations: Vec<String>,
}

impl Manifest {
    /// The destinations to use from the manifest: its `destinations` when the operator `accepted` them, none
    /// when it lists none; refused when it lists some the operator did not accept, or `accepted` names none.
    pub fn destinations(&self, accepted: bool) -> Result<&[String]> {
        let refused = |kind, message: String| Error::new(Step::Preflight, kind, message);
        match (accepted, self.destinations.is_empty()) {
            (true, false) => Ok(&self.destinations),
            (false, true) => Ok(&[]),
            (true, true) => Err(refused(
                Kind::InvalidInput,
                "--manifest-destinations: the manifest lists no `destinations`".into(),
            )),
            (false, false) => Err(refused(
                Kind::Refused,
                format!(
                    "the manifest lists destinations ({}), and byok sends keys only where the command line says",
                    self.destinations.join(", ")
                ),
            )
            .with_hint("check them, then pass --manifest-destinations; or name the vaults with flags and remove them")),
        }
    }
}

/// More destinations than this in one manifest is a mistake, not a fan-out.
const MAX_DESTINATIONS: usize = 32;

/// The manifest's `destinations`: vault URLs byok accepts, each once.
fn destinations(file: &Path, urls: &[String]) -> Result<Vec<String>> {
    if urls.len() > MAX_DESTINATIONS {
        let what = format!("names {} destinations; at most {MAX_DESTINATIONS}", urls.len());
        return Err(manifest_error(file, what));
    }
    let mut seen = HashSet::new();
    urls.iter()
        .map(|url| {
            let vault = Vault::from_url(url).map_err(|e| manifest_error(file, format!("destination `{url}`: {e}")))?;
            if !seen.insert(vault.url().to_owned()) {
                return Err(manifest_error(file, format!("the destination `{url}` is listed twice")));
            }
            Ok(vault.url().to_owned())
        })
        .collect()
}

impl Manifest {
    /// Reads and checks a manifest: every key named once, one token, no URI that chooses code or a PIN file, and
    /// (unless `allow_duplicates`) no HSM key under two names.
    pub fn read(file: &Path, allow_duplicates: bool) -> Result<Self> {
        let bytes = files::read_manifest(file)?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let text = std::str::from_utf8(&bytes).map_err(|_| manifest_error(file, "is not UTF-8 text"))?;
        let manifest = parse(file, text)?;
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
        let mut names = HashSet::new();
        let mut items = Vec::with_capacity(manifest.key.len());
        for (i, entry) in manifest.key.iter().enumerate() {
            let item =
                Item::from_entry(entry, d).map_err(|what| manifest_error(file, format!("key {}: {what}", i + 1)))?;
            if !names.insert(item.name.clone()) {
                return Err(manifest_error(
                    file,
                    format!("key {}: the name `{}` is listed twice", i + 1, item.name),
                ));
            }
            items.push(item);
        }
        one_token(file, &items)?;
        if !allow_duplicates {
            distinct_keys(file, &items)?;
        }
        let destinations = destinations(file, &manifest.destinations)?;
        Ok(Self {
            items,
            sha256,
            destinations,
        })
    }
}

/// The TOML, with the line and column of a syntax error.
fn parse(file: &Path, text: &str) -> Result<ManifestFile> {
    toml::from_str(text).map_err(|e| {
        let at = e.span().map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: ")
        });
        manifest_error(file, format!("{}{}", at.unwrap_or_default(), e.message().trim_end()))
    })
}

/// A batch reads one token: every URI names the first key's.
fn one_token(file: &Path, items: &[Item]) -> Result<()> {
    let token = |u: &Pkcs11Uri| {
        (
            u.token.clone(),
            u.serial.clone(),
            u.manufacturer.clone(),
            u.model.clone(),
        )
    };
    match items.iter().find(|it| token(&it.uri) != token(&items[0].uri)) {
        Some(other) => Err(manifest_error(
            file,
            format!(
                "`{}` names another token than the first key: a batch reads one token",
                other.name
            ),
        )),
        None => Ok(()),
    }
}

/// No two names for one HSM key (as far as the URIs tell; the engine checks the keys it finds too).
fn distinct_keys(file: &Path, items: &[Item]) -> Result<()> {
    let mut seen = std::collections::HashMap::new();
    for it in items {
        let selector = (it.uri.object.clone(), it.uri.id.clone(), it.uri.object_type);
        if let Some(first) = seen.insert(selector, it.name.clone()) {
            return Err(
                manifest_error(file, format!("`{first}` and `{}` name the same HSM key", it.name)).with_hint(
                    "one key under two names is usually a mistake; pass --allow-duplicate-keys if it is meant",
                ),
            );
        }
    }
    Ok(())
}

/// A URI from a manifest: data, so it must not choose the code byok loads, the file it reads as a PIN, or the PIN.
fn manifest_uri(uri: Option<&str>) -> std::result::Result<Pkcs11Uri, String> {
    let uri: Pkcs11Uri = uri.ok_or("`uri` is missing")?.parse().map_err(|e| format!("{e}"))?;
    if uri.has_pin_value {
        return Err("a pin-value in a manifest URI is refused; give the PIN with --pin-file or --pin-env".into());
    }
    if uri.module_path.is_some() || uri.module_name.is_some() {
        return Err(
            "a module-path or module-name in a manifest URI is refused (it would choose the library byok loads); \
                    give the module with --pkcs11-module"
                .into(),
        );
    }
    if uri.pin_source.is_some() {
        return Err(
            "a pin-source in a manifest URI is refused (it would choose a file byok reads as a PIN); give the \
                    PIN with --pin-file or --pin-env"
                .into(),
        );
    }
    Ok(uri)
}

/// `ops`, each one of the vault's operation names.
fn ops(ops: Option<&Vec<String>>) -> std::result::Result<Option<Vec<KeyOp>>, String> {
    ops.map(|ops| {
        ops.iter()
            .map(|o| o.parse::<KeyOp>().map_err(|e| e.to_string()))
            .collect()
    })
    .transpose()
}

impl Item {
    /// One `[[key]]` table, checked and completed with the defaults. `Err` says what is wrong.
    fn from_entry(e: &Entry, d: &Entry) -> std::result::Result<Self, String> {
        let uri = manifest_uri(e.uri.as_deref())?;
        let name = e.name.clone().ok_or("`name` is missing")?;
        byok_keyvault::check_key_name(&name).map_err(|e| e.to_string())?;
        let time = |s: &Option<String>| {
            s.as_deref()
                .map(Timestamp::parse)
                .transpose()
                .map_err(|e| e.to_string())
        };
        let mut tags = d.tags.clone().unwrap_or_default();
        tags.extend(e.tags.clone().unwrap_or_default());
        Ok(Self {
            uri,
            name,
            kty: e
                .kty
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|err| format!("{err}"))?,
            size: e.size,
            curve: e
                .curve
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|err| format!("{err}"))?,
            properties: KeyProperties {
                ops: ops(e.ops.as_ref().or(d.ops.as_ref()))?,
                tags,
                enabled: e.enabled.or(d.enabled).unwrap_or(true),
                not_before: time(&e.not_before)?.or(time(&d.not_before)?),
                expires: time(&e.expires)?.or(time(&d.expires)?),
                exportable: false,
                release_policy: None,
            },
        })
    }

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
        match Manifest::read(&file, allow_duplicates) {
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
                "a module-path or module-name in a manifest URI is refused",
            ),
            (
                key("pkcs11:token=t;object=a?module-name=softhsm2", "a"),
                "a module-path or module-name in a manifest URI is refused",
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
            (
                key("pkcs11:token=t;object=a", "a") + "ops = [\"sign\", \"Sign\"]\n",
                "`Sign` is not a key operation; valid: encrypt, decrypt, sign, verify, wrapKey",
            ),
            (
                "[defaults]\nops = [\"unwrap\"]\n".to_owned() + &key("pkcs11:token=t;object=a", "a"),
                "`unwrap` is not a key operation",
            ),
        ];
        for (text, needle) in cases {
            let got = refusal(&text, false);
            assert!(got.contains(needle), "{text}\n=> {got}");
        }
        let dup = key("pkcs11:token=t;object=a", "a") + &key("pkcs11:token=t;object=a", "b");
        assert_eq!(refusal(&dup, true), "", "--allow-duplicate-keys");
    }
}
