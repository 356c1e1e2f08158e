//! The test keys and vectors in `testdata/` (see its README), found from any crate's tests and benches.

use std::path::{Path, PathBuf};

/// A file in `testdata/`, by its path there (`keys/rsa2048.pkcs8.der`).
pub fn path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A file's bytes; panics naming the file when it cannot be read (a test cannot go on without it).
pub fn read(relative: &str) -> Vec<u8> {
    let full = path(relative);
    std::fs::read(&full).unwrap_or_else(|e| panic!("cannot read {}: {e}", full.display()))
}
