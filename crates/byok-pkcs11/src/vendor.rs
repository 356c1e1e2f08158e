//! Who made the HSM, from what its module says about itself, and what a refusal during BYOK means on that vendor's
//! HSM with what the operator does about it. The vendor never chooses a wrap path (the self-test does); it only makes
//! an error say something an operator can act on. Facts and sources: docs/hsm-vendors.md.

use std::fmt;

use byok_encoding::KeyKind;

use crate::Ckr;

/// The maker of a module, recognised by the manufacturer, library description and model it reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Vendor {
    /// Thales (SafeNet, Gemalto) Luna.
    ThalesLuna,
    /// AWS CloudHSM.
    #[serde(rename = "aws-cloudhsm")]
    AwsCloudHsm,
    /// Yubico YubiHSM 2.
    Yubihsm,
    /// Entrust (nCipher) nShield.
    EntrustNshield,
    /// Utimaco.
    Utimaco,
    /// Securosys Primus.
    Securosys,
    /// SoftHSM.
    Softhsm,
    /// NSS softokn.
    Nss,
    /// openCryptoki.
    Opencryptoki,
    /// Kryoptic.
    Kryoptic,
    /// A module byok does not recognise.
    Unknown,
}

/// What byok looks for, lower-cased, in the module's and the token's self-description; the first match wins.
const SIGNS: [(&[&str], Vendor); 10] = [
    (&["safenet", "luna", "gemalto", "thales"], Vendor::ThalesLuna),
    (&["cloudhsm", "amazon web services"], Vendor::AwsCloudHsm),
    (&["yubico", "yubihsm"], Vendor::Yubihsm),
    (&["ncipher", "nshield", "entrust"], Vendor::EntrustNshield),
    (&["utimaco"], Vendor::Utimaco),
    (&["securosys"], Vendor::Securosys),
    (&["softhsm"], Vendor::Softhsm),
    (&["mozilla", "nss"], Vendor::Nss),
    (&["opencryptoki", "ibm"], Vendor::Opencryptoki),
    (&["kryoptic"], Vendor::Kryoptic),
];

impl Vendor {
    /// The vendor whose name appears in any of `descriptions` (manufacturer ids, library description, model).
    pub fn detect(descriptions: &[&str]) -> Self {
        let text = descriptions.join(" ").to_lowercase();
        SIGNS
            .iter()
            .find(|(signs, _)| signs.iter().any(|s| text.contains(s)))
            .map_or(Self::Unknown, |(_, v)| *v)
    }

    /// The vendor's product, for people.
    pub const fn name(self) -> &'static str {
        match self {
            Self::ThalesLuna => "Thales Luna",
            Self::AwsCloudHsm => "AWS CloudHSM",
            Self::Yubihsm => "YubiHSM 2",
            Self::EntrustNshield => "Entrust nShield",
            Self::Utimaco => "Utimaco",
            Self::Securosys => "Securosys",
            Self::Softhsm => "SoftHSM",
            Self::Nss => "NSS softokn",
            Self::Opencryptoki => "openCryptoki",
            Self::Kryoptic => "Kryoptic",
            Self::Unknown => "an unrecognised HSM",
        }
    }

    /// The largest message the HSM's interface carries, where the vendor documents one.
    pub const fn message_limit(self) -> Option<usize> {
        match self {
            // YH_MSG_BUF_SIZE (yubihsm-shell `lib/yubihsm.h`).
            Self::Yubihsm => Some(3136),
            _ => None,
        }
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A defect of a token that spoils what it wraps for keys of a kind, when one is known: `(vendor, firmware prefix,
/// does it concern this kind, what goes wrong)`. Found by opening what the token wrapped, as the tests do for every
/// token; byok cannot look inside a wrapped key, so every key of the kind is refused unless overridden.
const DEFECTS: [Defect; 1] = [(
    Vendor::Kryoptic,
    "1.5",
    |kind| matches!(kind, KeyKind::Ec(_)),
    "Kryoptic 1.5 writes an EC private scalar without its leading zero bytes into the PKCS#8 it wraps (one P-256 or \
     P-384 key in 256, one P-521 key in 2); RFC 5915 fixes the scalar's length, and strict parsers reject the key",
)];

/// `(vendor, firmware prefix, does it concern this kind, what goes wrong)`.
type Defect = (Vendor, &'static str, fn(KeyKind) -> bool, &'static str);

/// What is known to go wrong when this token wraps a key of `kind`.
pub(crate) fn known_defect(vendor: Vendor, firmware: &str, kind: KeyKind) -> Option<&'static str> {
    DEFECTS
        .iter()
        .find(|(v, f, concerns, _)| *v == vendor && firmware.starts_with(f) && concerns(kind))
        .map(|(_, _, _, why)| *why)
}

