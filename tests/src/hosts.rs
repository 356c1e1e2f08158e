//! A line of `/etc/hosts` that maps a vault's name to 127.0.0.1 while a check runs, and only that line: it is removed
//! when dropped, and lines a killed run left behind (their process is gone) are removed when the next one adds its own.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// What marks the lines this module writes; the process id follows.
const MARK: &str = "# byok interop check, removed when it ends; pid ";

/// One mapping, removed on drop.
#[derive(Debug)]
pub struct HostsEntry {
    path: PathBuf,
    line: String,
}

impl HostsEntry {
    /// Maps `host` to 127.0.0.1 in the hosts file `path`. Refuses if another line already names `host`.
    pub fn add(path: &Path, host: &str) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut kept: Vec<&str> = text.lines().filter(|l| !left_behind(l)).collect();
        if let Some(taken) = kept.iter().find(|l| names(l, host)) {
            bail!("{} already maps {host} (`{taken}`): remove that line", path.display());
        }
        let line = format!("127.0.0.1 {host} {MARK}{}", std::process::id());
        kept.push(&line);
        write(path, &kept).with_context(|| {
            format!(
                "the az check maps {host} to 127.0.0.1 in {} and cannot write it (it needs root)",
                path.display()
            )
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            line,
        })
    }
}

impl Drop for HostsEntry {
    fn drop(&mut self) {
        if let Ok(text) = std::fs::read_to_string(&self.path) {
            let kept: Vec<&str> = text.lines().filter(|l| *l != self.line).collect();
            let _ = write(&self.path, &kept);
        }
    }
}

/// Rewrites the file in place (it may be a bind mount, which cannot be replaced by a rename).
fn write(path: &Path, lines: &[&str]) -> std::io::Result<()> {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text)
}

/// Whether a hosts line maps `host` (names are case-insensitive; comments ignored).
fn names(line: &str, host: &str) -> bool {
    let fields = line.split('#').next().unwrap_or_default();
    fields.split_whitespace().skip(1).any(|h| h.eq_ignore_ascii_case(host))
}

/// A line of ours whose process no longer runs.
fn left_behind(line: &str) -> bool {
    line.split_once(MARK)
        .and_then(|(_, pid)| pid.trim().parse::<u32>().ok())
        .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_its_line_refuses_a_taken_name_and_removes_only_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hosts = dir.path().join("hosts");
        let stale = format!("127.0.0.1 old.vault.azure.net {MARK}4294967295");
        std::fs::write(
            &hosts,
            format!("127.0.0.1 localhost\n10.0.0.1 Taken.vault.azure.net # x\n{stale}\n"),
        )
        .expect("hosts");
        assert!(HostsEntry::add(&hosts, "taken.vault.azure.net").is_err());
        let entry = HostsEntry::add(&hosts, "n.vault.azure.net").expect("a free name");
        let text = std::fs::read_to_string(&hosts).expect("hosts");
        assert!(text.lines().any(|l| names(l, "n.vault.azure.net")));
        assert!(!text.contains("old.vault.azure.net"), "a dead run's line stays: {text}");
        drop(entry);
        assert_eq!(
            std::fs::read_to_string(&hosts).expect("hosts"),
            "127.0.0.1 localhost\n10.0.0.1 Taken.vault.azure.net # x\n"
        );
    }
}
