//! `byok-cli`: move a key from an HSM into Azure Key Vault or Managed HSM without it ever existing in plaintext
//! outside an HSM. This binary parses flags, calls the byok libraries (`byok-transfer` runs transfers and batches)
//! and renders their results, progress, hints and exit codes.

#![forbid(unsafe_code)]

mod cmd;
mod exit;
mod ui;

use std::io;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::exit::{CliError, Exit};
use crate::ui::{Output, Ui};

/// Bring Your Own Key to Azure Key Vault and Managed HSM.
///
/// Exit codes: 0 success, 1 internal error, 2 usage error, 3 invalid input, 4 file I/O error,
/// 5 refused by a safety rule, 6 HSM error, 7 vault error, 8 verification failed, 9 some keys of a batch failed,
/// 130 interrupted. See docs/exit-codes.md.
#[derive(Debug, Parser)]
#[command(name = "byok-cli", version, max_term_width = 110)]
struct Cli {
    /// Format of the result on stdout.
    #[arg(long, global = true, value_enum, default_value_t = Output::Human)]
    output: Output,

    /// More detail on stderr (repeatable).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,

    /// Only errors on stderr; no human result text on stdout.
    #[arg(short, long, global = true)]
    quiet: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Wrap a key to a KEK and write a .byok transfer blob.
    Wrap(cmd::wrap::Args),
    /// Show what a .byok file holds and check it against a KEK.
    Inspect(cmd::inspect::Args),
    /// Look at and prepare a PKCS#11 HSM: its tokens, wrap paths, keys.
    #[command(subcommand)]
    Hsm(cmd::hsm::Command),
    /// The Key Exchange Key in the vault: create it, download its public key.
    #[command(subcommand)]
    Kek(cmd::kek::Command),
    /// Import a .byok file into the vault, after checking it against the vault and its KEK.
    Import(cmd::import::Args),
    /// The whole transfer: KEK, download, wrap in the HSM, import, and verify the vault holds the HSM's key.
    FullTransfer(Box<cmd::transfer::Args>),
    /// Many keys from one token, from a manifest: bounded concurrency, a result per key, resumable.
    Batch(cmd::batch::Args),
    /// Rotate a key byok imported: a new HSM key as its next version, verified; older versions retired if asked.
    Rotate(Box<cmd::rotate::Args>),
    /// The inventory of what byok brought into a vault: versions, ages, expiry, sources; exit 10 when some need rotation.
    Status(cmd::status::Args),
    /// Check a Managed HSM key attestation: Marvell chain, signatures, and that it shows your key.
    Attest(cmd::attest::Args),
    /// Print a shell completion script: `byok-cli completions bash > /etc/bash_completion.d/byok-cli`.
    Completions {
        /// bash, zsh, fish, powershell or elvish.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (byok-cli.1 and one per subcommand) into DIR (`cargo xtask man` keeps docs/man fresh).
    #[command(hide = true)]
    Man {
        /// Where to write the pages.
        dir: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ui = Ui::new(cli.output, cli.verbose, cli.quiet);
    let result = match &cli.command {
        Command::Wrap(args) => cmd::wrap::run(ui, args),
        Command::Inspect(args) => cmd::inspect::run(ui, args),
        Command::Hsm(command) => cmd::hsm::run(ui, command),
        Command::Kek(command) => cmd::kek::run(ui, command),
        Command::Import(args) => cmd::import::run(ui, args),
        Command::FullTransfer(args) => cmd::transfer::run(ui, args),
        Command::Batch(args) => cmd::batch::run(ui, args),
        Command::Rotate(args) => cmd::rotate::run(ui, args),
        Command::Status(args) => cmd::status::run(ui, args),
        Command::Attest(args) => cmd::attest::run(ui, args),
        Command::Completions { shell } => completions(*shell),
        Command::Man { dir } => write_man_pages(dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            ui.error(&e);
            e.exit.into()
        }
    }
}

fn completions(shell: clap_complete::Shell) -> exit::Result<()> {
    use clap::CommandFactory;
    let mut out = io::stdout().lock();
    clap_complete::generate(shell, &mut Cli::command(), "byok-cli", &mut out);
    io::Write::flush(&mut out).map_err(stdout_error)
}

/// The man pages, rendered from the clap definition: `byok-cli.1` and `byok-cli-SUBCOMMAND.1` for each visible
/// subcommand.
fn man_pages() -> io::Result<Vec<(String, Vec<u8>)>> {
    use clap::CommandFactory;
    let cli = Cli::command();
    let mut pages = Vec::new();
    let mut top = Vec::new();
    clap_mangen::Man::new(cli.clone()).render(&mut top)?;
    pages.push(("byok-cli.1".to_owned(), top));
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("byok-cli-{}", sub.get_name());
        let mut page = Vec::new();
        let command = sub
            .clone()
            .name(name.clone())
            .bin_name(format!("byok-cli {}", sub.get_name()));
        clap_mangen::Man::new(command).render(&mut page)?;
        pages.push((format!("{name}.1"), page));
    }
    Ok(pages)
}

fn write_man_pages(dir: &std::path::Path) -> exit::Result<()> {
    let pages = man_pages().map_err(|e| CliError::msg(Exit::Internal, format!("cannot render the man pages: {e}")))?;
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::msg(Exit::Io, format!("cannot create {}: {e}", dir.display())))?;
    for (name, page) in pages {
        byok_transfer::files::write_atomic(&dir.join(name), &page, true)?;
    }
    Ok(())
}

/// A reader that stopped reading (`byok-cli inspect x.byok | head -1`) is not an error.
fn is_broken_pipe(e: &CliError) -> bool {
    e.error
        .chain()
        .filter_map(|c| c.downcast_ref::<io::Error>())
        .any(|io| io.kind() == io::ErrorKind::BrokenPipe)
}

/// Writing the result failed: stdout is gone or full.
pub(crate) fn stdout_error(e: io::Error) -> CliError {
    CliError::new(
        Exit::Io,
        anyhow::Error::new(e).context("cannot write the result to stdout"),
    )
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
