//! The machine the agent acts on: `/`, or a directory given with `--root`.
//!
//! With `--root DIR`, every file a command touches resolves inside DIR (the
//! `files` capability walks paths itself, so `..` and symlinks, absolute ones
//! included, stay inside), which is how tests, demos and command authors run
//! commands safely on any machine.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

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
        let path = path.canonicalize().map_err(|error| {
            io::Error::new(error.kind(), format!("root {}: {error}", path.display()))
        })?;
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
}
