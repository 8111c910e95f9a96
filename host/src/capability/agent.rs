//! `agent`: facts about the agent itself (its version, its loaded commands).
//! Always granted; nothing here is secret.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use wasmtime::component::{HasSelf, Linker};

use super::{CallInfo, Capability};
use crate::policy::{PolicyError, SectionErrors};
use crate::wit::agent as wit;

/// The version `version` reports.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The `agent` capability: what the daemon knows about itself, shared by
/// every call. The command list changes when components are (re)loaded.
/// Always granted; the policy key `settings` gives a component its
/// settings.
#[derive(Debug, Clone, Default)]
pub struct Agent {
    commands: Arc<RwLock<Arc<[String]>>>,
}

impl Agent {
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

/// A component's settings (`[component.<name>.settings]`).
#[derive(Debug, PartialEq, Eq)]
pub struct Settings(BTreeMap<String, String>);

/// One call's view of the facts.
#[derive(Debug)]
pub struct CallAgent {
    commands: Arc<[String]>,
    settings: Option<Arc<Settings>>,
    /// When the call's deadline passes.
    deadline: Instant,
}

impl Capability for Agent {
    const NAME: &'static str = "agent";
    const POLICY_KEY: Option<&'static str> = Some("settings");
    const ALWAYS_GRANTED: bool = true;
    type Config = BTreeMap<String, String>;
    type Grant = Settings;
    type CallState = CallAgent;

    fn grant(settings: BTreeMap<String, String>, _errors: &SectionErrors<'_>) -> Result<Option<Settings>, PolicyError> {
        Ok(Some(Settings(settings)))
    }

    fn describe(settings: &Settings) -> Vec<String> {
        settings
            .0
            .iter()
            .map(|(name, value)| format!("setting {name} = {value}"))
            .collect()
    }

    fn call_state(&self, settings: Option<&Arc<Settings>>, call: &CallInfo<'_>) -> CallAgent {
        CallAgent {
            commands: self.commands(),
            settings: settings.cloned(),
            deadline: call.deadline,
        }
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut CallAgent,
    ) -> wasmtime::Result<()> {
        wit::add_to_linker::<_, HasSelf<CallAgent>>(linker, get)
    }
}

impl wit::Host for CallAgent {
    fn version(&mut self) -> String {
        AGENT_VERSION.to_owned()
    }

    fn commands(&mut self) -> Vec<String> {
        self.commands.to_vec()
    }

    fn setting(&mut self, name: String) -> Option<String> {
        self.settings.as_ref()?.0.get(&name).cloned()
    }

    fn remaining_ms(&mut self) -> u32 {
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
            commands: Arc::from([]),
            settings: None,
            deadline: Instant::now() + Duration::from_secs(3),
        };
        let left = wit::Host::remaining_ms(&mut call);
        assert!((2000..=3000).contains(&left), "{left}");
        call.deadline = Instant::now() - Duration::from_secs(1);
        assert_eq!(wit::Host::remaining_ms(&mut call), 0);
    }
}
