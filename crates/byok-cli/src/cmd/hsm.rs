//! The HSM source: module and PIN options shared by `wrap --key` and `hsm …`, and the `hsm` subcommands.

use std::io::IsTerminal;
use std::path::PathBuf;

use byok_encoding::{Curve, KeyKind, Kty};
use byok_pkcs11::{Error as HsmError, Module, ModuleConfig, P11Kit, Pin, Pkcs11Uri, TokenSession};
use serde_json::json;

use crate::exit::{CliError, Exit, Result};
use crate::stdout_error;
use crate::ui::Ui;
use byok_transfer::files;

/// How to reach the HSM. Shared by `wrap --key` and every `hsm` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct HsmArgs {
    /// The PKCS#11 module (shared library); else module-path= or module-name= (p11-kit) in the URI.
    #[arg(long, value_name = "LIB", env = "BYOK_PKCS11_MODULE", hide_env_values = true)]
    pkcs11_module: Option<PathBuf>,

    /// Library parameters for C_Initialize (NSS softokn needs them).
    #[arg(long, value_name = "STRING", env = "BYOK_PKCS11_INIT_ARGS", hide_env_values = true)]
    pkcs11_init_args: Option<String>,

    /// Read the user PIN from this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with = "pin_file")]
    pin_env: Option<String>,

    /// Read the user PIN from this file (one trailing newline is ignored).
    #[arg(long, value_name = "FILE")]
    pin_file: Option<PathBuf>,
}

pub(crate) fn error(e: HsmError) -> CliError {
    let (exit, hint) = classify(&e);
    CliError {
        exit,
        error: anyhow::Error::new(e),
        hint,
    }
}

/// An HSM error's exit code, and how to fix it when byok knows.
pub(crate) fn classify(e: &HsmError) -> (Exit, Option<String>) {
    let hint = match e {
        HsmError::ModuleLoad { .. } => Some(
            "name the token's PKCS#11 library with --pkcs11-module, e.g. /usr/lib/softhsm/libsofthsm2.so".to_owned(),
        ),
        HsmError::NoModule { .. } | HsmError::ModuleName { .. } => Some(
            "pass --pkcs11-module /path/to/lib.so, set BYOK_PKCS11_MODULE, or add ?module-path=… or ?module-name=… \
             (a module registered with p11-kit) to the URI"
                .to_owned(),
        ),
        HsmError::Pkcs11 {
            code: byok_pkcs11::Ckr::PinIncorrect,
            ..
        } => Some("check the PIN; tokens lock after a few wrong attempts".to_owned()),
        HsmError::PinRequired(_) => {
            Some("give the PIN with --pin-file FILE, --pin-env VAR or pin-source=file:… in the URI".to_owned())
        }
        HsmError::NotExtractable(_) => Some(
            "BYOK moves a key out of the HSM wrapped, so it must have CKA_EXTRACTABLE=true; the attribute cannot be \
             turned on later: generate the key extractable (byok-cli hsm generate does) and keep it sensitive"
                .to_owned(),
        ),
        HsmError::AmbiguousKey { .. } => Some("add id=%.. or type= to the URI to name exactly one key".to_owned()),
        HsmError::Nonconformant(_) | HsmError::UnsafeForKey { .. } => Some(
            "use a token or firmware that wraps correctly; or force a path with --wrap-mechanism and accept the \
             risk with --allow-nonconformant-wrap (the blob's generator will say so)"
                .to_owned(),
        ),
        other => other.fix().map(str::to_owned),
    };
    let exit = if matches!(
        e,
        HsmError::Uri(_) | HsmError::NoModule { .. } | HsmError::ModuleName { .. }
    ) {
        Exit::Usage
    } else {
        Exit::Hsm
    };
    (exit, hint)
}

pub(crate) fn parse_uri(s: &str) -> std::result::Result<Pkcs11Uri, String> {
    s.parse::<Pkcs11Uri>().map_err(|e| e.to_string())
}

impl HsmArgs {
    /// Loads the module named by the flag (or its environment variable), else by the URI (path, then p11-kit name).
    pub(crate) fn module(&self, uri: Option<&Pkcs11Uri>) -> Result<Module> {
        let (path, _) = P11Kit::system()
            .choose(self.pkcs11_module.clone(), uri)
            .map_err(error)?;
        let init_args = self.pkcs11_init_args.clone();
        Module::load(&ModuleConfig { path, init_args }).map_err(error)
    }

