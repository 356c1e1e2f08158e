//! Making a `.byok` blob: the key wrapped to a KEK (inside the HSM, or — for keys that already live in software —
//! in this process), in the document `byok-blob` writes, checked by reading it back before anyone sees it.

use byok_blob::{ByokBlob, KeyId};
use byok_encoding::{KekPublicKey, KeyKind, TargetKey};
use byok_pkcs11::{KeyInfo, KeyKindInfo, TokenSession, WrapOptions, WrapPath};
use byok_wrap::KekEncryptor;

use crate::error::{Error, Kind, Result, Step};
use crate::record::Tool;

/// A blob byok made, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    /// The `.byok` file's bytes, as written and imported.
    pub bytes: Vec<u8>,
    /// Its `generator` field: the tool, the source, the wrap path.
    pub generator: String,
    /// The length of its ciphertext (RSA-OAEP part and AES-KWP part).
    pub ciphertext_len: usize,
    /// The wrapped key's kind.
    pub kind: KeyKind,
}

/// A blob made inside the HSM, and the wrap path it took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HsmBlob {
    /// The blob.
    pub blob: Blob,
    /// The wrap path used.
    pub path: WrapPath,
    /// Why the path is not conformant for this key, when the caller allowed it anyway.
    pub nonconformant: Option<String>,
}

/// Wraps `key` inside the HSM to `kek` (whose versioned id is `kid`), after the wrap self-test.
pub fn wrap_in_hsm(
    session: &mut TokenSession<'_>,
    key: &KeyInfo,
    kek: &KekPublicKey,
    kid: &KeyId,
    options: WrapOptions,
    tool: &Tool,
) -> Result<HsmBlob> {
    let wrapped = session.wrap(key, kek, options).map_err(|e| Error::hsm(Step::Wrap, e))?;
    let KeyKindInfo::Supported(kind) = key.kind else {
        let e = byok_pkcs11::Error::UnsupportedKey {
            key: key.describe(),
            what: key.kind.to_string(),
        };
        return Err(Error::hsm(Step::Wrap, e));
    };
    let mut generator = format!(
        "{} {}; source: {} via PKCS#11, {}",
        tool.name,
        tool.version,
        session.token().describe(),
        wrapped.path.name()
    );
    if wrapped.nonconformant.is_some() {
        generator.push_str("; NONCONFORMANT (--allow-nonconformant-wrap)");
    }
    let ciphertext_len = wrapped.ciphertext.len();
    let blob = Blob {
        bytes: document(kid, wrapped.ciphertext, &generator)?,
        generator,
        ciphertext_len,
        kind,
    };
    Ok(HsmBlob {
        blob,
        path: wrapped.path,
        nonconformant: wrapped.nonconformant,
    })
}

/// Wraps a key held in this process (the software source: it already exists in plaintext outside an HSM).
pub fn wrap_in_software(target: &TargetKey, kek: &KekPublicKey, kid: &KeyId, tool: &Tool) -> Result<Blob> {
    let encryptor = KekEncryptor::new(kek)
        .map_err(|e| Error::with_source(Step::Wrap, Kind::InvalidInput, "the KEK cannot be used", e))?;
    let ciphertext = encryptor
        .wrap(target.plaintext())
        .map_err(|e| Error::with_source(Step::Wrap, Kind::Internal, "wrapping failed", e))?;
    let generator = format!("{} {}; source: software key file", tool.name, tool.version);
    let ciphertext_len = ciphertext.len();
    Ok(Blob {
        bytes: document(kid, ciphertext, &generator)?,
        generator,
        ciphertext_len,
        kind: target.kind(),
    })
}

/// The document, checked: what byok writes must be what it would accept.
fn document(kid: &KeyId, ciphertext: Vec<u8>, generator: &str) -> Result<Vec<u8>> {
    let bytes = ByokBlob::new(kid.clone(), ciphertext, generator.to_owned()).to_json();
    ByokBlob::from_json(&bytes)
        .map_err(|e| Error::with_source(Step::Wrap, Kind::Internal, "the blob byok made does not validate", e))?;
    Ok(bytes)
}
