//! A policy entry, as the daemon reads it, for the test host: the grants it
//! checks every call against and the limits it applies to a
//! [`call`](super::call).

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};

/// A policy entry the test host cannot use: its text says which key is
/// wrong and why, as `guestward policy check` would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError(
    /// What is wrong, naming the key.
    pub String,
);

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "policy entry: {}", self.0)
    }
}

impl std::error::Error for PolicyError {}

/// What one policy entry grants (the body of `[component.<name>]`). A key
/// that is absent grants nothing; an empty list grants the interface with
/// nothing in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// `files`: path rules.
    pub files: Option<Vec<FileRule>>,
    /// `xenstore`: key prefixes, relative to the domain.
    pub xenstore: Option<Vec<String>>,
    /// `programs`: argument lists, program first; `*` is any one argument.
    pub programs: Option<Vec<Vec<String>>>,
    /// `download`: URL prefixes.
    pub download: Option<Vec<String>>,
    /// `hostname = true`.
    pub hostname: bool,
    /// `network = true`.
    pub network: bool,
    /// `update = true`.
    pub update: bool,
    /// `freeze = true`.
    pub freeze: bool,
}

/// One `files` rule: the path and everything below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRule {
    /// An absolute path without `.`, `..` or a trailing `/`.
    pub path: PathBuf,
    /// `access = "read-write"` (else `"read"`).
    pub writable: bool,
    /// `chown = "home-account"` or `"any"`: files here may change owner.
    pub chown: bool,
    /// `setuid = true`: files here may get the setuid or setgid bit.
    pub setuid: bool,
}

/// Per-call limits, with the daemon's defaults (`[limits]` of the built-in
/// policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `deadline-ms`: what `agent::remaining_ms` counts down from, and past
    /// which [`call`](super::call) fails the call.
    pub deadline: Duration,
    /// `memory-mib`, in bytes. Read but not enforced: a native test has no
    /// linear memory to cap (`guestward run` enforces it on the component).
    pub memory: u64,
    /// `reply-bytes`: bytes of code plus message in one reply.
    pub reply_bytes: usize,
    /// `log-lines`: lines one call may log; the rest are dropped and counted.
    pub log_lines: u32,
    /// `download-mib`, in bytes: the most one download brings.
    pub download_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(25),
            memory: 64 << 20,
            reply_bytes: 16 << 10,
            log_lines: 100,
            download_bytes: 16 << 20,
        }
    }
}

/// A parsed policy entry: grants, limits and settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Entry {
    pub grants: Grants,
    pub limits: Limits,
    pub settings: Vec<(String, String)>,
}

/// Parse the body of a `[component.<name>]` entry.
pub(super) fn parse(text: &str) -> Result<Entry, PolicyError> {
    let table: Table = text.parse().map_err(|error| PolicyError(format!("{error}")))?;
    let mut entry = Entry::default();
    for (key, value) in &table {
        match key.as_str() {
            "files" => entry.grants.files = Some(list(key, value, file_rule)?),
            "xenstore" => entry.grants.xenstore = Some(list(key, value, key_prefix)?),
            "programs" => entry.grants.programs = Some(list(key, value, program_pattern)?),
            "download" => entry.grants.download = Some(list(key, value, url_prefix)?),
            "hostname" => entry.grants.hostname = boolean(key, value)?,
            "network" => entry.grants.network = boolean(key, value)?,
            "update" => entry.grants.update = boolean(key, value)?,
            "freeze" => entry.grants.freeze = boolean(key, value)?,
            "limits" => entry.limits = limits(value)?,
            "settings" => entry.settings = settings(value)?,
            "signers" => {
                list(key, value, |value| string("signers", value))?;
            }
            other => return Err(PolicyError(format!("unknown key `{other}`"))),
        }
    }
    Ok(entry)
}

fn list<T>(key: &str, value: &Value, item: impl Fn(&Value) -> Result<T, PolicyError>) -> Result<Vec<T>, PolicyError> {
    value
        .as_array()
        .ok_or_else(|| PolicyError(format!("`{key}` is a list")))?
        .iter()
        .map(item)
        .collect()
}

fn string(key: &str, value: &Value) -> Result<String, PolicyError> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| PolicyError(format!("`{key}`: {value:?} is not a string")))
}

fn boolean(key: &str, value: &Value) -> Result<bool, PolicyError> {
    value
        .as_bool()
        .ok_or_else(|| PolicyError(format!("`{key}` is true or false")))
}

