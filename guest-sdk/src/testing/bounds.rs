//! The daemon's bounds on the strings a component passes: no real path,
//! XenStore key, URL or hostname is longer. They are checked before
//! anything else, with the daemon's texts, which do not quote the value: an
//! error text may end up in the component's reply, and a reply over its
//! limit reaches nobody.

/// Linux's `PATH_MAX`, counting the NUL (files and program paths).
pub const PATH: usize = 4095;
/// xenstored's `XENSTORE_REL_PATH_MAX`.
pub const KEY: usize = 2048;
/// What browsers and sitemaps accept.
pub const URL: usize = 2048;
/// Linux's `HOST_NAME_MAX`.
pub const HOSTNAME: usize = 64;

/// `what` (`"a path"`) is at most `max` bytes.
pub fn check(what: &str, value: &str, max: usize) -> Result<(), String> {
    if value.len() > max {
        return Err(format!("{what} is at most {max} bytes, not {}", value.len()));
    }
    Ok(())
}