    /// The PIN: --pin-env, --pin-file, the URI's pin-source, or a prompt when stdin is a terminal.
    pub(crate) fn pin(&self, uri: Option<&Pkcs11Uri>) -> Result<Option<Pin>> {
        if let Some(var) = &self.pin_env {
            let value = std::env::var(var)
                .map_err(|_| CliError::msg(Exit::Usage, format!("--pin-env {var}: the variable {var} is not set")))?;
            return non_empty(value, &format!("the variable {var}")).map(Some);
        }
        let file = self.pin_file.clone().or_else(|| uri.and_then(Pkcs11Uri::pin_file));
        if let Some(path) = file {
            warn_if_shared(&path);
            return Ok(Some(files::read_pin(&path)?));
        }
        if std::io::stdin().is_terminal() {
            let pin = rpassword::prompt_password("PIN: ")
                .map_err(|e| CliError::msg(Exit::Io, format!("cannot read the PIN from the terminal: {e}")))?;
            return non_empty(pin, "the PIN entered").map(Some);
        }
        Ok(None)
    }

    /// The module and the PIN, for a caller that opens several sessions on the token the URI names.
    pub(crate) fn with_module<T>(
        &self,
        uri: &Pkcs11Uri,
        f: impl FnOnce(&byok_pkcs11::Module, Option<&Pin>) -> Result<T>,
    ) -> Result<T> {
        refuse_pin_value(uri)?;
        let module = self.module(Some(uri))?;
        let pin = self.pin(Some(uri))?;
        f(&module, pin.as_ref())
    }

