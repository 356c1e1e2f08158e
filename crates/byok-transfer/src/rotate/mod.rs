//! Rotation: a new HSM key brought into an existing vault key as its next version — the manual rotation Microsoft
//! documents for imported keys, which Azure's automatic rotation cannot do. The new version inherits the current
//! one's operations, tags and lifetime unless told otherwise (`inherit`), is refused if its material is already in
//! any version (`material`), is transferred and verified as `full-transfer` does ([`Plan`]), and then the older
//! versions are retired if asked (`retire`). Everything done is in the returned record.

mod inherit;
mod material;
mod retire;

use byok_encoding::KeyKind;
use byok_keyvault::{Connection, KeyItem, Timestamp, VaultKey};
use byok_pkcs11::{Pkcs11Uri, TokenSession};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Kind, Result, Step};
use crate::observe::{Event, Observer};
use crate::period::Period;
use crate::plan::Plan;
use crate::provenance::Provenance;
use crate::transfer::Transferred;
use crate::verify::Verification;

pub use inherit::Overrides;

/// Where the new version's key comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A key already in the token.
    Existing(Box<Pkcs11Uri>),
    /// A key made now in the session's token: extractable only wrapped, labelled `{name}-{UTC time}`, a random id.
    Generate(KeyKind),
}

/// What becomes of the versions before the new one once it is verified.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Retire {
    /// Nothing.
    #[default]
    Keep,
    /// Enabled versions expire this long from now (an earlier expiry is kept: a rotation never lengthens a life).
    ExpireAfter(Period),
    /// Enabled versions are disabled now.
    Disable,
}

/// One rotation.
#[derive(Clone, Debug)]
pub struct Rotation {
    /// The transfer: its `key` is replaced by the source's, its `properties` by the inherited ones.
    pub plan: Plan,
    /// The new version's key.
    pub source: Source,
    /// The version whose properties the new one inherits (default: the current, the newest one).
    pub from_version: Option<String>,
    /// What the new version changes from them.
    pub overrides: Overrides,
    /// What becomes of the older versions.
    pub retire: Retire,
}

/// What a rotation did: the transfer (its record has a `rotation` part) and whether retiring failed somewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotated {
    /// The new version's transfer.
    pub transferred: Transferred,
    /// The key in the token the new version holds (the generated one's URI, with `Source::Generate`).
    pub key_uri: String,
}

/// The record's account of a rotation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationRecord {
    /// The version whose properties the new one inherited.
    pub from_version: String,
    /// Whether the source key was generated for this rotation.
    pub generated: bool,
    /// What became of each older enabled version.
    pub previous: Vec<VersionChange>,
}

/// What happened to one older version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionChange {
    /// The version.
    pub version: String,
    /// `expires`, `disabled`, `kept` (it expires earlier already), `failed`, or `not retired` (the new version was
    /// not verified).
    pub action: String,
    /// Its expiry before (RFC 3339).
    pub expires_before: Option<String>,
    /// Its expiry after.
    pub expires_after: Option<String>,
    /// Why it failed or was left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl RotationRecord {
    /// Whether changing an older version failed.
    pub fn failed(&self) -> bool {
        self.previous.iter().any(|c| c.action == "failed")
    }
}

impl Rotation {
    /// Runs the rotation, blocking (as [`Plan::execute`]). Everything is checked before the HSM makes or wraps
    /// anything: the key exists and byok imported it, `from_version` exists, the properties can be inherited.
    pub fn execute(
        &self,
        session: &mut TokenSession<'_>,
        conn: &Connection,
        observer: &dyn Observer,
    ) -> Result<Rotated> {
        let rt = crate::runtime::current_thread()?;
        let name = &self.plan.name;
        let (versions, base) = rt.block_on(current(conn, name, self.from_version.as_deref()))?;
        let properties = inherit::properties(&base, &self.overrides, Timestamp::now())?;
        let (key_uri, generated) = match &self.source {
            Source::Existing(uri) => ((**uri).clone(), false),
            Source::Generate(kind) => {
                // Nothing is made in the token for a rotation that could not go ahead.
                same_type(&base, *kind)?;
                properties.request(conn.vault(), name, kind.kty(), kind.curve())?;
                (generate(session, *kind, name, observer)?, true)
            }
        };
        let key = session.find_key(&key_uri).map_err(|e| Error::hsm(Step::Preflight, e))?;
        let kind = crate::transfer::transferable(&key)?;
        same_type(&base, kind)?;
        rt.block_on(material::refuse_known(conn, session, &key, kind, name, &versions))?;
        let plan = Plan {
            key: key_uri.clone(),
            properties,
            ..self.plan.clone()
        };
        let mut transferred = plan.execute_on(&rt, session, conn, observer)?;
        let new_version = transferred.record.key.as_ref().map(|k| k.version.clone());
        let verified = matches!(transferred.verification, Verification::Verified { .. });
        let older: Vec<&KeyItem> = versions.iter().filter(|v| v.version != new_version).collect();
        let previous = rt.block_on(retire::apply(conn, name, &older, self.retire, verified, observer));
        transferred.record.rotation = Some(RotationRecord {
            from_version: base.kid.version().to_owned(),
            generated,
            previous,
        });
        Ok(Rotated {
            transferred,
            key_uri: key_uri.to_string(),
        })
    }
}

