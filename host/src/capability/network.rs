//! `network`: the machine's network interfaces, read-only, granted by
//! `network = true`: from `/sys/class/net`, or under `--root` from the JSON
//! file given with `--interfaces`.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use super::{CallInfo, Capability, Refusals};
use crate::policy::{PolicyError, SectionErrors};
use crate::root::Root;
use crate::wit::network::{self as wit, Error, NetworkInterface};

/// The `network` capability: the interfaces of the agent's root.
#[derive(Debug)]
pub struct Network {
    root: Arc<Root>,
}

impl Network {
    /// Lists the interfaces of `root`.
    pub fn new(root: Arc<Root>) -> Self {
        Self { root }
    }
}

/// The `network` grant (`network = true`).
#[derive(Debug, PartialEq, Eq)]
pub struct NetworkGrant;

/// One call's view of the interfaces.
#[derive(Debug)]
pub struct CallNetwork {
    granted: bool,
    root: Arc<Root>,
    component: String,
    refusals: Refusals,
}

impl Capability for Network {
    const NAME: &'static str = "network";
    /// `network = true`; `false` grants nothing.
    type Config = bool;
    type Grant = NetworkGrant;
    type CallState = CallNetwork;

    fn grant(enabled: bool, _errors: &SectionErrors<'_>) -> Result<Option<NetworkGrant>, PolicyError> {
        Ok(enabled.then_some(NetworkGrant))
    }

    fn describe(_grant: &NetworkGrant) -> Vec<String> {
        vec!["may list the network interfaces".to_owned()]
    }

    fn how_to_grant() -> String {
        "its policy entry has no `network = true`".to_owned()
    }

    fn call_state(&self, grant: Option<&Arc<NetworkGrant>>, call: &CallInfo<'_>) -> CallNetwork {
        CallNetwork {
            granted: grant.is_some(),
            root: self.root.clone(),
            component: call.component.to_owned(),
            refusals: call.refusals.clone(),
        }
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut CallNetwork,
    ) -> wasmtime::Result<()> {
        wit::add_to_linker::<_, HasSelf<CallNetwork>>(linker, get)
    }
}

impl wit::Host for CallNetwork {
    async fn interfaces(&mut self) -> Result<Vec<NetworkInterface>, Error> {
        if !self.granted {
            self.refusals.note(Network::NAME);
            return Err(Error::NotGranted(format!(
                "component {} may not list the network interfaces",
                self.component
            )));
        }
        let root = self.root.clone();
        let interfaces = tokio::task::spawn_blocking(move || root.network_interfaces())
            .await
            .map_err(|error| Error::Failed(format!("cannot list the network interfaces: {error}")))?
            .map_err(|error| Error::Failed(format!("cannot list the network interfaces: {error}")))?;
        Ok(interfaces
            .into_iter()
            .map(|nic| NetworkInterface {
                name: nic.name,
                mac: nic.mac,
                up: nic.up,
            })
            .collect())
    }
}
