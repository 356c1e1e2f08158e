//! `byok-cli inspect`: show what a `.byok` file holds, and check it against a KEK.

use std::path::PathBuf;

use byok_blob::ByokBlob;
use byok_encoding::KekPublicKey;
use serde_json::json;

use crate::cmd::key_error;
use crate::exit::{CliError, Exit, Result};
use crate::stdout_error;
use crate::ui::Ui;
use byok_transfer::files;
use byok_transfer::inspect::{self, KekFit};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The .byok file.
    #[arg(value_name = "FILE")]
    file: PathBuf,

    /// The KEK's public key, to check that the ciphertext's parts fit it (PEM, DER or JWK).
    #[arg(long, value_name = "FILE")]
    kek_file: Option<PathBuf>,
}

pub(crate) fn run(ui: Ui, args: &Args) -> Result<()> {
    let bytes = files::read_input(&args.file, ".byok file")?;
    if bytes.trim_ascii_start().starts_with(b"-----BEGIN ") {
        let message = format!("{} is a PEM file, not a .byok file", args.file.display());
        let hint = "inspect reads .byok transfer blobs; `byok-cli wrap --key-file` turns a key into one";
        return Err(CliError::msg(Exit::InvalidInput, message).hint(hint));
    }
    let blob = files::parse_blob(&args.file, &bytes)?;
    let check = match &args.kek_file {
        Some(path) => {
            let kek_bytes = files::read_input(path, "KEK file")?;
            let kek = KekPublicKey::parse(&kek_bytes).map_err(|e| key_error(e, path, "KEK file"))?;
            Some(inspect::fit(&blob, kek))
        }
        None => None,
    };

    let (human, json) = render(args, &blob, check.as_ref());
    ui.result(&human, &json).map_err(stdout_error)?;
    match (check, &args.kek_file) {
        (Some(c), Some(kek_file)) if !c.problems.is_empty() => Err(CliError::msg(
            Exit::InvalidInput,
            format!(
                "{} does not fit the KEK {}: {}",
                args.file.display(),
                kek_file.display(),
                c.problems.join("; ")
            ),
        )
        .hint("the blob was made for another KEK, or was damaged; wrap again to the KEK you import with")),
        _ => Ok(()),
    }
}

fn render(args: &Args, blob: &ByokBlob, check: Option<&KekFit>) -> (String, serde_json::Value) {
    let kid = blob.kid();
    let len = blob.ciphertext().len();
    let candidates = blob.possible_rsa_part_lengths();
    let mut h = format!(
        "{file}\n  schema_version  {schema}\n  kid             {kid}\n    vault         {vault} ({kind})\n    \
         KEK name      {name}\n    KEK version   {version}\n  alg / enc       dir / CKM_RSA_AES_KEY_WRAP\n  \
         generator       {generator}\n  ciphertext      {len} bytes ({encoding})\n",
        file = args.file.display(),
        schema = blob.schema_version(),
        vault = kid.vault_url(),
        kind = kid.vault_kind(),
        name = kid.name(),
        version = kid.version(),
        generator = blob.generator().unwrap_or("(not stated)"),
        encoding = blob.ciphertext_encoding().name(),
    );
    let kek_json = match check {
        None => {
            let list: Vec<String> = candidates.iter().map(usize::to_string).collect();
            let list = match list.split_last() {
                Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
                _ => list.join(""),
            };
            h.push_str(&format!(
                "    RSA part      {list} bytes, depending on the KEK (pass --kek-file to check)\n"
            ));
            serde_json::Value::Null
        }
        Some(c) => render_fit(&mut h, c),
    };
    let json = json!({
        "format_version": 1,
        "file": args.file,
        "schema_version": blob.schema_version(),
        "kid": {
            "id": kid.to_string(),
            "vault_url": kid.vault_url(),
            "vault_kind": kid.vault_kind().id(),
            "name": kid.name(),
            "version": kid.version(),
        },
        "alg": byok_blob::ALG,
        "enc": byok_blob::ENC,
        "generator": blob.generator(),
        "ciphertext": {
            "bytes": len,
            "encoding": blob.ciphertext_encoding().name(),
            "possible_rsa_part_bytes": candidates,
        },
        "kek": kek_json,
    });
    (h, json)
}

/// The KEK's lines of the human text, and its JSON.
fn render_fit(h: &mut String, c: &KekFit) -> serde_json::Value {
    h.push_str(&format!(
        "  KEK file        {}, SHA-256 {}\n    RSA part      {} bytes\n",
        c.kek.size(),
        c.kek.fingerprint_sha256(),
        c.rsa_part
    ));
    let mut plaintext = serde_json::Value::Null;
    if let Some(kwp) = c.kwp_part.filter(|k| k % 8 == 0) {
        let (min, max, guess) = inspect::plaintext_range(kwp);
        h.push_str(&format!(
            "    KWP part      {kwp} bytes: a plaintext of {min} to {max} bytes"
        ));
        if let Some(g) = guess {
            h.push_str(&format!(", likely {g}"));
        }
        h.push('\n');
        plaintext = json!({ "min_bytes": min, "max_bytes": max, "likely": guess });
    }
    if c.problems.is_empty() {
        h.push_str("  consistent      yes: the sizes fit this KEK\n");
    } else {
        h.push_str(&format!("  consistent      NO: {}\n", c.problems.join("; ")));
    }
    json!({
        "size_bits": c.kek.size().bits(),
        "fingerprint_sha256": c.kek.fingerprint_sha256(),
        "kid": c.kek.kid(),
        "rsa_part_bytes": c.rsa_part,
        "kwp_part_bytes": c.kwp_part,
        "plaintext": plaintext,
        "consistent": c.problems.is_empty(),
        "problems": c.problems,
    })
}
