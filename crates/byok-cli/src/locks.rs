//! Locks between byok processes on this machine: the batch state file (one run at a time), and each key name in a
//! vault while it is looked up, imported and verified (two runs never both find it missing and both import it).

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::exit::{CliError, Exit, Result};

/// Takes the exclusive lock on an open state file, or says which process holds it.
pub(crate) fn lock_state(file: &File, path: &Path) -> Result<()> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => {
            let holder = file
                .metadata()
                .ok()
                .and_then(|m| holder_pid(m.ino()))
                .map(|pid| format!(" (pid {pid})"))
                .unwrap_or_default();
            Err(CliError::msg(
                Exit::Refused,
                format!(
                    "the state file {} is in use by another byok-cli{holder}",
                    path.display()
                ),
            )
            .hint("two runs on one state file would import keys twice: wait for the other run to end, or stop it"))
        }
        Err(TryLockError::Error(e)) => Err(CliError::msg(
            Exit::Io,
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

/// Held while one key name in one vault is being looked up, imported and verified.
#[derive(Debug)]
pub(crate) struct KeyLock {
    _file: File,
}

impl KeyLock {
    /// Waits until no other byok process on this machine works on `name` in `vault`.
    pub(crate) fn acquire(vault: &str, name: &str) -> io::Result<Self> {
        let digest = hex::encode(Sha256::digest(format!("{vault}\n{name}").as_bytes()));
        let path = lock_dir()?.join(format!("{}.lock", &digest[..32]));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        file.lock()?;
        Ok(Self { _file: file })
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
        assert_eq!(err.exit, Exit::Refused);
        let message = err.error.to_string();
        assert!(message.contains("in use by another byok-cli"), "{message}");
        drop(first);
        lock_state(&second, &path).expect("free again");
    }
}
