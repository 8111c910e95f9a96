//! Where fuzz inputs run: the real runtime and load pipeline, the
//! component's real policy entry and limits, against a scratch root (a
//! temporary directory used as `--root`: programs and the hostname are
//! recorded, never run) and in-memory XenStore keys.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::capability::xenstore::Xenstore;
use crate::capability::{Capabilities, Policy};
use crate::protocol::{Reply, nova};
use crate::root::Root;
use crate::runtime::{CallReport, ComponentSource, LoadedComponent, Outcome, Runtime, RuntimeOptions};

use super::input::FuzzInput;

/// The network interfaces the scratch machine has.
const INTERFACES: &str = r#"[{"name": "eth0", "mac": "bc:76:4e:20:5e:b2", "up": true},
{"name": "eth1", "mac": "bc:76:4e:20:5e:fb", "up": true}]"#;

/// One component, loaded once, and its scratch machine.
pub struct Sandbox {
    runtime: Runtime,
    component: LoadedComponent,
    /// Holds the root and the interfaces file.
    scratch: tempfile::TempDir,
    root: PathBuf,
}

/// How one input ran.
#[derive(Debug, Clone)]
pub struct Execution {
    /// The command it ran, or `None` when the protocol refused the request.
    pub command: Option<String>,
    pub reply: Reply,
    /// The protocol text of the reply.
    pub encoded: String,
    /// How the call ended (`Replied` also when no component ran).
    pub outcome: Outcome,
    /// The interfaces that refused the call something not granted.
    pub refused: Vec<&'static str>,
}

impl Sandbox {
    /// Load `path` through the normal pipeline under `policy`.
    pub async fn open(path: &Path, policy: &Policy) -> anyhow::Result<Self> {
        let scratch = tempfile::Builder::new().prefix("guestward-fuzz-").tempdir()?;
        let root = scratch.path().join("root");
        std::fs::create_dir(&root)?;
        let interfaces = scratch.path().join("interfaces.json");
        std::fs::write(&interfaces, INTERFACES)?;
        let mut capabilities = Capabilities::new(
            Arc::new(Root::open(&root)?.with_interfaces_file(Some(interfaces))),
            None,
            None,
        );
        capabilities.xenstore = Xenstore::from_data(BTreeMap::new());
        let runtime = Runtime::new(&RuntimeOptions::for_policy(policy), capabilities)?;
        let source =
            ComponentSource::read(path).map_err(|error| anyhow::anyhow!("cannot read {}: {error}", path.display()))?;
        let component = runtime.load_bytes(&source, policy).await?;
        runtime.capabilities().agent.set_commands(component.info.names.clone());
        Ok(Self {
            runtime,
            component,
            scratch,
            root,
        })
    }

    pub fn component(&self) -> &LoadedComponent {
        &self.component
    }

    /// Where the scratch machine lives (for messages).
    pub fn scratch_dir(&self) -> &Path {
        self.scratch.path()
    }

    /// Run `input` as `command` on a scratch machine holding exactly its
    /// files and XenStore keys.
    pub async fn run(&self, input: &FuzzInput, command: &str) -> io::Result<Execution> {
        self.prepare(input)?;
        let request = request_text(command, &input.value);
        let not_run = |reply| CallReport {
            reply,
            outcome: Outcome::Replied,
            refused: Vec::new(),
        };
        let (command, report) = match nova::parse(request.as_bytes()) {
            Ok(request) if self.component.info.names.contains(&request.name) => {
                let report = self
                    .runtime
                    .call_reported(&self.component, &request.name, request.value.get(), "fuzz")
                    .await;
                (Some(request.name), report)
            }
            Ok(request) => (None, not_run(nova::unknown_command(&request.name))),
            Err(reply) => (None, not_run(reply)),
        };
        Ok(Execution {
            command,
            encoded: nova::encode(&report.reply),
            reply: report.reply,
            outcome: report.outcome,
            refused: report.refused,
        })
    }

    /// Empty the scratch root, then write `input`'s files and keys.
    fn prepare(&self, input: &FuzzInput) -> io::Result<()> {
        for entry in std::fs::read_dir(&self.root)? {
            let path = entry?.path();
            if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
        for (path, data) in &input.files {
            // A path that cannot be made (a file where a directory should
            // be, `..`) is an input the machine cannot hold: skip it.
            let Some(relative) = relative_path(path) else { continue };
            let target = self.root.join(relative);
            if let Some(parent) = target.parent()
                && std::fs::create_dir_all(parent).is_err()
            {
                continue;
            }
            let _ = std::fs::write(&target, data.to_bytes());
        }
        self.runtime
            .capabilities()
            .xenstore
            .replace_data(input.xenstore.clone());
        Ok(())
    }
}

/// `path` below the root, without `..` or empty parts.
fn relative_path(path: &str) -> Option<PathBuf> {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    if parts.is_empty() || parts.contains(&"..") {
        return None;
    }
    Some(parts.iter().collect())
}

/// The request an exchange would hand over: `{"name": …, "value": …}`
/// with the value's text as it is (so that text which is not JSON is
/// refused by the protocol, as it would be).
pub fn request_text(command: &str, value: &str) -> String {
    format!(
        "{{\"name\": {}, \"value\": {value}}}",
        serde_json::Value::String(command.to_owned())
    )
}

/// Whether `encoded` is a protocol reply that says what `reply` says.
pub fn is_valid_reply(encoded: &str, reply: &Reply) -> bool {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Wire {
        message: String,
        returncode: String,
    }
    match serde_json::from_str::<Wire>(encoded) {
        Ok(wire) => wire.message == reply.message && wire.returncode == reply.code && encoded.is_ascii(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_paths_stay_below_the_root() {
        assert_eq!(relative_path("/etc/shadow"), Some(PathBuf::from("etc/shadow")));
        assert_eq!(relative_path("/root/.ssh//x"), Some(PathBuf::from("root/.ssh/x")));
        assert_eq!(relative_path("/etc/../../x"), None);
        assert_eq!(relative_path("/"), None);
    }

    #[test]
    fn requests_carry_the_value_text_as_it_is() {
        assert_eq!(
            request_text("version", "\"agent\""),
            r#"{"name": "version", "value": "agent"}"#
        );
        assert!(nova::parse(request_text("x", "{").as_bytes()).is_err());
    }

    #[test]
    fn a_reply_is_valid_when_it_decodes_to_itself() {
        let reply = Reply::new("0", "é \"quoted\"\n");
        assert!(is_valid_reply(&nova::encode(&reply), &reply));
        assert!(!is_valid_reply("{\"message\": \"a\"}", &reply));
        assert!(!is_valid_reply(&nova::encode(&Reply::ok("other")), &reply));
    }
}
