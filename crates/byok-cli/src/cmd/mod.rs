pub(crate) mod attest;
pub(crate) mod batch;
pub(crate) mod hsm;
pub(crate) mod import;
pub(crate) mod inspect;
pub(crate) mod kek;
pub(crate) mod transfer;
pub(crate) mod vault;
pub(crate) mod wrap;

use byok_encoding::Error as EncodingError;

use crate::exit::{CliError, Exit};

/// Turns a key-parsing error into a CLI error with a hint that says how to fix it.
pub(crate) fn key_error(e: EncodingError, file: &std::path::Path, what: &str) -> CliError {
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
    let err = CliError::new(
        Exit::InvalidInput,
        anyhow::Error::new(e).context(format!("the {what} {} was refused", file.display())),
    );
    match hint {
        Some(h) => err.hint(h),
        None => err,
    }
}
