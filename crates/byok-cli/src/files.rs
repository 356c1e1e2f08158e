//! Reading inputs with errors that name the file, and writing outputs atomically.

use std::io::{self, Read, Write};
use std::path::Path;

use crate::exit::{CliError, Exit, Result};

/// Inputs are keys and blobs of a few KiB; anything far larger is a mistake, not a key.
const MAX_INPUT_LEN: u64 = 1024 * 1024;

/// Reads a whole input file. `what` names it in errors ("KEK file", "target key file").
pub(crate) fn read_input(path: &Path, what: &str) -> Result<Vec<u8>> {
    let shown = path.display();
    let io_err = |e: io::Error| {
        let reason = match e.kind() {
            io::ErrorKind::NotFound => "it does not exist".to_owned(),
            io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
            _ => e.to_string(),
        };
        CliError::msg(Exit::Io, format!("cannot read the {what} {shown}: {reason}"))
    };
    let meta = std::fs::metadata(path).map_err(io_err)?;
    if meta.is_dir() {
        return Err(CliError::msg(
            Exit::Io,
            format!("cannot read the {what} {shown}: it is a directory"),
        ));
    }
    let file = std::fs::File::open(path).map_err(io_err)?;
    let mut data = Vec::new();
    file.take(MAX_INPUT_LEN + 1).read_to_end(&mut data).map_err(io_err)?;
    if data.len() as u64 > MAX_INPUT_LEN {
        return Err(CliError::msg(
            Exit::InvalidInput,
            format!(
                "the {what} {shown} is larger than {MAX_INPUT_LEN} bytes, far too large to be a key or a .byok file"
            ),
        ));
    }
    if data.is_empty() {
        return Err(CliError::msg(
            Exit::InvalidInput,
            format!("the {what} {shown} is empty"),
        ));
    }
    Ok(data)
}

/// Fails early, before any work, when `path` exists and `force` is not set.
pub(crate) fn check_writable(path: &Path, force: bool) -> Result<()> {
    if path.is_dir() {
        return Err(CliError::msg(
            Exit::Io,
            format!("cannot write {}: it is a directory", path.display()),
        ));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        return Err(CliError::msg(
            Exit::Io,
            format!(
                "cannot write {}: the directory {} does not exist",
                path.display(),
                dir.display()
            ),
        ));
    }
    if !force && path.exists() {
        return Err(
            CliError::msg(Exit::Refused, format!("{} already exists", path.display()))
                .hint("choose another path, or pass --force to replace the file"),
        );
    }
    Ok(())
}

/// Writes `data` to `path` atomically: a temporary file in the same directory, flushed to disk, then renamed
/// into place. Without `force` the rename refuses to replace an existing file, even one created meanwhile.
/// On any error nothing is left behind.
pub(crate) fn write_atomic(path: &Path, data: &[u8], force: bool) -> Result<()> {
    check_writable(path, force)?;
    let shown = path.display();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let io_err = |e: io::Error| write_error(&shown.to_string(), &e);
    let mut tmp = tempfile::Builder::new()
        .prefix(".byok-tmp-")
        .tempfile_in(dir)
        .map_err(io_err)?;
    tmp.write_all(data).map_err(io_err)?;
    tmp.as_file().sync_all().map_err(io_err)?;
    if force {
        tmp.persist(path).map_err(|e| io_err(e.error))?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| {
            if e.error.kind() == io::ErrorKind::AlreadyExists {
                CliError::msg(Exit::Refused, format!("{shown} already exists"))
                    .hint("choose another path, or pass --force to replace the file")
            } else {
                io_err(e.error)
            }
        })?;
    }
    Ok(())
}

/// The error for a file that cannot be written, in words (the temporary file's name is not the user's concern).
pub(crate) fn write_error(shown: &str, e: &io::Error) -> CliError {
    let (reason, hint) = match e.kind() {
        io::ErrorKind::StorageFull => (
            "no space left on the device".to_owned(),
            Some("free some space or write somewhere else; nothing was written"),
        ),
        io::ErrorKind::QuotaExceeded => (
            "the disk quota is exceeded".to_owned(),
            Some("free some space or write somewhere else; nothing was written"),
        ),
        io::ErrorKind::PermissionDenied => ("permission denied".to_owned(), None),
        io::ErrorKind::ReadOnlyFilesystem => ("the file system is read-only".to_owned(), None),
        _ => (e.to_string(), None),
    };
    let err = CliError::msg(Exit::Io, format!("cannot write {shown}: {reason}"));
    match hint {
        Some(h) => err.hint(h),
        None => err,
    }
}
