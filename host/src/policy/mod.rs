//! What each command component is granted, from the operator's policy file.
//!
//! Default deny: a component gets the always-granted interfaces (`log`,
//! `state`, `agent`) and nothing else unless its entry grants it. The file is
//! TOML; every error names its line. The built-in default (this module's
//! `default.toml`) covers the built-in commands.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::xenstore;

/// The built-in policy for the built-in commands.
pub const DEFAULT_POLICY: &str = include_str!("default.toml");

/// The policy for every component.
#[derive(Debug, Clone)]
pub struct Policy {
    origin: String,
    limits: Limits,
    components: BTreeMap<String, ComponentPolicy>,
}

/// What one component is granted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentPolicy {
    /// Paths it may read or write. For `files`, `programs` and `download`,
    /// `Some(empty)` (an empty list in the file) grants the interface with
    /// nothing in it, so that a component whose use of it is optional
    /// loads, and says why when it is refused.
    pub files: Option<Vec<PathRule>>,
    pub xenstore: Vec<String>,
    /// Programs it may run: each an exact argument list, program first (an
    /// absolute path); `*` stands for any one argument.
    pub programs: Option<Vec<Vec<String>>>,
    /// URL prefixes it may download from (normalised, ending in `/`).
    pub download: Option<Vec<String>>,
    /// Whether it may install components (`update`).
    pub update: bool,
    /// Whether it may set the running system's hostname (`system`).
    pub hostname: bool,
    /// Operator settings for the component (`agent.setting`).
    pub settings: BTreeMap<String, String>,
    /// The only trusted keys (by name) whose signature may provide this
    /// component; `None`: any trusted key, unless the name is a built-in's.
    pub signers: Option<Vec<String>>,
    pub limits: Limits,
}

/// Access to the files at and below `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRule {
    pub path: PathBuf,
    pub access: Access,
    /// To whom a file under `path` may be given (default: to nobody).
    pub chown: Chown,
    /// Whether files under `path` may get the setuid or setgid bit.
    pub setuid: bool,
}

impl PathRule {
    /// A rule that grants `access` and no ownership or setuid changes.
    pub fn new(path: impl Into<PathBuf>, access: Access) -> Self {
        Self {
            path: path.into(),
            access,
            chown: Chown::Nobody,
            setuid: false,
        }
    }
}

/// Which owner changes a read-write rule allows. Giving a file away, or
/// making it setuid, turns a write grant into a way to act as another user,
/// so each is granted by name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Chown {
    /// Files keep their owner; new ones are the agent's.
    #[default]
    Nobody,
    /// A file strictly inside an account's home directory (from the root's
    /// `/etc/passwd`) may be given to that account and its primary group:
    /// what SSH keys need.
    HomeAccount,
    /// Any owner.
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    Read,
    ReadWrite,
}

/// Per-call limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time for one call.
    pub deadline: Duration,
    /// Bytes of linear memory for one call.
    pub memory: u64,
    /// Bytes of code plus message in one reply.
    pub reply_bytes: usize,
    /// Log lines one call may write.
    pub log_lines: u32,
    /// Bytes one download may bring.
    pub download_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(25),
            memory: 64 << 20,
            reply_bytes: 16 << 10,
            log_lines: 100,
            download_bytes: 32 << 20,
        }
    }
}

