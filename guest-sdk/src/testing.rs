//! A native host for unit-testing command logic, with the daemon's grants,
//! limits and error texts.
//!
//! When a command crate is compiled for the host machine (plain `cargo
//! test`), the host interfaces are served from a thread-local [`TestHost`]
//! instead of the daemon. Set it up, call the command, and look at what it
//! did:
//!
//! ```
//! use guestward_sdk::{Command, Reply, Request, files, testing};
//!
//! struct Motd;
//!
//! impl Command for Motd {
//!     const NAMES: &'static [&'static str] = &["motd"];
//!     const SUMMARY: &'static str = "Show the message of the day";
//!     const ASKS: &'static str = "files = [{ path = \"/etc/motd\", access = \"read\" }]";
//!
//!     fn handle(request: Request<'_>) -> Reply {
//!         let path = request.string().unwrap_or("/etc/motd".to_owned());
//!         match files::read(&path) {
//!             Ok(text) => Reply::ok(String::from_utf8_lossy(&text)),
//!             Err(error) => Reply::error(error.text()),
//!         }
//!     }
//! }
//!
//! testing::reset();
//! testing::load_asks::<Motd>("motd").unwrap();
//! testing::with_host(|host| host.files.insert("/etc/motd".into(), b"hello".to_vec()));
//! assert_eq!(testing::call::<Motd>("motd", "").message, "hello");
//! // Outside the grant, the daemon's refusal:
//! assert_eq!(
//!     testing::call::<Motd>("motd", "\"/etc/shadow\"").message,
//!     "/etc/shadow is outside the readable files of component motd"
//! );
//! ```
//!
//! What it does as the daemon does:
//!
//! * **Grants**, once a policy entry is loaded ([`load_policy`], or
//!   [`load_asks`] for the command's own [`Command::ASKS`]): a `files` path
//!   outside the rules, a write under a read-only rule, a XenStore key
//!   outside the prefixes, a program whose argument list matches no
//!   pattern, a URL outside the prefixes, `hostname`, `network`,
//!   `update` and `freeze` without their key: each gets the interface's `not-granted`
//!   error with the daemon's text, naming the component. Malformed paths
//!   and keys get `invalid-path` and `invalid-key`. Without a policy entry,
//!   everything is granted.
//! * **Limits**, when the command is called through [`call`]: a reply over
//!   `reply-bytes` or with an invalid return code, a call past
//!   `deadline-ms` and a panic become the daemon's `500` replies; log lines
//!   past `log-lines` are dropped and counted ([`TestHost::logs_dropped`]);
//!   `agent::remaining_ms` counts down from the deadline; downloads are
//!   capped at `download-mib`. `memory-mib` is read but not enforced: a
//!   native test has no linear memory to cap (run the `.wasm` with
//!   `guestward run` for that).
//! * **Faults**: [`Fault`]s inject `not-granted` or `io` errors into a call
//!   (`files.read`) or a whole interface (`files`), for one path, key,
//!   program or URL or for all, every time or a given number of times.
//! * **Freezing**: [`TestHost::mounts`] are the filesystems a freeze
//!   applies to and [`TestHost::frozen`] those frozen; a second freeze gets
//!   the daemon's `already-frozen`.
//! * **Fixtures**: files from a directory ([`TestHost::add_files_from`]) or
//!   the [`TestHost::files`] map, XenStore keys from JSON
//!   ([`TestHost::add_xenstore_json`]) or the [`TestHost::xenstore`] map.
//!
//! The test host is per thread (each `#[test]` gets its own); call
//! [`reset`] at the start of a test that may share its thread.

mod bounds;
mod faults;
mod policy;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Instant;

use crate::bindings::guestward::command::log::Level;
use crate::{Command, Reply, Request};

pub use faults::{Fault, FaultKind};
pub use policy::{FileRule, Grants, Limits, PolicyError};

