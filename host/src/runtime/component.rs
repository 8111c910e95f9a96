//! A loaded command component: compiled, its imports checked against its
//! grants, pre-instantiated, and asked what it answers.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::CallContext;
use crate::capability::{ComponentPolicy, Grants};
use crate::policy::Limits;
use crate::trust::Provenance;
use crate::wit::CommandPre;

/// What a component said about itself.
#[derive(Debug, Clone)]
pub struct ComponentInfo {
    pub names: Vec<String>,
    pub version: String,
    pub summary: String,
    /// The policy entry it asks for, as it wrote it (TOML).
    pub asks: String,
    /// The same, checked as a policy entry; an error says why it is not a
    /// valid one. (Asks grant nothing, so a bad one refuses nothing: it is
    /// reported.)
    pub asked: Result<Grants, String>,
}

/// A component ready to be called.
pub struct LoadedComponent {
    /// The file stem (`version` for `version.wasm`): the policy's key.
    pub name: String,
    pub path: PathBuf,
    /// SHA-256 of the `.wasm`, hex.
    pub sha256: String,
    /// Why it is trusted (`None` when loaded without a trust check).
    pub provenance: Option<Provenance>,
    pub info: ComponentInfo,
    /// Every import, as the component names it (`guestward:command/files@1.0.0`).
    pub imports: Vec<String>,
    pub grants: Grants,
    pub limits: Limits,
    pub(super) pre: CommandPre<CallContext>,
}

impl std::fmt::Debug for LoadedComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedComponent")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// A component to load: where it is, its SHA-256 (computed once, and what
/// its trust is checked on), and where its bytes and signature come from.
#[derive(Debug, Clone)]
pub struct ComponentSource {
    /// Where the component is, as errors name it; its stem is its name.
    pub path: PathBuf,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
    /// Where its signature comes from.
    pub signature: SignatureSource,
    /// The bytes, when they came in memory (an update); a file's are read
    /// only if the component must be compiled.
    bytes: Option<Vec<u8>>,
}

/// Where a component's signature is.
#[derive(Debug, Clone)]
pub enum SignatureSource {
    /// The `<path>.sig` sidecar, if any (and the operator's unsigned
    /// directories apply).
    Sidecar,
    /// Handed over with the component (an update); none means unsigned,
    /// which only a pinned built-in may be.
    Given(Option<String>),
}

impl ComponentSource {
    /// The component file at `path`, hashed in small pieces: loading from a
    /// warm cache never holds a whole component in memory (a freed buffer
    /// of hundreds of KiB raises glibc's mmap threshold, and the daemon's
    /// heap then keeps such buffers resident for its whole life).
    pub fn read(path: &Path) -> std::io::Result<Self> {
        let mut hasher = Sha256::new();
        std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
        Ok(Self {
            path: path.to_owned(),
            sha256: hex::encode(hasher.finalize()),
            signature: SignatureSource::Sidecar,
            bytes: None,
        })
    }

    /// A component handed over in memory, to be known as `path`.
    pub fn new(path: PathBuf, wasm: Vec<u8>, signature: SignatureSource) -> Self {
        Self {
            path,
            sha256: sha256_hex(&wasm),
            signature,
            bytes: Some(wasm),
        }
    }

    /// The component's name: the file stem.
    pub fn name(&self) -> String {
        component_name(&self.path)
    }

    /// The bytes: those handed over, or the file's, which must still hash
    /// to [`sha256`](Self::sha256) (what its trust was checked on).
    pub fn wasm(&self) -> std::io::Result<Cow<'_, [u8]>> {
        if let Some(bytes) = &self.bytes {
            return Ok(Cow::Borrowed(bytes));
        }
        let wasm = std::fs::read(&self.path)?;
        if sha256_hex(&wasm) != self.sha256 {
            return Err(std::io::Error::other(format!(
                "{} changed while it was being loaded",
                self.path.display()
            )));
        }
        Ok(Cow::Owned(wasm))
    }
}

