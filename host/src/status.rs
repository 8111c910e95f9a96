//! `guestward status`: what the daemon is doing, for its operator. Asked
//! over the local socket with a request of its own (`{"status": {}}`), which
//! is not a command: the hypervisor cannot send it, and it runs no
//! component.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::capability::agent::AGENT_VERSION;
use crate::dispatch::{CommandSummary, Dispatcher};
use crate::policy::GrantSet;
use crate::xenstore::LinkState;

/// What `status` reads from: the daemon's parts, shared.
pub struct StatusBoard {
    started: Instant,
    dispatcher: Arc<Dispatcher>,
    socket: Option<PathBuf>,
    xenstore: Option<watch::Receiver<LinkState>>,
    /// Set once the QGA exchange is started.
    qga_socket: OnceLock<PathBuf>,
    qga_port: OnceLock<(PathBuf, watch::Receiver<PortState>)>,
}

/// The state of the QGA exchange's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortState {
    /// The device does not exist (yet).
    Waiting,
    /// Open: a session is serving it.
    Open,
    /// The host side went away or the device cannot be opened; retried
    /// every second.
    Reopening { error: String },
}

/// The status request, as the local socket receives it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusRequest {
    #[allow(dead_code)] // (no options yet; the object leaves room for them)
    status: StatusOptions,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusOptions {}

/// The status request's line.
pub const REQUEST: &str = r#"{"status": {}}"#;

/// Whether a local request line is a status request (else it is a command).
pub fn is_request(line: &[u8]) -> bool {
    serde_json::from_slice::<StatusRequest>(line).is_ok()
}

/// The daemon's state at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StatusReport {
    pub version: String,
    pub uptime_seconds: u64,
    /// Filesystems are frozen (guest-fsfreeze-freeze), by this instance
    /// or by one killed before it.
    #[serde(default)]
    pub filesystems_frozen: bool,
    pub exchanges: Vec<ExchangeReport>,
    pub components: Vec<ComponentReport>,
    /// Per command name, the calls since the daemon started.
    pub commands: BTreeMap<String, CommandSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ExchangeReport {
    /// `xenstore`, `socket`, `qga-port` or `qga-socket`.
    pub name: String,
    /// `connected`, `reconnecting`, `listening`, `waiting` (for a port
    /// that does not exist), `open` or `reopening`.
    pub state: String,
    /// The socket's path, or the last connection error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ComponentReport {
    pub name: String,
    pub commands: Vec<String>,
    pub sha256: String,
    /// Why it runs: built in, signed by a key, or allowed unsigned.
    pub provenance: String,
    /// Its grants, one per line, as `policy check` writes them.
    pub grants: Vec<String>,
}

impl StatusBoard {
    pub fn new(
        dispatcher: Arc<Dispatcher>,
        socket: Option<PathBuf>,
        xenstore: Option<watch::Receiver<LinkState>>,
    ) -> Self {
        Self {
            started: Instant::now(),
            dispatcher,
            socket,
            xenstore,
            qga_socket: OnceLock::new(),
            qga_port: OnceLock::new(),
        }
    }

    /// The QGA exchange listens on `path`.
    pub fn set_qga_socket(&self, path: Option<PathBuf>) {
        if let Some(path) = path {
            let _ = self.qga_socket.set(path);
        }
    }

    /// The QGA exchange serves the port at `path`, whose state `state`
    /// follows.
    pub fn watch_qga_port(&self, path: PathBuf, state: watch::Receiver<PortState>) {
        let _ = self.qga_port.set((path, state));
    }

    pub fn report(&self) -> StatusReport {
        StatusReport {
            version: AGENT_VERSION.to_owned(),
            uptime_seconds: self.started.elapsed().as_secs(),
            filesystems_frozen: self.dispatcher.capabilities().freeze.frozen_flag().is_frozen(),
            exchanges: self.exchanges(),
            components: self.components(),
            commands: self.dispatcher.stats().summary(),
        }
    }

