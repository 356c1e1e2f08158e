//! Vendor personalities over NSS softokn: where BYOK is concerned, the module answers as a vendor's HSM would
//! (facts and their sources: `../shared/notes/hsm-vendors.md`; what is assumed rather than documented is marked).
//!
//! - `luna`: manufacturer "SafeNet, Inc."; RFC 5649 only under Luna's CKM_AES_KWP (CKM_VENDOR_DEFINED + 0x171), and
//!   CKM_RSA_AES_KEY_WRAP (firmware ≥ 7.3), which the shim composes inside NSS.
//!   `luna-policy1-off`: partition policy 1 off, private keys are refused with CKR_KEY_NOT_WRAPPABLE.
//!   `luna-trusted`: every token key reads CKA_WRAP_WITH_TRUSTED = true and only a trusted key may wrap it
//!   (CKA_TRUSTED, or the label `BYOK_SHIM_TRUSTED_LABEL` names: the security officer's step).
//! - `cloudhsm`: manufacturer "Amazon Web Services"; the standard 0x210A is PKCS#5-style padding (NSS's 0x210A is
//!   PKCS#7 + RFC 3394, the same failure for BYOK) and RFC 5649 is CKM_CLOUDHSM_AES_KEY_WRAP_ZERO_PAD.
//!   `cloudhsm-not-owner`: token keys are refused with CKR_KEY_FUNCTION_NOT_PERMITTED (only the owner wraps).
//! - `yubihsm`: manufacturer "Yubico (www.yubico.com)"; a wrap whose output exceeds the message buffer fails with
//!   CKR_DATA_LEN_RANGE.
//! - `nshield`: manufacturer "nCipher Corp. Ltd"; the security assurance mechanisms refuse a wrap with a session
//!   key (assumed code: CKR_FUNCTION_FAILED).
//!
//! Every personality hides 0x210B and NSS's own vendor mechanism except where the vendor offers them.

use std::ffi::c_void;

use cryptoki_sys as sys;

use crate::shim;

