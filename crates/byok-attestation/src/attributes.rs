//! The attested attributes of a key object, typed (PKCS#11 attribute types; Marvell vendor ones kept by number).

use serde::Serialize;

/// CKO_PUBLIC_KEY, CKO_PRIVATE_KEY, CKO_SECRET_KEY.
const CLASSES: [(u64, &str); 3] = [(2, "public-key"), (3, "private-key"), (4, "secret-key")];
/// CKK_RSA, CKK_EC, CKK_AES.
const KEY_TYPES: [(u64, &str); 3] = [(0, "RSA"), (3, "EC"), (0x1f, "AES")];

/// What a blob says about one key object. `None`: the blob does not say.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Attributes {
    /// CKA_CLASS: `public-key`, `private-key`, `secret-key`, or the number.
    pub class: Option<String>,
    /// CKA_KEY_TYPE: `RSA`, `EC`, `AES`, or the number.
    pub key_type: Option<String>,
    /// CKA_ID as text: the key's `/keys/{name}/{version}` in a Managed HSM.
    pub id: Option<String>,
    /// CKA_LABEL as text.
    pub label: Option<String>,
    /// CKA_MODULUS, big-endian.
    #[serde(serialize_with = "hex_opt")]
    pub modulus: Option<Vec<u8>>,
    /// CKA_MODULUS_BITS.
    pub modulus_bits: Option<u64>,
    /// CKA_PUBLIC_EXPONENT, big-endian.
    #[serde(serialize_with = "hex_opt")]
    pub public_exponent: Option<Vec<u8>>,
    /// CKA_EC_PARAMS (DER).
    #[serde(serialize_with = "hex_opt")]
    pub ec_params: Option<Vec<u8>>,
    /// CKA_EC_POINT (DER OCTET STRING of the uncompressed point, or the point).
    #[serde(serialize_with = "hex_opt")]
    pub ec_point: Option<Vec<u8>>,
    /// CKA_VALUE_LEN.
    pub value_len: Option<u64>,
    /// CKA_KEY_GEN_MECHANISM.
    pub key_gen_mechanism: Option<u64>,
    /// CKA_TOKEN.
    pub token: Option<bool>,
    /// CKA_SENSITIVE.
    pub sensitive: Option<bool>,
    /// CKA_EXTRACTABLE.
    pub extractable: Option<bool>,
    /// CKA_LOCAL: generated inside the HSM (false for an imported key).
    pub local: Option<bool>,
    /// CKA_NEVER_EXTRACTABLE.
    pub never_extractable: Option<bool>,
    /// CKA_ALWAYS_SENSITIVE.
    pub always_sensitive: Option<bool>,
    /// CKA_ENCRYPT, CKA_DECRYPT, CKA_WRAP, CKA_UNWRAP, CKA_SIGN, CKA_VERIFY, CKA_DERIVE: the operations allowed.
    pub operations: Vec<&'static str>,
    /// How many attributes the blob holds in all (vendor ones included).
    pub count: usize,
}

fn hex_opt<S: serde::Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(b) => s.serialize_str(&hex::encode(b)),
        None => s.serialize_none(),
    }
}

const OPERATIONS: [(u32, &str); 7] = [
    (0x104, "encrypt"),
    (0x105, "decrypt"),
    (0x106, "wrap"),
    (0x107, "unwrap"),
    (0x108, "sign"),
    (0x10a, "verify"),
    (0x10c, "derive"),
];

impl Attributes {
    /// Takes one TLV; a type seen twice is refused (two answers to one question).
    pub(crate) fn set(&mut self, kind: u32, value: &[u8]) -> Result<(), String> {
        self.count += 1;
        match kind {
            0x000 => put(&mut self.class, named(number(value)?, &CLASSES), kind),
            0x100 => put(&mut self.key_type, named(number(value)?, &KEY_TYPES), kind),
            0x102 => put(&mut self.id, text(value)?, kind),
            0x003 => put(&mut self.label, text(value)?, kind),
            0x120 => put(&mut self.modulus, value.to_vec(), kind),
            0x121 => put(&mut self.modulus_bits, number(value)?, kind),
            0x122 => put(&mut self.public_exponent, value.to_vec(), kind),
            0x180 => put(&mut self.ec_params, value.to_vec(), kind),
            0x181 => put(&mut self.ec_point, value.to_vec(), kind),
            0x161 => put(&mut self.value_len, number(value)?, kind),
            0x166 => put(&mut self.key_gen_mechanism, number(value)?, kind),
            0x001 => put(&mut self.token, flag(value)?, kind),
            0x103 => put(&mut self.sensitive, flag(value)?, kind),
            0x162 => put(&mut self.extractable, flag(value)?, kind),
            0x163 => put(&mut self.local, flag(value)?, kind),
            0x164 => put(&mut self.never_extractable, flag(value)?, kind),
            0x165 => put(&mut self.always_sensitive, flag(value)?, kind),
            _ => match OPERATIONS.iter().find(|(k, _)| *k == kind) {
                Some((_, name)) if flag(value)? => {
                    self.operations.push(name);
                    Ok(())
                }
                _ => Ok(()),
            },
        }
    }
}

fn put<T>(slot: &mut Option<T>, value: T, kind: u32) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("attribute {kind:#x} appears twice"));
    }
    *slot = Some(value);
    Ok(())
}

fn number(value: &[u8]) -> Result<u64, String> {
    if value.is_empty() || value.len() > 8 {
        return Err(format!("a number of {} bytes", value.len()));
    }
    Ok(value.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)))
}

fn flag(value: &[u8]) -> Result<bool, String> {
    match value {
        [0] => Ok(false),
        [1] => Ok(true),
        other => Err(format!("a boolean of {} bytes: {}", other.len(), hex::encode(other))),
    }
}

/// Zero-padded text: what comes before the padding, which must be all zeros.
fn text(value: &[u8]) -> Result<String, String> {
    let end = value.iter().position(|b| *b == 0).unwrap_or(value.len());
    if value[end..].iter().any(|b| *b != 0) {
        return Err("text with bytes after its terminating zero".into());
    }
    String::from_utf8(value[..end].to_vec()).map_err(|_| "text that is not UTF-8".into())
}

fn named(n: u64, names: &[(u64, &str)]) -> String {
    names
        .iter()
        .find(|(k, _)| *k == n)
        .map_or_else(|| format!("{n:#x}"), |(_, name)| (*name).to_owned())
}
