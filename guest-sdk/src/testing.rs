//! An in-memory host for unit-testing command logic natively.
//!
//! When a command crate is compiled for the host machine (plain `cargo
//! test`), the host interfaces are served from a thread-local [`TestHost`]
//! instead of the daemon. Set it up, call the command's `handle`, and look at
//! what it did:
//!
//! ```
//! use guestward_sdk::testing;
//!
//! testing::with_host(|host| host.commands = vec!["version".into()]);
//! assert_eq!(guestward_sdk::agent::commands(), ["version"]);
//! ```
//!
//! The test host does not enforce grants or limits: those are the daemon's
//! job and are tested against the real runtime.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::bindings::guestward::command::log::Level;

/// Everything the native host interfaces read and write.
#[derive(Debug, Default, Clone)]
pub struct TestHost {
    /// What `agent::version` answers.
    pub version: String,
    /// What `agent::commands` answers (sorted by the caller).
    pub commands: Vec<String>,
    /// Files by absolute path (directories are implied by their files).
    pub files: BTreeMap<String, Vec<u8>>,
    /// XenStore keys and values.
    pub xenstore: BTreeMap<String, String>,
    /// The `state` store.
    pub state: HashMap<String, Vec<u8>>,
    /// Every line logged, in order.
    pub logs: Vec<(Level, String)>,
    /// What `agent::setting` answers.
    pub settings: BTreeMap<String, String>,
    /// What `agent::remaining_ms` answers; `None`: the default deadline
    /// (25 s).
    pub remaining_ms: Option<u32>,
    /// Every lock taken, by path.
    pub locks: Vec<String>,
    /// Every program run: its argument list (program first) and its input.
    pub runs: Vec<(Vec<String>, Vec<u8>)>,
    /// The timeout of every `programs::run` given one, by program, in order.
    pub run_timeouts: Vec<(String, u32)>,
    /// The exit code `programs::run` reports for a program (default 0).
    pub exit_codes: BTreeMap<String, i32>,
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
    /// The hostname `hostname::set` set last.
    pub hostname: Option<String>,
    /// What `hostname::set` fails with instead of setting it, if set.
    pub hostname_error: Option<crate::hostname::Error>,
}

/// A mode and an owner (uid, gid), each if set.
pub type Permissions = (Option<u32>, Option<(u32, u32)>);

thread_local! {
    static HOST: RefCell<TestHost> = RefCell::new(TestHost::default());
}

/// Read or change the current thread's test host.
pub fn with_host<R>(f: impl FnOnce(&mut TestHost) -> R) -> R {
    HOST.with(|host| f(&mut host.borrow_mut()))
}

/// Start again from an empty test host.
pub fn reset() {
    with_host(|host| *host = TestHost::default());
}

/// `log`, natively: lines go to [`TestHost::logs`].
pub mod log {
    use super::{Level, with_host};

    /// Append the line to [`TestHost::logs`](super::TestHost::logs).
    pub fn log(level: Level, message: &str) {
        with_host(|host| host.logs.push((level, message.to_owned())));
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

    /// The setting `name` from [`TestHost::settings`](super::TestHost::settings).
    pub fn setting(name: &str) -> Option<String> {
        with_host(|host| host.settings.get(name).cloned())
    }

    /// [`TestHost::remaining_ms`](super::TestHost::remaining_ms), 25 000 by default.
    pub fn remaining_ms() -> u32 {
        with_host(|host| host.remaining_ms.unwrap_or(25_000))
    }
}

/// `files`, natively: [`TestHost::files`], a map from path to contents
/// (directories are implied by their files; every path is granted).
pub mod files {
    use super::with_host;
    use crate::bindings::guestward::command::files::{DirEntry, Error, FileKind, FileMetadata, ReplaceOptions};

    fn is_dir(files: &std::collections::BTreeMap<String, Vec<u8>>, path: &str) -> bool {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        files.keys().any(|name| name.starts_with(&prefix))
    }

    /// The file's contents.
    pub fn read(path: &str) -> Result<Vec<u8>, Error> {
        with_host(|host| host.files.get(path).cloned()).ok_or_else(|| Error::NotFound(path.to_owned()))
    }