    fn exchanges(&self) -> Vec<ExchangeReport> {
        let mut exchanges = Vec::new();
        if let Some(link) = &self.xenstore {
            let (state, detail) = match &*link.borrow() {
                LinkState::Connected => ("connected", None),
                LinkState::Reconnecting { error } => ("reconnecting", Some(error.clone())),
            };
            exchanges.push(ExchangeReport {
                name: "xenstore".into(),
                state: state.into(),
                detail,
            });
        }
        if let Some(path) = &self.socket {
            exchanges.push(ExchangeReport {
                name: "socket".into(),
                state: "listening".into(),
                detail: Some(path.display().to_string()),
            });
        }
        if let Some((path, state)) = self.qga_port.get() {
            let (state, detail) = match &*state.borrow() {
                PortState::Waiting => ("waiting", format!("{} does not exist", path.display())),
                PortState::Open => ("open", path.display().to_string()),
                PortState::Reopening { error } => ("reopening", format!("{}: {error}", path.display())),
            };
            exchanges.push(ExchangeReport {
                name: "qga-port".into(),
                state: state.into(),
                detail: Some(detail),
            });
        }
        if let Some(path) = self.qga_socket.get() {
            exchanges.push(ExchangeReport {
                name: "qga-socket".into(),
                state: "listening".into(),
                detail: Some(path.display().to_string()),
            });
        }
        exchanges
    }

    fn components(&self) -> Vec<ComponentReport> {
        let registry = self.dispatcher.registry();
        let mut components: Vec<ComponentReport> = registry
            .components()
            .iter()
            .map(|component| ComponentReport {
                name: component.name.clone(),
                commands: component.info.names.clone(),
                sha256: component.sha256.clone(),
                provenance: component
                    .provenance
                    .as_ref()
                    .map_or_else(|| "not checked".to_owned(), ToString::to_string),
                grants: component.grants.describe(),
            })
            .collect();
        components.sort_by(|a, b| a.name.cmp(&b.name));
        components
    }
}

impl fmt::Display for StatusReport {
    /// For a person at a terminal; `--json` gives the same as data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "guestward {}, up {}", self.version, uptime(self.uptime_seconds))?;
        if self.filesystems_frozen {
            writeln!(
                f,
                "filesystems frozen: until the host's guest-fsfreeze-thaw or the auto-thaw"
            )?;
        }
        writeln!(f, "\nexchanges:")?;
        for exchange in &self.exchanges {
            match &exchange.detail {
                Some(detail) => writeln!(f, "  {:<10} {} ({detail})", exchange.name, exchange.state)?,
                None => writeln!(f, "  {:<10} {}", exchange.name, exchange.state)?,
            }
        }
        writeln!(f, "\ncomponents:")?;
        for component in &self.components {
            writeln!(f, "  {}: {}", component.name, component.commands.join(", "))?;
            writeln!(f, "    sha256    {}", component.sha256)?;
            writeln!(f, "    trusted   {}", component.provenance)?;
            for grant in &component.grants {
                writeln!(f, "    {grant}")?;
            }
        }
        writeln!(f, "\ncommands:")?;
        if self.commands.is_empty() {
            writeln!(f, "  (no calls yet)")?;
        }
        writeln!(
            f,
            "  {:<14} {:>7} {:>8} {:>8} {:>9} {:>9}",
            "", "calls", "failed", "timeout", "last ms", "p99 ms"
        )?;
        for (name, summary) in &self.commands {
            writeln!(
                f,
                "  {:<14} {:>7} {:>8} {:>8} {:>9.1} {:>9.1}",
                name, summary.calls, summary.failures, summary.timeouts, summary.last_ms, summary.p99_ms
            )?;
        }
        Ok(())
    }
}

fn uptime(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min {} s", seconds / 60, seconds % 60),
        _ => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_status_object_is_a_status_request() {
        assert!(is_request(REQUEST.as_bytes()));
        assert!(is_request(br#"{"status":{}}"#));
        assert!(!is_request(br#"{"name": "status"}"#));
        assert!(!is_request(br#"{"status": {}, "name": "version"}"#));
        assert!(!is_request(br#"{"status": {"all": true}}"#));
        assert!(!is_request(b"status"));
    }

    #[test]
    fn uptimes_read_naturally() {
        assert_eq!(uptime(42), "42 s");
        assert_eq!(uptime(125), "2 min 5 s");
        assert_eq!(uptime(7260), "2 h 1 min");
    }
}
