//! XenStore path rules (`docs/misc/xenstore.txt`): checked here so that a
//! bad key gets a clear error instead of a bare `EINVAL` from xenstored.

use super::{Error, Result};

/// Longest absolute path xenstored accepts (`XENSTORE_ABS_PATH_MAX`).
pub const ABS_PATH_MAX: usize = 3072;
/// Longest relative path xenstored accepts (`XENSTORE_REL_PATH_MAX`).
pub const REL_PATH_MAX: usize = 2048;

/// Check that `path` is a valid XenStore path: characters from
/// `[A-Za-z0-9_@/-]`, no empty component, no trailing `/` (except `/`
/// itself), within the length limits. Special watch paths start with `@`.
pub fn validate(path: &str) -> Result<()> {
    let invalid = |reason| {
        Err(Error::InvalidPath {
            path: path.to_owned(),
            reason,
        })
    };
    if path.is_empty() {
        return invalid("empty");
    }
    let max = if path.starts_with('/') {
        ABS_PATH_MAX
    } else {
        REL_PATH_MAX
    };
    if path.len() > max {
        return invalid("too long");
    }
    if path == "/" {
        return Ok(());
    }
    if !path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'@' | b'/' | b'-'))
    {
        return invalid("characters outside [A-Za-z0-9_@/-]");
    }
    if path.contains("//") {
        return invalid("empty component");
    }
    if path.ends_with('/') {
        return invalid("trailing '/'");
    }
    Ok(())
}

/// True when `key` is `prefix` or lies below it (component-wise:
/// `vm-data/net` does not contain `vm-data/networking`).
pub fn is_within(key: &str, prefix: &str) -> bool {
    match key.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_paths_the_agent_uses() {
        for path in [
            "data/host",
            "data/host/748dee41-c47f-4ec7-b2cd-037e51da4031",
            "vm-data/networking/BC764E205EB2",
            "/local/domain/5/data/guest/system-init",
            "@introduceDomain",
            "/",
        ] {
            assert!(validate(path).is_ok(), "{path}");
        }
    }

    #[test]
    fn refuses_what_xenstored_would_refuse() {
        for path in ["", "a//b", "a/", "a b", "a.b", "ü", &"x".repeat(REL_PATH_MAX + 1)] {
            assert!(validate(path).is_err(), "{path:?}");
        }
    }

    #[test]
    fn prefixes_match_whole_components() {
        assert!(is_within("vm-data/networking/AA", "vm-data/networking"));
        assert!(is_within("vm-data/networking", "vm-data/networking"));
        assert!(!is_within("vm-data/networkingX", "vm-data/networking"));
        assert!(!is_within("vm-data", "vm-data/networking"));
    }
}
