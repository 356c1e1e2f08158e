//! Reading inputs with errors that name the file, and writing outputs atomically.

use std::io::{self, Read, Write};
use std::path::Path;

use crate::error::{Error, Kind, Result, Step};

/// Inputs are keys and blobs of a few KiB; anything far larger is a mistake, not a key.
const MAX_INPUT_LEN: u64 = 1024 * 1024;

/// Manifests list keys (about 100 bytes each): this is some 600,000 keys, far more than one batch should carry.
pub const MAX_MANIFEST_LEN: u64 = 64 * 1024 * 1024;

/// Reads a whole input file. `what` names it in errors ("KEK file", "target key file").
pub fn read_input(path: &Path, what: &str) -> Result<Vec<u8>> {
    read_bounded(path, what, MAX_INPUT_LEN, "far too large to be a key or a .byok file")
}

/// Reads a `.byok` file and parses it: its bytes as they are, and what they hold.
pub fn read_blob(path: &Path) -> Result<(Vec<u8>, byok_blob::ByokBlob)> {
    let bytes = read_input(path, ".byok file")?;
    let blob = parse_blob(path, &bytes)?;
    Ok((bytes, blob))
}

/// Parses the bytes of the `.byok` file `path`.
pub fn parse_blob(path: &Path, bytes: &[u8]) -> Result<byok_blob::ByokBlob> {
    byok_blob::ByokBlob::from_json(bytes).map_err(|e| {
        let message = format!("{} is not a valid .byok file", path.display());
        Error::with_source(Step::Preflight, Kind::InvalidInput, message, e)
    })
}

/// Reads a PIN file: UTF-8 text, one trailing newline (LF or CRLF) ignored, not empty. The bytes read are zeroized.
pub fn read_pin(path: &Path) -> Result<byok_pkcs11::Pin> {
    let bytes = zeroize::Zeroizing::new(read_input(path, "PIN file")?);
    let invalid = |what: &str| {
        Error::new(
            Step::Preflight,
            Kind::InvalidInput,
            format!("the PIN file {} {what}", path.display()),
        )
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| invalid("is not text"))?;
    let pin = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(text);
    if pin.is_empty() {
        return Err(invalid("is empty"));
    }
    Ok(byok_pkcs11::Pin::new(pin.to_owned()))
}

/// The permission bits of `path` when users other than its owner may access it (a PIN file they can read is a PIN
/// they know: ssh refuses such key files).
pub fn shared_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then_some(mode & 0o7777)
}

/// Reads a manifest, with its own limit.
pub fn read_manifest(path: &Path) -> Result<Vec<u8>> {
    read_bounded(
        path,
        "manifest",
        MAX_MANIFEST_LEN,
        "the limit for manifests; split the keys into several manifests",
    )
}

fn read_bounded(path: &Path, what: &str, limit: u64, why: &str) -> Result<Vec<u8>> {
    let shown = path.display();
    let io_err = |e: io::Error| {
        let reason = match e.kind() {
            io::ErrorKind::NotFound => "it does not exist".to_owned(),
            io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
            _ => e.to_string(),
        };
        Error::new(
            Step::Preflight,
            Kind::Io,
            format!("cannot read the {what} {shown}: {reason}"),
        )
    };
    let meta = std::fs::metadata(path).map_err(io_err)?;
    if meta.is_dir() {
        return Err(Error::new(
            Step::Preflight,
            Kind::Io,
            format!("cannot read the {what} {shown}: it is a directory"),
        ));
    }
    let file = std::fs::File::open(path).map_err(io_err)?;
    let mut data = Vec::new();
    file.take(limit + 1).read_to_end(&mut data).map_err(io_err)?;
    if data.len() as u64 > limit {
        return Err(Error::new(
            Step::Preflight,
            Kind::InvalidInput,
            format!("the {what} {shown} is larger than {limit} bytes, {why}"),
        ));
    }
    if data.is_empty() {
        return Err(Error::new(
            Step::Preflight,
            Kind::InvalidInput,
            format!("the {what} {shown} is empty"),
        ));
    }
    Ok(data)
}

/// Fails early, before any work, when `path` exists and `force` is not set.
pub fn check_writable(path: &Path, force: bool) -> Result<()> {
    if path.is_dir() {
        return Err(Error::new(
            Step::Preflight,
            Kind::Io,
            format!("cannot write {}: it is a directory", path.display()),
        ));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        return Err(Error::new(
            Step::Preflight,
            Kind::Io,
            format!(
                "cannot write {}: the directory {} does not exist",
                path.display(),
                dir.display()
            ),
        ));
    }
    // --force replaces a regular file (or a symbolic link, which is replaced, not followed); never a device, a FIFO
    // or a socket: `--file /dev/null --force` as root must not replace the system's /dev/null.
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && !meta.is_file()
        && !meta.file_type().is_symlink()
    {
        return Err(Error::new(
            Step::Preflight,
            Kind::Refused,
            format!(
                "cannot write {}: it is not a regular file (a device, FIFO or socket)",
                path.display()
            ),
        )
        .with_hint("byok writes regular files only, even with --force: choose a file path"));
    }
    if !force && path.exists() {
        return Err(Error::new(
            Step::Preflight,
            Kind::Refused,
            format!("{} already exists", path.display()),
        )
        .with_hint("choose another path, or pass --force to replace the file"));
    }
    Ok(())
}

/// Writes `data` to `path` atomically: a temporary file in the same directory, flushed to disk, then renamed
/// into place. Without `force` the rename refuses to replace an existing file, even one created meanwhile.
/// On any error nothing is left behind.
pub fn write_atomic(path: &Path, data: &[u8], force: bool) -> Result<()> {
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
                Error::new(Step::Preflight, Kind::Refused, format!("{shown} already exists"))
                    .with_hint("choose another path, or pass --force to replace the file")
            } else {
                io_err(e.error)
            }
        })?;
    }
    // The rename is durable only once the directory is on disk too.
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err)?;
    Ok(())
}

/// Refuses two outputs of one command that are the same file (`--keep-byok F --record F`): the second would
/// replace the first after the import, when stopping is too late.
pub fn check_distinct(outputs: &[(&str, &Path)]) -> Result<()> {
    let resolved = |p: &Path| -> std::path::PathBuf {
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
        match p.file_name() {
            Some(name) => dir.join(name),
            None => dir,
        }
    };
    for (i, (a_flag, a)) in outputs.iter().enumerate() {
        for (b_flag, b) in &outputs[i + 1..] {
            let same_file = match (std::fs::metadata(a), std::fs::metadata(b)) {
                (Ok(x), Ok(y)) => {
                    use std::os::unix::fs::MetadataExt as _;
                    x.dev() == y.dev() && x.ino() == y.ino()
                }
                _ => false,
            };
            if same_file || resolved(a) == resolved(b) {
                return Err(Error::new(
                    Step::Preflight,
                    Kind::Usage,
                    format!("{a_flag} and {b_flag} name the same file ({})", a.display()),
                )
                .with_hint("give each output its own path"));
            }
        }
    }
    Ok(())
}

/// The error for a file that cannot be written, in words (the temporary file's name is not the user's concern).
pub fn write_error(shown: &str, e: &io::Error) -> Error {
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
    let err = Error::new(Step::Preflight, Kind::Io, format!("cannot write {shown}: {reason}"));
    match hint {
        Some(h) => err.with_hint(h),
        None => err,
    }
}
