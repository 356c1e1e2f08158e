//! Locks between byok processes on this machine: the batch state file (one run at a time), and each key name in a
//! vault while it is looked up, imported and verified (two runs never both find it missing and both import it).

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Kind, Result, Step};

/// Takes the exclusive lock on an open state file, or says which process holds it.
pub fn lock_state(file: &File, path: &Path) -> Result<()> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => {
            let holder = file
                .metadata()
                .ok()
                .and_then(|m| holder_pid(m.ino()))
                .map(|pid| format!(" (pid {pid})"))
                .unwrap_or_default();
            Err(Error::new(
                Step::Preflight,
                Kind::Refused,
                format!(
                    "the state file {} is in use by another byok-cli{holder}",
                    path.display()
                ),
            )
            .with_hint("two runs on one state file would import keys twice: wait for the other run to end, or stop it"))
        }
        Err(TryLockError::Error(e)) => Err(Error::new(
            Step::Preflight,
            Kind::Io,
            format!("cannot lock the state file {}: {e}", path.display()),
        )),
    }
}

/// The process holding a lock on inode `ino`, as Linux lists it in /proc/locks.
fn holder_pid(ino: u64) -> Option<u32> {
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        // `1: FLOCK  ADVISORY  WRITE 24284 fe:00:10010689 0 EOF`
        let fields: Vec<&str> = line.split_whitespace().collect();
        let pid = fields.get(4)?.parse().ok()?;
        let inode: u64 = fields.get(5)?.rsplit(':').next()?.parse().ok()?;
        (inode == ino).then_some(pid)
    })
}

/// How many lock files the key locks are spread over: two processes on different keys rarely share one, and the
/// directory never grows past this (one file per key would leave a file behind for every key ever transferred).
const STRIPES: usize = 256;

/// Machine-wide locks on key names in vaults, held from the look-up to the verification so that two byok processes
/// never both find a name free and both import. A name maps to one of [`STRIPES`] lock files, flock'ed while any
/// task of this process works on a name of that stripe (names within one process are unique: a batch refuses a
/// manifest that lists one twice). Taking a lock costs a couple of system calls; each file is opened once.
#[derive(Debug)]
pub struct KeyLocks {
    dir: PathBuf,
    stripes: Vec<std::sync::Mutex<Stripe>>,
}

#[derive(Debug, Default)]
struct Stripe {
    file: Option<File>,
    /// Tasks of this process holding the stripe: the flock is taken by the first and released by the last.
    holders: usize,
}

/// A held key lock; released when dropped.
#[derive(Debug)]
pub struct KeyLock<'a> {
    stripe: &'a std::sync::Mutex<Stripe>,
}

impl Drop for KeyLock<'_> {
    fn drop(&mut self) {
        let mut s = self.stripe.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        s.holders -= 1;
        if s.holders == 0
            && let Some(f) = &s.file
        {
            // Closing would release it too; unlocking keeps the file open for the next name of this stripe.
            let _ = f.unlock();
        }
    }
}

impl KeyLocks {
    /// The lock directory, checked (private to this user); no file is opened yet.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            dir: lock_dir()?,
            stripes: (0..STRIPES).map(|_| std::sync::Mutex::default()).collect(),
        })
    }

    /// Waits until no other byok process on this machine works on a name of this one's stripe.
    pub async fn lock(&self, vault: &str, name: &str) -> io::Result<KeyLock<'_>> {
        let digest = Sha256::digest(format!("{vault}\n{name}").as_bytes());
        let index = usize::from(u16::from_be_bytes([digest[0], digest[1]])) % STRIPES;
        let stripe = &self.stripes[index];
        loop {
            if self.try_take(stripe, index)? {
                return Ok(KeyLock { stripe });
            }
            // Another process works on a name of this stripe: it is done within one transfer's time.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    fn try_take(&self, stripe: &std::sync::Mutex<Stripe>, index: usize) -> io::Result<bool> {
        let mut s = stripe.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if s.holders > 0 {
            s.holders += 1;
            return Ok(true);
        }
        if s.file.is_none() {
            s.file = Some(
                OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(self.dir.join(format!("key-{index:03}.lock")))?,
            );
        }
        let file = s
            .file
            .as_ref()
            .ok_or_else(|| io::Error::other("the lock file is not open"))?;
        match file.try_lock() {
            Ok(()) => {
                s.holders = 1;
                Ok(true)
            }
            Err(TryLockError::WouldBlock) => Ok(false),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }
}

/// `$XDG_RUNTIME_DIR/byok-locks`, else `$TMPDIR/byok-locks-UID`: private to the user (0700, owned by them).
fn lock_dir() -> io::Result<PathBuf> {
    let uid = std::fs::metadata("/proc/self")?.uid();
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("byok-locks"),
        None => std::env::temp_dir().join(format!("byok-locks-{uid}")),
    };
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(&dir)?;
    if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o022 != 0 {
        return Err(io::Error::other(format!(
            "{} is not a private directory of this user",
            dir.display()
        )));
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_file_is_held_by_one_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state");
        let first = File::create(&path).expect("create");
        lock_state(&first, &path).expect("first lock");
        let second = File::open(&path).expect("open");
        let err = lock_state(&second, &path).expect_err("second lock");
        assert_eq!(err.kind(), Kind::Refused);
        let message = err.to_string();
        assert!(message.contains("in use by another byok-cli"), "{message}");
        drop(first);
        lock_state(&second, &path).expect("free again");
    }

    #[test]
    fn a_key_lock_excludes_another_process_until_released() {
        // Two `KeyLocks` open their own files, as two processes would.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (a, b) = (KeyLocks::new().expect("locks"), KeyLocks::new().expect("locks"));
        let vault = format!("https://lock-test-{}.vault.azure.net", std::process::id());
        rt.block_on(async {
            let held = a.lock(&vault, "k").await.expect("lock");
            let waiting = tokio::time::timeout(std::time::Duration::from_millis(200), b.lock(&vault, "k")).await;
            assert!(waiting.is_err(), "the second process must wait");
            drop(held);
            let taken = tokio::time::timeout(std::time::Duration::from_secs(5), b.lock(&vault, "k")).await;
            assert!(taken.is_ok_and(|l| l.is_ok()), "free once released");
        });
    }
}
