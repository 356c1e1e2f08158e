//! RFC 7512 `pkcs11:` URIs naming a token and a key.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::Error;

/// The object class named by `type=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ObjectType {
    /// `type=private`.
    Private,
    /// `type=secret-key`.
    SecretKey,
    /// `type=public`.
    Public,
}

/// A parsed `pkcs11:` URI (RFC 7512). Only the attributes byok uses are kept; a `pin-value` is recorded as present
/// but never stored, so that callers can refuse it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// `token=`: the token label.
    pub token: Option<String>,
    /// `manufacturer=`: the token manufacturer.
    pub manufacturer: Option<String>,
    /// `model=`: the token model.
    pub model: Option<String>,
    /// `serial=`: the token serial number.
    pub serial: Option<String>,
    /// `object=`: the key label.
    pub object: Option<String>,
    /// `id=`: the key's CKA_ID bytes.
    pub id: Option<Vec<u8>>,
    /// `type=`.
    pub object_type: Option<ObjectType>,
    /// `pin-source=` (a `file:` URI or a path).
    pub pin_source: Option<String>,
    /// Whether the URI carried a `pin-value`; its value is dropped on parsing.
    pub has_pin_value: bool,
    /// `module-path=`.
    pub module_path: Option<PathBuf>,
    /// `module-name=`: a module registered with p11-kit, by its registered name ([`crate::P11Kit`]).
    pub module_name: Option<String>,
}

const PATH_ATTRS: [&str; 13] = [
    "token",
    "manufacturer",
    "serial",
    "model",
    "object",
    "type",
    "id",
    "library-manufacturer",
    "library-description",
    "library-version",
    "slot-manufacturer",
    "slot-description",
    "slot-id",
];
const QUERY_ATTRS: [&str; 4] = ["pin-source", "pin-value", "module-name", "module-path"];

/// Strict percent-decoding: every `%` must start a two-digit hex escape.
fn decode(value: &str, attr: &str) -> Result<Vec<u8>, Error> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .ok_or_else(|| {
                    Error::Uri(format!(
                        "`{attr}` has a bad percent escape at `{}`",
                        // Characters, not bytes: a multi-byte character may follow the `%` (found by fuzzing).
                        value[i..].chars().take(3).collect::<String>()
                    ))
                })?;
            let text = std::str::from_utf8(hex).map_err(|_| Error::Uri("bad escape".into()))?;
            out.push(u8::from_str_radix(text, 16).map_err(|_| Error::Uri("bad escape".into()))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn text(value: &str, attr: &str) -> Result<String, Error> {
    String::from_utf8(decode(value, attr)?).map_err(|_| Error::Uri(format!("`{attr}` is not UTF-8 text")))
}

impl Pkcs11Uri {
    /// The file `pin-source=` names (`file:///run/pin`, `file:/run/pin` or a plain path).
    pub fn pin_file(&self) -> Option<PathBuf> {
        let source = self.pin_source.as_deref()?;
        let path = source
            .strip_prefix("file://")
            .or_else(|| source.strip_prefix("file:"))
            .unwrap_or(source);
        Some(PathBuf::from(path))
    }
}

impl FromStr for Pkcs11Uri {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let rest = s
            .strip_prefix("pkcs11:")
            .ok_or_else(|| Error::Uri("it must start with `pkcs11:`".into()))?;
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut uri = Self::default();
        let mut seen: Vec<String> = Vec::new();
        let parts = path.split(';').filter(|p| !p.is_empty()).map(|p| (p, ';')).chain(
            query
                .into_iter()
                .flat_map(|q| q.split('&'))
                .filter(|p| !p.is_empty())
                .map(|p| (p, '&')),
        );
        for (part, sep) in parts {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| Error::Uri(format!("`{part}` is not name=value")))?;
            let known = if sep == ';' { &PATH_ATTRS[..] } else { &QUERY_ATTRS[..] };
            if !known.contains(&name) {
                if name.starts_with("x-") {
                    continue; // vendor-specific, ignored as RFC 7512 allows
                }
                let place = if sep == ';' { "path" } else { "query" };
                return Err(Error::Uri(format!("unknown {place} attribute `{name}`")));
            }
            if seen.iter().any(|s| s == name) {
                return Err(Error::Uri(format!("`{name}` appears twice")));
            }
            seen.push(name.to_owned());
            match name {
                "token" => uri.token = Some(text(value, name)?),
                "manufacturer" => uri.manufacturer = Some(text(value, name)?),
                "model" => uri.model = Some(text(value, name)?),
                "serial" => uri.serial = Some(text(value, name)?),
                "object" => uri.object = Some(text(value, name)?),
                "id" => uri.id = Some(decode(value, name)?),
                "type" => {
                    uri.object_type = Some(match value {
                        "private" => ObjectType::Private,
                        "secret-key" => ObjectType::SecretKey,
                        "public" => ObjectType::Public,
                        other => {
                            return Err(Error::Uri(format!(
                                "type `{other}` is not a key type byok can wrap (private or secret-key)"
                            )));
                        }
                    })
                }
                "pin-source" => uri.pin_source = Some(text(value, name)?),
                "pin-value" => uri.has_pin_value = true,
                "module-path" => uri.module_path = Some(PathBuf::from(text(value, name)?)),
                "module-name" => uri.module_name = Some(text(value, name)?),
                _ => {} // known attributes byok does not use
            }
        }
        Ok(uri)
    }
}

