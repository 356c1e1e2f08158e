//! Loading a PKCS#11 module and finding tokens.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use cryptoki::context::Pkcs11;
use cryptoki::error::RvError;
use cryptoki::slot::Slot;

use crate::raw::RawModule;
use crate::session::{Pin, TokenSession};
use crate::{Error, Pkcs11Uri, Vendor};

/// Where the module is and how to initialise it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleConfig {
    /// The module's shared library.
    pub path: PathBuf,
    /// Library parameters passed in `C_Initialize`'s `pReserved` (NSS softokn needs them).
    pub init_args: Option<String>,
}

/// The library's own description (serialised as `hsm info --output json` shows it).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ModuleInfo {
    /// The module's path.
    pub path: PathBuf,
    /// `manufacturerID`.
    pub manufacturer: String,
    /// `libraryDescription`.
    pub description: String,
    /// `libraryVersion`.
    pub version: String,
    /// The Cryptoki version it implements.
    pub cryptoki_version: String,
}

/// A token in a slot (serialised as `hsm info --output json` shows it).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TokenInfo {
    /// The slot id (it can change between runs: select tokens by label or serial).
    pub slot_id: u64,
    /// `label`.
    pub label: String,
    /// `manufacturerID`.
    pub manufacturer: String,
    /// `model`.
    pub model: String,
    /// `serialNumber`.
    pub serial: String,
    /// Firmware version.
    pub firmware: String,
    /// Whether the token is initialized.
    pub initialized: bool,
    /// Whether a user must log in.
    pub login_required: bool,
    /// Whose HSM it is, by what the module and the token say about themselves.
    pub vendor: Vendor,
}

impl std::fmt::Display for ModuleInfo {
    /// Two lines: the module's path, and the library's description.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "module   {}\n  library  {} {} (Cryptoki {}), {}",
            self.path.display(),
            self.description,
            self.version,
            self.cryptoki_version,
            self.manufacturer
        )
    }
}

impl std::fmt::Display for TokenInfo {
    /// One line: label, serial, maker, slot and vendor.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "token    `{}` serial {} — {} (slot {}, {}{})",
            self.label,
            self.serial,
            self.describe(),
            self.slot_id,
            self.vendor,
            if self.initialized { "" } else { ", not initialized" }
        )
    }
}

impl TokenInfo {
    /// Whether the URI's token attributes (`token=`, `serial=`, `manufacturer=`, `model=`) name this token.
    pub fn matches(&self, uri: &Pkcs11Uri) -> bool {
        uri.token.as_ref().is_none_or(|l| *l == self.label)
            && uri.serial.as_ref().is_none_or(|s| *s == self.serial)
            && uri.manufacturer.as_ref().is_none_or(|m| *m == self.manufacturer)
            && uri.model.as_ref().is_none_or(|m| *m == self.model)
    }

    /// `manufacturer model, firmware x.y`, for the blob's generator field.
    pub fn describe(&self) -> String {
        format!("{} {} (firmware {})", self.manufacturer, self.model, self.firmware)
    }
}

/// A loaded, initialised PKCS#11 module. Finalised when dropped — only if this `Module` initialised it: in a host
/// process where another component initialised the same library first, byok uses it and leaves it initialised. It is
/// `Sync`: sessions on it may be opened and used on several threads at once, one thread per session (`TokenSession` is
/// `Send`, not `Sync`).
pub struct Module {
    ctx: Option<Pkcs11>,
    /// Whether `C_Initialize` succeeded here (not CKR_CRYPTOKI_ALREADY_INITIALIZED): only then is `C_Finalize` ours.
    initialized_here: bool,
    pub(crate) raw: RawModule,
    path: PathBuf,
    /// The library's manufacturer and description, as it reported them at load.
    library: String,
    _init_args: Option<CString>,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        if let Some(ctx) = self.ctx.take()
            && self.initialized_here
        {
            // Nothing useful can be done if finalising fails while dropping.
            let _ = ctx.finalize();
        }
    }
}

