//! `freeze`: freezing and thawing filesystems (FIFREEZE/FITHAW) for
//! consistent snapshots, granted by `freeze = true`.
//!
//! The daemon holds the freeze, not the component: [`Freeze`] is shared
//! by every call and remembers what it froze (with the descriptors it
//! froze them through). It thaws by itself when the call that froze ends
//! in failure ([`Freeze::thaw_after_failure`]), when nobody thaws within
//! the auto-thaw timeout, and when the daemon stops. Under `--root`
//! nothing is frozen: the mount table is `<root>/proc/self/mountinfo`
//! (none: no filesystems) and freezes and thaws are recorded in the
//! root's actions log.
//!
//! A freeze is recorded in the runtime directory ([`marker`]) for as long
//! as it lasts, so that an instance started after one that was killed
//! while frozen takes the freeze over: it says "frozen", refuses what
//! qemu-ga refuses while frozen, thaws on the host's word, and keeps the
//! auto-thaw's deadline.

mod ioctl;
pub mod marker;
pub mod mounts;

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use wasmtime::component::{HasSelf, Linker};

use self::marker::{FreezeRecord, Marker};
use self::mounts::Mount;
use super::{CallInfo, Capability, Refusals};
use crate::policy::{PolicyError, SectionErrors};
use crate::root::Root;
use crate::wit::freeze::{self as wit, Error, FreezeStatus};

/// Where the kernel lists the mounts (under `--root`, inside the root).
const MOUNTINFO: &str = "proc/self/mountinfo";

/// The `freeze` capability: the daemon's one freeze state.
#[derive(Debug, Clone)]
pub struct Freeze {
    shared: Arc<Shared>,
}

/// Whether filesystems are frozen now, readable without a lock (the QGA
/// exchange asks before every command).
#[derive(Debug, Clone, Default)]
pub struct FrozenFlag(Arc<AtomicBool>);

impl FrozenFlag {
    pub fn is_frozen(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Debug)]
struct Shared {
    root: Arc<Root>,
    /// Where freezes are recorded (none until the daemon says where).
    marker: OnceLock<Marker>,
    held: Mutex<Option<Held>>,
    frozen: FrozenFlag,
    timeout_ms: AtomicU64,
    /// Numbers calls and freezes, so a late timer or a failed call thaws
    /// only the freeze it is about.
    counter: AtomicU64,
}

/// Filesystems this daemon froze.
#[derive(Debug)]
struct Held {
    mounts: Vec<Frozen>,
    /// The call that froze them.
    call: u64,
    /// This freeze, for its timer.
    generation: u64,
}

/// One frozen filesystem, and the descriptor it was frozen through
/// (`None` under `--root`, where nothing is frozen): thawing through it
/// works even if the mount point has been covered since.
#[derive(Debug)]
struct Frozen {
    dir: String,
    fd: Option<OwnedFd>,
}

impl Freeze {
    /// Freezes the filesystems of `root` (recorded for a `--root`
    /// directory).
    pub fn new(root: Arc<Root>) -> Self {
        Self {
            shared: Arc::new(Shared {
                marker: OnceLock::new(),
                root,
                held: Mutex::new(None),
                frozen: FrozenFlag::default(),
                timeout_ms: AtomicU64::new(crate::config::DEFAULT_FREEZE_TIMEOUT.as_millis() as u64),
                counter: AtomicU64::new(1),
            }),
        }
    }

