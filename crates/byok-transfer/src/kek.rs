//! The Key Exchange Key a transfer wraps to: reused when the vault holds an import-only RSA-HSM key of that name,
//! created when the name is free (or a new version is asked for), refused when the name holds anything else.

use byok_encoding::RsaSize;
use byok_keyvault::{Connection, Kek, KeyOp};

use crate::error::{Error, Kind, Result, Step};
use crate::observe::{Event, Observer};

/// Which KEK to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KekPolicy {
    /// The KEK's name in the vault.
    pub name: String,
    /// Its size when it is created.
    pub size: RsaSize,
    /// Create a new version even if an import-only KEK of that name exists.
    pub new_version: bool,
}

impl KekPolicy {
    /// Reuse `name`, or create it with `size` bits.
    pub fn reuse_or_create(name: impl Into<String>, size: RsaSize) -> Self {
        Self {
            name: name.into(),
            size,
            new_version: false,
        }
    }
}

/// The KEK a transfer uses, and whether this transfer created it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KekChoice {
    /// The KEK version.
    pub kek: Kek,
    /// Whether it was created now.
    pub created: bool,
}

/// Reuses an import-only KEK or creates one; refuses a key of that name that is something else, or an answer that
/// names a key of another vault or name (a blob for it would not import here).
pub async fn obtain(conn: &Connection, policy: &KekPolicy, observer: &dyn Observer) -> Result<KekChoice> {
    let name = policy.name.as_str();
    let vault = conn.vault();
    match conn.get_kek(name, None).await {
        Ok(k) if !vault.owns(&k.kid) || k.kid.name() != name => Err(Error::new(
            Step::Kek,
            Kind::Refused,
            format!(
                "the vault {vault} answered for KEK `{name}` with {}, a key of another vault or name",
                k.kid
            ),
        )
        .with_hint(
            "a blob for that KEK would not import here; check the vault URL and what sits between byok and the vault",
        )),
        Ok(_) if policy.new_version => create(conn, policy, observer).await,
        Ok(kek) if kek.is_import_only_hsm() => {
            observer.event(&Event::KekReused { kek: &kek });
            Ok(KekChoice { kek, created: false })
        }
        Ok(k) => Err(Error::new(
            Step::Kek,
            Kind::Refused,
            format!(
                "`{name}` exists in {vault} but is {} with key_ops {:?}, not an import-only RSA-HSM KEK",
                k.kty,
                KeyOp::names(&k.key_ops)
            ),
        )
        .with_hint(
            "choose another --kek-name; byok does not add a KEK version on top of a key that is used for other things",
        )),
        Err(e) if e.is_not_found() => create(conn, policy, observer).await,
        Err(byok_keyvault::Error::Answer { reason, .. }) => Err(Error::new(
            Step::Kek,
            Kind::Refused,
            format!("`{name}` exists in {vault} but is not an RSA KEK ({reason})"),
        )
        .with_hint("choose another --kek-name")),
        Err(e) => Err(Error::vault(Step::Kek, e)),
    }
}

async fn create(conn: &Connection, policy: &KekPolicy, observer: &dyn Observer) -> Result<KekChoice> {
    let (name, vault) = (policy.name.as_str(), conn.vault());
    let kek = conn
        .create_kek(name, policy.size)
        .await
        .map_err(|e| Error::vault(Step::Kek, e))?;
    if !vault.owns(&kek.kid) || kek.kid.name() != name {
        return Err(Error::new(
            Step::Kek,
            Kind::Refused,
            format!(
                "the vault {vault} created KEK `{name}` as {}, a key of another vault or name",
                kek.kid
            ),
        ));
    }
    observer.event(&Event::KekCreated { kek: &kek });
    Ok(KekChoice { kek, created: true })
}
