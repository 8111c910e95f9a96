//! libvirt as a guest agent's client: the requests its `qemu_agent.c`
//! writes (tests/fixtures/libvirt-agent-calls.json) and what it requires of
//! each reply before it accepts it. The rules are read from libvirt's
//! parsing of each reply (see tests/fixtures/README.md): exactly the
//! members it requires, with the types it reads them as; nothing more.

use serde_json::Value;

/// One agent call of libvirt's.
#[derive(Debug, Clone)]
pub struct AgentCall {
    /// The libvirt API that makes it.
    pub call: String,
    /// The request object.
    pub request: Value,
    /// The line libvirt writes, without its "\n".
    pub wire: String,
}

impl AgentCall {
    /// The command (`guest-ping`).
    pub fn execute(&self) -> &str {
        self.request["execute"].as_str().unwrap_or_default()
    }
}

/// Every call of the fixture, in its order.
pub fn agent_calls() -> Vec<AgentCall> {
    let fixture: Value = serde_json::from_str(include_str!("../fixtures/libvirt-agent-calls.json"))
        .expect("the libvirt fixture is JSON");
    fixture
        .as_array()
        .expect("the libvirt fixture is an array")
        .iter()
        .map(|entry| AgentCall {
            call: entry["call"].as_str().unwrap_or_default().to_owned(),
            request: entry["request"].clone(),
            wire: entry["wire"].as_str().unwrap_or_default().to_owned(),
        })
        .collect()
}

/// Whether libvirt accepts `line` (one answer, as read from the socket) as
/// the reply to `request`: libvirt splits what it reads on "\n" and parses
/// each line as one JSON object, then checks the members below.
pub fn accepts(request: &Value, line: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(line).map_err(|_| "the reply is not UTF-8".to_owned())?;
    let body = text.strip_suffix('\n').ok_or("the reply does not end with a newline")?;
    if body.contains('\n') {
        return Err("the reply spans several lines".into());
    }
    let reply: Value = serde_json::from_str(body).map_err(|error| format!("the reply is not JSON: {error}"))?;
    if let Some(error) = reply.get("error") {
        return Err(format!("the agent answered an error: {error}"));
    }
    let value = reply.get("return").ok_or("the reply has no `return`")?;
    let execute = request["execute"].as_str().unwrap_or_default();
    check_return(execute, &request["arguments"], value).map_err(|problem| format!("{execute}: {problem}"))
}

/// What libvirt reads from the `return` of `execute`.
fn check_return(execute: &str, arguments: &Value, value: &Value) -> Result<(), String> {
    match execute {
        // qemuAgentGuestSync: the id back, read as an unsigned long long.
        "guest-sync" => match (value.as_u64(), arguments["id"].as_u64()) {
            (Some(got), Some(sent)) if got == sent => Ok(()),
            _ => Err(format!("`return` {value} is not the id {}", arguments["id"])),
        },
        // qemuAgentFSFreeze / qemuAgentFSThaw: a count, read as an int.
        "guest-fsfreeze-freeze" | "guest-fsfreeze-freeze-list" | "guest-fsfreeze-thaw" => int(value).map(drop),
        // qemuAgentGetTime: nanoseconds, read as an unsigned long long.
        "guest-get-time" => value
            .as_u64()
            .map(drop)
            .ok_or_else(|| format!("`return` {value} is not a u64")),
        "guest-network-get-interfaces" => interfaces(value),
        "guest-get-host-name" => string(object(value)?, "host-name").map(drop),
        "guest-get-users" => users(value),
        // qemuAgentGetOSInfo: an object; each member it knows is taken
        // only when it is a string.
        "guest-get-osinfo" => object(value).map(drop),
        "guest-get-timezone" => {
            let zone = object(value)?;
            optional_string(zone, "zone")?;
            int(zone.get("offset").ok_or("`offset` is missing")?).map(drop)
        }
        "guest-ssh-get-authorized-keys" => {
            let keys = object(value)?
                .get("keys")
                .and_then(Value::as_array)
                .ok_or("`keys` is not an array")?;
            match keys.iter().all(Value::is_string) {
                true => Ok(()),
                false => Err("a key is not a string".into()),
            }
        }
        // Everything else (set-user-password, the ssh changes, and what
        // `virsh qemu-agent-command` sends: ping, info, fsfreeze-status)
        // needs only a `return`.
        _ => Ok(()),
    }
}

/// qemuAgentGetInterfaces: every entry needs a `name`; its addresses,
/// when it has any, a type of "ipv4" or "ipv6", the address and a prefix.
fn interfaces(value: &Value) -> Result<(), String> {
    for interface in value.as_array().ok_or("`return` is not an array")? {
        let interface = object(interface)?;
        string(interface, "name")?;
        optional_string(interface, "hardware-address")?;
        let Some(addresses) = interface.get("ip-addresses").and_then(Value::as_array) else {
            continue;
        };
        for address in addresses {
            let address = object(address)?;
            match string(address, "ip-address-type")? {
                "ipv4" | "ipv6" => {}
                other => return Err(format!("unknown ip address type {other:?}")),
            }
            string(address, "ip-address")?;
            let prefix = address.get("prefix").and_then(Value::as_u64);
            if prefix.is_none_or(|prefix| prefix > u64::from(u32::MAX)) {
                return Err("malformed 'prefix' field".into());
            }
        }
    }
    Ok(())
}

