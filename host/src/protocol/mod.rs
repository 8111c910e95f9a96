//! How bytes become requests and replies.
//!
//! [`nova`] is the Nova XenAPI agent protocol (JSON `{name, value}` in,
//! `{"message": …, "returncode": …}` out); [`qga`] is the QEMU guest agent
//! protocol (`{"execute", "arguments"}` in, `{"return"}` or `{"error"}`
//! out). Both produce the same [`Request`] and consume the same [`Reply`]:
//! a command's name says which protocol it belongs to ([`Protocol`]).

pub mod nova;
pub mod qga;

use serde_json::value::RawValue;

/// The protocol a command name belongs to. Components name QGA commands
/// with the prefix `qga:` (`qga:guest-ping`); plain names are Nova
/// commands. An exchange routes only its own protocol's names, so the
/// hypervisor of one protocol can never reach the other's commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Nova,
    Qga,
}

impl Protocol {
    const QGA_PREFIX: &'static str = "qga:";

    /// The protocol of a component's command name, and the name as that
    /// protocol spells it (`guest-ping` for `qga:guest-ping`).
    pub fn of(name: &str) -> (Self, &str) {
        match name.strip_prefix(Self::QGA_PREFIX) {
            Some(plain) => (Self::Qga, plain),
            None => (Self::Nova, name),
        }
    }

    /// The command name a component declares for this protocol's `name`.
    pub fn command_name(self, name: &str) -> String {
        match self {
            Self::Nova => name.to_owned(),
            Self::Qga => format!("{}{name}", Self::QGA_PREFIX),
        }
    }
}

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
