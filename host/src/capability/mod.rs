//! Host interfaces offered to command components, one module per WIT
//! interface, each of the same three-phase shape (Spin's host "factors"):
//!
//! 1. *link*: add the interface's functions to the linker, once;
//! 2. *grant*: turn a component's policy entry into a typed grant at load
//!    time (`None`: not granted, and a component importing it is refused);
//! 3. *call state*: build, from that grant, the small state one call's Store
//!    needs.
//!
//! A new capability is a new module implementing [`Capability`] and one line
//! in the `capabilities!` list below.

pub mod agent;
pub mod download;
pub mod files;
pub mod log;
pub mod state;
pub mod system;
pub mod update;
pub mod xenstore;

use std::sync::Arc;

use wasmtime::component::Linker;

use crate::policy::{ComponentPolicy, Limits};
use crate::root::Root;
use crate::runtime::CallContext;
use crate::xenstore::XsClient;

/// What capabilities share between calls, owned by the daemon.
#[derive(Debug, Clone)]
pub struct Services {
    /// The machine (or `--root` directory) files resolve in.
    pub root: Arc<Root>,
    /// The XenStore connection, when the agent has one.
    pub xenstore: Option<XsClient>,
    /// Every component's `state` store.
    pub states: state::StateStore,
    /// The agent's version and loaded commands.
    pub agent: agent::AgentFacts,
    /// Where `update.install` requests go (only a serving daemon has one).
    pub installer: Option<crate::install::Installer>,
}

impl Services {
    /// Services for a daemon acting on `root`, with or without XenStore.
    pub fn new(root: Root, xenstore: Option<XsClient>) -> Self {
        Self {
            root: Arc::new(root),
            xenstore,
            states: Default::default(),
            agent: Default::default(),
            installer: None,
        }
    }
}

/// Who is calling, for per-call state.
#[derive(Debug, Clone, Copy)]
pub struct CallInfo<'a> {
    /// The component's name (its file stem).
    pub component: &'a str,
    /// The command name of the request (empty while loading).
    pub command: &'a str,
    /// The exchange's request id.
    pub request_id: &'a str,
    pub limits: &'a Limits,
}

/// One host interface.
pub trait Capability {
    /// The WIT interface, without version (`guestward:command/files`).
    const INTERFACE: &'static str;
    /// The checked grant a component's policy gives.
    type Grant: Send + Sync + std::fmt::Debug + 'static;
    /// What one call's Store holds.
    type CallState: Send + 'static;

    /// Add the interface to the linker.
    fn add_to_linker(linker: &mut Linker<CallContext>) -> wasmtime::Result<()>;

    /// The grant in `policy`, or `None` when the policy does not grant this
    /// interface.
    fn grant(policy: &ComponentPolicy) -> Option<Self::Grant>;

    /// The state for one call. `grant` is `None` only for components that
    /// do not import the interface, so the state is never used then.
    fn call_state(grant: Option<&Arc<Self::Grant>>, services: &Services, call: &CallInfo<'_>) -> Self::CallState;

    /// Whether the call used the interface (for the audit record).
    fn used(state: &Self::CallState) -> bool;
}

macro_rules! capabilities {
    ($($field:ident: $module:ident::$capability:ident),* $(,)?) => {
        /// Each capability's grant for one component.
        #[derive(Debug, Clone, Default)]
        pub struct Grants {
            $(pub $field: Option<Arc<<$module::$capability as Capability>::Grant>>,)*
        }

        /// Each capability's state for one call.
        pub struct CallStates {
            $(pub $field: <$module::$capability as Capability>::CallState,)*
        }

        /// Every host interface this host offers, without version.
        pub const INTERFACES: &[&str] = &[$(<$module::$capability as Capability>::INTERFACE),*];

        impl Grants {
            /// Check a component's policy entry.
            pub fn from_policy(policy: &ComponentPolicy) -> Self {
                Self { $($field: <$module::$capability as Capability>::grant(policy).map(Arc::new),)* }
            }

            /// Whether `interface` (without version) is granted; `None` when
            /// no capability offers it.
            pub fn allows(&self, interface: &str) -> Option<bool> {
                $(if interface == <$module::$capability as Capability>::INTERFACE {
                    return Some(self.$field.is_some());
                })*
                None
            }

            /// The state of every capability for one call.
            pub fn call_states(&self, services: &Services, call: &CallInfo<'_>) -> CallStates {
                CallStates {
                    $($field: <$module::$capability as Capability>::call_state(self.$field.as_ref(), services, call),)*
                }
            }
        }

        impl CallStates {
            /// The interfaces (short names: `files`) the call used.
            pub fn used(&self) -> Vec<&'static str> {
                let mut used = Vec::new();
                $(if <$module::$capability as Capability>::used(&self.$field) {
                    used.push(stringify!($field));
                })*
                used
            }
        }

        /// Link every capability.
        pub fn add_to_linker(linker: &mut Linker<CallContext>) -> wasmtime::Result<()> {
            $(<$module::$capability as Capability>::add_to_linker(linker)?;)*
            Ok(())
        }
    };
}

capabilities! {
    log: log::Log,
    state: state::State,
    agent: agent::Agent,
    files: files::Files,
    xenstore: xenstore::Xenstore,
    system: system::System,
    download: download::Download,
    update: update::Update,
}
