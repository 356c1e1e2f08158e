//! What a KEK says about a `.byok` blob without opening it: whether the ciphertext's parts fit the KEK, and what
//! size of plaintext the key-wrap part can hold.

use std::path::{Path, PathBuf};

use byok_blob::ByokBlob;
use byok_encoding::KekPublicKey;
use serde::Serialize;

/// How a blob fits a KEK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KekFit {
    /// The KEK.
    pub kek: KekPublicKey,
    /// The RSA-OAEP part's length for this KEK.
    pub rsa_part: usize,
    /// The AES-KWP part's length, when the ciphertext is long enough for one.
    pub kwp_part: Option<usize>,
    /// What does not fit, in words; empty when it all does.
    pub problems: Vec<String>,
}

/// Checks a blob's ciphertext against `kek`: room for the RSA part and a KWP part of whole 8-byte blocks, and the
/// same `kid` when the KEK file names one.
pub fn fit(blob: &ByokBlob, kek: KekPublicKey) -> KekFit {
    let len = blob.ciphertext().len();
    let rsa_part = kek.ciphertext_len();
    let mut problems = Vec::new();
    let kwp_part = len.checked_sub(rsa_part).filter(|&k| k >= 16);
    match kwp_part {
        None => problems.push(format!(
            "the ciphertext is {len} bytes, too short for this KEK's {rsa_part}-byte RSA part and a KWP part"
        )),
        Some(k) if k % 8 != 0 => problems.push(format!("the KWP part would be {k} bytes, not a multiple of 8")),
        Some(_) => {}
    }
    if let Some(kid) = kek.kid()
        && kid != blob.kid().to_string()
    {
        problems.push(format!("the KEK file's kid {kid} is not the blob's kid {}", blob.kid()));
    }
    KekFit {
        kek,
        rsa_part,
        kwp_part,
        problems,
    }
}

/// What `inspect` shows of a blob: its header and, checked against a KEK, how it fits (docs/json-output.md).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The JSON document's format version.
    pub format_version: u32,
    /// The blob's file.
    pub file: PathBuf,
    /// The blob's `schema_version`.
    pub schema_version: String,
    /// The KEK it names.
    pub kid: KidReport,
    /// `dir`.
    pub alg: &'static str,
    /// `CKM_RSA_AES_KEY_WRAP`.
    pub enc: &'static str,
    /// What made it, as it says.
    pub generator: Option<String>,
    /// The ciphertext.
    pub ciphertext: CiphertextReport,
    /// How it fits the KEK, when one was given.
    pub kek: Option<FitReport>,
}

/// The KEK's key identifier, in parts.
#[derive(Clone, Debug, Serialize)]
pub struct KidReport {
    /// The whole identifier.
    pub id: String,
    /// `https://{host}`.
    pub vault_url: String,
    /// `key-vault`, `managed-hsm` or `other`.
    pub vault_kind: &'static str,
    /// The KEK's name.
    pub name: String,
    /// Its version.
    pub version: String,
}

/// The ciphertext's size and encoding.
#[derive(Clone, Debug, Serialize)]
pub struct CiphertextReport {
    /// Its length.
    pub bytes: usize,
    /// How the blob encodes it.
    pub encoding: &'static str,
    /// The RSA part's possible lengths (one per KEK size that leaves room for a KWP part).
    pub possible_rsa_part_bytes: Vec<usize>,
}

/// How the blob fits a KEK ([`KekFit`]).
#[derive(Clone, Debug, Serialize)]
pub struct FitReport {
    /// The KEK's modulus bits.
    pub size_bits: usize,
    /// SHA-256 of its SubjectPublicKeyInfo.
    pub fingerprint_sha256: String,
    /// The `kid` its file names, if any.
    pub kid: Option<String>,
    /// The RSA part's length for it.
    pub rsa_part_bytes: usize,
    /// The KWP part's length.
    pub kwp_part_bytes: Option<usize>,
    /// What the KWP part can hold.
    pub plaintext: Option<PlaintextReport>,
    /// Whether everything fits.
    pub consistent: bool,
    /// What does not.
    pub problems: Vec<String>,
}

/// The plaintext lengths a KWP part can hold ([`plaintext_range`]).
#[derive(Clone, Debug, Serialize)]
pub struct PlaintextReport {
    /// At least.
    pub min_bytes: usize,
    /// At most.
    pub max_bytes: usize,
    /// What such a plaintext usually is.
    pub likely: Option<&'static str>,
}

/// The [`Report`] of `blob`, read from `file`, and of its fit to a KEK.
pub fn report(file: &Path, blob: &ByokBlob, fit: Option<&KekFit>) -> Report {
    let kid = blob.kid();
    Report {
        format_version: 1,
        file: file.to_owned(),
        schema_version: blob.schema_version().to_owned(),
        kid: KidReport {
            id: kid.to_string(),
            vault_url: kid.vault_url().to_owned(),
            vault_kind: kid.vault_kind().id(),
            name: kid.name().to_owned(),
            version: kid.version().to_owned(),
        },
        alg: byok_blob::ALG,
        enc: byok_blob::ENC,
        generator: blob.generator().map(str::to_owned),
        ciphertext: CiphertextReport {
            bytes: blob.ciphertext().len(),
            encoding: blob.ciphertext_encoding().name(),
            possible_rsa_part_bytes: blob.possible_rsa_part_lengths(),
        },
        kek: fit.map(|c| FitReport {
            size_bits: c.kek.size().bits(),
            fingerprint_sha256: c.kek.fingerprint_sha256(),
            kid: c.kek.kid().map(str::to_owned),
            rsa_part_bytes: c.rsa_part,
            kwp_part_bytes: c.kwp_part,
            plaintext: c.kwp_part.filter(|k| k % 8 == 0).map(|kwp| {
                let (min_bytes, max_bytes, likely) = plaintext_range(kwp);
                PlaintextReport {
                    min_bytes,
                    max_bytes,
                    likely,
                }
            }),
            consistent: c.problems.is_empty(),
            problems: c.problems.clone(),
        }),
    }
}

/// The plaintext length range a KWP part of `kwp` bytes (a multiple of 8, at least 16) can hold, and what such a
/// plaintext usually is.
pub fn plaintext_range(kwp: usize) -> (usize, usize, Option<&'static str>) {
    let (min, max) = (kwp.saturating_sub(15), kwp.saturating_sub(8));
    let guess = match max {
        16 => Some("an AES-128 key"),
        24 => Some("an AES-192 key"),
        32 => Some("an AES-256 key"),
        64..=160 => Some("an EC P-256 or P-256K PKCS#8 key"),
        161..=200 => Some("an EC P-384 PKCS#8 key"),
        201..=260 => Some("an EC P-521 PKCS#8 key"),
        1180..=1240 => Some("an RSA-2048 PKCS#8 key"),
        1760..=1820 => Some("an RSA-3072 PKCS#8 key"),
        2340..=2400 => Some("an RSA-4096 PKCS#8 key"),
        _ => None,
    };
    (min, max, guess)
}

#[cfg(test)]
mod tests {
    use super::plaintext_range;

    #[test]
    fn kwp_parts_name_the_plaintexts_they_can_hold() {
        // RFC 5649: n 8-byte blocks of padded plaintext plus the 8-byte integrity block.
        assert_eq!(plaintext_range(40), (25, 32, Some("an AES-256 key")));
        assert_eq!(plaintext_range(24), (9, 16, Some("an AES-128 key")));
        assert_eq!(plaintext_range(1224).2, Some("an RSA-2048 PKCS#8 key"));
        assert_eq!(plaintext_range(512).2, None);
    }
}
