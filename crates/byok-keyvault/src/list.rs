//! Listing what a vault holds — its keys, a key's versions — page by page, and changing a version's attributes.
//! Each page's `nextLink` comes from the vault's answer, which is untrusted: the SDK's pager would follow it to any
//! host with the bearer token attached, so byok fetches one page at a time and follows a link only when it stays on
//! the vault and on the listing it continues. Listings are bounded in pages and items.

use std::collections::BTreeMap;

use azure_core::http::pager::{PagerContinuation, PagerOptions};
use azure_security_keyvault_keys::models::{
    KeyAttributes, KeyClientListKeyPropertiesOptions, KeyClientListKeyPropertiesVersionsOptions,
    KeyClientUpdateKeyPropertiesOptions, KeyProperties, ListKeyPropertiesResult, UpdateKeyPropertiesParameters,
};
use futures_util::StreamExt as _;
use url::Url;

use crate::convert::vault_key;
use crate::{Connection, Error, Timestamp, VaultKey, check_key_name};

/// At most this many items in one listing: far above Key Vault's own scale (a vault holds thousands of keys), low
/// enough that a vault answering forever is stopped.
pub const MAX_LISTED: usize = 100_000;
/// Key Vault's largest page.
const PAGE_SIZE: i32 = 25;

/// A key, or one version of it, as a listing shows it: attributes and tags, no key material and no type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyItem {
    /// The key's name.
    pub name: String,
    /// The version (`None` in the list of keys, which shows each key's current version without naming it).
    pub version: Option<String>,
    /// Whether it can be used.
    pub enabled: Option<bool>,
    /// Not usable before.
    pub not_before: Option<Timestamp>,
    /// Not usable after.
    pub expires: Option<Timestamp>,
    /// When it was made.
    pub created: Option<Timestamp>,
    /// When its attributes last changed.
    pub updated: Option<Timestamp>,
    /// Whether Key Vault manages its lifetime (a certificate's key).
    pub managed: bool,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// What to change in a key version; `None` leaves it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyUpdate {
    /// Enable or disable it.
    pub enabled: Option<bool>,
    /// Its new expiry.
    pub expires: Option<Timestamp>,
}

/// Which listing a page belongs to.
#[derive(Clone, Copy)]
enum Listing<'a> {
    Keys,
    Versions(&'a str),
}

impl Listing<'_> {
    fn path(&self) -> String {
        match self {
            Self::Keys => "/keys".to_owned(),
            Self::Versions(name) => format!("/keys/{name}/versions"),
        }
    }
}

impl Connection {
    /// Every key in the vault, each as its current version shows it.
    pub async fn list_keys(&self) -> Result<Vec<KeyItem>, Error> {
        self.list(Listing::Keys).await
    }

    /// Every version of key `name`, in the order the vault lists them.
    pub async fn list_versions(&self, name: &str) -> Result<Vec<KeyItem>, Error> {
        check_key_name(name)?;
        self.list(Listing::Versions(name)).await
    }