    /// Thaw by itself `timeout` after a freeze nobody thawed.
    pub fn set_timeout(&self, timeout: Duration) {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).max(1);
        self.shared.timeout_ms.store(ms, Ordering::SeqCst);
    }

    /// Whether filesystems are frozen, as a flag to keep.
    pub fn frozen_flag(&self) -> FrozenFlag {
        self.shared.frozen.clone()
    }

    /// After a call that ended in failure (trap, deadline, memory): thaw
    /// what that call froze. A freeze still running in the background
    /// (the call was stopped while the kernel was freezing) is waited for
    /// and undone, and one not started yet will not start.
    pub async fn thaw_after_failure(&self, call: &CallFreeze, outcome: &str) {
        if !call.token.attempted.load(Ordering::SeqCst) {
            return;
        }
        call.token.failed.store(true, Ordering::SeqCst);
        let shared = self.shared.clone();
        let id = call.token.id;
        let reason = format!("the call that froze them ended: {outcome}");
        let _ = tokio::task::spawn_blocking(move || shared.thaw_held(&reason, |held| held.call == id)).await;
    }

    /// Record freezes in `runtime_dir` from now on; first take over a
    /// freeze a previous instance recorded there and did not undo (it was
    /// killed while frozen): frozen until the host thaws or the recorded
    /// auto-thaw deadline passes. Run once, at start, before anything is
    /// served.
    pub async fn record_in(&self, runtime_dir: &Path) {
        if self.shared.marker.set(Marker::in_dir(runtime_dir)).is_err() {
            return;
        }
        let shared = self.shared.clone();
        let timer = tokio::runtime::Handle::current();
        let _ = tokio::task::spawn_blocking(move || shared.take_over(&timer)).await;
    }

    /// Thaw what this daemon froze, because it stops.
    pub async fn thaw_at_shutdown(&self) {
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || shared.thaw_held("the agent is stopping", |_| true)).await;
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Option<Held>> {
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn simulated(&self) -> bool {
        self.root.records_changes()
    }

    /// The freezable mounts, in mount order.
    fn mount_table(&self) -> Result<Vec<Mount>, Error> {
        let text = if self.simulated() {
            // Beneath the root and without symlinks: a component granted
            // files there must not point the daemon elsewhere.
            let opened = rustix::fs::openat2(
                self.root.dir(),
                MOUNTINFO,
                OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
            );
            match opened {
                Ok(fd) => std::io::read_to_string(std::fs::File::from(fd)),
                Err(Errno::NOENT) => Ok(String::new()),
                Err(errno) => Err(errno.into()),
            }
        } else {
            std::fs::read_to_string("/proc/self/mountinfo")
        };
        let text = text.map_err(|error| Error::Failed(format!("failed to read /{MOUNTINFO}: {}", strerror(&error))))?;
        Ok(mounts::freezable(mounts::parse(&text), mounts::block_device))
    }

    /// Freeze the freezable mounts (only those at `wanted`, if given),
    /// last mounted first, each device once.
    fn freeze(
        self: &Arc<Self>,
        wanted: Option<&[String]>,
        token: &CallToken,
        timer: &tokio::runtime::Handle,
    ) -> Result<u32, Error> {
        let mut held = self.lock();
        if token.failed.load(Ordering::SeqCst) {
            return Err(Error::Failed(
                "the call ended before the filesystems were frozen".to_owned(),
            ));
        }
        if held.is_some() {
            return Err(Error::AlreadyFrozen(
                "the filesystems are frozen already: thaw them first".to_owned(),
            ));
        }
        let mut targets: Vec<Mount> = self
            .mount_table()?
            .into_iter()
            .filter(|mount| wanted.is_none_or(|names| names.iter().any(|name| mount.is_at(name))))
            .collect();
        targets.reverse();
        let mut seen = Vec::new();
        targets.retain(|mount| {
            let first = !seen.contains(&mount.device);
            seen.push(mount.device);
            first
        });
        // Recorded before freezing: a daemon killed halfway must leave
        // its successor the list. (A freeze that cannot be recorded still
        // goes ahead, as qemu-ga's does; only a crash would then lose it.)
        let timeout = self.timeout();
        let dirs: Vec<String> = targets.iter().map(Mount::dir_text).collect();
        if !targets.is_empty() {
            self.remember(&FreezeRecord::due_in(dirs.clone(), timeout));
        }
        let frozen = if self.simulated() {
            self.record("fsfreeze-freeze", dirs, None);
            targets
                .iter()
                .map(|mount| Frozen {
                    dir: mount.dir_text(),
                    fd: None,
                })
                .collect()
        } else {
            freeze_all(&targets).inspect_err(|_| self.forget())?
        };
        let count = u32::try_from(frozen.len()).unwrap_or(u32::MAX);
        if count == 0 {
            self.forget();
            return Ok(0);
        }
        let generation = self.counter.fetch_add(1, Ordering::SeqCst);
        *held = Some(Held {
            mounts: frozen,
            call: token.id,
            generation,
        });
        self.frozen.0.store(true, Ordering::SeqCst);
        let reason = format!("nobody thawed them within {} s", timeout.as_secs_f32());
        self.start_timer(generation, timeout, reason, timer);
        Ok(count)
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.load(Ordering::SeqCst))
    }

    /// See [`Freeze::record_in`].
    fn take_over(self: &Arc<Self>, timer: &tokio::runtime::Handle) {
        let Some(marker) = self.marker.get() else { return };
        let record = match marker.read() {
            Ok(Some(record)) => record,
            Ok(None) => return,
            Err(error) => {
                // Ours are written whole (a rename), so one that does
                // not read is not ours to trust: what a host thaw would
                // thaw is thawed.
                tracing::warn!(%error, marker = %marker.path().display(), "cannot read the record of a freeze left by a previous instance: thawing every filesystem");
                let _ = self.thaw();
                return;
            }
        };
        let mut held = self.lock();
        let mounts = self.reopen(&record.mountpoints);
        let generation = self.counter.fetch_add(1, Ordering::SeqCst);
        let remaining = record.remaining();
        tracing::warn!(
            mountpoints = record.mountpoints.join(","),
            auto_thaw_in_s = remaining.as_secs(),
            "a previous instance exited with filesystems frozen: they stay frozen until the host thaws them or the auto-thaw is due"
        );
        *held = Some(Held {
            mounts,
            // No call of this instance froze them.
            call: 0,
            generation,
        });
        self.frozen.0.store(true, Ordering::SeqCst);
        drop(held);
        let reason = "nobody thawed them by the deadline they were frozen with (by a previous instance)";
        self.start_timer(generation, remaining, reason.to_owned(), timer);
    }

    /// The frozen mount points a previous instance recorded, opened again
    /// (those that no longer open are left to the host's thaw, which
    /// thaws every freezable mount).
    fn reopen(&self, dirs: &[String]) -> Vec<Frozen> {
        if self.simulated() {
            let simulated = |dir: &String| Frozen {
                dir: dir.clone(),
                fd: None,
            };
            return dirs.iter().map(simulated).collect();
        }
        // Opening for reading takes no write access: a frozen filesystem
        // does not block it.
        let opened = |dir: &String| {
            let fd = open_mount(Path::new(dir)).ok()?;
            Some(Frozen {
                dir: dir.clone(),
                fd: Some(fd),
            })
        };
        dirs.iter().filter_map(opened).collect()
    }

    /// Thaw after `timeout`, for `reason`, unless this freeze was thawed
    /// before.
    fn start_timer(
        self: &Arc<Self>,
        generation: u64,
        timeout: Duration,
        reason: String,
        timer: &tokio::runtime::Handle,
    ) {
        let shared: Weak<Self> = Arc::downgrade(self);
        timer.spawn(async move {
            tokio::time::sleep(timeout).await;
            let Some(shared) = shared.upgrade() else { return };
            let _ =
                tokio::task::spawn_blocking(move || shared.thaw_held(&reason, |held| held.generation == generation))
                    .await;
        });
    }

    /// The host's thaw: what this daemon froze, then, as qemu-ga does,
    /// every other freezable mount (FITHAW until it fails, so a
    /// filesystem frozen twice thaws), counting each filesystem thawed.
    fn thaw(&self) -> Result<u32, Error> {
        let mut held = self.lock();
        let ours = held.take();
        self.frozen.0.store(false, Ordering::SeqCst);
        self.forget();
        let mut thawed = 0;
        let mut dirs = Vec::new();
        if let Some(ours) = ours {
            for mount in &ours.mounts {
                dirs.push(mount.dir.clone());
                thawed += u32::from(thaw_one(mount));
            }
        }
        if self.simulated() {
            self.record("fsfreeze-thaw", dirs, None);
            return Ok(thawed);
        }
        let table = match self.mount_table() {
            Ok(table) => table,
            Err(_) if thawed > 0 => return Ok(thawed),
            Err(error) => return Err(error),
        };
        for mount in &table {
            if let Ok(fd) = open_mount(&mount.dir) {
                let frozen = Frozen {
                    dir: mount.dir_text(),
                    fd: Some(fd),
                };
                thawed += u32::from(thaw_one(&frozen));
            }
        }
        Ok(thawed)
    }

    /// The daemon's own thaw (failure, timeout, shutdown), when what is
    /// held is `which`: logged as a warning.
    fn thaw_held(&self, reason: &str, which: impl Fn(&Held) -> bool) {
        let mut held = self.lock();
        if !held.as_ref().is_some_and(which) {
            return;
        }
        let Some(ours) = held.take() else { return };
        let thawed: u32 = ours.mounts.iter().map(|mount| u32::from(thaw_one(mount))).sum();
        let dirs: Vec<String> = ours.mounts.iter().map(|mount| mount.dir.clone()).collect();
        if self.simulated() {
            self.record("fsfreeze-thaw", dirs.clone(), Some(reason));
        }
        tracing::warn!(
            thawed,
            mountpoints = dirs.join(","),
            "thawed the frozen filesystems: {reason}"
        );
        // "Thawed" only once it is done and said: whoever sees the flag
        // fall (the status, a test) finds the thaw recorded.
        self.forget();
        self.frozen.0.store(false, Ordering::SeqCst);
    }

    /// Record a freeze for a successor (see [`marker`]).
    fn remember(&self, record: &FreezeRecord) {
        let Some(marker) = self.marker.get() else { return };
        if let Err(error) = marker.write(record) {
            tracing::warn!(%error, marker = %marker.path().display(), "cannot record the freeze: an instance started after a crash would not know of it");
        }
    }

    /// No freeze to pass on any more.
    fn forget(&self) {
        let Some(marker) = self.marker.get() else { return };
        if let Err(error) = marker.remove() {
            tracing::warn!(%error, marker = %marker.path().display(), "cannot remove the record of a freeze");
        }
    }

    /// Append a freeze or thaw to the root's actions log.
    fn record(&self, action: &str, mountpoints: Vec<String>, reason: Option<&str>) {
        let mut entry = serde_json::json!({"action": action, "mountpoints": mountpoints});
        if let Some(reason) = reason {
            entry["reason"] = reason.into();
        }
        if let Err(error) = self.root.record(&entry) {
            tracing::warn!(%error, action, "cannot record the action");
        }
    }
}