/// Everything the native host interfaces read and write.
#[derive(Debug, Default, Clone)]
pub struct TestHost {
    /// The component's name (its `.wasm` file's stem), as the daemon's
    /// error texts name it; set by [`TestHost::load_policy`].
    pub component: String,
    /// What the component is granted; `None` (the default): everything.
    pub grants: Option<Grants>,
    /// The per-call limits [`call`] applies (the daemon's defaults unless a
    /// policy entry sets them).
    pub limits: Limits,
    /// Errors to inject instead of answering (see [`Fault`]).
    pub faults: Vec<Fault>,
    /// What `agent::version` answers.
    pub version: String,
    /// What `agent::commands` answers (sorted by the caller).
    pub commands: Vec<String>,
    /// What `agent::disabled_commands` answers (sorted by the caller).
    pub disabled_commands: Vec<String>,
    /// Files by absolute path (directories are implied by their files).
    pub files: BTreeMap<String, Vec<u8>>,
    /// XenStore keys and values.
    pub xenstore: BTreeMap<String, String>,
    /// The `state` store.
    pub state: HashMap<String, Vec<u8>>,
    /// Every line logged, in order (at most `log-lines` per call).
    pub logs: Vec<(Level, String)>,
    /// Lines dropped over the `log-lines` limit in the current or last call.
    pub logs_dropped: u32,
    /// What `agent::setting` answers.
    pub settings: BTreeMap<String, String>,
    /// What `agent::remaining_ms` answers; `None`: the time left until the
    /// deadline of the current [`call`] (the whole deadline outside one).
    pub remaining_ms: Option<u32>,
    /// Every lock taken, by path.
    pub locks: Vec<String>,
    /// Every program run: its argument list (program first) and its input.
    pub runs: Vec<(Vec<String>, Vec<u8>)>,
    /// The timeout of every `programs::run` given one, by program, in order.
    pub run_timeouts: Vec<(String, u32)>,
    /// The exit code `programs::run` reports for a program (default 0).
    pub exit_codes: BTreeMap<String, i32>,
    /// What a program writes to its standard output, by program.
    pub outputs: BTreeMap<String, Vec<u8>>,
    /// Programs that hang: `programs::run` reports them timed out (with the
    /// daemon's text) when run with a timeout, and fails without one.
    pub hanging: BTreeSet<String>,
    /// What `download::fetch` returns, by URL (absent: "HTTP 404").
    pub downloads: BTreeMap<String, Vec<u8>>,
    /// Components handed to `update::install`, by file name.
    pub installed: BTreeMap<String, Vec<u8>>,
    /// What `update::install` fails with instead of installing, if set.
    pub install_error: Option<crate::update::Error>,
    /// File modes and owners set (by `replace` options or `set_permissions`).
    pub permissions: BTreeMap<String, Permissions>,
    /// What `network::interfaces` answers.
    pub interfaces: Vec<crate::network::NetworkInterface>,
    /// What `network::addresses` answers (the daemon answers at most 1024
    /// interfaces and 4096 addresses, and fails past that).
    pub interface_details: Vec<crate::network::InterfaceDetails>,
    /// The hostname `hostname::set` set last.
    pub hostname: Option<String>,
    /// What `hostname::set` fails with instead of setting it, if set.
    pub hostname_error: Option<crate::hostname::Error>,
    /// The mount points a freeze applies to, in mount order (what
    /// `freeze::freeze` freezes, last first).
    pub mounts: Vec<String>,
    /// The mount points frozen now, in the order they were frozen.
    pub frozen: Vec<String>,
    /// What `freeze::freeze` fails with instead of freezing, if set.
    pub freeze_error: Option<crate::freeze::Error>,
    /// When the current [`call`] started.
    call_started: Option<Instant>,
    /// Lines logged in the current call.
    log_lines_used: u32,
}

/// A mode and an owner (uid, gid), each if set.
pub type Permissions = (Option<u32>, Option<(u32, u32)>);

impl TestHost {
    /// Grant what the policy entry `entry` grants to the component `name`,
    /// with its limits and settings: `entry` is the body of a
    /// `[component.<name>]` entry, in the policy file's TOML syntax.
    pub fn load_policy(&mut self, name: &str, entry: &str) -> Result<(), PolicyError> {
        let entry = policy::parse(entry)?;
        self.component = name.to_owned();
        self.grants = Some(entry.grants);
        self.limits = entry.limits;
        self.settings.extend(entry.settings);
        Ok(())
    }

    /// Serve the files under the directory `dir` at the absolute path `at`
    /// (`add_files_from("tests/fixtures/proc", "/proc")`).
    pub fn add_files_from(&mut self, dir: impl AsRef<Path>, at: &str) -> std::io::Result<()> {
        let at = at.trim_end_matches('/');
        for entry in std::fs::read_dir(dir.as_ref())? {
            let entry = entry?;
            let path = format!("{at}/{}", entry.file_name().to_string_lossy());
            if entry.file_type()?.is_dir() {
                self.add_files_from(entry.path(), &path)?;
            } else {
                self.files.insert(path, std::fs::read(entry.path())?);
            }
        }
        Ok(())
    }

