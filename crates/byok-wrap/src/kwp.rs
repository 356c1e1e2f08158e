//! AES Key Wrap with Padding (RFC 5649, NIST SP 800-38F KWP), for AES-128, -192 and -256 wrapping keys.

use aes_kw::{KeyInit, KwpAes128, KwpAes192, KwpAes256};
use zeroize::Zeroizing;

use crate::Error;

/// The most this crate wraps: far above any private key, far below what KWP allows (2^32 - 1).
pub const MAX_PLAINTEXT_LEN: usize = 1 << 20;

/// Length of the KWP output for a plaintext of `len` bytes: the length rounded up to 8, plus the 8-byte AIV.
pub const fn wrapped_len(len: usize) -> usize {
    len.div_ceil(8) * 8 + 8
}

/// Wraps `plaintext` under `key` (16, 24 or 32 bytes) with AES key wrap with padding (RFC 5649).
pub fn kwp_wrap(key: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT_LEN {
        return Err(Error::PlaintextLength {
            len: plaintext.len(),
            max: MAX_PLAINTEXT_LEN,
        });
    }
    // A fresh zeroed buffer every time: aes-kw 0.3 leaves the caller's padding bytes as they were.
    let mut out = vec![0u8; wrapped_len(plaintext.len())];
    let len = match key.len() {
        16 => kwp::<KwpAes128>(key, plaintext, &mut out)?,
        24 => kwp::<KwpAes192>(key, plaintext, &mut out)?,
        32 => kwp::<KwpAes256>(key, plaintext, &mut out)?,
        len => return Err(Error::KwpKeyLength { len }),
    };
    debug_assert_eq!(len, out.len());
    Ok(out)
}

/// Unwraps an RFC 5649 `wrapped` value under `key` (16, 24 or 32 bytes), checking its integrity.
pub fn kwp_unwrap(key: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    // aes-kw 0.3.1 accepts an 8-byte input and "unwraps" it to nothing (Wycheproof aes_kwp case 253).
    if wrapped.len() < 16 || !wrapped.len().is_multiple_of(8) {
        return Err(Error::KwpLength { len: wrapped.len() });
    }
    if wrapped.len() > wrapped_len(MAX_PLAINTEXT_LEN) {
        return Err(Error::PlaintextLength {
            len: wrapped.len() - 8,
            max: MAX_PLAINTEXT_LEN,
        });
    }
    let mut out = Zeroizing::new(vec![0u8; wrapped.len() - 8]);
    let len = match key.len() {
        16 => kwp_open::<KwpAes128>(key, wrapped, &mut out)?,
        24 => kwp_open::<KwpAes192>(key, wrapped, &mut out)?,
        32 => kwp_open::<KwpAes256>(key, wrapped, &mut out)?,
        len => return Err(Error::KwpKeyLength { len }),
    };
    out.truncate(len);
    Ok(out)
}

trait Kwp: KeyInit {
    fn wrap<'a>(&self, pt: &[u8], buf: &'a mut [u8]) -> Result<&'a [u8], aes_kw::Error>;
    fn unwrap<'a>(&self, ct: &[u8], buf: &'a mut [u8]) -> Result<&'a [u8], aes_kw::Error>;
}

macro_rules! impl_kwp {
    ($($t:ty),*) => {$(
        impl Kwp for $t {
            fn wrap<'a>(&self, pt: &[u8], buf: &'a mut [u8]) -> Result<&'a [u8], aes_kw::Error> {
                self.wrap_key(pt, buf)
            }
            fn unwrap<'a>(&self, ct: &[u8], buf: &'a mut [u8]) -> Result<&'a [u8], aes_kw::Error> {
                self.unwrap_key(ct, buf)
            }
        }
    )*};
}
impl_kwp!(KwpAes128, KwpAes192, KwpAes256);

fn kwp<K: Kwp>(key: &[u8], plaintext: &[u8], out: &mut [u8]) -> Result<usize, Error> {
    let kw = K::new_from_slice(key).map_err(|_| Error::KwpKeyLength { len: key.len() })?;
    let wrapped = kw.wrap(plaintext, out).map_err(|_| Error::PlaintextLength {
        len: plaintext.len(),
        max: MAX_PLAINTEXT_LEN,
    })?;
    Ok(wrapped.len())
}

fn kwp_open<K: Kwp>(key: &[u8], wrapped: &[u8], out: &mut [u8]) -> Result<usize, Error> {
    let kw = K::new_from_slice(key).map_err(|_| Error::KwpKeyLength { len: key.len() })?;
    let unwrapped = kw.unwrap(wrapped, out).map_err(|_| Error::KwpIntegrity)?;
    Ok(unwrapped.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths() {
        assert_eq!(wrapped_len(1), 16);
        assert_eq!(wrapped_len(8), 16);
        assert_eq!(wrapped_len(9), 24);
        assert_eq!(wrapped_len(1217), 1232);
    }

    #[test]
    fn round_trip_all_key_sizes_and_odd_lengths() {
        for key_len in [16, 24, 32] {
            let key = vec![0x5A; key_len];
            for len in [1, 7, 8, 9, 67, 1217] {
                let pt: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let ct = kwp_wrap(&key, &pt).expect("wraps");
                assert_eq!(ct.len(), wrapped_len(len));
                assert_eq!(*kwp_unwrap(&key, &ct).expect("unwraps"), pt);
            }
        }
    }

    #[test]
    fn short_or_ragged_input_is_refused_before_unwrapping() {
        let key = [0u8; 32];
        assert_eq!(kwp_unwrap(&key, &[0; 8]).err(), Some(Error::KwpLength { len: 8 }));
        assert_eq!(kwp_unwrap(&key, &[0; 17]).err(), Some(Error::KwpLength { len: 17 }));
        assert_eq!(
            kwp_wrap(&key, &[])
                .err()
                .map(|e| matches!(e, Error::PlaintextLength { .. })),
            Some(true)
        );
        assert_eq!(kwp_wrap(&[0; 20], b"x").err(), Some(Error::KwpKeyLength { len: 20 }));
    }
}
