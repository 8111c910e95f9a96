//! The operator's policy file: what each command component is granted, and
//! its limits.
//!
//! Default deny: a component gets the always-granted interfaces and nothing
//! else unless its entry grants it. The file is TOML; every error names its
//! file, line and key. This module knows the file's shape (the global
//! `[limits]`, and for each `[component.<name>]` its `limits` and `signers`);
//! each capability's own key (`files`, `programs`, ...) is a [`Section`]
//! that the capability checks itself, through the [`GrantSet`] the policy is
//! parsed with. The built-in default (this module's `default.toml`) covers
//! the built-in commands.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// The built-in policy for the built-in commands.
pub const DEFAULT_POLICY: &str = include_str!("default.toml");

/// The grants of one component entry, one per capability: what a policy is
/// parsed into. Implemented by the capability registry.
pub trait GrantSet: Clone + Default + Send + Sync + 'static {
    /// Check the sections of one entry this set knows (taking them out of
    /// `sections`); the policy refuses any section left over.
    fn from_sections(sections: &mut Sections<'_>) -> Result<Self, PolicyError>;

    /// One line per grant, for `guestward policy check` (`files     read /etc`).
    fn describe(&self) -> Vec<String>;
}

/// The policy for every component.
#[derive(Debug, Clone)]
pub struct Policy<G> {
    origin: String,
    limits: Limits,
    components: BTreeMap<String, ComponentPolicy<G>>,
    /// Where each entry came from (a drop-in may replace a base entry).
    origins: BTreeMap<String, String>,
}

/// What one component is granted.
#[derive(Debug, Clone, Default)]
pub struct ComponentPolicy<G> {
    /// Each capability's grant.
    pub grants: G,
    /// The only trusted keys (by name) whose signature may provide this
    /// component; `None`: any trusted key, unless the name is a built-in's.
    pub signers: Option<Vec<String>>,
    pub limits: Limits,
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
#[derive(Debug, Clone, thiserror::Error)]
#[error("{origin}:{line}: {message}")]
pub struct PolicyError {
    pub origin: String,
    pub line: usize,
    pub message: String,
}

/// Where a policy's text came from, to name lines in errors.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub origin: &'a str,
    pub text: &'a str,
}

impl Source<'_> {
    /// An error at byte `offset` of the text.
    pub fn error_at(&self, offset: usize, message: impl Into<String>) -> PolicyError {
        PolicyError {
            origin: self.origin.to_owned(),
            line: line_of(self.text, offset),
            message: message.into(),
        }
    }

    /// A TOML error, at its own position.
    fn toml_error(&self, error: &toml::de::Error) -> PolicyError {
        let offset = error.span().map_or(0, |span| span.start);
        self.error_at(offset, error.message().trim())
    }
}

/// The capability keys of one `[component.<name>]` entry, not yet checked.
pub struct Sections<'a> {
    source: Source<'a>,
    component: &'a str,
    values: BTreeMap<String, Spanned<DeValue<'a>>>,
}

impl<'a> Sections<'a> {
    /// The component the entry is for.
    pub fn component(&self) -> &str {
        self.component
    }

    /// Take the section under `key`, if the entry has one.
    pub fn take(&mut self, key: &'static str) -> Option<Section<'a>> {
        let value = self.values.remove(key)?;
        Some(Section {
            source: self.source,
            component: self.component.to_owned(),
            key,
            value,
        })
    }

    /// The entry's sections; no section may be left.
    fn finish(self) -> Result<(), PolicyError> {
        match self.values.into_iter().next() {
            None => Ok(()),
            Some((key, value)) => Err(self.source.error_at(
                value.span().start,
                format!("component.{}: unknown key `{key}`", self.component),
            )),
        }
    }
}

/// One capability's key in one component entry (`files = [...]`).
pub struct Section<'a> {
    source: Source<'a>,
    component: String,
    key: &'static str,
    value: Spanned<DeValue<'a>>,
}

impl<'a> Section<'a> {
    /// Deserialize the section as the capability's configuration type
    /// (whose `Spanned` fields keep positions in the policy text).
    pub fn parse<C: Deserialize<'a>>(self) -> Result<(C, SectionErrors<'a>), PolicyError> {
        let errors = SectionErrors {
            source: self.source,
            path: format!("component.{}.{}", self.component, self.key),
            start: self.value.span().start,
        };
        let config = C::deserialize(ValueDeserializer::from(self.value)).map_err(|error| {
            let offset = error.span().map_or(errors.start, |span| span.start);
            errors.at(offset, error.message().trim())
        })?;
        Ok((config, errors))
    }
}