/// qemuAgentGetUsers: `user`, `login-time` (read as a double), and an
/// optional `domain`.
fn users(value: &Value) -> Result<(), String> {
    for user in value.as_array().ok_or("`return` is not an array")? {
        let user = object(user)?;
        string(user, "user")?;
        optional_string(user, "domain")?;
        if !user.get("login-time").is_some_and(Value::is_number) {
            return Err("'login-time' missing".into());
        }
    }
    Ok(())
}

type Object = serde_json::Map<String, Value>;

fn object(value: &Value) -> Result<&Object, String> {
    value.as_object().ok_or_else(|| format!("{value} is not an object"))
}

fn string<'a>(object: &'a Object, member: &str) -> Result<&'a str, String> {
    object
        .get(member)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("`{member}` is missing or not a string"))
}

/// A member libvirt reads only when present: it must then be a string.
fn optional_string(object: &Object, member: &str) -> Result<(), String> {
    match object.get(member) {
        None | Some(Value::String(_)) => Ok(()),
        Some(other) => Err(format!("`{member}` is {other}, not a string")),
    }
}

/// A number libvirt reads with virJSONValueObjectGetNumberInt: an integer
/// that fits an int.
fn int(value: &Value) -> Result<i32, String> {
    value
        .as_i64()
        .and_then(|number| i32::try_from(number).ok())
        .ok_or_else(|| format!("{value} is not an int"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(execute: &str, arguments: &str) -> Value {
        serde_json::from_str(&format!(r#"{{"execute":"{execute}","arguments":{arguments}}}"#)).unwrap()
    }

    #[test]
    fn every_fixture_entry_is_a_request_libvirt_writes() {
        let calls = agent_calls();
        assert!(calls.len() >= 20);
        for call in &calls {
            let wire: Value = serde_json::from_str(&call.wire).unwrap();
            assert_eq!(wire, call.request, "{}", call.call);
            assert!(call.execute().starts_with("guest-"), "{}", call.call);
        }
        // libvirt's sync line is printf'd with a space; the rest compact.
        assert!(calls[0].wire.starts_with(r#"{"execute":"guest-sync", "arguments""#));
        for call in &calls[1..] {
            assert!(
                !call.wire.contains("\": ") && !call.wire.contains(", \""),
                "{}",
                call.wire
            );
        }
    }

    #[test]
    fn replies_libvirt_refuses_are_refused() {
        let sync = request("guest-sync", r#"{"id":5}"#);
        assert_eq!(accepts(&sync, b"{\"return\": 5}\n"), Ok(()));
        for refused in [
            &b"{\"return\": 6}\n"[..],
            b"{\"return\": 5}",
            b"\xff{\"return\": 5}\n",
            b"{\"return\":\n5}\n",
            b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"x\"}}\n",
            b"{\"id\": 5}\n",
        ] {
            assert!(accepts(&sync, refused).is_err(), "{}", String::from_utf8_lossy(refused));
        }
        let interfaces = request("guest-network-get-interfaces", "{}");
        assert!(accepts(&interfaces, b"{\"return\": [{\"name\": \"lo\"}]}\n").is_ok());
        assert!(accepts(&interfaces, b"{\"return\": [{\"hardware-address\": \"x\"}]}\n").is_err());
        let ipv5 = br#"{"return": [{"name": "e", "ip-addresses": [{"ip-address-type": "ipv5", "ip-address": "1", "prefix": 8}]}]}"#;
        assert!(accepts(&interfaces, &[&ipv5[..], b"\n"].concat()).is_err());
        let timezone = request("guest-get-timezone", "{}");
        assert!(accepts(&timezone, b"{\"return\": {\"zone\": \"UTC\"}}\n").is_err());
        assert!(accepts(&timezone, b"{\"return\": {\"offset\": 3600}}\n").is_ok());
        let users = request("guest-get-users", "{}");
        assert!(accepts(&users, b"{\"return\": [{\"user\": \"a\", \"login-time\": 1.5}]}\n").is_ok());
        assert!(accepts(&users, b"{\"return\": [{\"user\": \"a\"}]}\n").is_err());
        let freeze = request("guest-fsfreeze-thaw", "{}");
        assert!(accepts(&freeze, b"{\"return\": 1.0}\n").is_err());
        let keys = request("guest-ssh-get-authorized-keys", r#"{"username":"u"}"#);
        assert!(accepts(&keys, b"{\"return\": {\"keys\": []}}\n").is_ok());
        assert!(accepts(&keys, b"{\"return\": []}\n").is_err());
    }
}
