//! `byok-emulator` as a user runs it: a child process whose ready line is read, killed when dropped.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// A running `byok-emulator`.
#[derive(Debug)]
pub struct Emulator {
    child: Child,
    /// The ready line it printed (vault_url, ca_file, credentials…).
    pub info: Value,
    /// That line, saved beside its state for the Python scripts.
    pub info_file: PathBuf,
}

impl Emulator {
    /// Starts `binary --state-dir state ARGS` and waits for its ready line. Its stderr goes to `state/../NAME.log`
    /// and is shown if it does not start (port 443 taken, say).
    pub fn start(binary: &Path, state: &Path, args: &[&str]) -> Result<Self> {
        let log_path = state.with_extension("log");
        let log = std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut child = Command::new(binary)
            .arg("--state-dir")
            .arg(state)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut line = String::new();
        let stdout = child.stdout.take().context("the emulator's stdout")?;
        let read = std::io::BufReader::new(stdout).read_line(&mut line);
        let info: Option<Value> = serde_json::from_str(line.trim()).ok();
        let Some(info) = info.filter(|_| read.is_ok()) else {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "byok-emulator {} did not start: {}",
                args.join(" "),
                std::fs::read_to_string(&log_path).unwrap_or_default().trim()
            );
        };
        let info_file = state.join("info.json");
        std::fs::write(&info_file, line.trim())?;
        Ok(Self { child, info, info_file })
    }

    /// A string field of the ready line.
    pub fn field(&self, name: &str) -> Result<&str> {
        self.info[name]
            .as_str()
            .with_context(|| format!("byok-emulator's ready line has no `{name}`"))
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
