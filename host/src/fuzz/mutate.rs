//! Mutations: request values (structurally when they parse as JSON, as
//! text otherwise, plus garbage, huge strings, deep nesting and escapes
//! that are not UTF-8), file contents and XenStore values. Deterministic
//! for a seed.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::input::{FileData, FuzzInput};
use crate::protocol::nova;
use crate::xenstore::wire::DAEMON_PAYLOAD_MAX;

/// Largest file or string a mutation makes (bytes).
const MAX_SIZE: usize = 1 << 20;

/// Largest request value: a request longer than any exchange delivers is
/// not an input (room left for the name).
const MAX_VALUE_BYTES: usize = nova::MAX_REQUEST_BYTES - 256;

/// Largest XenStore value: no xenstored serves more in one read.
const MAX_XENSTORE_VALUE_BYTES: usize = DAEMON_PAYLOAD_MAX;

/// A small, fast, seedable generator (SplitMix64): runs must repeat exactly
/// for a `--seed`, on any platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `bound` (0 when `bound` is 0).
    pub fn below(&mut self, bound: usize) -> usize {
        if bound == 0 {
            0
        } else {
            (self.next_u64() % bound as u64) as usize
        }
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }
}

/// What the mutations draw from besides randomness: strings and keys seen
/// in the corpus, the paths the policy grants, the XenStore prefixes.
#[derive(Debug, Clone, Default)]
pub struct Dictionary {
    /// Object keys and string values seen in the corpus' values.
    pub words: Vec<String>,
    /// Paths the component's files grant covers.
    pub granted_paths: Vec<String>,
    /// XenStore key prefixes the component is granted.
    pub xenstore_prefixes: Vec<String>,
}

impl Dictionary {
    /// Add the keys and strings of `input`'s value.
    pub fn learn(&mut self, input: &FuzzInput) {
        if let Ok(value) = serde_json::from_str::<Value>(&input.value) {
            collect_words(&value, &mut self.words);
        }
        for value in input.xenstore.values() {
            if let Ok(value) = serde_json::from_str::<Value>(value) {
                collect_words(&value, &mut self.words);
            }
        }
        self.words.sort();
        self.words.dedup();
        self.words.truncate(4096);
    }
}

fn collect_words(value: &Value, words: &mut Vec<String>) {
    match value {
        Value::String(text) if text.len() <= 256 => words.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|item| collect_words(item, words)),
        Value::Object(fields) => {
            for (key, item) in fields {
                words.push(key.clone());
                collect_words(item, words);
            }
        }
        _ => {}
    }
}

/// Strings that break parsers.
const INTERESTING_STRINGS: &[&str] = &[
    "",
    " ",
    "0",
    "-1",
    "null",
    "../../../../etc/shadow",
    "/",
    "/etc/shadow",
    "a,b",
    ",",
    "\n",
    "\u{0}",
    "é",
    "\u{202e}",
    "%s%n",
    "AAAA====",
    "====",
    "!!!",
    "root",
    "eth0",
    "bc:76:4e:20:5e:b2",
    "BC764E205EB2",
    "255.255.255.255",
    "::1",
    "http://127.0.0.1/",
    "https://",
];

/// JSON texts no `serde_json::Value` can make.
const RAW_VALUES: &[&str] = &[
    r#""\ud800""#,
    r#""\udfff\ud800""#,
    r#""\u0000""#,
    r#"{"a":1,"a":2}"#,
    "1e999",
    "-0",
    "123456789012345678901234567890123456789",
    "0.0000000000000000000000000001",
    r#""\/""#,
    "",
    "{",
    "[1,]",
    "\u{0}",
];

const INTERESTING_NUMBERS: &[i128] = &[
    0,
    1,
    -1,
    255,
    256,
    65535,
    65536,
    i32::MAX as i128,
    i32::MIN as i128,
    u32::MAX as i128,
    i64::MAX as i128,
    i64::MIN as i128,
    u64::MAX as i128,
];

/// Mutate `input` once or a few times, over its value, files and XenStore
/// keys.
pub fn mutate(input: &mut FuzzInput, dictionary: &Dictionary, rng: &mut Rng) {
    for _ in 0..=rng.below(3) {
        match rng.below(10) {
            0..=5 => {
                let value = mutate_value(&input.value, dictionary, rng);
                if value.len() <= MAX_VALUE_BYTES {
                    input.value = value;
                }
            }
            6 | 7 => mutate_files(&mut input.files, dictionary, rng),
            _ => mutate_xenstore(&mut input.xenstore, dictionary, rng),
        }
    }
}

