//! The `.byok` transfer blob (Azure Key Vault BYOK specification).

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use serde::Serialize;
use serde_json::Value;

use crate::{Error, KeyId};

/// The schema version byok writes.
pub const SCHEMA_VERSION: &str = "1.0.0";
/// The only `alg` a BYOK blob carries.
pub const ALG: &str = "dir";
/// The only `enc` a BYOK blob carries.
pub const ENC: &str = "CKM_RSA_AES_KEY_WRAP";
/// No real blob comes near this (an RSA-4096 target under an RSA-4096 KEK is under 4 KiB of JSON).
pub const MAX_DOCUMENT_LEN: usize = 256 * 1024;
/// The RSA part lengths of the KEK sizes Azure uses (2048, 3072, 4096 bits).
pub const RSA_PART_LENGTHS: [usize; 3] = [256, 384, 512];

const TOLERANT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const URL_SAFE_ANY_PAD: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, TOLERANT);
const STANDARD_ANY_PAD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, TOLERANT);

/// How the ciphertext was encoded in a document that was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CiphertextEncoding {
    /// base64url without padding: what the specification and byok write.
    Base64UrlUnpadded,
    /// base64url with `=` padding (seen from some vendor tools; Key Vault accepts it).
    Base64UrlPadded,
    /// Standard base64 (`+` and `/`).
    Base64Standard,
}

impl CiphertextEncoding {
    /// A short name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Base64UrlUnpadded => "base64url, unpadded",
            Self::Base64UrlPadded => "base64url, padded",
            Self::Base64Standard => "standard base64",
        }
    }
}

/// A BYOK transfer blob: which KEK it was made for, the CKM_RSA_AES_KEY_WRAP ciphertext, and who made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ByokBlob {
    schema_version: String,
    kid: KeyId,
    ciphertext: Vec<u8>,
    generator: Option<String>,
    encoding: CiphertextEncoding,
}

#[derive(Serialize)]
struct Document<'a> {
    schema_version: &'a str,
    header: Header<'a>,
    ciphertext: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    generator: Option<&'a str>,
}

#[derive(Serialize)]
struct Header<'a> {
    kid: String,
    alg: &'a str,
    enc: &'a str,
}

impl ByokBlob {
    /// A new blob for the KEK `kid`, with schema version 1.0.0.
    pub fn new(kid: KeyId, ciphertext: Vec<u8>, generator: impl Into<String>) -> Self {
        Self {
            schema_version: SCHEMA_VERSION.to_owned(),
            kid,
            ciphertext,
            generator: Some(generator.into()),
            encoding: CiphertextEncoding::Base64UrlUnpadded,
        }
    }

    /// The document as byok writes it, compact, fields in the specification's order:
    /// `{"schema_version":"1.0.0","header":{"kid":…,"alg":"dir","enc":"CKM_RSA_AES_KEY_WRAP"},"ciphertext":…,"generator":…}`
    /// with the ciphertext in base64url without padding.
    pub fn to_json(&self) -> Vec<u8> {
        let doc = Document {
            schema_version: &self.schema_version,
            header: Header {
                kid: self.kid.to_string(),
                alg: ALG,
                enc: ENC,
            },
            ciphertext: URL_SAFE_NO_PAD.encode(&self.ciphertext),
            generator: self.generator.as_deref(),
        };
        serde_json::to_vec(&doc).expect("serializing strings to JSON cannot fail")
    }

