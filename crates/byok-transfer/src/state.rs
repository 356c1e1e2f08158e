//! The batch state file (`--resume STATE`): JSON lines, the first a header saying what the file belongs to (vault,
//! KEK, token, manifest digest), then one line per key — `started` before its import is sent, then how it ended.
//! It is untrusted input when read back: bounded, byok's own lines only, no links followed, locked while in use.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Value, json};

use crate::error::{Error, Kind, Result, Step};
use crate::{files, locks};

/// A line longer than this is not one byok wrote (they are about 300 bytes).
const MAX_LINE: usize = 64 * 1024;
/// About a million keys' lines; anything larger is not a state file byok made.
const MAX_STATE_BYTES: u64 = 512 * 1024 * 1024;
/// The header's tag and version.
const HEADER: &str = "byok_batch_state";

/// What a state file belongs to; a file made for another run is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The destination vault's URL; several are separated by spaces (a fan-out).
    pub vault: String,
    pub kek: String,
    pub token: String,
    pub manifest_sha256: String,
}

impl Binding {
    fn header(&self) -> Value {
        json!({
            HEADER: 1, "vault": self.vault, "kek": self.kek, "token": self.token,
            "manifest_sha256": self.manifest_sha256,
        })
    }

    /// The first field that differs from a header, named for the error.
    fn mismatch(&self, header: &Value) -> Option<(&'static str, String, String)> {
        let fields: [(&'static str, &str); 4] = [
            ("vault", &self.vault),
            ("KEK", &self.kek),
            ("token", &self.token),
            ("manifest (SHA-256)", &self.manifest_sha256),
        ];
        let keys = ["vault", "kek", "token", "manifest_sha256"];
        fields.into_iter().zip(keys).find_map(|((what, ours), key)| {
            let theirs = header[key].as_str().unwrap_or("(none)");
            (theirs != ours).then(|| (what, theirs.to_owned(), ours.to_owned()))
        })
    }
}

/// What an earlier run recorded, per destination vault and key name.
#[derive(Debug, Default)]
pub struct Previous {
    /// Done or skipped in that vault: not looked at again.
    completed: std::collections::HashSet<(String, String)>,
    /// Sent to that vault (or about to be) with this transfer id, and not seen to end: a resume that finds this id
    /// on the key in the vault finishes its verification and record.
    started: HashMap<(String, String), String>,
}

impl Previous {
    /// Whether key `name` ended in `vault` (done or skipped) in an earlier run.
    pub fn is_completed(&self, vault: &str, name: &str) -> bool {
        self.completed.contains(&(vault.to_owned(), name.to_owned()))
    }

    /// The transfer id an earlier run sent key `name` to `vault` with, if it was not seen to end.
    pub fn started(&self, vault: &str, name: &str) -> Option<&str> {
        self.started
            .get(&(vault.to_owned(), name.to_owned()))
            .map(String::as_str)
    }

    /// How many (vault, key) pairs ended in earlier runs.
    pub fn completed_count(&self) -> usize {
        self.completed.len()
    }
}

/// The open, locked state file.
#[derive(Debug)]
pub struct StateFile {
    file: Mutex<File>,
    path: PathBuf,
}

/// What can be told of a state file before anything else happens: it is a regular file (or absent), not a link, not
/// too large.
pub fn precheck(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(Error::new(
            Step::Preflight,
            Kind::Io,
            format!("the state file {} is a directory", path.display()),
        )),
        Ok(m) if m.file_type().is_symlink() => Err(refused(
            path,
            "it is a symbolic link; byok does not follow links for its state file",
        )),
        Ok(m) if !m.is_file() => Err(refused(path, "it is not a regular file")),
        Ok(m) if m.len() > MAX_STATE_BYTES => Err(refused(path, &format!("it is larger than {MAX_STATE_BYTES} bytes"))),
        Ok(_) => {
            // Its first line must be byok's header: a manifest or any other file given by mistake is not appended to.
            let mut first = Vec::new();
            let file = File::open(path).map_err(|e| {
                Error::new(
                    Step::Preflight,
                    Kind::Io,
                    format!("cannot read the state file {}: {e}", path.display()),
                )
            })?;
            io::BufRead::read_until(&mut io::BufReader::new(file.take(MAX_LINE as u64)), b'\n', &mut first).map_err(
                |e| {
                    Error::new(
                        Step::Preflight,
                        Kind::Io,
                        format!("cannot read the state file {}: {e}", path.display()),
                    )
                },
            )?;
            let header: Value = serde_json::from_slice(first.trim_ascii()).unwrap_or(Value::Null);
            if first.trim_ascii().is_empty() || header[HEADER] == 1 {
                Ok(())
            } else {
                Err(not_byoks(path))
            }
        }
        Err(_) => Ok(()),
    }
}

