//! The file operations, checked against the component's grants.
//!
//! Each operation checks the requested path against the grants first (a
//! clear refusal before touching anything), walks it inside the root, and
//! checks the real location again (a symlink may lead elsewhere). Writes
//! never modify a file in place: new contents go to a temporary file in the
//! same directory, which is synced and renamed over the old one.
//!
//! A write grant alone never gives a file away or makes it setuid: an owner
//! change or a setuid/setgid bit needs the rule's `chown` or `setuid`.
//! Nothing here blocks on a FIFO or opens a device: entries are opened
//! non-blocking and anything but a regular file or a directory is refused.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};

use super::MAX_PATH_BYTES;
#[cfg(test)]
use super::grant::PathRule;
use super::grant::{Access, Chown, FilesGrant};
use super::resolve::{Resolved, Walk, WalkError, WalkFailure, resolve};
use crate::root::Root;
use crate::wit::files::{DirEntry, Error, FileKind, FileMetadata, ReplaceOptions};

/// The largest file `read` returns.
pub const MAX_READ_BYTES: u64 = 16 << 20;

/// Mode of a new file when the caller gives none.
const NEW_FILE_MODE: u32 = 0o644;

/// How often a held lock is tried again.
const LOCK_RETRY: Duration = Duration::from_millis(50);

/// The largest `/etc/passwd` read to find whose home a path is in.
const MAX_PASSWD_BYTES: u64 = 4 << 20;

/// Names temporary files uniquely within this process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A user and group id pair.
type Ids = (u32, u32);

/// Who the agent is: the owner of the files it creates.
fn agent_ids() -> Ids {
    (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw())
}

/// Permission bits that make a program run as its file's owner or group.
const SET_ID_BITS: u32 = 0o6000;

/// One component's file access, inside one root.
#[derive(Debug, Clone)]
pub struct FilesAccess {
    pub root: Arc<Root>,
    pub grant: Arc<FilesGrant>,
    pub component: Arc<str>,
}

impl FilesAccess {
    pub fn read(&self, path: &str) -> Result<Vec<u8>, Error> {
        let resolved = self.resolve(path, Access::Read, true)?;
        read_regular(&resolved, path, MAX_READ_BYTES)
    }

