//! byok's tags on an imported key version ([`byok_keyvault::tags`], docs/tags.md): written at every import from
//! what the token says of the key, and read back by `status` and `rotate`, which know of a key only what the vault
//! holds. Nothing in them is secret: a serial number, digests, a kind, a check value, a program's name.

use std::collections::BTreeMap;

use byok_encoding::{AesSize, Curve, KeyKind, RsaSize};
use byok_keyvault::{TRANSFER_TAG, tags};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::record::{SourceRecord, Tool};

/// At most this many characters of a token's serial go into a tag (PKCS#11 gives it 16 bytes).
const SERIAL_CHARS: usize = 64;

/// What byok's tags say of a key version; `None` where a tag is missing or malformed (a tag is anyone's to edit).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Provenance {
    /// The transfer's id (`byok-transfer`), also in its record.
    pub transfer_id: Option<String>,
    /// The source token's serial.
    pub token_serial: Option<String>,
    /// The digest of the source key's CKA_ID (or label).
    pub key_id_digest: Option<String>,
    /// The key's kind, as byok named it at import.
    pub kind: Option<String>,
    /// An AES key's check value.
    pub check_value: Option<String>,
    /// The program that imported it.
    pub tool: Option<String>,
}

impl Provenance {
    /// The tags of a version byok imported, or `None`: without a well-formed `byok-transfer` tag, byok did not
    /// import it.
    pub fn from_tags(tags: &BTreeMap<String, String>) -> Option<Self> {
        let get = |name: &str, ok: fn(&str) -> bool| tags.get(name).filter(|v| ok(v)).cloned();
        let transfer_id = get(TRANSFER_TAG, |v| {
            v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit())
        })?;
        Some(Self {
            transfer_id: Some(transfer_id),
            token_serial: get(tags::TOKEN, |v| v.len() <= SERIAL_CHARS && printable(v)),
            key_id_digest: get(tags::KEY_ID, |v| v.len() <= 80 && printable(v)),
            kind: get(tags::KIND, |v| kind_from_tag(v).is_some()),
            check_value: get(tags::CHECK_VALUE, |v| {
                v.len() == 6 && v.bytes().all(|b| b.is_ascii_hexdigit())
            }),
            tool: get(tags::TOOL, |v| v.len() <= 64 && printable(v)),
        })
    }

    /// The kind the tag names.
    pub fn key_kind(&self) -> Option<KeyKind> {
        self.kind.as_deref().and_then(kind_from_tag)
    }
}

/// byok's tags for a key from `source` of `kind`, imported by `tool` (the transfer id is added with the request).
pub(crate) fn tags_for(source: &SourceRecord, kind: KeyKind, tool: &Tool) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let serial: String = source
        .token
        .serial
        .trim()
        .chars()
        .filter(char::is_ascii_graphic)
        .take(SERIAL_CHARS)
        .collect();
    if !serial.is_empty() {
        out.insert(tags::TOKEN.to_owned(), serial);
    }
    out.insert(tags::KEY_ID.to_owned(), key_id_digest(source));
    out.insert(tags::KIND.to_owned(), kind_tag(kind));
    if let Some(kcv) = source.key_check_value.as_deref().and_then(|v| v.get(..6)) {
        out.insert(tags::CHECK_VALUE.to_owned(), kcv.to_owned());
    }
    let tool: String = format!("{}/{}", tool.name, tool.version)
        .chars()
        .filter(char::is_ascii_graphic)
        .take(64)
        .collect();
    out.insert(tags::TOOL.to_owned(), tool);
    out
}

/// `sha256:` and the first 16 bytes (hex) of SHA-256 of the key's CKA_ID; of its label when it has none.
fn key_id_digest(source: &SourceRecord) -> String {
    match hex::decode(&source.key_id).ok().filter(|id| !id.is_empty()) {
        Some(id) => format!("sha256:{}", hex::encode(&Sha256::digest(&id)[..16])),
        None => format!(
            "label-sha256:{}",
            hex::encode(&Sha256::digest(source.key_label.as_bytes())[..16])
        ),
    }
}

/// `RSA-3072`, `EC-P-256`, `AES-256`: the kind's name without spaces.
pub fn kind_tag(kind: KeyKind) -> String {
    kind.to_string().replace(' ', "-")
}

fn kind_from_tag(tag: &str) -> Option<KeyKind> {
    let rsa = [RsaSize::Rsa2048, RsaSize::Rsa3072, RsaSize::Rsa4096].map(KeyKind::Rsa);
    let ec = [Curve::P256, Curve::P384, Curve::P521, Curve::P256K].map(KeyKind::Ec);
    let aes = [AesSize::Aes128, AesSize::Aes192, AesSize::Aes256].map(KeyKind::Aes);
    rsa.into_iter().chain(ec).chain(aes).find(|k| kind_tag(*k) == tag)
}

fn printable(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::TokenRecord;

    fn source(id: &str, kcv: Option<&str>) -> SourceRecord {
        SourceRecord {
            token: TokenRecord {
                label: "t".into(),
                manufacturer: "m".into(),
                model: "x".into(),
                serial: " 0123abcd\n ".into(),
                firmware: "1.0".into(),
            },
            key_uri: "pkcs11:token=t;object=k".into(),
            key_label: "k".into(),
            key_id: id.into(),
            key_check_value: kcv.map(str::to_owned),
        }
    }

    #[test]
    fn tags_name_the_source_without_its_secrets_and_read_back() {
        let tool = Tool {
            name: "byok-cli".into(),
            version: "0.1.0".into(),
        };
        let mut tags = tags_for(&source("0a0b", Some("54a0c1")), KeyKind::Aes(AesSize::Aes256), &tool);
        assert_eq!(tags[tags::TOKEN], "0123abcd");
        assert_eq!(
            tags[tags::KEY_ID],
            format!("sha256:{}", &hex::encode(Sha256::digest([10, 11]))[..32])
        );
        assert_eq!(tags[tags::KIND], "AES-256");
        assert_eq!(tags[tags::CHECK_VALUE], "54a0c1");
        assert_eq!(tags[tags::TOOL], "byok-cli/0.1.0");
        assert_eq!(Provenance::from_tags(&tags), None, "no transfer id: not byok's");
        tags.insert(TRANSFER_TAG.into(), "f".repeat(32));
        let p = Provenance::from_tags(&tags).expect("byok's");
        assert_eq!(p.key_kind(), Some(KeyKind::Aes(AesSize::Aes256)));
        assert_eq!(p.check_value.as_deref(), Some("54a0c1"));
        let no_id = tags_for(&source("", None), KeyKind::Ec(Curve::P384), &tool);
        assert!(no_id[tags::KEY_ID].starts_with("label-sha256:"));
        assert_eq!(no_id[tags::KIND], "EC-P-384");
        assert!(!no_id.contains_key(tags::CHECK_VALUE));
    }

    #[test]
    fn malformed_tags_are_not_believed() {
        let mut tags = BTreeMap::from([(TRANSFER_TAG.to_owned(), "f".repeat(32))]);
        tags.insert(tags::KIND.into(), "RSA-1024".into());
        tags.insert(tags::TOKEN.into(), "a\u{1b}[2J".into());
        tags.insert(tags::CHECK_VALUE.into(), "zz".into());
        let p = Provenance::from_tags(&tags).expect("byok's");
        assert_eq!((p.kind, p.token_serial, p.check_value), (None, None, None));
        tags.insert(TRANSFER_TAG.into(), "not hex".into());
        assert_eq!(Provenance::from_tags(&tags), None);
    }
}