impl Drop for Shared {
    /// Whatever else happens, the daemon does not leave frozen what it
    /// froze.
    fn drop(&mut self) {
        self.thaw_held("the agent is stopping", |_| true);
    }
}

/// Freeze each of `targets` in order; on the first failure, thaw those
/// frozen and answer qemu-ga's error. Filesystems that cannot be frozen
/// (EOPNOTSUPP) or are frozen already (EBUSY) are skipped, as qemu-ga
/// skips them.
fn freeze_all(targets: &[Mount]) -> Result<Vec<Frozen>, Error> {
    let mut frozen = Vec::new();
    for mount in targets {
        let dir = mount.dir_text();
        let fd = match open_mount(&mount.dir) {
            Ok(fd) => fd,
            Err(errno) => {
                undo(&frozen);
                return Err(Error::Failed(format!(
                    "failed to open {dir}: {}",
                    strerror(&errno.into())
                )));
            }
        };
        match ioctl::freeze(fd.as_fd()) {
            Ok(()) => {
                tracing::info!(mountpoint = dir, "froze a filesystem");
                frozen.push(Frozen { dir, fd: Some(fd) });
            }
            Err(Errno::OPNOTSUPP | Errno::BUSY) => {}
            Err(errno) => {
                undo(&frozen);
                return Err(Error::Failed(format!(
                    "failed to freeze {dir}: {}",
                    strerror(&errno.into())
                )));
            }
        }
    }
    Ok(frozen)
}