impl Module {
    /// Loads and initialises the module (OS locking; `pReserved` from `init_args`).
    pub fn load(config: &ModuleConfig) -> Result<Self, Error> {
        let path = config.path.clone();
        let load_err = |reason: String| Error::ModuleLoad {
            path: path.clone(),
            reason,
        };
        if !config.path.is_file() {
            return Err(load_err(if config.path.exists() {
                "it is not a file".into()
            } else {
                "no such file".into()
            }));
        }
        let ctx = Pkcs11::new(&config.path).map_err(|e| {
            load_err(match e {
                cryptoki::error::Error::MissingSymbol(_) | cryptoki::error::Error::LibraryLoading(_) => {
                    format!("not a PKCS#11 library ({e})")
                }
                other => other.to_string(),
            })
        })?;
        let (args, keep) = crate::raw::init_args(config.init_args.as_deref()).map_err(load_err)?;
        let initialized_here = match ctx.initialize(args) {
            Ok(()) => true,
            // Another user in this process (or an earlier `Module`) initialised it: use it, never finalise it.
            Err(cryptoki::error::Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => false,
            Err(e) => return Err(e.into()),
        };
        let raw = RawModule::load(&config.path).map_err(load_err)?;
        if !raw.is_initialised() {
            if initialized_here {
                let _ = ctx.finalize();
            }
            return Err(load_err(
                "it hands out a separate module instance per C_GetFunctionList (p11-kit-proxy does), and byok needs \
                 one: name the module behind it, e.g. ?module-name=NAME for a module registered with p11-kit"
                    .into(),
            ));
        }
        // Read once: every token's vendor is recognised partly by what the library says of itself.
        let lib = ctx.get_library_info()?;
        let library = format!("{} {}", lib.manufacturer_id(), lib.library_description());
        Ok(Self {
            library,
            ctx: Some(ctx),
            initialized_here,
            raw,
            path: config.path.clone(),
            _init_args: keep,
        })
    }

    pub(crate) fn ctx(&self) -> &Pkcs11 {
        self.ctx.as_ref().expect("the context lives until drop")
    }

    /// The module's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The library's description.
    pub fn info(&self) -> Result<ModuleInfo, Error> {
        let i = self.ctx().get_library_info()?;
        Ok(ModuleInfo {
            path: self.path.clone(),
            manufacturer: i.manufacturer_id().trim().to_owned(),
            description: i.library_description().trim().to_owned(),
            version: i.library_version().to_string(),
            cryptoki_version: i.cryptoki_version().to_string(),
        })
    }

    /// Every slot with a token present.
    pub fn tokens(&self) -> Result<Vec<TokenInfo>, Error> {
        let slots = self.ctx().get_slots_with_token()?;
        slots.into_iter().map(|s| self.token_info(s)).collect()
    }

    pub(crate) fn token_info(&self, slot: Slot) -> Result<TokenInfo, Error> {
        let t = self.ctx().get_token_info(slot)?;
        let vendor = Vendor::detect(&[&self.library, t.manufacturer_id(), t.model()]);
        Ok(TokenInfo {
            slot_id: slot.id(),
            label: t.label().trim().to_owned(),
            manufacturer: t.manufacturer_id().trim().to_owned(),
            model: t.model().trim().to_owned(),
            serial: t.serial_number().trim().to_owned(),
            firmware: t.firmware_version().to_string(),
            initialized: t.token_initialized(),
            login_required: t.login_required(),
            vendor,
        })
    }

    /// Finds the one token the URI names (by `token=`, `serial=`, `manufacturer=`, `model=`; never by slot number,
    /// which moves) and opens a read-write session, logged in with `pin` when the token needs it.
    pub fn open(&self, uri: &Pkcs11Uri, pin: Option<&Pin>) -> Result<TokenSession<'_>, Error> {
        let slots = self.ctx().get_slots_with_token()?;
        let mut matches = Vec::new();
        let mut available = Vec::new();
        for slot in slots {
            let info = self.token_info(slot)?;
            available.push(if info.initialized {
                format!("`{}` (serial {})", info.label, info.serial)
            } else {
                format!("an uninitialized token in slot {}", info.slot_id)
            });
            if info.matches(uri) {
                matches.push((slot, info));
            }
        }
        let selector = token_selector(uri);
        let (slot, info) = match matches.len() {
            1 => matches.remove(0),
            0 => {
                return Err(Error::NoToken {
                    selector,
                    available: if available.is_empty() {
                        "none".into()
                    } else {
                        available.join(", ")
                    },
                });
            }
            count => return Err(Error::AmbiguousToken { selector, count }),
        };
        if !info.initialized {
            return Err(Error::TokenNotInitialized(info.label));
        }
        TokenSession::open(self, slot, info, pin)
    }
}

fn token_selector(uri: &Pkcs11Uri) -> String {
    let mut parts = Vec::new();
    if let Some(t) = &uri.token {
        parts.push(format!("token={t}"));
    }
    if let Some(s) = &uri.serial {
        parts.push(format!("serial={s}"));
    }
    if let Some(m) = &uri.manufacturer {
        parts.push(format!("manufacturer={m}"));
    }
    if let Some(m) = &uri.model {
        parts.push(format!("model={m}"));
    }
    if parts.is_empty() {
        "any token".into()
    } else {
        parts.join(";")
    }
}

#[cfg(test)]
mod thread_tests {
    /// A pool of sessions on several threads needs these; the compiler checks them here.
    #[test]
    fn modules_are_shared_and_sessions_move() {
        fn sync<T: Sync + Send>() {}
        fn send<T: Send>() {}
        sync::<super::Module>();
        send::<crate::TokenSession<'static>>();
    }
}
