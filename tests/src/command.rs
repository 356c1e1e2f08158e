//! Running the tools the checks need (OpenSSL, Python, the binaries) with their failures shown whole.

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The command line, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command quietly and returns its stdout; on failure shows its stderr.
pub fn capture(cmd: &mut Command) -> Result<Vec<u8>> {
    let shown = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}
