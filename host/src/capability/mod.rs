//! Host interfaces offered to command components. One capability is one
//! module, one WIT interface and one policy key, in the shape of Spin's host
//! "factors":
//!
//! 1. *value*: the capability, built with what it needs from the daemon
//!    (`Files::new(root)`, `Xenstore::new(client)`, `Update::new(installer)`);
//! 2. *grant*: its policy section (`files = [...]`), deserialized into its
//!    own `Config` and checked into a typed grant when the policy is parsed;
//! 3. *call state*: built from the value and the grant for one call's Store;
//! 4. *link*: its host functions, added to a `Linker<T>` for any Store data
//!    `T` that can hand out the call state (wasmtime's `WasiView` pattern),
//!    so no capability knows the runtime.
//!
//! Adding a capability: its interface in `wit/command.wit`, its module here,
//! one line in the `capabilities!` list below, and its re-export in the SDK.
//! Whether a call used an interface (for the audit record) is noted here,
//! once, in the accessor every host function goes through.

pub mod agent;
pub mod download;
pub mod files;
pub mod freeze;
pub mod hostname;
pub mod log;
pub mod network;
pub mod programs;
pub mod state;
pub mod update;
pub mod xenstore;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::de::DeserializeOwned;
use wasmtime::component::Linker;

use crate::policy::{self, GrantSet, PolicyError, SectionErrors, Sections};
use crate::root::Root;
use crate::xenstore::XsClient;

/// The package every interface belongs to.
pub const PACKAGE: &str = "guestward:command";

/// The policy, with every capability's grant checked.
pub type Policy = policy::Policy<Grants>;
/// One component's entry of the [`Policy`].
pub type ComponentPolicy = policy::ComponentPolicy<Grants>;

/// Who is calling, for per-call state.
#[derive(Debug, Clone, Copy)]
pub struct CallInfo<'a> {
    /// The component's name (its file stem).
    pub component: &'a str,
    /// The command name of the request (empty while loading).
    pub command: &'a str,
    /// The exchange's request id.
    pub request_id: &'a str,
    pub limits: &'a policy::Limits,
    /// When the sandbox stops the call.
    pub deadline: Instant,
    /// Where the call's capabilities note what they refused.
    pub refusals: &'a Refusals,
}

