//! The daemon's settings: a TOML file (`--config`, default
//! `/etc/guestward/guestward.toml` when it exists), overridden by flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The default configuration file, read when it exists.
pub const DEFAULT_CONFIG: &str = "/etc/guestward/guestward.toml";
/// The default operator policy, read when it exists.
pub const DEFAULT_POLICY: &str = "/etc/guestward/policy.toml";
/// Drop-ins added on top of the policy, in name order, when it exists.
pub const DEFAULT_POLICY_DIR: &str = "/etc/guestward/policy.d";
/// The default local socket.
pub const DEFAULT_SOCKET: &str = "/run/guestward/guestward.sock";
/// The default compiled-component cache.
pub const DEFAULT_CACHE: &str = "/var/cache/guestward";

/// Settings as written in the file; every key optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigFile {
    /// The xenbus device or xenstored socket. Default: the guest's xenbus
    /// device when there is one.
    pub xenstore: Option<PathBuf>,
    /// Directory of command components (replaces the built-in commands).
    pub commands: Option<PathBuf>,
    /// More directories of command components, loaded beside the others.
    #[serde(default)]
    pub extra_commands: Vec<PathBuf>,
    /// Operator policy file.
    pub policy: Option<PathBuf>,
    /// Directory of policy drop-ins (`*.toml`, in name order).
    pub policy_dir: Option<PathBuf>,
    /// Root directory for files and machine changes (default `/`).
    pub root: Option<PathBuf>,
    /// JSON file describing the network interfaces (with `root`).
    pub interfaces: Option<PathBuf>,
    /// Local socket path; `""` turns the socket off.
    pub socket: Option<PathBuf>,
    /// Compiled-component cache directory; `""` turns caching off.
    pub cache: Option<PathBuf>,
    /// Seconds between safety re-scans of `data/host`.
    pub rescan_seconds: Option<u64>,
    /// Seconds xenstored may take to answer before the connection is taken
    /// for dead and reopened.
    pub xenstore_timeout_seconds: Option<u64>,
    /// Seconds shutdown waits for running commands and their answers.
    pub drain_seconds: Option<u64>,
    /// Public keys whose signatures are trusted.
    pub trusted_keys: Option<PathBuf>,
    /// Directories whose components may run unsigned.
    #[serde(default)]
    pub allow_unsigned: Vec<PathBuf>,
    /// Accept v1 signatures (which do not bind the component's name).
    #[serde(default)]
    pub accept_v1_signatures: bool,
}

impl ConfigFile {
    /// Read `path`; with no path, the default file if it exists.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let (path, required) = match path {
            Some(path) => (path.to_owned(), true),
            None => (PathBuf::from(DEFAULT_CONFIG), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if !required && error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::default());
            }
            Err(error) => anyhow::bail!("cannot read {}: {error}", path.display()),
        };
        toml::from_str(&text).map_err(|error| {
            let line = error
                .span()
                .map_or(1, |span| text[..span.start.min(text.len())].matches('\n').count() + 1);
            anyhow::anyhow!("{}:{line}: {}", path.display(), error.message().trim())
        })
    }

    pub fn rescan(&self) -> Duration {
        Duration::from_secs(self.rescan_seconds.unwrap_or(60).max(1))
    }

    pub fn xenstore_timeout(&self) -> Duration {
        Duration::from_secs(self.xenstore_timeout_seconds.unwrap_or(5).max(1))
    }

    pub fn drain(&self) -> Duration {
        Duration::from_secs(self.drain_seconds.unwrap_or(30))
    }
}

/// Where the built-in commands are, when no directory is configured: next
/// to the binary (`target/release/commands`, as `make` lays them out), then
/// the installed layout (`/usr/sbin/guestward` → `/usr/lib/guestward/commands`).
pub fn default_commands_dir() -> PathBuf {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_owned));
    let mut candidates = Vec::new();
    if let Some(dir) = &exe_dir {
        candidates.push(dir.join("commands"));
        candidates.push(dir.join("../lib/guestward/commands"));
    }
    candidates.push(PathBuf::from("/usr/lib/guestward/commands"));
    candidates
        .iter()
        .find(|dir| dir.is_dir())
        .cloned()
        .unwrap_or_else(|| PathBuf::from("/usr/lib/guestward/commands"))
}