    pub fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>, Error> {
        let resolved = self.resolve(path, Access::Read, true)?;
        let (dir, _) =
            open_entry(&resolved, OFlags::RDONLY | OFlags::DIRECTORY).map_err(|error| io_error(path, error))?;
        let mut entries = Vec::new();
        for entry in rustix::fs::Dir::read_from(&dir).map_err(|error| io_error(path, error.into()))? {
            let entry = entry.map_err(|error| io_error(path, error.into()))?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let Ok(name) = std::str::from_utf8(name) else {
                continue; // names the WIT string type cannot carry
            };
            let kind = match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => file_kind(&stat),
                Err(_) => FileKind::Other, // removed meanwhile
            };
            entries.push(DirEntry {
                name: name.to_owned(),
                kind,
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    pub fn metadata(&self, path: &str) -> Result<FileMetadata, Error> {
        let resolved = self.resolve(path, Access::Read, false)?;
        let stat = stat_entry(&resolved).map_err(|error| io_error(path, error))?;
        Ok(FileMetadata {
            kind: file_kind(&stat),
            size: stat.st_size as u64,
            mode: stat.st_mode & 0o7777,
            uid: stat.st_uid,
            gid: stat.st_gid,
            modified: stat.st_mtime,
        })
    }

    pub fn read_link(&self, path: &str) -> Result<String, Error> {
        let resolved = self.resolve(path, Access::Read, false)?;
        let name = resolved
            .name
            .as_deref()
            .ok_or_else(|| Error::Io(format!("{path}: not a symlink")))?;
        let target =
            rustix::fs::readlinkat(&resolved.parent, name, Vec::new()).map_err(|error| io_error(path, error.into()))?;
        String::from_utf8(target.into_bytes()).map_err(|_| Error::Io(format!("{path}: the link target is not UTF-8")))
    }

    pub fn replace(&self, path: &str, contents: &[u8], options: &ReplaceOptions) -> Result<(), Error> {
        let resolved = if options.create_parents {
            self.resolve_creating_parents(path)?
        } else {
            self.resolve(path, Access::ReadWrite, false)?
        };
        let name = entry_name(&resolved, path)?;
        let backup = match &options.backup_suffix {
            Some(suffix) => Some(self.backup_name(&resolved, name, suffix, path)?),
            None => None,
        };
        let existing = match rustix::fs::statat(&resolved.parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {
                return Err(Error::IsADirectory(path.to_owned()));
            }
            Ok(stat) => Some(stat),
            Err(rustix::io::Errno::NOENT) => None,
            Err(error) => return Err(io_error(path, error.into())),
        };
        let regular = existing
            .as_ref()
            .filter(|stat| FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile);
        let mode = options
            .mode
            .or(regular.map(|stat| stat.st_mode & 0o7777))
            .unwrap_or(NEW_FILE_MODE);
        let owner = options
            .owner
            .map(|owner| (owner.uid, owner.gid))
            .or(regular.map(|stat| (stat.st_uid, stat.st_gid)));
        self.check_mode(path, &resolved.real, mode)?;
        if let Some(owner) = owner {
            let current = regular.map_or_else(agent_ids, |stat| (stat.st_uid, stat.st_gid));
            self.check_owner(path, &resolved.real, owner, current)?;
        }

        let (temp, file) = create_temp(&resolved.parent, name).map_err(|error| io_error(path, error))?;
        let written = write_contents(file, contents, mode, owner).and_then(|()| {
            if let (Some(backup), Some(_)) = (&backup, &existing) {
                link_backup(&resolved.parent, name, backup)?;
            }
            rustix::fs::renameat(&resolved.parent, &temp, &resolved.parent, name)?;
            rustix::fs::fsync(&resolved.parent)?;
            Ok(())
        });
        if let Err(error) = written {
            let _ = rustix::fs::unlinkat(&resolved.parent, &temp, AtFlags::empty());
            return Err(io_error(path, error));
        }
        Ok(())
    }

    pub fn remove(&self, path: &str) -> Result<(), Error> {
        let resolved = self.resolve(path, Access::ReadWrite, false)?;
        let name = entry_name(&resolved, path)?;
        match rustix::fs::unlinkat(&resolved.parent, name, AtFlags::empty()) {
            Err(rustix::io::Errno::ISDIR | rustix::io::Errno::PERM) => {
                rustix::fs::unlinkat(&resolved.parent, name, AtFlags::REMOVEDIR)
            }
            other => other,
        }
        .map_err(|error| io_error(path, error.into()))
    }

    pub fn create_dir(&self, path: &str, mode: Option<u32>, recursive: bool) -> Result<(), Error> {
        let resolved = if recursive {
            self.resolve_creating_parents(path)?
        } else {
            self.resolve(path, Access::ReadWrite, false)?
        };
        let name = entry_name(&resolved, path)?;
        let mode = mode.unwrap_or(0o755) & 0o7777;
        self.check_mode(path, &resolved.real, mode)?;
        match rustix::fs::mkdirat(&resolved.parent, name, Mode::from_raw_mode(mode)) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::EXIST) if recursive && self.is_directory(&resolved, name) => Ok(()),
            Err(error) => Err(io_error(path, error.into())),
        }
    }

    pub fn rename(&self, source: &str, destination: &str) -> Result<(), Error> {
        let from = self.resolve(source, Access::ReadWrite, false)?;
        let to = self.resolve(destination, Access::ReadWrite, false)?;
        let (from_name, to_name) = (entry_name(&from, source)?, entry_name(&to, destination)?);
        rustix::fs::renameat(&from.parent, from_name, &to.parent, to_name)
            .and_then(|()| rustix::fs::fsync(&to.parent))
            .map_err(|error| io_error(source, error.into()))
    }

    /// Change the mode and/or owner of a file or directory, on the
    /// descriptor of what the walk found: a symlink is refused (its mode
    /// means nothing and chown would follow it), and so is a file with
    /// other hard links (a link a user planted would carry the change to a
    /// file elsewhere).
    pub fn set_permissions(&self, path: &str, mode: Option<u32>, owner: Option<Ids>) -> Result<(), Error> {
        let resolved = self.resolve(path, Access::ReadWrite, false)?;
        let stat = stat_entry(&resolved).map_err(|error| io_error(path, error))?;
        if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink {
            return Err(Error::Io(format!("{path} is a symlink")));
        }
        let (target, stat) = open_entry(&resolved, OFlags::RDONLY).map_err(|error| io_error(path, error))?;
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory => {}
            FileType::RegularFile if stat.st_nlink > 1 => {
                return Err(Error::NotGranted(format!(
                    "{path} has {} hard links: changing its permissions would change every one of them",
                    stat.st_nlink
                )));
            }
            FileType::RegularFile => {}
            _ => return Err(not_a_regular_file(path)),
        }
        if let Some(mode) = mode {
            self.check_mode(path, &resolved.real, mode)?;
        }
        if let Some(owner) = owner {
            self.check_owner(path, &resolved.real, owner, (stat.st_uid, stat.st_gid))?;
        }
        if let Some((uid, gid)) = owner {
            rustix::fs::fchown(
                &target,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )
            .map_err(|error| io_error(path, error.into()))?;
        }
        if let Some(mode) = mode {
            rustix::fs::fchmod(&target, Mode::from_raw_mode(mode & 0o7777))
                .map_err(|error| io_error(path, error.into()))?;
        }
        Ok(())
    }

