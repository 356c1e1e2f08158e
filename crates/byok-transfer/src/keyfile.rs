//! Key files: the KEK's public key and the software source's target key, read and parsed, each refusal saying
//! which file and how to fix it.

use std::path::Path;

use byok_blob::KeyId;
use byok_encoding::{Error as EncodingError, KekPublicKey, Kty, TargetKey};
use zeroize::Zeroizing;

use crate::error::{Error, Kind, Result, Step};
use crate::files::read_input;

/// The KEK's public key from `path`: PEM or DER (SubjectPublicKeyInfo or PKCS#1), or a JWK / Key Vault key JSON.
pub fn read_kek(path: &Path) -> Result<KekPublicKey> {
    let bytes = read_input(path, "KEK file")?;
    KekPublicKey::parse(&bytes).map_err(|e| refused(e, path, "KEK file"))
}

/// The KEK's versioned id: `given` (`--kek-kid`), else the `kid` of the KEK file `path` (a JWK that carries it).
pub fn kek_kid(given: Option<&KeyId>, kek: &KekPublicKey, path: &Path) -> Result<KeyId> {
    match (given, kek.kid()) {
        (Some(kid), _) => Ok(kid.clone()),
        (None, Some(jwk_kid)) => KeyId::parse(jwk_kid).map_err(|e| {
            let message = format!("the `kid` in the KEK file {} is unusable", path.display());
            Error::with_source(Step::Preflight, Kind::InvalidInput, message, e)
        }),
        (None, None) => Err(Error::new(
            Step::Preflight,
            Kind::Usage,
            "--kek-kid is required: the KEK file does not name its key identifier",
        )
        .with_hint("pass the KEK's versioned id, as `az keyvault key show --query key.kid` prints it")),
    }
}

/// The target private key from `path` (PEM or DER: PKCS#8, PKCS#1 or SEC1; with `kty` oct, the raw AES key bytes),
/// checked to be of type `kty` when one is given. The bytes read are zeroized.
pub fn read_target(path: &Path, kty: Option<Kty>) -> Result<TargetKey> {
    let bytes = Zeroizing::new(read_input(path, "target key file")?);
    let target = match kty {
        Some(Kty::Oct) => TargetKey::from_aes_bytes(&bytes).map_err(|e| refused(e, path, "target key file"))?,
        _ => TargetKey::from_private_key_file(&bytes).map_err(|e| {
            let raw_aes = matches!(bytes.len(), 16 | 24 | 32) && kty.is_none();
            let aes_hint = matches!(e, EncodingError::UnrecognizedFormat { .. }) && raw_aes;
            let err = refused(e, path, "target key file");
            match aes_hint {
                true => err.with_hint(format!("if this is a raw AES-{} key, pass --kty oct", bytes.len() * 8)),
                false => err,
            }
        })?,
    };
    match kty {
        Some(kty) if target.kind().kty() != kty => Err(Error::new(
            Step::Preflight,
            Kind::InvalidInput,
            format!(
                "the target key file {} holds {}, but --kty says {kty}",
                path.display(),
                target.kind()
            ),
        )),
        _ => Ok(target),
    }
}

/// A key file's refusal, with how to fix it where byok knows.
fn refused(e: EncodingError, path: &Path, what: &str) -> Error {
    let hint = match &e {
        EncodingError::EncryptedPrivateKey => Some(
            "decrypt it first (openssl pkcs8 -in KEY -out PLAIN.pem); better, leave it in the HSM and use the HSM source",
        ),
        EncodingError::PrivateKeyAsKek => Some(
            "use the KEK's public key: `az keyvault key download --name KEK --file kek.pem --encoding PEM` or `openssl pkey -pubout`",
        ),
        EncodingError::UnsupportedKekSize { .. } | EncodingError::KekNotRsa { .. } => Some(
            "create the KEK as RSA-HSM 2048, 3072 or 4096 bits with key_ops [\"import\"]: `az keyvault key create --kty RSA-HSM --size 4096 --ops import`",
        ),
        EncodingError::UnsupportedRsaSize { .. } => Some("Azure imports RSA keys of exactly 2048, 3072 or 4096 bits"),
        EncodingError::UnsupportedCurve { .. } => {
            Some("Azure imports EC keys on P-256, P-384, P-521 and P-256K (secp256k1) only")
        }
        EncodingError::UnsupportedAesLength { .. } => {
            Some("an oct key file holds exactly the 16, 24 or 32 raw key bytes (not hex, not base64)")
        }
        _ => None,
    };
    let err = Error::with_source(
        Step::Preflight,
        Kind::InvalidInput,
        format!("the {what} {} was refused", path.display()),
        e,
    );
    match hint {
        Some(h) => err.with_hint(h),
        None => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(r: Result<impl std::fmt::Debug>) -> (Kind, String, Option<String>) {
        let e = r.expect_err("refused");
        (e.kind(), format!("{:#}", anyhow_like(&e)), e.hint().map(str::to_owned))
    }

    /// The message with its causes, as a CLI shows them.
    fn anyhow_like(e: &Error) -> String {
        let mut text = e.to_string();
        let mut cause = std::error::Error::source(e);
        while let Some(c) = cause {
            text.push_str(&format!(": {c}"));
            cause = c.source();
        }
        text
    }

    #[test]
    fn key_files_are_read_checked_and_refused_with_the_fix() {
        let aes = byok_testdata::path("keys/aes256.raw");
        assert!(read_target(&aes, Some(Kty::Oct)).is_ok_and(|t| t.kind().kty() == Kty::Oct));
        let (kind, _, hint) = refusal(read_target(&aes, None));
        assert_eq!(kind, Kind::InvalidInput);
        assert_eq!(hint.as_deref(), Some("if this is a raw AES-256 key, pass --kty oct"));
        let ec = byok_testdata::path("keys/ec-p256.pkcs8.pem");
        let (_, message, _) = refusal(read_target(&ec, Some(Kty::Rsa)));
        assert!(message.ends_with("holds EC P-256, but --kty says RSA"), "{message}");

        let kek = byok_testdata::path("keys/kek-rsa2048.spki.pem");
        assert!(read_kek(&kek).is_ok());
        let (_, message, hint) = refusal(read_kek(&byok_testdata::path("keys/kek-rsa2048.pkcs8.pem")));
        assert!(message.contains("was refused"), "{message}");
        assert!(hint.is_some_and(|h| h.contains("openssl pkey -pubout")));
        // A PEM KEK names no kid: it must be given.
        let (kind, message, _) = refusal(kek_kid(None, &read_kek(&kek).expect("KEK"), &kek));
        assert_eq!(kind, Kind::Usage);
        assert!(message.starts_with("--kek-kid is required"), "{message}");
    }
}
