//! Commands of the QEMU guest agent protocol (QGA), as qemu-ga answers
//! them.
//!
//! A component answers a QGA command by listing it in
//! [`Command::NAMES`](crate::Command::NAMES) with the prefix [`PREFIX`]:
//! `"qga:guest-ping"`. The daemon's QGA exchange routes `{"execute":
//! "guest-ping", "arguments": {…}}` to it with the JSON text of
//! `arguments` as the request's value (`{}` when there were none); the
//! Nova exchanges never route a `qga:` name.
//!
//! The reply is the protocol's answer: [`ok`] carries the `return` value,
//! [`error`] an error class and its description, and [`no_response`]
//! answers nothing (`guest-shutdown`, which qemu-ga never answers on
//! success). [`Arguments`] reads the arguments the way qemu-ga's QAPI
//! visitor does, with its words for a missing, mistyped or unexpected
//! parameter.
//!
//! ```
//! use guestward_sdk::{Reply, Request, qga};
//!
//! fn handle(request: Request<'_>) -> Reply {
//!     let mut arguments = match qga::Arguments::of(&request) {
//!         Ok(arguments) => arguments,
//!         Err(reply) => return reply,
//!     };
//!     let id: i64 = match arguments.required("id") {
//!         Ok(id) => id,
//!         Err(reply) => return reply,
//!     };
//!     if let Err(reply) = arguments.finish() {
//!         return reply;
//!     }
//!     qga::ok(id)
//! }
//!
//! let reply = handle(Request::new("qga:guest-sync", r#"{"id": 7}"#));
//! assert_eq!((reply.code.as_str(), reply.message.as_str()), ("0", "7"));
//! let reply = handle(Request::new("qga:guest-sync", "{}"));
//! assert_eq!(reply.code, "GenericError");
//! assert_eq!(reply.message, "Parameter 'id' is missing");
//! ```

use serde_json::{Map, Value};

use crate::{Reply, Request};

/// The prefix of QGA command names in a component's names.
pub const PREFIX: &str = "qga:";

/// The protocol's name of a request's command: `guest-ping` for the
/// request named `qga:guest-ping`.
pub fn execute_name<'a>(request: &Request<'a>) -> &'a str {
    let name = request.name();
    name.strip_prefix(PREFIX).unwrap_or(name)
}

/// The error classes of the protocol (QAPI's `QapiErrorClass`). qemu-ga
/// answers nearly every failure with [`ErrorClass::GenericError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Any failure without a class of its own.
    GenericError,
    /// The command does not exist, or the operator disabled it.
    CommandNotFound,
    /// A device exists but is not active.
    DeviceNotActive,
    /// A device named by the arguments does not exist.
    DeviceNotFound,
}

impl ErrorClass {
    /// The class as the protocol spells it (also the reply's code).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GenericError => "GenericError",
            Self::CommandNotFound => "CommandNotFound",
            Self::DeviceNotActive => "DeviceNotActive",
            Self::DeviceNotFound => "DeviceNotFound",
        }
    }
}

/// Success, returning `value` (`serde_json::json!({})` for a command that
/// returns nothing, as qemu-ga does).
pub fn ok(value: impl Into<Value>) -> Reply {
    Reply::ok(value.into().to_string())
}

/// Success without any answer: the exchange writes nothing back (only
/// `guest-shutdown` and the suspend commands do this in qemu-ga).
pub fn no_response() -> Reply {
    Reply::ok("")
}

/// Failure: `{"error": {"class": class, "desc": desc}}`.
pub fn error(class: ErrorClass, desc: impl Into<String>) -> Reply {
    Reply::new(class.as_str(), desc)
}

/// Failure of class `GenericError`, qemu-ga's usual one.
pub fn generic_error(desc: impl Into<String>) -> Reply {
    error(ErrorClass::GenericError, desc)
}

/// The arguments of one request, taken one by one: each parameter read
/// is removed, and [`Arguments::finish`] refuses any left over, as qemu-ga
/// refuses a parameter its command does not declare.
#[derive(Debug, Clone, Default)]
pub struct Arguments {
    members: Map<String, Value>,
}

impl Arguments {
    /// The request's arguments: a JSON object, or none (`{}`, `null` or an
    /// empty value).
    pub fn of(request: &Request<'_>) -> Result<Self, Reply> {
        let raw = request.raw_value().trim();
        if raw.is_empty() {
            return Ok(Self::default());
        }
        match serde_json::from_str(raw) {
            Ok(Value::Object(members)) => Ok(Self { members }),
            Ok(Value::Null) => Ok(Self::default()),
            _ => Err(generic_error("QMP input member 'arguments' must be an object")),
        }
    }

    /// The parameter `name`, which the command requires.
    pub fn required<T: Parameter>(&mut self, name: &str) -> Result<T, Reply> {
        self.optional(name)?
            .ok_or_else(|| generic_error(format!("Parameter '{name}' is missing")))
    }