    /// Reads a document tolerantly (schema `1.0` or `1.0.0`; ciphertext in padded or unpadded base64url or
    /// standard base64; unknown fields ignored) and validates it strictly: every required field present and of
    /// the right type, `alg` `dir`, `enc` `CKM_RSA_AES_KEY_WRAP`, a versioned `kid`, and a ciphertext that some
    /// KEK size splits into an RSA part and a KWP part of at least 16 bytes in whole 8-byte semiblocks.
    pub fn from_json(document: &[u8]) -> Result<Self, Error> {
        if document.len() > MAX_DOCUMENT_LEN {
            return Err(Error::TooLarge {
                len: document.len(),
                max: MAX_DOCUMENT_LEN,
            });
        }
        let value: Value = serde_json::from_slice(document).map_err(|e| Error::Json(e.to_string()))?;
        let Value::Object(top) = &value else {
            return Err(Error::Json("the top level is not a JSON object".into()));
        };
        let schema_version = string_field(top, "schema_version", "schema_version")?;
        if !matches!(schema_version, "1.0.0" | "1.0") {
            return Err(Error::SchemaVersion(schema_version.to_owned()));
        }
        let header = match top.get("header") {
            None | Some(Value::Null) => return Err(Error::MissingField("header")),
            Some(Value::Object(h)) => h,
            Some(_) => {
                return Err(Error::FieldType {
                    field: "header",
                    expected: "JSON object",
                });
            }
        };
        let kid = string_field(header, "kid", "header.kid")?;
        let alg = string_field(header, "alg", "header.alg")?;
        let enc = string_field(header, "enc", "header.enc")?;
        if alg != ALG {
            return Err(Error::Alg(alg.to_owned()));
        }
        if enc != ENC {
            return Err(Error::Enc(enc.to_owned()));
        }
        let kid = KeyId::parse(kid)?;
        let (ciphertext, encoding) = decode_ciphertext(string_field(top, "ciphertext", "ciphertext")?)?;
        check_ciphertext_length(ciphertext.len())?;
        let generator = match top.get("generator") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(Error::FieldType {
                    field: "generator",
                    expected: "string",
                });
            }
        };
        Ok(Self {
            schema_version: schema_version.to_owned(),
            kid,
            ciphertext,
            generator,
            encoding,
        })
    }

    /// The schema version as written in the document.
    pub fn schema_version(&self) -> &str {
        &self.schema_version
    }

    /// The KEK this blob was made for.
    pub fn kid(&self) -> &KeyId {
        &self.kid
    }

    /// The CKM_RSA_AES_KEY_WRAP ciphertext, `rsa_part || kwp_part`.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    /// The tool (and source HSM) that made the blob, if it said.
    pub fn generator(&self) -> Option<&str> {
        self.generator.as_deref()
    }

    /// How the ciphertext was encoded in the document that was read.
    pub fn ciphertext_encoding(&self) -> CiphertextEncoding {
        self.encoding
    }

    /// The RSA part lengths (256, 384, 512) that split this ciphertext into a plausible RSA part and KWP part.
    pub fn possible_rsa_part_lengths(&self) -> Vec<usize> {
        possible_rsa_part_lengths(self.ciphertext.len())
    }

    /// The `key_hsm` value of an import request carrying this blob as byok writes it.
    pub fn key_hsm(&self) -> String {
        key_hsm(&self.to_json())
    }
}

/// The `key_hsm` value of an import request: base64url without padding of the `.byok` file's bytes, exactly as
/// they are (the Azure CLI and SDKs send the file raw).
pub fn key_hsm(file_bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(file_bytes)
}

/// The RSA part lengths that split a ciphertext of `len` bytes into an RSA part and a KWP part of at least
/// 16 bytes that is a multiple of 8.
pub fn possible_rsa_part_lengths(len: usize) -> Vec<usize> {
    RSA_PART_LENGTHS
        .into_iter()
        .filter(|&r| len >= r + 16 && (len - r).is_multiple_of(8))
        .collect()
}

fn check_ciphertext_length(len: usize) -> Result<(), Error> {
    if len < RSA_PART_LENGTHS[0] + 16 {
        return Err(Error::CiphertextTooShort { len });
    }
    if possible_rsa_part_lengths(len).is_empty() {
        return Err(Error::CiphertextLength { len });
    }
    Ok(())
}

fn string_field<'a>(
    object: &'a serde_json::Map<String, Value>,
    key: &str,
    field: &'static str,
) -> Result<&'a str, Error> {
    match object.get(key) {
        None | Some(Value::Null) => Err(Error::MissingField(field)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Error::FieldType {
            field,
            expected: "string",
        }),
    }
}

fn decode_ciphertext(text: &str) -> Result<(Vec<u8>, CiphertextEncoding), Error> {
    let has_url = text.contains(['-', '_']);
    let has_std = text.contains(['+', '/']);
    let (engine, encoding): (&GeneralPurpose, CiphertextEncoding) = match (has_url, has_std) {
        (true, true) => {
            return Err(Error::CiphertextEncoding(
                "it mixes the base64url and base64 alphabets".into(),
            ));
        }
        (false, true) => (&STANDARD_ANY_PAD, CiphertextEncoding::Base64Standard),
        _ if text.ends_with('=') => (&URL_SAFE_ANY_PAD, CiphertextEncoding::Base64UrlPadded),
        _ => (&URL_SAFE_ANY_PAD, CiphertextEncoding::Base64UrlUnpadded),
    };
    let bytes = engine.decode(text).map_err(|e| {
        Error::CiphertextEncoding(match e {
            base64::DecodeError::InvalidByte(offset, byte) => {
                format!(
                    "invalid character `{}` at offset {offset}",
                    char::from(byte).escape_default()
                )
            }
            base64::DecodeError::InvalidLength(len) => format!("{len} symbols cannot be base64"),
            other => other.to_string(),
        })
    })?;
    Ok((bytes, encoding))
}
