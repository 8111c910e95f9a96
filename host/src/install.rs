//! Installing verified components into the commands directory while the
//! daemon runs (what `agentupdate` asks for through the `update`
//! interface).
//!
//! All or nothing: every component is loaded from memory through the same
//! pipeline as at start-up (the trust check: a signature by a trusted key or
//! a pinned built-in, never an unsigned directory; the import check against
//! the policy). Only when every one loads, and the resulting set of commands
//! has no name claimed twice, are they written to a staging directory next
//! to the commands directory, renamed into it and the registry swapped:
//! requests already routed finish with the components they started with,
//! new ones go to the new components. Any failure leaves the commands
//! directory as it was.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::capability::Policy;
use crate::capability::update::{ComponentFile, InstallError, InstallRequest};
use crate::dispatch::Dispatcher;
use crate::runtime::{ComponentSource, Runtime, SignatureSource};
use crate::trust;

/// The installer: one task, so installs never interleave.
pub struct InstallService {
    pub runtime: Arc<Runtime>,
    pub dispatcher: Arc<Dispatcher>,
    pub commands: PathBuf,
    pub policy: Policy,
}

impl InstallService {
    /// Serve install requests until every sender is gone.
    pub async fn run(self, mut requests: mpsc::Receiver<InstallRequest>) {
        while let Some(request) = requests.recv().await {
            let outcome = self.install(request.components).await;
            match &outcome {
                Ok(commands) => tracing::info!(commands = commands.join(","), "installed components"),
                Err(error) => tracing::warn!(%error, "refused an install; nothing changed"),
            }
            let _ = request.reply.send(outcome);
        }
    }

    async fn install(&self, components: Vec<ComponentFile>) -> Result<Vec<String>, InstallError> {
        if components.is_empty() {
            return Err(InstallError::Refused("the update holds no components".to_owned()));
        }
        for component in &components {
            check_file_name(&component.name)?;
        }
        // Load every component as at start-up (trust, imports, info), from
        // memory: errors name the component's file, as the bundle does.
        let mut staged = Vec::new();
        for component in &components {
            let signature =
                (!component.signature.is_empty()).then(|| String::from_utf8_lossy(&component.signature).into_owned());
            let bytes = ComponentSource::new(
                PathBuf::from(&component.name),
                component.wasm.clone(),
                SignatureSource::Given(signature),
            );
            let mut loaded = self
                .runtime
                .load_bytes(&bytes, &self.policy)
                .await
                .map_err(|error| InstallError::Refused(error.to_string()))?;
            // Where it will be once committed.
            loaded.path = self.commands.join(&component.name);
            staged.push(loaded);
        }
        // The loaded components, the staged ones replacing those of the
        // same name; an error if two would claim one command.
        let registry = self
            .dispatcher
            .registry()
            .with_replaced(staged)
            .map_err(|error| InstallError::Refused(error.to_string()))?;
        let staging = Staging::create(&self.commands)
            .map_err(|error| InstallError::Failed(format!("cannot stage the update: {error}")))?;
        for component in &components {
            staging.write(component).map_err(InstallError::Failed)?;
        }
        staging
            .commit(&self.commands, &components)
            .map_err(InstallError::Failed)?;
        let names = registry.names();
        self.dispatcher.replace_registry(registry);
        Ok(names)
    }
}

/// `<name>.wasm`, the name plain.
fn check_file_name(name: &str) -> Result<(), InstallError> {
    let valid = name.strip_suffix(".wasm").is_some_and(|stem| {
        !stem.is_empty()
            && stem
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    });
    if valid {
        Ok(())
    } else {
        Err(InstallError::Refused(format!(
            "{name:?} is not a component file name (<name>.wasm)"
        )))
    }
}

/// A private directory next to the commands directory (same file system,
/// so that moving files from it is an atomic rename). Removed when dropped.
struct Staging {
    dir: PathBuf,
}

static STAGING_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Staging {
    fn create(commands: &Path) -> std::io::Result<Self> {
        let name = format!(
            ".staging-{}-{}",
            std::process::id(),
            STAGING_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = commands.join(name);
        std::fs::create_dir(&dir)?;
        Ok(Self { dir })
    }

    fn write(&self, component: &ComponentFile) -> Result<(), String> {
        let path = self.dir.join(&component.name);
        let write = |path: &Path, bytes: &[u8]| {
            std::fs::write(path, bytes).map_err(|error| format!("cannot stage {}: {error}", path.display()))
        };
        write(&path, &component.wasm)?;
        // A pinned built-in needs no signature; an empty one is none.
        if component.signature.is_empty() {
            return Ok(());
        }
        write(&trust::signature_path(&path), &component.signature)
    }

    /// Move every staged file into `commands` (signature first, so that a
    /// component is never there with a stale signature), then sync.
    fn commit(&self, commands: &Path, components: &[ComponentFile]) -> Result<(), String> {
        let install = |from: &Path, to: &Path| {
            std::fs::rename(from, to).map_err(|error| format!("cannot install {}: {error}", to.display()))
        };
        for component in components {
            let staged = self.dir.join(&component.name);
            let target = commands.join(&component.name);
            if component.signature.is_empty() {
                // Built-ins are pinned; an old signature would only mislead.
                match std::fs::remove_file(trust::signature_path(&target)) {
                    Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                        return Err(format!(
                            "cannot remove the old signature of {}: {error}",
                            target.display()
                        ));
                    }
                    _ => {}
                }
            } else {
                install(&trust::signature_path(&staged), &trust::signature_path(&target))?;
            }
            install(&staged, &target)?;
        }
        std::fs::File::open(commands)
            .and_then(|dir| dir.sync_all())
            .map_err(|error| format!("cannot sync {}: {error}", commands.display()))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
