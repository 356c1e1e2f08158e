//! One `MRVL-1` attestation blob: the data, then a signature by the partition key over it.
//!
//! The data (as in the real fixture, firmware 2.x): 16 reserved bytes, then four big-endian u32 — the object
//! record's length, the object handle, the attribute count, the attribute area's size — then that many attributes as
//! PKCS#11-style TLVs (u32 type, u32 length, value), then zero padding.

use crate::attributes::Attributes;
use crate::error::{Check, Refusal};
use crate::rsa_key::RsaKey;

/// Far above a real blob (about 1.5 KB), low enough to bound a hostile one.
pub(crate) const MAX_BLOB_LEN: usize = 64 * 1024;
const HEADER_LEN: usize = 32;
const MAX_ATTRIBUTES: usize = 256;

/// How the partition signed the blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub enum Firmware {
    /// Firmware 2.x: PKCS#1 v1.5 padding around a bare SHA-256 of the data.
    #[serde(rename = "2.x")]
    V2,
    /// Firmware 3.x: RSASSA-PKCS1-v1_5 with SHA-256.
    #[serde(rename = "3.x")]
    V3,
}

impl Firmware {
    /// `2.x` or `3.x`.
    pub fn name(self) -> &'static str {
        match self {
            Self::V2 => "2.x",
            Self::V3 => "3.x",
        }
    }
}

/// The signed data and the signature, split by the partition key's size.
pub(crate) fn split<'b>(blob: &'b [u8], key: &RsaKey, what: &str) -> Result<(&'b [u8], &'b [u8]), Refusal> {
    let sig_len = key.size();
    if blob.len() > MAX_BLOB_LEN || blob.len() < HEADER_LEN + sig_len {
        return Err(Refusal::new(
            Check::Format,
            format!("the {what} attestation is {} bytes, not a signed blob", blob.len()),
        ));
    }
    Ok(blob.split_at(blob.len() - sig_len))
}

/// Which firmware's signature verifies with `key`, if any.
pub(crate) fn signed_by(data: &[u8], signature: &[u8], key: &RsaKey) -> Option<Firmware> {
    if key.verifies_sha256(data, signature) {
        Some(Firmware::V3)
    } else if key.verifies_bare_sha256(data, signature) {
        Some(Firmware::V2)
    } else {
        None
    }
}

/// The attributes of signed data.
pub(crate) fn attributes(data: &[u8], what: &str) -> Result<Attributes, Refusal> {
    let refuse = |detail: String| Refusal::new(Check::Attributes, format!("the {what} attestation: {detail}"));
    let u32_at = |at: usize| -> Result<u32, Refusal> {
        data.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| refuse(format!("it ends at byte {at}, inside a field")))
    };
    let count = u32_at(24)? as usize;
    if count > MAX_ATTRIBUTES {
        return Err(refuse(format!("{count} attributes (at most {MAX_ATTRIBUTES})")));
    }
    let mut attributes = Attributes::default();
    let mut at = HEADER_LEN;
    for _ in 0..count {
        let (kind, len) = (u32_at(at)?, u32_at(at + 4)? as usize);
        let value = data
            .get(at + 8..)
            .and_then(|rest| rest.get(..len))
            .ok_or_else(|| refuse(format!("attribute {kind:#x} of {len} bytes runs past the end")))?;
        attributes.set(kind, value).map_err(refuse)?;
        at += 8 + len;
    }
    Ok(attributes)
}
