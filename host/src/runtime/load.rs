//! One way in for every component, whoever loads it (`serve`, an update,
//! `inspect`, `policy check`): its bytes are hashed once, checked against
//! the trust store, compiled (or taken from the cache), its imports checked
//! against its grants, pre-instantiated, and asked what it answers.

use std::path::{Path, PathBuf};

use super::component::{
    ComponentInfo, ComponentSource, InfoAnswer, Inspection, LoadedComponent, SignatureSource, interface_name,
};
use super::{EPOCH_TICK, Runtime, call};
use crate::capability::{ComponentPolicy, Grants, Policy, Unavailable};
use crate::protocol::Protocol;
use crate::trust::TrustError;
use crate::wit::CommandPre;

/// Why a component was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a WebAssembly file (it does not start with \\0asm)")]
    NotWasm { path: PathBuf },
    #[error(
        "{path}: a core WebAssembly module, not a component: build it for wasm32-wasip2 (cargo build --target wasm32-wasip2)"
    )]
    CoreModule { path: PathBuf },
    #[error("{path}: not a valid component: {source}")]
    Invalid {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{path}: imports {import}, which {reason}")]
    Refused {
        path: PathBuf,
        import: String,
        reason: String,
    },
    #[error("{path}: info() failed: {reason}")]
    Info { path: PathBuf, reason: String },
    #[error(transparent)]
    Untrusted(#[from] TrustError),
}

impl LoadError {
    fn invalid(path: &Path, error: wasmtime::Error) -> Self {
        Self::Invalid {
            path: path.to_owned(),
            source: error.into(),
        }
    }
}

/// A compiled component before any policy decision.
struct Examined {
    component: LoadedComponent,
    /// The first import the policy refuses, and why.
    refusal: Option<(String, String)>,
}

impl Runtime {
    /// Read every `.wasm` of `dir`, in name order (each read and hashed
    /// once, for both the cache check and the load).
    pub fn read_dir(dir: &Path) -> anyhow::Result<Vec<ComponentSource>> {
        std::fs::read_dir(dir)
            .map_err(|error| anyhow::anyhow!("cannot read commands directory {}: {error}", dir.display()))?;
        let mut read = Vec::new();
        for path in wasm_files(dir) {
            match ComponentSource::read(&path) {
                Ok(bytes) => read.push(bytes),
                Err(source) => tracing::error!(error = %LoadError::Read { path, source }, "refused command component"),
            }
        }
        Ok(read)
    }

    /// True when some of `components` has no artifact in the cache yet (a
    /// first boot): the daemon then compiles in a child process.
    pub fn cache_is_cold(&self, components: &[ComponentSource]) -> bool {
        self.cache.is_on() && components.iter().any(|bytes| !self.cache.has_artifact(&bytes.sha256))
    }

    /// Compile `source` into the cache unless a valid artifact is there
    /// already, and cache its `info()` answer (`guestward compile`): the
    /// daemon then starts without running it. `info()` runs with no
    /// grants; if it fails, the daemon asks again at load and refuses the
    /// component then.
    pub async fn compile_into_cache(&self, source: &ComponentSource, policy: &Policy) -> anyhow::Result<()> {
        anyhow::ensure!(self.cache.is_on(), "no usable cache directory");
        let examined = self.examine(source, &policy.component(&source.name()))?;
        if self.cache.info(&source.sha256).is_none()
            && let Ok(answer) = self.ask_info(&examined.component).await
        {
            self.cache.store_info(&source.sha256, &answer);
        }
        Ok(())
    }

    /// Load each of `components`; those that cannot be loaded are refused
    /// with an error log line and skipped.
    pub async fn load_all(&self, components: Vec<ComponentSource>, policy: &Policy) -> Vec<LoadedComponent> {
        let mut loaded = Vec::new();
        for bytes in components {
            match self.load_bytes(&bytes, policy).await {
                Ok(component) => {
                    tracing::info!(
                        component = component.name,
                        names = ?component.info.names,
                        version = component.info.version,
                        sha256 = component.sha256,
                        provenance = component.provenance.as_ref().map(ToString::to_string),
                        "loaded command component"
                    );
                    loaded.push(component);
                }
                Err(error) if is_off_by_default(&bytes, &error, policy) => tracing::info!(
                    component = bytes.name(),
                    "command component off: the policy does not grant what it needs ({error})"
                ),
                Err(error) => tracing::error!(%error, "refused command component"),
            }
        }
        loaded
    }

    /// Load one component for calls: trusted, compiled, every import
    /// granted by its policy entry, and its `info` answered.
    pub async fn load_bytes(&self, bytes: &ComponentSource, policy: &Policy) -> Result<LoadedComponent, LoadError> {
        let provenance = match &self.trust {
            None => None,
            Some(trust) => Some(match &bytes.signature {
                SignatureSource::Sidecar => trust.check(&bytes.path, &bytes.sha256)?,
                SignatureSource::Given(signature) => {
                    trust.check_given(&bytes.path, &bytes.sha256, signature.as_deref())?
                }
            }),
        };
        let examined = self.examine(bytes, &policy.component(&bytes.name()))?;
        if let Some((import, reason)) = examined.refusal {
            return Err(LoadError::Refused {
                path: bytes.path.clone(),
                import,
                reason,
            });
        }
        let mut component = examined.component;
        component.provenance = provenance;
        component.info = self.known_info(&component).await.map_err(|reason| LoadError::Info {
            path: bytes.path.clone(),
            reason,
        })?;
        Ok(component)
    }

    /// What a component answers, imports and asks for, and whether
    /// `policy` would let it load, without loading it for calls and without
    /// a trust check.
    pub async fn inspect(&self, bytes: &ComponentSource, policy: &Policy) -> Result<Inspection, LoadError> {
        let entry = policy.component(&bytes.name());
        let examined = self.examine(bytes, &entry)?;
        let component = examined.component;
        Ok(Inspection {
            name: component.name.clone(),
            sha256: component.sha256.clone(),
            info: self.info(&component).await,
            imports: component.imports.clone(),
            refusal: examined
                .refusal
                .map(|(import, reason)| format!("imports {import}, which {reason}")),
            policy: policy.origin().to_owned(),
            entry,
        })
    }

    /// Compile (or take from the cache), list and check the imports, and
    /// pre-instantiate.
    fn examine(&self, bytes: &ComponentSource, entry: &ComponentPolicy) -> Result<Examined, LoadError> {
        let compiled = self.cache.load_or_compile(&self.engine, bytes).map_err(|error| {
            // Say what the file is when it is not a component at all.
            match check_format(bytes) {
                Err(not_a_component) => not_a_component,
                Ok(()) => LoadError::invalid(&bytes.path, error),
            }
        })?;
        let imports: Vec<String> = compiled
            .component_type()
            .imports(&self.engine)
            .map(|(import, _)| import.to_owned())
            .collect();
        let refusal = imports.iter().find_map(|import| {
            check_import(import, &entry.grants)
                .err()
                .map(|reason| (import.clone(), reason))
        });
        let pre = self
            .linker
            .instantiate_pre(&compiled)
            .and_then(CommandPre::new)
            .map_err(|error| LoadError::invalid(&bytes.path, error))?;
        let component = LoadedComponent {
            name: bytes.name(),
            path: bytes.path.clone(),
            sha256: bytes.sha256.clone(),
            provenance: None,
            info: ComponentInfo {
                names: Vec::new(),
                version: String::new(),
                summary: String::new(),
                asks: String::new(),
                asked: Ok(Grants::default()),
            },
            imports,
            grants: entry.grants.clone(),
            limits: entry.limits,
            pre,
        };
        Ok(Examined { component, refusal })
    }

    /// What a component answers to `info()`: from the cache when it was
    /// asked before (a component answers the same for the same bytes, and
    /// a warm start then instantiates nothing: each instantiation left its
    /// code and memory resident for the daemon's life, about 2 MiB for the
    /// built-ins), else asked and cached.
    async fn known_info(&self, component: &LoadedComponent) -> Result<ComponentInfo, String> {
        let answer = match self.cache.info(&component.sha256) {
            Some(answer) if check_names(&answer.names).is_ok() => {
                tracing::debug!(component = component.name, "info() answer taken from the cache");
                answer
            }
            _ => {
                let answer = self.ask_info(component).await?;
                self.cache.store_info(&component.sha256, &answer);
                answer
            }
        };
        Ok(component_info(&component.name, answer))
    }

    /// Ask a component (never the cache) for its names, version, summary
    /// and asks.
    async fn info(&self, component: &LoadedComponent) -> Result<ComponentInfo, String> {
        let answer = self.ask_info(component).await?;
        Ok(component_info(&component.name, answer))
    }

    /// Run `info()`. It runs with no grants at all: loading a component (at
    /// start, for `policy check`, when staging an update) must never let
    /// its code act on the machine.
    async fn ask_info(&self, component: &LoadedComponent) -> Result<InfoAnswer, String> {
        let mut store = self.new_store(component, &Grants::default(), "", "", &Default::default());
        let outcome = tokio::time::timeout(component.limits.deadline + EPOCH_TICK * 10, async {
            let instance = component.pre.instantiate_async(&mut store).await?;
            instance.call_info(&mut store).await
        })
        .await;
        let info = match outcome {
            Ok(Ok(info)) => info,
            Ok(Err(error)) => return Err(call::failure_text(&error, store.data(), &component.limits)),
            Err(_) => return Err("did not answer within its deadline".to_owned()),
        };
        check_names(&info.names)?;
        Ok(InfoAnswer {
            names: info.names,
            version: info.version,
            summary: info.summary,
            asks: info.asks,
        })
    }
}

/// What every component must answer to `info()`: names, each plain.
fn check_names(names: &[String]) -> Result<(), String> {
    if names.is_empty() {
        return Err("it answers no command names".to_owned());
    }
    if let Some(bad) = names.iter().find(|name| !valid_command_name(name)) {
        return Err(format!("{bad:?} is not a valid command name"));
    }
    Ok(())
}

/// A built-in component the policy leaves off (fsfreeze): no entry names
/// it, and what it imports is not granted without one. Not an error: the
/// built-in policy does this on purpose, and the operator turns it on with
/// a drop-in.
pub fn is_off_by_default(bytes: &ComponentSource, error: &LoadError, policy: &Policy) -> bool {
    let name = bytes.name();
    let builtin = crate::trust::BUILTIN_PINS
        .iter()
        .any(|(pinned, sha256)| *pinned == name && *sha256 == bytes.sha256);
    builtin && !policy.names(&name) && matches!(error, LoadError::Refused { .. })
}

/// An `info()` answer with its asks checked as a policy entry (a bad one
/// is reported, not refused: asks grant nothing).
fn component_info(name: &str, answer: InfoAnswer) -> ComponentInfo {
    let asked = parse_asks(name, &answer.asks);
    if let Err(reason) = &asked {
        tracing::warn!(component = name, "{reason}");
    }
    ComponentInfo {
        names: answer.names,
        version: answer.version,
        summary: answer.summary,
        asks: answer.asks,
        asked,
    }
}

/// A component, not a core module or another file: the preamble is
/// `\0asm`, then a version and a layer (1 for components).
fn check_format(source: &ComponentSource) -> Result<(), LoadError> {
    let path = source.path.clone();
    let Ok(wasm) = source.wasm() else {
        return Ok(()); // unreadable: the compiler's error says so
    };
    match wasm.get(..8) {
        Some([0, b'a', b's', b'm', _, _, 0, 0]) => Err(LoadError::CoreModule { path }),
        Some([0, b'a', b's', b'm', ..]) => Ok(()),
        _ => Err(LoadError::NotWasm { path }),
    }
}

/// The grants a component asks for, checked as a policy entry would be.
fn parse_asks(name: &str, asks: &str) -> Result<Grants, String> {
    let text = format!("[component.{name}]\n{asks}");
    let asked = Policy::parse(&text, "its asks").map_err(|mut error| {
        // Count lines of the asks, not of the entry made around them.
        error.line = error.line.saturating_sub(1).max(1);
        format!("it asks for an invalid policy entry: {error}")
    })?;
    Ok(asked.component(name).grants)
}

/// The `.wasm` files of `dir`, in name order.
pub fn wasm_files(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "wasm") && path.is_file())
        .collect();
    paths.sort();
    paths
}