    /// Serve the XenStore keys of a JSON object: a string is a key's value,
    /// an object holds the keys below it (`{"vm-data": {"hostname": "a"}}`
    /// or `{"vm-data/hostname": "a"}`), and other values are their JSON
    /// text.
    pub fn add_xenstore_json(&mut self, json: &str) -> Result<(), serde_json::Error> {
        fn add(keys: &mut BTreeMap<String, String>, prefix: &str, value: &serde_json::Value) {
            match value {
                serde_json::Value::Object(children) => {
                    for (name, child) in children {
                        let key = if prefix.is_empty() {
                            name.clone()
                        } else {
                            format!("{prefix}/{name}")
                        };
                        add(keys, &key, child);
                    }
                }
                serde_json::Value::String(text) => {
                    keys.insert(prefix.to_owned(), text.clone());
                }
                other => {
                    keys.insert(prefix.to_owned(), other.to_string());
                }
            }
        }
        let value: serde_json::Value = serde_json::from_str(json)?;
        add(&mut self.xenstore, "", &value);
        Ok(())
    }
}

thread_local! {
    static HOST: RefCell<TestHost> = RefCell::new(TestHost::default());
}

/// Read or change the current thread's test host.
pub fn with_host<R>(f: impl FnOnce(&mut TestHost) -> R) -> R {
    HOST.with(|host| f(&mut host.borrow_mut()))
}

/// Start again from an empty test host: everything granted, default limits.
pub fn reset() {
    with_host(|host| *host = TestHost::default());
}

/// [`TestHost::load_policy`] on the current thread's test host.
pub fn load_policy(name: &str, entry: &str) -> Result<(), PolicyError> {
    with_host(|host| host.load_policy(name, entry))
}

/// Grant the component `name` exactly what `C` asks for
/// ([`Command::ASKS`]), as an operator pasting `guestward inspect`'s entry
/// would.
pub fn load_asks<C: Command>(name: &str) -> Result<(), PolicyError> {
    load_policy(name, C::ASKS)
}

/// Call `C` as the daemon does: the request `name` with the JSON text
/// `value`, under the test host's limits. The reply is the one the daemon
/// would send, including its `500` replies for a reply over `reply-bytes`
/// (`command 'NAME' replied with N bytes, over its limit of M bytes`), an
/// invalid return code, a call past `deadline-ms` (checked when the command
/// returns) and a panic.
pub fn call<C: Command>(name: &str, value: &str) -> Reply {
    let limits = with_host(|host| {
        host.call_started = Some(Instant::now());
        host.log_lines_used = 0;
        host.logs_dropped = 0;
        host.limits
    });
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(|| C::handle(Request::new(name, value)));
    with_host(|host| host.call_started = None);
    let reply = match outcome {
        Ok(reply) => reply,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            return Reply::error(format!("command '{name}' panicked: {message}"));
        }
    };
    if started.elapsed() > limits.deadline {
        return Reply::error(format!(
            "command '{name}' did not finish within its deadline of {} ms",
            limits.deadline.as_millis()
        ));
    }
    checked_reply(name, reply, &limits)
}

/// The daemon's checks of a reply: its size, and a sane return code.
fn checked_reply(command: &str, reply: Reply, limits: &Limits) -> Reply {
    let size = reply.code.len() + reply.message.len();
    if size > limits.reply_bytes {
        return Reply::error(format!(
            "command '{command}' replied with {size} bytes, over its limit of {} bytes",
            limits.reply_bytes
        ));
    }
    let code_ok =
        !reply.code.is_empty() && reply.code.len() <= 16 && reply.code.bytes().all(|b| b.is_ascii_alphanumeric());
    if !code_ok {
        return Reply::error(format!(
            "command '{command}' returned an invalid return code {:?}",
            reply.code
        ));
    }
    reply
}

/// The injected fault for `call` on `target`, if any, as the interface's
/// error.
fn fault<E>(call: &str, target: &str, error: impl FnOnce(FaultKind, String) -> E) -> Result<(), E> {
    match with_host(|host| faults::take(&mut host.faults, call, target)) {
        Some((kind, text)) => Err(error(kind, text)),
        None => Ok(()),
    }
}

/// The component's name, for the daemon's texts.
fn component() -> String {
    with_host(|host| host.component.clone())
}

/// `log`, natively: lines go to [`TestHost::logs`], at most `log-lines` per call.
pub mod log {
    use super::{Level, with_host};

    /// Append the line to [`TestHost::logs`](super::TestHost::logs), or
    /// count it in [`TestHost::logs_dropped`](super::TestHost::logs_dropped)
    /// past the call's `log-lines` limit.
    pub fn log(level: Level, message: &str) {
        with_host(|host| {
            if host.log_lines_used >= host.limits.log_lines {
                host.logs_dropped = host.logs_dropped.saturating_add(1);
                return;
            }
            host.log_lines_used += 1;
            host.logs.push((level, message.to_owned()));
        });
    }
}

/// `state`, natively: [`TestHost::state`], without expiry or limits.
pub mod state {
    use super::with_host;
    use crate::bindings::guestward::command::state::Error;

    /// The value under `key`.
    pub fn get(key: &str) -> Option<Vec<u8>> {
        with_host(|host| host.state.get(key).cloned())
    }

