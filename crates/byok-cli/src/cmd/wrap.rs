//! `byok-cli wrap`: wrap a key to a KEK and write a `.byok` file — inside an HSM (`--key pkcs11:…`) or from a key
//! file (`--key-file`, the software source).

use std::path::PathBuf;

use byok_blob::KeyId;
use byok_encoding::{KekPublicKey, Kty};
use byok_pkcs11::{KeyKindInfo, Pkcs11Uri, WrapChoice, WrapOptions, WrapPath};
use byok_transfer::{Blob, files};
use serde_json::json;

use crate::cmd::hsm::{self, HsmArgs};
use crate::cmd::transfer::tool;
use crate::exit::{CliError, Exit, Result};
use crate::stdout_error;
use crate::ui::Ui;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["key", "key_file"])))]
#[command(
    after_help = "The normal source is --key 'pkcs11:…': the key is wrapped inside the HSM and never exists in \
                        plaintext outside it. --key-file is the software source, for keys that already exist in \
                        plaintext (test keys, rehearsals, migrations from software)."
)]
pub(crate) struct Args {
    /// The KEK's public key: PEM or DER (SubjectPublicKeyInfo or PKCS#1), or a JWK / Key Vault key JSON.
    #[arg(long, value_name = "FILE")]
    kek_file: PathBuf,

    /// The KEK's versioned key identifier (https://{vault}/keys/{name}/{version}). Optional when --kek-file is a
    /// JWK that carries its `kid`.
    #[arg(long, value_name = "KID", value_parser = KeyId::parse)]
    kek_kid: Option<KeyId>,

    /// The key in the HSM, as an RFC 7512 URI: pkcs11:token=LABEL;object=LABEL[;id=%01][;type=private]
    #[arg(long, value_name = "URI", value_parser = hsm::parse_uri)]
    key: Option<Pkcs11Uri>,

    /// The target private key as a file: PEM or DER, PKCS#8, PKCS#1 or SEC1; with --kty oct, the raw AES key bytes.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,

    /// Accept a target key that exists in plaintext outside an HSM (the software source).
    #[arg(long)]
    allow_software_key: bool,

    /// Where to write the .byok file.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,

    /// The key type: RSA, EC or oct. Detected for RSA and EC; required for oct key files.
    #[arg(long, value_name = "KTY", value_parser = str::parse::<Kty>)]
    kty: Option<Kty>,

    /// Replace --out if it exists.
    #[arg(long)]
    force: bool,

    #[command(flatten)]
    wrap: WrapArgs,

    #[command(flatten)]
    hsm: HsmArgs,
}

/// How to wrap inside the HSM. Shared by `wrap --key`, `full-transfer` and `batch`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub(crate) struct WrapArgs {
    /// HSM wrap path: auto (the first that passes the self-test), or one named by `hsm info` (docs/hsm.md).
    #[arg(long, value_name = "PATH", default_value = "auto", value_parser = parse_choice)]
    pub(crate) wrap_mechanism: WrapChoice,

    /// Wrap even with a path the self-test found non-conformant (Key Vault may reject the blob; the blob's
    /// generator records it).
    #[arg(long)]
    pub(crate) allow_nonconformant_wrap: bool,
}

impl WrapArgs {
    pub(crate) fn options(self) -> WrapOptions {
        WrapOptions {
            choice: self.wrap_mechanism,
            allow_nonconformant: self.allow_nonconformant_wrap,
        }
    }
}

fn parse_choice(s: &str) -> std::result::Result<WrapChoice, String> {
    if s == "auto" {
        return Ok(WrapChoice::Auto);
    }
    s.parse::<WrapPath>().map(WrapChoice::Path)
}

/// What a source produced: the blob, and how to describe its source.
struct Produced {
    blob: Blob,
    public_sha256: Option<String>,
    source: serde_json::Value,
    source_line: String,
}

pub(crate) fn run(ui: Ui, args: &Args) -> Result<()> {
    if args.key_file.is_some() && !args.allow_software_key {
        // Before any file is read: the refusal explains why, which a bare "missing flag" would not.
        return Err(software_refusal());
    }
    files::check_writable(&args.out, args.force)?;
    let kek = byok_transfer::read_kek(&args.kek_file)?;
    let kid = resolve_kid(ui, args, &kek)?;
    ui.verbose(&format!(
        "KEK {kid}: {}, SHA-256 {}",
        kek.size(),
        kek.fingerprint_sha256()
    ));

    let produced = match (&args.key, &args.key_file) {
        (Some(uri), _) => from_hsm(ui, args, uri, &kek, &kid)?,
        (None, Some(file)) => from_file(ui, args, file, &kek, &kid)?,
        (None, None) => {
            return Err(CliError::msg(Exit::Usage, "give --key 'pkcs11:…' or --key-file"));
        }
    };

    let blob_bytes = &produced.blob.bytes;
    files::write_atomic(&args.out, blob_bytes, args.force)?;
    ui.verbose(&format!("wrote {} ({} bytes)", args.out.display(), blob_bytes.len()));

    let (human, json) = render(args, &kek, &kid, &produced);
    ui.result(&human, &json).map_err(stdout_error)
}