    /// Take the `lckpwdf(3)` lock (an exclusive `fcntl` write lock on the
    /// whole file) on `path`, creating it (0600) if missing; retry until
    /// `timeout`. The lock lasts as long as the returned descriptor.
    ///
    /// It is an open file description lock (`F_OFD_SETLK`): it belongs to
    /// this descriptor, not to the daemon's process, so two components (or
    /// two calls) exclude each other, and closing another descriptor of the
    /// same file releases nothing. It conflicts with the classic process
    /// locks `lckpwdf`, `passwd` and `vipw` take.
    pub fn lock(&self, path: &str, timeout: Duration) -> Result<OwnedFd, Error> {
        let resolved = self.resolve(path, Access::ReadWrite, false)?;
        let name = entry_name(&resolved, path)?;
        // Opened for writing, a FIFO would fail with ENXIO; say what it is.
        if stat_entry(&resolved).is_ok_and(|stat| FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile) {
            return Err(not_a_regular_file(path));
        }
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&resolved.parent, name, flags, Mode::from_raw_mode(0o600))
            .map_err(|error| io_error(path, error.into()))?;
        let stat = rustix::fs::fstat(&fd).map_err(|error| io_error(path, error.into()))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(not_a_regular_file(path));
        }
        let deadline = Instant::now() + timeout;
        loop {
            match try_lock_exclusive(&fd) {
                Ok(()) => return Ok(fd),
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) if Instant::now() < deadline => {
                    std::thread::sleep(LOCK_RETRY);
                }
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => {
                    return Err(Error::Io(format!(
                        "{path} is locked by another program (waited {} ms)",
                        timeout.as_millis()
                    )));
                }
                Err(error) => return Err(io_error(path, error.into())),
            }
        }
    }

    /// Check `path` as written, walk it, and check where it really is.
    fn resolve(&self, path: &str, access: Access, follow_final: bool) -> Result<Resolved, Error> {
        let requested = self.check_requested(path, access)?;
        let walk = Walk {
            follow_final,
            create_dirs: None,
        };
        let resolved = resolve(&self.root, &requested, &walk).map_err(|error| self.walk_error(path, error))?;
        self.check_real(path, &resolved.real, access)?;
        Ok(resolved)
    }

    /// As [`Self::resolve`] for a write, creating missing parent
    /// directories that lie inside a writable grant.
    fn resolve_creating_parents(&self, path: &str) -> Result<Resolved, Error> {
        let requested = self.check_requested(path, Access::ReadWrite)?;
        let check = |real: &Path| {
            if self.grant.allows(real, Access::ReadWrite) {
                Ok(())
            } else {
                Err(io::Error::from(io::ErrorKind::PermissionDenied))
            }
        };
        let walk = Walk {
            follow_final: false,
            create_dirs: Some(&check),
        };
        let resolved = resolve(&self.root, &requested, &walk).map_err(|error| self.walk_error(path, error))?;
        self.check_real(path, &resolved.real, Access::ReadWrite)?;
        Ok(resolved)
    }

    fn check_requested(&self, path: &str, access: Access) -> Result<PathBuf, Error> {
        let requested = validate(path)?;
        if self.grant.allows(&requested, access) {
            Ok(requested)
        } else {
            Err(self.not_granted(path, &requested, access))
        }
    }

    fn check_real(&self, path: &str, real: &Path, access: Access) -> Result<(), Error> {
        if self.grant.allows(real, access) {
            Ok(())
        } else {
            Err(self.not_granted(path, real, access))
        }
    }

    fn walk_error(&self, path: &str, error: WalkError) -> Error {
        match error.failure {
            WalkFailure::Io(io) => io_error(path, io),
            WalkFailure::Refused(_) => self.not_granted(path, &error.at, Access::ReadWrite),
            WalkFailure::UntrustedSymlink => Error::NotGranted(format!(
                "{path}: {} is a symlink in a directory that a user other than the agent can write; \
                 it is not followed",
                error.at.display()
            )),
        }
    }

    /// Refuse the setuid and setgid bits unless a rule grants them here.
    fn check_mode(&self, path: &str, real: &Path, mode: u32) -> Result<(), Error> {
        if mode & SET_ID_BITS == 0 || self.grant.allows_setuid(real) {
            return Ok(());
        }
        Err(Error::NotGranted(format!(
            "{path}: mode {mode:o} sets the setuid or setgid bit, which is not granted to component {}",
            self.component
        )))
    }

    /// Refuse giving `real` (now owned by `current`) to `owner` unless a
    /// rule grants that owner change here.
    fn check_owner(&self, path: &str, real: &Path, owner: Ids, current: Ids) -> Result<(), Error> {
        if owner == current {
            return Ok(());
        }
        let allowed = match self.grant.chown(real) {
            Chown::Any => true,
            Chown::HomeAccount => self.home_accounts_of(real)?.contains(&owner),
            Chown::Nobody => false,
        };
        if allowed {
            return Ok(());
        }
        let (uid, gid) = owner;
        Err(Error::NotGranted(format!(
            "{path}: giving it to {uid}:{gid} is not granted to component {} \
             (a file may be given only to the account whose home directory holds it, where the policy says chown = \"home-account\")",
            self.component
        )))
    }

    /// The accounts (uid, primary gid) whose home directory, per the root's
    /// `/etc/passwd`, is the deepest one strictly holding `real`.
    fn home_accounts_of(&self, real: &Path) -> Result<Vec<Ids>, Error> {
        const PASSWD: &str = "/etc/passwd";
        let walk = Walk {
            follow_final: true,
            create_dirs: None,
        };
        let resolved = resolve(&self.root, Path::new(PASSWD), &walk).map_err(|error| self.walk_error(PASSWD, error))?;
        let passwd = read_regular(&resolved, PASSWD, MAX_PASSWD_BYTES)?;
        Ok(homes_holding(&String::from_utf8_lossy(&passwd), real))
    }

    fn not_granted(&self, path: &str, real: &Path, access: Access) -> Error {
        let what = match access {
            Access::Read => "readable",
            Access::ReadWrite => "writable",
        };
        let component = &self.component;
        if Path::new(path) == real {
            Error::NotGranted(format!("{path} is outside the {what} files of component {component}"))
        } else {
            Error::NotGranted(format!(
                "{path} resolves to {}, outside the {what} files of component {component}",
                real.display()
            ))
        }
    }

    fn backup_name(&self, resolved: &Resolved, name: &OsStr, suffix: &str, path: &str) -> Result<OsString, Error> {
        if suffix.is_empty() || suffix.contains('/') || suffix.contains('\0') {
            return Err(Error::InvalidPath(format!(
                "backup suffix {suffix:?} must be a non-empty name part"
            )));
        }
        let mut backup = name.to_owned();
        backup.push(suffix);
        let real = resolved.real.with_file_name(&backup);
        self.check_real(&format!("{path}{suffix}"), &real, Access::ReadWrite)?;
        Ok(backup)
    }

    fn is_directory(&self, resolved: &Resolved, name: &OsStr) -> bool {
        rustix::fs::statat(&resolved.parent, name, AtFlags::empty())
            .is_ok_and(|stat| FileType::from_raw_mode(stat.st_mode) == FileType::Directory)
    }
}

