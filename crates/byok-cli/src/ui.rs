//! Where output goes: data to stdout, diagnostics to stderr; human text or JSON.

use std::io::{self, Write};

use clap::ValueEnum;

use crate::exit::CliError;

/// The format of results on stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// Text for people.
    Human,
    /// One JSON document per command, documented in docs/json-output.md.
    Json,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Ui {
    pub(crate) output: Output,
    verbosity: i8,
}

impl Ui {
    pub(crate) fn new(output: Output, verbose: u8, quiet: bool) -> Self {
        let verbosity = if quiet { -1 } else { verbose.min(3) as i8 };
        Self { output, verbosity }
    }

    pub(crate) fn is_json(self) -> bool {
        self.output == Output::Json
    }

    /// A warning on stderr, unless --quiet.
    pub(crate) fn warn(self, message: &str) {
        if self.verbosity >= 0 {
            stderr_line(&format!("warning: {message}"));
        }
    }

    /// A note on stderr (progress, what is about to happen), unless --quiet.
    pub(crate) fn note(self, message: &str) {
        if self.verbosity >= 0 {
            stderr_line(&format!("byok: {message}"));
        }
    }

    /// A spinner with the elapsed time on stderr while `work` runs, when stderr is a terminal and not --quiet;
    /// otherwise the message once, as a note.
    pub(crate) fn spin<T>(self, message: &str, work: impl FnOnce() -> T) -> T {
        use std::io::IsTerminal;
        if self.verbosity < 0 || !io::stderr().is_terminal() {
            self.note(message);
            return work();
        }
        let spinner = indicatif::ProgressBar::new_spinner().with_message(message.to_owned());
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
            spinner.set_style(style);
        }
        spinner.enable_steady_tick(std::time::Duration::from_millis(120));
        let result = work();
        spinner.finish_and_clear();
        result
    }

    /// A progress bar on stderr (done, rate, ETA) when stderr is a terminal, the output is human and not --quiet.
    pub(crate) fn progress_bar(self, total: u64) -> Option<indicatif::ProgressBar> {
        use std::io::IsTerminal;
        if self.verbosity < 0 || self.is_json() || !io::stderr().is_terminal() {
            return None;
        }
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} keys, {per_sec}, {msg}") {
            bar.set_style(style);
        }
        bar.set_message("0 failed, ETA …");
        Some(bar)
    }

    /// Progress detail on stderr with -v.
    pub(crate) fn verbose(self, message: &str) {
        if self.verbosity >= 1 {
            stderr_line(&format!("byok: {message}"));
        }
    }

    /// The command's result on stdout: human text, or a JSON value.
    pub(crate) fn result(self, human: &str, json: &serde_json::Value) -> io::Result<()> {
        let mut out = io::stdout().lock();
        match self.output {
            Output::Human => {
                if self.verbosity >= 0 {
                    out.write_all(human.as_bytes())?;
                }
            }
            Output::Json => {
                serde_json::to_writer_pretty(&mut out, json)?;
                out.write_all(b"\n")?;
            }
        }
        out.flush()
    }

    /// One JSON document on one line on stdout (a batch's per-key results), flushed at once.
    pub(crate) fn json_line(self, value: &serde_json::Value) -> io::Result<()> {
        let mut out = io::stdout().lock();
        serde_json::to_writer(&mut out, value)?;
        out.write_all(b"\n")?;
        out.flush()
    }

    /// Reports an error on stderr: `error: …` with its causes and a hint, or one JSON object.
    pub(crate) fn error(self, e: &CliError) {
        if self.is_json() {
            let doc = serde_json::json!({
                "error": {
                    "exit_code": e.exit.code(),
                    "kind": e.exit.kind(),
                    "message": format!("{:#}", e.error),
                    "hint": e.hint,
                }
            });
            stderr_line(&doc.to_string());
        } else {
            let mut text = format!("error: {:#}", e.error);
            if let Some(hint) = &e.hint {
                text.push_str(&format!("\n  hint: {hint}"));
            }
            stderr_line(&text);
        }
    }
}

pub(crate) fn stderr_line(line: &str) {
    // Nothing sensible remains to be done when stderr itself is gone.
    let _ = writeln!(io::stderr().lock(), "{line}");
}
