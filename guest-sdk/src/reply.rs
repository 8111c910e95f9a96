//! The answer to one request.

use std::borrow::Cow;

pub use crate::bindings::guestward::command::types::Reply;

impl Reply {
    /// A reply with any return code (`0`, `D0`, `404`, `500`, …).
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }

    /// Success: return code `0`.
    pub fn ok(message: impl Into<String>) -> Self {
        Self::new("0", message)
    }

    /// Failure: return code `500`, with a message that says what went wrong.
    pub fn error(message: impl Into<String>) -> Self {
        Self::new("500", message)
    }
}

impl<E: std::fmt::Display> From<Result<String, E>> for Reply {
    fn from(result: Result<String, E>) -> Self {
        match result {
            Ok(message) => Self::ok(message),
            Err(error) => Self::error(error.to_string()),
        }
    }
}

/// How many characters of a value [`excerpt`] shows by default.
pub const EXCERPT_CHARS: usize = 200;

/// At most `max_chars` characters of `text`, with `...` after them when
/// it is cut: for quoting a request's value (or anything the requester
/// chose) in a reply. A requester can send megabytes, and a reply over
/// the command's reply limit (16 KiB by default) never reaches the
/// requester: it gets the daemon's "replied with N bytes" error instead
/// of the command's own words. The daemon cuts the values it quotes in
/// its own error texts the same way, at [`EXCERPT_CHARS`].
///
/// ```
/// use guestward_sdk::excerpt;
///
/// assert_eq!(excerpt("web1", 200), "web1");
/// assert_eq!(excerpt(&"x".repeat(100_000), 3), "xxx...");
/// ```
pub fn excerpt(text: &str, max_chars: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => Cow::Owned(format!("{}...", &text[..cut])),
        None => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_cut_on_character_boundaries() {
        assert_eq!(excerpt("", 0), "");
        assert_eq!(excerpt("ab", 2), "ab");
        assert_eq!(excerpt("abc", 2), "ab...");
        assert_eq!(excerpt("ééé", 1), "é...");
    }
}
