//! Compiled components, cached on disk.
//!
//! Compiling a component with Cranelift takes milliseconds to a second;
//! loading a compiled artifact takes well under one. Artifacts are keyed by
//! the SHA-256 of the `.wasm` and by a hash of the engine's settings and
//! wasmtime version, so a changed component or engine never loads a stale
//! artifact. Loading an artifact is trusting it as native code, so the
//! cache only loads files it wrote itself, in a directory only this user can
//! write; anything else is recompiled.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled artifacts live (or nowhere, when caching is off).
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: Option<PathBuf>,
    engine_key: String,
}

impl ArtifactCache {
    /// A cache in `dir`, created (mode 0700) if missing. A directory that
    /// others could write to is refused: caching is then off, with a warning.
    pub fn open(engine: &Engine, dir: Option<&Path>) -> Self {
        let engine_key = engine_key(engine);
        let dir = dir.and_then(|dir| match prepare_dir(dir) {
            Ok(()) => Some(dir.to_owned()),
            Err(reason) => {
                tracing::warn!(dir = %dir.display(), %reason, "not caching compiled components");
                None
            }
        });
        Self { dir, engine_key }
    }

    /// True when artifacts are cached at all.
    pub fn is_on(&self) -> bool {
        self.dir.is_some()
    }

    /// True when an artifact for the component `sha256` is there (whether
    /// it will load is only known by loading it).
    pub fn has_artifact(&self, sha256: &str) -> bool {
        self.artifact_path(sha256).is_some_and(|path| trusted_artifact(&path))
    }

    fn artifact_path(&self, sha256: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{sha256}-{}.cwasm", self.engine_key)))
    }

    /// The compiled component for `wasm` (whose SHA-256 is `sha256`): from
    /// the cache when a valid artifact is there, else compiled (and cached).
    pub fn load_or_compile(&self, engine: &Engine, wasm: &[u8], sha256: &str) -> wasmtime::Result<Component> {
        let Some(path) = self.artifact_path(sha256) else {
            return Component::new(engine, wasm);
        };
        if trusted_artifact(&path) {
            // SAFETY: the artifact was written by this cache (same user,
            // private directory, not writable by others) from a component we
            // compiled with an engine of the same settings and version;
            // deserialize re-checks that compatibility and fails otherwise.
            // Mapped, not read: only the pages a call touches are resident.
            // Every writer (this cache, `guestward compile`) replaces a file
            // by renaming a new one over it, so a mapped artifact is never
            // changed under the daemon.
            #[allow(unsafe_code)]
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok(component),
                Err(error) => tracing::warn!(artifact = %path.display(), %error, "recompiling"),
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Err(error) = component
            .serialize()
            .map_err(std::io::Error::other)
            .and_then(|bytes| write_artifact(&path, &bytes))
        {
            tracing::warn!(artifact = %path.display(), %error, "cannot cache compiled component");
        }
        Ok(component)
    }
}

/// A short stable key for the engine's compilation settings.
fn engine_key(engine: &Engine) -> String {
    struct Sha256Hasher(Sha256);
    impl Hasher for Sha256Hasher {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            0 // unused: the digest is read directly
        }
    }
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..8])
}

fn prepare_dir(dir: &Path) -> Result<(), String> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|error| error.to_string())?;
    let meta = fs::metadata(dir).map_err(|error| error.to_string())?;
    if meta.uid() != rustix::process::geteuid().as_raw() {
        return Err("owned by another user".into());
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!("writable by others (mode {:o})", meta.mode() & 0o777));
    }
    Ok(())
}

fn trusted_artifact(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|meta| {
        meta.is_file() && meta.uid() == rustix::process::geteuid().as_raw() && meta.mode() & 0o077 == 0
    })
}

/// Write to a private temporary file, then rename: readers never see a
/// partial artifact, and concurrent writers do not collide.
fn write_artifact(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = path.with_extension(format!("tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}
