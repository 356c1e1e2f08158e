//! One transfer from start to end: find the key, reuse or create the KEK, wrap in the HSM, import, verify.

use std::path::PathBuf;

use byok_keyvault::{Connection, Timestamp};
use byok_pkcs11::{Pkcs11Uri, TokenSession, WrapOptions};

use crate::attest::{self, AttestationPolicy};
use crate::error::{Error, Kind, Result, Step};
use crate::kek::{self, KekPolicy};
use crate::locks::KeyLocks;
use crate::observe::{Event, Observer};
use crate::record::Tool;
use crate::request::KeyProperties;
use crate::transfer::{self, Pipeline, Transferred};

/// What one transfer is to do.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The key in the token.
    pub key: Pkcs11Uri,
    /// Its name in the vault (a new version is added if the name exists).
    pub name: String,
    /// The KEK to wrap to.
    pub kek: KekPolicy,
    /// What the imported key version gets.
    pub properties: KeyProperties,
    /// How to wrap.
    pub wrap: WrapOptions,
    /// Also keep the `.byok` blob in this file.
    pub keep_blob: Option<PathBuf>,
    /// Replace `keep_blob` if it exists.
    pub replace_files: bool,
    /// The program named in the record and the blob.
    pub tool: Tool,
    /// Whether the Managed HSM's attestations are checked (the KEK's before the wrap, the key's after the import).
    pub attestation: AttestationPolicy,
}

impl Plan {
    /// Transfer `key` as `name`, wrapped to the KEK `kek`, with default properties and wrap options.
    pub fn new(key: Pkcs11Uri, name: impl Into<String>, kek: KekPolicy) -> Self {
        Self {
            key,
            name: name.into(),
            kek,
            properties: KeyProperties::default(),
            wrap: WrapOptions::default(),
            keep_blob: None,
            replace_files: false,
            tool: Tool::library(),
            attestation: AttestationPolicy::default(),
        }
    }

    /// Runs the transfer, blocking (it runs its own small async runtime: do not call it from async code). A
    /// verification mismatch is returned as a result, not an error: do not use that key version.
    pub fn execute(
        &self,
        session: &mut TokenSession<'_>,
        conn: &Connection,
        observer: &dyn Observer,
    ) -> Result<Transferred> {
        let rt = crate::runtime::current_thread()?;
        self.execute_on(&rt, session, conn, observer)
    }

    /// [`Plan::execute`] into each of `conns` in turn (a fan-out): the same HSM key, each destination with its own
    /// KEK, its own wrap in the HSM, its own import and verification. A destination that fails does not stop the
    /// others; each result is its own. `keep_blob` must be `None` (one file cannot keep several blobs).
    pub fn execute_fan_out(
        &self,
        session: &mut TokenSession<'_>,
        conns: &[Connection],
        observer: &dyn Observer,
    ) -> Result<Vec<(String, Result<Transferred>)>> {
        if self.keep_blob.is_some() && conns.len() > 1 {
            let message = "a kept .byok file holds one blob, and a fan-out makes one per destination";
            return Err(Error::new(Step::Preflight, Kind::InvalidInput, message)
                .with_hint("transfer to one vault at a time to keep each blob"));
        }
        crate::fan_out::check_distinct(conns.iter().map(|c| c.vault().url()))?;
        let rt = crate::runtime::current_thread()?;
        Ok(conns
            .iter()
            .map(|conn| {
                (
                    conn.vault().url().to_owned(),
                    self.execute_on(&rt, session, conn, observer),
                )
            })
            .collect())
    }

    /// [`Plan::execute`] on a runtime the caller drives: the connection's pooled connections belong to the runtime
    /// that opened them, so one operation keeps to one runtime.
    pub(crate) fn execute_on(
        &self,
        rt: &tokio::runtime::Runtime,
        session: &mut TokenSession<'_>,
        conn: &Connection,
        observer: &dyn Observer,
    ) -> Result<Transferred> {
        let started = Timestamp::now();
        let step = |number, text: &str| observer.event(&Event::Step { number, text });
        // 1. The source key, before anything is written anywhere.
        step(1, "finding the key in the HSM");
        let key = session
            .find_key(&self.key)
            .map_err(|e| Error::hsm(Step::Preflight, e))?;
        let kind = transfer::transferable(&key)?;
        let request = self
            .properties
            .request(conn.vault(), &self.name, kind.kty(), kind.curve())?;
        observer.event(&Event::Detail {
            text: &format!("key {} in token `{}`", key.describe(), session.token().label),
        });
        // A key this token can never wrap fails here, before a KEK is created for it.
        session
            .check_wrappable(kind, self.wrap)
            .map_err(|e| Error::hsm(Step::Preflight, e))?;
        // 2 and 3. The KEK and its public key.
        step(2, &format!("KEK `{}` in {}", self.kek.name, conn.vault()));
        let kek = rt.block_on(kek::obtain(conn, &self.kek, observer))?;
        let public = &kek.kek.public;
        step(
            3,
            &format!(
                "KEK public key {}, SHA-256 {}",
                public.size(),
                public.fingerprint_sha256()
            ),
        );
        // The KEK's provenance, before anything is wrapped.
        let attestation = rt.block_on(attest::check_kek(conn, &kek.kek, &self.attestation, observer))?;
        // 4 to 6: wrap, import, verify.
        let pipeline = Pipeline {
            conn,
            kek: &kek,
            attestation: &attestation,
            options: self.wrap,
            tool: &self.tool,
            observer,
        };
        let keep = self.keep_blob.as_deref().map(|f| (f, self.replace_files));
        let mut prepared = transfer::prepare(&pipeline, session, &key, kind, request, keep)?;
        prepared.set_started(started);
        let locks = KeyLocks::new()
            .map_err(|e| Error::new(Step::Import, Kind::Io, format!("cannot prepare the key locks: {e}")))?;
        rt.block_on(async {
            let _lock = locks.lock(conn.vault().url(), &self.name).await.map_err(|e| {
                Error::new(
                    Step::Import,
                    Kind::Io,
                    format!("cannot take the lock for key `{}`: {e}", self.name),
                )
            })?;
            transfer::complete(conn, observer, prepared).await
        })
    }
}
