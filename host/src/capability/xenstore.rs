//! `xenstore`: read-only access to this domain's XenStore keys under the
//! prefixes the policy grants (`vm-data/hostname`, `vm-data/networking`).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use toml::Spanned;
use wasmtime::component::{HasSelf, Linker};

use super::{CallInfo, Capability, nothing_granted};
use crate::policy::{PolicyError, SectionErrors};
use crate::wit::xenstore::{self as wit, Error};
use crate::xenstore::{self as xs, Errno, XsClient};

/// The `xenstore` capability: this domain's keys, through the agent's
/// connection when it has one, or from data given in advance (no xenstored).
#[derive(Debug)]
pub struct Xenstore {
    source: Source,
}

/// Where keys are read from.
#[derive(Debug, Clone)]
enum Source {
    /// A xenstored (`None`: no XenStore, every read is `unavailable`).
    Client(Option<XsClient>),
    /// Keys and values held in memory, relative to the domain.
    Data(Arc<RwLock<BTreeMap<String, String>>>),
}

impl Xenstore {
    /// Keys read through `client` (`None`: no XenStore, every read is
    /// `unavailable`).
    pub fn new(client: Option<XsClient>) -> Self {
        Self {
            source: Source::Client(client),
        }
    }

    /// Keys served from `data` (key relative to the domain → value), as a
    /// xenstored holding them would: a key's parents exist with empty
    /// values, and `directory` answers a key's children, sorted.
    pub fn from_data(data: BTreeMap<String, String>) -> Self {
        Self {
            source: Source::Data(Arc::new(RwLock::new(data))),
        }
    }

    /// Replace the keys of a [`Xenstore::from_data`] XenStore for the calls
    /// that follow (`guestward fuzz` mutates them between calls); a real
    /// connection is left alone.
    pub fn replace_data(&self, data: BTreeMap<String, String>) {
        if let Source::Data(keys) = &self.source {
            *keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = data;
        }
    }
}

/// `key`'s value in `data`: its own, or empty for a parent of other keys.
fn data_read(data: &BTreeMap<String, String>, key: &str) -> Option<String> {
    if let Some(value) = data.get(key) {
        return Some(value.clone());
    }
    (!data_children(data, key).is_empty()).then(String::new)
}

/// The names of `key`'s children in `data`, sorted and without repeats.
fn data_children(data: &BTreeMap<String, String>, key: &str) -> Vec<String> {
    let prefix = format!("{key}/");
    let mut children: Vec<String> = data
        .range(prefix.clone()..)
        .take_while(|(path, _)| path.starts_with(&prefix))
        .filter_map(|(path, _)| path[prefix.len()..].split('/').next())
        .filter(|child| !child.is_empty())
        .map(str::to_owned)
        .collect();
    children.dedup();
    children
}

/// The key prefixes a component may read.
#[derive(Debug, PartialEq, Eq)]
pub struct XenstoreGrant {
    prefixes: Vec<String>,
}

impl XenstoreGrant {
    fn check(&self, key: &str, component: &str) -> Result<(), Error> {
        if key.starts_with('/') {
            return Err(Error::InvalidKey(format!(
                "{key}: use a key relative to the domain (vm-data/…)"
            )));
        }
        xs::path::validate(key).map_err(|error| Error::InvalidKey(error.to_string()))?;
        if self.prefixes.iter().any(|prefix| xs::path::is_within(key, prefix)) {
            Ok(())
        } else {
            Err(Error::NotGranted(format!(
                "{key} is outside the XenStore grants of component {component}"
            )))
        }
    }
}

/// One call's XenStore access.
#[derive(Debug)]
pub struct CallXenstore {
    grant: Option<Arc<XenstoreGrant>>,
    source: Source,
    component: String,
}

impl Capability for Xenstore {
    const NAME: &'static str = "xenstore";
    /// Key prefixes relative to the domain (`vm-data/networking`).
    type Config = Vec<Spanned<String>>;
    type Grant = XenstoreGrant;
    type CallState = CallXenstore;