/// A policy file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{origin}:{line}: {message}")]
pub struct PolicyError {
    pub origin: String,
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PolicyFile {
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    component: BTreeMap<String, ComponentFile>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct LimitsFile {
    deadline_ms: Option<Spanned<u64>>,
    memory_mib: Option<Spanned<u64>>,
    reply_bytes: Option<Spanned<u64>>,
    log_lines: Option<Spanned<u32>>,
    download_mib: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ComponentFile {
    files: Option<Vec<FileRuleFile>>,
    #[serde(default)]
    xenstore: Vec<Spanned<String>>,
    programs: Option<Vec<Spanned<Vec<String>>>>,
    download: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    update: bool,
    #[serde(default)]
    hostname: bool,
    #[serde(default)]
    settings: BTreeMap<String, String>,
    signers: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    limits: LimitsFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileRuleFile {
    path: Spanned<String>,
    access: Access,
    #[serde(default)]
    chown: Chown,
    #[serde(default)]
    setuid: bool,
}

impl Policy {
    /// The built-in policy.
    pub fn builtin() -> Self {
        match Self::parse(DEFAULT_POLICY, "built-in policy") {
            Ok(policy) => policy,
            // A unit test parses the built-in policy: this cannot happen in a
            // build whose tests pass.
            Err(error) => unreachable!("the built-in policy is invalid: {error}"),
        }
    }

    /// Read a policy file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| anyhow::anyhow!("cannot read policy {}: {error}", path.display()))?;
        Ok(Self::parse(&text, &path.display().to_string())?)
    }

    /// Parse policy text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, PolicyError> {
        let error_at = |offset: usize, message: String| PolicyError {
            origin: origin.to_owned(),
            line: line_of(text, offset),
            message,
        };
        let file: PolicyFile = toml::from_str(text).map_err(|error| {
            let offset = error.span().map_or(0, |span| span.start);
            error_at(offset, error.message().trim().to_owned())
        })?;
        let limits = file.limits.apply(Limits::default(), &error_at)?;
        let mut components = BTreeMap::new();
        for (name, entry) in file.component {
            let files = entry
                .files
                .map(|rules| {
                    rules
                        .into_iter()
                        .map(|rule| {
                            let at = rule.path.span().start;
                            let path = normalize_grant_path(rule.path.get_ref())
                                .map_err(|message| error_at(at, format!("component.{name}.files: {message}")))?;
                            if rule.access == Access::Read && (rule.chown != Chown::Nobody || rule.setuid) {
                                return Err(error_at(
                                    at,
                                    format!("component.{name}.files: chown and setuid need access = \"read-write\""),
                                ));
                            }
                            Ok(PathRule {
                                path,
                                access: rule.access,
                                chown: rule.chown,
                                setuid: rule.setuid,
                            })
                        })
                        .collect::<Result<Vec<_>, PolicyError>>()
                })
                .transpose()?;
            let xenstore = entry
                .xenstore
                .into_iter()
                .map(|prefix| {
                    normalize_key_prefix(prefix.get_ref()).map_err(|message| {
                        error_at(prefix.span().start, format!("component.{name}.xenstore: {message}"))
                    })
                })
                .collect::<Result<Vec<_>, PolicyError>>()?;
            let programs = entry
                .programs
                .map(|patterns| {
                    patterns
                        .into_iter()
                        .map(|pattern| {
                            check_program_pattern(pattern.get_ref())
                                .map(|()| pattern.get_ref().clone())
                                .map_err(|message| {
                                    error_at(pattern.span().start, format!("component.{name}.programs: {message}"))
                                })
                        })
                        .collect::<Result<Vec<_>, PolicyError>>()
                })
                .transpose()?;
            let download = entry
                .download
                .map(|prefixes| {
                    prefixes
                        .into_iter()
                        .map(|prefix| {
                            normalize_url_prefix(prefix.get_ref()).map_err(|message| {
                                error_at(prefix.span().start, format!("component.{name}.download: {message}"))
                            })
                        })
                        .collect::<Result<Vec<_>, PolicyError>>()
                })
                .transpose()?;
            let signers = entry
                .signers
                .map(|keys| {
                    keys.into_iter()
                        .map(|key| {
                            check_key_name(key.get_ref())
                                .map(|()| key.get_ref().clone())
                                .map_err(|message| {
                                    error_at(key.span().start, format!("component.{name}.signers: {message}"))
                                })
                        })
                        .collect::<Result<Vec<_>, PolicyError>>()
                })
                .transpose()?;
            let limits = entry.limits.apply(limits, &error_at)?;
            components.insert(
                name,
                ComponentPolicy {
                    files,
                    xenstore,
                    programs,
                    download,
                    update: entry.update,
                    hostname: entry.hostname,
                    settings: entry.settings,
                    signers,
                    limits,
                },
            );
        }
        Ok(Self {
            origin: origin.to_owned(),
            limits,
            components,
        })
    }

    /// Where this policy came from (a path, or "built-in policy").
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The entry for component `name`; with no entry, nothing beyond the
    /// always-granted interfaces and the default limits.
    pub fn component(&self, name: &str) -> ComponentPolicy {
        self.components.get(name).cloned().unwrap_or(ComponentPolicy {
            limits: self.limits,
            ..ComponentPolicy::default()
        })
    }

    /// The components the policy has an entry for.
    pub fn entry_names(&self) -> impl Iterator<Item = &str> {
        self.components.keys().map(String::as_str)
    }

    /// True when the policy names component `name`.
    pub fn names(&self, name: &str) -> bool {
        self.components.contains_key(name)
    }

    /// Each component whose entry pins its signers, with those key names.
    pub fn signers(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.components
            .iter()
            .filter_map(|(name, entry)| entry.signers.as_deref().map(|keys| (name.as_str(), keys)))
    }

    /// The largest memory limit any component may have (sizes the instance pool).
    pub fn max_memory(&self) -> u64 {
        self.components
            .values()
            .map(|component| component.limits.memory)
            .chain([self.limits.memory])
            .max()
            .unwrap_or(self.limits.memory)
    }
}

impl std::fmt::Display for ComponentPolicy {
    /// The grants and limits, one per line, for `guestward policy check`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "  always    log, state, agent")?;
        if self.files.as_ref().is_some_and(Vec::is_empty) {
            writeln!(f, "  files     (no path granted)")?;
        }
        for rule in self.files.iter().flatten() {
            let access = match rule.access {
                Access::Read => "read",
                Access::ReadWrite => "read-write",
            };
            let chown = match rule.chown {
                Chown::Nobody => "",
                Chown::HomeAccount => ", chown to the home's account",
                Chown::Any => ", chown to anyone",
            };
            let setuid = if rule.setuid { ", setuid/setgid" } else { "" };
            writeln!(f, "  files     {access} {}{chown}{setuid}", rule.path.display())?;
        }
        for prefix in &self.xenstore {
            writeln!(f, "  xenstore  {prefix}")?;
        }
        if self.programs.as_ref().is_some_and(Vec::is_empty) {
            writeln!(f, "  program   (no program granted)")?;
        }
        for pattern in self.programs.iter().flatten() {
            writeln!(f, "  program   {}", pattern.join(" "))?;
        }
        match &self.download {
            Some(prefixes) if prefixes.is_empty() => writeln!(f, "  download  (no URL granted)")?,
            Some(prefixes) => {
                for prefix in prefixes {
                    writeln!(f, "  download  {prefix}")?;
                }
            }
            None => {}
        }
        if self.hostname {
            writeln!(f, "  hostname  may set the hostname")?;
        }
        if self.update {
            writeln!(f, "  update    may install components")?;
        }
        for (name, value) in &self.settings {
            writeln!(f, "  setting   {name} = {value}")?;
        }
        match &self.signers {
            Some(keys) if keys.is_empty() => writeln!(f, "  signers   (no key: only the pinned built-in)")?,
            Some(keys) => writeln!(f, "  signers   {}", keys.join(", "))?,
            None => {}
        }
        let limits = &self.limits;
        write!(
            f,
            "  limits    deadline {} ms, memory {} MiB, reply {} bytes, {} log lines, downloads {} MiB",
            limits.deadline.as_millis(),
            limits.memory >> 20,
            limits.reply_bytes,
            limits.log_lines,
            limits.download_bytes >> 20
        )
    }
}

impl LimitsFile {
    fn apply(&self, base: Limits, error_at: &impl Fn(usize, String) -> PolicyError) -> Result<Limits, PolicyError> {
        let mut limits = base;
        if let Some(value) = &self.deadline_ms {
            limits.deadline = Duration::from_millis(in_range(value, 1..=600_000, "deadline-ms", error_at)?);
        }
        if let Some(value) = &self.memory_mib {
            limits.memory = in_range(value, 1..=4096, "memory-mib", error_at)? << 20;
        }
        if let Some(value) = &self.reply_bytes {
            limits.reply_bytes = in_range(value, 16..=(16 << 20), "reply-bytes", error_at)? as usize;
        }
        if let Some(value) = &self.log_lines {
            limits.log_lines = *value.get_ref();
        }
        if let Some(value) = &self.download_mib {
            limits.download_bytes = in_range(value, 1..=1024, "download-mib", error_at)? << 20;
        }
        Ok(limits)
    }
}

fn in_range(
    value: &Spanned<u64>,
    range: std::ops::RangeInclusive<u64>,
    key: &str,
    error_at: &impl Fn(usize, String) -> PolicyError,
) -> Result<u64, PolicyError> {
    let number = *value.get_ref();
    if range.contains(&number) {
        Ok(number)
    } else {
        Err(error_at(
            value.span().start,
            format!("{key} = {number} is outside {}..={}", range.start(), range.end()),
        ))
    }
}

/// An absolute path without `.`, `..` or a trailing `/`.
fn normalize_grant_path(text: &str) -> Result<PathBuf, String> {
    let path = Path::new(text);
    if !path.is_absolute() {
        return Err(format!("{text:?} is not an absolute path"));
    }
    let mut normal = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => normal.push(part),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(format!("{text:?} contains '..'"));
            }
        }
    }
    Ok(normal)
}

