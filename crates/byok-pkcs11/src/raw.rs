//! The only module of byok with `unsafe` code: what cryptoki 0.12 cannot do.
//!
//! - `C_WrapKey` with mechanism ids cryptoki has no variant for (0x1054 CKM_RSA_AES_KEY_WRAP, 0x210B
//!   CKM_AES_KEY_WRAP_KWP, the vendors' numbers), with a caller-sized buffer: cryptoki's `wrap_key` neither trims to the length a token
//!   returns (tokens that over-report) nor retries on CKR_BUFFER_TOO_SMALL (NSS under-reports for 0x210B).
//! - `C_GetMechanismInfo` for those ids (`get_mechanism_list` silently drops them).
//! - `C_Initialize` with `pReserved`, which NSS softokn reads as its library parameters.
//!
//! Calls go through the module's own function table (`C_GetFunctionList`), on sessions and objects that cryptoki
//! opened in the same loaded library.

#![allow(unsafe_code)]

use std::ffi::{CString, c_void};
use std::path::Path;
use std::ptr::{self, NonNull};

use cryptoki::context::{CInitializeArgs, CInitializeFlags};
use cryptoki_sys as sys;

/// A failed raw call: the function and its CK_RV.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawError {
    pub(crate) function: &'static str,
    pub(crate) rv: sys::CK_RV,
}

/// The first output buffer of `C_WrapKey`: larger than any wrapped key byok moves.
const FIRST_BUFFER: usize = 8192;

/// Mechanisms called through the raw path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RawMechanism {
    /// CKM_RSA_AES_KEY_WRAP (0x1054) with AES-256 and OAEP SHA-1 / MGF1-SHA-1 / empty label.
    RsaAesKeyWrap,
    /// CKM_AES_KEY_WRAP_KWP (0x210B), RFC 5649.
    AesKeyWrapKwp,
    /// CKM_AES_KEY_WRAP_PAD (0x210A): RFC 5649 on SoftHSM, PKCS#7 + RFC 3394 on tokens that follow PKCS#11 3.0.
    AesKeyWrapPad,
    /// Thales Luna's CKM_AES_KWP (CKM_VENDOR_DEFINED + 0x171).
    LunaAesKwp,
    /// AWS CloudHSM's CKM_CLOUDHSM_AES_KEY_WRAP_ZERO_PAD (CKM_VENDOR_DEFINED | 0x216F).
    CloudHsmAesKwp,
    /// NSS's CKM_NSS_AES_KEY_WRAP_PAD (0xCE534352).
    NssAesKeyWrapPad,
    /// CKM_RSA_PKCS_OAEP with SHA-1 / MGF1-SHA-1 / empty label.
    RsaOaepSha1,
}

impl RawMechanism {
    pub(crate) fn id(self) -> sys::CK_MECHANISM_TYPE {
        match self {
            Self::RsaAesKeyWrap => sys::CKM_RSA_AES_KEY_WRAP,
            Self::AesKeyWrapKwp => sys::CKM_AES_KEY_WRAP_KWP,
            Self::AesKeyWrapPad => sys::CKM_AES_KEY_WRAP_PAD,
            Self::LunaAesKwp => sys::CKM_VENDOR_DEFINED + 0x171,
            Self::CloudHsmAesKwp => sys::CKM_VENDOR_DEFINED | 0x216F,
            Self::NssAesKeyWrapPad => 0xCE53_4352,
            Self::RsaOaepSha1 => sys::CKM_RSA_PKCS_OAEP,
        }
    }
}

/// The module's function table, loaded a second time beside cryptoki's (the dynamic loader shares the library).
pub(crate) struct RawModule {
    // Keeps the library mapped for as long as `list` is used.
    _lib: sys::Pkcs11,
    list: NonNull<sys::CK_FUNCTION_LIST>,
}

