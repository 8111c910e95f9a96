//! The `files` policy key: path rules, each read-only or read-write, and
//! for writable rules who files may be given to and whether they may be
//! setuid.
//!
//! ```toml
//! files = [
//!     { path = "/etc/shadow", access = "read-write" },
//!     { path = "/home", access = "read-write", chown = "home-account" },
//!     { path = "/etc/login.defs", access = "read" },
//! ]
//! ```

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::policy::{PolicyError, SectionErrors};

/// The `files` section as written.
pub type FilesConfig = Vec<RuleConfig>;

/// One rule as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RuleConfig {
    path: Spanned<String>,
    access: Access,
    #[serde(default)]
    chown: Chown,
    #[serde(default)]
    setuid: bool,
}

/// The path prefixes a component may read or write.
#[derive(Debug, PartialEq, Eq)]
pub struct FilesGrant {
    pub rules: Vec<PathRule>,
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

    /// The rule in `policy check`'s words (`read-write /home, chown to the
    /// home's account`).
    pub fn describe(&self) -> String {
        let access = match self.access {
            Access::Read => "read",
            Access::ReadWrite => "read-write",
        };
        let chown = match self.chown {
            Chown::Nobody => "",
            Chown::HomeAccount => ", chown to the home's account",
            Chown::Any => ", chown to anyone",
        };
        let setuid = if self.setuid { ", setuid/setgid" } else { "" };
        format!("{access} {}{chown}{setuid}", self.path.display())
    }

