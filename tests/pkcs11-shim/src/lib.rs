//! A PKCS#11 module for tests: it forwards every call to a real module and injects, on request, the faults that real
//! HSMs show and soft tokens do not. Configured by the environment of the process that loads it:
//!
//! - `BYOK_SHIM_TARGET` (required): the real module's path.
//! - `BYOK_SHIM_MAX_SESSIONS=N`: `C_OpenSession` fails with CKR_SESSION_COUNT while N sessions are open.
//! - `BYOK_SHIM_REMOVE_AFTER_WRAPS=N`: after N successful `C_WrapKey` calls the token is "removed": from then on
//!   `C_WrapKey`, `C_GenerateKey`, `C_FindObjectsInit`, `C_GetTokenInfo`, `C_GetSessionInfo` and `C_OpenSession`
//!   return CKR_DEVICE_REMOVED.
//! - `BYOK_SHIM_WRAP_WANTS=N`: `C_WrapKey` into a buffer shorter than N bytes fails with CKR_BUFFER_TOO_SMALL and
//!   asks for N (a token that wants more room than the result needs).
//!
//! - `BYOK_SHIM_WRAP_RV=N`: `C_WrapKey` of a token object (a real target, not a self-test secret) returns N, a
//!   CK_RV in decimal or `0x` hex: the refusals a vendor's HSM gives.
//! - `BYOK_SHIM_PERSONALITY=NAME`: the module behaves, where BYOK is concerned, like a vendor's
//!   (`personality.rs`, over NSS softokn, whose 0x210B is RFC 5649): `luna`, `luna-policy1-off`, `luna-trusted`,
//!   `cloudhsm`, `cloudhsm-not-owner`, `yubihsm`, `nshield`. `BYOK_SHIM_MESSAGE_LIMIT=N` sets the YubiHSM-like
//!   message buffer (default 3,136 bytes, YH_MSG_BUF_SIZE).
//!
//! Only `C_GetFunctionList` is exported: callers take every function from its table.

// A PKCS#11 module is C ABI: raw pointers in and out. Each block says why it is sound.
#![allow(unsafe_code)]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use cryptoki_sys as sys;

mod personality;

use personality::Personality;

pub(crate) struct Shim {
    /// The real module's table (copied).
    pub(crate) real: sys::CK_FUNCTION_LIST,
    /// The table handed out: the real one with the overrides below.
    table: sys::CK_FUNCTION_LIST,
    max_sessions: Option<u64>,
    remove_after_wraps: Option<u64>,
    wrap_wants: Option<u64>,
    wrap_rv: Option<u64>,
    pub(crate) personality: Option<Personality>,
    open_sessions: AtomicU64,
    wraps: AtomicU64,
    removed: AtomicBool,
    // Keeps the real module loaded for as long as its functions are called.
    _lib: sys::Pkcs11,
}

// SAFETY: the tables are plain function pointers and a version, written once before the `OnceLock` publishes them
// and only read afterwards; the counters are atomics; the real module was initialised by the caller with the
// locking it asked for, which is what makes calling it from several threads allowed.
unsafe impl Sync for Shim {}
// SAFETY: as for `Sync`; nothing in `Shim` is tied to the thread that made it.
unsafe impl Send for Shim {}

static SHIM: OnceLock<Result<Shim, String>> = OnceLock::new();

