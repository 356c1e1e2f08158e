//! `byok-cli wrap`: wrap a key to a KEK and write a `.byok` file.

use std::path::PathBuf;

use byok_blob::{ByokBlob, KeyId};
use byok_encoding::{Error as EncodingError, KekPublicKey, Kty, TargetKey};
use byok_wrap::KekEncryptor;
use serde_json::json;

use crate::cmd::key_error;
use crate::exit::{Classify, CliError, Exit, Result};
use crate::files;
use crate::stdout_error;
use crate::ui::Ui;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "The target key normally never leaves the HSM; --key-file is the software source, for keys \
                        that already exist in plaintext (test keys, rehearsals, migrations from software)."
)]
pub(crate) struct Args {
    /// The KEK's public key: PEM or DER (SubjectPublicKeyInfo or PKCS#1), or a JWK / Key Vault key JSON.
    #[arg(long, value_name = "FILE")]
    kek_file: PathBuf,

    /// The KEK's versioned key identifier (https://{vault}/keys/{name}/{version}). Optional when --kek-file is a
    /// JWK that carries its `kid`.
    #[arg(long, value_name = "KID", value_parser = parse_kid)]
    kek_kid: Option<KeyId>,

    /// The target private key as a file: PEM or DER, PKCS#8, PKCS#1 or SEC1; with --kty oct, the raw AES key bytes.
    #[arg(long, value_name = "FILE")]
    key_file: PathBuf,

    /// Accept a target key that exists in plaintext outside an HSM (the software source).
    #[arg(long)]
    allow_software_key: bool,

    /// Where to write the .byok file.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,

    /// The key type: RSA, EC or oct. Detected for RSA and EC; required for oct (raw AES bytes).
    #[arg(long, value_name = "KTY", value_parser = parse_kty)]
    kty: Option<Kty>,

    /// Replace --out if it exists.
    #[arg(long)]
    force: bool,
}

fn parse_kid(s: &str) -> std::result::Result<KeyId, String> {
    KeyId::parse(s).map_err(|e| e.to_string())
}

fn parse_kty(s: &str) -> std::result::Result<Kty, String> {
    s.parse::<Kty>().map_err(|e| e.to_string())
}

