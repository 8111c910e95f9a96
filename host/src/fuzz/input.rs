//! One fuzz input (a request value, granted files' contents, XenStore
//! keys) and the reproducer file a finding is written to, which
//! `guestward run --replay FILE` runs again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What one execution runs: everything the component can observe that the
/// fuzzer controls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FuzzInput {
    /// The command name; `None`: the fuzzer picks one of the component's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The request's value, as the JSON text the requester wrote (kept as
    /// text: mutated values need not be valid JSON, and a lone surrogate
    /// escape has no `serde_json::Value`).
    #[serde(default = "empty_string_value")]
    pub value: String,
    /// Files under the scratch root, by absolute path.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, FileData>,
    /// XenStore keys (relative to the domain) and their values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub xenstore: BTreeMap<String, String>,
}

fn empty_string_value() -> String {
    "\"\"".to_owned()
}

/// A file's contents: text when it is UTF-8, else hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FileData {
    Text(String),
    Hex { hex: String },
}

impl FileData {
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        match String::from_utf8(bytes) {
            Ok(text) => Self::Text(text),
            Err(error) => Self::Hex {
                hex: hex::encode(error.into_bytes()),
            },
        }
    }

    /// The bytes (hex that does not decode is taken as text).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Self::Text(text) => text.as_bytes().to_vec(),
            Self::Hex { hex } => hex::decode(hex).unwrap_or_else(|_| hex.as_bytes().to_vec()),
        }
    }
}

/// A finding, written so that it can be run again: the input, and what
/// it was run with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reproducer {
    /// The component file (absolute).
    pub component: PathBuf,
    /// The policy file it ran under; `None`: the default (as `run`).
    #[serde(default)]
    pub policy: Option<PathBuf>,
    /// What was found (`panic`, `deadline`, …) and the reply's words.
    pub finding: String,
    pub reply: String,
    pub input: FuzzInput,
}

impl Reproducer {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", path.display()))?;
        serde_json::from_str(&text).map_err(|error| anyhow::anyhow!("{}: not a reproducer: {error}", path.display()))
    }
}

/// Read a corpus directory: every `*.json` that is a [`FuzzInput`] or a
/// [`Reproducer`] (whose input is taken), in name order. Other files are
/// skipped with a warning.
pub fn read_corpus(dir: &Path) -> anyhow::Result<Vec<FuzzInput>> {
    let entries =
        std::fs::read_dir(dir).map_err(|error| anyhow::anyhow!("cannot read corpus {}: {error}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    let mut inputs = Vec::new();
    for path in paths {
        let Ok(text) = std::fs::read_to_string(&path) else {
            tracing::warn!(path = %path.display(), "unreadable corpus file skipped");
            continue;
        };
        if let Ok(input) = serde_json::from_str::<FuzzInput>(&text) {
            inputs.push(input);
        } else if let Ok(reproducer) = serde_json::from_str::<Reproducer>(&text) {
            inputs.push(reproducer.input);
        } else {
            tracing::warn!(path = %path.display(), "not a fuzz input, skipped");
        }
    }
    Ok(inputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_file_data_round_trips_through_hex() {
        for bytes in [b"root:x:0:0\n".to_vec(), vec![0xff, 0x00, 0xfe]] {
            let data = FileData::from_bytes(bytes.clone());
            let text = serde_json::to_string(&data).unwrap();
            let back: FileData = serde_json::from_str(&text).unwrap();
            assert_eq!(back.to_bytes(), bytes);
        }
        assert!(matches!(FileData::from_bytes(vec![0xff]), FileData::Hex { .. }));
    }

    #[test]
    fn an_input_needs_only_a_value() {
        let input: FuzzInput = serde_json::from_str(r#"{"value": "{\"a\": 1}"}"#).unwrap();
        assert_eq!(input.value, r#"{"a": 1}"#);
        assert!(input.command.is_none() && input.files.is_empty());
        assert!(serde_json::from_str::<FuzzInput>(r#"{"valeu": "1"}"#).is_err());
    }
}