/// The interfaces that refused a call something its grants do not cover,
/// for the audit record and a warning: shared by one call's capabilities.
#[derive(Debug, Clone, Default)]
pub struct Refusals(Arc<Mutex<Vec<&'static str>>>);

impl Refusals {
    /// `interface` refused something.
    pub fn note(&self, interface: &'static str) {
        let mut refused = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !refused.contains(&interface) {
            refused.push(interface);
        }
    }

    /// `result`, noting a `not-granted` error of `interface`.
    pub fn watch<T, E: IsRefusal>(&self, interface: &'static str, result: Result<T, E>) -> Result<T, E> {
        if result.as_ref().is_err_and(IsRefusal::is_refusal) {
            self.note(interface);
        }
        result
    }

    /// The interfaces that refused something, in first-refusal order.
    pub fn list(&self) -> Vec<&'static str> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// An interface's error that means "not granted".
pub trait IsRefusal {
    fn is_refusal(&self) -> bool;
}

macro_rules! not_granted_is_a_refusal {
    ($($error:ty),* $(,)?) => {
        $(impl IsRefusal for $error {
            fn is_refusal(&self) -> bool {
                matches!(self, Self::NotGranted(_))
            }
        })*
    };
}

not_granted_is_a_refusal!(
    crate::wit::files::Error,
    crate::wit::xenstore::Error,
    crate::wit::programs::Error,
    crate::wit::hostname::Error,
    crate::wit::network::Error,
    crate::wit::download::Error,
    crate::wit::update::Error,
    crate::wit::freeze::Error,
);

/// One host interface.
pub trait Capability: Send + Sync + 'static {
    /// The WIT interface's name (`files` for `guestward:command/files`), and
    /// its name in audit records.
    const NAME: &'static str;
    /// The policy key that configures it: the interface's name, except for
    /// `agent` (`settings`); `None` when nothing configures it.
    const POLICY_KEY: Option<&'static str> = Some(Self::NAME);
    /// Granted to every component, whatever its policy entry says.
    const ALWAYS_GRANTED: bool = false;
    /// The policy section, as the operator writes it (`Spanned` fields keep
    /// positions for errors).
    type Config: DeserializeOwned;
    /// The checked grant.
    type Grant: Send + Sync + std::fmt::Debug + 'static;
    /// What one call's Store holds.
    type CallState: Send + 'static;

    /// Check the policy section into a grant (`None`: the section grants
    /// nothing, as `hostname = false`); errors name the line and key.
    fn grant(config: Self::Config, errors: &SectionErrors<'_>) -> Result<Option<Self::Grant>, PolicyError>;

    /// The grant for `policy check`, one line each, without the
    /// capability's name (`read /etc/shadow`).
    fn describe(grant: &Self::Grant) -> Vec<String>;

    /// Whether a call holding `grant` may write to the filesystems, and so
    /// would hang on one the host froze (see `exchange::submit_nova`).
    fn writes_files(_grant: &Self::Grant) -> bool {
        false
    }

    /// How a policy entry grants this interface, for the message that
    /// refuses a component importing it without a grant.
    fn how_to_grant() -> String {
        format!("its policy entry has no `{}` grant", Self::NAME)
    }

    /// What `granted` gives beyond `asked` (`.0`) and what `asked` wants
    /// that `granted` lacks (`.1`), in `describe`'s words.
    fn compare(asked: &Self::Grant, granted: &Self::Grant) -> (Vec<String>, Vec<String>) {
        let asked = Self::describe(asked);
        let granted = Self::describe(granted);
        let more = granted.iter().filter(|line| !asked.contains(line)).cloned().collect();
        let less = asked.iter().filter(|line| !granted.contains(line)).cloned().collect();
        (more, less)
    }

    /// The state for one call. `grant` is `None` when the policy does not
    /// grant the interface.
    fn call_state(&self, grant: Option<&Arc<Self::Grant>>, call: &CallInfo<'_>) -> Self::CallState;

    /// Add the interface to `linker`; `get` finds a call's state in the
    /// Store's data.
    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut Self::CallState,
    ) -> wasmtime::Result<()>;
}

/// Store data that holds every capability's call state.
pub trait HasCallStates {
    fn call_states(&mut self) -> &mut CallStates;
}

/// A section for a capability nothing configures.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoConfig {}

/// Check one capability's section of a policy entry.
fn grant_from<C: Capability>(sections: &mut Sections<'_>) -> Result<Option<Arc<C::Grant>>, PolicyError> {
    let Some(section) = C::POLICY_KEY.and_then(|key| sections.take(key)) else {
        return Ok(None);
    };
    let (config, errors) = section.parse::<C::Config>()?;
    Ok(C::grant(config, &errors)?.map(Arc::new))
}

/// The policy key a capability's lines are named by (`settings` for
/// `agent`).
fn key_of<C: Capability>() -> &'static str {
    C::POLICY_KEY.unwrap_or(C::NAME)
}

/// The `policy check` lines of one capability's grant.
fn describe_grant<C: Capability>(grant: Option<&Arc<C::Grant>>, lines: &mut Vec<String>) {
    let Some(grant) = grant else { return };
    for line in C::describe(grant) {
        lines.push(format!("{:<9} {line}", key_of::<C>()));
    }
}

/// One capability's part of [`Grants::compare`].
fn compare_grants<C: Capability>(asked: Option<&Arc<C::Grant>>, granted: Option<&Arc<C::Grant>>) -> Comparison {
    let prefixed = |lines: Vec<String>| {
        lines
            .into_iter()
            .map(|line| format!("{} {line}", key_of::<C>()))
            .collect()
    };
    let everything = |grant: &C::Grant| {
        let lines = C::describe(grant);
        if lines.is_empty() {
            vec!["(the interface)".to_owned()]
        } else {
            lines
        }
    };
    match (asked, granted) {
        (_, _) if C::ALWAYS_GRANTED => Comparison::default(),
        (Some(asked), Some(granted)) => {
            let (more, less) = C::compare(asked, granted);
            Comparison {
                more: prefixed(more),
                less: prefixed(less),
            }
        }
        (None, Some(granted)) => Comparison {
            more: prefixed(everything(granted)),
            less: Vec::new(),
        },
        (Some(asked), None) => Comparison {
            more: Vec::new(),
            less: prefixed(everything(asked)),
        },
        (None, None) => Comparison::default(),
    }
}

/// Where a policy entry grants more, or less, than a component asks.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Granted but not asked for.
    pub more: Vec<String>,
    /// Asked for but not granted.
    pub less: Vec<String>,
}

impl Comparison {
    fn extend(&mut self, other: Self) {
        self.more.extend(other.more);
        self.less.extend(other.less);
    }
}

