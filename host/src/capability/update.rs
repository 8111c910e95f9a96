//! `update`: installing command components while the daemon runs, for
//! `agentupdate`. Granted by `update = true`. The component only hands the
//! files over: verifying and installing them is the daemon's installer (the
//! `install` module, above this one), which serves the [`InstallRequest`]s
//! defined here, so a component cannot vouch for what it installs.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use wasmtime::component::{HasSelf, Linker};

use super::{CallInfo, Capability, Refusals};
use crate::policy::{PolicyError, SectionErrors};
use crate::wit::update::{self as wit, ComponentFile as WitComponentFile, Error};

/// One component to install.
#[derive(Debug)]
pub struct ComponentFile {
    /// `<name>.wasm`
    pub name: String,
    pub wasm: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Why an install changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstallError {
    /// A component was refused (trust, policy, a name clash); the text
    /// names it.
    #[error("{0}")]
    Refused(String),
    /// Writing the update failed.
    #[error("{0}")]
    Failed(String),
}

/// A request to the installer, answered with the commands now loaded.
#[derive(Debug)]
pub struct InstallRequest {
    pub components: Vec<ComponentFile>,
    pub reply: oneshot::Sender<Result<Vec<String>, InstallError>>,
}

/// Where install requests go.
pub type Installer = mpsc::Sender<InstallRequest>;

/// The `update` capability: the daemon's installer, when it has one.
#[derive(Debug)]
pub struct Update {
    installer: Option<Installer>,
}

impl Update {
    /// Installs through `installer` (`None`: not a serving daemon, every
    /// install is `unavailable`).
    pub fn new(installer: Option<Installer>) -> Self {
        Self { installer }
    }
}

/// The `update` grant (`update = true`).
#[derive(Debug, PartialEq, Eq)]
pub struct UpdateGrant;

/// One call's access to the installer.
#[derive(Debug)]
pub struct CallUpdate {
    installer: Option<Installer>,
    granted: bool,
    refusals: Refusals,
}

impl Capability for Update {
    const NAME: &'static str = "update";
    /// `update = true`; `false` grants nothing.
    type Config = bool;
    type Grant = UpdateGrant;
    type CallState = CallUpdate;

    fn grant(enabled: bool, _errors: &SectionErrors<'_>) -> Result<Option<UpdateGrant>, PolicyError> {
        Ok(enabled.then_some(UpdateGrant))
    }

    fn describe(_grant: &UpdateGrant) -> Vec<String> {
        vec!["may install components".to_owned()]
    }

    /// Installing writes the commands directory.
    fn writes_files(_grant: &UpdateGrant) -> bool {
        true
    }

    fn how_to_grant() -> String {
        "its policy entry has no `update = true`".to_owned()
    }

    fn call_state(&self, grant: Option<&Arc<UpdateGrant>>, call: &CallInfo<'_>) -> CallUpdate {
        CallUpdate {
            installer: self.installer.clone(),
            granted: grant.is_some(),
            refusals: call.refusals.clone(),
        }
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut CallUpdate,
    ) -> wasmtime::Result<()> {
        wit::add_to_linker::<_, HasSelf<CallUpdate>>(linker, get)
    }
}

impl wit::Host for CallUpdate {
    async fn install(&mut self, components: Vec<WitComponentFile>) -> Result<Vec<String>, Error> {
        if !self.granted {
            self.refusals.note(Update::NAME);
            return Err(Error::NotGranted(
                "this component may not install components".to_owned(),
            ));
        }
        let installer = self
            .installer
            .clone()
            .ok_or_else(|| Error::Unavailable("this agent installs no components (not a daemon)".to_owned()))?;
        let components = components
            .into_iter()
            .map(|file| ComponentFile {
                name: file.name,
                wasm: file.wasm,
                signature: file.signature,
            })
            .collect();
        let stopped = || Error::Unavailable("the installer has stopped".to_owned());
        let (reply, answer) = oneshot::channel();
        installer
            .send(InstallRequest { components, reply })
            .await
            .map_err(|_| stopped())?;
        match answer.await.map_err(|_| stopped())? {
            Ok(commands) => Ok(commands),
            Err(InstallError::Refused(reason)) => Err(Error::Refused(reason)),
            Err(InstallError::Failed(reason)) => Err(Error::Failed(reason)),
        }
    }
}