/// The result: human text (with the `az` command that imports the blob) and JSON.
fn render(args: &Args, kek: &KekPublicKey, kid: &KeyId, produced: &Produced) -> (String, serde_json::Value) {
    let blob_bytes = &produced.blob.bytes;
    let rsa_len = kek.ciphertext_len();
    let kwp_len = produced.blob.ciphertext_len - rsa_len;
    let kind = produced.blob.kind;
    let kty = kind.kty();
    let mut human = format!(
        "wrote {out} ({bytes} bytes)\n  source      {source}\n  target      {kind}, import as kty {azure_kty}{crv}\n",
        out = args.out.display(),
        bytes = blob_bytes.len(),
        source = produced.source_line,
        azure_kty = kty.azure_hsm_name(),
        crv = kind.curve().map(|c| format!(" crv {c}")).unwrap_or_default(),
    );
    if let Some(fp) = &produced.public_sha256 {
        human.push_str(&format!("  public key  SHA-256 {fp}\n"));
    }
    human.push_str(&format!(
        "  KEK         {kid}\n              {size}, SHA-256 {kek_fp}\n  ciphertext  {rsa_len} (RSA-OAEP) + {kwp_len} (AES-KWP) bytes\n",
        size = kek.size(),
        kek_fp = kek.fingerprint_sha256(),
    ));
    let az_flag = match kid.vault_kind() {
        byok_blob::VaultKind::KeyVault => Some("vault-name"),
        byok_blob::VaultKind::ManagedHsm => Some("hsm-name"),
        _ => None,
    };
    if let Some(flag) = az_flag {
        let vault = kid.host().split('.').next().unwrap_or_default();
        let curve_flag = kind.curve().map(|c| format!(" --curve {c}")).unwrap_or_default();
        human.push_str(&format!(
            "next: az keyvault key import --{flag} {vault} --name NAME --byok-file {out} --kty {kty}{curve_flag}\n",
            out = args.out.display(),
        ));
    }
    let json = json!({
        "format_version": 1,
        "file": args.out,
        "bytes": blob_bytes.len(),
        "source": produced.source,
        "generator": produced.blob.generator,
        "target": {
            "kind": kind.to_string(),
            "kty": kty.azure_hsm_name(),
            "crv": kind.curve().map(|c| c.azure_name()),
            "public_key_sha256": produced.public_sha256,
        },
        "kek": {
            "kid": kid.to_string(),
            "size_bits": kek.size().bits(),
            "fingerprint_sha256": kek.fingerprint_sha256(),
        },
        "ciphertext": { "rsa_part_bytes": rsa_len, "kwp_part_bytes": kwp_len },
    });
    (human, json)
}

fn software_refusal() -> CliError {
    CliError::msg(
        Exit::Refused,
        "refusing to wrap a key read from a file without --allow-software-key",
    )
    .hint(
        "BYOK promises that the key never exists in plaintext outside an HSM; a key file breaks that promise. \
         Wrap inside the HSM with --key 'pkcs11:…' (the HSM source), or pass --allow-software-key if this key \
         already lives in software",
    )
}

fn resolve_kid(ui: Ui, args: &Args, kek: &KekPublicKey) -> Result<KeyId> {
    if let (Some(given), Some(jwk_kid)) = (&args.kek_kid, kek.kid())
        && given.to_string() != jwk_kid
    {
        ui.warn(&format!(
            "--kek-kid {given} differs from the kid in the KEK file ({jwk_kid}); using --kek-kid"
        ));
    }
    Ok(byok_transfer::kek_kid(args.kek_kid.as_ref(), kek, &args.kek_file)?)
}

fn from_hsm(ui: Ui, args: &Args, uri: &Pkcs11Uri, kek: &KekPublicKey, kid: &KeyId) -> Result<Produced> {
    args.hsm.with_session(uri, |session| {
        let key = session.find_key(uri).map_err(hsm::error)?;
        if let (Some(kty), KeyKindInfo::Supported(kind)) = (args.kty, &key.kind)
            && kind.kty() != kty
        {
            return Err(CliError::msg(
                Exit::InvalidInput,
                format!("the key {} is {kind}, but --kty says {kty}", key.describe()),
            ));
        }
        ui.verbose(&format!("key {} in token `{}`", key.describe(), session.token().label));
        let made = byok_transfer::wrap_in_hsm(session, &key, kek, kid, args.wrap.options(), &tool())?;
        if let Some(why) = &made.nonconformant {
            ui.warn(&format!(
                "WRAPPED WITH A NON-CONFORMANT PATH ({}): {why}. Key Vault may reject this blob; the key is unchanged \
                 in the HSM",
                made.path
            ));
        }
        let token = session.token();
        Ok(Produced {
            public_sha256: key.public.as_ref().map(|p| p.fingerprint_sha256()),
            source_line: format!("`{}` in token `{}` via {}", key.label, token.label, made.path),
            source: json!({
                "type": "pkcs11",
                "token": token.label,
                "token_serial": token.serial,
                "token_model": token.describe(),
                "key_label": key.label,
                "key_id": hex::encode(&key.id),
                "wrap_path": made.path.name(),
                "conformant": made.nonconformant.is_none(),
            }),
            blob: made.blob,
        })
    })
}

fn from_file(ui: Ui, args: &Args, file: &std::path::Path, kek: &KekPublicKey, kid: &KeyId) -> Result<Produced> {
    if !args.allow_software_key {
        return Err(software_refusal());
    }
    let target = byok_transfer::read_target(file, args.kty)?;
    ui.warn(&format!(
        "wrapping {} read from {}: this key exists in plaintext outside an HSM (--allow-software-key)",
        target.kind(),
        file.display()
    ));
    Ok(Produced {
        blob: byok_transfer::wrap_in_software(&target, kek, kid, &tool())?,
        public_sha256: target.public_key().map(|p| p.fingerprint_sha256()),
        source: json!("software"),
        source_line: format!("software key file {}", file.display()),
    })
}
