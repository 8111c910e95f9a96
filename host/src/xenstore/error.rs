//! XenStore errors: the errno names xenstored sends, and client failures.

use std::fmt;

/// An error named by xenstored (`xsd_errors[]` in `xs_wire.h`). Always parse
/// the name: numeric errnos differ between systems.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[allow(clippy::upper_case_acronyms)]
pub enum Errno {
    EINVAL,
    EACCES,
    EEXIST,
    EISDIR,
    ENOENT,
    ENOMEM,
    ENOSPC,
    EIO,
    ENOTEMPTY,
    ENOSYS,
    EROFS,
    EBUSY,
    EAGAIN,
    EISCONN,
    E2BIG,
    EPERM,
    /// A name this client does not know.
    Other(String),
}

impl Errno {
    /// The errno with this name.
    pub fn from_name(name: &str) -> Self {
        match name {
            "EINVAL" => Self::EINVAL,
            "EACCES" => Self::EACCES,
            "EEXIST" => Self::EEXIST,
            "EISDIR" => Self::EISDIR,
            "ENOENT" => Self::ENOENT,
            "ENOMEM" => Self::ENOMEM,
            "ENOSPC" => Self::ENOSPC,
            "EIO" => Self::EIO,
            "ENOTEMPTY" => Self::ENOTEMPTY,
            "ENOSYS" => Self::ENOSYS,
            "EROFS" => Self::EROFS,
            "EBUSY" => Self::EBUSY,
            "EAGAIN" => Self::EAGAIN,
            "EISCONN" => Self::EISCONN,
            "E2BIG" => Self::E2BIG,
            "EPERM" => Self::EPERM,
            other => Self::Other(other.to_owned()),
        }
    }

    fn description(&self) -> &'static str {
        match self {
            Self::EINVAL => "invalid argument",
            Self::EACCES => "permission denied",
            Self::EEXIST => "already exists",
            Self::EISDIR => "is a directory",
            Self::ENOENT => "no such key",
            Self::ENOMEM => "out of memory",
            Self::ENOSPC => "quota exceeded",
            Self::EIO => "input/output error",
            Self::ENOTEMPTY => "directory not empty",
            Self::ENOSYS => "not supported",
            Self::EROFS => "read-only",
            Self::EBUSY => "busy",
            Self::EAGAIN => "transaction conflict, try again",
            Self::EISCONN => "already connected",
            Self::E2BIG => "too big",
            Self::EPERM => "operation not permitted",
            Self::Other(_) => "unknown error",
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Other(name) => write!(f, "{name} (unknown error)"),
            known => write!(f, "{known:?} ({})", known.description()),
        }
    }
}

/// Why a XenStore operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// xenstored refused the operation.
    #[error("{op} {path}: {errno}")]
    Errno {
        op: &'static str,
        path: String,
        errno: Errno,
    },
    /// The connection dropped while the request was in flight: it may or may
    /// not have been carried out.
    #[error("{op} {path}: the XenStore connection dropped")]
    Disconnected { op: &'static str, path: String },
    /// The request is too big for XenStore.
    #[error("{op} {path}: {source}")]
    TooLarge {
        op: &'static str,
        path: String,
        source: super::wire::WireError,
    },
    /// The key is not a valid XenStore path.
    #[error("invalid XenStore path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    /// xenstored answered something that makes no sense.
    #[error("{op} {path}: {reason}")]
    Protocol {
        op: &'static str,
        path: String,
        reason: String,
    },
    /// The endpoint could not be opened.
    #[error("cannot connect to XenStore at {endpoint}: {source}")]
    Connect { endpoint: String, source: std::io::Error },
    /// The client has shut down.
    #[error("the XenStore client has shut down")]
    Closed,
}

impl Error {
    /// The errno xenstored named, if that is what failed.
    pub fn errno(&self) -> Option<&Errno> {
        match self {
            Self::Errno { errno, .. } => Some(errno),
            _ => None,
        }
    }

    /// True when the key does not exist.
    pub fn is_not_found(&self) -> bool {
        self.errno() == Some(&Errno::ENOENT)
    }
}

/// A XenStore result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
