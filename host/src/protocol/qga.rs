//! The QEMU guest agent protocol (QGA), as qemu-ga 7.2 speaks it.
//!
//! A request is a JSON object `{"execute": NAME, "arguments": {…}, "id":
//! ANY}` (`arguments` and `id` optional); the answer is one line,
//! `{"return": VALUE, "id": ID}` or `{"id": ID, "error": {"class": CLASS,
//! "desc": TEXT}}`, written the way QEMU's JSON formatter writes
//! (`": "` and `", "` separators, non-ASCII escaped as `\uXXXX`). Requests
//! are not lines: they are cut from the byte stream by brace balance
//! ([`Decoder`]), and a 0xFF byte (which never occurs in UTF-8) throws
//! away whatever partial request came before it, which is how a client
//! resynchronises after garbage (`guest-sync-delimited`).
//!
//! Deliberate differences from qemu-ga 7.2, each where it was wrong:
//! * a 0xFF (or 0xFE) byte resets silently: qemu-ga also answers an error
//!   quoting the discarded text, which every client must skip anyway;
//! * a request over [`MAX_REQUEST_BYTES`] (qemu-ga: 64 MiB, all buffered)
//!   gets one error and the rest of it is skipped unbuffered, where
//!   qemu-ga answers one error per left-over token; so does one nested
//!   deeper than QEMU's limit;
//! * partial input dies with its connection: qemu-ga carries it over to
//!   the next client, whose first request it swallows;
//! * JSON syntax errors are described in serde_json's words after
//!   qemu-ga's `JSON parse error, ` (the class is the same).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::value::RawValue;

use super::{Protocol, Reply, Request};

/// The longest request accepted, in bytes. qemu-ga's own limit is its
/// JSON lexer's (64 MiB per token); no command here takes more than a few
/// kilobytes, and what is refused is never buffered.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// How deep a request may nest (QEMU's JSON parser's limit).
const MAX_NESTING: usize = 1024;

/// The byte a client sends to reset the agent's parser, and the agent
/// sends before `guest-sync-delimited`'s answer.
pub const DELIMITER: u8 = 0xFF;

/// The error classes the daemon itself answers with.
pub mod class {
    pub const GENERIC_ERROR: &str = "GenericError";
    pub const COMMAND_NOT_FOUND: &str = "CommandNotFound";
    /// Every class a command may answer with (QAPI's `QapiErrorClass`).
    pub const ALL: &[&str] = &[
        GENERIC_ERROR,
        COMMAND_NOT_FOUND,
        "DeviceNotActive",
        "DeviceNotFound",
        "KVMMissingCap",
    ];
}

/// What the [`Decoder`] cut from the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// One complete top-level JSON text (not yet parsed).
    Value(Vec<u8>),
    /// Input that cannot be JSON; the decoder has reset.
    Invalid(String),
}

/// Where the lexer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between values: whitespace is skipped.
    Between,
    /// Inside an object or array, outside strings.
    Structure,
    /// Inside a string opened by this quote; `escaped` after a backslash.
    Text { quote: u8, escaped: bool },
    /// A bare word (number, `true`, garbage) at the top level.
    Word,
    /// After an error or an oversized request: skip until the value ends
    /// (depth back to zero) or a delimiter.
    Skipping,
}

/// Cuts complete JSON texts out of a byte stream, a buffer of at most
/// [`MAX_REQUEST_BYTES`] at a time.
#[derive(Debug)]
pub struct Decoder {
    buffer: Vec<u8>,
    state: State,
    /// Open brackets and braces.
    depth: usize,
    /// The string state to return to inside a skipped value.
    skipped_text: Option<(u8, bool)>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self {
            buffer: Vec::new(),
            state: State::Between,
            depth: 0,
            skipped_text: None,
        }
    }
}

impl Decoder {
    /// Feed bytes; complete frames are appended to `frames`.
    pub fn push(&mut self, bytes: &[u8], frames: &mut Vec<Frame>) {
        for &byte in bytes {
            self.push_byte(byte, frames);
        }
    }

    /// True when no partial request is held.
    pub fn is_idle(&self) -> bool {
        self.state == State::Between
    }