const LUNA_KWP: sys::CK_MECHANISM_TYPE = sys::CKM_VENDOR_DEFINED + 0x171;
const CLOUDHSM_KWP: sys::CK_MECHANISM_TYPE = sys::CKM_VENDOR_DEFINED | 0x216F;
const NSS_PAD: sys::CK_MECHANISM_TYPE = 0xCE53_4352;
/// YH_MSG_BUF_SIZE in yubihsm-shell's `lib/yubihsm.h`.
const YUBIHSM_MESSAGE: u64 = 3136;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Vendor {
    Luna,
    CloudHsm,
    YubiHsm,
    NShield,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Policy {
    Default,
    LunaPolicy1Off,
    LunaTrusted,
    CloudHsmNotOwner,
}

#[derive(Debug)]
pub(crate) struct Personality {
    vendor: Vendor,
    policy: Policy,
    message_limit: u64,
}

impl Personality {
    pub(crate) fn named(name: &str, message_limit: Option<u64>) -> Result<Self, String> {
        let (vendor, policy) = match name {
            "luna" => (Vendor::Luna, Policy::Default),
            "luna-policy1-off" => (Vendor::Luna, Policy::LunaPolicy1Off),
            "luna-trusted" => (Vendor::Luna, Policy::LunaTrusted),
            "cloudhsm" => (Vendor::CloudHsm, Policy::Default),
            "cloudhsm-not-owner" => (Vendor::CloudHsm, Policy::CloudHsmNotOwner),
            "yubihsm" => (Vendor::YubiHsm, Policy::Default),
            "nshield" => (Vendor::NShield, Policy::Default),
            other => return Err(format!("unknown BYOK_SHIM_PERSONALITY `{other}`")),
        };
        Ok(Self {
            vendor,
            policy,
            message_limit: message_limit.unwrap_or(YUBIHSM_MESSAGE),
        })
    }

    fn manufacturer(&self) -> &'static str {
        match self.vendor {
            Vendor::Luna => "SafeNet, Inc.",
            Vendor::CloudHsm => "Amazon Web Services",
            Vendor::YubiHsm => "Yubico (www.yubico.com)",
            Vendor::NShield => "nCipher Corp. Ltd",
        }
    }

    /// The real module's mechanism behind one this personality offers; `None` when it does not offer it.
    fn real_mechanism(&self, asked: sys::CK_MECHANISM_TYPE) -> Option<sys::CK_MECHANISM_TYPE> {
        match (self.vendor, asked) {
            // Luna firmware ≥ 7.3 has the one-shot mechanism; NSS has not: `one_shot` composes it.
            (Vendor::Luna, sys::CKM_RSA_AES_KEY_WRAP) => Some(sys::CKM_RSA_AES_KEY_WRAP),
            (Vendor::Luna, LUNA_KWP) | (Vendor::CloudHsm, CLOUDHSM_KWP) => Some(sys::CKM_AES_KEY_WRAP_KWP),
            (Vendor::Luna | Vendor::CloudHsm, sys::CKM_AES_KEY_WRAP_KWP) => None,
            (_, LUNA_KWP | CLOUDHSM_KWP | NSS_PAD) => None,
            (_, other) => Some(other),
        }
    }

    /// `C_WrapKey` as the vendor's module would answer it.
    ///
    /// # Safety
    /// The caller's `C_WrapKey` contract.
    pub(crate) unsafe fn wrap_key(
        &self,
        session: sys::CK_SESSION_HANDLE,
        mechanism: *mut sys::CK_MECHANISM,
        wrapping_key: sys::CK_OBJECT_HANDLE,
        key: sys::CK_OBJECT_HANDLE,
        out: *mut sys::CK_BYTE,
        out_len: *mut sys::CK_ULONG,
    ) -> sys::CK_RV {
        if mechanism.is_null() {
            return sys::CKR_ARGUMENTS_BAD;
        }
        // SAFETY: non-null, and by the caller's contract a valid CK_MECHANISM; copied, never written.
        let mut renumbered = unsafe { *mechanism };
        let Some(real) = self.real_mechanism(renumbered.mechanism) else {
            return sys::CKR_MECHANISM_INVALID;
        };
        renumbered.mechanism = real;
        let refusal = match self.policy {
            Policy::LunaPolicy1Off if class(session, key) == Some(sys::CKO_PRIVATE_KEY) => {
                Some(sys::CKR_KEY_NOT_WRAPPABLE)
            }
            Policy::LunaTrusted
                if boolean(session, key, sys::CKA_TOKEN) == Some(true) && !trusted(session, wrapping_key) =>
            {
                Some(sys::CKR_KEY_NOT_WRAPPABLE)
            }
            Policy::CloudHsmNotOwner if boolean(session, key, sys::CKA_TOKEN) == Some(true) => {
                Some(sys::CKR_KEY_FUNCTION_NOT_PERMITTED)
            }
            _ if self.vendor == Vendor::NShield && boolean(session, wrapping_key, sys::CKA_TOKEN) != Some(true) => {
                Some(sys::CKR_FUNCTION_FAILED)
            }
            _ => None,
        };
        if let Some(rv) = refusal {
            return rv;
        }
        if self.vendor == Vendor::Luna && real == sys::CKM_RSA_AES_KEY_WRAP {
            // SAFETY: the caller's arguments; `renumbered` is its mechanism, unchanged.
            return unsafe { one_shot(session, &renumbered, wrapping_key, key, out, out_len) };
        }
        let wrap = shim().real.C_WrapKey.expect("the real module has C_WrapKey");
        // SAFETY: the caller's arguments, with a copy of its mechanism whose parameter pointer is unchanged.
        let rv = unsafe { wrap(session, &mut renumbered, wrapping_key, key, out, out_len) };
        if self.vendor == Vendor::YubiHsm && rv == sys::CKR_OK && !out_len.is_null() {
            // SAFETY: non-null; the real module has just written the output length there.
            let len = unsafe { *out_len };
            if len > self.message_limit {
                if !out.is_null() {
                    // SAFETY: the real module wrote `len` bytes to `out`; they are cleared, not returned.
                    unsafe { std::ptr::write_bytes(out, 0, len as usize) };
                }
                return sys::CKR_DATA_LEN_RANGE;
            }
        }
        rv
    }
}

