//! What is on the machine now, through the `files` grant: a missing file is
//! `None`; anything else that fails (a path outside the grants) is an
//! error that names it, so a narrowed policy never makes the command guess.

use guestward_sdk::files;

/// The text of `path`, if it exists.
pub fn read(path: &str) -> Result<Option<String>, String> {
    match files::read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(files::Error::NotFound(_)) => Ok(None),
        Err(error) => Err(format!("cannot read {path}: {}", error.text())),
    }
}

/// What kind of thing `path` is, if it exists (symlinks not followed).
pub fn kind(path: &str) -> Result<Option<files::FileKind>, String> {
    match files::metadata(path) {
        Ok(metadata) => Ok(Some(metadata.kind)),
        Err(files::Error::NotFound(_) | files::Error::NotADirectory(_)) => Ok(None),
        Err(error) => Err(format!("cannot look at {path}: {}", error.text())),
    }
}

/// Whether `path` exists.
pub fn exists(path: &str) -> Result<bool, String> {
    kind(path).map(|kind| kind.is_some())
}

/// Whether `path` is a directory.
pub fn is_dir(path: &str) -> Result<bool, String> {
    kind(path).map(|kind| kind == Some(files::FileKind::Directory))
}

/// The names in directory `path` (none if it does not exist).
pub fn list(path: &str) -> Result<Vec<String>, String> {
    match files::list_dir(path) {
        Ok(entries) => Ok(entries.into_iter().map(|entry| entry.name).collect()),
        Err(files::Error::NotFound(_)) => Ok(Vec::new()),
        Err(error) => Err(format!("cannot list {path}: {}", error.text())),
    }
}

/// Where a symlink at `path` points, if `path` is one.
pub fn link_target(path: &str) -> Result<Option<String>, String> {
    match kind(path)? {
        Some(files::FileKind::Symlink) => files::read_link(path)
            .map(Some)
            .map_err(|error| format!("cannot read {path}: {}", error.text())),
        _ => Ok(None),
    }
}