    /// Store `value` under `key` (the time to live is ignored).
    pub fn set(key: &str, value: &[u8], _ttl_seconds: Option<u32>) -> Result<(), Error> {
        with_host(|host| host.state.insert(key.to_owned(), value.to_vec()));
        Ok(())
    }

    /// Forget `key`.
    pub fn delete(key: &str) {
        with_host(|host| host.state.remove(key));
    }
}

/// `agent`, natively: answers from the [`TestHost`]'s fields.
pub mod agent {
    use super::with_host;

    /// [`TestHost::version`](super::TestHost::version).
    pub fn version() -> String {
        with_host(|host| host.version.clone())
    }

    /// [`TestHost::commands`](super::TestHost::commands).
    pub fn commands() -> Vec<String> {
        with_host(|host| host.commands.clone())
    }

    /// [`TestHost::disabled_commands`](super::TestHost::disabled_commands).
    pub fn disabled_commands() -> Vec<String> {
        with_host(|host| host.disabled_commands.clone())
    }

    /// The setting `name` from [`TestHost::settings`](super::TestHost::settings).
    pub fn setting(name: &str) -> Option<String> {
        with_host(|host| host.settings.get(name).cloned())
    }

    /// [`TestHost::remaining_ms`](super::TestHost::remaining_ms) if set;
    /// else the time left until the deadline of the current
    /// [`call`](super::call), counting down.
    pub fn remaining_ms() -> u32 {
        with_host(|host| {
            if let Some(fixed) = host.remaining_ms {
                return fixed;
            }
            let elapsed = host.call_started.map(|started| started.elapsed()).unwrap_or_default();
            let left = host.limits.deadline.saturating_sub(elapsed).as_millis();
            u32::try_from(left).unwrap_or(u32::MAX)
        })
    }
}

/// `files`, natively: [`TestHost::files`], a map from path to contents
/// (directories are implied by their files), checked against the `files`
/// grant.
pub mod files {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::policy::{Access, validate_path};
    use super::{FaultKind, component, fault, with_host};
    use crate::bindings::guestward::command::files::{DirEntry, Error, FileKind, FileMetadata, Owner, ReplaceOptions};

    /// The setuid and setgid bits.
    const SET_ID_BITS: u32 = 0o6000;

    /// The normalized path, if the grant and the faults let `call` at it.
    fn check(call: &str, path: &str, access: Access) -> Result<String, Error> {
        let normal = validate_path(path).map_err(Error::InvalidPath)?;
        let allowed = with_host(|host| host.grants.as_ref().map(|grants| grants.allows_file(&normal, access)));
        match allowed {
            Some(None) => return Err(Error::NotGranted("this component has no files grant".to_owned())),
            Some(Some(false)) => return Err(not_granted(path, &normal, access)),
            None | Some(Some(true)) => {}
        }
        let normal = normal.to_string_lossy().into_owned();
        fault(call, &normal, |kind, text| match kind {
            FaultKind::NotGranted => Error::NotGranted(text),
            FaultKind::Io => Error::Io(text),
        })?;
        Ok(normal)
    }

    /// The daemon's refusal, in its words.
    fn not_granted(path: &str, normal: &Path, access: Access) -> Error {
        let what = match access {
            Access::Read => "readable",
            Access::Write => "writable",
        };
        let component = component();
        if Path::new(path) == normal {
            Error::NotGranted(format!("{path} is outside the {what} files of component {component}"))
        } else {
            Error::NotGranted(format!(
                "{path} resolves to {}, outside the {what} files of component {component}",
                normal.display()
            ))
        }
    }

    /// Refuse the setuid and setgid bits, and owner changes, unless a rule
    /// grants them at `path`.
    fn check_permissions(path: &str, normal: &str, mode: Option<u32>, owner: Option<(u32, u32)>) -> Result<(), Error> {
        let Some(grants) = with_host(|host| host.grants.clone()) else {
            return Ok(());
        };
        if let Some(mode) = mode
            && mode & SET_ID_BITS != 0
            && !grants.allows_setuid(Path::new(normal))
        {
            return Err(Error::NotGranted(format!(
                "{path}: mode {mode:o} sets the setuid or setgid bit, which is not granted to component {}",
                component()
            )));
        }
        let current = with_host(|host| host.permissions.get(normal).and_then(|(_, owner)| *owner)).unwrap_or((0, 0));
        if let Some((uid, gid)) = owner
            && (uid, gid) != current
            && !grants.allows_chown(Path::new(normal))
        {
            return Err(Error::NotGranted(format!(
                "{path}: giving it to {uid}:{gid} is not granted to component {} \
                 (a file may be given only to the account whose home directory holds it, where the policy says chown = \"home-account\")",
                component()
            )));
        }
        Ok(())
    }

