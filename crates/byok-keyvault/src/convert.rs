//! Between the SDK's models and byok's: keys and KEKs read from an answer (checked, since the answer is
//! untrusted), key types and curves for requests, and SDK errors as one line.

use std::str::FromStr;

use azure_security_keyvault_keys::models::{self as sdk, CurveName, Key};
use byok_blob::KeyId;
use byok_encoding::{Curve, KekPublicKey, Kty, TargetPublicKey};

use crate::{Error, Kek, KeyOp, KeyType, Timestamp, VaultKey};

/// The error and its sources, one line.
pub(crate) fn describe(e: &azure_core::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(&format!(": {text}"));
        }
        source = s.source();
    }
    message
}

/// A short reason for progress lines: the status and service code, or the innermost cause.
pub(crate) fn short(e: &azure_core::Error) -> String {
    if let azure_core::error::ErrorKind::HttpResponse { status, error_code, .. } = e.kind() {
        return format!(
            "HTTP {}{}",
            u16::from(*status),
            error_code.as_ref().map(|c| format!(" {c}")).unwrap_or_default()
        );
    }
    let mut last = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

fn answer_error(name: &str, reason: impl Into<String>) -> Error {
    Error::Answer {
        key: name.to_owned(),
        reason: reason.into(),
    }
}

/// The type an answer names; a missing or unknown type is refused, not guessed.
fn answer_type(name: &str, kty: Option<&sdk::KeyType>) -> Result<KeyType, Error> {
    let kty = kty.ok_or_else(|| answer_error(name, "no kty"))?;
    KeyType::from_str(kty.as_ref()).map_err(|e| answer_error(name, e.to_string()))
}

/// The operations an answer names; an unknown one is refused (a vault's answer is untrusted, and its text would
/// reach the terminal).
fn answer_ops(name: &str, ops: Option<Vec<String>>) -> Result<Vec<KeyOp>, Error> {
    let ops = ops.unwrap_or_default();
    ops.iter()
        .map(|op| KeyOp::from_str(op).map_err(|e| answer_error(name, e.to_string())))
        .collect()
}

pub(crate) fn vault_key(name: &str, key: Key) -> Result<VaultKey, Error> {
    let jwk = key.key.ok_or_else(|| answer_error(name, "no key material"))?;
    let kid = KeyId::parse(jwk.kid.as_deref().ok_or_else(|| answer_error(name, "no kid"))?)
        .map_err(|e| answer_error(name, e.to_string()))?;
    let kty = answer_type(name, jwk.kty.as_ref())?;
    let public = match (kty.family(), &jwk.n, &jwk.e, &jwk.crv, &jwk.x, &jwk.y) {
        (Kty::Rsa, Some(n), Some(e), ..) => {
            Some(TargetPublicKey::from_rsa_components(n, e).map_err(|e| answer_error(name, e.to_string()))?)
        }
        (Kty::Ec, _, _, Some(crv), Some(x), Some(y)) => {
            let curve = Curve::from_str(crv.as_ref()).map_err(|e| answer_error(name, e.to_string()))?;
            Some(TargetPublicKey::from_ec_components(curve, x, y).map_err(|e| answer_error(name, e.to_string()))?)
        }
        (Kty::Rsa | Kty::Ec, ..) => return Err(answer_error(name, format!("a {kty} key without its public half"))),
        (Kty::Oct, ..) => None,
    };
    let attributes = key.attributes.unwrap_or_default();
    Ok(VaultKey {
        kid,
        kty,
        key_ops: answer_ops(name, jwk.key_ops)?,
        public,
        enabled: attributes.enabled,
        not_before: attributes.not_before.map(Timestamp::from_sdk),
        expires: attributes.expires.map(Timestamp::from_sdk),
        created: attributes.created.map(Timestamp::from_sdk),
        exportable: attributes.exportable,
        hsm_platform: hsm_platform(attributes.hsm_platform),
        tags: key.tags.unwrap_or_default().into_iter().collect(),
    })
}

pub(crate) fn kek_from(name: &str, key: Key) -> Result<Kek, Error> {
    let platform = key.attributes.and_then(|a| hsm_platform(a.hsm_platform));
    let jwk = key.key.ok_or_else(|| answer_error(name, "no key material"))?;
    let kid = KeyId::parse(jwk.kid.as_deref().ok_or_else(|| answer_error(name, "no kid"))?)
        .map_err(|e| answer_error(name, e.to_string()))?;
    let (n, e) = (
        jwk.n.ok_or_else(|| answer_error(name, "not an RSA key (no n)"))?,
        jwk.e.ok_or_else(|| answer_error(name, "no e"))?,
    );
    let public = KekPublicKey::from_components(&n, &e).map_err(|e| answer_error(name, e.to_string()))?;
    Ok(Kek {
        kid,
        public,
        kty: answer_type(name, jwk.kty.as_ref())?,
        key_ops: answer_ops(name, jwk.key_ops)?,
        hsm_platform: platform,
    })
}

/// `attributes.hsmPlatform` as the answer gave it, if it is a short plain token (`"0"`, `"1"`, `"2"` today):
/// anything else is not shown, since records and messages repeat it.
fn hsm_platform(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty() && v.len() <= 16 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'))
}

/// The SDK's name for a key type.
pub(crate) fn key_type(kty: KeyType) -> sdk::KeyType {
    match (kty.family(), kty.is_hsm()) {
        (Kty::Rsa, true) => sdk::KeyType::RsaHsm,
        (Kty::Rsa, false) => sdk::KeyType::Rsa,
        (Kty::Ec, true) => sdk::KeyType::EcHsm,
        (Kty::Ec, false) => sdk::KeyType::Ec,
        (Kty::Oct, true) => sdk::KeyType::OctHsm,
        (Kty::Oct, false) => sdk::KeyType::Oct,
    }
}

/// The SDK's name for a curve.
pub(crate) fn curve_name(c: Curve) -> CurveName {
    match c {
        Curve::P256 => CurveName::P256,
        Curve::P384 => CurveName::P384,
        Curve::P521 => CurveName::P521,
        Curve::P256K => CurveName::P256K,
    }
}

#[cfg(test)]
mod tests {
    use azure_security_keyvault_keys::models::{JsonWebKey, KeyAttributes};

    use super::*;

    fn answer(kty: &str, ops: &[&str]) -> Key {
        let mut key = Key::default();
        key.key = Some(JsonWebKey {
            kid: Some("https://contoso.vault.azure.net/keys/k/0123456789abcdef0123456789abcdef".into()),
            kty: Some(kty.parse().expect("any string is a kty to the SDK")),
            key_ops: Some(ops.iter().map(|o| (*o).to_owned()).collect()),
            ..Default::default()
        });
        key
    }

    fn refusal(key: Key) -> String {
        match vault_key("k", key) {
            Err(Error::Answer { reason, .. }) => reason,
            other => panic!("expected the answer refused, got {other:?}"),
        }
    }

    #[test]
    fn an_answer_is_read_into_typed_kinds() {
        let key = vault_key("k", answer("oct-HSM", &["encrypt", "wrapKey"])).expect("a well-formed answer");
        assert_eq!(key.kty, KeyType::hsm(Kty::Oct));
        assert_eq!(key.key_ops, [KeyOp::Encrypt, KeyOp::WrapKey]);
    }

    #[test]
    fn the_hsm_platform_is_kept_only_as_a_short_plain_token() {
        let with = |platform: &str| {
            let mut key = answer("RSA-HSM", &["import"]);
            key.key.as_mut().expect("jwk").n = Some(vec![0xc5; 256]);
            key.key.as_mut().expect("jwk").e = Some(vec![1, 0, 1]);
            key.attributes = Some(KeyAttributes {
                hsm_platform: Some(platform.to_owned()),
                ..Default::default()
            });
            vault_key("k", key).expect("a well-formed answer").hsm_platform
        };
        assert_eq!(with("2").as_deref(), Some("2"));
        assert_eq!(with("2\nforged line"), None);
        assert_eq!(with(&"9".repeat(17)), None);
        assert_eq!(with(""), None);
    }

    #[test]
    fn unknown_types_and_operations_are_refused_not_guessed() {
        assert!(refusal(answer("OKP", &[])).contains("`OKP` is not a key type"));
        let reason = refusal(answer("oct-HSM", &["encrypt", "\u{1b}[2Jpwn"]));
        assert!(reason.contains("is not a key operation"), "{reason}");
        assert!(refusal(answer("RSA-HSM", &["import"])).contains("without its public half"));
    }
}
