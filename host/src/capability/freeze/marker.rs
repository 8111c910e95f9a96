//! The record of a freeze that outlives the daemon: if the daemon is
//! killed while filesystems are frozen (SIGKILL, a crash, the watchdog),
//! the next instance finds what was frozen and until when, and takes the
//! freeze over instead of reporting "thawed" over frozen filesystems.
//!
//! It lives in the runtime directory (`/run/guestward/frozen` by default):
//! a tmpfs, which is never frozen, and which a reboot (the end of every
//! freeze) empties. The unit keeps the directory across restarts
//! (`RuntimeDirectoryPreserve=restart`).
//!
//! The deadline is kept on the boot-time clock, which runs on across
//! restarts of the daemon: a crash does not lengthen a freeze.

use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The marker's name in the runtime directory.
pub const MARKER: &str = "frozen";

/// What the marker holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreezeRecord {
    /// The mount points frozen (or about to be).
    pub mountpoints: Vec<String>,
    /// When the auto-thaw is due, in milliseconds of the boot-time clock.
    pub thaw_at_boot_ms: u64,
}

impl FreezeRecord {
    /// A record for `mountpoints`, due to thaw `timeout` from now.
    pub fn due_in(mountpoints: Vec<String>, timeout: Duration) -> Self {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        Self {
            mountpoints,
            thaw_at_boot_ms: boot_ms().saturating_add(timeout_ms),
        }
    }

    /// How long until the auto-thaw is due (zero if it is past).
    pub fn remaining(&self) -> Duration {
        Duration::from_millis(self.thaw_at_boot_ms.saturating_sub(boot_ms()))
    }
}

/// Milliseconds since boot, suspended time included.
fn boot_ms() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    u64::try_from(now.tv_sec).unwrap_or(0) * 1000 + u64::try_from(now.tv_nsec).unwrap_or(0) / 1_000_000
}

/// The marker file in one runtime directory.
#[derive(Debug, Clone)]
pub struct Marker {
    path: PathBuf,
}

impl Marker {
    pub fn in_dir(runtime_dir: &Path) -> Self {
        Self {
            path: runtime_dir.join(MARKER),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Record a freeze: written whole (a temporary file renamed over the
    /// marker), owner-only, in a directory created owner-only.
    pub fn write(&self, record: &FreezeRecord) -> io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("/"));
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        let temporary = dir.join(".frozen.tmp");
        let _ = std::fs::remove_file(&temporary);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&temporary)?;
        file.write_all(&serde_json::to_vec(record).map_err(io::Error::other)?)?;
        drop(file);
        std::fs::rename(&temporary, &self.path)
    }

    /// The freeze a previous instance recorded, if any. A marker that
    /// cannot be read whole is an error (the caller says so and thaws
    /// what it can).
    pub fn read(&self) -> io::Result<Option<FreezeRecord>> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
            .open(&self.path);
        let file = match file {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let text = io::read_to_string(io::Read::take(file, 1 << 20))?;
        serde_json::from_str(&text).map(Some).map_err(io::Error::other)
    }

    /// Forget the freeze (thawed).
    pub fn remove(&self) -> io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }
}
