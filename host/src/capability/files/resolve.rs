//! Walking a path inside the root, one component at a time, the way
//! `openat2(RESOLVE_IN_ROOT)` does but portably: every step is relative to an
//! open directory, `..` stops at the root, and a symlink's target (absolute
//! or relative) is spliced into the walk, so nothing can lead outside the
//! root. The walk also records where each entry really is, so that grants
//! are checked against the real location, after symlinks.
//!
//! A symlink is followed only from a directory that nobody but the agent can
//! write (owned by the agent's user, no group or other write bit). In a
//! directory a local user controls, such as their home, the user could swap
//! a directory for a link between two of a command's calls and redirect the
//! second one to root's files; the kernel's `protected_symlinks` guards only
//! sticky directories. Every directory on the way is opened with
//! `O_NOFOLLOW`, so a swap after the check fails instead of being followed.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::root::Root;

/// Symlinks followed in one walk before giving up (Linux's `MAXSYMLINKS`).
const MAX_SYMLINKS: u32 = 40;

/// Directories deep a walk may go. The walk holds a descriptor for each
/// directory it is in (for `..`), and descriptors are shared by the whole
/// daemon: a path of two thousand `a/` must not take a thousand of them.
pub const MAX_DEPTH: usize = 64;

/// An entry found by a walk. It may not exist yet (the walk stops at a
/// missing final component so that it can be created).
#[derive(Debug)]
pub struct Resolved {
    /// The directory holding the entry.
    pub parent: OwnedFd,
    /// The entry's name in `parent`; `None` when the entry is the root.
    pub name: Option<OsString>,
    /// Where the entry is, as an absolute path inside the root.
    pub real: PathBuf,
}

/// Asked before the walk creates a directory, with its real path.
pub type DirCheck<'a> = &'a dyn Fn(&Path) -> io::Result<()>;

/// How a walk treats what it meets.
pub struct Walk<'a> {
    /// Follow a symlink in the final component (reads do; replacing,
    /// removing and `metadata` act on the link itself).
    pub follow_final: bool,
    /// Create missing directories on the way, after asking this check (it
    /// gets each directory's real path).
    pub create_dirs: Option<DirCheck<'a>>,
}

/// Why a walk failed, and the real path where it happened.
#[derive(Debug)]
pub struct WalkError {
    pub failure: WalkFailure,
    pub at: PathBuf,
}

#[derive(Debug)]
pub enum WalkFailure {
    /// The operating system refused.
    Io(io::Error),
    /// A symlink in a directory that someone other than the agent can write.
    UntrustedSymlink,
    /// The `create_dirs` check refused to create this directory.
    Refused(io::Error),
}