pub(crate) fn run(ui: Ui, args: &Args) -> Result<()> {
    if !args.allow_software_key {
        return Err(CliError::msg(
            Exit::Refused,
            "refusing to wrap a key read from a file without --allow-software-key",
        )
        .hint(
            "BYOK promises that the key never exists in plaintext outside an HSM; a key file breaks that promise. \
             Wrap inside the HSM with --key 'pkcs11:…' (the HSM source), or pass --allow-software-key if this key \
             already lives in software",
        ));
    }
    files::check_writable(&args.out, args.force)?;

    let kek_bytes = files::read_input(&args.kek_file, "KEK file")?;
    let kek =
        KekPublicKey::parse(&kek_bytes).map_err(|e| key_error(e, &args.kek_file, "KEK file"))?;
    let kid = match (&args.kek_kid, kek.kid()) {
        (Some(kid), _) => kid.clone(),
        (None, Some(jwk_kid)) => KeyId::parse(jwk_kid).or_exit(Exit::InvalidInput, || {
            format!(
                "the `kid` in the KEK file {} is unusable",
                args.kek_file.display()
            )
        })?,
        (None, None) => {
            return Err(CliError::msg(
                Exit::Usage,
                "--kek-kid is required: the KEK file does not name its key identifier",
            )
            .hint(
                "pass the KEK's versioned id, as `az keyvault key show --query key.kid` prints it",
            ));
        }
    };
    if let (Some(given), Some(jwk_kid)) = (&args.kek_kid, kek.kid())
        && given.to_string() != jwk_kid
    {
        ui.warn(&format!(
            "--kek-kid {given} differs from the kid in the KEK file ({jwk_kid}); using --kek-kid"
        ));
    }
    ui.verbose(&format!(
        "KEK {kid}: {}, SHA-256 {}",
        kek.size(),
        kek.fingerprint_sha256()
    ));

    let key_bytes = zeroize::Zeroizing::new(files::read_input(&args.key_file, "target key file")?);
    let target = read_target(&key_bytes, args)?;
    ui.warn(&format!(
        "wrapping {} read from {}: this key exists in plaintext outside an HSM (--allow-software-key)",
        target.kind(),
        args.key_file.display()
    ));

    let encryptor =
        KekEncryptor::new(&kek).or_exit(Exit::InvalidInput, || "the KEK cannot be used".into())?;
    let ciphertext = encryptor
        .wrap(target.plaintext())
        .or_exit(Exit::Internal, || "wrapping failed".into())?;
    let rsa_len = kek.ciphertext_len();
    let kwp_len = ciphertext.len() - rsa_len;
    let generator = format!(
        "byok-cli {}; source: software key file",
        env!("CARGO_PKG_VERSION")
    );
    let document = ByokBlob::new(kid.clone(), ciphertext, generator).to_json();
    // What we write must be what we would accept.
    ByokBlob::from_json(&document).or_exit(Exit::Internal, || {
        "the blob byok made does not validate".into()
    })?;
    files::write_atomic(&args.out, &document, args.force)?;
    ui.verbose(&format!(
        "wrote {} ({} bytes)",
        args.out.display(),
        document.len()
    ));

    let kind = target.kind();
    let kty = kind.kty();
    let public_fp = target.public_key().map(|p| p.fingerprint_sha256());
    let curve_flag = kind
        .curve()
        .map(|c| format!(" --curve {c}"))
        .unwrap_or_default();
    let mut human = format!(
        "wrote {out} ({bytes} bytes)\n  target      {kind}, import as kty {azure_kty}{crv}\n",
        out = args.out.display(),
        bytes = document.len(),
        azure_kty = kty.azure_hsm_name(),
        crv = kind
            .curve()
            .map(|c| format!(" crv {c}"))
            .unwrap_or_default(),
    );
    if let Some(fp) = &public_fp {
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
        byok_blob::VaultKind::Other => None,
    };
    if let Some(flag) = az_flag {
        let vault = kid.host().split('.').next().unwrap_or_default();
        human.push_str(&format!(
            "next: az keyvault key import --{flag} {vault} --name NAME --byok-file {out} --kty {kty}{curve_flag}\n",
            out = args.out.display(),
        ));
    }
    let json = json!({
        "format_version": 1,
        "file": args.out,
        "bytes": document.len(),
        "source": "software",
        "target": {
            "kind": kind.to_string(),
            "kty": kty.azure_hsm_name(),
            "crv": kind.curve().map(|c| c.azure_name()),
            "public_key_sha256": public_fp,
        },
        "kek": {
            "kid": kid.to_string(),
            "size_bits": kek.size().bits(),
            "fingerprint_sha256": kek.fingerprint_sha256(),
        },
        "ciphertext": { "rsa_part_bytes": rsa_len, "kwp_part_bytes": kwp_len },
    });
    ui.result(&human, &json).map_err(stdout_error)
}

fn read_target(bytes: &[u8], args: &Args) -> Result<TargetKey> {
    let file = &args.key_file;
    let target = match args.kty {
        Some(Kty::Oct) => {
            TargetKey::from_aes_bytes(bytes).map_err(|e| key_error(e, file, "target key file"))?
        }
        _ => TargetKey::from_private_key_file(bytes).map_err(|e| {
            let raw_aes_length = matches!(bytes.len(), 16 | 24 | 32);
            let err = key_error(e.clone(), file, "target key file");
            match e {
                EncodingError::UnrecognizedFormat { .. }
                    if raw_aes_length && args.kty.is_none() =>
                {
                    err.hint(format!(
                        "if this is a raw AES-{} key, pass --kty oct",
                        bytes.len() * 8
                    ))
                }
                _ => err,
            }
        })?,
    };
    if let Some(kty) = args.kty
        && target.kind().kty() != kty
    {
        return Err(CliError::msg(
            Exit::InvalidInput,
            format!(
                "the target key file {} holds {}, but --kty says {kty}",
                file.display(),
                target.kind()
            ),
        ));
    }
    Ok(target)
}