    fn push_byte(&mut self, byte: u8, frames: &mut Vec<Frame>) {
        if byte == DELIMITER || byte == 0xFE {
            // The resynchronisation point: drop the partial request.
            self.reset();
            return;
        }
        match self.state {
            State::Between => self.start(byte, frames),
            State::Word => {
                if byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'-' | b'.') {
                    let _ = self.keep(byte, frames);
                } else {
                    self.end_value(frames);
                    self.start(byte, frames);
                }
            }
            State::Structure => {
                if !self.keep(byte, frames) {
                    return;
                }
                match byte {
                    b'{' | b'[' => self.open(frames),
                    b'}' | b']' => self.close(frames),
                    b'"' | b'\'' => {
                        self.state = State::Text {
                            quote: byte,
                            escaped: false,
                        }
                    }
                    _ => {}
                }
            }
            State::Text { quote, escaped } => {
                if !self.keep(byte, frames) {
                    return;
                }
                self.state = match (escaped, byte) {
                    (true, _) => State::Text { quote, escaped: false },
                    (false, b'\\') => State::Text { quote, escaped: true },
                    (false, _) if byte == quote => State::Structure,
                    (false, _) => State::Text { quote, escaped: false },
                };
                if self.state == State::Structure && self.depth == 0 {
                    self.end_value(frames); // a top-level string
                }
            }
            State::Skipping => self.skip(byte),
        }
    }

    /// The first byte of a top-level value.
    fn start(&mut self, byte: u8, frames: &mut Vec<Frame>) {
        match byte {
            b' ' | b'\t' | b'\n' | b'\r' => {}
            b'{' | b'[' => {
                self.state = State::Structure;
                let _ = self.keep(byte, frames);
                self.open(frames);
            }
            b'"' | b'\'' => {
                self.state = State::Text {
                    quote: byte,
                    escaped: false,
                };
                let _ = self.keep(byte, frames);
            }
            b'}' | b']' => frames.push(Frame::Invalid(format!("JSON parse error, stray '{}'", byte as char))),
            _ if byte.is_ascii_graphic() => {
                self.state = State::Word;
                let _ = self.keep(byte, frames);
            }
            _ => frames.push(Frame::Invalid(format!("JSON parse error, stray '\\x{byte:02x}'"))),
        }
    }

    /// Buffer one byte of the current value; false when that made it too
    /// long, and the decoder now skips it.
    fn keep(&mut self, byte: u8, frames: &mut Vec<Frame>) -> bool {
        if self.buffer.len() < MAX_REQUEST_BYTES {
            self.buffer.push(byte);
            return true;
        }
        // qemu-ga's words for its own (64 MiB) limit.
        frames.push(Frame::Invalid("JSON token size limit exceeded".to_owned()));
        self.abandon();
        self.skip(byte);
        false
    }

    fn open(&mut self, frames: &mut Vec<Frame>) {
        if self.state == State::Skipping {
            return;
        }
        self.depth += 1;
        if self.depth > MAX_NESTING {
            frames.push(Frame::Invalid("JSON nesting depth limit exceeded".to_owned()));
            self.abandon();
        }
    }

    fn close(&mut self, frames: &mut Vec<Frame>) {
        if self.state == State::Skipping {
            return;
        }
        self.depth = self.depth.saturating_sub(1);
        if self.depth == 0 {
            self.end_value(frames);
        }
    }

    fn end_value(&mut self, frames: &mut Vec<Frame>) {
        frames.push(Frame::Value(std::mem::take(&mut self.buffer)));
        self.reset();
    }

    /// Stop buffering the current value but keep following its structure,
    /// so that its end (not some brace inside it) is where parsing resumes.
    fn abandon(&mut self) {
        self.skipped_text = match self.state {
            State::Text { quote, escaped } => Some((quote, escaped)),
            _ => None,
        };
        if self.state == State::Word {
            self.depth = 0;
        }
        self.state = State::Skipping;
        self.buffer = Vec::new();
    }

    fn skip(&mut self, byte: u8) {
        if let Some((quote, escaped)) = self.skipped_text {
            self.skipped_text = match (escaped, byte) {
                (true, _) => Some((quote, false)),
                (false, b'\\') => Some((quote, true)),
                (false, _) if byte == quote => None,
                (false, _) => Some((quote, false)),
            };
            return;
        }
        match byte {
            b'"' | b'\'' => self.skipped_text = Some((byte, false)),
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' => {
                self.depth = self.depth.saturating_sub(1);
                if self.depth == 0 {
                    self.reset();
                }
            }
            _ if self.depth == 0 && byte.is_ascii_whitespace() => self.reset(),
            _ => {}
        }
    }

    fn reset(&mut self) {
        self.buffer.clear();
        self.state = State::Between;
        self.depth = 0;
        self.skipped_text = None;
    }
}

