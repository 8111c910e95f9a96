//! `update`: installing command components while the daemon runs, for
//! `agentupdate`. Granted by `update = true`. The component only hands the
//! files over: verifying and installing them is the daemon's
//! ([`install`](crate::install)), so a component cannot vouch for what it
//! installs.

use std::sync::Arc;

use tokio::sync::oneshot;
use wasmtime::component::{HasSelf, Linker};

use super::{CallInfo, Capability, Services};
use crate::install::{ComponentFile, InstallRequest, Installer};
use crate::policy::ComponentPolicy;
use crate::runtime::CallContext;
use crate::runtime::bindings::guestward::command::update::{self as wit, ComponentFile as WitComponentFile};

pub struct Update;

/// The `update` grant.
#[derive(Debug)]
pub struct UpdateGrant;

/// One call's access to the installer.
#[derive(Debug)]
pub struct CallUpdate {
    installer: Option<Installer>,
    granted: bool,
    used: bool,
}

impl Capability for Update {
    const INTERFACE: &'static str = "guestward:command/update";
    type Grant = UpdateGrant;
    type CallState = CallUpdate;

    fn add_to_linker(linker: &mut Linker<CallContext>) -> wasmtime::Result<()> {
        wit::add_to_linker::<_, HasSelf<CallUpdate>>(linker, |context| &mut context.capabilities.update)
    }

    fn grant(policy: &ComponentPolicy) -> Option<UpdateGrant> {
        policy.update.then_some(UpdateGrant)
    }

    fn call_state(grant: Option<&Arc<UpdateGrant>>, services: &Services, _call: &CallInfo<'_>) -> CallUpdate {
        CallUpdate {
            installer: services.installer.clone(),
            granted: grant.is_some(),
            used: false,
        }
    }

    fn used(state: &CallUpdate) -> bool {
        state.used
    }
}

impl wit::Host for CallUpdate {
    async fn install(&mut self, components: Vec<WitComponentFile>) -> Result<Vec<String>, String> {
        self.used = true;
        if !self.granted {
            return Err("this component may not install components".to_owned());
        }
        let installer = self
            .installer
            .clone()
            .ok_or("this agent installs no components (not a daemon)")?;
        let components = components
            .into_iter()
            .map(|file| ComponentFile {
                name: file.name,
                wasm: file.wasm,
                signature: file.signature,
            })
            .collect();
        let (reply, answer) = oneshot::channel();
        installer
            .send(InstallRequest { components, reply })
            .await
            .map_err(|_| "the installer has stopped".to_owned())?;
        answer
            .await
            .unwrap_or_else(|_| Err("the installer has stopped".to_owned()))
    }
}
