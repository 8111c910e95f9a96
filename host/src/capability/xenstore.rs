//! `xenstore`: read-only access to this domain's XenStore keys under the
//! prefixes the policy grants (`vm-data/hostname`, `vm-data/networking`).

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use toml::Spanned;
use wasmtime::component::{HasSelf, Linker};

use super::{CallInfo, Capability, Refusals, nothing_granted};
use crate::policy::{PolicyError, SectionErrors};
use crate::wit::xenstore::{self as wit, Error};
use crate::xenstore::{self as xs, Errno, XsClient};

/// The `xenstore` capability: this domain's keys, through the agent's
/// connection when it has one.
#[derive(Debug)]
pub struct Xenstore {
    source: Source,
}

/// Where keys are read from.
#[derive(Debug, Clone)]
enum Source {
    /// No XenStore: every read is `unavailable`.
    Nothing,
    /// The agent's connection.
    Client(XsClient),
    /// Keys and values held in memory (`guestward run --xenstore-data`,
    /// the fuzzer), relative to the domain.
    Data(Arc<RwLock<BTreeMap<String, String>>>),
}

impl Xenstore {
    /// Keys read through `client` (`None`: no XenStore, every read is
    /// `unavailable`).
    pub fn new(client: Option<XsClient>) -> Self {
        let source = client.map_or(Source::Nothing, Source::Client);
        Self { source }
    }

    /// Keys read from `data` (key → value, keys relative to the domain),
    /// served as a xenstored holding them would: a key's parents exist
    /// with empty values. A XenStore without a xenstored, for testing a
    /// component.
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
            *keys.write().unwrap_or_else(PoisonError::into_inner) = data;
        }
    }
}

impl Source {
    async fn read(&self, key: &str) -> Result<String, Error> {
        match self {
            Self::Nothing => Err(unavailable()),
            Self::Client(client) => {
                let value = client.read(key).await.map_err(|error| wit_error(key, &error))?;
                String::from_utf8(value).map_err(|_| Error::Unavailable(format!("{key}: the value is not UTF-8")))
            }
            Self::Data(data) => data_read(&data.read().unwrap_or_else(PoisonError::into_inner), key),
        }
    }

    async fn directory(&self, key: &str) -> Result<Vec<String>, Error> {
        let mut children = match self {
            Self::Nothing => return Err(unavailable()),
            Self::Client(client) => client.directory(key).await.map_err(|error| wit_error(key, &error))?,
            Self::Data(data) => data_children(&data.read().unwrap_or_else(PoisonError::into_inner), key)?,
        };
        children.sort();
        Ok(children)
    }
}

fn unavailable() -> Error {
    Error::Unavailable("the agent has no XenStore connection".to_owned())
}

/// `key`'s value in `data`: its own, or empty for a parent of other keys
/// (xenstored makes a key's parents when it writes the key).
fn data_read(data: &BTreeMap<String, String>, key: &str) -> Result<String, Error> {
    match data.get(key) {
        Some(value) => Ok(value.clone()),
        None => data_children(data, key).map(|_| String::new()),
    }
}

/// The children of `key` in `data`, as xenstored lists them: a key with
/// descendants has them as children even without a value of its own.
fn data_children(data: &BTreeMap<String, String>, key: &str) -> Result<Vec<String>, Error> {
    let prefix = format!("{key}/");
    let mut children: Vec<String> = data
        .range(prefix.clone()..)
        .take_while(|(path, _)| path.starts_with(&prefix))
        .filter_map(|(path, _)| path[prefix.len()..].split('/').next())
        .filter(|child| !child.is_empty())
        .map(str::to_owned)
        .collect();
    children.dedup();
    if children.is_empty() && !data.contains_key(key) {
        return Err(Error::NotFound(key.to_owned()));
    }
    Ok(children)
}

/// The key prefixes a component may read.
#[derive(Debug, PartialEq, Eq)]
pub struct XenstoreGrant {
    prefixes: Vec<String>,
}

impl XenstoreGrant {
    fn check(&self, key: &str, component: &str) -> Result<(), Error> {
        // First, and without quoting the key: error texts may end up in
        // the component's reply, which has a size limit.
        if key.len() > xs::path::REL_PATH_MAX {
            return Err(Error::InvalidKey(format!(
                "a key is at most {} bytes, not {}",
                xs::path::REL_PATH_MAX,
                key.len()
            )));
        }
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
    refusals: Refusals,
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
            refusals: call.refusals.clone(),
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
    /// Check `key` against the grant (noting a refusal).
    fn check(&self, key: &str) -> Result<(), Error> {
        let checked = match &self.grant {
            None => Err(Error::NotGranted(format!(
                "component {} has no XenStore grant",
                self.component
            ))),
            Some(grant) => grant.check(key, &self.component),
        };
        self.refusals.watch(Xenstore::NAME, checked)
    }
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
        self.check(&key)?;
        self.source.read(&key).await
    }

    async fn directory(&mut self, key: String) -> Result<Vec<String>, Error> {
        self.check(&key)?;
        self.source.directory(&key).await
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

    #[tokio::test]
    async fn data_is_served_as_xenstored_would() {
        let data: BTreeMap<String, String> = [
            ("vm-data/hostname", "web"),
            ("vm-data/networking/BC764E205EB2", "{}"),
            ("vm-data/networking/BC764E205EB3", "{}"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
        let xenstore = Xenstore::from_data(data);
        let source = xenstore.source.clone();
        assert_eq!(source.read("vm-data/hostname").await.unwrap(), "web");
        assert_eq!(
            source.read("vm-data/networking").await.unwrap(),
            "",
            "a parent reads empty"
        );
        assert!(matches!(source.read("vm-data/nope").await, Err(Error::NotFound(_))));
        assert_eq!(
            source.directory("vm-data/networking").await.unwrap(),
            ["BC764E205EB2", "BC764E205EB3"]
        );
        assert_eq!(source.directory("vm-data").await.unwrap(), ["hostname", "networking"]);
        assert!(source.directory("vm-data/hostname").await.unwrap().is_empty());
        assert!(matches!(
            source.directory("vm-data/nope").await,
            Err(Error::NotFound(_))
        ));

        xenstore.replace_data([("vm-data/hostname".to_owned(), "db".to_owned())].into());
        assert_eq!(
            source.read("vm-data/hostname").await.unwrap(),
            "db",
            "calls see the new keys"
        );
        assert!(matches!(
            source.directory("vm-data/networking").await,
            Err(Error::NotFound(_))
        ));
    }
}
