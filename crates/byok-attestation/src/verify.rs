//! Verification: the vendor chain, both blobs' signatures by that partition, the pool chain to the same partition
//! key — then, for a caller's key, what the signed attributes say of it.

use byok_encoding::TargetPublicKey;
use serde::Serialize;

use crate::attributes::Attributes;
use crate::blob::{self, Firmware};
use crate::bundle::{self, Certificate};
use crate::chain::{self, ChainCertificate, Chains};
use crate::error::{Check, Refusal};
use crate::input::Attestation;
use crate::roots::Roots;

/// A verified attestation: the HSM signed these attributes, and the chains say which HSM.
#[derive(Clone, Debug, Serialize)]
pub struct Verified {
    /// The trusted root the vendor chain ends in.
    pub root: String,
    /// The chains' certificates.
    pub chain: Vec<ChainCertificate>,
    /// How the blobs were signed.
    pub firmware: Firmware,
    /// The private (or secret) key object's attributes.
    pub private: Attributes,
    /// The public key object's, for asymmetric keys.
    pub public: Option<Attributes>,
}

impl Attestation {
    /// Verifies the chains and signatures against `roots`.
    pub fn verify(&self, roots: &Roots) -> Result<Verified, Refusal> {
        let certs = bundle::parse(&self.certificates)?;
        let (root, card, partition) = chain::vendor(&certs, roots)?;
        let mut blobs = vec![("private key", self.private.as_slice())];
        blobs.extend(self.public.as_deref().map(|b| ("public key", b)));
        let mut firmware = None;
        for (what, blob) in &blobs {
            let signed = signature(blob, &certs[partition], what)?;
            if firmware.is_some_and(|f| f != signed) {
                return Err(Refusal::new(
                    Check::Signature,
                    "the two blobs are signed in different forms",
                ));
            }
            firmware = Some(signed);
        }
        let (pool, pool_partition) = chain::pool(&certs, partition)?;
        let chains = Chains {
            root,
            card,
            partition,
            pool,
            pool_partition,
        };
        let private = blob::attributes(
            blob::split(&self.private, &certs[partition].key, "private key")?.0,
            "private key",
        )?;
        let public = match &self.public {
            Some(b) => Some(blob::attributes(
                blob::split(b, &certs[partition].key, "public key")?.0,
                "public key",
            )?),
            None => None,
        };
        Ok(Verified {
            root: chains.root.clone(),
            chain: chains.report(&certs),
            firmware: firmware.unwrap_or(Firmware::V3),
            private,
            public,
        })
    }
}

/// The form in which the partition certificate's key signed `blob`.
fn signature(blob: &[u8], partition: &Certificate, what: &str) -> Result<Firmware, Refusal> {
    let (data, sig) = blob::split(blob, &partition.key, what)?;
    blob::signed_by(data, sig, &partition.key).ok_or_else(|| {
        Refusal::new(
            Check::Signature,
            format!(
                "the {what} attestation is not signed by the partition key of `{}`",
                partition.subject
            ),
        )
    })
}

impl Verified {
    /// The attested id is `/keys/{name}/{version}` of `kid` (`https://HOST/keys/NAME/VERSION`).
    pub fn check_key_id(&self, kid: &str) -> Result<(), Refusal> {
        let path = kid
            .strip_prefix("https://")
            .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
            .filter(|p| p.starts_with("/keys/") && p.split('/').count() == 4)
            .ok_or_else(|| Refusal::new(Check::KeyId, format!("{kid} is not a versioned key id")))?;
        for attributes in self.objects() {
            match attributes.id.as_deref() {
                Some(id) if id.eq_ignore_ascii_case(path) => {}
                other => {
                    return Err(Refusal::new(
                        Check::KeyId,
                        format!("the HSM attests {}, not {path}", other.unwrap_or("no id")),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The attested public key is `key` (modulus and exponent, or EC point).
    pub fn check_public_key(&self, key: &TargetPublicKey) -> Result<(), Refusal> {
        let refuse = |detail: &str| Refusal::new(Check::PublicKey, detail);
        for attributes in self.objects() {
            if let Some((n, e)) = key.rsa() {
                let same = |a: &Option<Vec<u8>>, b: &[u8]| a.as_deref().map(trim) == Some(trim(b));
                if !same(&attributes.modulus, n) {
                    return Err(refuse("the attested modulus is not the key's"));
                }
                if !same(&attributes.public_exponent, e) {
                    return Err(refuse("the attested public exponent is not the key's"));
                }
            } else if let Some((_, point)) = key.ec() {
                let attested = attributes.ec_point.as_deref();
                if !attested.is_some_and(|a| a == point || unwrap_octet_string(a) == point) {
                    return Err(refuse("the attested EC point is not the key's"));
                }
            }
        }
        Ok(())
    }

    /// A KEK: an RSA private key generated in the HSM (LOCAL), never extractable, sensitive — and, from the vault's
    /// answer, with `key_ops` exactly `["import"]`.
    pub fn check_kek(&self, key_ops: &[String]) -> Result<(), Refusal> {
        let a = &self.private;
        let wanted = [
            (a.class.as_deref() == Some("private-key"), "an RSA private key object"),
            (a.key_type.as_deref() == Some("RSA"), "an RSA key"),
            (a.local == Some(true), "generated inside the HSM (CKA_LOCAL)"),
            (
                a.never_extractable == Some(true),
                "never extractable (CKA_NEVER_EXTRACTABLE)",
            ),
            (a.extractable == Some(false), "not extractable (CKA_EXTRACTABLE false)"),
            (a.sensitive == Some(true), "sensitive (CKA_SENSITIVE)"),
        ];
        if let Some((_, what)) = wanted.iter().find(|(ok, _)| !ok) {
            return Err(Refusal::new(Check::Kek, format!("the attested key is not {what}")));
        }
        if key_ops != ["import"] {
            return Err(Refusal::new(
                Check::Kek,
                format!(
                    "the attestation is sound, but the key is not a KEK: its key_ops are {key_ops:?}, a KEK's are exactly [\"import\"]"
                ),
            ));
        }
        Ok(())
    }

    fn objects(&self) -> impl Iterator<Item = &Attributes> {
        std::iter::once(&self.private).chain(self.public.as_ref())
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    &b[start..]
}

/// CKA_EC_POINT is a DER OCTET STRING holding the point; some HSMs store the bare point.
fn unwrap_octet_string(b: &[u8]) -> &[u8] {
    match b {
        [0x04, len, rest @ ..] if usize::from(*len) == rest.len() && *len < 0x80 => rest,
        [0x04, 0x81, len, rest @ ..] if usize::from(*len) == rest.len() => rest,
        _ => b,
    }
}