fn setting(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn load() -> Result<Shim, String> {
    let target = std::env::var("BYOK_SHIM_TARGET").map_err(|_| "BYOK_SHIM_TARGET is not set".to_owned())?;
    // SAFETY: loading a library runs its initialisers; the test names a PKCS#11 module it installed.
    let lib = unsafe { sys::Pkcs11::new(&target) }.map_err(|e| format!("{target}: {e}"))?;
    let mut list: *mut sys::CK_FUNCTION_LIST = std::ptr::null_mut();
    // SAFETY: `list` is a valid place for the module to store its table pointer.
    let rv = unsafe { lib.C_GetFunctionList(&mut list) };
    if rv != sys::CKR_OK || list.is_null() {
        return Err(format!("{target}: C_GetFunctionList returned {rv:#x}"));
    }
    // SAFETY: the module returned CKR_OK and a non-null pointer to its table, valid while `lib` is loaded; copied.
    let real = unsafe { *list };
    let mut table = real;
    table.C_GetFunctionList = Some(C_GetFunctionList);
    table.C_Finalize = Some(finalize);
    table.C_OpenSession = Some(open_session);
    table.C_CloseSession = Some(close_session);
    table.C_CloseAllSessions = Some(close_all_sessions);
    table.C_WrapKey = Some(wrap_key);
    table.C_GenerateKey = Some(generate_key);
    table.C_FindObjectsInit = Some(find_objects_init);
    table.C_GetTokenInfo = Some(get_token_info);
    table.C_GetSessionInfo = Some(get_session_info);
    let personality = match std::env::var("BYOK_SHIM_PERSONALITY") {
        Ok(name) => Some(Personality::named(&name, setting("BYOK_SHIM_MESSAGE_LIMIT"))?),
        Err(_) => None,
    };
    if personality.is_some() {
        personality::install(&mut table);
    }
    Ok(Shim {
        real,
        table,
        max_sessions: setting("BYOK_SHIM_MAX_SESSIONS"),
        remove_after_wraps: setting("BYOK_SHIM_REMOVE_AFTER_WRAPS"),
        wrap_wants: setting("BYOK_SHIM_WRAP_WANTS"),
        wrap_rv: std::env::var("BYOK_SHIM_WRAP_RV")
            .ok()
            .and_then(|v| match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => v.parse().ok(),
            }),
        personality,
        open_sessions: AtomicU64::new(0),
        wraps: AtomicU64::new(0),
        removed: AtomicBool::new(false),
        _lib: lib,
    })
}

pub(crate) fn shim() -> &'static Shim {
    match SHIM.get_or_init(load) {
        Ok(s) => s,
        // Only reachable after C_GetFunctionList succeeded, which needs the shim loaded.
        Err(_) => unreachable!("the table is handed out only when the shim loaded"),
    }
}

/// The exported entry point.
///
/// # Safety
/// `list` must be a valid place to store a pointer (PKCS#11's contract for every module).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetFunctionList(list: *mut *mut sys::CK_FUNCTION_LIST) -> sys::CK_RV {
    if list.is_null() {
        return sys::CKR_ARGUMENTS_BAD;
    }
    match SHIM.get_or_init(load) {
        Ok(s) => {
            // SAFETY: `list` is non-null and, by the caller's contract, writable. The table is static and callers
            // only read it (PKCS#11: the application must not modify it).
            unsafe { *list = std::ptr::from_ref(&s.table).cast_mut() };
            sys::CKR_OK
        }
        Err(_) => sys::CKR_GENERAL_ERROR,
    }
}

macro_rules! real {
    ($name:ident) => {
        shim()
            .real
            .$name
            .expect(concat!("the real module has ", stringify!($name)))
    };
}

fn removed() -> bool {
    shim().removed.load(Ordering::Relaxed)
}

unsafe extern "C" fn finalize(reserved: *mut std::ffi::c_void) -> sys::CK_RV {
    shim().open_sessions.store(0, Ordering::Relaxed);
    // SAFETY: forwarded unchanged under the caller's contract.
    unsafe { real!(C_Finalize)(reserved) }
}

unsafe extern "C" fn open_session(
    slot: sys::CK_SLOT_ID,
    flags: sys::CK_FLAGS,
    app: *mut std::ffi::c_void,
    notify: sys::CK_NOTIFY,
    session: *mut sys::CK_SESSION_HANDLE,
) -> sys::CK_RV {
    let s = shim();
    if removed() {
        return sys::CKR_DEVICE_REMOVED;
    }
    if s.max_sessions
        .is_some_and(|max| s.open_sessions.load(Ordering::Relaxed) >= max)
    {
        return sys::CKR_SESSION_COUNT;
    }
    // SAFETY: forwarded unchanged under the caller's contract.
    let rv = unsafe { real!(C_OpenSession)(slot, flags, app, notify, session) };
    if rv == sys::CKR_OK {
        s.open_sessions.fetch_add(1, Ordering::Relaxed);
    }
    rv
}

