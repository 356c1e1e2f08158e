//! The soft tokens `cargo xtask setup` makes (see `target/hsm/env.json`), and `byok-cli` pointed at each.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

use crate::{binary, byok_cli, run, stderr, stdout};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `target/hsm/env.json`: modules, init args, PIN files.
pub fn env() -> &'static Value {
    static ENV: OnceLock<Value> = OnceLock::new();
    ENV.get_or_init(|| {
        let path = workspace().join("target/hsm/env.json");
        let text = std::fs::read(&path).unwrap_or_else(|_| {
            panic!(
                "{} is missing: run `cargo xtask setup` to make the test tokens",
                path.display()
            )
        });
        serde_json::from_slice(&text).expect("env.json")
    })
}

/// A test token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token {
    /// SoftHSM 2.6.1, token `byok-src`.
    SoftHsm,
    /// NSS softokn, its internal token.
    Nss,
    /// openCryptoki 3.27 in its forky root, token `byok-ock`.
    Ock,
    /// Kryoptic 1.5 (`tests/kryoptic`), token `byok-kry`.
    Kryoptic,
}

impl Token {
    /// The token's URI.
    pub fn uri(self) -> String {
        match self {
            Self::SoftHsm => "pkcs11:token=byok-src".into(),
            Self::Nss => "pkcs11:token=NSS%20Certificate%20DB".into(),
            Self::Ock => "pkcs11:token=byok-ock".into(),
            Self::Kryoptic => "pkcs11:token=byok-kry".into(),
        }
    }

    /// A directory the command can write to, and its path as the command sees it.
    pub fn workdir(self, name: &str) -> (PathBuf, String) {
        let unique = format!("{name}-{}", std::process::id());
        match self {
            Self::Ock => {
                let host = Path::new(env()["opencryptoki"]["work"].as_str().expect("work")).join(&unique);
                std::fs::create_dir_all(&host).expect("work dir");
                (host, format!("/work/{unique}"))
            }
            _ => {
                let host = workspace().join("target/hsm/work").join(&unique);
                std::fs::create_dir_all(&host).expect("work dir");
                let shown = host.display().to_string();
                (host, shown)
            }
        }
    }

    /// `byok-cli ARGS` on this token, with the module, init args and PIN it needs.
    pub fn cli(self, args: &[&str]) -> Output {
        run(&mut self.command(args))
    }

    /// The `byok-cli ARGS` command on this token, not yet run (to add environment variables).
    pub fn command(self, args: &[&str]) -> Command {
        let e = env();
        let mut cmd = match self {
            Self::Ock => {
                static COPIED: OnceLock<String> = OnceLock::new();
                let inside = COPIED.get_or_init(|| {
                    let root = Path::new(e["opencryptoki"]["root"].as_str().expect("root"));
                    let name = format!("/opt/byok/byok-cli-{}", std::process::id());
                    std::fs::copy(binary("byok-cli"), root.join(name.trim_start_matches('/')))
                        .expect("copy the binary");
                    name
                });
                let mut c = Command::new("chroot");
                c.arg(e["opencryptoki"]["root"].as_str().expect("root")).arg(inside);
                c
            }
            _ => byok_cli(),
        };
        cmd.args(args);
        match self {
            Self::SoftHsm => {
                cmd.env("SOFTHSM2_CONF", e["softhsm"]["conf"].as_str().expect("conf"))
                    .args(["--pkcs11-module", e["softhsm"]["module"].as_str().expect("module")])
                    .args(["--pin-file", e["pin_file"].as_str().expect("pin")]);
            }
            Self::Nss => {
                cmd.args(["--pkcs11-module", e["nss"]["module"].as_str().expect("module")])
                    .args(["--pkcs11-init-args", e["nss"]["init_args"].as_str().expect("init")]);
            }
            Self::Kryoptic => {
                let k = &e["kryoptic"];
                cmd.env("KRYOPTIC_CONF", k["conf"].as_str().expect("conf"))
                    .args(["--pkcs11-module", k["module"].as_str().expect("module")])
                    .args(["--pin-file", k["pin_file"].as_str().expect("pin")]);
            }
            Self::Ock => {
                cmd.args(["--pkcs11-module", e["opencryptoki"]["module"].as_str().expect("module")])
                    .args([
                        "--pin-file",
                        e["opencryptoki"]["pin_file_in_root"].as_str().expect("pin"),
                    ]);
            }
        }
        cmd
    }

    /// `byok-cli --output json ARGS`, which must succeed.
    pub fn json(self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend(args);
        let out = self.cli(&all);
        assert!(out.status.success(), "{self:?} {args:?}: {}", stderr(&out));
        serde_json::from_str(&stdout(&out)).expect("JSON result")
    }

    /// Generates a key with a label unique to this test process.
    pub fn generate(self, spec: &[&str], name: &str) -> Value {
        let label = format!("{name}-{}", std::process::id());
        let uri = self.uri();
        let mut args = vec!["hsm", "generate", "--token", &uri, "--label", &label];
        args.extend(spec);
        self.json(&args)
    }
}

/// `wrap --kek-file KEK --kek-kid KID --key URI --out OUT`: the arguments of a wrap to a KEK file in the tests.
pub fn wrap_args<'a>(kek: &'a str, uri: &'a str, out: &'a str) -> [&'a str; 9] {
    [
        "wrap",
        "--kek-file",
        kek,
        "--kek-kid",
        crate::KID,
        "--key",
        uri,
        "--out",
        out,
    ]
}

/// The fault-injecting PKCS#11 module (`tests/pkcs11-shim`), built on first use, and the SoftHSM module it forwards
/// to. Faults are chosen by `BYOK_SHIM_*` variables in the environment of the process that loads it.
pub fn shim_over_softhsm() -> (PathBuf, PathBuf) {
    let softhsm = PathBuf::from(env()["softhsm"]["module"].as_str().expect("module"));
    (shim_over(), softhsm)
}

/// The shim module itself, built on first use; `BYOK_SHIM_TARGET` names the module it forwards to.
pub fn shim_over() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let shim = BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "--package", "byok-pkcs11-shim"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        assert!(cmd.status().expect("cargo runs").success(), "cannot build the shim");
        let bin = binary("byok-cli");
        let dir = bin.parent().expect("target/<profile>");
        let path = dir.join(format!("libbyok_pkcs11_shim{}", std::env::consts::DLL_SUFFIX));
        assert!(path.is_file(), "{} is missing", path.display());
        path
    });
    shim.clone()
}
