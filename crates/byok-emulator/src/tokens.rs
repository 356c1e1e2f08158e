//! The access tokens the token endpoint issued, and their expiry. Kept in the state directory (`tokens.json`,
//! 0600, as SHA-256 digests: the file holds no bearer token) so that a token outlives a restart of the vault until it
//! expires, as Entra's tokens do: the Azure CLI caches its token and would fail with AKV10032 after a restart.
//! A token is for one audience (`https://vault.azure.net` or `https://managedhsm.azure.net`), as Entra's are: the
//! digest covers the audience with the token, so a Managed HSM refuses a token issued for Key Vault. One process
//! serving several vaults shares one [`Tokens`]: a token for an audience works at every vault of that audience.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use crate::state::{random_hex, write_private};

/// How many issued tokens [`Tokens`] remembers for leak scans, expired ones included.
const MAX_HISTORY: usize = 10_000;

/// A `tokens.json` larger than this is damaged, not read.
const MAX_FILE: u64 = 4 << 20;

/// Issued tokens (by digest) and their expiry in Unix milliseconds.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    issued: HashMap<String, u64>,
    /// Every token issued by this process, oldest first (for leak scans), at most [`MAX_HISTORY`].
    history: Vec<String>,
    /// Where the digests are kept; `None` in unit tests.
    file: Option<PathBuf>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn digest(audience: &str, token: &str) -> String {
    let bound = format!("{audience} {token}");
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bound.as_bytes()))
}

impl Tokens {
    /// The tokens an earlier run issued that have not expired (none if there is no file).
    pub(crate) fn load(dir: &Path) -> Result<Self> {
        let file = dir.join("tokens.json");
        let mut tokens = Self {
            file: Some(file.clone()),
            ..Self::default()
        };
        match std::fs::metadata(&file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(tokens),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
            Ok(m) if m.len() > MAX_FILE => anyhow::bail!("{} is damaged: larger than 4 MiB", file.display()),
            Ok(_) => {}
        }
        let text = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
        let issued: HashMap<String, u64> =
            serde_json::from_slice(&text).with_context(|| format!("{} is damaged", file.display()))?;
        let now = now_ms();
        tokens.issued = issued.into_iter().filter(|(_, exp)| *exp > now).collect();
        Ok(tokens)
    }

    /// A new token for `audience` valid for `lifetime`, written down before it is handed out.
    pub(crate) fn issue(&mut self, audience: &str, lifetime: Duration) -> Result<String> {
        let now = now_ms();
        self.issued.retain(|_, exp| *exp > now);
        let token = random_hex(32);
        let lifetime = u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX);
        self.issued
            .insert(digest(audience, &token), now.saturating_add(lifetime));
        if let Some(file) = &self.file {
            write_private(file, &serde_json::to_vec(&self.issued)?)?;
        }
        if self.history.len() < MAX_HISTORY {
            self.history.push(token.clone());
        }
        Ok(token)
    }

    /// Every token this process issued (up to [`MAX_HISTORY`]), expired ones included.
    pub(crate) fn history(&self) -> Vec<String> {
        self.history.clone()
    }

    /// Whether the token was issued here for `audience` and has not expired.
    pub(crate) fn check(&self, audience: &str, token: &str) -> Result<(), &'static str> {
        match self.issued.get(&digest(audience, token)) {
            None => Err("the access token is not one this vault's tenant issued for its audience"),
            Some(exp) if *exp <= now_ms() => Err("the access token has expired"),
            Some(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KV: &str = "https://vault.azure.net";

    #[test]
    fn tokens_expire_and_are_unforgeable() {
        let mut t = Tokens::default();
        let good = t.issue(KV, Duration::from_secs(60)).expect("issued");
        assert!(t.check(KV, &good).is_ok());
        assert_eq!(
            t.check(KV, "forged"),
            Err("the access token is not one this vault's tenant issued for its audience")
        );
        assert!(
            t.check("https://managedhsm.azure.net", &good).is_err(),
            "a Key Vault token is refused by a Managed HSM"
        );
        let old = t.issue(KV, Duration::ZERO).expect("issued");
        assert_eq!(t.check(KV, &old), Err("the access token has expired"));
    }

    #[test]
    fn a_token_outlives_a_restart_until_it_expires_and_is_not_kept_in_clear() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut first = Tokens::load(dir.path()).expect("no file yet");
        let live = first.issue(KV, Duration::from_secs(60)).expect("issued");
        let brief = first.issue(KV, Duration::from_millis(1)).expect("issued");
        std::thread::sleep(Duration::from_millis(5));
        let again = Tokens::load(dir.path()).expect("reloaded");
        assert!(again.check(KV, &live).is_ok());
        assert_eq!(
            again.check(KV, &brief),
            Err("the access token is not one this vault's tenant issued for its audience")
        );
        let file = dir.path().join("tokens.json");
        let text = std::fs::read_to_string(&file).expect("written");
        assert!(!text.contains(&live), "the file holds digests, not tokens");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&file).expect("file").permissions().mode() & 0o777,
            0o600
        );
        std::fs::write(&file, b"{not json").expect("damage it");
        assert!(
            Tokens::load(dir.path()).is_err(),
            "a damaged file is an error, not an empty list"
        );
    }
}
