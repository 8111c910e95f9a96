//! Where the things under test are: the `guestward` binary and the command
//! components built by `make` (or `make test`).

use std::path::{Path, PathBuf};

/// The workspace's target directory.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
    }
}

/// The `guestward` binary of the same profile as this test binary
/// (`target/debug/deps/e2e-…` → `target/debug/guestward`), or `$GUESTWARD_BIN`.
/// Run the `guestward` binary with `args` (no inherited log filter) and
/// wait for it.
pub fn guestward(args: &[&str]) -> std::process::Output {
    std::process::Command::new(guestward_bin())
        .args(args)
        .env_remove("GUESTWARD_LOG")
        .output()
        .expect("run guestward")
}

pub fn guestward_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("GUESTWARD_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps");
    let bin = profile_dir.join("guestward");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`make test` does: cargo build -p guestward)",
        bin.display()
    );
    bin
}

/// A command component built for wasm32-wasip2 (`version`, `features`,
/// `probe`, …), from `$GUESTWARD_WASM_DIR` or the Makefile's output.
pub fn component(name: &str) -> PathBuf {
    let path = component_path(name);
    assert!(
        path.exists(),
        "{} is missing: build the components first (`make test` does: make components)",
        path.display()
    );
    path
}

/// The component `name` if it was built (`make bench` builds only the
/// built-ins; the test components come with `make test`).
pub fn built_component(name: &str) -> Option<PathBuf> {
    Some(component_path(name)).filter(|path| path.exists())
}

fn component_path(name: &str) -> PathBuf {
    let dir = match std::env::var_os("GUESTWARD_WASM_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => target_dir().join("wasm32-wasip2/wasm"),
    };
    dir.join(format!("{name}.wasm"))
}

/// The built-in command components: those the binary under test pinned
/// (the Makefile's `COMMANDS` is the one list of them).
pub fn builtin() -> Vec<&'static str> {
    guestward::trust::BUILTIN_PINS.iter().map(|(name, _)| *name).collect()
}

/// Built-in components the built-in policy leaves off: found in the
/// commands directory, not loaded unless a drop-in turns them on.
pub const OFF_BY_DEFAULT: &[&str] = &["fsfreeze", "shutdown"];

/// The built-in components the built-in policy loads.
pub fn builtin_loaded() -> Vec<&'static str> {
    builtin()
        .into_iter()
        .filter(|name| !OFF_BY_DEFAULT.contains(name))
        .collect()
}

/// What `features` answers when exactly the built-ins are loaded.
pub const BUILTIN_FEATURES: &str =
    "agentupdate,features,file_inject,injectfile,keyinit,kmsactivate,password,resetnetwork,version";

/// True when `path` holds a built-in component (same name, same bytes as
/// the build the binary pinned).
pub fn is_builtin(path: &Path) -> bool {
    let name = path.file_stem().and_then(|stem| stem.to_str()).unwrap_or_default();
    builtin().contains(&name) && std::fs::read(path).ok() == std::fs::read(component(name)).ok()
}

/// A compiled-component cache shared by every agent the tests start (safe:
/// artifacts are keyed by content and engine, written atomically).
pub fn shared_cache() -> PathBuf {
    let dir = target_dir().join("guestward-test-cache");
    std::fs::create_dir_all(&dir).expect("create the test cache");
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("chmod the test cache");
    dir
}

/// An empty private cache directory (mode 0700, as the daemon requires).
pub fn private_cache() -> tempfile::TempDir {
    let cache = tempfile::tempdir().expect("a cache directory");
    std::fs::set_permissions(cache.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod the cache");
    cache
}

/// A cache as an installed package ships it: `guestward compile` (run by
/// `make install`) filled with the built-ins. Panics with its output if
/// compiling fails.
pub fn installed_cache() -> tempfile::TempDir {
    let cache = private_cache();
    let commands = tempfile::tempdir().expect("a commands directory");
    for name in builtin() {
        std::fs::copy(component(name), commands.path().join(format!("{name}.wasm"))).expect("copy a built-in");
    }
    let output = std::process::Command::new(guestward_bin())
        .arg("compile")
        .arg("--commands")
        .arg(commands.path())
        .arg("--cache")
        .arg(cache.path())
        .output()
        .expect("run guestward compile");
    assert!(
        output.status.success(),
        "guestward compile failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    cache
}

/// The key pair the agents of this test process trust (private, public):
/// the harness signs every component that is not a built-in with it.
pub fn test_key() -> (&'static str, &'static str) {
    static KEY: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    let (private, public) = KEY.get_or_init(|| {
        let (private, public) = guestward::trust::generate_key().expect("a test key");
        (private.to_string(), public)
    });
    (private, public)
}
