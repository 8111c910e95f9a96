//! The answer to one request.

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
