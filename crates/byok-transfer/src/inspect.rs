//! What a KEK says about a `.byok` blob without opening it: whether the ciphertext's parts fit the KEK, and what
//! size of plaintext the key-wrap part can hold.

use byok_blob::ByokBlob;
use byok_encoding::KekPublicKey;

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