/// A new JSON text from `text`.
pub fn mutate_value(text: &str, dictionary: &Dictionary, rng: &mut Rng) -> String {
    match rng.below(16) {
        0 => garbage(rng),
        1 => deep_nesting(rng),
        2 => huge_string(dictionary, rng),
        3 => rng.pick(RAW_VALUES).copied().unwrap_or_default().to_owned(),
        4 | 5 => mutate_text(text.as_bytes(), dictionary, rng),
        _ => match serde_json::from_str::<Value>(text) {
            Ok(mut value) => {
                mutate_tree(&mut value, dictionary, rng, 0);
                value.to_string()
            }
            Err(_) => mutate_text(text.as_bytes(), dictionary, rng),
        },
    }
}

/// Random bytes as a JSON string (so that they reach the component), or
/// now and then as they are.
fn garbage(rng: &mut Rng) -> String {
    let bytes: Vec<u8> = (0..rng.below(64)).map(|_| rng.next_u64() as u8).collect();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if rng.one_in(4) {
        text
    } else {
        Value::String(text).to_string()
    }
}

fn deep_nesting(rng: &mut Rng) -> String {
    let most = if rng.one_in(4) { 20_000 } else { 200 };
    let depth = 1 + rng.below(most);
    let (open, close) = match rng.below(3) {
        0 => ("[", "]"),
        1 => ("{\"a\":", "}"),
        _ => ("[{\"a\":", "}]"),
    };
    format!("{}0{}", open.repeat(depth), close.repeat(depth))
}

fn huge_string(dictionary: &Dictionary, rng: &mut Rng) -> String {
    let unit = random_string(dictionary, rng);
    let unit = if unit.is_empty() { "A".to_owned() } else { unit };
    let times = (1 + rng.below(MAX_SIZE / 4)) / unit.len().max(1) + 1;
    Value::String(unit.repeat(times)).to_string()
}

fn random_string(dictionary: &Dictionary, rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => dictionary
            .words
            .get(rng.below(dictionary.words.len()))
            .cloned()
            .unwrap_or_default(),
        1 => dictionary
            .granted_paths
            .get(rng.below(dictionary.granted_paths.len()))
            .cloned()
            .unwrap_or_default(),
        _ => rng.pick(INTERESTING_STRINGS).copied().unwrap_or_default().to_owned(),
    }
}

fn random_scalar(dictionary: &Dictionary, rng: &mut Rng) -> Value {
    match rng.below(6) {
        0 => Value::Null,
        1 => Value::Bool(rng.one_in(2)),
        2 => {
            let number = rng.pick(INTERESTING_NUMBERS).copied().unwrap_or_default();
            serde_json::from_str(&number.to_string()).unwrap_or(Value::Null)
        }
        3 => serde_json::Number::from_f64(f64::from_bits(rng.next_u64())).map_or(Value::Null, Value::Number),
        _ => Value::String(random_string(dictionary, rng)),
    }
}

/// Mutate one node of `value`, chosen by walking down at random.
fn mutate_tree(value: &mut Value, dictionary: &Dictionary, rng: &mut Rng, depth: usize) {
    let descend = depth < 32 && rng.below(3) != 0;
    match value {
        Value::Object(fields) if descend && !fields.is_empty() => {
            let index = rng.below(fields.len());
            if let Some((_, child)) = fields.iter_mut().nth(index) {
                return mutate_tree(child, dictionary, rng, depth + 1);
            }
        }
        Value::Array(items) if descend && !items.is_empty() => {
            let index = rng.below(items.len());
            if let Some(child) = items.get_mut(index) {
                return mutate_tree(child, dictionary, rng, depth + 1);
            }
        }
        _ => {}
    }
    mutate_node(value, dictionary, rng);
}

