//! Modules registered with p11-kit: chosen by name (`module-name=` in a `pkcs11:` URI, RFC 7512), or, when no module
//! is named, the registered one that offers the URI's token — the token p11-kit-proxy would offer.
//!
//! byok reads p11-kit's module configuration the way p11-kit does — the package directory, then the system one,
//! then the user's, a later file overriding an earlier one of the same name, `user-config` in `pkcs11.conf` obeyed —
//! and loads only the one module chosen. The files are the administrator's and the user's own, but still read as
//! data: bounded in size and count, a name never becomes a path, and a module that p11-kit would not load in this
//! program (`enable-in` / `disable-in`) or that is remote is refused with the reason.

use std::path::{Path, PathBuf};

use crate::{Error, Pkcs11Uri};

/// A configuration file larger than this is not a module file: skipped.
const MAX_FILE: u64 = 64 * 1024;
/// At most this many files are read per directory.
const MAX_FILES: usize = 512;

const PACKAGE_DIR: &str = "/usr/share/p11-kit/modules";
const SYSTEM_DIR: &str = "/etc/pkcs11/modules";
const GLOBAL_CONF: &str = "/etc/pkcs11/pkcs11.conf";

/// One module registered with p11-kit.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RegisteredModule {
    /// The registered name: the file name without `.module`.
    pub name: String,
    /// The module's shared library (relative paths resolved against p11-kit's module directory).
    pub path: PathBuf,
    /// The file that registers it.
    pub config: PathBuf,
    /// Why p11-kit would not load it in this program, if it would not.
    pub refused: Option<String>,
}

/// Where a chosen module came from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModuleSource {
    /// Named by the caller (a flag, a variable).
    Given,
    /// The URI's `module-path=`.
    UriPath,
    /// The URI's `module-name=`, registered with p11-kit under this name.
    Registered(String),
    /// No module was named: the one registered with p11-kit (under this name) that offers the URI's token.
    Found(String),
}

/// The modules registered with p11-kit, as p11-kit would see them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct P11Kit {
    modules: Vec<RegisteredModule>,
}

impl P11Kit {
    /// The registrations of this machine and user: p11-kit's package and system directories and, unless
    /// `/etc/pkcs11/pkcs11.conf` says `user-config: none`, `~/.config/pkcs11/modules`.
    pub fn system() -> Self {
        let user = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/pkcs11/modules"));
        let user_config = std::fs::read_to_string(GLOBAL_CONF)
            .ok()
            .and_then(|text| field(&text, "user-config").map(str::to_owned));
        let dirs: Vec<PathBuf> = match (user_config.as_deref(), user) {
            (Some("none"), _) | (_, None) => vec![PACKAGE_DIR.into(), SYSTEM_DIR.into()],
            (Some("only" | "override"), Some(u)) => vec![u],
            (_, Some(u)) => vec![PACKAGE_DIR.into(), SYSTEM_DIR.into(), u],
        };
        Self::from_dirs(&dirs, &module_dir(), &program())
    }

    /// The registrations in `dirs` (later directories override earlier ones by name), relative module paths
    /// resolved against `module_dir`, `enable-in` / `disable-in` judged for `program`.
    pub fn from_dirs(dirs: &[PathBuf], module_dir: &Path, program: &str) -> Self {
        let mut modules: Vec<RegisteredModule> = Vec::new();
        for dir in dirs {
            for file in module_files(dir) {
                let Some(module) = read_module(&file, module_dir, program) else {
                    continue;
                };
                modules.retain(|m| m.name != module.name);
                modules.push(module);
            }
        }
        modules.sort_by(|a, b| a.name.cmp(&b.name));
        Self { modules }
    }

    /// Every registered module, by name.
    pub fn modules(&self) -> &[RegisteredModule] {
        &self.modules
    }

    /// The module registered as `name`, if p11-kit would load it here.
    pub fn module(&self, name: &str) -> Result<&RegisteredModule, Error> {
        let unknown = |reason: String| Error::ModuleName {
            name: name.to_owned(),
            reason,
        };
        if name.is_empty() || name.contains(['/', '\\', '\0']) {
            return Err(unknown(
                "a registered name is a file name without `.module`, not a path".into(),
            ));
        }
        let Some(module) = self.modules.iter().find(|m| m.name == name) else {
            let names: Vec<&str> = self.modules.iter().map(|m| m.name.as_str()).collect();
            return Err(unknown(if names.is_empty() {
                "no module is registered with p11-kit on this machine".into()
            } else {
                format!("p11-kit has no module of that name (registered: {})", names.join(", "))
            }));
        };
        match &module.refused {
            Some(why) => Err(unknown(format!("{} registers it, but {why}", module.config.display()))),
            None => Ok(module),
        }
    }