// SAFETY: `list` points to the module's function table, which PKCS#11 defines as constant for the library's life
// and byok only reads. Calling through it from several threads is allowed: the module was initialised with
// CKF_OS_LOCKING_OK (`init_args`), and a module that cannot lock refuses C_Initialize with CKR_CANT_LOCK, so a loaded
// `Module` is one the library itself makes thread-safe (PKCS#11 v2.40, C_Initialize and CKF_OS_LOCKING_OK). byok
// never uses one session from two threads at once (`TokenSession` is not `Sync`).
unsafe impl Send for RawModule {}
// SAFETY: as for `Send`: shared references only read the constant table and call thread-safe functions.
unsafe impl Sync for RawModule {}

impl std::fmt::Debug for RawModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawModule").finish_non_exhaustive()
    }
}

impl RawModule {
    pub(crate) fn load(path: &Path) -> Result<Self, String> {
        // SAFETY: loading a shared library runs its initialisers; the path names a PKCS#11 module the user chose,
        // which cryptoki has just loaded successfully from the same path.
        let lib = unsafe { sys::Pkcs11::new(path) }.map_err(|e| e.to_string())?;
        let mut list: *mut sys::CK_FUNCTION_LIST = ptr::null_mut();
        // SAFETY: C_GetFunctionList is exported by every PKCS#11 module (cryptoki required it too); it writes a
        // pointer to a table that lives as long as the library is loaded, which `_lib` guarantees.
        let rv = unsafe { lib.C_GetFunctionList(&mut list) };
        if rv != sys::CKR_OK {
            return Err(format!("C_GetFunctionList returned 0x{rv:08x}"));
        }
        let list = NonNull::new(list).ok_or("C_GetFunctionList returned no table")?;
        Ok(Self { _lib: lib, list })
    }

    /// Whether this table belongs to the initialised module: CKR_CRYPTOKI_NOT_INITIALIZED here means the library
    /// hands out a separate instance per `C_GetFunctionList` (p11-kit-proxy 0.24 does), whose sessions are not
    /// cryptoki's.
    pub(crate) fn is_initialised(&self) -> bool {
        let Some(f) = self.table().C_GetInfo else {
            return true;
        };
        // SAFETY: `C_GetInfo` writes one CK_INFO into the valid, writable `info`.
        let mut info: sys::CK_INFO = unsafe { std::mem::zeroed() };
        // SAFETY: as above; the function comes from the module's own table.
        let rv = unsafe { f(&mut info) };
        rv != sys::CKR_CRYPTOKI_NOT_INITIALIZED
    }

    fn table(&self) -> &sys::CK_FUNCTION_LIST {
        // SAFETY: `list` is non-null and points into the loaded library's static data, alive while `_lib` is.
        unsafe { self.list.as_ref() }
    }

    /// Whether the token in `slot` offers `mechanism`, and with which flags.
    pub(crate) fn mechanism_flags(
        &self,
        slot: sys::CK_SLOT_ID,
        mechanism: RawMechanism,
    ) -> Result<Option<sys::CK_FLAGS>, RawError> {
        let f = self.table().C_GetMechanismInfo.ok_or(RawError {
            function: "C_GetMechanismInfo",
            rv: sys::CKR_FUNCTION_NOT_SUPPORTED,
        })?;
        let mut info = sys::CK_MECHANISM_INFO {
            ulMinKeySize: 0,
            ulMaxKeySize: 0,
            flags: 0,
        };
        // SAFETY: `info` is a valid, writable CK_MECHANISM_INFO; the slot id is passed by value.
        let rv = unsafe { f(slot, mechanism.id(), &mut info) };
        match rv {
            sys::CKR_OK => Ok(Some(info.flags)),
            sys::CKR_MECHANISM_INVALID => Ok(None),
            rv => Err(RawError {
                function: "C_GetMechanismInfo",
                rv,
            }),
        }
    }

