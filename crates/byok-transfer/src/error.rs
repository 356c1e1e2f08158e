//! The one error type of the library: which step failed, what sort of failure it is, and the cause.

use std::error::Error as StdError;
use std::fmt;

/// The step of a transfer (or a batch) that failed.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Checks before anything is written: files, the source key, the manifest, the state file.
    Preflight,
    /// Reusing or creating the Key Exchange Key.
    Kek,
    /// Wrapping inside the HSM.
    Wrap,
    /// Sending the import.
    Import,
    /// Comparing the vault's key with the HSM's.
    Verify,
    /// Writing a transfer record or a batch state line.
    Record,
}

impl Step {
    /// The step in words, for messages and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Preflight => "preflight",
            Self::Kek => "KEK",
            Self::Wrap => "wrap",
            Self::Import => "import",
            Self::Verify => "verify",
            Self::Record => "record",
        }
    }
}

/// What sort of failure: a caller maps it to its own reporting (the CLI to exit codes).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The HSM failed or lacks what was asked; [`Error::hsm`] is the cause.
    Hsm,
    /// The vault or the network failed or refused; [`Error::vault`] is the cause.
    Vault,
    /// A file cannot be read or written.
    Io,
    /// An input's content is wrong: a manifest, a state file, a blob.
    InvalidInput,
    /// A safety rule refused: an existing file, a state file in use, a key name that holds something else.
    Refused,
    /// The caller's settings contradict each other.
    Usage,
    /// A key attestation failed a check: the vault cannot prove the key lives in a genuine HSM as it should.
    Attestation,
    /// The operating system or byok itself failed.
    Internal,
}

/// A failure of one step, with its cause chained ([`std::error::Error::source`]) and, where byok knows one, how to
/// fix it ([`Error::hint`]).
#[derive(Debug)]
pub struct Error {
    step: Step,
    kind: Kind,
    /// What failed, in words; `None` shows the cause itself.
    message: Option<String>,
    source: Option<Box<dyn StdError + Send + Sync>>,
    hint: Option<String>,
}

impl Error {
    /// A failure described by `message`, with no deeper cause.
    pub fn new(step: Step, kind: Kind, message: impl fmt::Display) -> Self {
        Self {
            step,
            kind,
            message: Some(message.to_string()),
            source: None,
            hint: None,
        }
    }

    /// A failure described by `message`, caused by `source`.
    pub fn with_source(
        step: Step,
        kind: Kind,
        message: impl fmt::Display,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        Self {
            step,
            kind,
            message: Some(message.to_string()),
            source: Some(Box::new(source)),
            hint: None,
        }
    }

    /// The HSM's own error, shown as it is.
    pub fn hsm(step: Step, e: byok_pkcs11::Error) -> Self {
        Self::wrap(step, Kind::Hsm, e)
    }

    /// The vault's own error, shown as it is.
    pub fn vault(step: Step, e: byok_keyvault::Error) -> Self {
        Self::wrap(step, Kind::Vault, e)
    }

    fn wrap(step: Step, kind: Kind, e: impl StdError + Send + Sync + 'static) -> Self {
        Self {
            step,
            kind,
            message: None,
            source: Some(Box::new(e)),
            hint: None,
        }
    }

    /// Adds advice on how to fix it.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Puts `message` in front: it says what failed, this error why. The kind and hint carry over.
    #[must_use]
    pub fn context(mut self, step: Step, message: impl fmt::Display) -> Self {
        let hint = self.hint.take();
        Self {
            step,
            kind: self.kind,
            message: Some(message.to_string()),
            source: Some(Box::new(self)),
            hint,
        }
    }

    /// The same error, as a failure of `step`.
    #[must_use]
    pub fn at(mut self, step: Step) -> Self {
        self.step = step;
        self
    }

    /// Which step failed.
    pub fn step(&self) -> Step {
        self.step
    }

    /// What sort of failure.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// How to fix it, when byok knows.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// The HSM's error behind this one, if any.
    pub fn hsm_error(&self) -> Option<&byok_pkcs11::Error> {
        self.find()
    }

    /// The vault's error behind this one, if any.
    pub fn vault_error(&self) -> Option<&byok_keyvault::Error> {
        self.find()
    }

    fn find<T: StdError + 'static>(&self) -> Option<&T> {
        let cause = self.source.as_deref()?;
        if let Some(found) = cause.downcast_ref::<T>() {
            return Some(found);
        }
        // One of ours (a context): its cause is in its field, which a transparent `source()` would skip.
        if let Some(inner) = cause.downcast_ref::<Self>() {
            return inner.find();
        }
        let mut next = cause.source();
        while let Some(e) = next {
            if let Some(found) = e.downcast_ref::<T>() {
                return Some(found);
            }
            next = e.source();
        }
        None
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.message, &self.source) {
            (Some(m), _) => f.write_str(m),
            (None, Some(s)) => s.fmt(f),
            (None, None) => write!(f, "the {} step failed", self.step.name()),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match (&self.message, &self.source) {
            (Some(_), Some(s)) => Some(s.as_ref()),
            // Shown as the cause itself: its own source comes next.
            (None, Some(s)) => s.source(),
            _ => None,
        }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(e: &dyn StdError) -> Vec<String> {
        let mut out = vec![e.to_string()];
        let mut next = e.source();
        while let Some(s) = next {
            out.push(s.to_string());
            next = s.source();
        }
        out
    }

    #[test]
    fn context_chains_without_repeating_the_cause() {
        let inner = Error::hsm(Step::Wrap, byok_pkcs11::Error::NotExtractable("key `k`".into()));
        assert_eq!(chain(&inner).len(), 1, "a transparent cause is shown once");
        let outer = inner.with_hint("h").context(Step::Verify, "k was imported");
        assert_eq!(outer.step(), Step::Verify);
        assert_eq!(outer.kind(), Kind::Hsm);
        assert_eq!(outer.hint(), Some("h"));
        assert!(outer.hsm_error().is_some());
        assert!(outer.vault_error().is_none());
        let shown = chain(&outer);
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert_eq!(shown[0], "k was imported");
        assert!(shown[1].contains("key `k`"), "{shown:?}");
    }
}