/// Walk `path` (absolute, already checked for `..` and NUL) inside `root`.
pub fn resolve(root: &Root, path: &Path, walk: &Walk<'_>) -> Result<Resolved, WalkError> {
    let mut dirs: Vec<(OwnedFd, OsString)> = Vec::new();
    let mut pending: VecDeque<OsString> = components(path.as_os_str().as_bytes());
    let mut links = 0;
    loop {
        let Some(part) = pending.pop_front() else {
            return directory_itself(root, dirs);
        };
        if part == ".." {
            dirs.pop();
            continue;
        }
        let current = current_dir(root, &dirs);
        let real = real_path(&dirs, Some(&part));
        let fail = |error: io::Error| WalkError {
            failure: WalkFailure::Io(error),
            at: real.clone(),
        };
        let is_last = pending.is_empty();
        match rustix::fs::statat(current, &part, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat)
                if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink && (!is_last || walk.follow_final) =>
            {
                if !only_the_agent_writes(current).map_err(fail)? {
                    return Err(WalkError {
                        failure: WalkFailure::UntrustedSymlink,
                        at: real,
                    });
                }
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(fail(io::Error::from_raw_os_error(
                        rustix::io::Errno::LOOP.raw_os_error(),
                    )));
                }
                let target = rustix::fs::readlinkat(current, &part, Vec::new()).map_err(|error| fail(error.into()))?;
                let target = target.as_bytes();
                if target.starts_with(b"/") {
                    dirs.clear();
                }
                for component in components(target).into_iter().rev() {
                    pending.push_front(component);
                }
                continue;
            }
            Ok(_) if is_last => {
                return Ok(Resolved {
                    parent: current.try_clone_to_owned().map_err(fail)?,
                    name: Some(part),
                    real,
                });
            }
            Ok(_) => {}
            Err(rustix::io::Errno::NOENT) if is_last => {
                return Ok(Resolved {
                    parent: current.try_clone_to_owned().map_err(fail)?,
                    name: Some(part),
                    real,
                });
            }
            Err(rustix::io::Errno::NOENT) if walk.create_dirs.is_some() => {
                if let Some(check) = walk.create_dirs {
                    check(&real).map_err(|error| WalkError {
                        failure: WalkFailure::Refused(error),
                        at: real.clone(),
                    })?;
                }
                match rustix::fs::mkdirat(current, &part, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(error) => return Err(fail(error.into())),
                }
            }
            Err(error) => return Err(fail(error.into())),
        }
        if dirs.len() >= MAX_DEPTH {
            return Err(fail(io::Error::from_raw_os_error(
                rustix::io::Errno::NAMETOOLONG.raw_os_error(),
            )));
        }
        // An intermediate directory. NOFOLLOW: if it became a symlink since
        // the stat above, the open fails instead of following it.
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(current, &part, flags, Mode::empty()).map_err(|error| fail(error.into()))?;
        dirs.push((fd, part));
    }
}

/// True when only the agent's own user can change the entries of `dir`:
/// it owns it and no group or other write bit is set.
pub fn only_the_agent_writes(dir: BorrowedFd<'_>) -> io::Result<bool> {
    let stat = rustix::fs::fstat(dir)?;
    Ok(stat.st_uid == rustix::process::geteuid().as_raw() && stat.st_mode & 0o022 == 0)
}

fn components(path: &[u8]) -> VecDeque<OsString> {
    path.split(|&byte| byte == b'/')
        .filter(|part| !part.is_empty() && *part != b".")
        .map(|part| OsStr::from_bytes(part).to_owned())
        .collect()
}

fn current_dir<'a>(root: &'a Root, dirs: &'a [(OwnedFd, OsString)]) -> BorrowedFd<'a> {
    dirs.last().map_or_else(|| root.dir(), |(fd, _)| fd.as_fd())
}

fn real_path(dirs: &[(OwnedFd, OsString)], last: Option<&OsStr>) -> PathBuf {
    let mut real = PathBuf::from("/");
    for (_, name) in dirs {
        real.push(name);
    }
    if let Some(last) = last {
        real.push(last);
    }
    real
}

