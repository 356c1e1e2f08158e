//! Table-driven bad-input catalogues: each case is a command line with its exact exit code and first line of stderr
//! (and its hint, where one is expected). A catalogue runs in a scene directory whose files the arguments name as
//! `@file`; `%file` names a test key under `testdata/keys`. No case may panic, print on stdout (unless it says so),
//! or leave a file behind.

use std::path::Path;
use std::process::Command;

use crate::{byok_cli, listing, run, stderr, testdata};

/// One bad command line and what it must produce.
#[derive(Debug)]
pub struct Case {
    /// What the case tries.
    pub name: &'static str,
    /// The arguments, with `@` and `%` names.
    pub args: Vec<String>,
    /// The exit code (docs/exit-codes.md).
    pub exit: i32,
    /// The first line of stderr, with `@` and `%` names.
    pub first_line: String,
    /// The hint line, where one is expected.
    pub hint: Option<&'static str>,
    /// The command prints its complete report and then fails (inspect's KEK check); others print nothing.
    pub report_on_stdout: bool,
    /// Environment variables to set (`Some`, with `@` and `%` names) or remove (`None`) for this case.
    pub env: Vec<(&'static str, Option<String>)>,
}

/// A case with no hint, nothing on stdout and the catalogue's environment.
pub fn case(name: &'static str, args: Vec<String>, exit: i32, first_line: impl Into<String>) -> Case {
    Case {
        name,
        args,
        exit,
        first_line: first_line.into(),
        hint: None,
        report_on_stdout: false,
        env: Vec::new(),
    }
}

/// `words` as owned arguments.
pub fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

/// Expands `@name` to a file in `dir` and `%name` to a test key.
pub fn expand(dir: &Path, arg: &str) -> String {
    if let Some(name) = arg.strip_prefix('@') {
        dir.join(name).display().to_string()
    } else if let Some(name) = arg.strip_prefix('%') {
        testdata(&format!("keys/{name}")).display().to_string()
    } else {
        arg.to_owned()
    }
}

/// Expands the `@` and `%` names in an expected line, word by word.
pub fn expand_line(dir: &Path, line: &str) -> String {
    line.split(' ')
        .map(|w| expand_word(dir, w))
        .collect::<Vec<_>>()
        .join(" ")
}

fn expand_word(dir: &Path, word: &str) -> String {
    // A word may carry a leading quote (`"@no/such/dir"`) or trailing punctuation (`@good.byok:`). A `%` name is a
    // test key file and has a dot; `%zz` is a percent escape, left alone.
    let Some(start) = word.find(['@', '%']) else {
        return word.to_owned();
    };
    let end = word[start..]
        .find([':', '"', '\'', ';', '`'])
        .map_or(word.len(), |e| start + e);
    let name = &word[start..end];
    if name.starts_with('%') && !name.contains('.') {
        return word.to_owned();
    }
    format!("{}{}{}", &word[..start], expand(dir, name), &word[end..])
}

/// Runs every case in `dir` (as the working directory), with `configure` applied to each command first; fails with
/// every mismatch at once. Checks that the directory's listing is the same afterwards. Returns the number of cases.
pub fn check(dir: &Path, cases: &[Case], configure: impl Fn(&mut Command)) -> usize {
    let before = listing(dir);
    let mut failures = Vec::new();
    for c in cases {
        let args: Vec<String> = c.args.iter().map(|a| expand(dir, a)).collect();
        let mut cmd = byok_cli();
        configure(&mut cmd);
        cmd.args(&args).current_dir(dir);
        for (k, v) in &c.env {
            match v {
                Some(v) => cmd.env(k, expand(dir, v)),
                None => cmd.env_remove(k),
            };
        }
        let out = run(&mut cmd);
        let err = stderr(&out);
        let expected = expand_line(dir, &c.first_line);
        let first = err.lines().next().unwrap_or_default();
        let code = out.status.code();
        if code != Some(c.exit) || first != expected || err.contains("panicked") {
            failures.push(format!(
                "{}: exit {code:?} (want {}), stderr:\n{err}\nwant first line:\n{expected}\n",
                c.name, c.exit
            ));
            continue;
        }
        if let Some(hint) = c.hint
            && !err.lines().any(|l| l == expand_line(dir, hint))
        {
            failures.push(format!("{}: hint missing; stderr:\n{err}", c.name));
        }
        if out.stdout.is_empty() == c.report_on_stdout {
            failures.push(format!(
                "{}: stdout should {}be empty",
                c.name,
                if c.report_on_stdout { "not " } else { "" }
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(listing(dir), before, "a failing command left or changed files");
    cases.len()
}

/// A directory on a tiny tmpfs that is full: writing there fails with "no space left on device". Needs root to
/// mount (CI runs as root on this machine); unmounted on drop.
#[derive(Debug)]
pub struct FullDisk {
    dir: tempfile::TempDir,
}

impl FullDisk {
    /// Mounts and fills it.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mount = run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs"])
            .arg(dir.path()));
        assert!(
            mount.status.success(),
            "mounting a 64 KiB tmpfs for the full-disk cases needs root: {}",
            stderr(&mount)
        );
        let disk = Self { dir };
        // Fill it: write until the file system says no.
        let fill = run(Command::new("dd")
            .args(["if=/dev/zero", "bs=4096", "count=64"])
            .arg(format!("of={}", disk.path().join("filler").display())));
        assert!(!fill.status.success(), "the tmpfs should have filled up");
        disk
    }

    /// The full directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for FullDisk {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        let _ = run(Command::new("umount").arg("-l").arg(self.dir.path()));
    }
}
