//! One request, as the hypervisor sent it.

/// A request: the command name and the JSON text of its value.
///
/// The value is kept as text so that nothing is lost in conversion (the
/// public key of `keyinit` can be a 33-digit JSON number); parse it with
/// [`Request::json`] or read a string with [`Request::string`].
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    name: &'a str,
    value: &'a str,
}

impl<'a> Request<'a> {
    /// A request for `name` whose value is the JSON text `value`.
    pub fn new(name: &'a str, value: &'a str) -> Self {
        Self { name, value }
    }

    /// The command name (one of the component's names).
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The JSON text of the value, exactly as received (`""` when absent).
    pub fn raw_value(&self) -> &'a str {
        self.value
    }

    /// The value parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(self.value)
    }

    /// The value if it is a JSON string.
    pub fn string(&self) -> Option<String> {
        match self.json() {
            Ok(serde_json::Value::String(text)) => Some(text),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Request;

    #[test]
    fn string_values_are_unquoted() {
        assert_eq!(Request::new("x", r#""a\nb""#).string().as_deref(), Some("a\nb"));
        assert_eq!(Request::new("x", "5").string(), None);
    }

    #[test]
    fn raw_value_keeps_big_numbers_intact() {
        let raw = "162259276829213363391578010288127";
        assert_eq!(Request::new("keyinit", raw).raw_value(), raw);
    }
}
