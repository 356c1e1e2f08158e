//! The api-versions the keys routes take, as the service takes them: every published version of the Key Vault
//! data plane, previews included (the Azure CLI sends `7.6-preview.2` on every keys call), and nothing else.
//! Sources: the `Versions` enum of the keys TypeSpec and the tags of `specification/keyvault/data-plane/readme.md`
//! in Azure/azure-rest-api-specs. The emulator does not vary its behaviour by version.

/// Every api-version Key Vault and Managed HSM accept on the keys routes, oldest first.
pub(crate) const ACCEPTED: [&str; 18] = [
    "2015-06-01",
    "2016-10-01",
    "7.0-preview",
    "7.0",
    "7.1-preview",
    "7.1",
    "7.2-preview",
    "7.2",
    "7.3-preview",
    "7.3",
    "7.4-preview.1",
    "7.4",
    "7.5-preview.1",
    "7.5",
    "7.6-preview.1",
    "7.6-preview.2",
    "7.6",
    "2025-07-01",
];

/// The newest stable version, which the service's refusal recommends.
pub(crate) const LATEST: &str = "2025-07-01";

/// Whether the service takes `version` (exactly: the service compares the string).
pub(crate) fn accepted(version: &str) -> bool {
    ACCEPTED.contains(&version)
}

/// The service's message for a version it does not know.
pub(crate) fn refusal(version: &str) -> String {
    format!(
        "The specified version ({version}) is not recognized. Consider using the latest supported version ({LATEST})."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_published_version_and_only_those() {
        for v in ["7.6-preview.2", "7.5", "2016-10-01", LATEST] {
            assert!(accepted(v), "{v}");
        }
        for v in ["7.7", "7.6-preview.3", "7.5 ", "7.5-PREVIEW.1", "", "1.0"] {
            assert!(!accepted(v), "{v:?}");
        }
        assert!(refusal("7.7").starts_with("The specified version (7.7) is not recognized."));
    }
}