/// One attribute of an object, read through the real module.
fn attribute<const N: usize>(
    session: sys::CK_SESSION_HANDLE,
    object: sys::CK_OBJECT_HANDLE,
    kind: sys::CK_ATTRIBUTE_TYPE,
) -> Option<[u8; N]> {
    let mut value = [0u8; N];
    let mut template = sys::CK_ATTRIBUTE {
        type_: kind,
        pValue: value.as_mut_ptr().cast::<c_void>(),
        ulValueLen: N as sys::CK_ULONG,
    };
    let get = shim().real.C_GetAttributeValue?;
    // SAFETY: one attribute whose buffer is `value`, N writable bytes, alive for the call.
    let rv = unsafe { get(session, object, &mut template, 1) };
    (rv == sys::CKR_OK && template.ulValueLen == N as sys::CK_ULONG).then_some(value)
}

fn class(session: sys::CK_SESSION_HANDLE, object: sys::CK_OBJECT_HANDLE) -> Option<sys::CK_OBJECT_CLASS> {
    attribute::<{ size_of::<sys::CK_OBJECT_CLASS>() }>(session, object, sys::CKA_CLASS)
        .map(sys::CK_OBJECT_CLASS::from_ne_bytes)
}

pub(crate) fn boolean(
    session: sys::CK_SESSION_HANDLE,
    object: sys::CK_OBJECT_HANDLE,
    kind: sys::CK_ATTRIBUTE_TYPE,
) -> Option<bool> {
    attribute::<1>(session, object, kind).map(|[b]| b != 0)
}

fn personality() -> &'static Personality {
    shim().personality.as_ref().expect("installed only with a personality")
}

/// Puts the personality's functions in the table handed out.
pub(crate) fn install(table: &mut sys::CK_FUNCTION_LIST) {
    table.C_GetInfo = Some(get_info);
    table.C_GetMechanismInfo = Some(get_mechanism_info);
    table.C_GetAttributeValue = Some(get_attribute_value);
}

/// The vendor's name in a blank-padded 32-byte PKCS#11 field.
fn blank_padded(name: &str) -> [sys::CK_UTF8CHAR; 32] {
    let mut field = [b' '; 32];
    field[..name.len()].copy_from_slice(name.as_bytes());
    field
}

/// The token's manufacturer, as the vendor's module reports it (called by the shim's `C_GetTokenInfo`).
pub(crate) fn patch_token_info(info: *mut sys::CK_TOKEN_INFO) {
    if let Some(p) = &shim().personality
        && !info.is_null()
    {
        // SAFETY: non-null, and the real module has just filled it (the caller checked CKR_OK).
        unsafe { (*info).manufacturerID = blank_padded(p.manufacturer()) };
    }
}

unsafe extern "C" fn get_info(info: *mut sys::CK_INFO) -> sys::CK_RV {
    let real = shim().real.C_GetInfo.expect("the real module has C_GetInfo");
    // SAFETY: forwarded under the caller's contract.
    let rv = unsafe { real(info) };
    if rv == sys::CKR_OK && !info.is_null() {
        // SAFETY: non-null and just filled by the real module.
        unsafe { (*info).manufacturerID = blank_padded(personality().manufacturer()) };
    }
    rv
}

/// Whether the security officer made `object` a trusted wrapping key: CKA_TRUSTED, or (NSS cannot store it on a
/// public key) the label `BYOK_SHIM_TRUSTED_LABEL` names, standing for the SO's step.
fn trusted(session: sys::CK_SESSION_HANDLE, object: sys::CK_OBJECT_HANDLE) -> bool {
    if boolean(session, object, sys::CKA_TRUSTED) == Some(true) {
        return true;
    }
    let Ok(wanted) = std::env::var("BYOK_SHIM_TRUSTED_LABEL") else {
        return false;
    };
    let Some(get) = shim().real.C_GetAttributeValue else {
        return false;
    };
    let mut label = [0u8; 64];
    let mut template = sys::CK_ATTRIBUTE {
        type_: sys::CKA_LABEL,
        pValue: label.as_mut_ptr().cast::<c_void>(),
        ulValueLen: label.len() as sys::CK_ULONG,
    };
    // SAFETY: one attribute whose buffer is `label`, 64 writable bytes, alive for the call.
    let rv = unsafe { get(session, object, &mut template, 1) };
    rv == sys::CKR_OK && label.get(..template.ulValueLen as usize) == Some(wanted.as_bytes())
}

