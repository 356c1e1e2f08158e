//! The local Key Vault's error: why it could not start, or why its server ended.

use std::fmt;

/// Why the local Key Vault could not start or stopped. `Display` gives what failed and, after `: `, why.
pub struct Error(anyhow::Error);

impl Error {
    pub(crate) fn new(e: anyhow::Error) -> Self {
        Self(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The same text as Display: it never holds a secret, and `expect` shows it whole.
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for Error {}
