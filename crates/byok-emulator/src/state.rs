//! The vault's state: credentials and keys, kept in `--state-dir/state.json` (0600), rewritten atomically after
//! every change, so a restart keeps everything.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One version of a key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct KeyVersion {
    pub(crate) version: String,
    pub(crate) kty: String,
    pub(crate) key_ops: Vec<String>,
    pub(crate) enabled: bool,
    pub(crate) nbf: Option<i64>,
    pub(crate) exp: Option<i64>,
    pub(crate) created: i64,
    pub(crate) updated: i64,
    pub(crate) exportable: bool,
    pub(crate) tags: BTreeMap<String, String>,
    /// How the key came to be: "generated", "byok" (unwrapped from a .byok blob).
    pub(crate) origin: String,
    pub(crate) material: Material,
}

/// Key material, base64 (standard). Private: it never leaves the emulator through the API.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum Material {
    /// PKCS#8 DER of an RSA private key.
    Rsa { pkcs8: String },
    /// PKCS#8 DER of an EC private key.
    Ec { pkcs8: String },
    /// Raw AES key bytes.
    Oct { key: String },
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Rsa { .. } => "Material::Rsa(<redacted>)",
            Self::Ec { .. } => "Material::Ec(<redacted>)",
            Self::Oct { .. } => "Material::Oct(<redacted>)",
        })
    }
}

/// Everything the emulator keeps.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct State {
    pub(crate) tenant_id: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
    /// Key name -> versions, oldest first.
    pub(crate) keys: BTreeMap<String, Vec<KeyVersion>>,
    /// Soft-deleted keys: name -> (deleted at, versions).
    #[serde(default)]
    pub(crate) deleted: BTreeMap<String, (i64, Vec<KeyVersion>)>,
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random generator works");
    hex::encode(buf)
}

fn uuid() -> String {
    let h = random_hex(16);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

impl State {
    pub(crate) fn load_or_create(dir: &Path) -> Result<Self> {
        let file = dir.join("state.json");
        if file.exists() {
            let text = std::fs::read(&file).with_context(|| file.display().to_string())?;
            return serde_json::from_slice(&text)
                .with_context(|| format!("{} is not a valid state file", file.display()));
        }
        let state = Self {
            tenant_id: uuid(),
            client_id: uuid(),
            client_secret: random_hex(24),
            keys: BTreeMap::new(),
            deleted: BTreeMap::new(),
        };
        state.save(dir)?;
        Ok(state)
    }

    pub(crate) fn save(&self, dir: &Path) -> Result<()> {
        write_private(&dir.join("state.json"), &serde_json::to_vec_pretty(self)?)
    }
}

fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().context("a file in a directory")?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Writes a file only its owner can read, atomically.
pub(crate) fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    write_atomic(path, data, 0o600)
}

/// Writes a file everyone may read (the CA certificate), atomically.
pub(crate) fn write_public(path: &Path, data: &[u8]) -> Result<()> {
    write_atomic(path, data, 0o644)
}
