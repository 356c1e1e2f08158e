//! The vault's state, kept in `--state-dir` so that a restart keeps everything: `credentials.json`, and one file per
//! key in `keys/` (and per deleted key in `deleted/`), each private (0600) and replaced atomically when that key
//! changes — a change costs one small write however many keys the vault holds.

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
#[derive(Clone, Debug)]
pub(crate) struct State {
    pub(crate) tenant_id: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
    /// The federated token the client-assertion grant accepts (workload identity).
    pub(crate) federated_token: String,
    /// The secret the managed-identity endpoint wants in `X-IDENTITY-HEADER` (App Service's `IDENTITY_HEADER`).
    pub(crate) identity_header: String,
    /// Key name -> versions, oldest first.
    pub(crate) keys: BTreeMap<String, Vec<KeyVersion>>,
    /// Soft-deleted keys: name -> (deleted at, versions).
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

#[derive(Serialize, Deserialize)]
struct Credentials {
    tenant_id: String,
    client_id: String,
    client_secret: String,
    /// Added later: state directories made before it get one on their next start.
    #[serde(default = "federated_token")]
    federated_token: String,
    /// Added later, as `federated_token`.
    #[serde(default = "federated_token")]
    identity_header: String,
}

fn federated_token() -> String {
    random_hex(32)
}

impl State {
    pub(crate) fn load_or_create(dir: &Path) -> Result<Self> {
        let file = dir.join("credentials.json");
        let credentials: Credentials = if file.exists() {
            let text = std::fs::read(&file).with_context(|| file.display().to_string())?;
            serde_json::from_slice(&text)
                .with_context(|| format!("{} is not a valid credentials file", file.display()))?
        } else {
            let c = Credentials {
                tenant_id: uuid(),
                client_id: uuid(),
                client_secret: random_hex(24),
                federated_token: federated_token(),
                identity_header: federated_token(),
            };
            write_private(&file, &serde_json::to_vec_pretty(&c)?)?;
            c
        };
        // The token file a workload-identity client reads (`AZURE_FEDERATED_TOKEN_FILE`); rewritten at every start.
        write_private(&file, &serde_json::to_vec_pretty(&credentials)?)?;
        write_private(&dir.join("federated-token"), credentials.federated_token.as_bytes())?;
        let mut state = Self {
            tenant_id: credentials.tenant_id,
            client_id: credentials.client_id,
            client_secret: credentials.client_secret,
            federated_token: credentials.federated_token,
            identity_header: credentials.identity_header,
            keys: BTreeMap::new(),
            deleted: BTreeMap::new(),
        };
        state.load_keys(dir)?;
        Ok(state)
    }

    /// Another vault of the same tenant: `tenant`'s credentials, the keys kept in `dir` (made if new).
    pub(crate) fn for_vault(dir: &Path, tenant: &Self) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut state = Self {
            keys: BTreeMap::new(),
            deleted: BTreeMap::new(),
            ..tenant.clone()
        };
        state.load_keys(dir)?;
        Ok(state)
    }

    fn load_keys(&mut self, dir: &Path) -> Result<()> {
        for (sub, deleted) in [("keys", false), ("deleted", true)] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d)?;
            for entry in std::fs::read_dir(&d)? {
                let path = entry?.path();
                let Some(name) = path.file_stem().and_then(|n| n.to_str()).map(str::to_owned) else {
                    continue;
                };
                if path.extension().and_then(|e| e.to_str()) != Some("json") {
                    continue;
                }
                let text = std::fs::read(&path)?;
                if deleted {
                    let v = serde_json::from_slice(&text).with_context(|| format!("{} is damaged", path.display()))?;
                    self.deleted.insert(name, v);
                } else {
                    let v = serde_json::from_slice(&text).with_context(|| format!("{} is damaged", path.display()))?;
                    self.keys.insert(name, v);
                }
            }
        }
        Ok(())
    }

    /// Writes (or removes) the files of one key name to match memory.
    pub(crate) fn persist(&self, dir: &Path, name: &str) -> Result<()> {
        let live = dir.join("keys").join(format!("{name}.json"));
        match self.keys.get(name) {
            Some(versions) => write_private(&live, &serde_json::to_vec_pretty(versions)?)?,
            None => remove_if_present(&live)?,
        }
        let deleted = dir.join("deleted").join(format!("{name}.json"));
        match self.deleted.get(name) {
            Some(d) => write_private(&deleted, &serde_json::to_vec_pretty(d)?)?,
            None => remove_if_present(&deleted)?,
        }
        Ok(())
    }
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
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