    /// `C_WrapKey` into a generous buffer, with one retry at the length the token asks for on CKR_BUFFER_TOO_SMALL
    /// (so tokens that under-report a size are no problem), trimmed to the length it returns.
    pub(crate) fn wrap_key(
        &self,
        session: sys::CK_SESSION_HANDLE,
        mechanism: RawMechanism,
        wrapping_key: sys::CK_OBJECT_HANDLE,
        key: sys::CK_OBJECT_HANDLE,
    ) -> Result<Vec<u8>, RawError> {
        let f = self.table().C_WrapKey.ok_or(RawError {
            function: "C_WrapKey",
            rv: sys::CKR_FUNCTION_NOT_SUPPORTED,
        })?;
        let mut oaep = sys::CK_RSA_PKCS_OAEP_PARAMS {
            hashAlg: sys::CKM_SHA_1,
            mgf: sys::CKG_MGF1_SHA1,
            source: sys::CKZ_DATA_SPECIFIED,
            pSourceData: ptr::null_mut(),
            ulSourceDataLen: 0,
        };
        let mut rsa_aes = sys::CK_RSA_AES_KEY_WRAP_PARAMS {
            ulAESKeyBits: 256,
            pOAEPParams: &mut oaep,
        };
        let (param, param_len): (*mut c_void, usize) = match mechanism {
            RawMechanism::RsaAesKeyWrap => (
                (&raw mut rsa_aes).cast(),
                std::mem::size_of::<sys::CK_RSA_AES_KEY_WRAP_PARAMS>(),
            ),
            RawMechanism::RsaOaepSha1 => (
                (&raw mut oaep).cast(),
                std::mem::size_of::<sys::CK_RSA_PKCS_OAEP_PARAMS>(),
            ),
            // The AES key wraps take no parameter (RFC 5649's default IV).
            _ => (ptr::null_mut(), 0),
        };
        let mut mech = sys::CK_MECHANISM {
            mechanism: mechanism.id(),
            pParameter: param,
            ulParameterLen: param_len as sys::CK_ULONG,
        };
        let call = |buf: *mut u8, len: &mut sys::CK_ULONG, mech: &mut sys::CK_MECHANISM| {
            // SAFETY: `mech` points at a CK_MECHANISM whose parameter (if any) is one of the two parameter structs
            // above, alive for this whole function, with its exact size; `buf` is null (size query) or points to
            // `*len` writable bytes; the handles come from cryptoki on the same loaded module.
            unsafe { f(session, mech, wrapping_key, key, buf, len) }
        };
        // No size query first: some tokens (NSS) do the whole wrap to answer one, which would double the cost per
        // key. A buffer larger than any wrapped key byok moves (RSA-4096 PKCS#8 is about 2.4 KB) is passed at once.
        let mut buf = vec![0u8; FIRST_BUFFER];
        let mut out_len = buf.len() as sys::CK_ULONG;
        let mut rv = call(buf.as_mut_ptr(), &mut out_len, &mut mech);
        if rv == sys::CKR_BUFFER_TOO_SMALL && out_len as usize > buf.len() && out_len < (1 << 24) {
            buf = vec![0u8; out_len as usize];
            rv = call(buf.as_mut_ptr(), &mut out_len, &mut mech);
        }
        if rv != sys::CKR_OK {
            return Err(RawError {
                function: "C_WrapKey",
                rv,
            });
        }
        if out_len as usize > buf.len() {
            return Err(RawError {
                function: "C_WrapKey",
                rv: sys::CKR_GENERAL_ERROR,
            });
        }
        buf.truncate(out_len as usize);
        Ok(buf)
    }
}

/// `C_Initialize` arguments: OS locking, plus NSS's library parameters in `pReserved` when given.
/// The returned `CString` must outlive the `C_Initialize` call.
pub(crate) fn init_args(reserved: Option<&str>) -> Result<(CInitializeArgs, Option<CString>), String> {
    let flags = CInitializeFlags::OS_LOCKING_OK;
    match reserved {
        None => Ok((CInitializeArgs::new(flags), None)),
        Some(params) => {
            let c = CString::new(params).map_err(|_| "the PKCS#11 init arguments contain a NUL byte".to_owned())?;
            let ptr = NonNull::new(c.as_ptr().cast_mut().cast::<c_void>()).ok_or("null init arguments")?;
            // SAFETY: `ptr` points to a NUL-terminated string owned by `c`, which the caller keeps alive across
            // C_Initialize; modules that read pReserved (NSS) read it as such a string, others ignore it.
            let args = unsafe { CInitializeArgs::new_with_reserved(flags, ptr) };
            Ok((args, Some(c)))
        }
    }
}
