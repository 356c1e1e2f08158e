//! `byok-cli inspect`: show what a `.byok` file holds, and check it against a KEK.

use std::path::PathBuf;

use byok_blob::ByokBlob;

use crate::exit::{CliError, Exit, Result};
use crate::stdout_error;
use crate::ui::Ui;
use byok_transfer::files;
use byok_transfer::inspect::{self, FitReport, KekFit};

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
        Some(path) => Some(inspect::fit(&blob, byok_transfer::read_kek(path)?)),
        None => None,
    };

    let (human, json) = render(args, &blob, check.as_ref())?;
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

fn render(args: &Args, blob: &ByokBlob, check: Option<&KekFit>) -> Result<(String, serde_json::Value)> {
    let report = inspect::report(&args.file, blob, check);
    let kid = blob.kid();
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
        len = report.ciphertext.bytes,
        encoding = report.ciphertext.encoding,
    );
    match &report.kek {
        None => {
            let list: Vec<String> = report
                .ciphertext
                .possible_rsa_part_bytes
                .iter()
                .map(usize::to_string)
                .collect();
            let list = match list.split_last() {
                Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
                _ => list.join(""),
            };
            h.push_str(&format!(
                "    RSA part      {list} bytes, depending on the KEK (pass --kek-file to check)\n"
            ));
        }
        Some(fit) => render_fit(&mut h, fit, check.map(|c| c.kek.size())),
    }
    let json = serde_json::to_value(&report).map_err(|e| CliError::msg(Exit::Internal, e))?;
    Ok((h, json))
}

/// The KEK's lines of the human text.
fn render_fit(h: &mut String, c: &FitReport, size: Option<byok_encoding::RsaSize>) {
    let size = size.map(|s| s.to_string()).unwrap_or_default();
    h.push_str(&format!(
        "  KEK file        {size}, SHA-256 {}\n    RSA part      {} bytes\n",
        c.fingerprint_sha256, c.rsa_part_bytes
    ));
    if let (Some(kwp), Some(p)) = (c.kwp_part_bytes, &c.plaintext) {
        h.push_str(&format!(
            "    KWP part      {kwp} bytes: a plaintext of {} to {} bytes",
            p.min_bytes, p.max_bytes
        ));
        if let Some(g) = p.likely {
            h.push_str(&format!(", likely {g}"));
        }
        h.push('\n');
    }
    match c.consistent {
        true => h.push_str("  consistent      yes: the sizes fit this KEK\n"),
        false => h.push_str(&format!("  consistent      NO: {}\n", c.problems.join("; "))),
    }
}