/// A program pattern: a program given by absolute path, then arguments.
fn check_program_pattern(pattern: &[String]) -> Result<(), String> {
    match pattern.first() {
        None => Err("an empty program pattern".to_owned()),
        Some(program) if !program.starts_with('/') => Err(format!("{program:?}: programs are given by absolute path")),
        Some(program) if program == "*" || program.contains("..") => Err(format!("{program:?}: not a program path")),
        Some(_) => Ok(()),
    }
}

/// A key name as `guestward keygen` makes them (`ops` for `ops.pub`).
fn check_key_name(name: &str) -> Result<(), String> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if plain {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a key name (the stem of a trusted-keys .pub file)"
        ))
    }
}

/// A URL prefix: `http` or `https`, a host, no credentials, query or
/// fragment, a path ending in `/` (so that `https://a.example/` never
/// matches `https://a.example.evil/`); normalised as URLs are compared.
fn normalize_url_prefix(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|error| format!("{text:?}: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("{text:?}: only http and https URLs with a host"));
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{text:?}: no credentials, query or fragment in a prefix"));
    }
    if !url.path().ends_with('/') {
        return Err(format!("{text:?}: a prefix ends with '/'"));
    }
    Ok(url.to_string())
}

/// A relative XenStore key prefix (`vm-data/networking`), without a trailing `/`.
fn normalize_key_prefix(text: &str) -> Result<String, String> {
    let prefix = text.trim_end_matches('/');
    if prefix.starts_with('/') {
        return Err(format!("{text:?}: use a key relative to the domain (vm-data/…)"));
    }
    xenstore::path::validate(prefix).map_err(|error| error.to_string())?;
    Ok(prefix.to_owned())
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_policy_parses() {
        let policy = Policy::parse(DEFAULT_POLICY, "built-in policy").unwrap();
        assert!(policy.names("version"));
        assert_eq!(policy.component("version").limits, Limits::default());
    }

    #[test]
    fn components_without_an_entry_get_nothing() {
        let policy = Policy::parse("", "test").unwrap();
        let component = policy.component("stranger");
        assert!(component.files.is_none() && component.xenstore.is_empty() && component.programs.is_none());
    }

    #[test]
    fn grants_and_limits_are_read_and_normalised() {
        let policy = Policy::parse(
            r#"
            [limits]
            deadline-ms = 1000
            [component.net]
            files = [{ path = "/etc/network/", access = "read-write" }, { path = "/etc/./os-release", access = "read" }]
            xenstore = ["vm-data/networking/", "vm-data/hostname"]
            limits = { memory-mib = 128 }
            "#,
            "test",
        )
        .unwrap();
        let net = policy.component("net");
        assert_eq!(
            net.files.unwrap(),
            [
                PathRule::new("/etc/network", Access::ReadWrite),
                PathRule::new("/etc/os-release", Access::Read),
            ]
        );
        assert_eq!(net.xenstore, ["vm-data/networking", "vm-data/hostname"]);
        assert_eq!(net.limits.deadline, Duration::from_secs(1));
        assert_eq!(net.limits.memory, 128 << 20);
        assert_eq!(policy.max_memory(), 128 << 20);
    }

    #[test]
    fn errors_name_the_line() {
        let error = Policy::parse(
            "[component.x]\n\nfiles = [{ path = \"etc\", access = \"read\" }]\n",
            "p.toml",
        )
        .unwrap_err();
        assert_eq!(error.line, 3);
        assert!(error.to_string().starts_with("p.toml:3: component.x.files:"), "{error}");

        let error = Policy::parse("[component.x]\nfilez = []\n", "p.toml").unwrap_err();
        assert_eq!(error.line, 2, "{error}");
        assert!(error.message.contains("filez"), "{error}");

        let error = Policy::parse("[limits]\ndeadline-ms = 0\n", "p.toml").unwrap_err();
        assert_eq!(
            (error.line, error.message.as_str()),
            (2, "deadline-ms = 0 is outside 1..=600000")
        );

        let error = Policy::parse("[component.x]\nxenstore = [\"/local/domain/0\"]\n", "p.toml").unwrap_err();
        assert_eq!(error.line, 2);
    }

    #[test]
    fn programs_and_settings_are_read() {
        let policy = Policy::parse(
            "[component.p]\nprograms = [[\"/usr/sbin/pwd_mkdb\", \"-p\", \"/etc/master.passwd\"], [\"/sbin/ifup\", \"*\"]]\nsettings = { account = \"admin\" }\n",
            "test",
        )
        .unwrap();
        let entry = policy.component("p");
        assert_eq!(entry.programs.as_ref().unwrap()[1], ["/sbin/ifup", "*"]);
        assert_eq!(entry.settings["account"], "admin");
        let error = Policy::parse("[component.p]\nprograms = [[\"ifup\"]]\n", "p.toml").unwrap_err();
        assert_eq!(error.line, 2, "{error}");
        assert!(error.message.contains("absolute path"), "{error}");
    }

    #[test]
    fn an_empty_list_grants_the_interface_with_nothing_in_it() {
        let policy = Policy::parse("[component.u]\nfiles = []\nprograms = []\n", "p.toml").unwrap();
        let entry = policy.component("u");
        assert_eq!((entry.files, entry.programs), (Some(vec![]), Some(vec![])));
        assert!(policy.component("other").files.is_none());
    }

    #[test]
    fn download_prefixes_are_normalised_and_must_end_in_a_slash() {
        let policy = Policy::parse(
            "[component.d]\ndownload = [\"HTTPS://Updates.Example.com:443/agent/\"]\n",
            "t",
        )
        .unwrap();
        assert_eq!(
            policy.component("d").download.unwrap(),
            ["https://updates.example.com/agent/"]
        );
        for bad in [
            "https://example.com/agent",
            "ftp://example.com/",
            "https://user@example.com/",
            "https://e.com/?x=1",
            "/x/",
        ] {
            let text = format!("[component.d]\ndownload = [{bad:?}]\n");
            assert!(Policy::parse(&text, "t").is_err(), "{bad}");
        }
    }

    #[test]
    fn owner_and_setuid_changes_are_granted_by_name_on_writable_rules_only() {
        let policy = Policy::parse(
            r#"
            [component.keys]
            files = [
                { path = "/home", access = "read-write", chown = "home-account" },
                { path = "/opt/tools", access = "read-write", chown = "any", setuid = true },
                { path = "/tmp", access = "read-write" },
            ]
            "#,
            "t",
        )
        .unwrap();
        let rules = policy.component("keys").files.unwrap();
        assert_eq!((rules[0].chown, rules[0].setuid), (Chown::HomeAccount, false));
        assert_eq!((rules[1].chown, rules[1].setuid), (Chown::Any, true));
        assert_eq!((rules[2].chown, rules[2].setuid), (Chown::Nobody, false));
        let error = Policy::parse(
            "[component.x]\nfiles = [{ path = \"/etc\", access = \"read\", setuid = true }]\n",
            "p.toml",
        )
        .unwrap_err();
        assert!(error.message.contains("need access = \"read-write\""), "{error}");
        assert!(
            Policy::parse(
                "[component.x]\nfiles = [{ path = \"/e\", access = \"read-write\", chown = \"root\" }]\n",
                "t"
            )
            .is_err()
        );
    }

    #[test]
    fn signers_name_trusted_keys() {
        let policy = Policy::parse(
            "[component.password]\nsigners = [\"ops\", \"vendor-2\"]\n[component.none]\nsigners = []\n[component.any]\n",
            "p.toml",
        )
        .unwrap();
        let pins: Vec<_> = policy.signers().collect();
        assert_eq!(
            pins,
            [
                ("none", &[][..]),
                ("password", &["ops".to_owned(), "vendor-2".to_owned()][..])
            ]
        );
        assert!(
            policy
                .component("password")
                .to_string()
                .contains("signers   ops, vendor-2")
        );
        for bad in ["", "../ops", "a/b", ".hidden"] {
            let text = format!("[component.x]\n\nsigners = [{bad:?}]\n");
            let error = Policy::parse(&text, "p.toml").unwrap_err();
            assert_eq!(error.line, 3, "{bad}: {error}");
            assert!(error.message.contains("component.x.signers"), "{error}");
        }
    }

    #[test]
    fn parent_components_are_refused_in_grants() {
        assert!(normalize_grant_path("/etc/../root").is_err());
    }
}