fn not_byoks(path: &Path) -> Error {
    Error::new(
        Step::Preflight,
        Kind::InvalidInput,
        format!("the state file {} is not byok's (line 1)", path.display()),
    )
    .with_hint("its first line is not byok's header, so nothing was appended: give --resume a state file byok wrote, or a new path")
}

impl StateFile {
    /// Opens (or makes) the state file for `binding`, locked against other byok processes, and reads what it holds.
    pub fn open(path: &Path, binding: &Binding) -> Result<(Self, Previous)> {
        let shown = path.display();
        let io_err = |e: io::Error| {
            Error::new(
                Step::Preflight,
                Kind::Io,
                format!("cannot open the state file {shown}: {e}"),
            )
        };
        precheck(path)?;
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(refused(
                    path,
                    "it is a symbolic link; byok does not follow links for its state file",
                ));
            }
            Ok(m) if !m.is_file() => return Err(refused(path, "it is not a regular file")),
            Ok(m) if m.len() > MAX_STATE_BYTES => {
                return Err(refused(path, &format!("it is larger than {MAX_STATE_BYTES} bytes")));
            }
            _ => {}
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(io_err)?;
        locks::lock_state(&file, path)?;
        let (lines, complete) = read_lines(&mut file, path)?;
        let previous = match lines.split_first() {
            None => {
                let header = binding.header().to_string();
                append(&mut file, &header, !complete).map_err(|e| files::write_error("the state file", &e))?;
                Previous::default()
            }
            Some((first, rest)) => {
                check_header(path, first, binding)?;
                if !complete {
                    // A line cut short (kill -9 mid-write) is ended, so the next one starts on its own line.
                    append(&mut file, "", true).map_err(|e| files::write_error("the state file", &e))?;
                }
                previous(path, rest, &binding.vault)?
            }
        };
        Ok((
            Self {
                file: Mutex::new(file),
                path: path.to_owned(),
            },
            previous,
        ))
    }

    /// Appends one line in one write, flushed to disk.
    pub fn record(&self, line: &Value) -> Result<()> {
        let mut f = self.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        append(&mut f, &line.to_string(), false)
            .map_err(|e| files::write_error(&format!("the state file {}", self.path.display()), &e).at(Step::Record))
    }
}

fn refused(path: &Path, why: &str) -> Error {
    Error::new(
        Step::Preflight,
        Kind::Refused,
        format!("the state file {}: {why}", path.display()),
    )
    .with_hint("give --resume a state file byok wrote, or a new path")
}

/// One line (with its newline) in one `write`, then fsync. `newline_first` ends a partial line before it.
fn append(f: &mut File, line: &str, newline_first: bool) -> io::Result<()> {
    let mut buf = String::with_capacity(line.len() + 2);
    if newline_first {
        buf.push('\n');
    }
    buf.push_str(line);
    if !line.is_empty() {
        buf.push('\n');
    }
    f.write_all(buf.as_bytes())?;
    f.sync_data()
}