/// The operator's allow or block list of QGA commands (qemu-ga's
/// `--allow-rpcs` and `--block-rpcs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RpcFilter {
    /// When set, only these commands run.
    pub allow: Option<BTreeSet<String>>,
    /// These commands never run.
    pub block: BTreeSet<String>,
}

impl RpcFilter {
    /// Whether the command `execute` (`guest-ping`) may run.
    pub fn is_enabled(&self, execute: &str) -> bool {
        !self.block.contains(execute) && self.allow.as_ref().is_none_or(|allow| allow.contains(execute))
    }

    /// The loaded command names (`qga:guest-ping`) this filter disables.
    pub fn disabled(&self, names: &[String]) -> Vec<String> {
        names
            .iter()
            .filter(|name| matches!(Protocol::of(name), (Protocol::Qga, execute) if !self.is_enabled(execute)))
            .cloned()
            .collect()
    }
}

/// The commands qemu-ga keeps enabled while filesystems are frozen; it
/// answers every other one with [`frozen_refusal`]'s words, because a
/// command that writes would hang on a frozen filesystem.
pub const ENABLED_WHILE_FROZEN: &[&str] = &[
    "guest-ping",
    "guest-info",
    "guest-sync",
    "guest-sync-delimited",
    "guest-fsfreeze-status",
    "guest-fsfreeze-thaw",
];

/// qemu-ga's answer, while frozen, to a command not in
/// [`ENABLED_WHILE_FROZEN`] (`execute` is `guest-get-host-name`), whatever
/// its arguments.
pub fn frozen_refusal(execute: &str) -> Reply {
    Reply::new(
        class::COMMAND_NOT_FOUND,
        format!("Command {execute} has been disabled: the agent is in frozen state"),
    )
}

/// The loaded QGA command names (`qga:guest-get-time`) disabled while
/// filesystems are frozen.
pub fn disabled_while_frozen(names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter(
            |name| matches!(Protocol::of(name), (Protocol::Qga, execute) if !ENABLED_WHILE_FROZEN.contains(&execute)),
        )
        .cloned()
        .collect()
}

/// A request, parsed: the command, routed by its QGA name, and the `id`
/// to echo.
#[derive(Debug)]
pub struct QgaRequest {
    pub request: Request,
    pub id: Option<Box<RawValue>>,
}

impl QgaRequest {
    /// The command as the protocol names it (`guest-ping`).
    pub fn execute(&self) -> &str {
        Protocol::of(&self.request.name).1
    }
}

/// A request that gets an error answer without reaching a command.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused {
    pub class: &'static str,
    pub desc: String,
    /// The request's `id`, when it had one (as JSON text).
    pub id: Option<String>,
}

impl Refused {
    fn generic(desc: impl Into<String>, id: Option<&RawValue>) -> Self {
        Self {
            class: class::GENERIC_ERROR,
            desc: desc.into(),
            id: id.map(|id| id.get().to_owned()),
        }
    }

    /// The answer, encoded.
    pub fn encode(&self) -> String {
        encode_error(self.class, &self.desc, self.id.as_deref())
    }
}

/// Parse one complete JSON text as a request, checking it in the order
/// qemu-ga does: an object; no duplicate member; `execute` present and a
/// string; no member other than `execute`, `arguments` and `id`;
/// `arguments` an object.
pub fn parse(text: &[u8]) -> Result<QgaRequest, Refused> {
    let members = match object_members(text) {
        Ok(members) => members,
        Err(desc) => return Err(Refused::generic(desc, None)),
    };
    let id = members
        .iter()
        .find(|(key, _)| key == "id")
        .map(|(_, value)| value.clone());
    let refuse = |desc: String| Err(Refused::generic(desc, id.as_deref()));
    let Some((_, execute)) = members.iter().find(|(key, _)| key == "execute") else {
        return refuse("QMP input lacks member 'execute'".to_owned());
    };
    let Ok(execute) = serde_json::from_str::<String>(execute.get()) else {
        return refuse("QMP input member 'execute' must be a string".to_owned());
    };
    if let Some((key, _)) = members
        .iter()
        .find(|(key, _)| !matches!(key.as_str(), "execute" | "arguments" | "id"))
    {
        return refuse(format!("QMP input member '{key}' is unexpected"));
    }
    let arguments = match members.iter().find(|(key, _)| key == "arguments") {
        Some((_, arguments)) if arguments.get().starts_with('{') => arguments.clone(),
        Some(_) => return refuse("QMP input member 'arguments' must be an object".to_owned()),
        None => RawValue::from_string("{}".to_owned()).map_err(|error| Refused::generic(error.to_string(), None))?,
    };
    let request = Request {
        name: Protocol::Qga.command_name(&execute),
        value: arguments,
    };
    Ok(QgaRequest { request, id })
}