    /// Module, PIN and an open session on the token the URI names.
    pub(crate) fn with_session<T>(
        &self,
        uri: &Pkcs11Uri,
        f: impl FnOnce(&mut TokenSession<'_>) -> Result<T>,
    ) -> Result<T> {
        self.with_module(uri, |module, pin| f(&mut module.open(uri, pin).map_err(error)?))
    }
}

/// A PIN file other users can read: byok warns, even with --quiet.
fn warn_if_shared(path: &std::path::Path) {
    if let Some(mode) = files::shared_mode(path) {
        let (shown, mode) = (path.display(), mode);
        let line = format!(
            "warning: the PIN file {shown} is accessible by other users (mode {mode:04o}); restrict it: chmod 600 {shown}"
        );
        crate::ui::stderr_line(&line);
    }
}

fn non_empty(pin: String, what: &str) -> Result<Pin> {
    if pin.is_empty() {
        return Err(CliError::msg(Exit::InvalidInput, format!("{what} is empty")));
    }
    Ok(Pin::new(pin))
}

/// A PIN on the command line is visible to every user (ps) and lands in shell history.
pub(crate) fn refuse_pin_value(uri: &Pkcs11Uri) -> Result<()> {
    if uri.has_pin_value {
        return Err(
            CliError::msg(Exit::Usage, "refusing pin-value in a pkcs11 URI on the command line").hint(
                "a PIN in argv is visible to other users and lands in shell history; use --pin-file, --pin-env or \
             pin-source=file:…",
            ),
        );
    }
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// The module, its tokens, and per token the wrap paths and their self-test verdicts.
    Info(InfoArgs),
    /// The keys in a token: label, id, class, kind, extractable.
    List(TokenArgs),
    /// Generate a key in the token, extractable (BYOK needs it) and sensitive.
    Generate(GenerateArgs),
    /// Open a .byok inside the HSM with a KEK private key held there, and show what it holds: a rehearsal of the
    /// vault's import, by an independent implementation.
    Verify(VerifyArgs),
    /// Import a KEK's public key as a token object with CKA_WRAP, for HSMs that wrap only with trusted keys: the
    /// security officer then sets CKA_TRUSTED on it, and byok wraps with it (docs/hsm-vendors.md).
    ImportKek(ImportKekArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct ImportKekArgs {
    /// The token: pkcs11:token=LABEL or pkcs11:serial=…
    #[arg(long, value_name = "URI", value_parser = parse_uri)]
    token: Pkcs11Uri,
    /// The KEK's public key (PEM, DER or JWK, as `kek download` writes it).
    #[arg(long, value_name = "FILE")]
    kek_file: PathBuf,
    /// CKA_LABEL of the new object.
    #[arg(long, default_value = "byok-kek")]
    label: String,
    #[command(flatten)]
    hsm: HsmArgs,
}

#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// The .byok file.
    #[arg(long, value_name = "FILE")]
    byok_file: PathBuf,
    /// The KEK private key in the HSM: pkcs11:token=…;object=…
    #[arg(long, value_name = "URI", value_parser = parse_uri)]
    kek: Pkcs11Uri,
    /// What the blob holds.
    #[command(flatten)]
    spec: KeySpecArgs,
    #[command(flatten)]
    hsm: HsmArgs,
}

/// A key's kind on the command line: `--kty RSA|EC|oct` with `--size` (RSA 2048/3072/4096, AES 128/192/256) or
/// `--curve` (EC).
#[derive(Debug, clap::Args)]
pub(crate) struct KeySpecArgs {
    /// RSA, EC or oct.
    #[arg(long, value_parser = str::parse::<Kty>)]
    kty: Kty,
    /// RSA modulus bits (2048, 3072, 4096; default 2048) or AES key bits (128, 192, 256; default 256).
    #[arg(long)]
    size: Option<usize>,
    /// EC curve: P-256, P-384, P-521, P-256K.
    #[arg(long, value_parser = str::parse::<Curve>)]
    curve: Option<Curve>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct InfoArgs {
    /// Run the self-test on this token (pkcs11:token=…); without it, only list tokens.
    #[arg(long, value_name = "URI", value_parser = parse_uri)]
    token: Option<Pkcs11Uri>,
    #[command(flatten)]
    hsm: HsmArgs,
}

#[derive(Debug, clap::Args)]
pub(crate) struct TokenArgs {
    /// The token: pkcs11:token=LABEL or pkcs11:serial=…
    #[arg(long, value_name = "URI", value_parser = parse_uri)]
    token: Pkcs11Uri,
    #[command(flatten)]
    hsm: HsmArgs,
}

#[derive(Debug, clap::Args)]
pub(crate) struct GenerateArgs {
    /// The token: pkcs11:token=LABEL or pkcs11:serial=…
    #[arg(long, value_name = "URI", value_parser = parse_uri)]
    token: Pkcs11Uri,
    #[command(flatten)]
    spec: KeySpecArgs,
    /// CKA_LABEL of the new key.
    #[arg(long)]
    label: String,
    /// CKA_ID in hex (default: 8 random bytes).
    #[arg(long, value_name = "HEX")]
    id: Option<String>,
    #[command(flatten)]
    hsm: HsmArgs,
}

pub(crate) fn run(ui: Ui, command: &Command) -> Result<()> {
    match command {
        Command::Info(a) => info(ui, a),
        Command::List(a) => list(ui, a),
        Command::Generate(a) => generate(ui, a),
        Command::Verify(a) => verify(ui, a),
        Command::ImportKek(a) => import_kek(ui, a),
    }
}

fn import_kek(ui: Ui, args: &ImportKekArgs) -> Result<()> {
    let kek = byok_transfer::read_kek(&args.kek_file)?;
    args.hsm.with_session(&args.token, |s| {
        let k = s.import_kek(&kek, &args.label).map_err(error)?;
        let json = json!({ "format_version": 1, "token": s.token().label, "kek": k });
        ui.result(&format!("{k} in `{}`\n", s.token().label), &json)
            .map_err(stdout_error)
    })
}

fn info(ui: Ui, args: &InfoArgs) -> Result<()> {
    if let Some(uri) = &args.token {
        refuse_pin_value(uri)?;
    }
    let module = args.hsm.module(args.token.as_ref())?;
    let lib = module.info().map_err(error)?;
    let tokens = module.tokens().map_err(error)?;
    let mut human = format!("{lib}\n");
    for t in &tokens {
        human.push_str(&format!("{t}\n"));
    }
    let mut self_test = serde_json::Value::Null;
    if let Some(uri) = &args.token {
        let pin = args.hsm.pin(Some(uri))?;
        let mut session = module.open(uri, pin.as_ref()).map_err(error)?;
        let label = session.token().label.clone();
        let report = session.self_test().map_err(error)?.clone();
        human.push_str(&format!(
            "self-test of `{label}` (wrap paths in the order auto tries them):\n{}\n",
            report.summary()
        ));
        human.push_str(&format!("{}\n", report.auto_choice()));
        self_test = json!(report);
        self_test["token"] = label.into();
    }
    let json = json!({ "format_version": 1, "module": lib, "tokens": tokens, "self_test": self_test });
    ui.result(&human, &json).map_err(stdout_error)
}

fn list(ui: Ui, args: &TokenArgs) -> Result<()> {
    args.hsm.with_session(&args.token, |s| {
        let keys = s.list_keys().map_err(error)?;
        let kcvs = keys.iter().map(|k| s.check_value(k)).collect::<std::result::Result<Vec<_>, _>>().map_err(error)?;
        let mut human = format!("{} keys in `{}`\n", keys.len(), s.token().label);
        for (k, kcv) in keys.iter().zip(&kcvs) {
            human.push_str(&format!(
                "  {:<24} id {:<16} {:<10} {:<14} {}{}\n",
                k.label,
                hex::encode(&k.id),
                k.class.name(),
                k.kind.to_string(),
                if k.extractable { "extractable" } else { "NOT extractable" },
                kcv.map(|v| format!("  kcv {}", hex::encode(v))).unwrap_or_default()
            ));
        }
        let json = json!({ "format_version": 1, "token": s.token().label, "keys": keys.iter().zip(&kcvs).map(|(k, v)| k.summary(*v)).collect::<Vec<_>>() });
        ui.result(&human, &json).map_err(stdout_error)
    })
}

fn verify(ui: Ui, args: &VerifyArgs) -> Result<()> {
    let kind = args.spec.kind()?;
    let (_, blob) = files::read_blob(&args.byok_file)?;
    args.hsm.with_session(&args.kek, |s| {
        let kek = s.find_key(&args.kek).map_err(error)?;
        let found = s.verify_ciphertext(&kek, blob.ciphertext(), kind).map_err(error)?;
        let public = found.public.as_ref().map(|p| p.fingerprint_sha256());
        let kcv = found.kcv.map(hex::encode);
        let mut human = format!(
            "{} opens in `{}` with {}: {}\n",
            args.byok_file.display(),
            s.token().label,
            kek.describe(),
            found.kind
        );
        if let Some(p) = &public {
            human.push_str(&format!("  public key  SHA-256 {p}\n"));
        }
        if let Some(k) = &kcv {
            human.push_str(&format!("  kcv         {k}\n"));
        }
        let json = json!({
            "format_version": 1, "file": args.byok_file, "token": s.token().label, "kek": kek.label,
            "kind": found.kind.to_string(), "public_key_sha256": public, "kcv": kcv,
        });
        ui.result(&human, &json).map_err(stdout_error)
    })
}

impl KeySpecArgs {
    fn kind(&self) -> Result<KeyKind> {
        KeyKind::from_parts(self.kty, self.size, self.curve).map_err(|e| CliError::msg(Exit::Usage, e))
    }
}

fn generate(ui: Ui, args: &GenerateArgs) -> Result<()> {
    let kind = args.spec.kind()?;
    let id = args.id.as_deref().map(|h| {
        let id = hex::decode(h).ok().filter(|id| !id.is_empty());
        id.ok_or_else(|| CliError::msg(Exit::Usage, "--id must be hexadecimal bytes, e.g. 0a1b"))
    });
    let id = id.transpose()?;
    args.hsm.with_session(&args.token, |s| {
        let id = match &id {
            Some(id) => id.clone(),
            None => s.random_id().map_err(error)?,
        };
        let key = if matches!(kind, KeyKind::Rsa(_)) {
            let message = format!("generating {kind} in `{}`; this takes a few seconds", s.token().label);
            ui.spin(&message, || s.generate(kind, &args.label, &id))
        } else {
            s.generate(kind, &args.label, &id)
        }
        .map_err(error)?;
        let uri = byok_pkcs11::key_uri(&s.token().label, &key.label, &key.id);
        let human = format!("generated {}\n  uri  {uri}\n", key.describe());
        let mut json = json!(key.summary(s.check_value(&key).map_err(error)?));
        json["uri"] = uri.into();
        json["format_version"] = 1.into();
        ui.result(&human, &json).map_err(stdout_error)
    })
}
