//! Exit codes and the error type every subcommand returns. The table is documented in `docs/exit-codes.md`.

use std::fmt;
use std::process::ExitCode;

/// Why byok-cli stopped. The numbers are part of the interface: scripts depend on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// 1: a failure byok did not expect (a bug, or the system misbehaving).
    Internal = 1,
    /// 2: the command line is wrong (unknown or missing flags, bad values). clap uses it too.
    Usage = 2,
    /// 3: a file's content is wrong: not a key, an unsupported size or curve, a malformed .byok.
    InvalidInput = 3,
    /// 4: a file cannot be read or written.
    Io = 4,
    /// 5: refused by a safety rule: would overwrite without --force, software key without --allow-software-key.
    Refused = 5,
    /// 6: the HSM failed or lacks what was asked: module, token, PIN, key, mechanism, self-test.
    Hsm = 6,
    /// 7: the vault or the network refused or failed.
    Vault = 7,
    /// 8: the vault holds a different key than the one wrapped in the HSM, or an attestation check failed.
    Verification = 8,
    /// 9: a batch finished, but some of its keys failed (each is reported), or a dry run found problems.
    Partial = 9,
    /// 10: `status` found keys that need rotation or records that disagree with the vault.
    Attention = 10,
    /// 129: stopped by SIGHUP (the terminal or SSH session went away); in flight finished and was recorded.
    HungUp = 129,
    /// 130: interrupted (Ctrl-C, SIGINT); what was in flight finished and was recorded.
    Interrupted = 130,
    /// 143: stopped by SIGTERM (`kill`, `docker stop`, systemd); in flight finished and was recorded.
    Terminated = 143,
}

impl Exit {
    pub(crate) fn code(self) -> u8 {
        self as u8
    }

    pub(crate) fn kind(self) -> &'static str {
        match self {
            Self::Internal => "internal",
            Self::Usage => "usage",
            Self::InvalidInput => "invalid-input",
            Self::Io => "io",
            Self::Refused => "refused",
            Self::Hsm => "hsm",
            Self::Vault => "vault",
            Self::Verification => "verification-failed",
            Self::Partial => "partial",
            Self::Attention => "attention",
            Self::HungUp => "hangup",
            Self::Interrupted => "interrupted",
            Self::Terminated => "terminated",
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e.code())
    }
}

/// An error with the exit code it maps to and an optional hint on how to fix it.
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) exit: Exit,
    pub(crate) error: anyhow::Error,
    pub(crate) hint: Option<String>,
}

impl CliError {
    pub(crate) fn new(exit: Exit, error: impl Into<anyhow::Error>) -> Self {
        Self {
            exit,
            error: error.into(),
            hint: None,
        }
    }

    pub(crate) fn msg(exit: Exit, message: impl fmt::Display) -> Self {
        Self::new(exit, anyhow::anyhow!("{message}"))
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Puts a line in front that says what failed; this error says why.
    pub(crate) fn context(self, message: impl fmt::Display + Send + Sync + 'static) -> Self {
        Self {
            error: self.error.context(message),
            ..self
        }
    }
}

/// The library's errors: the exit code from what sort of failure it is, the hint from the library or, for the
/// HSM's and the vault's own errors, the same hints their direct use gets.
impl From<byok_transfer::Error> for CliError {
    fn from(e: byok_transfer::Error) -> Self {
        use byok_transfer::Kind;
        let (exit, hint) = match (e.kind(), e.hsm_error(), e.vault_error()) {
            (Kind::Hsm, Some(h), _) => crate::cmd::hsm::classify(h),
            (Kind::Vault, _, Some(v)) if e.step() == byok_transfer::Step::Import => crate::cmd::import::classify(v),
            (Kind::Vault, _, Some(v)) => crate::cmd::vault::classify(v),
            (kind, _, _) => (
                match kind {
                    Kind::Hsm => Exit::Hsm,
                    Kind::Vault => Exit::Vault,
                    Kind::Io => Exit::Io,
                    Kind::InvalidInput => Exit::InvalidInput,
                    Kind::Refused => Exit::Refused,
                    Kind::Usage => Exit::Usage,
                    Kind::Attestation => Exit::Verification,
                    _ => Exit::Internal,
                },
                None,
            ),
        };
        let hint = e.hint().map(str::to_owned).or(hint);
        Self {
            exit,
            error: anyhow::Error::new(e),
            hint,
        }
    }
}

pub(crate) type Result<T, E = CliError> = std::result::Result<T, E>;
