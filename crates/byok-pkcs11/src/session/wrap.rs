//! Wrapping inside the token: the self-test decides the path, the KEK becomes a session object once per
//! session, and what the token produced is checked before it leaves.

use byok_encoding::{KekPublicKey, KeyKind};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};

use crate::raw::{RawError, RawMechanism};
use crate::selftest::{self, SelfTestReport, Verdict};
use crate::vendor::{self, WrapContext};
use crate::{Error, WrapPath};

use super::{KeyInfo, KeyKindInfo, Temporary, TokenSession};

/// Which wrap path to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WrapChoice {
    /// The first path that passes the self-test: one-shot, then 0x210B, then 0x210A.
    #[default]
    Auto,
    /// This path.
    Path(WrapPath),
}

/// How to wrap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WrapOptions {
    /// The path.
    pub choice: WrapChoice,
    /// Proceed with a path the self-test found non-conformant (the vault may reject the blob).
    pub allow_nonconformant: bool,
}

/// The result of wrapping a key in the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wrapped {
    /// `rsa_part || kwp_part`.
    pub ciphertext: Vec<u8>,
    /// The path used.
    pub path: WrapPath,
    /// Why the path is not known to be conformant for this key, when `allow_nonconformant` let it through.
    pub nonconformant: Option<String>,
}

impl TokenSession<'_> {
    /// The conformance self-test of every path, run once per session and cached.
    pub fn self_test(&mut self) -> Result<&SelfTestReport, Error> {
        if self.self_test.is_none() {
            self.self_test = Some(selftest::run(self)?);
        }
        Ok(self.self_test.as_ref().expect("just set"))
    }

    /// Whether a key of `kind` can be wrapped by this token with `options` (the self-test, once per session): the
    /// error [`TokenSession::wrap`] would give, found before anything is written anywhere.
    pub fn check_wrappable(&mut self, kind: KeyKind, options: WrapOptions) -> Result<(), Error> {
        self.path_for(kind, options).map(|_| ())
    }

    /// The path for a key of `kind` (the self-test decides, once per session), and why it is not known to be
    /// conformant when `allow_nonconformant` let it through — a known defect of this token for `kind` included.
    fn path_for(&mut self, kind: KeyKind, options: WrapOptions) -> Result<(WrapPath, Option<String>), Error> {
        // AES keys are 16, 24 or 32 bytes: 8-aligned. PKCS#8 lengths are unknown without reading the key.
        let aligned = matches!(kind, KeyKind::Aes(_));
        let report = self.self_test()?.clone();
        let (path, nonconformant) = choose_path(&report, options, aligned)?;
        match vendor::known_defect(self.token.vendor, &self.token.firmware, kind) {
            Some(defect) if options.allow_nonconformant => Ok((path, Some(defect.to_owned()))),
            Some(defect) => Err(Error::UnsafeForKey {
                path,
                reason: format!("{defect}; move such keys from another token"),
            }),
            None => Ok((path, nonconformant)),
        }
    }

    /// Wraps `key` to `kek` inside the token. Checks first that the key is of a kind Azure accepts, extractable,
    /// and has a readable public half; runs the self-test (once per session) and picks the path by `options`.
    pub fn wrap(&mut self, key: &KeyInfo, kek: &KekPublicKey, options: WrapOptions) -> Result<Wrapped, Error> {
        let kind = match &key.kind {
            KeyKindInfo::Supported(k) => *k,
            KeyKindInfo::Unsupported(what) => {
                return Err(Error::UnsupportedKey {
                    key: key.describe(),
                    what: what.clone(),
                });
            }
        };
        if !key.extractable {
            return Err(Error::NotExtractable(key.describe()));
        }
        if !matches!(kind, KeyKind::Aes(_)) && key.public.is_none() {
            return Err(Error::NoPublicKey(
                key.describe(),
                "no public key object with the same CKA_ID, so the import cannot be verified".into(),
            ));
        }
        let (path, nonconformant) = self.path_for(kind, options)?;
        let ciphertext = self.wrap_with(path, key.handle, kek, true)?;
        check_output(&ciphertext, kek)?;
        Ok(Wrapped {
            ciphertext,
            path,
            nonconformant,
        })
    }

    /// Performs one path with the (cached) KEK object: one call, or the two steps with an ephemeral AES key that is
    /// destroyed on every path out.
    pub(crate) fn wrap_with(
        &self,
        path: WrapPath,
        target: ObjectHandle,
        kek: &KekPublicKey,
        token_kek: bool,
    ) -> Result<Vec<u8>, Error> {
        let kek_handle = self.kek_object(kek, token_kek)?;
        let raw = &self.module.raw;
        let session = self.session.handle();
        match path {
            WrapPath::OneShot => raw
                .wrap_key(
                    session,
                    RawMechanism::RsaAesKeyWrap,
                    kek_handle.handle(),
                    target.handle(),
                )
                .map_err(|e| self.explained(e, target, kek_handle)),
            two_step => {
                let aes = Temporary::new(
                    &self.session,
                    self.session.generate_key(
                        &Mechanism::AesKeyGen,
                        &[
                            Attribute::Token(false),
                            Attribute::ValueLen(32.into()),
                            Attribute::Sensitive(true),
                            // It must be extractable to be RSA-wrapped; it never leaves the token otherwise.
                            Attribute::Extractable(true),
                            Attribute::Wrap(true),
                            Attribute::Encrypt(false),
                            Attribute::Decrypt(false),
                            Attribute::Label(b"byok-ephemeral".to_vec()),
                        ],
                    )?,
                );
                let kwp_mech = selftest::aes_mechanism(two_step);
                let kwp = raw
                    .wrap_key(session, kwp_mech, aes.handle.handle(), target.handle())
                    .map_err(|e| self.explained(e, target, aes.handle))?;
                let mut out = raw
                    .wrap_key(
                        session,
                        RawMechanism::RsaOaepSha1,
                        kek_handle.handle(),
                        aes.handle.handle(),
                    )
                    .map_err(|e| self.explained(e, aes.handle, kek_handle))?;
                out.extend_from_slice(&kwp);
                Ok(out)
            }
        }
    }
}

