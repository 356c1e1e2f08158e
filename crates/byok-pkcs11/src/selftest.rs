//! The conformance self-test: before a real key is touched, each wrap path wraps known test secrets to a
//! throwaway KEK, and byok-wrap opens the result in software. A mechanism's *name* proves nothing (0x210A is
//! RFC 5649 on SoftHSM but PKCS#7 + RFC 3394 on NSS and openCryptoki; SoftHSM 2.6.1 zero-pads before wrapping).

use std::fmt;

use byok_encoding::RsaSize;
use byok_wrap::KekPrivateKey;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};

use crate::raw::RawMechanism;
use crate::session::{Temporary, TokenSession};
use crate::{Error, WrapPath};

/// A throwaway RSA-2048 key used only to test wrap paths with test secrets. It protects nothing.
const SELF_TEST_KEK: &[u8] = include_bytes!("selftest-kek.pkcs8.der");

/// What the self-test found for one path.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// The path produces exactly what Azure expects.
    Conformant,
    /// Correct only for plaintexts whose length is a multiple of 8 (AES keys, not PKCS#8).
    AlignedOnly(String),
    /// The path runs but produces something Azure will not accept.
    Failed(String),
    /// The token does not offer the path's mechanisms.
    Unsupported(String),
    /// The token would not let byok make test secrets, so the path could not be tested.
    Untested(String),
}

impl Verdict {
    /// `conformant`, `aligned-only`, `failed`, `unsupported` or `untested`: the verdict's stable name in JSON.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Conformant => "conformant",
            Self::AlignedOnly(_) => "aligned-only",
            Self::Failed(_) => "failed",
            Self::Unsupported(_) => "unsupported",
            Self::Untested(_) => "untested",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Conformant => f.write_str("conformant"),
            Self::AlignedOnly(r) => write!(f, "conformant only for keys whose length is a multiple of 8: {r}"),
            Self::Failed(r) => write!(f, "non-conformant: {r}"),
            Self::Unsupported(r) => write!(f, "not offered: {r}"),
            Self::Untested(r) => write!(f, "not tested: {r}"),
        }
    }
}

impl serde::Serialize for PathReport {
    /// `{"path": name, "verdict": name, "detail": sentence}`, as `hsm info --output json` shows it.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("PathReport", 3)?;
        st.serialize_field("path", self.path.name())?;
        st.serialize_field("verdict", self.verdict.name())?;
        st.serialize_field("detail", &self.verdict.to_string())?;
        st.end()
    }
}

impl serde::Serialize for SelfTestReport {
    /// `{"paths": [...], "auto": name or null}`: every path in `auto`'s order, and the one `auto` takes.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("SelfTestReport", 2)?;
        st.serialize_field("paths", &self.paths)?;
        st.serialize_field("auto", &self.best().map(WrapPath::name))?;
        st.end()
    }
}

/// One path's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathReport {
    /// The path.
    pub path: WrapPath,
    /// What the self-test found.
    pub verdict: Verdict,
}

/// The self-test of every path on one token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelfTestReport {
    /// One entry per path, in `auto`'s order.
    pub paths: Vec<PathReport>,
}

impl SelfTestReport {
    /// The report for one path.
    pub fn path(&self, path: WrapPath) -> &PathReport {
        self.paths
            .iter()
            .find(|p| p.path == path)
            .expect("every path is reported")
    }

    /// The first conformant path.
    pub fn best(&self) -> Option<WrapPath> {
        self.paths
            .iter()
            .find(|p| p.verdict == Verdict::Conformant)
            .map(|p| p.path)
    }

    /// What `auto` does on this token, in one sentence.
    pub fn auto_choice(&self) -> String {
        let usable = self
            .paths
            .iter()
            .find(|p| matches!(p.verdict, Verdict::Conformant | Verdict::AlignedOnly(_)));
        match usable {
            Some(p) if p.verdict == Verdict::Conformant => format!("auto uses {}", p.path.name()),
            Some(p) => format!(
                "auto uses {} for AES keys only; RSA and EC keys are refused",
                p.path.name()
            ),
            None => "auto refuses to wrap: no path is conformant".to_owned(),
        }
    }

    /// One line per path.
    pub fn summary(&self) -> String {
        self.paths
            .iter()
            .map(|p| format!("  {}: {}", p.path, p.verdict))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

const PADS_TO_EIGHT: &str = "the token pads the key with zero bytes to a multiple of 8 before wrapping \
    (SoftHSM 2.6.1 and older are known to do this), so an unwrapped PKCS#8 key carries trailing zeros that \
    Key Vault may reject";
const NOT_RFC5649: &str = "the AES part is not RFC 5649 key wrap with padding (this is likely PKCS#7 padding + \
    RFC 3394, which is what PKCS#11 3.0 defines for CKM_AES_KEY_WRAP_PAD)";

enum Outcome {
    Exact,
    PadsToEight,
    Wrong(String),
}

fn secret(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 37 + 11) as u8).collect()
}

