//! `agent`: facts about the agent itself (its version, its loaded commands).
//! Always granted; nothing here is secret.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use wasmtime::component::{HasSelf, Linker};

use super::{CallInfo, Capability, Services};
use crate::policy::ComponentPolicy;
use crate::runtime::CallContext;
use crate::runtime::bindings::guestward::command::agent as wit;

/// The version `version` reports.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

pub struct Agent;

/// The `agent` grant: always given, with the component's settings.
#[derive(Debug)]
pub struct AgentGrant {
    settings: BTreeMap<String, String>,
}

/// What the daemon knows about itself, shared by every call. The command
/// list changes when components are (re)loaded.
#[derive(Debug, Clone, Default)]
pub struct AgentFacts {
    commands: Arc<RwLock<Arc<[String]>>>,
}

impl AgentFacts {
    /// Record the commands the daemon now answers.
    pub fn set_commands(&self, mut names: Vec<String>) {
        names.sort();
        if let Ok(mut commands) = self.commands.write() {
            *commands = names.into();
        }
    }

    /// The sorted names of the loaded commands.
    pub fn commands(&self) -> Arc<[String]> {
        self.commands
            .read()
            .map(|commands| commands.clone())
            .unwrap_or_default()
    }
}

/// One call's view of the facts.
#[derive(Debug)]
pub struct CallAgent {
    facts: AgentFacts,
    grant: Option<Arc<AgentGrant>>,
    /// When the call's deadline passes.
    deadline: Instant,
    used: bool,
}

impl Capability for Agent {
    const INTERFACE: &'static str = "guestward:command/agent";
    type Grant = AgentGrant;
    type CallState = CallAgent;

    fn add_to_linker(linker: &mut Linker<CallContext>) -> wasmtime::Result<()> {
        wit::add_to_linker::<_, HasSelf<CallAgent>>(linker, |context| &mut context.capabilities.agent)
    }

    fn grant(policy: &ComponentPolicy) -> Option<AgentGrant> {
        Some(AgentGrant {
            settings: policy.settings.clone(),
        })
    }

    fn call_state(grant: Option<&Arc<AgentGrant>>, services: &Services, call: &CallInfo<'_>) -> CallAgent {
        CallAgent {
            facts: services.agent.clone(),
            grant: grant.cloned(),
            deadline: Instant::now() + call.limits.deadline,
            used: false,
        }
    }

    fn used(state: &CallAgent) -> bool {
        state.used
    }
}

impl wit::Host for CallAgent {
    fn version(&mut self) -> String {
        self.used = true;
        AGENT_VERSION.to_owned()
    }

    fn commands(&mut self) -> Vec<String> {
        self.used = true;
        self.facts.commands().to_vec()
    }

    fn setting(&mut self, name: String) -> Option<String> {
        self.used = true;
        self.grant.as_ref()?.settings.get(&name).cloned()
    }

    fn remaining_ms(&mut self) -> u32 {
        self.used = true;
        let left = self.deadline.saturating_duration_since(Instant::now());
        u32::try_from(left.as_millis()).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn remaining_time_counts_down_to_the_deadline_and_stops_at_zero() {
        let mut call = CallAgent {
            facts: AgentFacts::default(),
            grant: None,
            deadline: Instant::now() + Duration::from_secs(3),
            used: false,
        };
        let left = wit::Host::remaining_ms(&mut call);
        assert!((2000..=3000).contains(&left), "{left}");
        call.deadline = Instant::now() - Duration::from_secs(1);
        assert_eq!(wit::Host::remaining_ms(&mut call), 0);
        assert!(call.used);
    }
}