fn file_rule(value: &Value) -> Result<FileRule, PolicyError> {
    let table = value
        .as_table()
        .ok_or_else(|| PolicyError("`files`: each rule is { path, access }".to_owned()))?;
    let mut rule = FileRule {
        path: PathBuf::new(),
        writable: false,
        chown: false,
        setuid: false,
    };
    let mut access = None;
    for (key, value) in table {
        match key.as_str() {
            "path" => rule.path = normalize_path(&string("files.path", value)?)?,
            "access" => access = Some(string("files.access", value)?),
            "chown" => rule.chown = string("files.chown", value)? != "nobody",
            "setuid" => rule.setuid = boolean("files.setuid", value)?,
            other => return Err(PolicyError(format!("`files`: unknown key `{other}`"))),
        }
    }
    if rule.path.as_os_str().is_empty() {
        return Err(PolicyError("`files`: a rule without a path".to_owned()));
    }
    rule.writable = match access.as_deref() {
        Some("read") => false,
        Some("read-write") => true,
        Some(other) => {
            return Err(PolicyError(format!(
                "`files`: access {other:?} is \"read\" or \"read-write\""
            )));
        }
        None => return Err(PolicyError("`files`: a rule without access".to_owned())),
    };
    if !rule.writable && (rule.chown || rule.setuid) {
        return Err(PolicyError("chown and setuid need access = \"read-write\"".to_owned()));
    }
    Ok(rule)
}

fn normalize_path(text: &str) -> Result<PathBuf, PolicyError> {
    if !text.starts_with('/') {
        return Err(PolicyError(format!("{text:?} is not an absolute path")));
    }
    let mut normal = PathBuf::from("/");
    for component in Path::new(text).components() {
        match component {
            Component::Normal(part) => normal.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(PolicyError(format!("{text:?} contains '..'")));
            }
        }
    }
    Ok(normal)
}

fn key_prefix(value: &Value) -> Result<String, PolicyError> {
    let text = string("xenstore", value)?;
    let prefix = text.trim_end_matches('/');
    if prefix.starts_with('/') {
        return Err(PolicyError(format!(
            "{text:?}: use a key relative to the domain (vm-data/…)"
        )));
    }
    if prefix.is_empty() || prefix.contains("//") {
        return Err(PolicyError(format!("{text:?} is not a XenStore key")));
    }
    Ok(prefix.to_owned())
}

fn program_pattern(value: &Value) -> Result<Vec<String>, PolicyError> {
    let pattern = list("programs", value, |arg| string("programs", arg))?;
    match pattern.first() {
        None => Err(PolicyError("`programs`: an empty argument list".to_owned())),
        Some(program) if !program.starts_with('/') => {
            Err(PolicyError(format!("{program:?}: programs are given by absolute path")))
        }
        Some(program) if program == "*" || program.contains("..") => {
            Err(PolicyError(format!("{program:?}: not a program path")))
        }
        Some(_) => Ok(pattern),
    }
}

fn url_prefix(value: &Value) -> Result<String, PolicyError> {
    let text = string("download", value)?;
    let scheme_ok = text.starts_with("https://") || text.starts_with("http://");
    if !scheme_ok {
        return Err(PolicyError(format!("{text:?}: only http and https URLs with a host")));
    }
    if !text.ends_with('/') {
        return Err(PolicyError(format!("{text:?}: a prefix ends with '/'")));
    }
    Ok(text)
}

fn limits(value: &Value) -> Result<Limits, PolicyError> {
    let table = value
        .as_table()
        .ok_or_else(|| PolicyError("`limits` is a table".to_owned()))?;
    let mut limits = Limits::default();
    for (key, value) in table {
        let number = value
            .as_integer()
            .and_then(|number| u64::try_from(number).ok())
            .ok_or_else(|| PolicyError(format!("`limits.{key}` is a positive number")))?;
        let in_range = |low: u64, high: u64| {
            if (low..=high).contains(&number) {
                Ok(number)
            } else {
                Err(PolicyError(format!("{key} = {number} is outside {low}..={high}")))
            }
        };
        match key.as_str() {
            "deadline-ms" => limits.deadline = Duration::from_millis(in_range(1, 600_000)?),
            "memory-mib" => limits.memory = in_range(1, 4096)? << 20,
            "reply-bytes" => limits.reply_bytes = usize::try_from(in_range(16, 16 << 20)?).unwrap_or(usize::MAX),
            "log-lines" => limits.log_lines = u32::try_from(in_range(0, 100_000)?).unwrap_or(u32::MAX),
            "download-mib" => limits.download_bytes = in_range(1, 1024)? << 20,
            other => return Err(PolicyError(format!("unknown limit `{other}`"))),
        }
    }
    Ok(limits)
}

fn settings(value: &Value) -> Result<Vec<(String, String)>, PolicyError> {
    let table = value
        .as_table()
        .ok_or_else(|| PolicyError("`settings` is a table of strings".to_owned()))?;
    table
        .iter()
        .map(|(key, value)| Ok((key.clone(), string("settings", value)?)))
        .collect()
}

