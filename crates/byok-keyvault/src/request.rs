//! What to import and the checks that can be made before it is sent: names, operations for the key type, curve,
//! times, tags, export policy.

use std::collections::{BTreeMap, HashMap};

use azure_security_keyvault_keys::models::{ImportKeyParameters, JsonWebKey, KeyAttributes, KeyReleasePolicy};
use byok_blob::VaultKind;
use byok_encoding::{Curve, Kty};

use crate::convert;
use crate::{Error, KeyOp, KeyType, TRANSFER_TAG, Timestamp, Vault, tags};

/// What to import: a `.byok` file and the properties the new key version gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportRequest {
    /// The key's name in the vault (a new version if it exists).
    pub name: String,
    /// The `.byok` file's bytes, as written (they travel as `key_hsm`, base64url).
    pub blob_bytes: Vec<u8>,
    /// RSA, EC or oct (sent as `RSA-HSM`, `EC-HSM`, `oct-HSM`).
    pub kty: Kty,
    /// The curve, for EC and only for EC.
    pub curve: Option<Curve>,
    /// The operations the key allows (`encrypt`, `decrypt`, `sign`, `verify`, `wrapKey`, `unwrapKey`).
    pub key_ops: Vec<KeyOp>,
    /// Whether the key is enabled.
    pub enabled: bool,
    /// Not usable before.
    pub not_before: Option<Timestamp>,
    /// Not usable after.
    pub expires: Option<Timestamp>,
    /// Tags (byok adds [`TRANSFER_TAG`]).
    pub tags: BTreeMap<String, String>,
    /// Exportable under `release_policy` (Managed HSM and Premium vaults).
    pub exportable: bool,
    /// The release policy document (JSON), required with `exportable`.
    pub release_policy: Option<Vec<u8>>,
    /// The transfer's random id, written to [`TRANSFER_TAG`].
    pub transfer_id: String,
    /// byok's other tags ([`crate::tags`]: source, kind, tool), set by the transfer engine once it knows the key.
    pub provenance: BTreeMap<String, String>,
}

/// The operations a key of each type may allow.
fn allowed_ops(kty: Kty) -> &'static [KeyOp] {
    use KeyOp::{Decrypt, Encrypt, Sign, UnwrapKey, Verify, WrapKey};
    match kty {
        Kty::Rsa => &[Encrypt, Decrypt, Sign, Verify, WrapKey, UnwrapKey],
        Kty::Ec => &[Sign, Verify],
        Kty::Oct => &[Encrypt, Decrypt, WrapKey, UnwrapKey],
    }
}

/// Whether `name` can name a key in Key Vault and Managed HSM: 1 to 127 ASCII letters, digits and dashes.
pub fn check_key_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > 127 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(Error::Request(format!(
            "`{name}` is not a key name: 1 to 127 letters, digits and dashes"
        )));
    }
    Ok(())
}

impl ImportRequest {
    /// The default operations for a key type (all it may have), as `az keyvault key import` gives them.
    pub fn default_ops(kty: Kty) -> Vec<KeyOp> {
        allowed_ops(kty).to_vec()
    }