impl TokenSession<'_> {
    /// A `C_WrapKey` failure, with what it means on this vendor's HSM when byok knows: the key's and the wrapping
    /// key's attributes tell the vendor's refusals apart (policy, trusted wrapping, ownership).
    fn explained(&self, e: RawError, key: ObjectHandle, wrapping_key: ObjectHandle) -> Error {
        let error = Error::raw(e);
        let Some(code) = error.ckr() else {
            return error;
        };
        let read = |handle, kind| self.session.get_attributes(handle, &[kind]).ok().unwrap_or_default();
        let flag = |handle, kind| {
            read(handle, kind).into_iter().find_map(|a| match a {
                Attribute::WrapWithTrusted(b) | Attribute::Token(b) => Some(b),
                _ => None,
            })
        };
        let context = WrapContext {
            vendor: self.token.vendor,
            private_key: read(key, AttributeType::Class).contains(&Attribute::Class(ObjectClass::PRIVATE_KEY)),
            wrap_with_trusted: flag(key, AttributeType::WrapWithTrusted),
            token_wrapping_key: flag(wrapping_key, AttributeType::Token) == Some(true),
        };
        match vendor::explain_wrap(code, context) {
            Some(advice) => Error::Refused {
                function: "C_WrapKey".into(),
                code,
                vendor: self.token.vendor,
                advice: Box::new(advice),
            },
            None => error,
        }
    }
}