pub(crate) fn run(ts: &TokenSession<'_>) -> Result<SelfTestReport, Error> {
    let kek = KekPrivateKey::from_pkcs8_der(SELF_TEST_KEK).map_err(|e| Error::Encoding(e.to_string()))?;
    let objects = match (make_secret(ts, &secret(67)), make_secret(ts, &secret(64))) {
        (Ok(a), Ok(b)) => Some((a, b)),
        (Err(e), _) | (_, Err(e)) => {
            let reason = format!("the token refused to create test secrets ({e})");
            return Ok(SelfTestReport {
                paths: WrapPath::ALL
                    .into_iter()
                    .map(|path| PathReport {
                        path,
                        verdict: Verdict::Untested(reason.clone()),
                    })
                    .collect(),
            });
        }
    };
    let ((obj_unaligned, unaligned), (obj_aligned, aligned)) = objects.expect("both made");
    let mut paths = Vec::new();
    for path in WrapPath::ALL {
        let verdict = match missing_mechanism(ts, path)? {
            Some(missing) => Verdict::Unsupported(format!("the token does not offer {missing}")),
            None => {
                let a = attempt(ts, path, &obj_unaligned, &unaligned, &kek);
                let b = attempt(ts, path, &obj_aligned, &aligned, &kek);
                match (a, b) {
                    (Err(e), _) | (_, Err(e)) if e.ckr() == Some(crate::Ckr::MechanismInvalid) => {
                        Verdict::Unsupported(format!("the token refuses it ({e})"))
                    }
                    (Err(e), _) | (_, Err(e)) => Verdict::Failed(format!("wrapping a test secret failed: {e}")),
                    (Ok(Outcome::Exact), Ok(Outcome::Exact)) => Verdict::Conformant,
                    (Ok(Outcome::PadsToEight), Ok(Outcome::Exact)) => Verdict::AlignedOnly(PADS_TO_EIGHT.into()),
                    (Ok(Outcome::Wrong(r)), _) | (_, Ok(Outcome::Wrong(r))) => Verdict::Failed(r),
                    (Ok(_), Ok(_)) => Verdict::Failed(PADS_TO_EIGHT.into()),
                }
            }
        };
        paths.push(PathReport { path, verdict });
    }
    Ok(SelfTestReport { paths })
}

fn missing_mechanism(ts: &TokenSession<'_>, path: WrapPath) -> Result<Option<&'static str>, Error> {
    let needs: &[(RawMechanism, &str)] = match path {
        WrapPath::OneShot => &[(RawMechanism::RsaAesKeyWrap, "CKM_RSA_AES_KEY_WRAP")],
        two_step => &[
            (aes_mechanism(two_step), two_step.mechanisms()),
            (RawMechanism::RsaOaepSha1, "CKM_RSA_PKCS_OAEP"),
        ],
    };
    for (m, name) in needs {
        if !ts.offers(*m)? {
            return Ok(Some(name.split(" + ").next().unwrap_or(name)));
        }
    }
    Ok(None)
}

/// The AES key-wrap mechanism of a two-step path.
pub(crate) fn aes_mechanism(path: WrapPath) -> RawMechanism {
    match path {
        WrapPath::TwoStepKwp => RawMechanism::AesKeyWrapKwp,
        WrapPath::TwoStepLunaKwp => RawMechanism::LunaAesKwp,
        WrapPath::TwoStepCloudHsmKwp => RawMechanism::CloudHsmAesKwp,
        WrapPath::TwoStepNssPad => RawMechanism::NssAesKeyWrapPad,
        // The one-shot path has no AES step; 0x210A is the remaining one.
        WrapPath::OneShot | WrapPath::TwoStepPad => RawMechanism::AesKeyWrapPad,
    }
}

fn attempt(
    ts: &TokenSession<'_>,
    path: WrapPath,
    object: &Temporary<'_>,
    secret: &[u8],
    kek: &KekPrivateKey,
) -> Result<Outcome, Error> {
    // The throwaway KEK is never a token object: no lookup for one.
    let ct = ts.wrap_with(path, object.handle, kek.public_key(), false)?;
    Ok(classify(kek, &ct, secret))
}

fn classify(kek: &KekPrivateKey, ct: &[u8], secret: &[u8]) -> Outcome {
    let parts = match byok_wrap::split(ct, RsaSize::Rsa2048) {
        Ok(p) => p,
        Err(e) => return Outcome::Wrong(format!("its output cannot be split: {e}")),
    };
    let Ok(aes) = kek.decrypt_aes_key(parts.rsa) else {
        return Outcome::Wrong("the RSA part is not RSA-OAEP (SHA-1, MGF1-SHA-1, empty label) of an AES key".into());
    };
    match byok_wrap::kwp_unwrap(&aes, parts.kwp) {
        Err(_) => Outcome::Wrong(NOT_RFC5649.into()),
        Ok(pt) if *pt == *secret => Outcome::Exact,
        Ok(pt) if pt.len() > secret.len() && pt.starts_with(secret) && pt[secret.len()..].iter().all(|&b| b == 0) => {
            Outcome::PadsToEight
        }
        Ok(_) => Outcome::Wrong("it unwraps to other bytes than were wrapped".into()),
    }
}

/// A test secret as a session object, with its value: created with a known value, or (for tokens that refuse
/// that) generated non-sensitive and read back. Test secrets only; targets and ephemeral keys are never read.
fn make_secret<'s>(ts: &'s TokenSession<'_>, value: &[u8]) -> Result<(Temporary<'s>, Vec<u8>), Error> {
    let session = ts.session();
    let created = session.create_object(&[
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Token(false),
        Attribute::Value(value.to_vec()),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
        Attribute::Label(b"byok-selftest".to_vec()),
    ]);
    if let Ok(handle) = created {
        return Ok((Temporary::new(session, handle), value.to_vec()));
    }
    let generated = Temporary::new(
        session,
        session.generate_key(
            &Mechanism::GenericSecretKeyGen,
            &[
                Attribute::Token(false),
                Attribute::ValueLen((value.len() as u64).into()),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
                Attribute::Label(b"byok-selftest".to_vec()),
            ],
        )?,
    );
    let read = session
        .get_attributes(generated.handle, &[AttributeType::Value])?
        .into_iter()
        .find_map(|a| match a {
            Attribute::Value(v) => Some(v),
            _ => None,
        })
        .filter(|v| v.len() == value.len())
        .ok_or_else(|| Error::Encoding("the generated test secret's value cannot be read".into()))?;
    Ok((generated, read))
}