/// Errors about one section, named `file:line: component.<name>.<key>: ...`.
#[derive(Debug, Clone)]
pub struct SectionErrors<'a> {
    source: Source<'a>,
    path: String,
    start: usize,
}

impl SectionErrors<'_> {
    /// An error at byte `offset` of the policy text (a `Spanned` field's
    /// `span().start`).
    pub fn at(&self, offset: usize, message: impl std::fmt::Display) -> PolicyError {
        self.source.error_at(offset, format!("{}: {message}", self.path))
    }

    /// An error about the section as a whole.
    pub fn whole(&self, message: impl std::fmt::Display) -> PolicyError {
        self.at(self.start, message)
    }
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

impl<G: GrantSet> Policy<G> {
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
        Ok(Self::parse_over(text, origin, Limits::default())?.0)
    }

    /// Add a drop-in (`policy.d/*.toml`) on top of this policy: each of its
    /// entries replaces this policy's entry of the same name (or adds one),
    /// and inherits this policy's global limits unless the drop-in sets
    /// its own `[limits]`, which then also become the global limits.
    pub fn add_layer(&mut self, text: &str, origin: &str) -> Result<(), PolicyError> {
        let (layer, sets_limits) = Self::parse_over(text, origin, self.limits)?;
        if sets_limits {
            self.limits = layer.limits;
        }
        for (name, entry) in layer.components {
            self.origins.insert(name.clone(), origin.to_owned());
            self.components.insert(name, entry);
        }
        self.origin = format!("{}, then {origin}", self.origin);
        Ok(())
    }

    /// Add every `*.toml` of `dir`, in name order, with [`add_layer`]
    /// (`Self::add_layer`). A missing directory adds nothing.
    pub fn add_layers_from(&mut self, dir: &Path) -> anyhow::Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => anyhow::bail!("cannot read {}: {error}", dir.display()),
        };
        let mut files: Vec<_> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "toml") && path.is_file())
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file)
                .map_err(|error| anyhow::anyhow!("cannot read policy {}: {error}", file.display()))?;
            self.add_layer(&text, &file.display().to_string())?;
        }
        Ok(())
    }

    /// Parse with `defaults` as the limits the file's own refine; also say
    /// whether the file sets global `[limits]`.
    fn parse_over(text: &str, origin: &str, defaults: Limits) -> Result<(Self, bool), PolicyError> {
        let source = Source { origin, text };
        let document = DeTable::parse(text).map_err(|error| source.toml_error(&error))?;
        let mut limits = defaults;
        let mut sets_limits = false;
        let mut entries = None;
        for (key, value) in document.into_inner() {
            match key.get_ref().as_ref() {
                "limits" => {
                    limits = parse_limits(value, defaults, source)?;
                    sets_limits = true;
                }
                "component" => entries = Some(value),
                other => {
                    return Err(source.error_at(key.span().start, format!("unknown key `{other}`")));
                }
            }
        }
        let mut components = BTreeMap::new();
        if let Some(entries) = entries {
            let span = entries.span();
            let DeValue::Table(entries) = entries.into_inner() else {
                return Err(source.error_at(span.start, "`component` is a table of entries"));
            };
            for (name, entry) in entries {
                let name = name.into_inner().into_owned();
                let component = parse_entry(&name, entry, limits, source)?;
                components.insert(name, component);
            }
        }
        let origins = components
            .keys()
            .map(|name| (name.clone(), origin.to_owned()))
            .collect();
        let policy = Self {
            origin: origin.to_owned(),
            limits,
            components,
            origins,
        };
        Ok((policy, sets_limits))
    }

    /// The entry for component `name`; with no entry, nothing beyond the
    /// always-granted interfaces and the default limits.
    pub fn component(&self, name: &str) -> ComponentPolicy<G> {
        self.components.get(name).cloned().unwrap_or(ComponentPolicy {
            grants: G::default(),
            signers: None,
            limits: self.limits,
        })
    }
}

impl<G> Policy<G> {
    /// Where this policy came from (a path, or "built-in policy", then
    /// each drop-in).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Where the entry for component `name` came from.
    pub fn entry_origin(&self, name: &str) -> Option<&str> {
        self.origins.get(name).map(String::as_str)
    }