impl fmt::Display for Pkcs11Uri {
    /// The URI, percent-encoded as RFC 7512 requires, so that a message shows one that can be pasted back; never
    /// a `pin-value` (it was never kept).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let enc = |s: &str| percent_encoding::utf8_percent_encode(s, VALUE).to_string();
        let mut path = Vec::new();
        for (name, value) in [
            ("token", &self.token),
            ("manufacturer", &self.manufacturer),
            ("model", &self.model),
            ("serial", &self.serial),
            ("object", &self.object),
        ] {
            if let Some(v) = value {
                path.push(format!("{name}={}", enc(v)));
            }
        }
        if let Some(id) = &self.id {
            let hex: String = id.iter().map(|b| format!("%{b:02X}")).collect();
            path.push(format!("id={hex}"));
        }
        match self.object_type {
            Some(ObjectType::Private) => path.push("type=private".into()),
            Some(ObjectType::SecretKey) => path.push("type=secret-key".into()),
            Some(ObjectType::Public) => path.push("type=public".into()),
            None => {}
        }
        let query_enc = |s: &str| percent_encoding::utf8_percent_encode(s, QUERY_VALUE).to_string();
        let mut query = Vec::new();
        if let Some(p) = &self.pin_source {
            query.push(format!("pin-source={}", query_enc(p)));
        }
        if let Some(m) = &self.module_path {
            query.push(format!("module-path={}", query_enc(&m.to_string_lossy())));
        }
        if let Some(m) = &self.module_name {
            query.push(format!("module-name={}", query_enc(m)));
        }
        write!(f, "pkcs11:{}", path.join(";"))?;
        if !query.is_empty() {
            write!(f, "?{}", query.join("&"))?;
        }
        Ok(())
    }
}

/// Characters RFC 7512 lets stand unescaped in a path attribute value (unreserved, plus a few sub-delims).
const VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':')
    .remove(b'[')
    .remove(b']')
    .remove(b'@')
    .remove(b'!')
    .remove(b'$')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b'=');

/// Query attribute values may also hold `/` and `?` unescaped (a path, a `file:` URI); `&` and `%` stay escaped.
const QUERY_VALUE: &percent_encoding::AsciiSet = &VALUE.remove(b'/').remove(b'?');