    fn is_dir(files: &BTreeMap<String, Vec<u8>>, path: &str) -> bool {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        files.keys().any(|name| name.starts_with(&prefix))
    }

    /// The file's contents.
    pub fn read(path: &str) -> Result<Vec<u8>, Error> {
        let path = check("files.read", path, Access::Read)?;
        with_host(|host| match host.files.get(&path) {
            Some(contents) => Ok(contents.clone()),
            None if is_dir(&host.files, &path) => Err(Error::IsADirectory(path.clone())),
            None => Err(Error::NotFound(path.clone())),
        })
    }

    /// The files and directories directly under `path`.
    pub fn list_dir(path: &str) -> Result<Vec<DirEntry>, Error> {
        let path = check("files.list-dir", path, Access::Read)?;
        with_host(|host| {
            if !is_dir(&host.files, &path) {
                return Err(Error::NotFound(path.clone()));
            }
            let prefix = format!("{}/", path.trim_end_matches('/'));
            let mut entries = BTreeMap::new();
            for name in host.files.keys() {
                if let Some(rest) = name.strip_prefix(&prefix) {
                    let (first, kind) = match rest.split_once('/') {
                        Some((dir, _)) => (dir, FileKind::Directory),
                        None => (rest, FileKind::File),
                    };
                    entries.insert(first.to_owned(), kind);
                }
            }
            Ok(entries
                .into_iter()
                .map(|(name, kind)| DirEntry { name, kind })
                .collect())
        })
    }

    /// A file (mode 0644) or an implied directory (0755), owned by root
    /// unless [`TestHost::permissions`](super::TestHost::permissions) says otherwise.
    pub fn metadata(path: &str) -> Result<FileMetadata, Error> {
        let path = check("files.metadata", path, Access::Read)?;
        with_host(|host| {
            let (kind, size) = match host.files.get(&path) {
                Some(contents) => (FileKind::File, contents.len() as u64),
                None if is_dir(&host.files, &path) => (FileKind::Directory, 0),
                None => return Err(Error::NotFound(path.clone())),
            };
            let (mode, owner) = host.permissions.get(&path).copied().unwrap_or_default();
            let (uid, gid) = owner.unwrap_or((0, 0));
            let default_mode = if kind == FileKind::File { 0o644 } else { 0o755 };
            Ok(FileMetadata {
                kind,
                size,
                mode: mode.unwrap_or(default_mode),
                uid,
                gid,
                modified: 0,
            })
        })
    }

    /// Always an error: the test host has no symlinks.
    pub fn read_link(path: &str) -> Result<String, Error> {
        let path = check("files.read-link", path, Access::Read)?;
        Err(Error::Io(format!("{path}: not a symlink")))
    }

    /// Store the contents, and the mode and owner if the options set them
    /// (and keep the old contents under the backup suffix, if given).
    pub fn replace(path: &str, contents: &[u8], options: &ReplaceOptions) -> Result<(), Error> {
        let normal = check("files.replace", path, Access::Write)?;
        let owner = options.owner.map(|owner| (owner.uid, owner.gid));
        check_permissions(path, &normal, options.mode, owner)?;
        let backup = match &options.backup_suffix {
            Some(suffix) if suffix.is_empty() || suffix.contains('/') || suffix.contains('\0') => {
                return Err(Error::InvalidPath(format!(
                    "backup suffix {suffix:?} must be a non-empty name part"
                )));
            }
            Some(suffix) => Some(check("files.replace", &format!("{normal}{suffix}"), Access::Write)?),
            None => None,
        };
        with_host(|host| {
            if let Some(backup) = backup
                && let Some(old) = host.files.get(&normal).cloned()
            {
                host.files.insert(backup, old);
            }
            host.files.insert(normal.clone(), contents.to_vec());
            if options.mode.is_some() || owner.is_some() {
                host.permissions.insert(normal, (options.mode, owner));
            }
        });
        Ok(())
    }

    /// Record the mode and owner in [`TestHost::permissions`](super::TestHost::permissions).
    pub fn set_permissions(path: &str, mode: Option<u32>, owner: Option<Owner>) -> Result<(), Error> {
        let normal = check("files.set-permissions", path, Access::Write)?;
        let owner = owner.map(|owner| (owner.uid, owner.gid));
        check_permissions(path, &normal, mode, owner)?;
        with_host(|host| host.permissions.insert(normal, (mode, owner)));
        Ok(())
    }

    /// Remove a file.
    pub fn remove(path: &str) -> Result<(), Error> {
        let path = check("files.remove", path, Access::Write)?;
        with_host(|host| host.files.remove(&path))
            .map(|_| ())
            .ok_or(Error::NotFound(path))
    }

    /// Nothing to store: directories are implied by their files.
    pub fn create_dir(path: &str, _mode: Option<u32>, _recursive: bool) -> Result<(), Error> {
        check("files.create-dir", path, Access::Write).map(|_| ())
    }

