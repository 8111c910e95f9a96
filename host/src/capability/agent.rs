//! `agent`: facts about the agent itself (its version, its loaded commands).
//! Always granted; nothing here is secret.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use wasmtime::component::{HasSelf, Linker};

use super::freeze::FrozenFlag;
use super::{CallInfo, Capability};
use crate::policy::{PolicyError, SectionErrors};
use crate::protocol::qga::{self, RpcFilter};
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
    /// The operator's QGA allow and block lists.
    qga_filter: Arc<RpcFilter>,
    /// Set while filesystems are frozen, when QGA commands are disabled.
    frozen: FrozenFlag,
}

impl Agent {
    /// An agent whose QGA commands are narrowed by `filter`.
    pub fn with_qga_filter(filter: RpcFilter) -> Self {
        Self {
            qga_filter: Arc::new(filter),
            ..Self::default()
        }
    }

    /// An agent that reports QGA commands disabled while `frozen` is set.
    pub fn with_frozen_flag(self, frozen: FrozenFlag) -> Self {
        Self { frozen, ..self }
    }

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
    qga_filter: Arc<RpcFilter>,
    frozen: FrozenFlag,
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
            .map(|(name, value)| format!("{name} = {value}"))
            .collect()
    }

    fn call_state(&self, settings: Option<&Arc<Settings>>, call: &CallInfo<'_>) -> CallAgent {
        CallAgent {
            commands: self.commands(),
            qga_filter: self.qga_filter.clone(),
            frozen: self.frozen.clone(),
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

    fn disabled_commands(&mut self) -> Vec<String> {
        let mut disabled = self.qga_filter.disabled(&self.commands);
        if self.frozen.is_frozen() {
            disabled.extend(qga::disabled_while_frozen(&self.commands));
            disabled.sort();
            disabled.dedup();
        }
        disabled
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
            qga_filter: Arc::default(),
            frozen: FrozenFlag::default(),
            settings: None,
            deadline: Instant::now() + Duration::from_secs(3),
        };
        let left = wit::Host::remaining_ms(&mut call);
        assert!((2000..=3000).contains(&left), "{left}");
        call.deadline = Instant::now() - Duration::from_secs(1);
        assert_eq!(wit::Host::remaining_ms(&mut call), 0);
    }

    /// The capability alone, linked into a Store whose data is not the
    /// runtime's: what "generic over the Store's data" buys.
    #[test]
    fn the_capability_links_alone_into_any_store_data() {
        struct TestData {
            agent: CallAgent,
        }
        const COMPONENT: &str = r#"
            (component
              (import "guestward:command/agent@1.0.0" (instance $agent
                (export "remaining-ms" (func (result u32)))))
              (core func $remaining (canon lower (func $agent "remaining-ms")))
              (core module $m
                (import "host" "remaining-ms" (func $r (result i32)))
                (func (export "remaining") (result i32) call $r))
              (core instance $i (instantiate $m
                (with "host" (instance (export "remaining-ms" (func $remaining))))))
              (func (export "remaining") (result u32) (canon lift (core func $i "remaining"))))
        "#;
        let engine = wasmtime::Engine::default();
        let mut linker = Linker::<TestData>::new(&engine);
        Agent::add_to_linker(&mut linker, |data| &mut data.agent).unwrap();
        let limits = crate::policy::Limits::default();
        let call = CallInfo {
            component: "test",
            command: "",
            request_id: "",
            limits: &limits,
            deadline: Instant::now() + Duration::from_secs(5),
            refusals: &Default::default(),
        };
        let data = TestData {
            agent: Agent::default().call_state(None, &call),
        };
        let mut store = wasmtime::Store::new(&engine, data);
        let component = wasmtime::component::Component::new(&engine, wat::parse_str(COMPONENT).unwrap()).unwrap();
        let instance = linker.instantiate(&mut store, &component).unwrap();
        let remaining = instance.get_typed_func::<(), (u32,)>(&mut store, "remaining").unwrap();
        let (left,) = remaining.call(&mut store, ()).unwrap();
        assert!((4000..=5000).contains(&left), "{left}");
    }
}
