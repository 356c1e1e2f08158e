//! Finding keys by URI and reading what their attributes say: class, kind, size or curve, public half.

use byok_encoding::{AesSize, Curve, KeyKind, RsaSize, TargetPublicKey};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};

use crate::{Error, ObjectType, Pkcs11Uri};

use super::{KeyClass, KeyInfo, KeyKindInfo, TokenSession};

impl TokenSession<'_> {
    /// Every private and secret key in the token.
    pub fn list_keys(&self) -> Result<Vec<KeyInfo>, Error> {
        let mut keys = Vec::new();
        for class in [ObjectClass::PRIVATE_KEY, ObjectClass::SECRET_KEY] {
            for h in self
                .session
                .find_objects(&[Attribute::Class(class), Attribute::Token(true)])?
            {
                keys.push(self.describe(h)?);
            }
        }
        keys.sort_by(|a, b| (&a.label, &a.id).cmp(&(&b.label, &b.id)));
        Ok(keys)
    }

    /// The one key the URI names by `object=`, `id=` and `type=`; an error lists the candidates when several match.
    pub fn find_key(&self, uri: &Pkcs11Uri) -> Result<KeyInfo, Error> {
        if uri.object.is_none() && uri.id.is_none() {
            return Err(Error::Uri("name the key with object= (its label) or id=".into()));
        }
        let classes: &[ObjectClass] = match uri.object_type {
            Some(ObjectType::Private) => &[ObjectClass::PRIVATE_KEY],
            Some(ObjectType::SecretKey) => &[ObjectClass::SECRET_KEY],
            Some(ObjectType::Public) => {
                return Err(Error::Uri(
                    "type=public names a public key; BYOK moves private or secret keys".into(),
                ));
            }
            None => &[ObjectClass::PRIVATE_KEY, ObjectClass::SECRET_KEY],
        };
        let mut found = Vec::new();
        for class in classes {
            let mut template = vec![Attribute::Class(*class)];
            if let Some(label) = &uri.object {
                template.push(Attribute::Label(label.as_bytes().to_vec()));
            }
            if let Some(id) = &uri.id {
                template.push(Attribute::Id(id.clone()));
            }
            found.extend(self.session.find_objects(&template)?);
        }
        let selector = uri.to_string();
        match found.len() {
            0 => Err(Error::NoKey(selector)),
            1 => {
                self.found_a_key.set(true);
                self.describe(found[0])
            }
            count => {
                let mut keys = found
                    .iter()
                    .map(|h| self.describe(*h))
                    .collect::<Result<Vec<_>, Error>>()?;
                keys.sort_by(|a, b| (&a.label, &a.id).cmp(&(&b.label, &b.id)));
                let candidates: Vec<String> = keys.iter().map(KeyInfo::describe).collect();
                Err(Error::AmbiguousKey {
                    selector,
                    count,
                    candidates: candidates.join(", "),
                })
            }
        }
    }

    pub(super) fn describe(&self, handle: ObjectHandle) -> Result<KeyInfo, Error> {
        let attrs = self.session.get_attributes(
            handle,
            &[
                AttributeType::Class,
                AttributeType::KeyType,
                AttributeType::Label,
                AttributeType::Id,
                AttributeType::Extractable,
                AttributeType::Sensitive,
            ],
        )?;
        let (mut class, mut key_type, mut label, mut id, mut extractable, mut sensitive) =
            (None, None, String::new(), Vec::new(), false, false);
        for a in attrs {
            match a {
                Attribute::Class(c) => class = Some(c),
                Attribute::KeyType(k) => key_type = Some(k),
                Attribute::Label(l) => label = String::from_utf8_lossy(&l).into_owned(),
                Attribute::Id(i) => id = i,
                Attribute::Extractable(e) => extractable = e,
                Attribute::Sensitive(s) => sensitive = s,
                _ => {}
            }
        }
        let class = match class {
            Some(ObjectClass::PRIVATE_KEY) => KeyClass::Private,
            _ => KeyClass::Secret,
        };
        let key_type = key_type.unwrap_or(KeyType::GENERIC_SECRET);
        let (kind, public) = self.kind_of(handle, key_type, &id)?;
        Ok(KeyInfo {
            handle,
            label,
            id,
            class,
            kind,
            extractable,
            sensitive,
            public,
        })
    }

    fn kind_of(
        &self,
        handle: ObjectHandle,
        key_type: KeyType,
        id: &[u8],
    ) -> Result<(KeyKindInfo, Option<TargetPublicKey>), Error> {
        if key_type == KeyType::RSA {
            let attrs = self
                .session
                .get_attributes(handle, &[AttributeType::Modulus, AttributeType::PublicExponent])?;
            let (mut n, mut e) = (Vec::new(), Vec::new());
            for a in attrs {
                match a {
                    Attribute::Modulus(m) => n = m,
                    Attribute::PublicExponent(x) => e = x,
                    _ => {}
                }
            }
            let n = strip(&n).to_vec();
            let bits = n.first().map_or(0, |t| n.len() * 8 - t.leading_zeros() as usize);
            let public = |n: &[u8], e: &[u8]| {
                TargetPublicKey::from_rsa_components(n, e).map_err(|err| Error::Encoding(err.to_string()))
            };
            return Ok(match RsaSize::from_bits(bits) {
                Some(size) => (
                    KeyKindInfo::Supported(KeyKind::Rsa(size)),
                    (!e.is_empty()).then(|| public(&n, &e)).transpose()?,
                ),
                None => (KeyKindInfo::Unsupported(format!("RSA-{bits}")), None),
            });
        }
        if key_type == KeyType::EC {
            let attrs = self.session.get_attributes(handle, &[AttributeType::EcParams])?;
            let params = attrs.into_iter().find_map(|a| match a {
                Attribute::EcParams(p) => Some(p),
                _ => None,
            });
            let Some(params) = params else {
                return Ok((KeyKindInfo::Unsupported("EC without CKA_EC_PARAMS".into()), None));
            };
            return Ok(match Curve::from_ec_params_der(&params) {
                Ok(curve) => (KeyKindInfo::Supported(KeyKind::Ec(curve)), self.ec_point(curve, id)?),
                Err(byok_encoding::Error::UnsupportedCurve { curve }) => {
                    (KeyKindInfo::Unsupported(format!("EC {curve}")), None)
                }
                Err(e) => (
                    KeyKindInfo::Unsupported(format!("EC with unusable parameters ({e})")),
                    None,
                ),
            });
        }
        if key_type == KeyType::AES {
            let attrs = self.session.get_attributes(handle, &[AttributeType::ValueLen])?;
            let len = attrs.into_iter().find_map(|a| match a {
                Attribute::ValueLen(l) => Some(u64::from(l) as usize).filter(|&n| n > 0),
                _ => None,
            });
            return Ok(match len.and_then(AesSize::from_bytes) {
                Some(size) => (KeyKindInfo::Supported(KeyKind::Aes(size)), None),
                None => (
                    KeyKindInfo::Unsupported(format!("AES of {} bytes", len.unwrap_or(0))),
                    None,
                ),
            });
        }
        Ok((KeyKindInfo::Unsupported(key_type_name(key_type)), None))
    }

    /// The EC point of the public key object with the same CKA_ID (private objects do not carry CKA_EC_POINT).
    fn ec_point(&self, curve: Curve, id: &[u8]) -> Result<Option<TargetPublicKey>, Error> {
        let found = self.session.find_objects(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::EC),
            Attribute::Id(id.to_vec()),
        ])?;
        let Some(public) = found.first() else {
            return Ok(None);
        };
        let attrs = self.session.get_attributes(*public, &[AttributeType::EcPoint])?;
        let Some(raw) = attrs.into_iter().find_map(|a| match a {
            Attribute::EcPoint(p) => Some(p),
            _ => None,
        }) else {
            return Ok(None);
        };
        let point_len = 1 + 2 * curve.scalar_len();
        // PKCS#11 says CKA_EC_POINT is a DER OCTET STRING; some tokens return the bare point.
        let point = if raw.len() == point_len && raw[0] == 0x04 {
            raw
        } else {
            use der::Decode as _;
            der::asn1::OctetString::from_der(&raw)
                .map(|o| o.into_bytes().into_vec())
                .map_err(|e| Error::Encoding(format!("CKA_EC_POINT is neither a point nor a DER OCTET STRING ({e})")))?
        };
        if point.len() != point_len || point[0] != 0x04 {
            return Err(Error::Encoding(format!(
                "CKA_EC_POINT is not an uncompressed {curve} point"
            )));
        }
        TargetPublicKey::from_ec_point(curve, &point)
            .map(Some)
            .map_err(|e| Error::Encoding(format!("CKA_EC_POINT: {e}")))
    }
}

fn strip(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn key_type_name(k: KeyType) -> String {
    let known = [
        (KeyType::DES3, "DES3"),
        (KeyType::DES, "DES"),
        (KeyType::DSA, "DSA"),
        (KeyType::DH, "DH"),
        (KeyType::GENERIC_SECRET, "a generic secret"),
        (KeyType::EC_EDWARDS, "EdDSA"),
        (KeyType::EC_MONTGOMERY, "X25519/X448"),
    ];
    known
        .iter()
        .find(|(t, _)| *t == k)
        .map_or_else(|| format!("key type {k}"), |(_, n)| (*n).to_owned())
}
