//! End-to-end tests of the byok binaries live in `tests/`; this library is empty.