fn mutate_node(value: &mut Value, dictionary: &Dictionary, rng: &mut Rng) {
    match (rng.below(8), value) {
        (0, Value::Object(fields)) if !fields.is_empty() => {
            let index = rng.below(fields.len());
            if let Some(key) = fields.keys().nth(index).cloned() {
                fields.remove(&key);
            }
        }
        (1, Value::Object(fields)) => {
            let key = random_string(dictionary, rng);
            fields.insert(key, random_scalar(dictionary, rng));
        }
        (0, Value::Array(items)) if !items.is_empty() => {
            items.remove(rng.below(items.len()));
        }
        (1, Value::Array(items)) if !items.is_empty() => {
            let copy = items[rng.below(items.len())].clone();
            let most = if rng.one_in(8) { 1000 } else { 3 };
            // Not past MAX_SIZE: repeated rounds would otherwise build
            // values of gigabytes.
            let size = serde_json::to_vec(&copy).map_or(1, |text| text.len().max(1));
            let times = (1 + rng.below(most)).min(MAX_SIZE / size);
            items.extend(std::iter::repeat_n(copy, times));
        }
        (2 | 3, Value::String(text)) => {
            let mutated = mutate_bytes(text.as_bytes(), dictionary, rng);
            *text = String::from_utf8_lossy(&mutated).into_owned();
        }
        (4, node) => *node = Value::Array(vec![node.take()]),
        (5, node) => {
            let mut wrapper = Map::new();
            wrapper.insert(random_string(dictionary, rng), node.take());
            *node = Value::Object(wrapper);
        }
        (_, node) => *node = random_scalar(dictionary, rng),
    }
}

/// Mutate JSON text as bytes (most results are not JSON: the protocol
/// must refuse them cleanly).
fn mutate_text(text: &[u8], dictionary: &Dictionary, rng: &mut Rng) -> String {
    String::from_utf8_lossy(&mutate_bytes(text, dictionary, rng)).into_owned()
}

/// Byte-level mutations, AFL's usual kinds.
pub fn mutate_bytes(bytes: &[u8], dictionary: &Dictionary, rng: &mut Rng) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let len = out.len();
    match rng.below(10) {
        0 if len > 0 => {
            let at = rng.below(len);
            out[at] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let at = rng.below(len);
            out[at] = *rng.pick(&b"\0\x7f\xff\n\r\t ,:=\"'\\/{}[]"[..]).unwrap_or(&0);
        }
        2 if len > 0 => {
            let start = rng.below(len);
            let end = (start + 1 + rng.below(16)).min(len);
            let tail = out.split_off(end);
            out.truncate(start);
            out.extend(tail);
        }
        3 if len > 0 => {
            let start = rng.below(len);
            let end = (start + 1 + rng.below(32)).min(len);
            let piece = out[start..end].to_vec();
            insert_at(&mut out, rng.below(len + 1), &piece);
        }
        4 => out.truncate(rng.below(len + 1)),
        5 => {
            let at = rng.below(len + 1);
            let random: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next_u64() as u8).collect();
            insert_at(&mut out, at, &random);
        }
        6 if len > 0 && len < MAX_SIZE / 2 => {
            let times = 1 + rng.below((MAX_SIZE / len).min(1000));
            out = out.repeat(times);
        }
        _ => {
            let at = rng.below(len + 1);
            let word = random_string(dictionary, rng);
            insert_at(&mut out, at, word.as_bytes());
        }
    }
    out.truncate(MAX_SIZE);
    out
}

fn insert_at(bytes: &mut Vec<u8>, at: usize, piece: &[u8]) {
    let tail = bytes.split_off(at.min(bytes.len()));
    bytes.extend_from_slice(piece);
    bytes.extend(tail);
}

/// Change, add or remove a granted file.
fn mutate_files(files: &mut BTreeMap<String, FileData>, dictionary: &Dictionary, rng: &mut Rng) {
    let existing: Vec<String> = files.keys().cloned().collect();
    match rng.below(6) {
        0 if !existing.is_empty() => {
            let path = &existing[rng.below(existing.len())];
            files.remove(path);
        }
        1 | 2 => {
            let Some(granted) = rng.pick(&dictionary.granted_paths).cloned() else {
                return;
            };
            // The granted path itself, or a file inside it when it is a
            // directory.
            let path = if rng.one_in(2) {
                granted
            } else {
                format!("{}/{}", granted.trim_end_matches('/'), random_file_name(rng))
            };
            let bytes = mutate_bytes(random_string(dictionary, rng).as_bytes(), dictionary, rng);
            files.insert(path, FileData::from_bytes(bytes));
        }
        _ => {
            let Some(path) = existing.get(rng.below(existing.len())) else {
                return;
            };
            if let Some(data) = files.get_mut(path) {
                *data = FileData::from_bytes(mutate_bytes(&data.to_bytes(), dictionary, rng));
            }
        }
    }
}

