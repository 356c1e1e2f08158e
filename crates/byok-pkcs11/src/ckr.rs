//! PKCS#11 return values (`CK_RV`) as a type: compared as values, shown as the standard names them.

use std::fmt;

use cryptoki::error::RvError;

macro_rules! return_values {
    ($($(#[$doc:meta])* $variant:ident,)*) => {
        /// A PKCS#11 function's failure. The codes byok (or a caller) acts on have their own variants; every other
        /// code is kept whole in `Other`, and vendor-defined codes (≥ `CKR_VENDOR_DEFINED`) by their number.
        /// `Display` gives the standard name (`CKR_PIN_INCORRECT`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum Ckr {
            $($(#[$doc])* $variant,)*
            /// A vendor-defined code.
            Vendor(u64),
            /// Any other standard code.
            Other(OtherCkr),
        }

        impl Ckr {
            pub(crate) fn from_rv(rv: RvError) -> Self {
                match rv {
                    $(RvError::$variant => Self::$variant,)*
                    RvError::VendorDefined(code) => Self::Vendor(code),
                    other => Self::Other(OtherCkr(other)),
                }
            }

            fn rv(self) -> RvError {
                match self {
                    $(Self::$variant => RvError::$variant,)*
                    Self::Vendor(code) => RvError::VendorDefined(code),
                    Self::Other(OtherCkr(rv)) => rv,
                }
            }
        }
    };
}

return_values! {
    /// CKR_GENERAL_ERROR.
    GeneralError,
    /// CKR_ARGUMENTS_BAD.
    ArgumentsBad,
    /// CKR_ATTRIBUTE_SENSITIVE.
    AttributeSensitive,
    /// CKR_ATTRIBUTE_TYPE_INVALID.
    AttributeTypeInvalid,
    /// CKR_ATTRIBUTE_VALUE_INVALID.
    AttributeValueInvalid,
    /// CKR_BUFFER_TOO_SMALL.
    BufferTooSmall,
    /// CKR_CRYPTOKI_ALREADY_INITIALIZED.
    CryptokiAlreadyInitialized,
    /// CKR_DATA_LEN_RANGE: the input is too long (or short) for the mechanism or the token's buffers.
    DataLenRange,
    /// CKR_DEVICE_ERROR.
    DeviceError,
    /// CKR_DEVICE_REMOVED.
    DeviceRemoved,
    /// CKR_FUNCTION_FAILED.
    FunctionFailed,
    /// CKR_FUNCTION_NOT_SUPPORTED.
    FunctionNotSupported,
    /// CKR_KEY_FUNCTION_NOT_PERMITTED.
    KeyFunctionNotPermitted,
    /// CKR_KEY_NOT_WRAPPABLE.
    KeyNotWrappable,
    /// CKR_KEY_TYPE_INCONSISTENT.
    KeyTypeInconsistent,
    /// CKR_KEY_UNEXTRACTABLE.
    KeyUnextractable,
    /// CKR_MECHANISM_INVALID: the token does not offer the mechanism.
    MechanismInvalid,
    /// CKR_MECHANISM_PARAM_INVALID.
    MechanismParamInvalid,
    /// CKR_PIN_INCORRECT.
    PinIncorrect,
    /// CKR_PIN_LOCKED.
    PinLocked,
    /// CKR_SESSION_COUNT: the token allows no more sessions.
    SessionCount,
    /// CKR_SESSION_HANDLE_INVALID.
    SessionHandleInvalid,
    /// CKR_TEMPLATE_INCOMPLETE.
    TemplateIncomplete,
    /// CKR_TEMPLATE_INCONSISTENT.
    TemplateInconsistent,
    /// CKR_TOKEN_NOT_PRESENT.
    TokenNotPresent,
    /// CKR_USER_NOT_LOGGED_IN.
    UserNotLoggedIn,
    /// CKR_WRAPPED_KEY_INVALID.
    WrappedKeyInvalid,
    /// CKR_WRAPPING_KEY_HANDLE_INVALID.
    WrappingKeyHandleInvalid,
    /// CKR_WRAPPING_KEY_TYPE_INCONSISTENT.
    WrappingKeyTypeInconsistent,
}

impl Ckr {
    /// The code of a raw `CK_RV` (never `CKR_OK`, which is not a failure: it reads as `CKR_GENERAL_ERROR`).
    pub(crate) fn from_raw(rv: u64) -> Self {
        match cryptoki::error::Rv::from(rv) {
            cryptoki::error::Rv::Error(e) => Self::from_rv(e),
            cryptoki::error::Rv::Ok => Self::GeneralError,
        }
    }
}

/// A standard return value without a variant of its own in [`Ckr`]: shown by its name, compared by value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OtherCkr(RvError);

impl fmt::Debug for OtherCkr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&name(self.0))
    }
}

impl fmt::Display for Ckr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&name(self.rv()))
    }
}

/// `Debug` of cryptoki's `RvError` is CamelCase (`PinIncorrect`); PKCS#11 says `CKR_PIN_INCORRECT`.
fn name(rv: RvError) -> String {
    if let RvError::VendorDefined(code) = rv {
        return format!("CKR_VENDOR_DEFINED({code:#x})");
    }
    let camel = format!("{rv:?}");
    if camel.contains('(') {
        return camel;
    }
    let mut out = String::from("CKR");
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::Ckr;

    #[test]
    fn codes_are_values_named_as_the_standard_names_them() {
        assert_eq!(Ckr::from_raw(0xA0), Ckr::PinIncorrect);
        assert_eq!(Ckr::from_raw(0x6A), Ckr::KeyUnextractable);
        assert_eq!(Ckr::PinIncorrect.to_string(), "CKR_PIN_INCORRECT");
        assert_eq!(
            Ckr::WrappingKeyTypeInconsistent.to_string(),
            "CKR_WRAPPING_KEY_TYPE_INCONSISTENT"
        );
        // CKR_CANCEL has no variant: kept whole, named all the same.
        let cancel = Ckr::from_raw(0x1);
        assert!(matches!(cancel, Ckr::Other(_)));
        assert_eq!(cancel.to_string(), "CKR_CANCEL");
        assert_eq!(Ckr::from_raw(0x8000_0042), Ckr::Vendor(0x8000_0042));
        assert_eq!(Ckr::Vendor(0x8000_0042).to_string(), "CKR_VENDOR_DEFINED(0x80000042)");
    }
}
