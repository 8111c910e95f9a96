//! How bytes become requests and replies.
//!
//! [`nova`] is the Nova XenAPI agent protocol (JSON `{name, value}` in,
//! `{"message": …, "returncode": …}` out). Other protocols (QGA) get a module
//! of their own that produces the same [`Request`] and consumes the same
//! [`Reply`].

pub mod nova;

use serde_json::value::RawValue;

/// One parsed request: a command name and the JSON text of its value.
#[derive(Debug)]
pub struct Request {
    pub name: String,
    /// Exactly the JSON text the sender wrote (`""` when absent), so that no
    /// precision or formatting is lost on the way to the command.
    pub value: Box<RawValue>,
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The protocol's return code: `0`, `D0`, `404`, `500`.
    pub code: String,
    pub message: String,
}

impl Reply {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }

    /// Return code `0`.
    pub fn ok(message: impl Into<String>) -> Self {
        Self::new("0", message)
    }

    /// Return code `500`.
    pub fn error(message: impl Into<String>) -> Self {
        Self::new("500", message)
    }

    /// Return code `404`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new("404", message)
    }

    /// True for the codes that mean success (`0`, and `D0` for keyinit).
    pub fn is_success(&self) -> bool {
        matches!(self.code.as_str(), "0" | "D0")
    }
}