/// The members of a JSON object, in order, or the parse error's text.
fn object_members(text: &[u8]) -> Result<Vec<(String, Box<RawValue>)>, String> {
    let text =
        std::str::from_utf8(text).map_err(|_| "JSON parse error, invalid UTF-8 sequence in string".to_owned())?;
    let text = normalise_quotes(text);
    let value: Box<RawValue> = serde_json::from_str(&text).map_err(|error| json_error(&error))?;
    if !value.get().starts_with('{') {
        return Err("QMP input must be a JSON object".to_owned());
    }
    let members: Vec<(String, Box<RawValue>)> = serde_json::from_str::<OrderedMembers>(value.get())
        .map_err(|error| json_error(&error))?
        .0;
    let mut keys: Vec<&str> = members.iter().map(|(key, _)| key.as_str()).collect();
    keys.sort_unstable();
    if keys.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err("JSON parse error, duplicate key".to_owned());
    }
    Ok(members)
}

fn json_error(error: &serde_json::Error) -> String {
    format!("JSON parse error, {error}")
}

/// QEMU's JSON accepts single-quoted strings (`{'execute': 'guest-ping'}`);
/// rewrite them as standard JSON strings.
fn normalise_quotes(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('\'') {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    let mut in_double = false;
    while let Some(ch) = chars.next() {
        match ch {
            '"' if !in_double => {
                in_double = true;
                out.push(ch);
            }
            '"' => {
                in_double = false;
                out.push(ch);
            }
            '\\' if in_double => {
                out.push(ch);
                out.extend(chars.next());
            }
            '\'' if !in_double => {
                out.push('"');
                while let Some(ch) = chars.next() {
                    match ch {
                        '\'' => break,
                        '"' => out.push_str("\\\""),
                        '\\' => match chars.next() {
                            Some('\'') => out.push('\''),
                            Some(escaped) => {
                                out.push('\\');
                                out.push(escaped);
                            }
                            None => out.push('\\'),
                        },
                        _ => out.push(ch),
                    }
                }
                out.push('"');
            }
            _ => out.push(ch),
        }
    }
    out.into()
}

/// An object's members in the order written (serde_json's maps sort).
struct OrderedMembers(Vec<(String, Box<RawValue>)>);

impl<'de> serde::Deserialize<'de> for OrderedMembers {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = OrderedMembers;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<OrderedMembers, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Box<RawValue>>()? {
                    members.push(member);
                }
                Ok(OrderedMembers(members))
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

/// What a command's reply becomes on the wire: an answer, or nothing (a
/// command without a success response).
pub fn encode_reply(reply: &Reply, id: Option<&RawValue>) -> Option<String> {
    let id = id.map(RawValue::get);
    if reply.code != "0" {
        let class = class::ALL
            .iter()
            .find(|class| **class == reply.code)
            .copied()
            .unwrap_or(class::GENERIC_ERROR);
        return Some(encode_error(class, &reply.message, id));
    }
    if reply.message.is_empty() {
        return None;
    }
    match serde_json::from_str::<&RawValue>(&reply.message) {
        Ok(value) => Some(encode_return(value.get(), id)),
        Err(_) => Some(encode_error(
            class::GENERIC_ERROR,
            "the command answered a return value that is not JSON",
            id,
        )),
    }
}

/// `{"return": VALUE, "id": ID}`, with a newline.
pub fn encode_return(value_json: &str, id: Option<&str>) -> String {
    let mut out = String::with_capacity(value_json.len() + 32);
    out.push_str("{\"return\": ");
    push_qemu_json(&mut out, value_json);
    if let Some(id) = id {
        out.push_str(", \"id\": ");
        push_qemu_json(&mut out, id);
    }
    out.push_str("}\n");
    out
}

/// `{"id": ID, "error": {"class": CLASS, "desc": DESC}}`, with a newline.
pub fn encode_error(class: &str, desc: &str, id: Option<&str>) -> String {
    let mut out = String::with_capacity(desc.len() + 64);
    out.push('{');
    if let Some(id) = id {
        out.push_str("\"id\": ");
        push_qemu_json(&mut out, id);
        out.push_str(", ");
    }
    out.push_str("\"error\": {\"class\": ");
    push_qemu_string(&mut out, class);
    out.push_str(", \"desc\": ");
    push_qemu_string(&mut out, desc);
    out.push_str("}}\n");
    out
}

/// Re-write valid JSON text as QEMU's formatter does: `": "` after keys,
/// `", "` between members and items, strings with non-ASCII escaped.
/// Numbers and literals are copied; member order is kept.
fn push_qemu_json(out: &mut String, json: &str) {
    let mut rest = json;
    while let Some(ch) = rest.chars().next() {
        match ch {
            '"' => {
                let end = string_end(rest);
                match serde_json::from_str::<String>(&rest[..end]) {
                    Ok(text) => push_qemu_string(out, &text),
                    Err(_) => out.push_str(&rest[..end]),
                }
                rest = &rest[end..];
                continue;
            }
            ':' => out.push_str(": "),
            ',' => out.push_str(", "),
            ' ' | '\t' | '\n' | '\r' => {}
            _ => out.push(ch),
        }
        rest = &rest[ch.len_utf8()..];
    }
}

/// The length of the JSON string token at the start of `text`.
fn string_end(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut index = 1;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' => index += 2,
            b'"' => return index + 1,
            _ => index += 1,
        }
    }
    bytes.len()
}