/// A plain name, or one with a protocol's prefix (`qga:guest-ping`).
fn valid_command_name(name: &str) -> bool {
    let (_, plain) = Protocol::of(name);
    !plain.is_empty()
        && name.len() <= 64
        && plain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// WASI interfaces a command may import. None of them reaches outside the
/// sandbox as the host configures WASI (no preopened directories, no
/// environment, no arguments, no network, stdout and stderr captured):
/// they give clocks, randomness and the plumbing Rust's std expects.
const WASI_ALLOWED: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

/// Check one import against the component's grants: `Err(reason)` refuses
/// the component.
pub fn check_import(import: &str, grants: &Grants) -> Result<(), String> {
    let (interface, version) = import.split_once('@').unwrap_or((import, ""));
    if let Some(name) = interface_name(import) {
        if !version.starts_with("1.") {
            return Err("this host does not offer (it serves guestward:command@1.x)".to_owned());
        }
        if name == "types" {
            return Ok(()); // type definitions only
        }
        return match grants.allows(name) {
            Ok(()) => Ok(()),
            Err(Unavailable::NotGranted(how)) => Err(format!("its policy does not grant ({how})")),
            Err(Unavailable::Unknown) => Err("this host does not offer".to_owned()),
        };
    }
    if WASI_ALLOWED.contains(&interface) {
        return Ok(());
    }
    if interface.starts_with("wasi:") {
        return Err("commands may not use (network, HTTP and other WASI interfaces are never granted)".to_owned());
    }
    Err("this host does not offer".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants_for(text: &str) -> Grants {
        Policy::parse(text, "test").unwrap().component("c").grants
    }

    #[test]
    fn always_granted_interfaces_pass() {
        let grants = grants_for("");
        for import in [
            "guestward:command/types@1.0.0",
            "guestward:command/log@1.0.0",
            "guestward:command/state@1.0.0",
            "guestward:command/agent@1.2.0",
        ] {
            assert_eq!(check_import(import, &grants), Ok(()), "{import}");
        }
        assert_eq!(check_import("wasi:random/random@0.2.6", &grants), Ok(()));
    }

    #[test]
    fn ungranted_interfaces_are_refused_with_a_reason() {
        let grants = grants_for("");
        let reason = check_import("guestward:command/files@1.0.0", &grants).unwrap_err();
        assert!(reason.contains("`files` grant"), "{reason}");
        let reason = check_import("guestward:command/network@1.0.0", &grants).unwrap_err();
        assert!(reason.contains("`network = true`"), "{reason}");
        assert!(check_import("wasi:sockets/tcp@0.2.6", &grants).is_err());
        assert!(check_import("guestward:command/files@2.0.0", &grants).is_err());
        assert!(check_import("guestward:command/system@1.0.0", &grants).is_err());
        assert!(check_import("evil:thing/x", &grants).is_err());
    }

    #[test]
    fn granted_interfaces_pass() {
        let grants =
            grants_for("[component.c]\nfiles = [{ path = \"/etc\", access = \"read\" }]\nxenstore = [\"vm-data\"]\n");
        assert_eq!(check_import("guestward:command/files@1.0.0", &grants), Ok(()));
        assert_eq!(check_import("guestward:command/xenstore@1.0.0", &grants), Ok(()));
    }

    #[test]
    fn a_core_module_or_another_file_is_named_for_what_it_is() {
        let check = |wasm: &[u8]| {
            let bytes = ComponentSource::new("x.wasm".into(), wasm.to_vec(), SignatureSource::Sidecar);
            check_format(&bytes).map_err(|error| error.to_string())
        };
        let core = check(b"\0asm\x01\0\0\0").unwrap_err();
        assert!(
            core.contains("core WebAssembly module") && core.contains("wasm32-wasip2"),
            "{core}"
        );
        let text = check(b"#!/bin/sh\n").unwrap_err();
        assert!(text.contains("not a WebAssembly file"), "{text}");
        assert!(check(b"\0asm").unwrap_err().contains("not a WebAssembly file"));
        assert_eq!(check(b"\0asm\x0d\0\x01\0"), Ok(()));
    }

    #[test]
    fn command_names_are_plain() {
        assert!(valid_command_name("file_inject"));
        assert!(valid_command_name("version"));
        assert!(!valid_command_name("a b"));
        assert!(!valid_command_name(""));
    }

    #[test]
    fn asks_are_checked_as_a_policy_entry_and_errors_count_their_own_lines() {
        let asked = parse_asks("c", "network = true\nprograms = [[\"/sbin/ifup\", \"*\"]]\n").unwrap();
        assert_eq!(asked.allows("network"), Ok(()));
        assert!(parse_asks("c", "").unwrap().allows("files").is_err());
        let error = parse_asks("c", "network = true\nprograms = [[\"ifup\"]]\n").unwrap_err();
        assert!(error.contains("its asks:2: component.c.programs"), "{error}");
    }
}
