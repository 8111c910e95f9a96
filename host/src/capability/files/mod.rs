//! `files`: read, list, metadata, atomic replace, remove, mkdir and rename,
//! under the path prefixes the policy grants, inside the agent's root.
//!
//! * [`resolve`]: the path walk that keeps every path inside the root.
//! * [`ops`]: the operations and their grant checks.
//!
//! Operations block on the file system, so each runs on tokio's blocking
//! pool rather than on the thread driving the component.

pub mod grant;
pub mod ops;
pub mod resolve;

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};

use super::{CallInfo, Capability, Refusals, nothing_granted};
use crate::policy::{PolicyError, SectionErrors};
use crate::root::Root;
use crate::wit::files::{self as wit, DirEntry, Error, FileLock, FileMetadata, Owner, ReplaceOptions};
pub use grant::{Access, Chown, FilesConfig, FilesGrant, PathRule};
pub use ops::FilesAccess;

/// The `files` capability: paths inside the agent's root.
#[derive(Debug)]
pub struct Files {
    root: Arc<Root>,
}

impl Files {
    /// Files resolved inside `root` (the machine, or `--root DIR`).
    pub fn new(root: Arc<Root>) -> Self {
        Self { root }
    }
}

impl Capability for Files {
    const NAME: &'static str = "files";
    type Config = FilesConfig;
    type Grant = FilesGrant;
    type CallState = CallFiles;

    fn grant(config: FilesConfig, errors: &SectionErrors<'_>) -> Result<Option<FilesGrant>, PolicyError> {
        FilesGrant::from_config(config, errors).map(Some)
    }

    fn describe(grant: &FilesGrant) -> Vec<String> {
        nothing_granted(grant.rules.iter().map(PathRule::describe).collect(), "path")
    }

    fn writes_files(grant: &FilesGrant) -> bool {
        grant.rules.iter().any(|rule| rule.access == Access::ReadWrite)
    }

    fn compare(asked: &FilesGrant, granted: &FilesGrant) -> (Vec<String>, Vec<String>) {
        granted.compare(asked)
    }

    fn call_state(&self, grant: Option<&Arc<FilesGrant>>, call: &CallInfo<'_>) -> CallFiles {
        CallFiles {
            access: grant.map(|grant| FilesAccess {
                root: self.root.clone(),
                grant: grant.clone(),
                component: call.component.into(),
            }),
            locks: ResourceTable::new(),
            held_locks: 0,
            refusals: call.refusals.clone(),
        }
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut CallFiles,
    ) -> wasmtime::Result<()> {
        wit::add_to_linker::<_, HasSelf<CallFiles>>(linker, get)
    }
}

/// A lock a component holds (`file-lock`): released when the component
/// drops it or when the call ends (the Store, and this table, go away).
#[derive(Debug)]
pub struct HeldLock {
    _fd: OwnedFd,
}

/// The longest a component may wait for a lock.
const MAX_LOCK_WAIT: Duration = Duration::from_secs(30);

/// Locks one call may hold at once. Each holds a file descriptor until the
/// call ends, and descriptors are shared by every component of the daemon:
/// without a cap one call could take them all (a real command needs one or
/// two). Every other descriptor an operation opens is closed before it
/// returns.
pub const MAX_LOCKS_PER_CALL: usize = 16;

/// The longest path a component may pass (Linux's `PATH_MAX`, counting
/// the NUL): a longer one could never be opened. Checked first and not
/// quoted, since error texts may end up in a reply, which has a size
/// limit; every other error quotes at most this much.
pub const MAX_PATH_BYTES: usize = 4095;

/// One call's file access (`None` when the component has no files grant).
#[derive(Debug)]
pub struct CallFiles {
    access: Option<FilesAccess>,
    locks: ResourceTable,
    held_locks: usize,
    refusals: Refusals,
}

impl CallFiles {
    /// Run one operation on the blocking pool. (Not an `async fn` of
    /// `&self`: the lock table is not `Sync`, so the future must not borrow
    /// `self`.)
    fn run<T: Send + 'static>(
        &mut self,
        operation: impl FnOnce(&FilesAccess) -> Result<T, Error> + Send + 'static,
    ) -> impl Future<Output = Result<T, Error>> + Send + 'static {
        let access = self.access.clone();
        let refusals = self.refusals.clone();
        let outcome = async move {
            let access = access.ok_or_else(|| Error::NotGranted("this component has no files grant".to_owned()))?;
            tokio::task::spawn_blocking(move || operation(&access))
                .await
                .unwrap_or_else(|error| Err(Error::Io(format!("file operation failed: {error}"))))
        };
        async move { refusals.watch(Files::NAME, outcome.await) }
    }
}

impl wit::Host for CallFiles {
    async fn read(&mut self, path: String) -> Result<Vec<u8>, Error> {
        self.run(move |access| access.read(&path)).await
    }

    async fn list_dir(&mut self, path: String) -> Result<Vec<DirEntry>, Error> {
        self.run(move |access| access.list_dir(&path)).await
    }

    async fn metadata(&mut self, path: String) -> Result<FileMetadata, Error> {
        self.run(move |access| access.metadata(&path)).await
    }

    async fn read_link(&mut self, path: String) -> Result<String, Error> {
        self.run(move |access| access.read_link(&path)).await
    }

    async fn replace(&mut self, path: String, contents: Vec<u8>, options: ReplaceOptions) -> Result<(), Error> {
        self.run(move |access| access.replace(&path, &contents, &options)).await
    }

    async fn remove(&mut self, path: String) -> Result<(), Error> {
        self.run(move |access| access.remove(&path)).await
    }

    async fn create_dir(&mut self, path: String, mode: Option<u32>, recursive: bool) -> Result<(), Error> {
        self.run(move |access| access.create_dir(&path, mode, recursive)).await
    }

    async fn rename(&mut self, source: String, destination: String) -> Result<(), Error> {
        self.run(move |access| access.rename(&source, &destination)).await
    }

    async fn set_permissions(&mut self, path: String, mode: Option<u32>, owner: Option<Owner>) -> Result<(), Error> {
        let owner = owner.map(|owner| (owner.uid, owner.gid));
        self.run(move |access| access.set_permissions(&path, mode, owner)).await
    }

    async fn lock(&mut self, path: String, timeout_ms: u32) -> Result<Resource<FileLock>, Error> {
        ops::check_length(&path)?;
        if self.held_locks >= MAX_LOCKS_PER_CALL {
            return Err(Error::Io(format!(
                "{path}: this call already holds {MAX_LOCKS_PER_CALL} locks, the most one call may hold"
            )));
        }
        let timeout = Duration::from_millis(timeout_ms.into()).min(MAX_LOCK_WAIT);
        let fd = self.run(move |access| access.lock(&path, timeout)).await?;
        let held = self
            .locks
            .push(HeldLock { _fd: fd })
            .map_err(|error| Error::Io(format!("cannot hold the lock: {error}")))?;
        self.held_locks += 1;
        Ok(Resource::new_own(held.rep()))
    }
}

impl wit::HostFileLock for CallFiles {
    async fn drop(&mut self, lock: Resource<FileLock>) -> wasmtime::Result<()> {
        self.locks.delete(Resource::<HeldLock>::new_own(lock.rep()))?;
        self.held_locks -= 1;
        Ok(())
    }
}