/// The key's versions and the one to inherit from (read whole: its operations and tags), after checking that the
/// key exists, that byok imported a version of it, and that `from` is one of them.
async fn current(conn: &Connection, name: &str, from: Option<&str>) -> Result<(Vec<KeyItem>, VaultKey)> {
    let versions = conn.list_versions(name).await.map_err(|e| {
        let hint = e.is_not_found().then(|| {
            format!("rotate adds a version to a key byok imported; bring a new key in with full-transfer --name {name}")
        });
        let e = Error::vault(Step::Preflight, e);
        match hint {
            Some(h) => e.with_hint(h),
            None => e,
        }
    })?;
    if !versions.iter().any(|v| Provenance::from_tags(&v.tags).is_some()) {
        return Err(refused(format!(
            "no version of `{name}` was imported by byok (none carries its `byok-transfer` tag): byok rotates only \
             keys it brought in"
        ))
        .with_hint(format!(
            "to bring an HSM key in as a new version of `{name}` anyway, use full-transfer --name {name}"
        )));
    }
    let base = match from {
        Some(v) => versions
            .iter()
            .find(|i| i.version.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(v)))
            .ok_or_else(|| {
                let known: Vec<&str> = versions.iter().filter_map(|i| i.version.as_deref()).collect();
                Error::new(
                    Step::Preflight,
                    Kind::Usage,
                    format!("`{name}` has no version `{v}`; its versions: {}", known.join(", ")),
                )
            })?,
        None => newest(&versions).ok_or_else(|| refused(format!("`{name}` lists no versions")))?,
    };
    let version = base.version.clone().unwrap_or_default();
    let key = conn
        .get_key(name, Some(&version))
        .await
        .map_err(|e| Error::vault(Step::Preflight, e))?;
    Ok((versions, key))
}

/// A rotation keeps the key's type: its users expect it.
fn same_type(base: &VaultKey, kind: KeyKind) -> Result<()> {
    if kind.kty() == base.kty.family() {
        return Ok(());
    }
    Err(refused(format!(
        "`{}` holds {} keys and the new key is {kind}: a rotation keeps the key's type (its users expect it)",
        base.kid.name(),
        base.kty
    )))
}

/// A kind to generate, as `rotate --generate` takes it: `rsa:3072`, `ec:P-256`, `oct:256` (`aes:256` too).
pub fn kind_spec(spec: &str) -> std::result::Result<KeyKind, String> {
    use byok_encoding::{Curve, Kty};
    let bad = || {
        format!(
            "`{spec}` is not a key byok can generate for Azure: rsa:2048|3072|4096, ec:P-256|P-384|P-521|P-256K, \
             oct:128|192|256"
        )
    };
    let (family, param) = spec.split_once(':').ok_or_else(bad)?;
    let (kty, bits, curve) = match family.to_ascii_lowercase().as_str() {
        "rsa" => (Kty::Rsa, Some(param.parse().map_err(|_| bad())?), None),
        "ec" => (Kty::Ec, None, Some(param.parse::<Curve>().map_err(|_| bad())?)),
        "oct" | "aes" => (Kty::Oct, Some(param.parse().map_err(|_| bad())?), None),
        _ => return Err(bad()),
    };
    KeyKind::from_parts(kty, bits, curve).map_err(|_| bad())
}

/// The newest version: the latest `created` (the listing's last among equals).
pub(crate) fn newest(versions: &[KeyItem]) -> Option<&KeyItem> {
    versions.iter().rev().max_by_key(|v| v.created)
}

/// A new key in the token for this rotation; its URI.
fn generate(session: &TokenSession<'_>, kind: KeyKind, name: &str, observer: &dyn Observer) -> Result<Pkcs11Uri> {
    let now = Timestamp::now().to_string();
    let stamp: String = now.chars().filter(char::is_ascii_alphanumeric).collect();
    let label = format!("{name}-{stamp}");
    let hsm = |e| Error::hsm(Step::Preflight, e);
    let id = session.random_id().map_err(hsm)?;
    observer.event(&Event::Detail {
        text: &format!("generating {kind} `{label}` in `{}`", session.token().label),
    });
    let key = session.generate(kind, &label, &id).map_err(hsm)?;
    let uri = byok_pkcs11::key_uri(&session.token().label, &key.label, &key.id);
    uri.parse::<Pkcs11Uri>().map_err(hsm)
}

fn refused(message: String) -> Error {
    Error::new(Step::Preflight, Kind::Refused, message)
}
