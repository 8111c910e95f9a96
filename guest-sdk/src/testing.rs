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
use std::collections::{BTreeMap, HashMap};

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
    /// The timeout of every `system::run_with_timeout`, by program, in order.
    pub run_timeouts: Vec<(String, u32)>,
    /// The exit code `system::run` reports for a program (default 0).
    pub exit_codes: BTreeMap<String, i32>,
    /// What `download::fetch` returns, by URL (absent: "HTTP 404").
    pub downloads: BTreeMap<String, Vec<u8>>,
    /// Components handed to `update::install`, by file name.
    pub installed: BTreeMap<String, Vec<u8>>,
    /// File modes and owners set (by `replace` options or `set_permissions`).
    pub permissions: BTreeMap<String, Permissions>,
    /// What `system::interfaces` answers.
    pub interfaces: Vec<crate::bindings::guestward::command::system::NetworkInterface>,
    /// The hostname `system::set_hostname` set last.
    pub hostname: Option<String>,
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

pub mod log {
    use super::{Level, with_host};

    pub fn log(level: Level, message: &str) {
        with_host(|host| host.logs.push((level, message.to_owned())));
    }
}

pub mod state {
    use super::with_host;
    use crate::bindings::guestward::command::state::Error;

    pub fn get(key: &str) -> Option<Vec<u8>> {
        with_host(|host| host.state.get(key).cloned())
    }

    pub fn set(key: &str, value: &[u8], _ttl_seconds: Option<u32>) -> Result<(), Error> {
        with_host(|host| host.state.insert(key.to_owned(), value.to_vec()));
        Ok(())
    }

    pub fn delete(key: &str) {
        with_host(|host| host.state.remove(key));
    }
}

pub mod agent {
    use super::with_host;

    pub fn version() -> String {
        with_host(|host| host.version.clone())
    }

    pub fn commands() -> Vec<String> {
        with_host(|host| host.commands.clone())
    }

    pub fn setting(name: &str) -> Option<String> {
        with_host(|host| host.settings.get(name).cloned())
    }

    pub fn remaining_ms() -> u32 {
        with_host(|host| host.remaining_ms.unwrap_or(25_000))
    }
}

pub mod files {
    use super::with_host;
    use crate::bindings::guestward::command::files::{DirEntry, Error, FileKind, FileMetadata, ReplaceOptions};

    fn is_dir(files: &std::collections::BTreeMap<String, Vec<u8>>, path: &str) -> bool {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        files.keys().any(|name| name.starts_with(&prefix))
    }

    pub fn read(path: &str) -> Result<Vec<u8>, Error> {
        with_host(|host| host.files.get(path).cloned()).ok_or_else(|| Error::NotFound(path.to_owned()))
    }

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

    pub fn read_link(path: &str) -> Result<String, Error> {
        Err(Error::Io(format!("{path}: not a symlink")))
    }

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

    pub fn set_permissions(
        path: &str,
        mode: Option<u32>,
        owner: Option<super::files_owner::Owner>,
    ) -> Result<(), Error> {
        let owner = owner.map(|owner| (owner.uid, owner.gid));
        with_host(|host| host.permissions.insert(path.to_owned(), (mode, owner)));
        Ok(())
    }

    pub fn remove(path: &str) -> Result<(), Error> {
        with_host(|host| host.files.remove(path))
            .map(|_| ())
            .ok_or_else(|| Error::NotFound(path.to_owned()))
    }

    pub fn create_dir(_path: &str, _mode: Option<u32>, _recursive: bool) -> Result<(), Error> {
        Ok(())
    }

    pub fn lock(path: &str, _timeout_ms: u32) -> Result<(), Error> {
        with_host(|host| host.locks.push(path.to_owned()));
        Ok(())
    }

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

pub mod xenstore {
    use super::with_host;
    use crate::bindings::guestward::command::xenstore::Error;

    pub fn read(key: &str) -> Result<String, Error> {
        with_host(|host| host.xenstore.get(key).cloned()).ok_or_else(|| Error::NotFound(key.to_owned()))
    }

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

pub mod update {
    use super::with_host;
    use crate::bindings::guestward::command::update::ComponentFile;

    pub fn install(components: &[ComponentFile]) -> Result<Vec<String>, String> {
        with_host(|host| {
            for component in components {
                host.installed.insert(component.name.clone(), component.wasm.clone());
            }
            Ok(host.installed.keys().cloned().collect())
        })
    }
}

pub mod system {
    use super::with_host;
    use crate::bindings::guestward::command::system::{Argument, Error, NetworkInterface, ProgramOutput};

    /// Like [`run`], with the timeout recorded; the test host's programs
    /// never hang.
    pub fn run_with_timeout(
        program: &str,
        args: &[Argument],
        stdin: &[u8],
        timeout_ms: u32,
    ) -> Result<ProgramOutput, Error> {
        with_host(|host| host.run_timeouts.push((program.to_owned(), timeout_ms)));
        run(program, args, stdin)
    }

    pub fn interfaces() -> Result<Vec<NetworkInterface>, Error> {
        Ok(with_host(|host| host.interfaces.clone()))
    }

    pub fn set_hostname(name: &str) -> Result<(), Error> {
        with_host(|host| host.hostname = Some(name.to_owned()));
        Ok(())
    }

    /// Records the run; secret arguments are recorded as `<secret>`, so
    /// tests can check that they were marked.
    pub fn run(program: &str, args: &[Argument], stdin: &[u8]) -> Result<ProgramOutput, Error> {
        let argv: Vec<String> = std::iter::once(program.to_owned())
            .chain(args.iter().map(|arg| match arg {
                Argument::Plain(text) => text.clone(),
                Argument::Secret(_) => "<secret>".to_owned(),
            }))
            .collect();
        let exit_code = with_host(|host| {
            host.runs.push((argv, stdin.to_vec()));
            host.exit_codes.get(program).copied().unwrap_or(0)
        });
        Ok(ProgramOutput {
            exit_code: Some(exit_code),
            signal: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
        })
    }
}

pub mod download {
    use super::with_host;
    use crate::bindings::guestward::command::download::Error;

    pub fn fetch(url: &str, max_bytes: u64) -> Result<Vec<u8>, Error> {
        let body = with_host(|host| host.downloads.get(url).cloned())
            .ok_or_else(|| Error::Failed(format!("{url}: HTTP 404 Not Found")))?;
        if body.len() as u64 > max_bytes {
            return Err(Error::TooLarge(format!("{url} is larger than {max_bytes} bytes")));
        }
        Ok(body)
    }
}