    /// Checks what can be checked before sending: name, operations for the type, curve, oct on a Managed HSM,
    /// times, tags, export policy.
    pub fn validate(&self, vault: &Vault) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Request(m));
        check_key_name(&self.name)?;
        let allowed = allowed_ops(self.kty);
        for op in &self.key_ops {
            if !allowed.contains(op) {
                let why = match (self.kty, op) {
                    (_, KeyOp::Import) => " (`import` belongs to a Key Exchange Key only)".to_owned(),
                    (Kty::Ec, KeyOp::Encrypt | KeyOp::Decrypt | KeyOp::WrapKey | KeyOp::UnwrapKey) => {
                        " (EC keys sign and verify; they cannot encrypt or wrap)".to_owned()
                    }
                    _ => String::new(),
                };
                return bad(format!(
                    "operation `{op}` is not valid for {} keys{why}; valid: {}",
                    self.kty,
                    KeyOp::names(allowed).join(", ")
                ));
            }
        }
        match (self.kty, self.curve) {
            (Kty::Ec, None) => return bad("an EC key needs its curve (P-256, P-384, P-521 or P-256K)".into()),
            (Kty::Rsa | Kty::Oct, Some(c)) => {
                return bad(format!(
                    "a curve ({c}) is given, but the key type is {}, not EC",
                    self.kty
                ));
            }
            _ => {}
        }
        if self.kty == Kty::Oct && vault.kind() == VaultKind::KeyVault {
            return bad(format!(
                "{vault} is a Key Vault; AES (oct-HSM) keys can be imported into a Managed HSM only"
            ));
        }
        if let (Some(nbf), Some(exp)) = (self.not_before, self.expires)
            && exp <= nbf
        {
            return bad(format!("the key would expire ({exp}) before it becomes valid ({nbf})"));
        }
        // The room byok's own tags take: all it may add, so that the answer does not depend on the key.
        let reserved = tags::ALL.len() - 1;
        if self.tags.len() + reserved > 15 {
            return bad(format!(
                "{} tags are given; Key Vault takes 15 per key, and byok adds up to {reserved} of its own ({}): at most \
                 {} of yours",
                self.tags.len(),
                tags::ALL.join(", "),
                15 - reserved
            ));
        }
        if let Some(k) = self.provenance.keys().find(|k| !tags::is_byok(k) || *k == TRANSFER_TAG) {
            return bad(format!("`{k}` is not one of byok's provenance tags"));
        }
        if let Some(k) = self.tags.keys().find(|k| tags::is_byok(k)) {
            return bad(format!("the tag `{k}` is byok's own (docs/tags.md)"));
        }
        for (k, v) in self.tags.iter().chain(&self.provenance) {
            if k.is_empty() || k.chars().count() > 512 || v.chars().count() > 256 {
                return bad(format!(
                    "tag `{k}`: names are 1 to 512 characters and values at most 256"
                ));
            }
        }
        match (self.exportable, &self.release_policy) {
            (true, None) => return bad("an exportable key needs a release policy".into()),
            (false, Some(_)) => return bad("a release policy is given but the key is not exportable".into()),
            (true, Some(p)) if serde_json::from_slice::<serde_json::Value>(p).is_err() => {
                return bad("the release policy is not JSON".into());
            }
            _ => {}
        }
        Ok(())
    }

    pub(crate) fn to_parameters(&self) -> ImportKeyParameters {
        let mut tags: HashMap<String, String> = self.tags.clone().into_iter().collect();
        tags.extend(self.provenance.clone());
        tags.insert(TRANSFER_TAG.to_owned(), self.transfer_id.clone());
        let key = JsonWebKey {
            kty: Some(convert::key_type(KeyType::hsm(self.kty))),
            crv: self.curve.map(convert::curve_name),
            key_ops: Some(KeyOp::names(&self.key_ops).into_iter().map(str::to_owned).collect()),
            t: Some(self.blob_bytes.clone()),
            ..Default::default()
        };
        let attributes = KeyAttributes {
            enabled: Some(self.enabled),
            not_before: self.not_before.and_then(Timestamp::to_sdk),
            expires: self.expires.and_then(Timestamp::to_sdk),
            exportable: self.exportable.then_some(true),
            ..Default::default()
        };
        ImportKeyParameters {
            hsm: Some(true),
            key: Some(key),
            key_attributes: Some(attributes),
            release_policy: self.release_policy.as_ref().map(|p| KeyReleasePolicy {
                content_type: Some("application/json; charset=utf-8".into()),
                encoded_policy: Some(p.clone()),
                immutable: None,
            }),
            tags: Some(tags),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;

    fn request(kty: Kty) -> ImportRequest {
        ImportRequest {
            name: "target".into(),
            blob_bytes: b"{}".to_vec(),
            kty,
            curve: (kty == Kty::Ec).then_some(Curve::P256),
            key_ops: ImportRequest::default_ops(kty),
            enabled: true,
            not_before: None,
            expires: None,
            tags: BTreeMap::new(),
            exportable: false,
            release_policy: None,
            transfer_id: "0".repeat(32),
            provenance: BTreeMap::new(),
        }
    }

    fn refusal(r: &ImportRequest, vault: &Vault) -> String {
        match r.validate(vault) {
            Err(Error::Request(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn preflight() {
        let kv = Vault::from_vault_name("contoso").expect("valid");
        let hsm = Vault::from_hsm_name("contoso").expect("valid");
        for kty in [Kty::Rsa, Kty::Ec] {
            assert_eq!(request(kty).validate(&kv), Ok(()));
        }
        assert_eq!(request(Kty::Oct).validate(&hsm), Ok(()));
        assert!(refusal(&request(Kty::Oct), &kv).contains("Managed HSM only"));
        let mut r = request(Kty::Ec);
        r.key_ops.push(KeyOp::WrapKey);
        assert!(refusal(&r, &kv).contains("cannot encrypt or wrap"));
        r.key_ops = vec![KeyOp::Import];
        assert!(refusal(&r, &kv).contains("Key Exchange Key only"));
        let mut r = request(Kty::Ec);
        r.curve = None;
        assert!(refusal(&r, &kv).contains("needs its curve"));
        let mut r = request(Kty::Rsa);
        r.curve = Some(Curve::P384);
        assert!(refusal(&r, &kv).contains("not EC"));
        let mut r = request(Kty::Rsa);
        r.name = "bad_name".into();
        assert!(refusal(&r, &kv).contains("not a key name"));
        let mut r = request(Kty::Rsa);
        r.not_before = Some(Timestamp::from_unix(2_000_000_000));
        r.expires = Some(Timestamp::from_unix(1_900_000_000));
        assert!(refusal(&r, &kv).contains("expire"));
        let mut r = request(Kty::Rsa);
        r.tags = (0..10).map(|i| (format!("t{i}"), String::new())).collect();
        assert_eq!(r.validate(&kv), Ok(()), "ten of the user's, five of byok's");
        r.tags.insert("t10".into(), String::new());
        assert!(refusal(&r, &kv).contains("at most 10 of yours"));
        let mut r = request(Kty::Rsa);
        r.tags.insert(tags::TOKEN.into(), "x".into());
        assert!(refusal(&r, &kv).contains("byok's own"));
        let mut r = request(Kty::Rsa);
        r.provenance.insert("owner".into(), "x".into());
        assert!(refusal(&r, &kv).contains("not one of byok's provenance tags"));
        let mut r = request(Kty::Rsa);
        r.tags.insert(TRANSFER_TAG.into(), "x".into());
        assert!(refusal(&r, &kv).contains("byok's own"));
        let mut r = request(Kty::Rsa);
        r.exportable = true;
        assert!(refusal(&r, &kv).contains("release policy"));
    }

    #[test]
    fn parameters_carry_the_blob_and_the_tag() {
        let mut r = request(Kty::Ec);
        r.tags.insert("owner".into(), "pki".into());
        r.expires = Some(Timestamp::parse("2030-01-01T00:00:00Z").expect("valid"));
        let json = serde_json::to_value(r.to_parameters()).expect("serializes");
        assert_eq!(json["key"]["kty"], "EC-HSM");
        assert_eq!(json["key"]["crv"], "P-256");
        assert_eq!(json["key"]["key_hsm"], "e30", "base64url of `{{}}` without padding");
        assert_eq!(json["key"]["key_ops"], serde_json::json!(["sign", "verify"]));
        assert_eq!(json["Hsm"], true);
        assert_eq!(json["attributes"]["exp"], 1_893_456_000);
        assert_eq!(json["tags"][TRANSFER_TAG], "0".repeat(32));
        assert_eq!(json["tags"]["owner"], "pki");
    }
}
