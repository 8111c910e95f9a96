//! `guestward new NAME`: a command crate that builds, tests and signs out
//! of the box, outside any workspace.
//!
//! The files are templates in `host/templates/`, with `{{name}}`,
//! `{{component}}`, `{{type_name}}` and `{{sdk_dependency}}` filled in. The
//! crate depends on the SDK by version (`guestward-sdk = "1.1"`); with
//! `--sdk-path`, by version and path together, so it builds against a
//! local SDK today and against crates.io once the SDK is published there.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::print_line;

/// The SDK version a new crate asks for: the SDK of this repository.
const SDK_REQUIREMENT: &str = "1.1";

/// (path in the new crate, template).
const FILES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../templates/Cargo.toml.tmpl")),
    ("src/lib.rs", include_str!("../../templates/lib.rs.tmpl")),
    ("policy.toml", include_str!("../../templates/policy.toml.tmpl")),
    ("README.md", include_str!("../../templates/README.md.tmpl")),
    (".gitignore", include_str!("../../templates/gitignore.tmpl")),
];

/// Write the crate for the command `name` into `dir` (default `./NAME`).
pub fn new(name: &str, dir: Option<PathBuf>, sdk_path: Option<&Path>) -> anyhow::Result<()> {
    check_name(name)?;
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() && dir.read_dir().map_or(true, |mut entries| entries.next().is_some()) {
        bail!("{} already exists and is not an empty directory", dir.display());
    }
    let sdk_dependency = match sdk_path {
        Some(path) => {
            let path =
                std::fs::canonicalize(path).with_context(|| format!("cannot find the SDK at {}", path.display()))?;
            if !path.join("Cargo.toml").is_file() {
                bail!("{} is not a crate directory (no Cargo.toml)", path.display());
            }
            let path = path
                .to_str()
                .with_context(|| format!("{} is not UTF-8", path.display()))?;
            format!(
                "guestward-sdk = {{ version = \"{SDK_REQUIREMENT}\", path = {} }}",
                toml_string(path)
            )
        }
        None => format!("guestward-sdk = \"{SDK_REQUIREMENT}\""),
    };
    let values = [
        ("{{name}}", name.to_owned()),
        ("{{component}}", name.replace('-', "_")),
        ("{{type_name}}", type_name(name)),
        ("{{sdk_dependency}}", sdk_dependency),
    ];
    for (file, template) in FILES {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, fill(template, &values)).with_context(|| format!("cannot write {}", path.display()))?;
    }
    print_line(&format!(
        "created the command crate {name} in {}: `cargo test` tests it, \
         `cargo build --profile wasm --target wasm32-wasip2` builds target/wasm32-wasip2/wasm/{}.wasm",
        dir.display(),
        name.replace('-', "_")
    ));
    Ok(())
}

/// A crate name that is also a command name: lower-case ASCII letters,
/// digits, `-` and `_`, starting with a letter.
fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid {
        bail!(
            "{name:?} is not a command name: use at most 64 lower-case letters, digits, '-' and '_', starting with a letter"
        );
    }
    Ok(())
}

/// `disk-report` → `DiskReport`.
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn fill(template: &str, values: &[(&str, String)]) -> String {
    values
        .iter()
        .fold(template.to_owned(), |text, (key, value)| text.replace(key, value))
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    let mut quoted = String::from("\"");
    for ch in text.chars() {
        match ch {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            ch if ch.is_control() => quoted.push_str(&format!("\\u{:04x}", u32::from(ch))),
            ch => quoted.push(ch),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_crates_components_and_types() {
        assert_eq!(type_name("disk-report"), "DiskReport");
        assert_eq!(type_name("sys_report2"), "SysReport2");
        for bad in ["", "Disk", "1disk", "disk report", "disk/../x", "dïsk", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        check_name("disk-report").unwrap();
    }

    #[test]
    fn every_placeholder_is_filled() {
        let dir = tempfile::tempdir().unwrap();
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
        new("disk-report", Some(dir.path().join("x")), Some(&sdk)).unwrap();
        for (file, _) in FILES {
            let text = std::fs::read_to_string(dir.path().join("x").join(file)).unwrap();
            assert!(!text.contains("{{"), "{file}: {text}");
        }
        let manifest = std::fs::read_to_string(dir.path().join("x/Cargo.toml")).unwrap();
        let manifest: toml::Table = manifest.parse().unwrap();
        let sdk_dependency = &manifest["dependencies"]["guestward-sdk"];
        assert_eq!(sdk_dependency["version"].as_str(), Some(SDK_REQUIREMENT));
        assert!(
            Path::new(sdk_dependency["path"].as_str().unwrap())
                .join("wit/command.wit")
                .is_file()
        );
        assert!(
            new("disk-report", Some(dir.path().join("x")), None).is_err(),
            "never overwrites"
        );
    }

    #[test]
    fn without_a_path_the_sdk_comes_from_the_registry() {
        let dir = tempfile::tempdir().unwrap();
        new("hello", Some(dir.path().join("hello")), None).unwrap();
        let manifest = std::fs::read_to_string(dir.path().join("hello/Cargo.toml")).unwrap();
        assert!(manifest.contains("guestward-sdk = \"1.1\"\n"), "{manifest}");
    }

    /// A new crate asks for the SDK this repository holds.
    #[test]
    fn the_requirement_matches_this_repositorys_sdk() {
        let manifest = include_str!("../../../guest-sdk/Cargo.toml");
        let manifest: toml::Table = manifest.parse().unwrap();
        let version = manifest["package"]["version"].as_str().unwrap();
        assert!(version.starts_with(&format!("{SDK_REQUIREMENT}.")), "{version}");
    }
}