/// A string as QEMU writes it: the usual escapes, and `\uXXXX` (upper
/// case, surrogate pairs above U+FFFF) for controls and everything outside
/// printable ASCII.
fn push_qemu_string(out: &mut String, text: &str) {
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(ch),
            _ => {
                let mut units = [0u16; 2];
                for unit in ch.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04X}");
                }
            }
        }
    }
    out.push('"');
}

/// The protocol's invariants on arbitrary input, shared by the cargo-fuzz
/// target `qga_stream` and a unit test: whatever the bytes and however
/// they are split, decoding never panics, splitting never changes what is
/// decoded, and every answer is one line of valid JSON carrying the id it
/// should.
#[doc(hidden)]
pub fn check_stream(data: &[u8]) {
    let split = data.first().map_or(0, |&byte| usize::from(byte) % (data.len() + 1));
    let (mut whole, mut parts) = (Vec::new(), Vec::new());
    Decoder::default().push(data, &mut whole);
    let mut decoder = Decoder::default();
    decoder.push(&data[..split], &mut parts);
    decoder.push(&data[split..], &mut parts);
    assert_eq!(whole, parts, "splitting the input changed the frames");
    for frame in whole {
        let answer = match frame {
            Frame::Invalid(desc) => encode_error(class::GENERIC_ERROR, &desc, None),
            Frame::Value(text) => match parse(&text) {
                Ok(parsed) => {
                    // Echo the arguments as a command's return value.
                    let reply = Reply::ok(parsed.request.value.get());
                    let answer = encode_reply(&reply, parsed.id.as_deref());
                    let answer = answer.unwrap_or_default();
                    let decoded: serde_json::Value =
                        serde_json::from_str(&answer).unwrap_or_else(|error| panic!("{answer:?}: {error}"));
                    let arguments: serde_json::Value =
                        serde_json::from_str(parsed.request.value.get()).unwrap_or_default();
                    assert_eq!(decoded["return"], arguments, "{answer}");
                    answer
                }
                Err(refused) => refused.encode(),
            },
        };
        assert!(
            answer.is_ascii() && answer.ends_with('\n') && answer.matches('\n').count() == 1,
            "{answer:?}"
        );
        let decoded: serde_json::Value =
            serde_json::from_str(&answer).unwrap_or_else(|error| panic!("{answer:?}: {error}"));
        assert!(
            decoded.get("return").is_some() || decoded["error"]["class"].is_string(),
            "{answer}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[u8]) -> Vec<Frame> {
        let mut decoder = Decoder::default();
        let mut frames = Vec::new();
        decoder.push(input, &mut frames);
        frames
    }

    fn value(text: &str) -> Frame {
        Frame::Value(text.as_bytes().to_vec())
    }

    #[test]
    fn requests_are_cut_by_brace_balance_not_lines() {
        assert_eq!(
            frames(b"{\"execute\":\"guest-ping\"}{\"a\":\"}{\"}\n [1,[2]] "),
            [
                value("{\"execute\":\"guest-ping\"}"),
                value("{\"a\":\"}{\"}"),
                value("[1,[2]]")
            ]
        );
        let mut decoder = Decoder::default();
        let mut out = Vec::new();
        decoder.push(b"{\"execute\":\"gue", &mut out);
        assert!(out.is_empty() && !decoder.is_idle());
        decoder.push(b"st-ping\"}", &mut out);
        assert_eq!(out, [value("{\"execute\":\"guest-ping\"}")]);
    }

    #[test]
    fn a_delimiter_drops_the_partial_request() {
        let mut input = b"{\"execute\":\"gue".to_vec();
        input.push(DELIMITER);
        input.extend_from_slice(b"{\"execute\":\"guest-sync\"}");
        assert_eq!(frames(&input), [value("{\"execute\":\"guest-sync\"}")]);
    }

    #[test]
    fn an_oversized_request_is_refused_once_and_never_buffered() {
        let mut decoder = Decoder::default();
        let mut out = Vec::new();
        decoder.push(b"{\"x\":\"", &mut out);
        let chunk = vec![b'a'; 64 * 1024];
        for _ in 0..40 {
            decoder.push(&chunk, &mut out);
            assert!(decoder.buffer.capacity() <= MAX_REQUEST_BYTES * 2);
        }
        decoder.push(b"}\"}{\"execute\":\"guest-ping\"}", &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0], Frame::Invalid("JSON token size limit exceeded".to_owned()));
        assert_eq!(out[1], value("{\"execute\":\"guest-ping\"}"));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = "[".repeat(MAX_NESTING + 1) + &"]".repeat(MAX_NESTING + 1) + "{}";
        let out = frames(deep.as_bytes());
        assert_eq!(out[0], Frame::Invalid("JSON nesting depth limit exceeded".to_owned()));
        assert_eq!(out[1..], [value("{}")]);
    }

    fn refused(text: &str) -> (String, String, Option<String>) {
        let refused = parse(text.as_bytes()).err().unwrap_or_else(|| panic!("{text} parsed"));
        (refused.class.to_owned(), refused.desc, refused.id)
    }

    #[test]
    fn requests_are_checked_in_qemu_gas_order_with_its_words() {
        let desc = |text: &str| refused(text).1;
        assert_eq!(desc("[]"), "QMP input must be a JSON object");
        assert_eq!(desc("{}"), "QMP input lacks member 'execute'");
        assert_eq!(desc(r#"{"execute":1}"#), "QMP input member 'execute' must be a string");
        assert_eq!(
            desc(r#"{"execute":"guest-ping","foo":1}"#),
            "QMP input member 'foo' is unexpected"
        );
        assert_eq!(
            desc(r#"{"execute":"guest-ping","arguments":null}"#),
            "QMP input member 'arguments' must be an object"
        );
        assert_eq!(
            desc(r#"{"execute":"a","execute":"b"}"#),
            "JSON parse error, duplicate key"
        );
        assert_eq!(
            refused(r#"{"execute":"guest-ping","id":{"a":1},"foo":1}"#).2.as_deref(),
            Some(r#"{"a":1}"#)
        );
    }

    #[test]
    fn a_request_routes_to_its_qga_name_with_its_arguments() {
        let parsed = parse(br#"{'execute': 'guest-sync', 'arguments': {'id': 5}, "id": "x"}"#);
        let parsed = parsed.unwrap_or_else(|refused| panic!("{refused:?}"));
        assert_eq!(parsed.request.name, "qga:guest-sync");
        assert_eq!(parsed.execute(), "guest-sync");
        assert_eq!(parsed.request.value.get(), r#"{"id": 5}"#);
        assert_eq!(parsed.id.map(|id| id.get().to_owned()).as_deref(), Some(r#""x""#));
        let bare = parse(br#"{"execute":"guest-ping"}"#).map(|parsed| parsed.request.value.get().to_owned());
        assert_eq!(bare.ok().as_deref(), Some("{}"));
    }

    #[test]
    fn random_streams_keep_the_invariants() {
        // A deterministic stand-in for the fuzz target, so CI runs it:
        // JSON-ish bytes, 0xFF, quotes and braces, in runs.
        const ALPHABET: &[u8] = b"{}[]\"':,\\ \n0123456789aeu-xecutarg\xff\xfe\xc3\xa9";
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let seeds = [
            &br#"{"execute":"guest-sync","arguments":{"id":1},"id":"x"}"#[..],
            br#"{'execute':'a','arguments':{'k':'v\'q'}}"#,
            b"[[[[{\"a\":\"\\\"}\"}]]]]",
        ];
        for round in 0..3000 {
            let mut data = seeds[round % seeds.len()].to_vec();
            for _ in 0..(next() % 8) {
                let at = (next() as usize) % (data.len() + 1);
                match next() % 3 {
                    0 => data.insert(at, ALPHABET[(next() as usize) % ALPHABET.len()]),
                    1 if at < data.len() => drop(data.remove(at)),
                    _ => data
                        .splice(at..at, seeds[(next() as usize) % seeds.len()].iter().copied())
                        .for_each(drop),
                }
            }
            check_stream(&data);
        }
    }

    #[test]
    fn answers_are_written_as_qemu_writes_them() {
        let id = RawValue::from_string(r#"{"a":[1,2]}"#.to_owned()).ok();
        let reply = Reply::ok(r#"{"name":"é😀","list":[1,2.5,true,null]}"#);
        assert_eq!(
            encode_reply(&reply, id.as_deref()).as_deref(),
            Some(
                "{\"return\": {\"name\": \"\\u00E9\\uD83D\\uDE00\", \"list\": [1, 2.5, true, null]}, \"id\": {\"a\": [1, 2]}}\n"
            )
        );
        assert_eq!(
            encode_reply(&Reply::new("DeviceNotFound", "no \"x\""), id.as_deref()).as_deref(),
            Some("{\"id\": {\"a\": [1, 2]}, \"error\": {\"class\": \"DeviceNotFound\", \"desc\": \"no \\\"x\\\"\"}}\n")
        );
        assert_eq!(
            encode_reply(&Reply::error("trap"), None).as_deref(),
            Some("{\"error\": {\"class\": \"GenericError\", \"desc\": \"trap\"}}\n")
        );
        assert_eq!(encode_reply(&Reply::ok(""), None), None);
        assert!(encode_reply(&Reply::ok("not json"), None).is_some_and(|answer| answer.contains("GenericError")));
    }

    #[test]
    fn the_allow_list_narrows_and_the_block_list_removes() {
        let names: Vec<String> = ["qga:guest-ping", "qga:guest-shutdown", "password"]
            .map(str::to_owned)
            .to_vec();
        let block = RpcFilter {
            allow: None,
            block: ["guest-shutdown".to_owned()].into(),
        };
        assert!(block.is_enabled("guest-ping") && !block.is_enabled("guest-shutdown"));
        assert_eq!(block.disabled(&names), ["qga:guest-shutdown"]);
        let allow = RpcFilter {
            allow: Some(["guest-ping".to_owned()].into()),
            block: BTreeSet::new(),
        };
        assert_eq!(allow.disabled(&names), ["qga:guest-shutdown"]);
        assert!(RpcFilter::default().disabled(&names).is_empty());
    }

    #[test]
    fn frozen_filesystems_leave_only_qemu_gas_few_commands_enabled() {
        let names: Vec<String> = [
            "qga:guest-ping",
            "qga:guest-fsfreeze-thaw",
            "qga:guest-fsfreeze-freeze",
            "qga:guest-get-time",
            "password",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(
            disabled_while_frozen(&names),
            ["qga:guest-fsfreeze-freeze", "qga:guest-get-time"]
        );
        let refusal = frozen_refusal("guest-get-host-name");
        assert_eq!(
            encode_reply(&refusal, None).as_deref(),
            Some(
                "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Command guest-get-host-name has been disabled: the agent is in frozen state\"}}\n"
            )
        );
    }
}