/// From passwd lines: the accounts whose home is the deepest directory
/// strictly above `real` (the filesystem root is nobody's home here).
fn homes_holding(passwd: &str, real: &Path) -> Vec<Ids> {
    let accounts: Vec<(PathBuf, Ids)> = passwd
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let [_, _, uid, gid, _, home, ..] = fields.as_slice() else {
                return None;
            };
            let home = validate(home).ok().filter(|home| home != Path::new("/"))?;
            Some((home, (uid.parse().ok()?, gid.parse().ok()?)))
        })
        .filter(|(home, _)| real.starts_with(home) && real != home)
        .collect();
    let deepest = accounts.iter().map(|(home, _)| home.components().count()).max();
    accounts
        .iter()
        .filter(|(home, _)| Some(home.components().count()) == deepest)
        .map(|(_, ids)| *ids)
        .collect()
}

/// An exclusive open file description lock on the whole file, or why not.
fn try_lock_exclusive(fd: &OwnedFd) -> Result<(), nix::errno::Errno> {
    let whole_file = nix::libc::flock {
        l_type: nix::libc::F_WRLCK as i16,
        l_whence: nix::libc::SEEK_SET as i16,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_OFD_SETLK(&whole_file)).map(drop)
}

/// A regular file's contents, at most `limit` bytes.
fn read_regular(resolved: &Resolved, path: &str, limit: u64) -> Result<Vec<u8>, Error> {
    let (file, stat) = open_entry(resolved, OFlags::RDONLY).map_err(|error| io_error(path, error))?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => {}
        FileType::Directory => return Err(Error::IsADirectory(path.to_owned())),
        _ => return Err(not_a_regular_file(path)),
    }
    let mut contents = Vec::new();
    std::fs::File::from(file)
        .take(limit + 1)
        .read_to_end(&mut contents)
        .map_err(|error| io_error(path, error))?;
    if contents.len() as u64 > limit {
        return Err(Error::TooLarge(format!("{path} is larger than {limit} bytes")));
    }
    Ok(contents)
}

fn not_a_regular_file(path: &str) -> Error {
    Error::Io(format!(
        "{path} is not a regular file or directory (a FIFO, socket or device is never opened)"
    ))
}

/// Refuse a path no file can have, without quoting it: the text may end up
/// in the component's reply, which has a size limit.
pub(super) fn check_length(path: &str) -> Result<(), Error> {
    if path.len() > MAX_PATH_BYTES {
        return Err(Error::InvalidPath(format!(
            "a path is at most {MAX_PATH_BYTES} bytes, not {}",
            path.len()
        )));
    }
    Ok(())
}

/// An absolute path without `..` or NUL, `.` components dropped.
fn validate(path: &str) -> Result<PathBuf, Error> {
    check_length(path)?;
    if path.contains('\0') {
        return Err(Error::InvalidPath(format!("{path:?} contains a NUL byte")));
    }
    if !path.starts_with('/') {
        return Err(Error::InvalidPath(format!("{path:?} is not an absolute path")));
    }
    let mut normal = PathBuf::from("/");
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => normal.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Error::InvalidPath(format!("{path:?} contains '..'")));
            }
        }
    }
    Ok(normal)
}

fn entry_name<'a>(resolved: &'a Resolved, path: &str) -> Result<&'a OsStr, Error> {
    resolved
        .name
        .as_deref()
        .ok_or_else(|| Error::IsADirectory(format!("{path} is the root directory")))
}

/// Open the entry and describe what was opened. A final symlink is not
/// followed, and opening never blocks: `O_NONBLOCK` makes a FIFO without a
/// writer open at once instead of holding a blocking thread forever (the
/// callers then refuse what is not a regular file or directory).
fn open_entry(resolved: &Resolved, flags: OFlags) -> io::Result<(OwnedFd, Stat)> {
    let flags = flags | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = match &resolved.name {
        Some(name) => rustix::fs::openat(&resolved.parent, name, flags, Mode::empty())?,
        None => resolved.parent.try_clone()?,
    };
    let stat = rustix::fs::fstat(&fd)?;
    Ok((fd, stat))
}

fn stat_entry(resolved: &Resolved) -> io::Result<Stat> {
    Ok(match &resolved.name {
        Some(name) => rustix::fs::statat(&resolved.parent, name, AtFlags::SYMLINK_NOFOLLOW)?,
        None => rustix::fs::fstat(&resolved.parent)?,
    })
}

fn file_kind(stat: &Stat) -> FileKind {
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => FileKind::File,
        FileType::Directory => FileKind::Directory,
        FileType::Symlink => FileKind::Symlink,
        _ => FileKind::Other,
    }
}