    /// Changes a version's attributes (only those `update` names) and returns the version as it is now.
    pub async fn update_key(&self, name: &str, version: &str, update: &KeyUpdate) -> Result<VaultKey, Error> {
        const OP: &str = "updating key";
        check_key_name(name)?;
        let client = &self.client;
        let key = self
            .send(OP, name, true, || async move {
                let params = UpdateKeyPropertiesParameters {
                    key_attributes: Some(KeyAttributes {
                        enabled: update.enabled,
                        expires: update.expires.and_then(Timestamp::to_sdk),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                let options = KeyClientUpdateKeyPropertiesOptions {
                    key_version: Some(version.to_owned()),
                    ..Default::default()
                };
                client
                    .update_key_properties(name, params.try_into()?, Some(options))
                    .await?
                    .into_model()
            })
            .await
            .map_err(|(_, e)| self.service(OP, name, &e))?;
        vault_key(name, key)
    }

    async fn list(&self, listing: Listing<'_>) -> Result<Vec<KeyItem>, Error> {
        let (operation, key) = match listing {
            Listing::Keys => ("listing keys", ""),
            Listing::Versions(name) => ("listing the versions of key", name),
        };
        let refuse = |reason: String| Error::Answer {
            key: key.to_owned(),
            reason,
        };
        let mut items = Vec::new();
        let mut next: Option<Url> = None;
        loop {
            let page = self
                .send(operation, key, true, || self.page(listing, next.clone()))
                .await
                .map_err(|(_, e)| self.service(operation, key, &e))?;
            for item in page.value {
                items.push(self.item(item, listing).map_err(refuse)?);
            }
            if items.len() > MAX_LISTED {
                return Err(refuse(format!("the listing goes on past {MAX_LISTED} items")));
            }
            match page.next_link.filter(|l| !l.is_empty()) {
                None => return Ok(items),
                Some(link) => next = Some(self.next_link(&link, listing).map_err(refuse)?),
            }
        }
    }

    /// One page: the first, or the one `next` names (already checked).
    async fn page(&self, listing: Listing<'_>, next: Option<Url>) -> azure_core::Result<ListKeyPropertiesResult> {
        let method_options = PagerOptions {
            continuation: next.map(PagerContinuation::Link),
            ..Default::default()
        };
        let pager = match listing {
            Listing::Keys => self
                .client
                .list_key_properties(Some(KeyClientListKeyPropertiesOptions {
                    maxresults: Some(PAGE_SIZE),
                    method_options,
                }))?,
            Listing::Versions(name) => {
                let options = KeyClientListKeyPropertiesVersionsOptions {
                    maxresults: Some(PAGE_SIZE),
                    method_options,
                };
                self.client.list_key_properties_versions(name, Some(options))?
            }
        };
        match pager.into_pages().next().await {
            Some(page) => page?.into_model(),
            None => Ok(ListKeyPropertiesResult::default()),
        }
    }

    /// The next page's address, if it continues this listing on this vault.
    fn next_link(&self, link: &str, listing: Listing<'_>) -> Result<Url, String> {
        let base = Url::parse(self.vault.url()).map_err(|e| e.to_string())?;
        let shown: String = link.chars().take(200).filter(|c| !c.is_control()).collect();
        let next = base
            .join(link)
            .map_err(|e| format!("its nextLink `{shown}` is not a URL: {e}"))?;
        let same_vault = next.scheme() == base.scheme()
            && next.host_str() == base.host_str()
            && next.port_or_known_default() == base.port_or_known_default();
        if !same_vault || next.path() != listing.path() || !next.username().is_empty() {
            return Err(format!(
                "its nextLink `{shown}` leaves {}{} — byok does not follow it (it would carry the access token there)",
                self.vault.url(),
                listing.path()
            ));
        }
        Ok(next)
    }

    /// A listed item, its kid checked to name this vault (and, for versions, this key).
    fn item(&self, item: KeyProperties, listing: Listing<'_>) -> Result<KeyItem, String> {
        let kid = item.kid.as_deref().ok_or("a listed key without a kid")?;
        let shown: String = kid.chars().take(200).filter(|c| !c.is_control()).collect();
        let url = Url::parse(kid).map_err(|_| format!("the listed kid `{shown}` is not a URL"))?;
        let segments: Vec<&str> = url.path_segments().map(Iterator::collect).unwrap_or_default();
        let (name, version) = match (listing, segments.as_slice()) {
            (Listing::Keys, ["keys", name]) => (*name, None),
            (Listing::Versions(key), ["keys", name, version]) if name == &key && is_version(version) => {
                (*name, Some((*version).to_owned()))
            }
            _ => return Err(format!("the listed kid `{shown}` is not a key of this listing")),
        };
        let base = Url::parse(self.vault.url()).map_err(|e| e.to_string())?;
        if url.host_str() != base.host_str() || check_key_name(name).is_err() {
            return Err(format!("the listed kid `{shown}` is not a key of {}", self.vault.url()));
        }
        let a = item.attributes.unwrap_or_default();
        Ok(KeyItem {
            name: name.to_owned(),
            version,
            enabled: a.enabled,
            not_before: a.not_before.map(Timestamp::from_sdk),
            expires: a.expires.map(Timestamp::from_sdk),
            created: a.created.map(Timestamp::from_sdk),
            updated: a.updated.map(Timestamp::from_sdk),
            managed: item.managed.unwrap_or(false),
            tags: item.tags.unwrap_or_default().into_iter().collect(),
        })
    }
}

/// A key version as Key Vault makes them: 32 hex digits (accepted: 1 to 64 letters and digits).
fn is_version(v: &str) -> bool {
    (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric())
}
