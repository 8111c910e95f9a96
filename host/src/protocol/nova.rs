//! The Nova XenAPI agent protocol (legacy-agent.md §2.4), byte for byte.
//!
//! A request is a JSON object `{"name": <command>, "value": <argument>}`;
//! `value` is optional and defaults to `""`. A reply is exactly
//! `{"message": "<text>", "returncode": "<code>"}`: that key order, `, ` and
//! `: ` separators, and every character outside printable ASCII escaped as
//! `\uXXXX`, as Python's `json.dumps` wrote it.
//!
//! One deliberate difference: JSON that is valid but not an object gets `500`
//! `Request is malformed` (the legacy agent raised, never answered, and
//! re-read the request in a busy loop: bug B3).

use std::collections::HashMap;
use std::fmt::Write;

use serde_json::value::RawValue;

use super::{Reply, Request};

pub const MALFORMED: &str = "Request is malformed";

/// The longest request any exchange delivers: the local socket's line
/// limit (a XenStore request is at most xenstored's 4096-byte payload).
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
pub const MISSING_NAME: &str = "Request is missing 'name' key";

/// Parse a request, or produce the error reply it deserves.
pub fn parse(bytes: &[u8]) -> Result<Request, Reply> {
    let malformed = || Reply::error(MALFORMED);
    let text = std::str::from_utf8(bytes).map_err(|_| malformed())?;
    let trimmed = text.trim_start_matches([' ', '\t', '\n', '\r']);
    if !trimmed.starts_with('{') {
        // Not JSON at all, or JSON that is not an object (the B3 fix).
        return Err(malformed());
    }
    // Duplicate keys: the last one wins, as in Python's json.loads.
    let fields: HashMap<String, Box<RawValue>> = serde_json::from_str(text).map_err(|_| malformed())?;
    let name = fields.get("name").ok_or_else(|| Reply::error(MISSING_NAME))?;
    let name = match serde_json::from_str::<serde_json::Value>(name.get()) {
        Ok(serde_json::Value::String(name)) => name,
        Ok(other) => return Err(unknown_command(&python_str(&other))),
        Err(_) => return Err(malformed()),
    };
    let value = match fields.get("value") {
        Some(value) => value.clone(),
        None => RawValue::from_string("\"\"".to_owned()).map_err(|_| malformed())?,
    };
    Ok(Request { name, value })
}

/// The reply to a request for a command nobody answers.
pub fn unknown_command(name: &str) -> Reply {
    Reply::not_found(format!("No such agent command '{name}'"))
}

/// Encode a reply exactly as the legacy agent did.
pub fn encode(reply: &Reply) -> String {
    let mut out = String::with_capacity(reply.message.len() + reply.code.len() + 32);
    out.push_str("{\"message\": ");
    push_json_string(&mut out, &reply.message);
    out.push_str(", \"returncode\": ");
    push_json_string(&mut out, &reply.code);
    out.push('}');
    out
}

/// Python's `json.dumps` of a string with `ensure_ascii=True`.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(ch),
            _ => {
                let mut units = [0u16; 2];
                for unit in ch.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// How Python's `str()` shows a JSON value that is not a string, for the
/// 404 text of a request whose name is not a string (`'5'`, `'True'`).
fn python_str(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "None".to_owned(),
        serde_json::Value::Bool(true) => "True".to_owned(),
        serde_json::Value::Bool(false) => "False".to_owned(),
        // Numbers, lists and objects: their compact JSON text is close to
        // what Python shows and leaks nothing.
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Request {
        parse(text.as_bytes()).unwrap()
    }

    fn parse_err(text: &[u8]) -> String {
        encode(&parse(text).unwrap_err())
    }

    #[test]
    fn requests_give_name_and_raw_value() {
        let request = parse_ok(r#"{"name":"version","value":"agent"}"#);
        assert_eq!((request.name.as_str(), request.value.get()), ("version", "\"agent\""));
    }

    #[test]
    fn a_missing_value_is_the_empty_string() {
        assert_eq!(parse_ok(r#"{"name":"features"}"#).value.get(), "\"\"");
    }

    #[test]
    fn big_numbers_reach_the_command_untouched() {
        let request = parse_ok(r#"{"name":"keyinit","value":162259276829213363391578010288127}"#);
        assert_eq!(request.value.get(), "162259276829213363391578010288127");
    }

    #[test]
    fn legacy_error_vectors_are_exact() {
        // legacy-agent.md §8.7 and the legacy test_jsonparser cases.
        assert_eq!(
            parse_err(b"abc"),
            r#"{"message": "Request is malformed", "returncode": "500"}"#
        );
        assert_eq!(
            parse_err(br#"{"value":""}"#),
            r#"{"message": "Request is missing 'name' key", "returncode": "500"}"#
        );
        assert_eq!(
            encode(&unknown_command("nope")),
            r#"{"message": "No such agent command 'nope'", "returncode": "404"}"#
        );
    }

    #[test]
    fn valid_json_that_is_not_an_object_is_malformed_not_a_busy_loop() {
        for text in [&b"[1,2]"[..], b"\"str\"", b"5", b"null", b" [] "] {
            assert_eq!(
                parse_err(text),
                r#"{"message": "Request is malformed", "returncode": "500"}"#
            );
        }
    }

    #[test]
    fn non_utf8_and_truncated_json_are_malformed() {
        assert_eq!(
            parse_err(b"{\"name\":\xff}"),
            r#"{"message": "Request is malformed", "returncode": "500"}"#
        );
        assert_eq!(
            parse_err(b"{\"name\":"),
            r#"{"message": "Request is malformed", "returncode": "500"}"#
        );
    }

    #[test]
    fn a_non_string_name_is_an_unknown_command_shown_as_python_would() {
        assert_eq!(
            parse_err(br#"{"name":5}"#),
            r#"{"message": "No such agent command '5'", "returncode": "404"}"#
        );
        assert_eq!(
            parse_err(br#"{"name":true}"#),
            r#"{"message": "No such agent command 'True'", "returncode": "404"}"#
        );
    }

    #[test]
    fn replies_escape_like_python_json_dumps() {
        let reply = Reply::new("0", "a\"b\\c\n\t\u{1}\u{7f}é€😀/");
        assert_eq!(
            encode(&reply),
            r#"{"message": "a\"b\\c\n\t\u0001\u007f\u00e9\u20ac\ud83d\ude00/", "returncode": "0"}"#
        );
    }

    #[test]
    fn the_version_reply_is_byte_exact() {
        assert_eq!(
            encode(&Reply::ok("1.39.1")),
            r#"{"message": "1.39.1", "returncode": "0"}"#
        );
        assert_eq!(
            encode(&Reply::new("D0", "123")),
            r#"{"message": "123", "returncode": "D0"}"#
        );
    }
}