    /// The parameter `name` if it was given (`null` counts as given, and is
    /// refused unless `T` accepts it, as qemu-ga does).
    pub fn optional<T: Parameter>(&mut self, name: &str) -> Result<Option<T>, Reply> {
        let Some(value) = self.members.remove(name) else {
            return Ok(None);
        };
        T::from_json(&value, name).map(Some)
    }

    /// Refuse parameters the command does not take.
    pub fn finish(self) -> Result<(), Reply> {
        match self.members.keys().next() {
            Some(name) => Err(generic_error(format!("Parameter '{name}' is unexpected"))),
            None => Ok(()),
        }
    }
}

/// A type a parameter can have, read as QAPI's input visitor reads it.
pub trait Parameter: Sized {
    /// The value of the parameter `name`, or the error qemu-ga gives.
    fn from_json(value: &Value, name: &str) -> Result<Self, Reply>;
}

/// qemu-ga's words for a parameter of the wrong JSON type.
fn invalid_type(name: &str, expected: &str) -> Reply {
    generic_error(format!("Invalid parameter type for '{name}', expected: {expected}"))
}

impl Parameter for String {
    fn from_json(value: &Value, name: &str) -> Result<Self, Reply> {
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| invalid_type(name, "string"))
    }
}

impl Parameter for bool {
    fn from_json(value: &Value, name: &str) -> Result<Self, Reply> {
        value.as_bool().ok_or_else(|| invalid_type(name, "boolean"))
    }
}

impl Parameter for i64 {
    fn from_json(value: &Value, name: &str) -> Result<Self, Reply> {
        value.as_i64().ok_or_else(|| invalid_type(name, "integer"))
    }
}

impl Parameter for u64 {
    fn from_json(value: &Value, name: &str) -> Result<Self, Reply> {
        value.as_u64().ok_or_else(|| invalid_type(name, "integer"))
    }
}

impl Parameter for Value {
    fn from_json(value: &Value, _name: &str) -> Result<Self, Reply> {
        Ok(value.clone())
    }
}

impl<T: Parameter> Parameter for Vec<T> {
    fn from_json(value: &Value, name: &str) -> Result<Self, Reply> {
        let items = value.as_array().ok_or_else(|| invalid_type(name, "array"))?;
        items
            .iter()
            .enumerate()
            .map(|(index, item)| T::from_json(item, &format!("{name}[{index}]")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arguments(value: &str) -> Result<Arguments, Reply> {
        Arguments::of(&Request::new("qga:guest-test", value))
    }

    #[test]
    fn absent_arguments_are_empty_and_non_objects_are_refused() {
        for none in ["", "{}", "null", " "] {
            assert!(arguments(none).is_ok_and(|a| a.finish().is_ok()), "{none:?}");
        }
        for bad in ["[]", "1", "\"x\"", "{"] {
            let reply = arguments(bad).err();
            assert_eq!(reply.map(|r| r.code), Some("GenericError".to_owned()), "{bad:?}");
        }
    }

    #[test]
    fn parameters_are_typed_with_qemu_gas_words() {
        let mut args = arguments(r#"{"username": 5, "crypted": "yes", "keys": ["a", 1]}"#).unwrap_or_default();
        let words = |reply: Reply| (reply.code, reply.message);
        assert_eq!(
            args.required::<String>("username").map_err(words),
            Err((
                "GenericError".into(),
                "Invalid parameter type for 'username', expected: string".into()
            ))
        );
        assert_eq!(
            args.optional::<bool>("crypted").map_err(words).err().map(|e| e.1),
            Some("Invalid parameter type for 'crypted', expected: boolean".into())
        );
        assert_eq!(
            args.required::<Vec<String>>("keys").map_err(words).err().map(|e| e.1),
            Some("Invalid parameter type for 'keys[1]', expected: string".into())
        );
        assert_eq!(
            args.required::<i64>("id").map_err(words).err().map(|e| e.1),
            Some("Parameter 'id' is missing".into())
        );
    }

    #[test]
    fn leftover_parameters_are_unexpected() {
        let mut args = arguments(r#"{"id": 1, "extra": true}"#).unwrap_or_default();
        assert_eq!(args.required::<i64>("id").ok(), Some(1));
        assert_eq!(
            args.finish().err().map(|reply| reply.message),
            Some("Parameter 'extra' is unexpected".into())
        );
    }

    #[test]
    fn replies_carry_the_return_value_or_the_class() {
        let reply = ok(serde_json::json!({"a": [1]}));
        assert_eq!((reply.code.as_str(), reply.message.as_str()), ("0", r#"{"a":[1]}"#));
        assert_eq!(no_response().message, "");
        let reply = error(ErrorClass::DeviceNotFound, "no such thing");
        assert_eq!(reply.code, "DeviceNotFound");
        assert_eq!(execute_name(&Request::new("qga:guest-ping", "")), "guest-ping");
    }
}