    /// The files and directories directly under `path`.
    pub fn list_dir(path: &str) -> Result<Vec<DirEntry>, Error> {
        with_host(|host| {
            if !is_dir(&host.files, path) {
                return Err(Error::NotFound(path.to_owned()));
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

    use std::collections::BTreeMap;

    /// A file (mode 0644) or an implied directory (0755), owned by root.
    pub fn metadata(path: &str) -> Result<FileMetadata, Error> {
        with_host(|host| {
            let (kind, size) = match host.files.get(path) {
                Some(contents) => (FileKind::File, contents.len() as u64),
                None if is_dir(&host.files, path) => (FileKind::Directory, 0),
                None => return Err(Error::NotFound(path.to_owned())),
            };
            Ok(FileMetadata {
                kind,
                size,
                mode: if kind == FileKind::File { 0o644 } else { 0o755 },
                uid: 0,
                gid: 0,
                modified: 0,
            })
        })
    }

    /// Always an error: the test host has no symlinks.
    pub fn read_link(path: &str) -> Result<String, Error> {
        Err(Error::Io(format!("{path}: not a symlink")))
    }

    /// Store the contents, and the mode and owner if the options set them.
    pub fn replace(path: &str, contents: &[u8], options: &ReplaceOptions) -> Result<(), Error> {
        with_host(|host| {
            host.files.insert(path.to_owned(), contents.to_vec());
            let owner = options.owner.map(|owner| (owner.uid, owner.gid));
            if options.mode.is_some() || owner.is_some() {
                host.permissions.insert(path.to_owned(), (options.mode, owner));
            }
        });
        Ok(())
    }

    /// Record the mode and owner in [`TestHost::permissions`](super::TestHost::permissions).
    pub fn set_permissions(
        path: &str,
        mode: Option<u32>,
        owner: Option<super::files_owner::Owner>,
    ) -> Result<(), Error> {
        let owner = owner.map(|owner| (owner.uid, owner.gid));
        with_host(|host| host.permissions.insert(path.to_owned(), (mode, owner)));
        Ok(())
    }

    /// Remove a file.
    pub fn remove(path: &str) -> Result<(), Error> {
        with_host(|host| host.files.remove(path))
            .map(|_| ())
            .ok_or_else(|| Error::NotFound(path.to_owned()))
    }

    /// Nothing to do: directories are implied by their files.
    pub fn create_dir(_path: &str, _mode: Option<u32>, _recursive: bool) -> Result<(), Error> {
        Ok(())
    }

    /// Record the path in [`TestHost::locks`](super::TestHost::locks).
    pub fn lock(path: &str, _timeout_ms: u32) -> Result<(), Error> {
        with_host(|host| host.locks.push(path.to_owned()));
        Ok(())
    }

    /// Move a file's contents to `destination`.
    pub fn rename(source: &str, destination: &str) -> Result<(), Error> {
        with_host(|host| {
            let contents = host
                .files
                .remove(source)
                .ok_or_else(|| Error::NotFound(source.to_owned()))?;
            host.files.insert(destination.to_owned(), contents);
            Ok(())
        })
    }
}

/// `xenstore`, natively: [`TestHost::xenstore`], a map from key to value.
pub mod xenstore {
    use super::with_host;
    use crate::bindings::guestward::command::xenstore::Error;

    /// The value of `key`.
    pub fn read(key: &str) -> Result<String, Error> {
        with_host(|host| host.xenstore.get(key).cloned()).ok_or_else(|| Error::NotFound(key.to_owned()))
    }

    /// The children of `key`, implied by the keys under it.
    pub fn directory(key: &str) -> Result<Vec<String>, Error> {
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

mod files_owner {
    pub use crate::bindings::guestward::command::files::Owner;
}

/// `update`, natively: components are recorded in [`TestHost::installed`].
pub mod update {
    use super::with_host;
    use crate::update::{ComponentFile, Error};

    /// Record the components, or fail with [`TestHost::install_error`](super::TestHost::install_error).
    pub fn install(components: &[ComponentFile]) -> Result<Vec<String>, Error> {
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

/// `programs`, natively: every run is recorded in [`TestHost::runs`].
pub mod programs {
    use super::with_host;
    use crate::programs::{Argument, Error, ProgramOutput, RunOptions};

    /// Records the run (and its timeout, in [`TestHost::run_timeouts`](super::TestHost::run_timeouts));
    /// secret arguments are recorded as `<secret>`, so tests can check that
    /// they were marked. A program in [`TestHost::hanging`](super::TestHost::hanging)
    /// times out with the daemon's text.
    pub fn run(program: &str, args: &[Argument], stdin: &[u8], options: RunOptions) -> Result<ProgramOutput, Error> {
        let argv: Vec<String> = std::iter::once(program.to_owned())
            .chain(args.iter().map(|arg| match arg {
                Argument::Plain(text) => text.clone(),
                Argument::Secret(_) => "<secret>".to_owned(),
            }))
            .collect();
        let (exit_code, hangs) = with_host(|host| {
            host.runs.push((argv, stdin.to_vec()));
            if let Some(timeout_ms) = options.timeout_ms {
                host.run_timeouts.push((program.to_owned(), timeout_ms));
            }
            let exit_code = host.exit_codes.get(program).copied().unwrap_or(0);
            (exit_code, host.hanging.contains(program))
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
            stdout: Vec::new(),
            stderr: Vec::new(),
        })
    }
}

/// `hostname`, natively: the name set is kept in [`TestHost::hostname`].
pub mod hostname {
    use super::with_host;
    use crate::hostname::Error;

    /// Set [`TestHost::hostname`](super::TestHost::hostname), or fail with
    /// [`TestHost::hostname_error`](super::TestHost::hostname_error).
    pub fn set(name: &str) -> Result<(), Error> {
        with_host(|host| match &host.hostname_error {
            Some(error) => Err(error.clone()),
            None => {
                host.hostname = Some(name.to_owned());
                Ok(())
            }
        })
    }
}

/// `network`, natively: the interfaces are [`TestHost::interfaces`].
pub mod network {
    use super::with_host;
    use crate::network::{Error, NetworkInterface};

    /// [`TestHost::interfaces`](super::TestHost::interfaces).
    pub fn interfaces() -> Result<Vec<NetworkInterface>, Error> {
        Ok(with_host(|host| host.interfaces.clone()))
    }
}

/// `download`, natively: [`TestHost::downloads`], by URL.
pub mod download {
    use super::with_host;
    use crate::bindings::guestward::command::download::Error;

    /// The body stored for `url`; "HTTP 404" if none; too large past `max_bytes`.
    pub fn fetch(url: &str, max_bytes: u64) -> Result<Vec<u8>, Error> {
        let body = with_host(|host| host.downloads.get(url).cloned())
            .ok_or_else(|| Error::Failed(format!("{url}: HTTP 404 Not Found")))?;
        if body.len() as u64 > max_bytes {
            return Err(Error::TooLarge(format!("{url} is larger than {max_bytes} bytes")));
        }
        Ok(body)
    }
}
