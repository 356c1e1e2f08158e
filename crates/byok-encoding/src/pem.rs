//! PEM framing: files may hold several blocks (OpenSSL writes `EC PARAMETERS` before `EC PRIVATE KEY`).

use zeroize::Zeroizing;

use crate::Error;

/// One decoded PEM block. The body may be a private key, so it is zeroized on drop.
pub(crate) struct Block {
    pub(crate) label: String,
    pub(crate) der: Zeroizing<Vec<u8>>,
}

/// Whether the input looks like PEM text (after optional leading white space).
pub(crate) fn looks_like_pem(input: &[u8]) -> bool {
    let start = input
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(input.len());
    input[start..].starts_with(b"-----BEGIN ")
}

/// Decodes every PEM block in the input, in order. Text between blocks is ignored, as OpenSSL does.
pub(crate) fn blocks(input: &[u8], what: &'static str) -> Result<Vec<Block>, Error> {
    let text = std::str::from_utf8(input).map_err(|_| Error::malformed(what, "PEM text is not UTF-8"))?;
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(begin) = rest.find("-----BEGIN ") {
        let after = &rest[begin + "-----BEGIN ".len()..];
        let label_end = after
            .find("-----")
            .ok_or_else(|| Error::malformed(what, "PEM BEGIN line is not terminated"))?;
        let label = &after[..label_end];
        let end_marker = format!("-----END {label}-----");
        let end = rest[begin..]
            .find(&end_marker)
            .ok_or_else(|| Error::malformed(what, format!("PEM block `{label}` has no END line")))?;
        let block_text = &rest[begin..begin + end + end_marker.len()];
        let (found_label, der) = der::pem::decode_vec(block_text.as_bytes())
            .map_err(|e| Error::malformed(what, format!("PEM block `{label}`: {e}")))?;
        out.push(Block {
            label: found_label.to_owned(),
            der: Zeroizing::new(der),
        });
        rest = &rest[begin + end + end_marker.len()..];
    }
    if out.is_empty() {
        return Err(Error::malformed(what, "no PEM block found"));
    }
    Ok(out)
}