/// Thaw what a failed freeze had frozen.
fn undo(frozen: &[Frozen]) {
    for mount in frozen {
        thaw_one(mount);
    }
}

/// Thaw one filesystem until the kernel says it is not frozen; true when
/// it was.
fn thaw_one(mount: &Frozen) -> bool {
    let Some(fd) = &mount.fd else {
        return true; // simulated
    };
    let mut thawed = false;
    // A filesystem frozen n times needs n thaws; bounded, in case a
    // kernel ever answers success forever.
    for _ in 0..64 {
        if ioctl::thaw(fd.as_fd()).is_err() {
            break;
        }
        thawed = true;
    }
    thawed
}

/// A descriptor on a mount point that cannot block (a FIFO mounted over)
/// and that no child inherits.
fn open_mount(dir: &std::path::Path) -> rustix::io::Result<OwnedFd> {
    rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
    )
}

/// The operating system's text of an error, without Rust's "(os error N)",
/// as qemu-ga's messages end (`: Operation not permitted`).
fn strerror(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// The `freeze` grant (`freeze = true`).
#[derive(Debug, PartialEq, Eq)]
pub struct FreezeGrant;

/// What a call and the daemon share about the call's freezing.
#[derive(Debug)]
struct CallToken {
    id: u64,
    /// The call asked to freeze.
    attempted: AtomicBool,
    /// The call failed: a freeze it started must not go ahead.
    failed: AtomicBool,
}

/// One call's access to the freeze.
#[derive(Debug)]
pub struct CallFreeze {
    granted: bool,
    freeze: Freeze,
    component: String,
    refusals: Refusals,
    token: Arc<CallToken>,
}

impl CallFreeze {
    fn refuse(&self, what: &str) -> Error {
        self.refusals.note(Freeze::NAME);
        Error::NotGranted(format!("component {} may not {what} filesystems", self.component))
    }
}

impl Capability for Freeze {
    const NAME: &'static str = "freeze";
    /// `freeze = true`; `false` grants nothing.
    type Config = bool;
    type Grant = FreezeGrant;
    type CallState = CallFreeze;

    fn grant(enabled: bool, _errors: &SectionErrors<'_>) -> Result<Option<FreezeGrant>, PolicyError> {
        Ok(enabled.then_some(FreezeGrant))
    }

    fn describe(_grant: &FreezeGrant) -> Vec<String> {
        vec!["may freeze and thaw the filesystems".to_owned()]
    }

    fn how_to_grant() -> String {
        "its policy entry has no `freeze = true`".to_owned()
    }

    fn call_state(&self, grant: Option<&Arc<FreezeGrant>>, call: &CallInfo<'_>) -> CallFreeze {
        CallFreeze {
            granted: grant.is_some(),
            freeze: self.clone(),
            component: call.component.to_owned(),
            refusals: call.refusals.clone(),
            token: Arc::new(CallToken {
                id: self.shared.counter.fetch_add(1, Ordering::SeqCst),
                attempted: AtomicBool::new(false),
                failed: AtomicBool::new(false),
            }),
        }
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut CallFreeze,
    ) -> wasmtime::Result<()> {
        wit::add_to_linker::<_, HasSelf<CallFreeze>>(linker, get)
    }
}

impl wit::Host for CallFreeze {
    async fn status(&mut self) -> FreezeStatus {
        if self.freeze.shared.frozen.is_frozen() {
            FreezeStatus::Frozen
        } else {
            FreezeStatus::Thawed
        }
    }

    async fn freeze(&mut self, mountpoints: Option<Vec<String>>) -> Result<u32, Error> {
        if !self.granted {
            return Err(self.refuse("freeze"));
        }
        self.token.attempted.store(true, Ordering::SeqCst);
        tracing::info!(component = self.component, mountpoints = ?mountpoints, "freezing filesystems");
        let shared = self.freeze.shared.clone();
        let token = self.token.clone();
        let timer = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || shared.freeze(mountpoints.as_deref(), &token, &timer))
            .await
            .unwrap_or_else(|error| Err(Error::Failed(format!("the freeze failed: {error}"))))
    }

    async fn thaw(&mut self) -> Result<u32, Error> {
        if !self.granted {
            return Err(self.refuse("thaw"));
        }
        tracing::info!(component = self.component, "thawing filesystems");
        let shared = self.freeze.shared.clone();
        tokio::task::spawn_blocking(move || shared.thaw())
            .await
            .unwrap_or_else(|error| Err(Error::Failed(format!("the thaw failed: {error}"))))
    }
}

#[cfg(test)]
mod tests;