/// Create `.<name>.guestward-<pid>-<n>` next to `name`, exclusively, mode 0600.
fn create_temp(dir: &OwnedFd, name: &OsStr) -> io::Result<(OsString, std::fs::File)> {
    loop {
        let mut temp = OsString::from(".");
        temp.push(name);
        temp.push(format!(
            ".guestward-{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(dir, temp.as_bytes(), flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => return Ok((temp, std::fs::File::from(fd))),
            Err(rustix::io::Errno::EXIST) => continue,
            Err(error) => return Err(error.into()),
        }
    }
}

/// Contents, then owner (chown clears setuid bits, so before the mode), then
/// mode, then sync: the file is complete before anything points at it.
fn write_contents(mut file: std::fs::File, contents: &[u8], mode: u32, owner: Option<(u32, u32)>) -> io::Result<()> {
    file.write_all(contents)?;
    if let Some((uid, gid)) = owner {
        let stat = rustix::fs::fstat(&file)?;
        if (stat.st_uid, stat.st_gid) != (uid, gid) {
            rustix::fs::fchown(
                file.as_fd(),
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )?;
        }
    }
    rustix::fs::fchmod(&file, Mode::from_raw_mode(mode & 0o7777))?;
    file.sync_all()
}

/// Keep the current contents under `backup` as a hard link, so that the
/// path is never without a complete file.
fn link_backup(dir: &OwnedFd, name: &OsStr, backup: &OsStr) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, backup, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(error) => return Err(error.into()),
    }
    rustix::fs::linkat(dir, name, dir, backup, AtFlags::empty())?;
    Ok(())
}