/// CKM_RSA_AES_KEY_WRAP composed inside the real module: a session AES key of the asked size, RFC 5649 (0x210B) of
/// the key under it, RSA-OAEP of it under the KEK with the caller's OAEP parameters, the AES key destroyed.
///
/// # Safety
/// The caller's `C_WrapKey` contract, with `mechanism` its (valid) mechanism.
unsafe fn one_shot(
    session: sys::CK_SESSION_HANDLE,
    mechanism: &sys::CK_MECHANISM,
    kek: sys::CK_OBJECT_HANDLE,
    key: sys::CK_OBJECT_HANDLE,
    out: *mut sys::CK_BYTE,
    out_len: *mut sys::CK_ULONG,
) -> sys::CK_RV {
    if mechanism.pParameter.is_null()
        || mechanism.ulParameterLen as usize != size_of::<sys::CK_RSA_AES_KEY_WRAP_PARAMS>()
        || out_len.is_null()
    {
        return sys::CKR_MECHANISM_PARAM_INVALID;
    }
    // SAFETY: non-null and of the parameter struct's exact size, as the mechanism defines it.
    let params = unsafe { *mechanism.pParameter.cast::<sys::CK_RSA_AES_KEY_WRAP_PARAMS>() };
    let real = &shim().real;
    let (Some(generate), Some(wrap), Some(destroy)) = (real.C_GenerateKey, real.C_WrapKey, real.C_DestroyObject) else {
        return sys::CKR_FUNCTION_FAILED;
    };
    let (yes, no, mut value_len): (sys::CK_BBOOL, sys::CK_BBOOL, sys::CK_ULONG) = (1, 0, params.ulAESKeyBits / 8);
    let attribute = |type_, value: *const c_void, len: usize| sys::CK_ATTRIBUTE {
        type_,
        pValue: value.cast_mut(),
        ulValueLen: len as sys::CK_ULONG,
    };
    let flag = |v: &sys::CK_BBOOL| std::ptr::from_ref(v).cast::<c_void>();
    let mut template = [
        attribute(sys::CKA_TOKEN, flag(&no), 1),
        attribute(sys::CKA_EXTRACTABLE, flag(&yes), 1),
        attribute(sys::CKA_SENSITIVE, flag(&yes), 1),
        attribute(sys::CKA_WRAP, flag(&yes), 1),
        attribute(
            sys::CKA_VALUE_LEN,
            (&raw mut value_len).cast::<c_void>(),
            size_of::<sys::CK_ULONG>(),
        ),
    ];
    let mut keygen = sys::CK_MECHANISM {
        mechanism: sys::CKM_AES_KEY_GEN,
        pParameter: std::ptr::null_mut(),
        ulParameterLen: 0,
    };
    let mut aes: sys::CK_OBJECT_HANDLE = 0;
    // SAFETY: the template's values live on this stack frame for the call; `aes` is writable.
    let rv = unsafe {
        generate(
            session,
            &mut keygen,
            template.as_mut_ptr(),
            template.len() as sys::CK_ULONG,
            &mut aes,
        )
    };
    if rv != sys::CKR_OK {
        return rv;
    }
    let mut kwp_mech = sys::CK_MECHANISM {
        mechanism: sys::CKM_AES_KEY_WRAP_KWP,
        pParameter: std::ptr::null_mut(),
        ulParameterLen: 0,
    };
    let mut oaep_mech = sys::CK_MECHANISM {
        mechanism: sys::CKM_RSA_PKCS_OAEP,
        pParameter: params.pOAEPParams.cast::<c_void>(),
        ulParameterLen: size_of::<sys::CK_RSA_PKCS_OAEP_PARAMS>() as sys::CK_ULONG,
    };
    let (mut kwp, mut rsa) = (vec![0u8; 8192], vec![0u8; 1024]);
    let (mut kwp_len, mut rsa_len) = (kwp.len() as sys::CK_ULONG, rsa.len() as sys::CK_ULONG);
    // SAFETY: both buffers are as long as the lengths given; the handles are the caller's and the new AES key.
    let mut rv = unsafe { wrap(session, &mut kwp_mech, aes, key, kwp.as_mut_ptr(), &mut kwp_len) };
    if rv == sys::CKR_OK {
        // SAFETY: as above; the OAEP parameters are the caller's, alive for its call.
        rv = unsafe { wrap(session, &mut oaep_mech, kek, aes, rsa.as_mut_ptr(), &mut rsa_len) };
    }
    // SAFETY: the AES key made above, in this session.
    let _ = unsafe { destroy(session, aes) };
    if rv != sys::CKR_OK {
        return rv;
    }
    let total = rsa_len + kwp_len;
    // SAFETY: `out_len` is non-null (checked) and the caller's.
    let room = unsafe { *out_len };
    // SAFETY: as above.
    unsafe { *out_len = total };
    if out.is_null() {
        return sys::CKR_OK;
    }
    if room < total {
        return sys::CKR_BUFFER_TOO_SMALL;
    }
    let joined = [&rsa[..rsa_len as usize], &kwp[..kwp_len as usize]].concat();
    // SAFETY: `out` has `room` ≥ `total` writable bytes by the caller's contract.
    unsafe { std::ptr::copy_nonoverlapping(joined.as_ptr(), out, joined.len()) };
    sys::CKR_OK
}