    /// Record the path in [`TestHost::locks`](super::TestHost::locks).
    pub fn lock(path: &str, _timeout_ms: u32) -> Result<(), Error> {
        let path = check("files.lock", path, Access::Write)?;
        with_host(|host| host.locks.push(path));
        Ok(())
    }

    /// Move a file's contents to `destination`.
    pub fn rename(source: &str, destination: &str) -> Result<(), Error> {
        let source = check("files.rename", source, Access::Write)?;
        let destination = check("files.rename", destination, Access::Write)?;
        with_host(|host| {
            let contents = host.files.remove(&source).ok_or(Error::NotFound(source))?;
            host.files.insert(destination, contents);
            Ok(())
        })
    }
}

/// `xenstore`, natively: [`TestHost::xenstore`], a map from key to value,
/// checked against the `xenstore` grant.
pub mod xenstore {
    use super::{FaultKind, bounds, component, fault, with_host};
    use crate::bindings::guestward::command::xenstore::Error;

    /// The daemon's key checks and grant, then the faults.
    fn check(call: &str, key: &str) -> Result<(), Error> {
        bounds::check("a key", key, bounds::KEY).map_err(Error::InvalidKey)?;
        if key.starts_with('/') {
            return Err(Error::InvalidKey(format!(
                "{key}: use a key relative to the domain (vm-data/…)"
            )));
        }
        if key.is_empty() || key.contains("//") || key.ends_with('/') || key.contains('\0') {
            return Err(Error::InvalidKey(format!("{key:?} is not a valid XenStore key")));
        }
        match with_host(|host| host.grants.as_ref().map(|grants| grants.allows_key(key))) {
            Some(None) => {
                return Err(Error::NotGranted(format!(
                    "component {} has no XenStore grant",
                    component()
                )));
            }
            Some(Some(false)) => {
                return Err(Error::NotGranted(format!(
                    "{key} is outside the XenStore grants of component {}",
                    component()
                )));
            }
            None | Some(Some(true)) => {}
        }
        fault(call, key, |kind, text| match kind {
            FaultKind::NotGranted => Error::NotGranted(text),
            FaultKind::Io => Error::Unavailable(text),
        })
    }

    /// The value of `key`.
    pub fn read(key: &str) -> Result<String, Error> {
        check("xenstore.read", key)?;
        with_host(|host| host.xenstore.get(key).cloned()).ok_or_else(|| Error::NotFound(key.to_owned()))
    }

    /// The children of `key`, implied by the keys under it.
    pub fn directory(key: &str) -> Result<Vec<String>, Error> {
        check("xenstore.directory", key)?;
        let prefix = format!("{key}/");
        let children: std::collections::BTreeSet<String> = with_host(|host| {
            host.xenstore
                .keys()
                .filter_map(|name| name.strip_prefix(&prefix))
                .map(|rest| rest.split('/').next().unwrap_or(rest).to_owned())
                .collect()
        });
        if children.is_empty() {
            return Err(Error::NotFound(key.to_owned()));
        }
        Ok(children.into_iter().collect())
    }
}

/// `update`, natively: components are recorded in [`TestHost::installed`].
pub mod update {
    use super::{FaultKind, fault, with_host};
    use crate::update::{ComponentFile, Error};

    /// Record the components, or fail with [`TestHost::install_error`](super::TestHost::install_error).
    pub fn install(components: &[ComponentFile]) -> Result<Vec<String>, Error> {
        if with_host(|host| host.grants.as_ref().is_some_and(|grants| !grants.update)) {
            return Err(Error::NotGranted(
                "this component may not install components".to_owned(),
            ));
        }
        fault("update.install", "", |kind, text| match kind {
            FaultKind::NotGranted => Error::NotGranted(text),
            FaultKind::Io => Error::Failed(text),
        })?;
        with_host(|host| {
            if let Some(error) = &host.install_error {
                return Err(error.clone());
            }
            for component in components {
                host.installed.insert(component.name.clone(), component.wasm.clone());
            }
            Ok(host.installed.keys().cloned().collect())
        })
    }
}

/// `programs`, natively: every run is recorded in [`TestHost::runs`],
/// checked against the `programs` grant.
pub mod programs {
    use super::{FaultKind, bounds, component, fault, with_host};
    use crate::programs::{Argument, Error, ProgramOutput, RunOptions};

