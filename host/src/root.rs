//! The machine the agent acts on: `/`, or a directory given with `--root`.
//!
//! With `--root DIR`, every file a command touches resolves inside DIR (the
//! `files` capability walks paths itself, so `..` and symlinks, absolute ones
//! included, stay inside), which is how tests, demos and command authors run
//! commands safely on any machine.

use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

/// Where, under a `--root` directory, machine changes are recorded.
pub const ACTIONS_LOG: &str = ".guestward/actions.log";

/// An open root directory.
#[derive(Debug)]
pub struct Root {
    path: PathBuf,
    dir: OwnedFd,
}

impl Root {
    /// The real root of the machine.
    pub fn host() -> io::Result<Self> {
        Self::open(Path::new("/"))
    }

    /// A directory standing in for `/`.
    pub fn open(path: &Path) -> io::Result<Self> {
        let path = path
            .canonicalize()
            .map_err(|error| io::Error::new(error.kind(), format!("root {}: {error}", path.display())))?;
        let dir = rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self { path, dir })
    }

    /// Where the root is on this machine.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when this is the machine's own `/` (not a `--root` directory).
    pub fn is_host_root(&self) -> bool {
        self.path == Path::new("/")
    }

    /// The open root directory, the anchor of every path walk.
    pub fn dir(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// True when machine changes (programs, the hostname) are recorded
    /// instead of carried out: under a `--root` directory.
    pub fn records_changes(&self) -> bool {
        !self.is_host_root()
    }

    /// Append `entry` as one JSON line to [`ACTIONS_LOG`] under the root.
    pub fn record(&self, entry: &serde_json::Value) -> io::Result<()> {
        let path = self.path.join(ACTIONS_LOG);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut line = entry.to_string();
        line.push('\n');
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?
            .write_all(line.as_bytes())
    }
}
