//! `xenstore`: read-only access to this domain's XenStore keys under the
//! prefixes the policy grants (`vm-data/hostname`, `vm-data/networking`).

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use super::{CallInfo, Capability, Services};
use crate::policy::ComponentPolicy;
use crate::runtime::CallContext;
use crate::runtime::bindings::guestward::command::xenstore::{self as wit, Error};
use crate::xenstore::{self as xs, Errno, XsClient};

pub struct Xenstore;

/// The key prefixes a component may read.
#[derive(Debug)]
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
    client: Option<XsClient>,
    component: String,
    used: bool,
}

impl Capability for Xenstore {
    const INTERFACE: &'static str = "guestward:command/xenstore";
    type Grant = XenstoreGrant;
    type CallState = CallXenstore;

    fn add_to_linker(linker: &mut Linker<CallContext>) -> wasmtime::Result<()> {
        wit::add_to_linker::<_, HasSelf<CallXenstore>>(linker, |context| &mut context.capabilities.xenstore)
    }

    fn grant(policy: &ComponentPolicy) -> Option<XenstoreGrant> {
        (!policy.xenstore.is_empty()).then(|| XenstoreGrant {
            prefixes: policy.xenstore.clone(),
        })
    }

    fn call_state(grant: Option<&Arc<XenstoreGrant>>, services: &Services, call: &CallInfo<'_>) -> CallXenstore {
        CallXenstore {
            grant: grant.cloned(),
            client: services.xenstore.clone(),
            component: call.component.to_owned(),
            used: false,
        }
    }

    fn used(state: &CallXenstore) -> bool {
        state.used
    }
}

impl CallXenstore {
    fn client_for(&mut self, key: &str) -> Result<&XsClient, Error> {
        self.used = true;
        let grant = self
            .grant
            .as_ref()
            .ok_or_else(|| Error::NotGranted(format!("component {} has no XenStore grant", self.component)))?;
        grant.check(key, &self.component)?;
        self.client
            .as_ref()
            .ok_or_else(|| Error::Unavailable("the agent has no XenStore connection".to_owned()))
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
        let value = self
            .client_for(&key)?
            .read(&key)
            .await
            .map_err(|error| wit_error(&key, &error))?;
        String::from_utf8(value).map_err(|_| Error::Unavailable(format!("{key}: the value is not UTF-8")))
    }

    async fn directory(&mut self, key: String) -> Result<Vec<String>, Error> {
        let mut children = self
            .client_for(&key)?
            .directory(&key)
            .await
            .map_err(|error| wit_error(&key, &error))?;
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
}