    /// Which module to load: `given` (a flag), else the URI's `module-path`, else its `module-name` as registered
    /// here, else the one registered module that offers the URI's token (what p11-kit-proxy would route to).
    pub fn choose(&self, given: Option<PathBuf>, uri: Option<&Pkcs11Uri>) -> Result<(PathBuf, ModuleSource), Error> {
        if let Some(path) = given {
            return Ok((path, ModuleSource::Given));
        }
        if let Some(path) = uri.and_then(|u| u.module_path.clone()) {
            return Ok((path, ModuleSource::UriPath));
        }
        if let Some(name) = uri.and_then(|u| u.module_name.as_deref()) {
            let module = self.module(name)?;
            return Ok((module.path.clone(), ModuleSource::Registered(module.name.clone())));
        }
        // What p11-kit-proxy would offer, without the proxy: it gives each C_GetFunctionList its own instance, which
        // byok's second table (for mechanism ids cryptoki cannot name) cannot share (docs/decisions.md).
        match uri.filter(|u| u.token.is_some() || u.serial.is_some()) {
            Some(uri) => self.offering(uri),
            None => Err(self.no_module()),
        }
    }

    /// The one registered module whose tokens include the one `uri` names (each loaded only to list its tokens).
    fn offering(&self, uri: &Pkcs11Uri) -> Result<(PathBuf, ModuleSource), Error> {
        let mut found: Vec<(PathBuf, &str)> = Vec::new();
        for m in self.modules.iter().filter(|m| m.refused.is_none()) {
            let config = crate::ModuleConfig {
                path: m.path.clone(),
                init_args: None,
            };
            let offers = crate::Module::load(&config)
                .and_then(|module| module.tokens())
                .is_ok_and(|tokens| tokens.iter().any(|t| t.matches(uri)));
            let same = |p: &PathBuf| std::fs::canonicalize(p).ok() == std::fs::canonicalize(&m.path).ok();
            if offers && !found.iter().any(|(p, _)| same(p)) {
                found.push((m.path.clone(), &m.name));
            }
        }
        match found.as_slice() {
            [(path, name)] => Ok((path.clone(), ModuleSource::Found((*name).to_owned()))),
            [] => Err(self.no_module()),
            several => Err(Error::AmbiguousModule(
                several.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", "),
            )),
        }
    }

    fn no_module(&self) -> Error {
        let names: Vec<&str> = self
            .modules
            .iter()
            .filter(|m| m.refused.is_none())
            .map(|m| m.name.as_str())
            .collect();
        Error::NoModule {
            registered: names.join(", "),
        }
    }
}

/// p11-kit's proxy module, when it is installed (byok refuses to load it: see [`P11Kit::choose`]).
pub fn proxy() -> Option<PathBuf> {
    let arch = format!("/usr/lib/{}-linux-gnu/p11-kit-proxy.so", std::env::consts::ARCH);
    [
        arch.as_str(),
        "/usr/lib64/p11-kit-proxy.so",
        "/usr/lib/p11-kit-proxy.so",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// p11-kit's directory for modules registered by a relative path (its build-time default on each distribution).
fn module_dir() -> PathBuf {
    let arch = format!("/usr/lib/{}-linux-gnu/pkcs11", std::env::consts::ARCH);
    [arch.as_str(), "/usr/lib64/pkcs11", "/usr/lib/pkcs11"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_dir())
        .unwrap_or_else(|| PathBuf::from(&arch))
}

/// The program name p11-kit matches `enable-in` / `disable-in` against: the executable's file name.
fn program() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

/// The `*.module` files of `dir`, sorted, hidden files skipped, at most [`MAX_FILES`].
fn module_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.ends_with(".module") && !name.starts_with('.') && p.is_file()
        })
        .take(MAX_FILES)
        .collect();
    files.sort();
    files
}

/// One registration, or `None` for a file that is not one (too large, not text, no `module:`/`remote:`).
fn read_module(file: &Path, module_dir: &Path, program: &str) -> Option<RegisteredModule> {
    if std::fs::metadata(file).ok()?.len() > MAX_FILE {
        return None;
    }
    let text = std::fs::read_to_string(file).ok()?;
    let name = file.file_stem()?.to_string_lossy().into_owned();
    let listed =
        |key: &str| field(&text, key).map(|v| v.split([',', ' ']).filter(|s| !s.is_empty()).any(|p| p == program));
    let refused = if field(&text, "remote").is_some() {
        Some("it is a remote module (p11-kit RPC), which byok does not load by name".to_owned())
    } else if listed("enable-in") == Some(false) {
        Some(format!("its `enable-in` does not list `{program}`"))
    } else if listed("disable-in") == Some(true) {
        Some(format!("its `disable-in` lists `{program}`"))
    } else {
        None
    };
    let path = match field(&text, "module") {
        Some(m) if Path::new(m).is_absolute() => PathBuf::from(m),
        Some(m) => module_dir.join(m),
        None if refused.is_some() => PathBuf::new(),
        None => return None,
    };
    Some(RegisteredModule {
        name,
        path,
        config: file.to_owned(),
        refused,
    })
}