fn random_file_name(rng: &mut Rng) -> String {
    let names = [
        "authorized_keys",
        "ifcfg-eth0",
        "eth0",
        "a",
        "..",
        ".",
        "x.conf",
        "00-guestward.yaml",
    ];
    rng.pick(&names[..]).copied().unwrap_or("a").to_owned()
}

/// Change, add or remove a XenStore key under a granted prefix.
fn mutate_xenstore(keys: &mut BTreeMap<String, String>, dictionary: &Dictionary, rng: &mut Rng) {
    let existing: Vec<String> = keys.keys().cloned().collect();
    match rng.below(6) {
        0 if !existing.is_empty() => {
            keys.remove(&existing[rng.below(existing.len())]);
        }
        1 => {
            let Some(prefix) = rng.pick(&dictionary.xenstore_prefixes).cloned() else {
                return;
            };
            let key = if rng.one_in(2) {
                prefix
            } else {
                format!("{prefix}/{}", random_key_name(rng))
            };
            let value = mutate_value("\"\"", dictionary, rng);
            if value.len() <= MAX_XENSTORE_VALUE_BYTES {
                keys.insert(key, value);
            }
        }
        _ => {
            let Some(key) = existing.get(rng.below(existing.len())) else {
                return;
            };
            if let Some(value) = keys.get_mut(key) {
                let mutated = mutate_value(value, dictionary, rng);
                if mutated.len() <= MAX_XENSTORE_VALUE_BYTES {
                    *value = mutated;
                }
            }
        }
    }
}

fn random_key_name(rng: &mut Rng) -> String {
    let names = [
        "BC764E205EB2",
        "bc764e205eb2",
        "BC764E205EB3",
        "000000000000",
        "x",
        "a-b",
    ];
    rng.pick(&names[..]).copied().unwrap_or("x").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_mutations() {
        let dictionary = Dictionary {
            words: vec!["name".into(), "root".into()],
            granted_paths: vec!["/etc/shadow".into()],
            xenstore_prefixes: vec!["vm-data/networking".into()],
        };
        let run = |seed| {
            let mut rng = Rng::new(seed);
            let mut input = FuzzInput {
                value: r#"{"name": "x", "list": [1, 2]}"#.into(),
                ..FuzzInput::default()
            };
            (0..200)
                .map(|_| {
                    mutate(&mut input, &dictionary, &mut rng);
                    input.clone()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn mutations_reach_files_xenstore_and_every_kind_of_value() {
        let dictionary = Dictionary {
            granted_paths: vec!["/etc/shadow".into()],
            xenstore_prefixes: vec!["vm-data/networking".into()],
            ..Dictionary::default()
        };
        let mut rng = Rng::new(1);
        let (mut deep, mut huge, mut not_json, mut surrogate) = (false, false, false, false);
        let mut input = FuzzInput::default();
        let (mut files, mut keys) = (false, false);
        for _ in 0..5000 {
            let value = mutate_value(r#"{"a": "b"}"#, &dictionary, &mut rng);
            deep |= value.starts_with("[[[[");
            huge |= value.len() > 10_000;
            not_json |= serde_json::from_str::<serde::de::IgnoredAny>(&value).is_err();
            surrogate |= value.contains("\\ud800");
            mutate(&mut input, &dictionary, &mut rng);
            files |= !input.files.is_empty();
            keys |= !input.xenstore.is_empty();
            // Only what an exchange delivers and a xenstored holds.
            assert!(input.value.len() <= MAX_VALUE_BYTES);
            assert!(
                input
                    .xenstore
                    .values()
                    .all(|value| value.len() <= MAX_XENSTORE_VALUE_BYTES)
            );
        }
        assert!(deep && huge && not_json && surrogate);
        assert!(files && keys);
    }

    #[test]
    fn mutations_never_grow_a_request_past_what_an_exchange_delivers() {
        // Found by a long run: duplicating array items round after round made
        // a 200 MB value, which no exchange delivers, and its memory finding
        // was not a real one.
        let dictionary = Dictionary::default();
        let start = FuzzInput {
            value: format!("[\"{}\"]", "a".repeat(600_000)),
            ..FuzzInput::default()
        };
        let mut largest = 0;
        for seed in 0..200 {
            let mut input = start.clone();
            mutate(&mut input, &dictionary, &mut Rng::new(seed));
            assert!(
                input.value.len() <= MAX_VALUE_BYTES,
                "seed {seed}: {} bytes",
                input.value.len()
            );
            largest = largest.max(input.value.len());
        }
        assert!(largest > 600_000, "the test reaches values near the bound");
    }
}