    fn grant(prefixes: Vec<Spanned<String>>, errors: &SectionErrors<'_>) -> Result<Option<XenstoreGrant>, PolicyError> {
        let prefixes = prefixes
            .iter()
            .map(|prefix| {
                normalize_key_prefix(prefix.get_ref()).map_err(|message| errors.at(prefix.span().start, message))
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(XenstoreGrant { prefixes }))
    }

    fn describe(grant: &XenstoreGrant) -> Vec<String> {
        nothing_granted(grant.prefixes.clone(), "key")
    }

    fn call_state(&self, grant: Option<&Arc<XenstoreGrant>>, call: &CallInfo<'_>) -> CallXenstore {
        CallXenstore {
            grant: grant.cloned(),
            source: self.source.clone(),
            component: call.component.to_owned(),
        }
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut CallXenstore,
    ) -> wasmtime::Result<()> {
        wit::add_to_linker::<_, HasSelf<CallXenstore>>(linker, get)
    }
}

/// A relative XenStore key prefix (`vm-data/networking`), without a trailing `/`.
fn normalize_key_prefix(text: &str) -> Result<String, String> {
    let prefix = text.trim_end_matches('/');
    if prefix.starts_with('/') {
        return Err(format!("{text:?}: use a key relative to the domain (vm-data/…)"));
    }
    xs::path::validate(prefix).map_err(|error| error.to_string())?;
    Ok(prefix.to_owned())
}

impl CallXenstore {
    /// Check `key` against the grant; where to read it from.
    fn source_for(&mut self, key: &str) -> Result<&Source, Error> {
        let grant = self
            .grant
            .as_ref()
            .ok_or_else(|| Error::NotGranted(format!("component {} has no XenStore grant", self.component)))?;
        grant.check(key, &self.component)?;
        Ok(&self.source)
    }
}

/// The data of a [`Source::Data`], readable even after a panic elsewhere.
fn data_of(keys: &RwLock<BTreeMap<String, String>>) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, String>> {
    keys.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn no_connection() -> Error {
    Error::Unavailable("the agent has no XenStore connection".to_owned())
}

fn wit_error(key: &str, error: &xs::Error) -> Error {
    match error.errno() {
        Some(Errno::ENOENT) => Error::NotFound(key.to_owned()),
        Some(Errno::EACCES | Errno::EPERM) => Error::PermissionDenied(key.to_owned()),
        _ => Error::Unavailable(error.to_string()),
    }
}

impl wit::Host for CallXenstore {
    async fn read(&mut self, key: String) -> Result<String, Error> {
        let client = match self.source_for(&key)? {
            Source::Data(keys) => return data_read(&data_of(keys), &key).ok_or(Error::NotFound(key)),
            Source::Client(client) => client.clone(),
        };
        let Some(client) = client else {
            return Err(no_connection());
        };
        let value = client.read(&key).await.map_err(|error| wit_error(&key, &error))?;
        String::from_utf8(value).map_err(|_| Error::Unavailable(format!("{key}: the value is not UTF-8")))
    }

    async fn directory(&mut self, key: String) -> Result<Vec<String>, Error> {
        let client = match self.source_for(&key)? {
            Source::Data(keys) => {
                let data = data_of(keys);
                return match data_read(&data, &key) {
                    Some(_) => Ok(data_children(&data, &key)),
                    None => Err(Error::NotFound(key)),
                };
            }
            Source::Client(client) => client.clone(),
        };
        let Some(client) = client else {
            return Err(no_connection());
        };
        let mut children = client.directory(&key).await.map_err(|error| wit_error(&key, &error))?;
        children.sort();
        Ok(children)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_lie_under_a_granted_prefix() {
        let grant = XenstoreGrant {
            prefixes: vec!["vm-data/networking".into(), "vm-data/hostname".into()],
        };
        assert!(grant.check("vm-data/networking/BC764E205EB2", "c").is_ok());
        assert!(grant.check("vm-data/hostname", "c").is_ok());
        assert!(matches!(
            grant.check("vm-data/networkingX", "c"),
            Err(Error::NotGranted(_))
        ));
        assert!(matches!(grant.check("data/host/1", "c"), Err(Error::NotGranted(_))));
        assert!(matches!(
            grant.check("/local/domain/0/vm-data/hostname", "c"),
            Err(Error::InvalidKey(_))
        ));
        assert!(matches!(
            grant.check("vm-data//hostname", "c"),
            Err(Error::InvalidKey(_))
        ));
    }

    #[test]
    fn data_answers_as_a_xenstored_holding_it_would() {
        let data: BTreeMap<String, String> = [
            ("vm-data/hostname", "web1"),
            ("vm-data/networking/BC764E205EB2", "{}"),
            ("vm-data/networking/BC764E205EB3", "{}"),
            ("vm-data/networkingX", "no"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
        assert_eq!(data_read(&data, "vm-data/hostname").as_deref(), Some("web1"));
        assert_eq!(data_read(&data, "vm-data").as_deref(), Some(""), "a parent is a key");
        assert_eq!(data_read(&data, "vm-data/missing"), None);
        assert_eq!(
            data_children(&data, "vm-data/networking"),
            ["BC764E205EB2", "BC764E205EB3"]
        );
        assert_eq!(
            data_children(&data, "vm-data"),
            ["hostname", "networking", "networkingX"]
        );
        assert!(data_children(&data, "vm-data/hostname").is_empty());
    }

    #[test]
    fn prefixes_are_normalised_and_must_be_relative() {
        let policy = crate::capability::Policy::parse(
            "[component.c]\nxenstore = [\"vm-data/networking/\", \"vm-data/hostname\"]\n",
            "p.toml",
        )
        .unwrap();
        let grant = policy.component("c").grants.xenstore.unwrap();
        assert_eq!(grant.prefixes, ["vm-data/networking", "vm-data/hostname"]);
        let error = crate::capability::Policy::parse("[component.c]\nxenstore = [\"/local/domain/0\"]\n", "p.toml")
            .unwrap_err();
        assert_eq!(error.line, 2);
        assert!(error.message.starts_with("component.c.xenstore:"), "{error}");
    }
}