/// The URI of a key, percent-encoded as RFC 7512 requires: `pkcs11:token=…;object=…;id=%..`.
pub fn key_uri(token: &str, object: &str, id: &[u8]) -> String {
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, VALUE).to_string();
    let id: String = id.iter().map(|b| format!("%{b:02X}")).collect();
    let mut uri = format!("pkcs11:token={};object={}", enc(token), enc(object));
    if !id.is_empty() {
        uri.push_str(";id=");
        uri.push_str(&id);
    }
    uri
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        let u: Pkcs11Uri = "pkcs11:token=byok-src;object=app%20key;type=private;id=%01%ff?pin-source=file:/run/pin"
            .parse()
            .expect("valid");
        assert_eq!(u.token.as_deref(), Some("byok-src"));
        assert_eq!(u.object.as_deref(), Some("app key"));
        assert_eq!(u.id, Some(vec![0x01, 0xff]));
        assert_eq!(u.object_type, Some(ObjectType::Private));
        assert_eq!(u.pin_source.as_deref(), Some("file:/run/pin"));
        assert_eq!(u.pin_file(), Some(PathBuf::from("/run/pin")));
        assert!(!u.has_pin_value);
        let m: Pkcs11Uri = "pkcs11:serial=42;x-vendor=1?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234"
            .parse()
            .expect("valid");
        assert_eq!(m.serial.as_deref(), Some("42"));
        assert!(m.has_pin_value);
        assert_eq!(m.module_path, Some(PathBuf::from("/usr/lib/softhsm/libsofthsm2.so")));
        assert_eq!(
            u.to_string(),
            "pkcs11:token=byok-src;object=app%20key;id=%01%FF;type=private?pin-source=file:/run/pin"
        );
    }

    #[test]
    fn key_uris_round_trip() {
        let uri = key_uri("NSS Certificate DB", "app;key=1", &[0x0a, 0xff]);
        assert_eq!(uri, "pkcs11:token=NSS%20Certificate%20DB;object=app%3Bkey=1;id=%0A%FF");
        let parsed: Pkcs11Uri = uri.parse().expect("parses back");
        assert_eq!(parsed.token.as_deref(), Some("NSS Certificate DB"));
        assert_eq!(parsed.object.as_deref(), Some("app;key=1"));
        assert_eq!(parsed.id, Some(vec![0x0a, 0xff]));
    }

    /// Found by the `pkcs11_uri` fuzz target (fuzz/regressions/pkcs11_uri): printing dropped model and manufacturer
    /// and did not escape values, so a printed URI named another token.
    #[test]
    fn printed_uris_parse_back_to_the_same() {
        for text in [
            "pkcs11:model=SoftHSM%20v2;manufacturer=SoftHSM%20project;token=t",
            "pkcs11:token=a%3Bb%3Fc;object=x%25y;serial=1?module-path=/usr/lib/x%26y.so&pin-source=file:/p?q",
            "pkcs11:",
        ] {
            let uri: Pkcs11Uri = text.parse().expect("valid");
            let again: Pkcs11Uri = uri.to_string().parse().expect("printed URIs parse");
            assert_eq!(again, uri, "{text} → {uri}");
        }
        let with_pin: Pkcs11Uri = "pkcs11:token=t?pin-value=1234".parse().expect("valid");
        assert_eq!(with_pin.to_string(), "pkcs11:token=t");
    }

    #[test]
    fn refuses_with_reasons() {
        let err = |s: &str| match s.parse::<Pkcs11Uri>() {
            Err(Error::Uri(r)) => r,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(err("token=x"), "it must start with `pkcs11:`");
        assert_eq!(err("pkcs11:object=a%2"), "`object` has a bad percent escape at `%2`");
        // fuzz/regressions/pkcs11_uri/escape-before-multibyte-char: this used to panic slicing inside `ō`.
        assert_eq!(
            err("pkcs11:model=x%2\u{14d}aS"),
            "`model` has a bad percent escape at `%2\u{14d}`"
        );
        assert_eq!(err("pkcs11:object=a%zz"), "`object` has a bad percent escape at `%zz`");
        assert_eq!(err("pkcs11:colour=red"), "unknown path attribute `colour`");
        assert_eq!(err("pkcs11:object=a;object=b"), "`object` appears twice");
        assert_eq!(err("pkcs11:token"), "`token` is not name=value");
        assert_eq!(
            err("pkcs11:type=cert"),
            "type `cert` is not a key type byok can wrap (private or secret-key)"
        );
        assert_eq!(err("pkcs11:?pin=1"), "unknown query attribute `pin`");
    }
}
