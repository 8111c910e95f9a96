//! A loaded command component: compiled, its imports checked against its
//! grants, pre-instantiated, and asked what it answers.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::CallContext;
use super::bindings::CommandPre;
use crate::capability::Grants;
use crate::policy::Limits;
use crate::trust::{Provenance, TrustError};

/// What a component said about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ComponentInfo {
    pub names: Vec<String>,
    pub version: String,
    pub summary: String,
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

/// Why a component was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a valid component: {reason}")]
    Invalid { path: PathBuf, reason: String },
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
            .filter_map(|import| import.strip_prefix("guestward:command/"))
            .map(|interface| interface.split('@').next().unwrap_or(interface))
            .filter(|interface| GRANTED_BY_POLICY.contains(interface))
            .collect();
        if needs.is_empty() {
            writeln!(f, "needs      nothing beyond the always-granted interfaces")?;
        } else {
            writeln!(f, "needs      policy grants for: {}", needs.join(", "))?;
        }
        match &self.refusal {
            None => writeln!(f, "policy     {}: would load", self.policy),
            Some(reason) => writeln!(f, "policy     {}: would refuse: {reason}", self.policy),
        }
    }
}

/// Host interfaces that a policy entry must grant (the others always are).
const GRANTED_BY_POLICY: &[&str] = &["files", "xenstore", "system", "download", "update"];

fn import_kind(import: &str) -> &'static str {
    match import.strip_prefix("guestward:command/") {
        Some(interface) if GRANTED_BY_POLICY.iter().any(|granted| interface.starts_with(granted)) => {
            "granted by policy"
        }
        Some(interface) if interface.starts_with("types@") => "type definitions",
        Some(_) => "always granted",
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

/// SHA-256 of the file at `path`, hex, read in small pieces: loading from
/// a warm cache never holds a whole component in memory (a freed buffer of
/// hundreds of KiB raises glibc's mmap threshold, and the daemon's heap
/// then keeps such buffers resident for its whole life).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// The bytes of the component at `path`, which must still hash to
/// `sha256` (the hash its trust was checked on).
pub fn read_verified(path: &Path, sha256: &str) -> std::io::Result<Vec<u8>> {
    let wasm = std::fs::read(path)?;
    if sha256_hex(&wasm) != sha256 {
        return Err(std::io::Error::other(format!(
            "{} changed while it was being loaded",
            path.display()
        )));
    }
    Ok(wasm)
}

/// The interface holding only the types of the exports.
const TYPES_INTERFACE: &str = "guestward:command/types";

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
    if interface.starts_with("guestward:command/") {
        if !version.starts_with("1.") {
            return Err("this host does not offer (it serves guestward:command@1.x)".to_owned());
        }
        if interface == TYPES_INTERFACE {
            return Ok(()); // type definitions only
        }
        return match grants.allows(interface) {
            Some(true) => Ok(()),
            Some(false) => Err(format!("its policy does not grant{}", policy_hint(interface))),
            None => Err("this host does not offer".to_owned()),
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

fn policy_hint(interface: &str) -> String {
    match interface.rsplit('/').next() {
        Some(key @ ("files" | "xenstore")) => format!(" (its policy entry has no `{key}` grant)"),
        Some("system") => " (its policy entry has neither `programs` nor `hostname = true`)".to_owned(),
        Some("download") => " (its policy entry has no `download` grant)".to_owned(),
        Some("update") => " (its policy entry has no `update = true`)".to_owned(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    #[test]
    fn a_file_is_hashed_as_its_bytes_and_a_change_after_hashing_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.wasm");
        let bytes: Vec<u8> = (0..200_000u32).map(|n| (n % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let sha256 = sha256_file(&path).unwrap();
        assert_eq!(sha256, sha256_hex(&bytes));
        assert_eq!(read_verified(&path, &sha256).unwrap(), bytes);
        std::fs::write(&path, b"replaced").unwrap();
        let error = read_verified(&path, &sha256).unwrap_err();
        assert!(
            error.to_string().contains("changed while it was being loaded"),
            "{error}"
        );
    }

    fn grants_for(text: &str) -> Grants {
        Grants::from_policy(&Policy::parse(text, "test").unwrap().component("c"))
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
        assert!(check_import("wasi:sockets/tcp@0.2.6", &grants).is_err());
        assert!(check_import("guestward:command/files@2.0.0", &grants).is_err());
        assert!(check_import("evil:thing/x", &grants).is_err());
    }

    #[test]
    fn granted_interfaces_pass() {
        let grants =
            grants_for("[component.c]\nfiles = [{ path = \"/etc\", access = \"read\" }]\nxenstore = [\"vm-data\"]\n");
        assert_eq!(check_import("guestward:command/files@1.0.0", &grants), Ok(()));
        assert_eq!(check_import("guestward:command/xenstore@1.0.0", &grants), Ok(()));
    }
}