/// The walk ended on a directory it had already entered (the root, or after
/// a trailing `..` from a symlink): describe it from its parent.
fn directory_itself(root: &Root, mut dirs: Vec<(OwnedFd, OsString)>) -> Result<Resolved, WalkError> {
    let real = real_path(&dirs, None);
    let duplicate_root = || {
        root.dir().try_clone_to_owned().map_err(|error| WalkError {
            failure: WalkFailure::Io(error),
            at: PathBuf::from("/"),
        })
    };
    let Some((_, name)) = dirs.pop() else {
        return Ok(Resolved {
            parent: duplicate_root()?,
            name: None,
            real,
        });
    };
    let parent = match dirs.pop() {
        Some((parent, _)) => parent,
        None => duplicate_root()?,
    };
    Ok(Resolved {
        parent,
        name: Some(name),
        real,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn walk_in(root: &Path, path: &str, follow_final: bool) -> Result<PathBuf, io::ErrorKind> {
        let root = Root::open(root).unwrap();
        let walk = Walk {
            follow_final,
            create_dirs: None,
        };
        resolve(&root, Path::new(path), &walk)
            .map(|resolved| resolved.real)
            .map_err(|error| match error.failure {
                WalkFailure::Io(error) | WalkFailure::Refused(error) => error.kind(),
                WalkFailure::UntrustedSymlink => io::ErrorKind::PermissionDenied,
            })
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc/net")).unwrap();
        std::fs::create_dir_all(root.join("run/resolvconf")).unwrap();
        symlink("/run/resolvconf/resolv.conf", root.join("etc/resolv.conf")).unwrap();
        symlink("../../../../..", root.join("etc/net/up")).unwrap();
        symlink("/etc", root.join("etc/net/etc-link")).unwrap();

        assert_eq!(
            walk_in(root, "/etc/resolv.conf", true),
            Ok("/run/resolvconf/resolv.conf".into())
        );
        assert_eq!(walk_in(root, "/etc/resolv.conf", false), Ok("/etc/resolv.conf".into()));
        // `..` in a link target stops at the root.
        assert_eq!(walk_in(root, "/etc/net/up/etc", true), Ok("/etc".into()));
        assert_eq!(walk_in(root, "/etc/net/etc-link/net", true), Ok("/etc/net".into()));
        assert_eq!(walk_in(root, "/", true), Ok("/".into()));
    }

    #[test]
    fn symlink_loops_end() {
        let dir = tempfile::tempdir().unwrap();
        symlink("b", dir.path().join("a")).unwrap();
        symlink("a", dir.path().join("b")).unwrap();
        assert!(walk_in(dir.path(), "/a", true).is_err());
    }

    #[test]
    fn missing_parents_are_not_found_unless_created() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(walk_in(dir.path(), "/x/y", true), Err(io::ErrorKind::NotFound));
        assert_eq!(walk_in(dir.path(), "/x", true), Ok("/x".into()));
        let root = Root::open(dir.path()).unwrap();
        let allow = |_: &Path| Ok(());
        let walk = Walk {
            follow_final: false,
            create_dirs: Some(&allow),
        };
        let resolved = resolve(&root, Path::new("/x/y/z"), &walk).unwrap();
        assert_eq!(resolved.real, Path::new("/x/y/z"));
        assert!(dir.path().join("x/y").is_dir());
    }

    #[test]
    fn walks_stop_at_a_bounded_depth() {
        let dir = tempfile::tempdir().unwrap();
        let deep = "/d".repeat(MAX_DEPTH + 1);
        std::fs::create_dir_all(dir.path().join(deep.trim_start_matches('/'))).unwrap();
        let within = "/d".repeat(MAX_DEPTH);
        assert!(walk_in(dir.path(), &within, true).is_ok());
        assert!(walk_in(dir.path(), &format!("{deep}/x"), true).is_err());
    }

    #[test]
    fn symlinks_are_not_followed_from_directories_others_can_write() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home/alice")).unwrap();
        std::fs::create_dir_all(dir.path().join("root/.ssh")).unwrap();
        symlink("/root/.ssh", dir.path().join("home/alice/.ssh")).unwrap();
        assert_eq!(
            walk_in(dir.path(), "/home/alice/.ssh/authorized_keys", false),
            Ok("/root/.ssh/authorized_keys".into()),
            "a directory only the agent writes is trusted"
        );
        let home = dir.path().join("home/alice");
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(
            walk_in(dir.path(), "/home/alice/.ssh/authorized_keys", false),
            Err(io::ErrorKind::PermissionDenied),
            "world-writable"
        );
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o775)).unwrap();
        assert_eq!(
            walk_in(dir.path(), "/home/alice/.ssh", true),
            Err(io::ErrorKind::PermissionDenied),
            "group-writable, final component followed"
        );
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
        if rustix::process::geteuid().is_root() {
            rustix::fs::chown(&home, Some(rustix::fs::Uid::from_raw(4242)), None).unwrap();
            assert_eq!(
                walk_in(dir.path(), "/home/alice/.ssh/authorized_keys", false),
                Err(io::ErrorKind::PermissionDenied),
                "owned by another user"
            );
        }
    }

    #[test]
    fn a_file_in_the_middle_is_not_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "").unwrap();
        assert_eq!(walk_in(dir.path(), "/f/x", true), Err(io::ErrorKind::NotADirectory));
    }
}
