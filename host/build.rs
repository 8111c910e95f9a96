//! Pins the built-in command components by hash: when
//! `GUESTWARD_BUILTIN_COMPONENTS` names a directory (the Makefile sets it),
//! the SHA-256 of each `.wasm` there is compiled into the binary, and the
//! daemon trusts exactly those bytes under those names without a signature.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

fn main() {
    println!("cargo:rerun-if-env-changed=GUESTWARD_BUILTIN_COMPONENTS");
    let mut pins = Vec::new();
    if let Some(dir) = std::env::var_os("GUESTWARD_BUILTIN_COMPONENTS") {
        let dir = PathBuf::from(dir);
        println!("cargo:rerun-if-changed={}", dir.display());
        let entries = std::fs::read_dir(&dir).into_iter().flatten();
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
            .collect();
        paths.sort();
        for path in paths {
            println!("cargo:rerun-if-changed={}", path.display());
            let bytes = std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            let name = path
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_default();
            pins.push(format!("    ({name:?}, {:?}),\n", hex::encode(Sha256::digest(&bytes))));
        }
    }
    if pins.is_empty() {
        // A binary without pins trusts no built-in: every command would need
        // a signature. Fine for `cargo check`, wrong for a binary to ship.
        println!(
            "cargo:warning=no built-in command component pinned: build with `make` (GUESTWARD_BUILTIN_COMPONENTS names no directory holding .wasm files)"
        );
    }
    let source = format!(
        "/// Built-in components, (name, SHA-256), pinned when this binary was built.\npub const BUILTIN_PINS: &[(&str, &str)] = &[\n{}];\n",
        pins.concat()
    );
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("builtin_pins.rs");
    std::fs::write(&out, source).unwrap_or_else(|error| panic!("{}: {error}", out.display()));
}