/// The value of `key: value` in p11-kit's configuration syntax (`#` comments, the last occurrence wins).
fn field<'t>(text: &'t str, key: &str) -> Option<&'t str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim())
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str, files: &[(&str, &str)]) -> PathBuf {
        let d = std::env::temp_dir().join(format!("byok-p11kit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        for (f, text) in files {
            std::fs::write(d.join(f), text).expect("write");
        }
        d
    }

    #[test]
    fn registrations_are_read_as_p11kit_reads_them() {
        let package = dir(
            "package",
            &[
                (
                    "softhsm2.module",
                    "# comment\nmodule: /usr/lib/softhsm/libsofthsm2.so\n",
                ),
                ("relative.module", "module: librel.so\n"),
                ("notes.txt", "module: /not/a/module.so\n"),
                ("remote.module", "remote: |ssh host p11-kit remote\n"),
                ("nopath.module", "critical: yes\n"),
            ],
        );
        let user = dir(
            "user",
            &[
                ("softhsm2.module", "module: /opt/softhsm.so\n"),
                (
                    "mine.module",
                    "module: /opt/mine.so\nenable-in: other-program, byok-cli\n",
                ),
                ("theirs.module", "module: /opt/theirs.so\nenable-in: other-program\n"),
                ("off.module", "module: /opt/off.so\ndisable-in: byok-cli\n"),
            ],
        );
        let kit = P11Kit::from_dirs(&[package.clone(), user.clone()], Path::new("/lib/pkcs11"), "byok-cli");
        let names: Vec<&str> = kit.modules().iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["mine", "off", "relative", "remote", "softhsm2", "theirs"]);
        // The user's file overrides the package's of the same name; relative paths go to the module directory.
        assert_eq!(
            kit.module("softhsm2").expect("registered").path,
            PathBuf::from("/opt/softhsm.so")
        );
        assert_eq!(
            kit.module("relative").expect("registered").path,
            PathBuf::from("/lib/pkcs11/librel.so")
        );
        assert_eq!(
            kit.module("mine").expect("enabled here").path,
            PathBuf::from("/opt/mine.so")
        );
        // Refusals say why, and what there is.
        let refusal = |name: &str| kit.module(name).expect_err(name).to_string();
        assert!(refusal("theirs").contains("`enable-in` does not list `byok-cli`"));
        assert!(refusal("off").contains("`disable-in` lists `byok-cli`"));
        assert!(refusal("remote").contains("remote module"));
        assert!(refusal("nope").contains("registered: mine, off, relative, remote, softhsm2, theirs"));
        assert!(refusal("../softhsm2").contains("not a path"));
        assert!(refusal("").contains("not a path"));
        for d in [package, user] {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    #[test]
    fn the_module_is_chosen_by_flag_then_uri_then_name() {
        let d = dir("choose", &[("soft.module", "module: /opt/soft.so\n")]);
        let kit = P11Kit::from_dirs(std::slice::from_ref(&d), Path::new("/lib"), "byok-cli");
        let uri = |s: &str| s.parse::<Pkcs11Uri>().expect("uri");
        let by_name = uri("pkcs11:token=t?module-name=soft");
        assert_eq!(
            kit.choose(Some("/flag.so".into()), Some(&by_name)),
            Ok((PathBuf::from("/flag.so"), ModuleSource::Given))
        );
        assert_eq!(
            kit.choose(None, Some(&by_name)),
            Ok((PathBuf::from("/opt/soft.so"), ModuleSource::Registered("soft".into())))
        );
        let both = uri("pkcs11:token=t?module-name=soft&module-path=/p.so");
        assert_eq!(
            kit.choose(None, Some(&both)),
            Ok((PathBuf::from("/p.so"), ModuleSource::UriPath))
        );
        assert!(matches!(
            kit.choose(None, Some(&uri("pkcs11:token=t?module-name=other"))),
            Err(Error::ModuleName { .. })
        ));
        // Nothing named: a refusal that names what is registered.
        assert_eq!(
            kit.choose(None, None),
            Err(Error::NoModule {
                registered: "soft".into()
            })
        );
        let _ = std::fs::remove_dir_all(d);
    }
}
