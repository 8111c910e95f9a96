//! End-to-end tests: the real `guestward` binary, real command components,
//! a real xenstored, the real `xenstore-*` tools on the hypervisor side.
//! One binary, one module per topic.

mod agentupdate;
mod author;
mod cli;
mod compat;
mod dispatch;
mod download;
mod exchange;
mod files;
mod fsfreeze;
mod fuzz;
mod hardening;
mod hostile;
mod injectfile;
mod install;
mod kmsactivate;
mod network_live;
mod operator;
mod package;
mod password;
mod protocol;
mod qga;
mod qga_accounts;
mod qga_libvirt;
mod qga_peer;
mod reliability;
mod resetnetwork;
mod sandbox;
mod status;
mod systemd;
mod trust;
mod xenstore_client;

use guestward_tests::{Agent, AgentBuilder, Dom0, GuestBridge, Xenstored};

/// The guest domain the tests' agents serve.
pub const DOMID: u32 = 5;

/// An agent serving guest domain [`DOMID`] of a fresh xenstored, and the
/// hypervisor side talking to it. Fields drop in order: agent, bridge,
/// daemon.
pub struct Guest {
    pub agent: Agent,
    pub bridge: GuestBridge,
    pub dom0: Dom0,
    pub xenstored: Xenstored,
}

impl Guest {
    /// Start xenstored (with `xenstored_args`), lay out the guest domain,
    /// and start the agent from `builder` connected as that guest.
    pub fn start_with(builder: AgentBuilder, xenstored_args: &[&str]) -> Self {
        if let Err(missing) = Xenstored::require_tools() {
            panic!("{missing}");
        }
        let xenstored = Xenstored::start_with_args(xenstored_args).expect("start xenstored");
        let bridge = xenstored.guest(DOMID).expect("guest bridge");
        let dom0 = Dom0::new(xenstored.socket(), DOMID);
        let agent = builder.xenstore(bridge.socket()).start();
        Self {
            agent,
            bridge,
            dom0,
            xenstored,
        }
    }

    pub fn start(builder: AgentBuilder) -> Self {
        Self::start_with(builder, &[])
    }
}

/// A test with a guest agent: `guest_test!(name, builder, |guest| body)`.
#[macro_export]
macro_rules! guest_test {
    ($name:ident, $builder:expr, |$guest:ident| $body:block) => {
        #[test]
        fn $name() {
            let $guest = $crate::Guest::start($builder);
            $body
        }
    };
}

/// The exact answer bytes the legacy agent wrote.
pub fn answer(message: &str, code: &str) -> String {
    format!(r#"{{"message": "{message}", "returncode": "{code}"}}"#)
}

/// The agent's version, as `version` must report it.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
