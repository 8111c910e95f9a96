//! `hostname`: setting the running system's hostname (sethostname(2)),
//! granted by `hostname = true`. Under `--root` it is recorded instead.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use super::{CallInfo, Capability, Refusals};
use crate::policy::{PolicyError, SectionErrors};
use crate::root::Root;
use crate::wit::hostname::{self as wit, Error};

/// The longest hostname the kernel takes.
const MAX_HOSTNAME: usize = 64;

/// The `hostname` capability: the hostname of the agent's root.
#[derive(Debug)]
pub struct Hostname {
    root: Arc<Root>,
}

impl Hostname {
    /// Sets the hostname of `root` (recorded for a `--root` directory).
    pub fn new(root: Arc<Root>) -> Self {
        Self { root }
    }
}

/// The `hostname` grant (`hostname = true`).
#[derive(Debug, PartialEq, Eq)]
pub struct HostnameGrant;

/// One call's access to the hostname.
#[derive(Debug)]
pub struct CallHostname {
    granted: bool,
    root: Arc<Root>,
    component: String,
    refusals: Refusals,
}

impl Capability for Hostname {
    const NAME: &'static str = "hostname";
    /// `hostname = true`; `false` grants nothing.
    type Config = bool;
    type Grant = HostnameGrant;
    type CallState = CallHostname;

    fn grant(enabled: bool, _errors: &SectionErrors<'_>) -> Result<Option<HostnameGrant>, PolicyError> {
        Ok(enabled.then_some(HostnameGrant))
    }

    fn describe(_grant: &HostnameGrant) -> Vec<String> {
        vec!["may set the hostname".to_owned()]
    }

    fn how_to_grant() -> String {
        "its policy entry has no `hostname = true`".to_owned()
    }

    fn call_state(&self, grant: Option<&Arc<HostnameGrant>>, call: &CallInfo<'_>) -> CallHostname {
        CallHostname {
            granted: grant.is_some(),
            root: self.root.clone(),
            component: call.component.to_owned(),
            refusals: call.refusals.clone(),
        }
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut CallHostname,
    ) -> wasmtime::Result<()> {
        wit::add_to_linker::<_, HasSelf<CallHostname>>(linker, get)
    }
}

/// A name the kernel takes and no file that holds it misreads: no control
/// characters, no `/`, no space.
fn valid_hostname(name: &str) -> bool {
    !name.is_empty() && !name.bytes().any(|b| b.is_ascii_control() || b == b'/' || b == b' ')
}

impl wit::Host for CallHostname {
    async fn set(&mut self, name: String) -> Result<(), Error> {
        if !self.granted {
            self.refusals.note(Hostname::NAME);
            return Err(Error::NotGranted(format!(
                "component {} may not set the hostname",
                self.component
            )));
        }
        if name.len() > MAX_HOSTNAME {
            // Not quoted: the text may end up in the component's reply,
            // which has a size limit.
            let text = format!("a hostname is at most {MAX_HOSTNAME} bytes, not {}", name.len());
            return Err(Error::InvalidName(text));
        }
        if !valid_hostname(&name) {
            return Err(Error::InvalidName(format!("{name:?} is not a valid hostname")));
        }
        tracing::info!(component = self.component, hostname = name, "setting the hostname");
        self.root
            .set_hostname(&name)
            .map_err(|error| Error::Failed(format!("Couldn't set hostname: {error}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_are_checked_before_the_kernel_sees_them() {
        assert!(valid_hostname("web-1.example.com"));
        for bad in ["", "a b", "a/b", "a\nb"] {
            assert!(!valid_hostname(bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_name_longer_than_any_hostname_is_refused_without_quoting_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut call = CallHostname {
            granted: true,
            root: Arc::new(Root::open(dir.path()).unwrap()),
            component: "c".into(),
            refusals: Refusals::default(),
        };
        let error = wit::Host::set(&mut call, "x".repeat(100_000)).await.unwrap_err();
        let Error::InvalidName(text) = error else {
            panic!("{error:?}")
        };
        assert_eq!(text, "a hostname is at most 64 bytes, not 100000");
        let error = wit::Host::set(&mut call, "x".repeat(65)).await.unwrap_err();
        assert!(matches!(error, Error::InvalidName(_)), "{error:?}");
    }

    #[tokio::test]
    async fn an_ungranted_call_is_refused_before_anything_is_checked() {
        let mut call = CallHostname {
            granted: false,
            root: Arc::new(Root::host().unwrap()),
            component: "c".into(),
            refusals: Refusals::default(),
        };
        let error = wit::Host::set(&mut call, "x".into()).await.unwrap_err();
        assert!(matches!(error, Error::NotGranted(_)), "{error:?}");
        assert_eq!(call.refusals.list(), ["hostname"]);
    }
}