/// Read or write access, as the daemon words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    Read,
    Write,
}

impl Grants {
    /// Whether a file rule gives `access` to `path` (normalized).
    pub(super) fn allows_file(&self, path: &Path, access: Access) -> Option<bool> {
        let rules = self.files.as_ref()?;
        Some(
            rules
                .iter()
                .any(|rule| path.starts_with(&rule.path) && (rule.writable || access == Access::Read)),
        )
    }

    fn writable_rules<'a>(&'a self, path: &'a Path) -> impl Iterator<Item = &'a FileRule> {
        self.files
            .iter()
            .flatten()
            .filter(move |rule| rule.writable && path.starts_with(&rule.path))
    }

    /// Whether files at `path` may get the setuid or setgid bit.
    pub(super) fn allows_setuid(&self, path: &Path) -> bool {
        self.writable_rules(path).any(|rule| rule.setuid)
    }

    /// Whether files at `path` may change owner.
    pub(super) fn allows_chown(&self, path: &Path) -> bool {
        self.writable_rules(path).any(|rule| rule.chown)
    }

    /// Whether `key` lies within a XenStore prefix; `None` without a grant.
    pub(super) fn allows_key(&self, key: &str) -> Option<bool> {
        let prefixes = self.xenstore.as_ref()?;
        Some(prefixes.iter().any(|prefix| match key.strip_prefix(prefix.as_str()) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }))
    }

    /// Whether an argument list matches a granted pattern exactly.
    pub(super) fn allows_program(&self, argv: &[String]) -> bool {
        self.programs.iter().flatten().any(|pattern| {
            pattern.len() == argv.len() && pattern.iter().zip(argv).all(|(want, got)| want == "*" || want == got)
        })
    }

    /// Whether `url` starts with a granted prefix; `None` without a grant.
    pub(super) fn allows_url(&self, url: &str) -> Option<bool> {
        let prefixes = self.download.as_ref()?;
        let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
        Some(scheme_ok && prefixes.iter().any(|prefix| url.starts_with(prefix.as_str())))
    }
}

/// An absolute path without `..` or NUL, `.` components dropped: the
/// daemon's `invalid-path` checks, with its texts.
pub(super) fn validate_path(path: &str) -> Result<PathBuf, String> {
    super::bounds::check("a path", path, super::bounds::PATH)?;
    if path.contains('\0') {
        return Err(format!("{path:?} contains a NUL byte"));
    }
    if !path.starts_with('/') {
        return Err(format!("{path:?} is not an absolute path"));
    }
    normalize_path(path).map_err(|_| format!("{path:?} contains '..'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_parses_as_the_daemon_reads_it() {
        let entry = parse(
            "files = [{ path = \"/etc/\", access = \"read-write\", setuid = true }, { path = \"/proc/meminfo\", access = \"read\" }]\n\
             xenstore = [\"vm-data/networking/\"]\nprograms = [[\"/sbin/ifup\", \"*\"]]\nhostname = true\n\
             download = [\"https://example.com/\"]\nsettings = { account = \"root\" }\n\
             limits = { deadline-ms = 500, reply-bytes = 64, log-lines = 2 }\n",
        )
        .unwrap();
        let files = entry.grants.files.as_ref().unwrap();
        assert_eq!(files[0].path, Path::new("/etc"));
        assert!(files[0].writable && files[0].setuid && !files[1].writable);
        assert_eq!(
            entry.grants.xenstore.as_deref(),
            Some(&["vm-data/networking".to_owned()][..])
        );
        assert!(entry.grants.hostname && !entry.grants.network && !entry.grants.update);
        assert_eq!(entry.limits.deadline, Duration::from_millis(500));
        assert_eq!((entry.limits.reply_bytes, entry.limits.log_lines), (64, 2));
        assert_eq!(entry.limits.memory, Limits::default().memory);
        assert_eq!(entry.settings, [("account".to_owned(), "root".to_owned())]);
    }

    #[test]
    fn a_bad_entry_says_what_is_wrong() {
        for (text, expected) in [
            ("file = []", "unknown key `file`"),
            (
                "files = [{ path = \"etc\", access = \"read\" }]",
                "is not an absolute path",
            ),
            (
                "files = [{ path = \"/etc\", access = \"read\", setuid = true }]",
                "need access",
            ),
            ("programs = [[\"ifup\"]]", "absolute path"),
            ("xenstore = [\"/local/domain\"]", "relative to the domain"),
            (
                "limits = { reply-bytes = 1 }",
                "reply-bytes = 1 is outside 16..=16777216",
            ),
            ("hostname = 1", "true or false"),
            ("files = [", ""),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.0.contains(expected), "{text}: {error}");
        }
    }
}