fn choose_path(
    report: &SelfTestReport,
    options: WrapOptions,
    aligned: bool,
) -> Result<(WrapPath, Option<String>), Error> {
    let usable = |v: &Verdict| match v {
        Verdict::Conformant => true,
        Verdict::AlignedOnly(_) => aligned,
        _ => false,
    };
    match options.choice {
        WrapChoice::Auto => {
            if let Some(p) = report.paths.iter().find(|p| usable(&p.verdict)) {
                return Ok((p.path, None));
            }
            if options.allow_nonconformant
                && let Some(p) = report
                    .paths
                    .iter()
                    .find(|p| !matches!(p.verdict, Verdict::Unsupported(_)))
            {
                return Ok((p.path, Some(p.verdict.to_string())));
            }
            Err(Error::Nonconformant(report.summary()))
        }
        WrapChoice::Path(path) => {
            let verdict = &report.path(path).verdict;
            if let Verdict::Unsupported(_) = verdict {
                return Err(Error::PathUnsupported(path));
            }
            if usable(verdict) {
                Ok((path, None))
            } else if options.allow_nonconformant {
                Ok((path, Some(verdict.to_string())))
            } else {
                Err(Error::UnsafeForKey {
                    path,
                    reason: match verdict {
                        Verdict::AlignedOnly(r) => {
                            format!("{r}; this key's plaintext length is not known to be a multiple of 8")
                        }
                        other => other.to_string(),
                    },
                })
            }
        }
    }
}

/// The token's output must split into an RSA part of the KEK's size and a KWP part of whole semiblocks.
fn check_output(ciphertext: &[u8], kek: &KekPublicKey) -> Result<(), Error> {
    byok_wrap::split(ciphertext, kek.size())
        .map(|_| ())
        .map_err(|e| Error::BadOutput {
            what: "wrapped key",
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selftest::PathReport;

    /// A report with these verdicts, every other path not offered.
    fn report(verdicts: &[(WrapPath, Verdict)]) -> SelfTestReport {
        let verdict = |path| {
            verdicts
                .iter()
                .find(|(p, _)| *p == path)
                .map_or_else(|| Verdict::Unsupported("not offered".into()), |(_, v)| v.clone())
        };
        SelfTestReport {
            paths: WrapPath::ALL
                .into_iter()
                .map(|path| PathReport {
                    path,
                    verdict: verdict(path),
                })
                .collect(),
        }
    }

    fn options(choice: WrapChoice, allow_nonconformant: bool) -> WrapOptions {
        WrapOptions {
            choice,
            allow_nonconformant,
        }
    }

    #[test]
    fn the_wrap_path_is_chosen_by_the_self_test() {
        let softhsm = report(&[(WrapPath::TwoStepPad, Verdict::AlignedOnly("pads".into()))]);
        let auto = options(WrapChoice::Auto, false);
        // An aligned-only path serves AES keys, not PKCS#8 ones.
        assert_eq!(choose_path(&softhsm, auto, true), Ok((WrapPath::TwoStepPad, None)));
        assert!(matches!(
            choose_path(&softhsm, auto, false),
            Err(Error::Nonconformant(_))
        ));
        // Overridden, it is used and the reason travels with it.
        let (path, why) = choose_path(&softhsm, options(WrapChoice::Auto, true), false).expect("overridden");
        assert_eq!(path, WrapPath::TwoStepPad);
        assert!(why.is_some_and(|w| w.contains("multiple of 8")));
        // A forced path the token does not offer is refused, whatever the override.
        assert_eq!(
            choose_path(&softhsm, options(WrapChoice::Path(WrapPath::OneShot), true), true),
            Err(Error::PathUnsupported(WrapPath::OneShot))
        );
        // A forced aligned-only path for a PKCS#8 key says why it is unsafe.
        assert!(matches!(
            choose_path(&softhsm, options(WrapChoice::Path(WrapPath::TwoStepPad), false), false),
            Err(Error::UnsafeForKey {
                path: WrapPath::TwoStepPad,
                ..
            })
        ));
        // The first conformant path in auto's order wins.
        let nss = report(&[
            (WrapPath::TwoStepKwp, Verdict::Conformant),
            (WrapPath::TwoStepPad, Verdict::Failed("PKCS#7".into())),
        ]);
        assert_eq!(choose_path(&nss, auto, false), Ok((WrapPath::TwoStepKwp, None)));
        // A vendor's RFC 5649 that the self-test proved is taken before the ambiguous 0x210A.
        let luna = report(&[
            (WrapPath::TwoStepLunaKwp, Verdict::Conformant),
            (WrapPath::TwoStepPad, Verdict::Conformant),
        ]);
        assert_eq!(choose_path(&luna, auto, false), Ok((WrapPath::TwoStepLunaKwp, None)));
    }
}