/// Why an interface cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// This host has no such interface.
    Unknown,
    /// The policy does not grant it; how it would.
    NotGranted(String),
}

macro_rules! capabilities {
    (
        new($($argument:ident: $argument_type:ty),*);
        $($field:ident: $module:ident::$capability:ident = $build:expr,)*
    ) => {
        /// Every capability, each a value built with what it needs.
        pub struct Capabilities {
            $(pub $field: $module::$capability,)*
        }

        impl Capabilities {
            /// Every capability, acting on `root`.
            pub fn new($($argument: $argument_type),*) -> Self {
                Self { $($field: $build,)* }
            }

            /// The state of every capability for one call.
            pub fn call_states(&self, grants: &Grants, call: &CallInfo<'_>) -> CallStates {
                CallStates {
                    $($field: self.$field.call_state(grants.$field.as_ref(), call),)*
                    used: Vec::new(),
                }
            }
        }

        /// Each capability's grant for one component (`None`: not granted).
        #[derive(Debug, Clone, Default)]
        pub struct Grants {
            $(pub $field: Option<Arc<<$module::$capability as Capability>::Grant>>,)*
        }

        impl GrantSet for Grants {
            fn from_sections(sections: &mut Sections<'_>) -> Result<Self, PolicyError> {
                Ok(Self { $($field: grant_from::<$module::$capability>(sections)?,)* })
            }

            fn describe(&self) -> Vec<String> {
                let always = [$((<$module::$capability as Capability>::ALWAYS_GRANTED, stringify!($field))),*];
                let always: Vec<&str> = always.iter().filter(|(yes, _)| *yes).map(|(_, name)| *name).collect();
                let mut lines = vec![format!("{:<9} {}", "always", always.join(", "))];
                $(describe_grant::<$module::$capability>(self.$field.as_ref(), &mut lines);)*
                lines
            }
        }

        impl Grants {
            /// Whether any of these grants may write to the filesystems.
            pub fn writes_files(&self) -> bool {
                false $(|| self.$field.as_deref().is_some_and(<$module::$capability as Capability>::writes_files))*
            }

            /// Whether `interface` (`files`) may be imported under these
            /// grants.
            pub fn allows(&self, interface: &str) -> Result<(), Unavailable> {
                $(if interface == <$module::$capability as Capability>::NAME {
                    return if <$module::$capability as Capability>::ALWAYS_GRANTED || self.$field.is_some() {
                        Ok(())
                    } else {
                        Err(Unavailable::NotGranted(<$module::$capability as Capability>::how_to_grant()))
                    };
                })*
                Err(Unavailable::Unknown)
            }

            /// Where these grants give more, or less, than `asked`.
            pub fn compare(&self, asked: &Grants) -> Comparison {
                let mut comparison = Comparison::default();
                $(comparison.extend(compare_grants::<$module::$capability>(
                    asked.$field.as_ref(),
                    self.$field.as_ref(),
                ));)*
                comparison
            }
        }

        /// Each capability's state for one call.
        pub struct CallStates {
            $(pub $field: <$module::$capability as Capability>::CallState,)*
            /// The interfaces the call used, in first-use order.
            used: Vec<&'static str>,
        }

        impl CallStates {
            /// The interfaces (`files`) the call used.
            pub fn used(&self) -> &[&'static str] {
                &self.used
            }

            fn mark_used(&mut self, name: &'static str) {
                if !self.used.contains(&name) {
                    self.used.push(name);
                }
            }
        }

        /// Every interface this host offers (`files`).
        pub const INTERFACES: &[&str] = &[$(<$module::$capability as Capability>::NAME),*];

        /// Link every capability; each host call marks its interface used.
        pub fn add_to_linker<T: HasCallStates + Send + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
            $(<$module::$capability as Capability>::add_to_linker(linker, |data: &mut T| {
                let states = data.call_states();
                states.mark_used(<$module::$capability as Capability>::NAME);
                &mut states.$field
            })?;)*
            Ok(())
        }
    };
}

capabilities! {
    new(root: Arc<Root>, xenstore: Option<XsClient>, installer: Option<update::Installer>);
    log: log::Log = log::Log,
    state: state::State = state::State::default(),
    agent: agent::Agent = agent::Agent::default(),
    files: files::Files = files::Files::new(root.clone()),
    xenstore: xenstore::Xenstore = xenstore::Xenstore::new(xenstore),
    programs: programs::Programs = programs::Programs::new(root.clone()),
    hostname: hostname::Hostname = hostname::Hostname::new(root.clone()),
    network: network::Network = network::Network::new(root.clone()),
    download: download::Download = download::Download,
    update: update::Update = update::Update::new(installer),
    freeze: freeze::Freeze = freeze::Freeze::new(root.clone()),
}