unsafe extern "C" fn close_session(session: sys::CK_SESSION_HANDLE) -> sys::CK_RV {
    // SAFETY: forwarded unchanged under the caller's contract.
    let rv = unsafe { real!(C_CloseSession)(session) };
    if rv == sys::CKR_OK {
        let _ = shim()
            .open_sessions
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
    rv
}

unsafe extern "C" fn close_all_sessions(slot: sys::CK_SLOT_ID) -> sys::CK_RV {
    // SAFETY: forwarded unchanged under the caller's contract.
    let rv = unsafe { real!(C_CloseAllSessions)(slot) };
    shim().open_sessions.store(0, Ordering::Relaxed);
    rv
}

unsafe extern "C" fn wrap_key(
    session: sys::CK_SESSION_HANDLE,
    mechanism: *mut sys::CK_MECHANISM,
    wrapping_key: sys::CK_OBJECT_HANDLE,
    key: sys::CK_OBJECT_HANDLE,
    out: *mut sys::CK_BYTE,
    out_len: *mut sys::CK_ULONG,
) -> sys::CK_RV {
    let s = shim();
    if removed() {
        return sys::CKR_DEVICE_REMOVED;
    }
    if let Some(wants) = s.wrap_wants
        && !out.is_null()
        && !out_len.is_null()
    {
        // SAFETY: `out_len` is non-null and, by the caller's contract, points to the buffer's length.
        let given = unsafe { *out_len };
        if given < wants {
            // SAFETY: as above; PKCS#11 has the module report the length it needs here.
            unsafe { *out_len = wants };
            return sys::CKR_BUFFER_TOO_SMALL;
        }
    }
    if let Some(rv) = s.wrap_rv
        && personality::boolean(session, key, sys::CKA_TOKEN) == Some(true)
    {
        return rv;
    }
    let rv = match &s.personality {
        // SAFETY: forwarded under the caller's contract; the personality only renumbers the mechanism or refuses.
        Some(p) => unsafe { p.wrap_key(session, mechanism, wrapping_key, key, out, out_len) },
        // SAFETY: forwarded unchanged under the caller's contract.
        None => unsafe { real!(C_WrapKey)(session, mechanism, wrapping_key, key, out, out_len) },
    };
    if rv == sys::CKR_OK && !out.is_null() {
        let done = s.wraps.fetch_add(1, Ordering::Relaxed) + 1;
        if s.remove_after_wraps.is_some_and(|n| done >= n) {
            s.removed.store(true, Ordering::Relaxed);
        }
    }
    rv
}

unsafe extern "C" fn generate_key(
    session: sys::CK_SESSION_HANDLE,
    mechanism: *mut sys::CK_MECHANISM,
    template: *mut sys::CK_ATTRIBUTE,
    count: sys::CK_ULONG,
    key: *mut sys::CK_OBJECT_HANDLE,
) -> sys::CK_RV {
    if removed() {
        return sys::CKR_DEVICE_REMOVED;
    }
    // SAFETY: forwarded unchanged under the caller's contract.
    unsafe { real!(C_GenerateKey)(session, mechanism, template, count, key) }
}

unsafe extern "C" fn find_objects_init(
    session: sys::CK_SESSION_HANDLE,
    template: *mut sys::CK_ATTRIBUTE,
    count: sys::CK_ULONG,
) -> sys::CK_RV {
    if removed() {
        return sys::CKR_DEVICE_REMOVED;
    }
    // SAFETY: forwarded unchanged under the caller's contract.
    unsafe { real!(C_FindObjectsInit)(session, template, count) }
}

unsafe extern "C" fn get_token_info(slot: sys::CK_SLOT_ID, info: *mut sys::CK_TOKEN_INFO) -> sys::CK_RV {
    if removed() {
        return sys::CKR_DEVICE_REMOVED;
    }
    // SAFETY: forwarded unchanged under the caller's contract.
    let rv = unsafe { real!(C_GetTokenInfo)(slot, info) };
    if rv == sys::CKR_OK {
        personality::patch_token_info(info);
    }
    rv
}

unsafe extern "C" fn get_session_info(session: sys::CK_SESSION_HANDLE, info: *mut sys::CK_SESSION_INFO) -> sys::CK_RV {
    if removed() {
        return sys::CKR_DEVICE_REMOVED;
    }
    // SAFETY: forwarded unchanged under the caller's contract.
    unsafe { real!(C_GetSessionInfo)(session, info) }
}