/// The file's complete lines, and whether it ends with a newline (false: its last line was cut short and is left
/// out). Empty lines are skipped.
fn read_lines(f: &mut File, path: &Path) -> Result<(Vec<Vec<u8>>, bool)> {
    let read_err = |e: io::Error| {
        Error::new(
            Step::Preflight,
            Kind::Io,
            format!("cannot read the state file {}: {e}", path.display()),
        )
    };
    f.seek(SeekFrom::Start(0)).map_err(read_err)?;
    let mut data = Vec::new();
    f.take(MAX_STATE_BYTES + 1).read_to_end(&mut data).map_err(read_err)?;
    if data.len() as u64 > MAX_STATE_BYTES {
        return Err(refused(path, &format!("it is larger than {MAX_STATE_BYTES} bytes")));
    }
    let complete = data.is_empty() || data.ends_with(b"\n");
    let mut lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    if !complete {
        lines.pop();
    }
    let mut out = Vec::new();
    for (i, line) in lines.into_iter().enumerate() {
        if line.len() > MAX_LINE {
            return Err(refused(
                path,
                &format!("line {} is longer than {MAX_LINE} bytes: not byok's", i + 1),
            ));
        }
        if !line.is_empty() {
            out.push(line.to_vec());
        }
    }
    Ok((out, complete))
}

fn check_header(path: &Path, first: &[u8], binding: &Binding) -> Result<()> {
    let header: Value = serde_json::from_slice(first).unwrap_or(Value::Null);
    if header[HEADER] != 1 {
        return Err(not_byoks(path));
    }
    if let Some((what, theirs, ours)) = binding.mismatch(&header) {
        return Err(Error::new(
            Step::Preflight,
            Kind::Refused,
            format!(
                "the state file {} belongs to another run: its {what} is {theirs}, this run's is {ours}",
                path.display()
            ),
        )
        .with_hint(
            "a state file records one manifest into one vault with one KEK and token: give this run a new state file",
        ));
    }
    Ok(())
}

fn previous(path: &Path, lines: &[Vec<u8>], vaults: &str) -> Result<Previous> {
    let mut p = Previous::default();
    for (i, line) in lines.iter().enumerate() {
        // A line cut short by a crash (and ended by the next run) is not JSON: that key is simply looked at again.
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        let (Some(name), Some(status)) = (v["name"].as_str(), v["status"].as_str()) else {
            return Err(refused(path, &format!("line {} is not byok's", i + 2)));
        };
        // A line is trusted only for a vault of this run.
        let Some(vault) = v["vault"].as_str().filter(|v| vaults.split(' ').any(|ours| ours == *v)) else {
            continue;
        };
        let key = (vault.to_owned(), name.to_owned());
        match status {
            "done" | "skipped" => {
                p.started.remove(&key);
                p.completed.insert(key);
            }
            "started" => {
                if let Some(id) = v["transfer_id"].as_str() {
                    p.started.insert(key, id.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding() -> Binding {
        Binding {
            vault: "https://a.vault.azure.net".into(),
            kek: "kek".into(),
            token: "tok (serial 1)".into(),
            manifest_sha256: "00".into(),
        }
    }

    #[test]
    fn lines_are_bounded_and_partial_lines_ended() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s");
        {
            let (s, p) = StateFile::open(&path, &binding()).expect("new");
            assert_eq!(p.completed_count(), 0);
            s.record(&json!({"name": "a", "status": "done", "vault": "https://a.vault.azure.net"}))
                .expect("line");
        }
        // kill -9 in the middle of a line.
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(br#"{"name": "b", "sta"#).expect("partial");
        drop(f);
        let (s, p) = StateFile::open(&path, &binding()).expect("again");
        let a = "https://a.vault.azure.net";
        assert!(p.is_completed(a, "a") && !p.is_completed(a, "b"));
        assert!(
            !p.is_completed("https://b.vault.azure.net", "a"),
            "only for its own vault"
        );
        s.record(&json!({"name": "b", "status": "done", "vault": "https://a.vault.azure.net"}))
            .expect("line");
        drop(s);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            text.ends_with("\"sta\n{\"name\":\"b\",\"status\":\"done\",\"vault\":\"https://a.vault.azure.net\"}\n"),
            "{text}"
        );
        let (_, p) = StateFile::open(&path, &binding()).expect("third");
        assert!(p.is_completed(a, "b"));
    }
}