unsafe extern "C" fn get_mechanism_info(
    slot: sys::CK_SLOT_ID,
    kind: sys::CK_MECHANISM_TYPE,
    info: *mut sys::CK_MECHANISM_INFO,
) -> sys::CK_RV {
    let real_kind = match personality().real_mechanism(kind) {
        // The composed one-shot reports what its AES step can do.
        Some(sys::CKM_RSA_AES_KEY_WRAP) if personality().vendor == Vendor::Luna => sys::CKM_AES_KEY_WRAP_KWP,
        Some(k) => k,
        None => return sys::CKR_MECHANISM_INVALID,
    };
    let real = shim()
        .real
        .C_GetMechanismInfo
        .expect("the real module has C_GetMechanismInfo");
    // SAFETY: forwarded under the caller's contract, with the real module's number for the mechanism.
    unsafe { real(slot, real_kind, info) }
}

unsafe extern "C" fn get_attribute_value(
    session: sys::CK_SESSION_HANDLE,
    object: sys::CK_OBJECT_HANDLE,
    template: *mut sys::CK_ATTRIBUTE,
    count: sys::CK_ULONG,
) -> sys::CK_RV {
    let real = shim()
        .real
        .C_GetAttributeValue
        .expect("the real module has C_GetAttributeValue");
    // SAFETY: forwarded under the caller's contract.
    let rv = unsafe { real(session, object, template, count) };
    if personality().policy != Policy::LunaTrusted
        || template.is_null()
        || boolean(session, object, sys::CKA_TOKEN) != Some(true)
    {
        return rv;
    }
    // SAFETY: by the caller's contract `template` points to `count` attributes.
    let attributes = unsafe { std::slice::from_raw_parts_mut(template, count as usize) };
    for a in attributes.iter_mut().filter(|a| a.type_ == sys::CKA_WRAP_WITH_TRUSTED) {
        if !a.pValue.is_null() && a.ulValueLen >= 1 {
            // SAFETY: the caller gave a buffer of `ulValueLen` ≥ 1 bytes for this attribute.
            unsafe { *a.pValue.cast::<u8>() = 1 };
        }
        a.ulValueLen = 1;
    }
    // The attribute NSS may not know is answered here, so the call as a whole succeeds.
    if rv == sys::CKR_ATTRIBUTE_TYPE_INVALID && attributes.iter().all(|a| a.type_ == sys::CKA_WRAP_WITH_TRUSTED) {
        return sys::CKR_OK;
    }
    rv
}
