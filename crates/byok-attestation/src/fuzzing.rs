//! The parsers, reachable by the fuzz target (`fuzz/fuzz_targets/attestation.rs`) past the signatures that guard them
//! in real use. Not an API.

use crate::roots::Roots;

/// Feeds `data` to one parser by its first byte: `{` the whole verification (JSON in), `-` the certificate bundle,
/// anything else a blob's attribute list. Must never panic.
pub fn parse(data: &[u8]) {
    match data.first() {
        Some(b'{') => {
            if let Ok(a) = crate::input::Attestation::from_json(data) {
                let _ = a.verify(&Roots::marvell());
            }
        }
        Some(b'-') => {
            let _ = crate::bundle::parse(data);
        }
        _ => {
            let _ = crate::blob::attributes(data, "fuzzed");
        }
    }
}