/// What a component answered to `info()`, as the cache keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InfoAnswer {
    pub names: Vec<String>,
    pub version: String,
    pub summary: String,
    #[serde(default)]
    pub asks: String,
}

/// What `guestward inspect` shows.
#[derive(Debug)]
pub struct Inspection {
    pub name: String,
    pub sha256: String,
    pub info: Result<ComponentInfo, String>,
    pub imports: Vec<String>,
    /// Why the policy would refuse it, if it would.
    pub refusal: Option<String>,
    /// Where the policy came from.
    pub policy: String,
    /// The policy's entry for it.
    pub entry: ComponentPolicy,
}

impl std::fmt::Display for Inspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "component  {}", self.name)?;
        writeln!(f, "sha256     {}", self.sha256)?;
        match &self.info {
            Ok(info) => {
                writeln!(f, "names      {}", info.names.join(", "))?;
                writeln!(f, "version    {}", info.version)?;
                writeln!(f, "summary    {}", info.summary)?;
            }
            Err(reason) => writeln!(f, "info       failed: {reason}")?,
        }
        for (index, import) in self.imports.iter().enumerate() {
            let label = if index == 0 { "imports" } else { "" };
            writeln!(f, "{label:<10} {import} ({})", import_kind(import))?;
        }
        let needs: Vec<&str> = self
            .imports
            .iter()
            .filter_map(|import| interface_name(import))
            .filter(|interface| {
                matches!(
                    Grants::default().allows(interface),
                    Err(crate::capability::Unavailable::NotGranted(_))
                )
            })
            .collect();
        if needs.is_empty() {
            writeln!(f, "needs      nothing beyond the always-granted interfaces")?;
        } else {
            writeln!(f, "needs      policy grants for: {}", needs.join(", "))?;
        }
        match &self.refusal {
            None => writeln!(f, "policy     {}: would load", self.policy)?,
            Some(reason) => writeln!(f, "policy     {}: would refuse: {reason}", self.policy)?,
        }
        if let Ok(info) = &self.info {
            match &info.asked {
                Ok(asked) => {
                    let comparison = self.entry.grants.compare(asked);
                    for line in &comparison.more {
                        writeln!(f, "           grants more than asked: {line}")?;
                    }
                    for line in &comparison.less {
                        writeln!(f, "           grants less than asked: {line}")?;
                    }
                }
                Err(reason) => writeln!(f, "asks       {reason}")?,
            }
            writeln!(f, "\n# The policy entry it asks for:\n[component.{}]", self.name)?;
            let asks = info.asks.trim();
            if !asks.is_empty() {
                writeln!(f, "{asks}")?;
            }
        }
        Ok(())
    }
}

/// The interface of a `guestward:command` import, without package or
/// version (`files` for `guestward:command/files@1.0.0`).
pub fn interface_name(import: &str) -> Option<&str> {
    let interface = import.strip_prefix("guestward:command/")?;
    Some(interface.split('@').next().unwrap_or(interface))
}

fn import_kind(import: &str) -> &'static str {
    match interface_name(import) {
        Some("types") => "type definitions",
        Some(interface) => match Grants::default().allows(interface) {
            Ok(()) => "always granted",
            Err(crate::capability::Unavailable::NotGranted(_)) => "granted by policy",
            Err(crate::capability::Unavailable::Unknown) => "unknown",
        },
        None if import.starts_with("wasi:") => "WASI",
        None => "unknown",
    }
}

/// The component name of a `.wasm` path: its file stem.
pub fn component_name(path: &Path) -> String {
    path.file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// SHA-256 of the component bytes, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_hashed_as_its_bytes_and_a_change_after_hashing_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.wasm");
        let bytes: Vec<u8> = (0..200_000u32).map(|n| (n % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let source = ComponentSource::read(&path).unwrap();
        assert_eq!(source.sha256, sha256_hex(&bytes));
        assert_eq!(source.wasm().unwrap().as_ref(), &bytes[..]);
        std::fs::write(&path, b"replaced").unwrap();
        let error = source.wasm().unwrap_err();
        assert!(
            error.to_string().contains("changed while it was being loaded"),
            "{error}"
        );
    }
}