    /// Records the run (and its timeout, in [`TestHost::run_timeouts`](super::TestHost::run_timeouts));
    /// secret arguments are recorded as `<secret>`, so tests can check that
    /// they were marked. A program in [`TestHost::hanging`](super::TestHost::hanging)
    /// times out with the daemon's text. Its output is
    /// [`TestHost::outputs`](super::TestHost::outputs).
    pub fn run(program: &str, args: &[Argument], stdin: &[u8], options: RunOptions) -> Result<ProgramOutput, Error> {
        bounds::check("a program path", program, bounds::PATH).map_err(Error::Failed)?;
        let real: Vec<String> = std::iter::once(program.to_owned())
            .chain(args.iter().map(|arg| match arg {
                Argument::Plain(text) | Argument::Secret(text) => text.clone(),
            }))
            .collect();
        if with_host(|host| host.grants.as_ref().is_some_and(|grants| !grants.allows_program(&real))) {
            return Err(Error::NotGranted(format!(
                "component {} may not run {program} with these arguments",
                component()
            )));
        }
        fault("programs.run", program, |kind, text| match kind {
            FaultKind::NotGranted => Error::NotGranted(text),
            FaultKind::Io => Error::Failed(text),
        })?;
        let argv: Vec<String> = std::iter::once(program.to_owned())
            .chain(args.iter().map(|arg| match arg {
                Argument::Plain(text) => text.clone(),
                Argument::Secret(_) => "<secret>".to_owned(),
            }))
            .collect();
        let (exit_code, hangs, stdout) = with_host(|host| {
            host.runs.push((argv, stdin.to_vec()));
            if let Some(timeout_ms) = options.timeout_ms {
                host.run_timeouts.push((program.to_owned(), timeout_ms));
            }
            let exit_code = host.exit_codes.get(program).copied().unwrap_or(0);
            let stdout = host.outputs.get(program).cloned().unwrap_or_default();
            (exit_code, host.hanging.contains(program), stdout)
        });
        if hangs {
            return Err(match options.timeout_ms {
                Some(ms) => Error::TimedOut(format!("{program} did not finish within {ms} ms and was killed")),
                None => Error::Failed(format!("{program} hung past the call's deadline")),
            });
        }
        Ok(ProgramOutput {
            exit_code: Some(exit_code),
            signal: None,
            stdout,
            stderr: Vec::new(),
        })
    }
}

/// `hostname`, natively: the name set is kept in [`TestHost::hostname`].
pub mod hostname {
    use super::{FaultKind, bounds, component, fault, with_host};
    use crate::hostname::Error;

    /// Set [`TestHost::hostname`](super::TestHost::hostname), or fail with
    /// [`TestHost::hostname_error`](super::TestHost::hostname_error).
    pub fn set(name: &str) -> Result<(), Error> {
        if with_host(|host| host.grants.as_ref().is_some_and(|grants| !grants.hostname)) {
            return Err(Error::NotGranted(format!(
                "component {} may not set the hostname",
                component()
            )));
        }
        bounds::check("a hostname", name, bounds::HOSTNAME).map_err(Error::InvalidName)?;
        let valid = !name.is_empty() && !name.bytes().any(|b| b.is_ascii_control() || b == b'/' || b == b' ');
        if !valid {
            return Err(Error::InvalidName(format!("{name:?} is not a valid hostname")));
        }
        fault("hostname.set", name, |kind, text| match kind {
            FaultKind::NotGranted => Error::NotGranted(text),
            FaultKind::Io => Error::Failed(text),
        })?;
        with_host(|host| match &host.hostname_error {
            Some(error) => Err(error.clone()),
            None => {
                host.hostname = Some(name.to_owned());
                Ok(())
            }
        })
    }
}

/// `freeze`, natively: [`TestHost::mounts`] are the filesystems,
/// [`TestHost::frozen`] those frozen, with the daemon's rules and texts.
pub mod freeze {
    use super::{FaultKind, component, fault, with_host};
    use crate::freeze::{Error, FreezeStatus};

    fn granted(what: &str) -> Result<(), Error> {
        if with_host(|host| host.grants.as_ref().is_some_and(|grants| !grants.freeze)) {
            return Err(Error::NotGranted(format!(
                "component {} may not {what} filesystems",
                component()
            )));
        }
        Ok(())
    }

    /// Frozen while [`TestHost::frozen`](super::TestHost::frozen) is not empty.
    pub fn status() -> FreezeStatus {
        if with_host(|host| host.frozen.is_empty()) {
            FreezeStatus::Thawed
        } else {
            FreezeStatus::Frozen
        }
    }

