//! Progress as events: the library never prints; its caller renders (the CLI as lines and bars, a service as logs).

use std::path::Path;

use byok_keyvault::Kek;
use byok_pkcs11::WrapPath;

/// Something a transfer did or is about to do.
#[non_exhaustive]
#[derive(Debug)]
pub enum Event<'a> {
    /// One of a transfer's six steps begins (1 find the key … 6 verify).
    Step {
        /// 1 to [`STEPS`].
        number: u8,
        /// What it does, in words.
        text: &'a str,
    },
    /// An existing import-only KEK is used.
    KekReused {
        /// The KEK.
        kek: &'a Kek,
    },
    /// A KEK was created for this transfer.
    KekCreated {
        /// The KEK.
        kek: &'a Kek,
    },
    /// The key was wrapped on a path the self-test did not pass, because the caller allowed it.
    NonconformantWrap {
        /// The path.
        path: WrapPath,
        /// Why it is not conformant for this key.
        why: &'a str,
    },
    /// The blob was kept in a file.
    BlobKept {
        /// The file.
        file: &'a Path,
    },
    /// Detail for a verbose log.
    Detail {
        /// The detail.
        text: &'a str,
    },
}

/// The number of steps of one transfer.
pub const STEPS: u8 = 6;

/// Receives a transfer's events. Called from the thread doing the work: keep it quick.
pub trait Observer: Send + Sync {
    /// One event.
    fn event(&self, event: &Event<'_>);
}

/// An observer that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quiet;

impl Observer for Quiet {
    fn event(&self, _: &Event<'_>) {}
}

impl<F: Fn(&Event<'_>) + Send + Sync> Observer for F {
    fn event(&self, event: &Event<'_>) {
        self(event);
    }
}
