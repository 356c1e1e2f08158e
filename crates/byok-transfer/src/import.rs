//! Importing a `.byok` blob made elsewhere: what can be checked before it is sent.

use byok_blob::ByokBlob;
use byok_keyvault::{Connection, Kek, KeyOp};

use crate::error::{Error, Kind, Result, Step};

/// Checks that the KEK a blob names is this vault's, exists, is a proper KEK, and fits the blob's ciphertext.
pub async fn check_blob_kek(conn: &Connection, blob: &ByokBlob) -> Result<Kek> {
    let (kid, vault) = (blob.kid(), conn.vault());
    let invalid = |message: String| Error::new(Step::Preflight, Kind::InvalidInput, message);
    if !vault.owns(kid) {
        return Err(invalid(format!(
            "the blob was wrapped to a KEK of another vault ({kid}), not {vault}"
        ))
        .with_hint(
            "a blob opens only in the vault that holds its KEK: import it there, or wrap again to this vault's KEK",
        ));
    }
    let kek = conn.get_kek(kid.name(), Some(kid.version())).await.map_err(|e| {
        if e.is_not_found() {
            Error::new(
                Step::Preflight,
                Kind::Vault,
                format!("the KEK the blob names ({kid}) does not exist in {vault}"),
            )
            .with_hint("it was deleted, or the blob names a version that never existed: check the KEK and wrap again")
        } else {
            Error::vault(Step::Preflight, e)
        }
    })?;
    if !kek.is_import_only_hsm() {
        return Err(invalid(format!(
            "the key the blob names ({kid}) is {} with key_ops {:?}, not a Key Exchange Key (RSA-HSM, key_ops [\"import\"])",
            kek.kty, KeyOp::names(&kek.key_ops)
        ))
        .with_hint("create a KEK with `byok-cli kek create`, download it, and wrap again"));
    }
    let expected = kek.public.ciphertext_len();
    if blob.ciphertext().len() <= expected {
        return Err(invalid(format!(
            "the blob's ciphertext ({} bytes) is too short for the {}-bit KEK it names: it was wrapped to another key",
            blob.ciphertext().len(),
            expected * 8
        )));
    }
    Ok(kek)
}

/// A blob imported, and the KEK it was checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobImported {
    /// The KEK the blob names, as the vault holds it.
    pub kek: Kek,
    /// The new key version.
    pub imported: byok_keyvault::Imported,
}

/// Imports a blob made elsewhere: its KEK checked first ([`check_blob_kek`]), then `request` (which carries the
/// blob's bytes) sent once, with the lost-answer check.
pub async fn import_blob(
    conn: &Connection,
    blob: &ByokBlob,
    request: &byok_keyvault::ImportRequest,
) -> Result<BlobImported> {
    let kek = check_blob_kek(conn, blob).await?;
    let imported = conn
        .import_key(request)
        .await
        .map_err(|e| Error::vault(Step::Import, e))?;
    Ok(BlobImported { kek, imported })
}