    /// Freeze the [`TestHost::mounts`](super::TestHost::mounts) (those
    /// exactly named in `mountpoints`, if given), last first, each once.
    pub fn freeze(mountpoints: Option<&[String]>) -> Result<u32, Error> {
        granted("freeze")?;
        if with_host(|host| !host.frozen.is_empty()) {
            return Err(Error::AlreadyFrozen(
                "the filesystems are frozen already: thaw them first".to_owned(),
            ));
        }
        fault("freeze.freeze", "", |kind, text| match kind {
            FaultKind::NotGranted => Error::NotGranted(text),
            FaultKind::Io => Error::Failed(text),
        })?;
        with_host(|host| {
            if let Some(error) = &host.freeze_error {
                return Err(error.clone());
            }
            let mut frozen: Vec<String> = Vec::new();
            for mount in host.mounts.iter().rev() {
                let wanted = mountpoints.is_none_or(|names| names.contains(mount));
                if wanted && !frozen.contains(mount) {
                    frozen.push(mount.clone());
                }
            }
            host.frozen = frozen;
            Ok(u32::try_from(host.frozen.len()).unwrap_or(u32::MAX))
        })
    }

    /// Thaw what is frozen: how many.
    pub fn thaw() -> Result<u32, Error> {
        granted("thaw")?;
        fault("freeze.thaw", "", |kind, text| match kind {
            FaultKind::NotGranted => Error::NotGranted(text),
            FaultKind::Io => Error::Failed(text),
        })?;
        with_host(|host| Ok(u32::try_from(std::mem::take(&mut host.frozen).len()).unwrap_or(u32::MAX)))
    }
}

/// `network`, natively: the interfaces are [`TestHost::interfaces`] and
/// [`TestHost::interface_details`].
pub mod network {
    use super::{FaultKind, component, fault, with_host};
    use crate::network::{Error, InterfaceDetails, NetworkInterface};

    /// The daemon's most interfaces and addresses in one answer.
    const MAX_INTERFACES: usize = 1024;
    const MAX_ADDRESSES: usize = 4096;

    /// The grant, then the faults injected for `call`.
    fn check(call: &str) -> Result<(), Error> {
        if with_host(|host| host.grants.as_ref().is_some_and(|grants| !grants.network)) {
            return Err(Error::NotGranted(format!(
                "component {} may not list the network interfaces",
                component()
            )));
        }
        fault(call, "", |kind, text| match kind {
            FaultKind::NotGranted => Error::NotGranted(text),
            FaultKind::Io => Error::Failed(text),
        })
    }

    /// [`TestHost::interfaces`](super::TestHost::interfaces).
    pub fn interfaces() -> Result<Vec<NetworkInterface>, Error> {
        check("network.interfaces")?;
        Ok(with_host(|host| host.interfaces.clone()))
    }

    /// [`TestHost::interface_details`](super::TestHost::interface_details),
    /// or the daemon's failure when there are more than it answers.
    pub fn addresses() -> Result<Vec<InterfaceDetails>, Error> {
        check("network.addresses")?;
        let details = with_host(|host| host.interface_details.clone());
        let addresses: usize = details.iter().map(|nic| nic.ip_addresses.len()).sum();
        if details.len() > MAX_INTERFACES {
            return Err(Error::Failed(format!(
                "cannot list the network interfaces: the machine has {} network interfaces, more than the {MAX_INTERFACES} a command is given",
                details.len()
            )));
        }
        if addresses > MAX_ADDRESSES {
            return Err(Error::Failed(format!(
                "cannot list the network interfaces: the machine has {addresses} IP addresses, more than the {MAX_ADDRESSES} a command is given"
            )));
        }
        Ok(details)
    }
}

/// `download`, natively: [`TestHost::downloads`], by URL, checked against
/// the `download` grant and capped at `download-mib`.
pub mod download {
    use super::{FaultKind, bounds, component, fault, with_host};
    use crate::bindings::guestward::command::download::Error;

    /// The body stored for `url`; "HTTP 404" if none; too large past
    /// `max_bytes` or the `download-mib` limit.
    pub fn fetch(url: &str, max_bytes: u64) -> Result<Vec<u8>, Error> {
        bounds::check("a URL", url, bounds::URL).map_err(Error::Failed)?;
        match with_host(|host| host.grants.as_ref().map(|grants| grants.allows_url(url))) {
            Some(None) => {
                return Err(Error::NotGranted(format!(
                    "component {} has no download grant",
                    component()
                )));
            }
            Some(Some(false)) => {
                return Err(Error::NotGranted(format!(
                    "{url} is outside the download grants of component {}",
                    component()
                )));
            }
            None | Some(Some(true)) => {}
        }
        fault("download.fetch", url, |kind, text| match kind {
            FaultKind::NotGranted => Error::NotGranted(text),
            FaultKind::Io => Error::Failed(text),
        })?;
        let limit = max_bytes.min(with_host(|host| host.limits.download_bytes));
        let body = with_host(|host| host.downloads.get(url).cloned())
            .ok_or_else(|| Error::Failed(format!("{url}: HTTP 404 Not Found")))?;
        if body.len() as u64 > limit {
            return Err(Error::TooLarge(format!("{url} is larger than {limit} bytes")));
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests;