/// What a refusal means on this vendor's HSM, and what the operator does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advice {
    /// What the HSM is saying, in the vendor's terms.
    pub meaning: String,
    /// What the operator does about it.
    pub fix: String,
}

/// What byok knows about the failed wrap when it explains it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WrapContext {
    pub(crate) vendor: Vendor,
    /// The key being wrapped is a private key (not a secret key).
    pub(crate) private_key: bool,
    /// The key's CKA_WRAP_WITH_TRUSTED, when the token would say.
    pub(crate) wrap_with_trusted: Option<bool>,
    /// The wrapping key is a token object (not one byok made for the session).
    pub(crate) token_wrapping_key: bool,
}

fn advice(meaning: impl Into<String>, fix: impl Into<String>) -> Option<Advice> {
    Some(Advice {
        meaning: meaning.into(),
        fix: fix.into(),
    })
}

/// The advice for `code` from `C_WrapKey`, when byok has any.
pub(crate) fn explain_wrap(code: Ckr, cx: WrapContext) -> Option<Advice> {
    let v = cx.vendor;
    match code {
        Ckr::KeyNotWrappable if cx.wrap_with_trusted == Some(true) && cx.token_wrapping_key => advice(
            "the key has CKA_WRAP_WITH_TRUSTED, so only a wrapping key with CKA_TRUSTED may wrap it, and the KEK's \
             token object (from `byok-cli hsm import-kek`) is not trusted",
            "have the security officer set CKA_TRUSTED on the KEK's token object with the vendor's tool, then wrap \
             again (docs/hsm-vendors.md)",
        ),
        Ckr::KeyNotWrappable if cx.wrap_with_trusted == Some(true) => advice(
            "the key has CKA_WRAP_WITH_TRUSTED, so only a wrapping key with CKA_TRUSTED may wrap it",
            "import the KEK into the token with `byok-cli hsm import-kek`, have the security officer set CKA_TRUSTED \
             on it, and wrap again: byok wraps with a token KEK of the same modulus when there is one, and only the \
             rsa-aes-key-wrap path wraps with the KEK alone (docs/hsm-vendors.md)",
        ),
        Ckr::KeyNotWrappable if v == Vendor::ThalesLuna && cx.private_key => advice(
            "this Luna partition does not allow private-key wrapping: partition policy 1 (\"Allow private key \
             wrapping\") is off, as it is by default",
            "the partition SO turns it on with `partition changepolicy -policy 1 -value 1` in lunacm; turning it on \
             is destructive (the partition's objects are erased) and excludes cloning (policy 0), so plan it before \
             the keys are made",
        ),
        Ckr::KeyNotWrappable => advice(
            format!("{v} will not wrap this key: it is marked not wrappable, or the HSM's policy forbids exporting it"),
            "check the key's CKA_WRAP_WITH_TRUSTED and the HSM's export policy with its administrator",
        ),
        Ckr::KeyUnextractable => advice(
            "the HSM will not let the key leave it, even wrapped: its CKA_EXTRACTABLE is false, or a policy makes it \
             unextractable",
            if v == Vendor::ThalesLuna {
                "generate the key extractable (keys unwrapped into a Luna partition default to CKA_EXTRACTABLE=false)"
            } else {
                "generate the key with CKA_EXTRACTABLE=true (byok-cli hsm generate does); it cannot be turned on later"
            },
        ),
        Ckr::WrappingKeyTypeInconsistent | Ckr::WrappingKeyHandleInvalid => advice(
            format!("{v} does not accept the KEK as a wrapping key for this mechanism"),
            "the KEK must be an RSA public key with CKA_WRAP=true of a size the HSM supports (Luna: RSA-4096 targets \
             need firmware 7.4 or later); try another path with --wrap-mechanism",
        ),
        Ckr::MechanismParamInvalid => advice(
            format!(
                "{v} rejects the parameters BYOK needs: RSA-OAEP with SHA-1, MGF1-SHA-1 and an empty label, AES-256"
            ),
            match v {
                Vendor::ThalesLuna => "Azure BYOK needs Luna firmware 7.3 or later; update the firmware",
                Vendor::Yubihsm => "CKM_RSA_AES_KEY_WRAP needs YubiHSM 2 firmware 2.4.0 or later",
                _ => "update the HSM's firmware or library, or try another path with --wrap-mechanism",
            },
        ),
        Ckr::KeyFunctionNotPermitted if v == Vendor::AwsCloudHsm => advice(
            "on CloudHSM only the crypto user who owns a key can wrap it; a user it is shared with cannot",
            "log in as the key's owner (the PIN is `user:password` of that crypto user)",
        ),
        Ckr::KeyFunctionNotPermitted => advice(
            format!("{v} does not permit this key, or the KEK, to be used for wrapping"),
            "the target needs CKA_EXTRACTABLE=true and the wrapping key CKA_WRAP=true; check the key's policy",
        ),
        Ckr::DataLenRange => advice(
            match v.message_limit() {
                Some(limit) => format!("the wrapped key does not fit {v}'s {limit}-byte message buffer"),
                None => format!("the wrapped key is larger than {v} accepts"),
            },
            "a smaller KEK shortens the result (RSA-2048 adds 256 bytes, RSA-4096 512); keys too large for the \
             HSM's buffer cannot be moved through it",
        ),
        Ckr::FunctionFailed if v == Vendor::EntrustNshield => advice(
            "nShield's security assurance mechanisms (SAMs) refuse wrapping with a session key by default",
            "set CKNFAST_ASSURANCE_LOG=FILE to see which assurance refused it, then either allow it for byok with \
             CKNFAST_OVERRIDE_SECURITY_ASSURANCES (Entrust's documentation lists each assurance; understand what \
             it turns off before you do)",
        ),
        Ckr::Vendor(n) => advice(
            format!("{v} returned its own code {n:#x}"),
            format!("look the code up in {v}'s error table; byok passes it through unchanged"),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendors_are_recognised_by_what_their_modules_say() {
        assert_eq!(Vendor::detect(&["SafeNet, Inc.", "Chrystoki"]), Vendor::ThalesLuna);
        assert_eq!(Vendor::detect(&["Yubico (www.yubico.com)"]), Vendor::Yubihsm);
        assert_eq!(Vendor::detect(&["nCipher Corp. Ltd"]), Vendor::EntrustNshield);
        assert_eq!(
            Vendor::detect(&["Amazon Web Services", "CloudHSM"]),
            Vendor::AwsCloudHsm
        );
        assert_eq!(
            Vendor::detect(&["SoftHSM", "Implementation of PKCS11"]),
            Vendor::Softhsm
        );
        assert_eq!(
            Vendor::detect(&["Mozilla Foundation", "NSS Internal Crypto Services"]),
            Vendor::Nss
        );
        assert_eq!(Vendor::detect(&["Example Corp"]), Vendor::Unknown);
    }

    #[test]
    fn refusals_are_explained_by_vendor_and_context() {
        let cx = |vendor, private_key, wrap_with_trusted| WrapContext {
            vendor,
            private_key,
            wrap_with_trusted,
            token_wrapping_key: false,
        };
        let luna_private = explain_wrap(Ckr::KeyNotWrappable, cx(Vendor::ThalesLuna, true, Some(false)));
        assert!(luna_private.expect("advice").meaning.contains("partition policy 1"));
        // The trusted-wrapping requirement is told apart by the key's own attribute, on any vendor.
        let trusted = explain_wrap(Ckr::KeyNotWrappable, cx(Vendor::ThalesLuna, true, Some(true)));
        assert!(trusted.expect("advice").fix.contains("hsm import-kek"));
        let owner = explain_wrap(Ckr::KeyFunctionNotPermitted, cx(Vendor::AwsCloudHsm, true, None));
        assert!(owner.expect("advice").meaning.contains("owns a key"));
        let size = explain_wrap(Ckr::DataLenRange, cx(Vendor::Yubihsm, true, None));
        assert!(size.expect("advice").meaning.contains("3136-byte message buffer"));
        let sam = explain_wrap(Ckr::FunctionFailed, cx(Vendor::EntrustNshield, false, None));
        assert!(sam.expect("advice").fix.contains("CKNFAST_ASSURANCE_LOG"));
        assert_eq!(
            explain_wrap(Ckr::FunctionFailed, cx(Vendor::Softhsm, false, None)),
            None
        );
        let own = explain_wrap(Ckr::Vendor(0x8000_0100), cx(Vendor::Utimaco, false, None));
        assert!(
            own.expect("advice")
                .meaning
                .contains("Utimaco returned its own code 0x80000100")
        );
    }
}
