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
/// The default runtime directory (the record of a freeze, for an instance
/// started after a crash).
pub const DEFAULT_RUNTIME_DIR: &str = "/run/guestward";
/// The default compiled-component cache.
pub const DEFAULT_CACHE: &str = "/var/cache/guestward";
/// How long filesystems stay frozen when the host never thaws them: ten
/// minutes. A quiesced snapshot freezes, snapshots every disk (a
/// volume-backed server's through the block storage service) and thaws,
/// which takes seconds to a few minutes; a host that died meanwhile must
/// not leave the guest's writers hanging for good.
pub const DEFAULT_FREEZE_TIMEOUT: Duration = Duration::from_secs(600);

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
    /// Runtime state that must outlive a crash of the daemon but not a
    /// reboot (a tmpfs).
    pub runtime_dir: Option<PathBuf>,
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
    /// Also append the audit records to this file (JSON lines, mode 0600).
    pub audit_log: Option<PathBuf>,
    /// The virtio-serial port of the QEMU guest agent protocol; `""` turns
    /// it off. Default: QEMU's port when the machine has one.
    pub qga_device: Option<PathBuf>,
    /// A unix socket speaking the QEMU guest agent protocol.
    pub qga_socket: Option<PathBuf>,
    /// Only these QGA commands run (qemu-ga's `--allow-rpcs`).
    pub qga_allow_rpcs: Option<Vec<String>>,
    /// These QGA commands never run (qemu-ga's `--block-rpcs`).
    #[serde(default)]
    pub qga_block_rpcs: Vec<String>,
    /// Seconds filesystems stay frozen (guest-fsfreeze-freeze) before the
    /// daemon thaws them by itself, when the host never does.
    pub freeze_timeout_seconds: Option<u64>,
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
        Self::parse(&text).map_err(|error| anyhow::anyhow!("{}:{error}", path.display()))
    }

    /// Parse the file's text; an error reads `LINE: KEY: what is wrong`.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|error| {
            let at = error.span().unwrap_or(0..0);
            let line = text[..at.start.min(text.len())].matches('\n').count() + 1;
            // serde names an unknown key, not one whose value has the wrong
            // type: find the key whose value the error points into.
            match key_holding(text, &at) {
                Some(key) => format!("{line}: {key}: {}", error.message().trim()),
                None => format!("{line}: {}", error.message().trim()),
            }
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

    pub fn freeze_timeout(&self) -> Duration {
        self.freeze_timeout_seconds
            .map_or(DEFAULT_FREEZE_TIMEOUT, |seconds| Duration::from_secs(seconds.max(1)))
    }
}

/// The top-level key whose value spans `at`, if any.
fn key_holding(text: &str, at: &std::ops::Range<usize>) -> Option<String> {
    let document = toml::de::DeTable::parse(text).ok()?;
    document.get_ref().iter().find_map(|(key, value)| {
        let span = value.span();
        (span.start <= at.start && at.end <= span.end && at.start < span.end).then(|| key.get_ref().to_string())
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The annotated example that `make install` ships.
    const EXAMPLE: &str = include_str!("../../dist/guestward.toml");

    /// The keys `ConfigFile` reads, as serde sees them.
    fn keys() -> Vec<&'static str> {
        /// A deserializer that only records the fields asked for.
        struct Fields(Vec<&'static str>);
        impl<'de> serde::Deserializer<'de> for &mut Fields {
            type Error = serde::de::value::Error;
            fn deserialize_struct<V: serde::de::Visitor<'de>>(
                self,
                _name: &'static str,
                fields: &'static [&'static str],
                _visitor: V,
            ) -> Result<V::Value, Self::Error> {
                self.0 = fields.to_vec();
                Err(serde::de::Error::custom("only the fields were wanted"))
            }
            fn deserialize_any<V: serde::de::Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
                Err(serde::de::Error::custom("not a struct"))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
                unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
            }
        }
        let mut fields = Fields(Vec::new());
        let _ = ConfigFile::deserialize(&mut fields);
        fields.0
    }

    #[test]
    fn the_example_shows_every_key_with_a_value_the_daemon_accepts() {
        // Each `# key = value` line, uncommented, is a configuration.
        let uncommented: String = EXAMPLE
            .lines()
            .filter_map(|line| line.strip_prefix("# "))
            .filter(|line| line.split_once(" = ").is_some_and(|(key, _)| !key.contains(' ')))
            .map(|line| format!("{line}\n"))
            .collect();
        let parsed = ConfigFile::parse(&uncommented).unwrap_or_else(|error| panic!("{error}\n{uncommented}"));
        assert_eq!(parsed.rescan(), Duration::from_secs(60));
        let shown: Vec<&str> = uncommented
            .lines()
            .filter_map(|line| line.split(" = ").next())
            .collect();
        let mut expected = keys();
        assert!(expected.len() > 10, "{expected:?}");
        expected.sort_unstable();
        let mut shown_sorted = shown.clone();
        shown_sorted.sort_unstable();
        assert_eq!(shown_sorted, expected, "every key once, in dist/guestward.toml");
    }

    #[test]
    fn the_operators_guide_has_a_row_for_every_key() {
        let guide = include_str!("../../docs/operating.md");
        for key in keys() {
            assert!(
                guide.contains(&format!("| `{key}` |")),
                "docs/operating.md: no row for {key}"
            );
        }
    }

    #[test]
    fn errors_name_the_line_and_the_key() {
        let error = ConfigFile::parse("socket = \"/s\"\nrescan-seconds = \"soon\"\n").unwrap_err();
        assert_eq!(error, "2: rescan-seconds: invalid type: string \"soon\", expected u64");
        let error = ConfigFile::parse("\n\nrescan-secs = 5\n").unwrap_err();
        assert!(error.starts_with("3: unknown field `rescan-secs`"), "{error}");
        let error = ConfigFile::parse("extra-commands = \"/x\"\n").unwrap_err();
        assert!(error.starts_with("1: extra-commands: invalid type"), "{error}");
    }
}
