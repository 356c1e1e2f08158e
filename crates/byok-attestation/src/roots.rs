//! The vendor roots an attestation must chain to: Marvell LiquidSecurity's, pinned by public key.
//!
//! Keys, not certificates: the LS1 root certificate expired in November 2025 and was re-issued with the same key, and
//! the card certificates it signed stay valid. Source: Marvell's published root certificates (LS1
//! `localca.liquidsecurity.cavium.com`, RSA-2048; LS2 `cavium-liquidsecurity-ls2`, RSA-4096), as Microsoft's own
//! validator pins them; their SubjectPublicKeyInfo SHA-256 are in docs/attestation.md and tested.

use crate::rsa_key::RsaKey;

/// One trusted root key.
#[derive(Clone, Debug)]
pub struct Root {
    name: String,
    key: RsaKey,
}

impl Root {
    /// A root from its public key in PEM (`BEGIN PUBLIC KEY`, RSA); `None` if it is not one.
    pub fn from_public_key_pem(name: &str, pem: &str) -> Option<Self> {
        Some(Self {
            name: name.to_owned(),
            key: RsaKey::from_spki_pem(pem)?,
        })
    }

    /// What it is called in reports.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// SHA-256 of its SubjectPublicKeyInfo, lowercase hex.
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint()
    }

    pub(crate) fn key(&self) -> &RsaKey {
        &self.key
    }
}

/// The roots a verification accepts.
#[derive(Clone, Debug)]
pub struct Roots(Vec<Root>);

impl Roots {
    /// Marvell LiquidSecurity LS1 and LS2: what a real Managed HSM chains to.
    pub fn marvell() -> Self {
        let pinned = [
            ("Marvell LiquidSecurity LS1", include_str!("roots/marvell-ls1.pem")),
            ("Marvell LiquidSecurity LS2", include_str!("roots/marvell-ls2.pem")),
        ];
        Self(
            pinned
                .iter()
                .filter_map(|(name, pem)| Root::from_public_key_pem(name, pem))
                .collect(),
        )
    }

    /// Only the given roots (a local vault's test root, say): never in addition to Marvell's by accident.
    pub fn only(roots: Vec<Root>) -> Self {
        Self(roots)
    }

    /// The roots, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Root> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::Roots;

    #[test]
    fn the_pinned_marvell_roots_are_the_published_keys() {
        let roots: Vec<_> = Roots::marvell()
            .iter()
            .map(|r| (r.name().to_owned(), r.fingerprint()))
            .collect();
        assert_eq!(
            roots,
            [
                (
                    "Marvell LiquidSecurity LS1".to_owned(),
                    "78adcba1f38bee304bc44d6a086503f2940037d4b3d58a1bf66a3282ef58cd41".to_owned()
                ),
                (
                    "Marvell LiquidSecurity LS2".to_owned(),
                    "f84b0610f2ca68f1f936c12c37a22794b59a2afa54f55f8d3c977232c5b97d7c".to_owned()
                ),
            ]
        );
    }
}