/// A list section (`files = [...]`): an empty list grants the interface with
/// nothing in it, so that a component whose use of it is optional loads and
/// is told why each use is refused.
pub fn nothing_granted(lines: Vec<String>, what: &str) -> Vec<String> {
    if lines.is_empty() {
        vec![format!("(no {what} granted)")]
    } else {
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(text: &str) -> Grants {
        Policy::parse(text, "test").unwrap().component("c").grants
    }

    #[test]
    fn the_commands_that_could_write_are_those_granted_a_write() {
        let policy = Policy::builtin();
        let writers: Vec<&str> = [
            "version",
            "features",
            "password",
            "resetnetwork",
            "injectfile",
            "kmsactivate",
            "agentupdate",
            "qga",
            "sshkeys",
        ]
        .into_iter()
        .filter(|name| policy.component(name).grants.writes_files())
        .collect();
        assert_eq!(
            writers,
            [
                "password",
                "resetnetwork",
                "injectfile",
                "kmsactivate",
                "agentupdate",
                "sshkeys"
            ]
        );
        assert!(!grants("[component.c]\nfiles = [{ path = \"/etc\", access = \"read\" }]\n").writes_files());
        assert!(grants("[component.c]\nfiles = [{ path = \"/etc\", access = \"read-write\" }]\n").writes_files());
        assert!(!grants("[component.c]\nprograms = []\nhostname = true\n").writes_files());
        assert!(grants("[component.c]\nprograms = [[\"/bin/true\"]]\n").writes_files());
        assert!(grants("[component.c]\nupdate = true\n").writes_files());
    }

    #[test]
    fn the_builtin_policy_parses_and_grants_each_builtin_its_interfaces() {
        let policy = Policy::builtin();
        assert!(policy.names("version"));
        let network = policy.component("resetnetwork").grants;
        for interface in ["xenstore", "programs", "hostname", "network", "files"] {
            assert_eq!(network.allows(interface), Ok(()), "{interface}");
        }
        assert!(policy.component("version").grants.allows("files").is_err());
    }

    #[test]
    fn always_granted_interfaces_need_no_entry() {
        let grants = grants("");
        for interface in ["log", "state", "agent"] {
            assert_eq!(grants.allows(interface), Ok(()), "{interface}");
        }
    }

    #[test]
    fn each_interface_is_granted_by_the_key_of_its_name() {
        let none = grants("");
        for interface in [
            "files", "xenstore", "programs", "hostname", "network", "download", "update", "freeze",
        ] {
            let Err(Unavailable::NotGranted(hint)) = none.allows(interface) else {
                panic!("{interface} granted without a key");
            };
            assert!(hint.contains(&format!("`{interface}")), "{interface}: {hint}");
        }
        let all = grants(
            "[component.c]\nfiles = []\nxenstore = []\nprograms = []\nhostname = true\nnetwork = true\ndownload = []\nupdate = true\nfreeze = true\n",
        );
        for interface in INTERFACES {
            assert_eq!(all.allows(interface), Ok(()), "{interface}");
        }
        assert_eq!(all.allows("system"), Err(Unavailable::Unknown));
    }

    #[test]
    fn false_flags_grant_nothing() {
        let grants = grants("[component.c]\nhostname = false\nnetwork = false\nupdate = false\nfreeze = false\n");
        for interface in ["hostname", "network", "update", "freeze"] {
            assert!(grants.allows(interface).is_err(), "{interface}");
        }
    }

    #[test]
    fn a_comparison_names_what_is_granted_beyond_and_short_of_the_ask() {
        let asked =
            grants("[component.c]\nfiles = [{ path = \"/etc/shadow\", access = \"read-write\" }]\nhostname = true\n");
        let granted = grants(
            "[component.c]\nfiles = [{ path = \"/etc/shadow\", access = \"read-write\" }, { path = \"/etc\", access = \"read\" }]\nnetwork = true\n",
        );
        let comparison = granted.compare(&asked);
        assert_eq!(
            comparison.more,
            ["files read /etc", "network may list the network interfaces"]
        );
        assert_eq!(comparison.less, ["hostname may set the hostname"]);
        assert_eq!(asked.compare(&asked), Comparison::default());
    }
}