fn io_error(path: &str, error: io::Error) -> Error {
    match error.kind() {
        io::ErrorKind::NotFound => Error::NotFound(path.to_owned()),
        io::ErrorKind::AlreadyExists => Error::AlreadyExists(path.to_owned()),
        io::ErrorKind::NotADirectory => Error::NotADirectory(path.to_owned()),
        io::ErrorKind::IsADirectory => Error::IsADirectory(path.to_owned()),
        _ => Error::Io(format!("{path}: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    use super::*;
    use crate::wit::files::Owner;

    /// A root directory with `/etc/app` writable, `/etc/ro` read-only, and
    /// `/secret` granted to nobody.
    struct Fixture {
        dir: tempfile::TempDir,
        access: FilesAccess,
    }

    impl Fixture {
        fn new() -> Self {
            Self::with_rules(vec![
                PathRule::new("/etc/app", Access::ReadWrite),
                PathRule::new("/etc/ro", Access::Read),
            ])
        }

        fn with_rules(rules: Vec<PathRule>) -> Self {
            let dir = tempfile::tempdir().unwrap();
            for sub in ["etc/app", "etc/ro", "secret"] {
                std::fs::create_dir_all(dir.path().join(sub)).unwrap();
            }
            std::fs::write(dir.path().join("secret/key"), "top secret").unwrap();
            std::fs::write(dir.path().join("etc/ro/conf"), "read me").unwrap();
            let access = FilesAccess {
                root: Arc::new(Root::open(dir.path()).unwrap()),
                grant: Arc::new(FilesGrant { rules }),
                component: "test".into(),
            };
            Self { dir, access }
        }

        fn host_path(&self, path: &str) -> PathBuf {
            self.dir.path().join(path.trim_start_matches('/'))
        }

        fn write(&self, path: &str, contents: &str) -> Result<(), Error> {
            self.access.replace(path, contents.as_bytes(), &options())
        }
    }

    fn options() -> ReplaceOptions {
        ReplaceOptions {
            mode: None,
            owner: None,
            backup_suffix: None,
            create_parents: false,
        }
    }

    fn is_not_granted<T: std::fmt::Debug>(result: Result<T, Error>) -> bool {
        matches!(result, Err(Error::NotGranted(_)))
    }

    #[test]
    fn reads_inside_a_grant() {
        let fixture = Fixture::new();
        assert_eq!(fixture.access.read("/etc/ro/conf").unwrap(), b"read me");
        assert_eq!(fixture.access.list_dir("/etc/ro").unwrap()[0].name, "conf");
    }

    #[test]
    fn paths_outside_every_grant_are_refused() {
        let fixture = Fixture::new();
        assert!(is_not_granted(fixture.access.read("/secret/key")));
        assert!(
            is_not_granted(fixture.access.read("/etc/approx")),
            "prefixes match whole components"
        );
        assert!(is_not_granted(fixture.access.list_dir("/etc")));
    }

    #[test]
    fn parent_components_and_relative_paths_are_invalid() {
        let fixture = Fixture::new();
        for path in ["/etc/app/../../secret/key", "etc/app/x", "", "/etc/app/\0"] {
            assert!(
                matches!(fixture.access.read(path), Err(Error::InvalidPath(_))),
                "{path:?}"
            );
        }
    }

    #[test]
    fn a_symlinked_file_cannot_leave_the_grant() {
        let fixture = Fixture::new();
        symlink("/secret/key", fixture.host_path("etc/app/link")).unwrap();
        symlink("../../secret/key", fixture.host_path("etc/app/relative")).unwrap();
        for path in ["/etc/app/link", "/etc/app/relative"] {
            let error = fixture.access.read(path).unwrap_err();
            assert!(
                matches!(&error, Error::NotGranted(text) if text.contains("resolves to /secret/key")),
                "{error:?}"
            );
        }
    }

    #[test]
    fn a_symlinked_directory_cannot_leave_the_grant() {
        let fixture = Fixture::new();
        symlink("/secret", fixture.host_path("etc/app/dir")).unwrap();
        assert!(is_not_granted(fixture.access.read("/etc/app/dir/key")));
        assert!(is_not_granted(fixture.write("/etc/app/dir/planted", "x")));
        assert!(!fixture.host_path("secret/planted").exists());
    }

    #[test]
    fn absolute_symlinks_resolve_inside_the_root_never_on_the_host() {
        let fixture = Fixture::new();
        symlink("/etc/hostname", fixture.host_path("etc/app/host-file")).unwrap();
        // The host's /etc/hostname exists; inside the root it does not, and
        // it is outside the grant anyway.
        assert!(is_not_granted(fixture.access.read("/etc/app/host-file")));
        symlink("/etc/ro/conf", fixture.host_path("etc/app/inside")).unwrap();
        assert_eq!(fixture.access.read("/etc/app/inside").unwrap(), b"read me");
    }

    #[test]
    fn read_only_grants_refuse_writes() {
        let fixture = Fixture::new();
        assert!(is_not_granted(fixture.write("/etc/ro/conf", "changed")));
        assert!(is_not_granted(fixture.access.remove("/etc/ro/conf")));
        assert_eq!(
            std::fs::read_to_string(fixture.host_path("etc/ro/conf")).unwrap(),
            "read me"
        );
    }

    #[test]
    fn replace_keeps_mode_and_owner_and_leaves_no_temporary_file() {
        let fixture = Fixture::new();
        let path = fixture.host_path("etc/app/conf");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let before = std::fs::metadata(&path).unwrap();
        fixture.write("/etc/app/conf", "new").unwrap();
        let after = std::fs::metadata(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(after.mode() & 0o7777, 0o640);
        assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
        assert_ne!(after.ino(), before.ino(), "replaced by rename, not rewritten in place");
        let names: Vec<_> = std::fs::read_dir(fixture.host_path("etc/app"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["conf"]);
    }

    #[test]
    fn new_files_get_0644_unless_a_mode_is_given() {
        let fixture = Fixture::new();
        fixture.write("/etc/app/new", "x").unwrap();
        assert_eq!(
            std::fs::metadata(fixture.host_path("etc/app/new")).unwrap().mode() & 0o7777,
            0o644
        );
        let private = ReplaceOptions {
            mode: Some(0o600),
            ..options()
        };
        fixture.access.replace("/etc/app/private", b"x", &private).unwrap();
        assert_eq!(
            std::fs::metadata(fixture.host_path("etc/app/private")).unwrap().mode() & 0o7777,
            0o600
        );
    }

    #[test]
    fn backups_keep_the_previous_contents() {
        let fixture = Fixture::new();
        fixture.write("/etc/app/conf", "first").unwrap();
        let backup = ReplaceOptions {
            backup_suffix: Some(".bak".into()),
            ..options()
        };
        fixture.access.replace("/etc/app/conf", b"second", &backup).unwrap();
        assert_eq!(
            std::fs::read_to_string(fixture.host_path("etc/app/conf.bak")).unwrap(),
            "first"
        );
        assert_eq!(
            std::fs::read_to_string(fixture.host_path("etc/app/conf")).unwrap(),
            "second"
        );
        let escaping = ReplaceOptions {
            backup_suffix: Some("/../x".into()),
            ..options()
        };
        assert!(matches!(
            fixture.access.replace("/etc/app/conf", b"third", &escaping),
            Err(Error::InvalidPath(_))
        ));
    }

    #[test]
    fn replacing_a_symlink_replaces_the_link_not_its_target() {
        let fixture = Fixture::new();
        fixture.write("/etc/app/target", "target").unwrap();
        symlink("target", fixture.host_path("etc/app/link")).unwrap();
        fixture.write("/etc/app/link", "new").unwrap();
        assert_eq!(
            std::fs::read_to_string(fixture.host_path("etc/app/target")).unwrap(),
            "target"
        );
        assert!(
            !std::fs::symlink_metadata(fixture.host_path("etc/app/link"))
                .unwrap()
                .is_symlink()
        );
    }

    #[test]
    fn missing_parents_are_created_only_inside_a_writable_grant() {
        let fixture = Fixture::new();
        let parents = ReplaceOptions {
            create_parents: true,
            ..options()
        };
        fixture.access.replace("/etc/app/a/b/c", b"deep", &parents).unwrap();
        assert_eq!(
            std::fs::read_to_string(fixture.host_path("etc/app/a/b/c")).unwrap(),
            "deep"
        );
        assert!(matches!(fixture.write("/etc/app/x/y", "z"), Err(Error::NotFound(_))));
        assert!(is_not_granted(fixture.access.replace("/etc/ro/x/y", b"z", &parents)));
        assert!(!fixture.host_path("etc/ro/x").exists());
    }

    #[test]
    fn remove_rename_and_create_dir_stay_inside_the_grant() {
        let fixture = Fixture::new();
        fixture.write("/etc/app/a", "a").unwrap();
        fixture.access.rename("/etc/app/a", "/etc/app/b").unwrap();
        assert!(is_not_granted(fixture.access.rename("/etc/app/b", "/secret/b")));
        fixture.access.create_dir("/etc/app/d", Some(0o700), false).unwrap();
        assert!(fixture.access.create_dir("/etc/app/d", None, false).is_err());
        fixture.access.create_dir("/etc/app/d", None, true).unwrap();
        fixture.access.remove("/etc/app/d").unwrap();
        fixture.access.remove("/etc/app/b").unwrap();
        assert!(fixture.access.list_dir("/etc/app").unwrap().is_empty());
        assert!(matches!(fixture.access.remove("/etc/app/b"), Err(Error::NotFound(_))));
    }

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    fn mode_of(fixture: &Fixture, path: &str) -> u32 {
        std::fs::symlink_metadata(fixture.host_path(path)).unwrap().mode() & 0o7777
    }

    #[test]
    fn a_write_grant_alone_makes_nothing_setuid() {
        let fixture = Fixture::new();
        let setuid = ReplaceOptions {
            mode: Some(0o6755),
            ..options()
        };
        assert!(is_not_granted(fixture.access.replace("/etc/app/tool", b"#!", &setuid)));
        assert!(!fixture.host_path("etc/app/tool").exists());
        assert!(is_not_granted(fixture.access.create_dir(
            "/etc/app/shared",
            Some(0o2775),
            false
        )));
        fixture.write("/etc/app/tool", "#!").unwrap();
        assert!(is_not_granted(fixture.access.set_permissions(
            "/etc/app/tool",
            Some(0o4755),
            None
        )));
        assert_eq!(mode_of(&fixture, "/etc/app/tool"), 0o644);
        // Replacing a file that already is setuid would hand its privilege
        // to the new contents.
        std::fs::set_permissions(
            fixture.host_path("etc/app/tool"),
            std::fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        assert!(is_not_granted(fixture.write("/etc/app/tool", "new contents")));
        assert_eq!(
            std::fs::read_to_string(fixture.host_path("etc/app/tool")).unwrap(),
            "#!"
        );
    }

    #[test]
    fn a_write_grant_alone_gives_no_file_away() {
        let fixture = Fixture::new();
        let given = ReplaceOptions {
            owner: Some(Owner { uid: 4242, gid: 4242 }),
            ..options()
        };
        assert!(is_not_granted(fixture.access.replace("/etc/app/mine", b"x", &given)));
        assert!(!fixture.host_path("etc/app/mine").exists());
        fixture.write("/etc/app/mine", "x").unwrap();
        assert!(is_not_granted(fixture.access.set_permissions(
            "/etc/app/mine",
            None,
            Some((4242, 4242))
        )));
        let meta = std::fs::metadata(fixture.host_path("etc/app/mine")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), agent_ids());
        // Giving a file to its current owner is no change.
        fixture
            .access
            .set_permissions("/etc/app/mine", Some(0o600), Some(agent_ids()))
            .unwrap();
    }

    #[test]
    fn setuid_and_any_owner_are_granted_by_name() {
        let mut tools = PathRule::new("/etc/app", Access::ReadWrite);
        tools.setuid = true;
        tools.chown = Chown::Any;
        let fixture = Fixture::with_rules(vec![tools]);
        let setuid = ReplaceOptions {
            mode: Some(0o4755),
            ..options()
        };
        fixture.access.replace("/etc/app/tool", b"#!", &setuid).unwrap();
        assert_eq!(mode_of(&fixture, "/etc/app/tool"), 0o4755);
        if is_root() {
            fixture
                .access
                .set_permissions("/etc/app/tool", None, Some((4242, 4242)))
                .unwrap();
            let meta = std::fs::metadata(fixture.host_path("etc/app/tool")).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (4242, 4242));
        }
    }

    #[test]
    fn files_go_only_to_the_account_whose_home_holds_them() {
        let mut home = PathRule::new("/home", Access::ReadWrite);
        home.chown = Chown::HomeAccount;
        let fixture = Fixture::with_rules(vec![home]);
        std::fs::write(
            fixture.host_path("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nalice:x:4242:4243::/home/alice:/bin/sh\nsvc:x:4300:4300::/:/bin/false\n",
        )
        .unwrap();
        let accounts = |path: &str| {
            homes_holding(
                &std::fs::read_to_string(fixture.host_path("etc/passwd")).unwrap(),
                Path::new(path),
            )
        };
        assert_eq!(accounts("/home/alice/.ssh/authorized_keys"), [(4242, 4243)]);
        assert!(accounts("/home/alice").is_empty(), "the home itself is not inside it");
        assert!(accounts("/home/alicex/f").is_empty(), "homes match whole components");
        assert!(accounts("/etc/x").is_empty(), "/ is nobody's home here");

        let alice = |uid, gid| ReplaceOptions {
            owner: Some(Owner { uid, gid }),
            create_parents: true,
            ..options()
        };
        assert!(is_not_granted(fixture.access.replace(
            "/home/bob/.ssh/authorized_keys",
            b"k",
            &alice(4242, 4243)
        )));
        assert!(is_not_granted(fixture.access.replace(
            "/home/alice/.ssh/authorized_keys",
            b"k",
            &alice(4242, 0)
        )));
        assert!(is_not_granted(fixture.access.replace(
            "/home/alice/.ssh/authorized_keys",
            b"k",
            &alice(4300, 4300)
        )));
        if is_root() {
            fixture
                .access
                .replace("/home/alice/.ssh/authorized_keys", b"k", &alice(4242, 4243))
                .unwrap();
            let meta = std::fs::metadata(fixture.host_path("home/alice/.ssh/authorized_keys")).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (4242, 4243));
            assert!(is_not_granted(fixture.access.set_permissions(
                "/home/alice",
                None,
                Some((4242, 4243))
            )));
        }
    }

    #[test]
    fn a_hard_link_carries_no_permission_change_elsewhere() {
        let fixture = Fixture::new();
        fixture.write("/etc/app/file", "x").unwrap();
        std::fs::hard_link(fixture.host_path("etc/app/file"), fixture.host_path("etc/app/link")).unwrap();
        assert!(is_not_granted(fixture.access.set_permissions(
            "/etc/app/link",
            Some(0o666),
            None
        )));
        assert_eq!(mode_of(&fixture, "/etc/app/file"), 0o644);
    }

    #[test]
    fn a_users_symlink_cannot_redirect_a_write_to_roots_files() {
        if !is_root() {
            eprintln!("skipped: needs root to give a directory to another user");
            return;
        }
        let mut home = PathRule::new("/home", Access::ReadWrite);
        home.chown = Chown::HomeAccount;
        let fixture = Fixture::with_rules(vec![home, PathRule::new("/root/.ssh", Access::ReadWrite)]);
        std::fs::create_dir_all(fixture.host_path("home/alice")).unwrap();
        std::fs::create_dir_all(fixture.host_path("root/.ssh")).unwrap();
        std::fs::write(fixture.host_path("root/.ssh/authorized_keys"), "root's key").unwrap();
        rustix::fs::chown(
            fixture.host_path("home/alice"),
            Some(rustix::fs::Uid::from_raw(4242)),
            None,
        )
        .unwrap();
        // What alice can do in her own home between two of the command's calls.
        symlink("/root/.ssh", fixture.host_path("home/alice/.ssh")).unwrap();
        let error = fixture
            .write("/home/alice/.ssh/authorized_keys", "alice's key")
            .unwrap_err();
        assert!(
            matches!(&error, Error::NotGranted(text) if text.contains("is not followed")),
            "{error:?}"
        );
        assert!(
            fixture
                .access
                .set_permissions("/home/alice/.ssh", Some(0o700), None)
                .is_err()
        );
        assert_eq!(
            std::fs::read_to_string(fixture.host_path("root/.ssh/authorized_keys")).unwrap(),
            "root's key"
        );
    }

    /// Run `operation` on another thread; fail the test if it blocks.
    fn within_seconds<T: Send + 'static>(operation: impl FnOnce() -> T + Send + 'static) -> T {
        let (send, receive) = std::sync::mpsc::channel();
        std::thread::spawn(move || send.send(operation()));
        receive
            .recv_timeout(Duration::from_secs(10))
            .expect("the operation blocked")
    }

    #[test]
    fn fifos_are_refused_without_blocking() {
        let fixture = Fixture::new();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            fixture.host_path("etc/app/fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let access = fixture.access.clone();
        let results = within_seconds(move || {
            [
                access.read("/etc/app/fifo").map(drop),
                access.lock("/etc/app/fifo", Duration::ZERO).map(drop),
                access.set_permissions("/etc/app/fifo", Some(0o644), None),
            ]
        });
        for result in results {
            assert!(
                matches!(&result, Err(Error::Io(text)) if text.contains("not a regular file")),
                "{result:?}"
            );
        }
        assert!(fixture.access.read("/etc/app").is_err());
    }

    #[test]
    fn locks_exclude_each_other_within_the_daemon_too() {
        let fixture = Fixture::new();
        let first = fixture.access.lock("/etc/app/.lock", Duration::ZERO).unwrap();
        let second = fixture.access.lock("/etc/app/.lock", Duration::from_millis(60));
        assert!(
            matches!(&second, Err(Error::Io(text)) if text.contains("locked by another program")),
            "two callers in one process both got the lock: {second:?}"
        );
        // Closing another descriptor of the file releases nothing.
        drop(std::fs::File::open(fixture.host_path("etc/app/.lock")).unwrap());
        assert!(fixture.access.lock("/etc/app/.lock", Duration::ZERO).is_err());
        drop(first);
        fixture.access.lock("/etc/app/.lock", Duration::ZERO).unwrap();
    }

    #[test]
    fn locks_exclude_each_other_until_released() {
        let fixture = Fixture::new();
        let held = fixture
            .access
            .lock("/etc/app/.lock", Duration::from_millis(10))
            .unwrap();
        assert_eq!(
            std::fs::metadata(fixture.host_path("etc/app/.lock")).unwrap().mode() & 0o777,
            0o600
        );
        // POSIX record locks belong to a process: contend from another one.
        let lock_path = fixture.host_path("etc/app/.lock");
        let probe = |path: &std::path::Path| {
            std::process::Command::new("/usr/bin/python3")
                .args([
                    "-c",
                    "import fcntl,sys; f=open(sys.argv[1],'w'); fcntl.lockf(f, fcntl.LOCK_EX|fcntl.LOCK_NB)",
                ])
                .arg(path)
                .status()
                .unwrap()
                .success()
        };
        assert!(
            !probe(&lock_path),
            "another process must not get the lock while it is held"
        );
        drop(held);
        assert!(probe(&lock_path), "released when the descriptor closes");
        assert!(is_not_granted(fixture.access.lock("/etc/ro/.lock", Duration::ZERO)));
    }

    #[test]
    fn permissions_change_inside_writable_grants_only() {
        let fixture = Fixture::new();
        fixture.access.create_dir("/etc/app/.ssh", None, false).unwrap();
        fixture
            .access
            .set_permissions("/etc/app/.ssh", Some(0o700), None)
            .unwrap();
        assert_eq!(
            std::fs::metadata(fixture.host_path("etc/app/.ssh")).unwrap().mode() & 0o7777,
            0o700
        );
        let own = std::fs::metadata(fixture.host_path("etc/app")).unwrap();
        fixture
            .access
            .set_permissions("/etc/app/.ssh", None, Some((own.uid(), own.gid())))
            .unwrap();
        assert!(is_not_granted(fixture.access.set_permissions(
            "/etc/ro/conf",
            Some(0o777),
            None
        )));
        symlink("/secret/key", fixture.host_path("etc/app/link")).unwrap();
        assert!(
            fixture
                .access
                .set_permissions("/etc/app/link", Some(0o777), None)
                .is_err()
        );
        assert_eq!(
            std::fs::metadata(fixture.host_path("secret/key")).unwrap().mode() & 0o777,
            0o644
        );
    }

    #[test]
    fn metadata_describes_the_link_itself() {
        let fixture = Fixture::new();
        symlink("/secret/key", fixture.host_path("etc/app/link")).unwrap();
        let meta = fixture.access.metadata("/etc/app/link").unwrap();
        assert_eq!(meta.kind, FileKind::Symlink);
        assert_eq!(fixture.access.read_link("/etc/app/link").unwrap(), "/secret/key");
    }
}
