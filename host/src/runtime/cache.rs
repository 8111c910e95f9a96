//! Compiled components, cached on disk.
//!
//! Compiling a component with Cranelift takes milliseconds to a second;
//! loading a compiled artifact takes well under one. Artifacts are keyed by
//! the SHA-256 of the `.wasm` and by a hash of the engine's settings and
//! wasmtime version, so a changed component or engine never loads a stale
//! artifact. Loading an artifact is trusting it as native code, so the
//! cache only loads files it wrote itself, in a directory only this user can
//! write; anything else is recompiled.
//!
//! Beside each artifact the cache keeps what the component's `info()`
//! answered (`.info`, JSON): a start from a warm cache then instantiates
//! nothing, which keeps the idle daemon's memory to what calls touch.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::component::{ComponentSource, InfoAnswer};

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
        self.cache_path(sha256, "cwasm")
    }

    fn cache_path(&self, sha256: &str, extension: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{sha256}-{}.{extension}", self.engine_key)))
    }

    /// What the component `sha256` answered to `info()` when it was loaded
    /// before, if the cache holds it (written by this cache, like artifacts).
    pub fn info(&self, sha256: &str) -> Option<InfoAnswer> {
        let path = self.cache_path(sha256, "info").filter(|path| trusted_artifact(path))?;
        serde_json::from_slice(&fs::read(path).ok()?).ok()
    }

    /// Keep what the component `sha256` answered to `info()`.
    pub fn store_info(&self, sha256: &str, info: &InfoAnswer) {
        let Some(path) = self.cache_path(sha256, "info") else {
            return;
        };
        let written = serde_json::to_vec(info)
            .map_err(std::io::Error::other)
            .and_then(|bytes| write_artifact(&path, &bytes));
        if let Err(error) = written {
            tracing::warn!(path = %path.display(), %error, "cannot cache a component's info");
        }
    }

    /// The compiled `source`: from the cache when a valid artifact is
    /// there, else compiled (and cached). A file's bytes are only read when
    /// it must be compiled.
    pub fn load_or_compile(&self, engine: &Engine, source: &ComponentSource) -> wasmtime::Result<Component> {
        let sha256 = source.sha256.as_str();
        let Some(path) = self.artifact_path(sha256) else {
            return Component::new(engine, source.wasm()?);
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
        let component = Component::new(engine, source.wasm()?)?;
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
    let mut temp = path.as_os_str().to_owned();
    temp.push(format!(".tmp-{}", std::process::id()));
    let temp = PathBuf::from(temp);
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        // Drop the written pages from the page cache: left there (in large
        // folios), the daemon's first touch of a mapped artifact maps whole
        // folios, about the whole file; read back, only what it touches
        // becomes resident (measured: 1.2 MiB less for the built-ins).
        let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed);
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_in(dir: &Path) -> ArtifactCache {
        ArtifactCache::open(&Engine::default(), Some(dir))
    }

    fn info() -> InfoAnswer {
        InfoAnswer {
            names: vec!["version".into(), "features".into()],
            version: "1.2.3".into(),
            summary: "answers".into(),
            asks: "network = true".into(),
        }
    }

    #[test]
    fn a_components_info_is_kept_and_found_again() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache_in(&dir.path().join("cache"));
        assert_eq!(cache.info("ab12"), None);
        cache.store_info("ab12", &info());
        assert_eq!(cache.info("ab12"), Some(info()));
        assert_eq!(cache.info("cd34"), None, "another component's info");
    }

    #[test]
    fn an_info_file_others_could_write_or_that_is_garbage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache_in(&dir.path().join("cache"));
        cache.store_info("ab12", &info());
        let path = cache.cache_path("ab12", "info").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(cache.info("ab12"), None, "a file others may write is not trusted");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, b"{\"names\": [").unwrap();
        assert_eq!(cache.info("ab12"), None);
    }

    #[test]
    fn without_a_cache_directory_nothing_is_kept() {
        let cache = ArtifactCache::open(&Engine::default(), None);
        cache.store_info("ab12", &info());
        assert_eq!(cache.info("ab12"), None);
    }
}