    /// True when this rule gives at least what `other` asks, on a path at or
    /// below `other`'s.
    fn covers(&self, other: &PathRule) -> bool {
        other.path.starts_with(&self.path)
            && self.access >= other.access
            && self.chown.covers(other.chown)
            && (self.setuid || !other.setuid)
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

impl Chown {
    fn covers(self, other: Chown) -> bool {
        match self {
            Chown::Any => true,
            Chown::HomeAccount => other != Chown::Any,
            Chown::Nobody => other == Chown::Nobody,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    Read,
    ReadWrite,
}

impl FilesGrant {
    /// Check the rules as written.
    pub fn from_config(config: FilesConfig, errors: &SectionErrors<'_>) -> Result<Self, PolicyError> {
        let rules = config
            .into_iter()
            .map(|rule| {
                let at = rule.path.span().start;
                let path = normalize_grant_path(rule.path.get_ref()).map_err(|message| errors.at(at, message))?;
                if rule.access == Access::Read && (rule.chown != Chown::Nobody || rule.setuid) {
                    return Err(errors.at(at, "chown and setuid need access = \"read-write\""));
                }
                Ok(PathRule {
                    path,
                    access: rule.access,
                    chown: rule.chown,
                    setuid: rule.setuid,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { rules })
    }

    /// What `self` grants beyond `asked`, and what `asked` wants that
    /// `self` does not give, rule by rule (a granted `/etc` covers an asked
    /// `/etc/shadow`).
    pub fn compare(&self, asked: &FilesGrant) -> (Vec<String>, Vec<String>) {
        let more = self
            .rules
            .iter()
            .filter(|granted| !asked.rules.iter().any(|wanted| wanted.covers(granted)))
            .map(PathRule::describe)
            .collect();
        let less = asked
            .rules
            .iter()
            .filter(|wanted| !self.rules.iter().any(|granted| granted.covers(wanted)))
            .map(PathRule::describe)
            .collect();
        (more, less)
    }

    pub(super) fn allows(&self, real: &Path, access: Access) -> bool {
        self.rules
            .iter()
            .any(|rule| real.starts_with(&rule.path) && rule.access >= access)
    }

    fn writable_rules<'a>(&'a self, real: &'a Path) -> impl Iterator<Item = &'a PathRule> {
        self.rules
            .iter()
            .filter(move |rule| real.starts_with(&rule.path) && rule.access == Access::ReadWrite)
    }

    pub(super) fn allows_setuid(&self, real: &Path) -> bool {
        self.writable_rules(real).any(|rule| rule.setuid)
    }

    /// The widest owner change the rules covering `real` allow.
    pub(super) fn chown(&self, real: &Path) -> Chown {
        let chowns: Vec<Chown> = self.writable_rules(real).map(|rule| rule.chown).collect();
        if chowns.contains(&Chown::Any) {
            Chown::Any
        } else if chowns.contains(&Chown::HomeAccount) {
            Chown::HomeAccount
        } else {
            Chown::Nobody
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::Policy;

    fn rules(text: &str) -> Result<Vec<PathRule>, PolicyError> {
        let policy = Policy::parse(text, "p.toml")?;
        Ok(policy
            .component("c")
            .grants
            .files
            .map(|grant| grant.rules.clone())
            .unwrap_or_default())
    }

    #[test]
    fn rules_are_normalised() {
        let rules = rules(
            r#"[component.c]
            files = [{ path = "/etc/network/", access = "read-write" }, { path = "/etc/./os-release", access = "read" }]"#,
        )
        .unwrap();
        assert_eq!(
            rules,
            [
                PathRule::new("/etc/network", Access::ReadWrite),
                PathRule::new("/etc/os-release", Access::Read),
            ]
        );
    }

    #[test]
    fn errors_name_the_line_and_the_key() {
        let error = rules("[component.c]\n\nfiles = [{ path = \"etc\", access = \"read\" }]\n").unwrap_err();
        assert_eq!(error.line, 3);
        assert!(error.to_string().starts_with("p.toml:3: component.c.files:"), "{error}");
        let error = rules("[component.c]\nfiles = [{ path = \"/etc\", access = \"readwrite\" }]\n").unwrap_err();
        assert_eq!(error.line, 2, "{error}");
    }

    #[test]
    fn an_empty_list_grants_the_interface_with_nothing_in_it() {
        let policy = Policy::parse("[component.u]\nfiles = []\n", "p.toml").unwrap();
        assert_eq!(
            policy
                .component("u")
                .grants
                .files
                .as_ref()
                .map(|grant| grant.rules.len()),
            Some(0)
        );
        assert!(policy.component("other").grants.files.is_none());
    }

    #[test]
    fn owner_and_setuid_changes_are_granted_by_name_on_writable_rules_only() {
        let rules = rules(
            r#"
            [component.c]
            files = [
                { path = "/home", access = "read-write", chown = "home-account" },
                { path = "/opt/tools", access = "read-write", chown = "any", setuid = true },
                { path = "/tmp", access = "read-write" },
            ]
            "#,
        )
        .unwrap();
        assert_eq!((rules[0].chown, rules[0].setuid), (Chown::HomeAccount, false));
        assert_eq!((rules[1].chown, rules[1].setuid), (Chown::Any, true));
        assert_eq!((rules[2].chown, rules[2].setuid), (Chown::Nobody, false));
        let error = self::rules("[component.c]\nfiles = [{ path = \"/etc\", access = \"read\", setuid = true }]\n")
            .unwrap_err();
        assert!(error.message.contains("need access = \"read-write\""), "{error}");
        assert!(
            self::rules("[component.c]\nfiles = [{ path = \"/e\", access = \"read-write\", chown = \"root\" }]\n")
                .is_err()
        );
    }

    #[test]
    fn parent_components_are_refused_in_grants() {
        assert!(normalize_grant_path("/etc/../root").is_err());
    }

    #[test]
    fn a_wider_rule_covers_a_narrower_one_and_not_the_reverse() {
        let asked = FilesGrant {
            rules: vec![PathRule::new("/etc/shadow", Access::ReadWrite)],
        };
        let granted = FilesGrant {
            rules: vec![
                PathRule::new("/etc", Access::ReadWrite),
                PathRule::new("/tmp", Access::Read),
            ],
        };
        let (more, less) = granted.compare(&asked);
        assert_eq!(more, ["read-write /etc", "read /tmp"]);
        assert!(less.is_empty(), "{less:?}");
        let (more, less) = asked.compare(&granted);
        assert!(more.is_empty(), "{more:?}");
        assert_eq!(less, ["read-write /etc", "read /tmp"]);
    }
}