    /// The limits of components without an entry.
    pub fn default_limits(&self) -> Limits {
        self.limits
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

/// One `[component.<name>]` entry: its own keys here, the capabilities'
/// through the grant set.
fn parse_entry<G: GrantSet>(
    name: &str,
    entry: Spanned<DeValue<'_>>,
    limits: Limits,
    source: Source<'_>,
) -> Result<ComponentPolicy<G>, PolicyError> {
    let span = entry.span();
    let DeValue::Table(table) = entry.into_inner() else {
        return Err(source.error_at(span.start, format!("component.{name}: an entry is a table")));
    };
    let mut component = ComponentPolicy {
        grants: G::default(),
        signers: None,
        limits,
    };
    let mut values = BTreeMap::new();
    for (key, value) in table {
        match key.get_ref().as_ref() {
            "limits" => component.limits = parse_limits(value, limits, source)?,
            "signers" => component.signers = Some(parse_signers(name, value, source)?),
            other => {
                values.insert(other.to_owned(), value);
            }
        }
    }
    let mut sections = Sections {
        source,
        component: name,
        values,
    };
    component.grants = G::from_sections(&mut sections)?;
    sections.finish()?;
    Ok(component)
}

fn parse_limits(value: Spanned<DeValue<'_>>, base: Limits, source: Source<'_>) -> Result<Limits, PolicyError> {
    let file = LimitsFile::deserialize(ValueDeserializer::from(value)).map_err(|error| source.toml_error(&error))?;
    file.apply(base, source)
}

fn parse_signers(name: &str, value: Spanned<DeValue<'_>>, source: Source<'_>) -> Result<Vec<String>, PolicyError> {
    let keys = Vec::<Spanned<String>>::deserialize(ValueDeserializer::from(value))
        .map_err(|error| source.toml_error(&error))?;
    keys.into_iter()
        .map(|key| {
            check_key_name(key.get_ref())
                .map(|()| key.get_ref().clone())
                .map_err(|message| source.error_at(key.span().start, format!("component.{name}.signers: {message}")))
        })
        .collect()
}

impl<G: GrantSet> std::fmt::Display for ComponentPolicy<G> {
    /// The grants and limits, one per line, for `guestward policy check`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for line in self.grants.describe() {
            writeln!(f, "  {line}")?;
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
    fn apply(&self, base: Limits, source: Source<'_>) -> Result<Limits, PolicyError> {
        let mut limits = base;
        if let Some(value) = &self.deadline_ms {
            limits.deadline = Duration::from_millis(in_range(value, 1..=600_000, "deadline-ms", source)?);
        }
        if let Some(value) = &self.memory_mib {
            limits.memory = in_range(value, 1..=4096, "memory-mib", source)? << 20;
        }
        if let Some(value) = &self.reply_bytes {
            limits.reply_bytes = in_range(value, 16..=(16 << 20), "reply-bytes", source)? as usize;
        }
        if let Some(value) = &self.log_lines {
            limits.log_lines = *value.get_ref();
        }
        if let Some(value) = &self.download_mib {
            limits.download_bytes = in_range(value, 1..=1024, "download-mib", source)? << 20;
        }
        Ok(limits)
    }
}

fn in_range(
    value: &Spanned<u64>,
    range: std::ops::RangeInclusive<u64>,
    key: &str,
    source: Source<'_>,
) -> Result<u64, PolicyError> {
    let number = *value.get_ref();
    if range.contains(&number) {
        Ok(number)
    } else {
        Err(source.error_at(
            value.span().start,
            format!("{key} = {number} is outside {}..={}", range.start(), range.end()),
        ))
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

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A grant set knowing one key, `thing = <u32>`.
    #[derive(Debug, Clone, Default, PartialEq)]
    struct Things(Option<u32>);

    impl GrantSet for Things {
        fn from_sections(sections: &mut Sections<'_>) -> Result<Self, PolicyError> {
            let Some(section) = sections.take("thing") else {
                return Ok(Self(None));
            };
            let (value, errors) = section.parse::<Spanned<u32>>()?;
            if *value.get_ref() == 0 {
                return Err(errors.at(value.span().start, "zero things"));
            }
            Ok(Self(Some(value.into_inner())))
        }

        fn describe(&self) -> Vec<String> {
            self.0.iter().map(|n| format!("thing     {n}")).collect()
        }
    }

    fn parse(text: &str) -> Result<Policy<Things>, PolicyError> {
        Policy::parse(text, "p.toml")
    }

    #[test]
    fn components_without_an_entry_get_nothing_and_the_default_limits() {
        let policy = parse("[limits]\ndeadline-ms = 1000\n").unwrap();
        let component = policy.component("stranger");
        assert_eq!(component.grants, Things(None));
        assert_eq!(component.limits.deadline, Duration::from_secs(1));
    }

    #[test]
    fn limits_apply_globally_then_per_component() {
        let policy =
            parse("[limits]\ndeadline-ms = 1000\n[component.net]\nthing = 3\nlimits = { memory-mib = 128 }\n").unwrap();
        let net = policy.component("net");
        assert_eq!(net.grants, Things(Some(3)));
        assert_eq!(net.limits.deadline, Duration::from_secs(1));
        assert_eq!(net.limits.memory, 128 << 20);
        assert_eq!(policy.max_memory(), 128 << 20);
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_key() {
        let error = parse("[component.x]\n\nthing = 0\n").unwrap_err();
        assert_eq!(error.to_string(), "p.toml:3: component.x.thing: zero things");

        let error = parse("[component.x]\nthing = \"many\"\n").unwrap_err();
        assert_eq!(error.line, 2, "{error}");
        assert!(error.message.starts_with("component.x.thing:"), "{error}");

        let error = parse("[component.x]\nfilez = []\n").unwrap_err();
        assert_eq!(error.line, 2, "{error}");
        assert!(error.message.contains("filez"), "{error}");

        let error = parse("[limits]\ndeadline-ms = 0\n").unwrap_err();
        assert_eq!(
            (error.line, error.message.as_str()),
            (2, "deadline-ms = 0 is outside 1..=600000")
        );

        let error = parse("[limitz]\n").unwrap_err();
        assert_eq!(error.line, 1, "{error}");
        let error = parse("[component.x]\nlimits = { deadline = 3 }\n").unwrap_err();
        assert_eq!(error.line, 2, "{error}");
    }

    #[test]
    fn a_drop_in_replaces_entries_adds_others_and_inherits_the_limits() {
        let mut policy =
            parse("[limits]\ndeadline-ms = 1000\n[component.a]\nthing = 1\n[component.b]\nthing = 2\n").unwrap();
        policy
            .add_layer("[component.b]\nthing = 20\n[component.c]\n", "10-x.toml")
            .unwrap();
        assert_eq!(policy.component("a").grants, Things(Some(1)));
        assert_eq!(policy.component("b").grants, Things(Some(20)));
        assert_eq!(policy.component("c").grants, Things(None));
        assert_eq!(policy.component("c").limits.deadline, Duration::from_secs(1));
        assert_eq!(policy.entry_origin("a"), Some("p.toml"));
        assert_eq!(policy.entry_origin("b"), Some("10-x.toml"));
        assert_eq!(policy.origin(), "p.toml, then 10-x.toml");
        policy.add_layer("[limits]\nmemory-mib = 8\n", "20-y.toml").unwrap();
        let stranger = policy.component("stranger").limits;
        assert_eq!((stranger.deadline, stranger.memory), (Duration::from_secs(1), 8 << 20));
        let error = policy.add_layer("[component.d]\nthing = 0\n", "30-z.toml").unwrap_err();
        assert_eq!(error.to_string(), "30-z.toml:2: component.d.thing: zero things");
    }

    #[test]
    fn signers_name_trusted_keys() {
        let policy = parse(
            "[component.password]\nsigners = [\"ops\", \"vendor-2\"]\n[component.none]\nsigners = []\n[component.any]\n",
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
            let error = parse(&text).unwrap_err();
            assert_eq!(error.line, 3, "{bad}: {error}");
            assert!(error.message.contains("component.x.signers"), "{error}");
        }
    }

    #[test]
    fn the_drop_ins_shown_in_the_policy_guide_are_the_shipped_files() {
        let guide = include_str!("../../../docs/policy.md");
        let shipped = [
            ("fsfreeze.toml", include_str!("../../../dist/policy.d/fsfreeze.toml")),
            ("shutdown.toml", include_str!("../../../dist/policy.d/shutdown.toml")),
        ];
        for (name, file) in shipped {
            // The guide's block opens with the path it is copied to.
            let opening = format!("```toml\n# /etc/guestward/policy.d/{name}\n");
            let at = guide
                .find(&opening)
                .unwrap_or_else(|| panic!("docs/policy.md shows no {name}"));
            let block = &guide[at + "```toml\n".len()..];
            let block = &block[..block.find("```").unwrap()];
            let shown: toml::Table = toml::from_str(block).unwrap();
            let file: toml::Table = toml::from_str(file).unwrap();
            assert_eq!(shown, file, "docs/policy.md and dist/policy.d/{name} differ");
        }
    }
}
