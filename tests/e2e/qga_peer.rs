//! The `qga` component's read-only commands beside Debian's real qemu-ga,
//! both on the real machine (no `--root`: both describe this machine), each
//! on a unix socket, asked the same things: the same members in the same
//! order with the same JSON types, equal values where they describe the
//! same machine, byte-identical answers where nothing can differ.

use guestward_tests::AgentBuilder;
use guestward_tests::peer::{QemuGa, QgaConnection};
use serde_json::Value;

/// The two agents, and a connection to each.
struct Peers {
    ours: QgaConnection,
    theirs: QgaConnection,
    _agent: guestward_tests::Agent,
    _qemu_ga: QemuGa,
    _policy_dir: tempfile::TempDir,
}

impl Peers {
    fn start() -> Self {
        let (qemu_ga, _) = QemuGa::start().expect("start qemu-ga");
        let policy_dir = tempfile::tempdir().unwrap();
        let agent = AgentBuilder::new()
            .host_root()
            .qga()
            .policy(guestward::policy::DEFAULT_POLICY)
            .config("")
            .arg("--no-qga-device")
            .arg("--policy-dir")
            .arg(policy_dir.path().to_str().unwrap())
            .start();
        let ours = QgaConnection::open(&agent.qga_socket())
            .unwrap_or_else(|error| panic!("connect to our QGA socket: {error}\n{}", agent.log()));
        Self {
            theirs: qemu_ga.connect().expect("connect to qemu-ga"),
            ours,
            _agent: agent,
            _qemu_ga: qemu_ga,
            _policy_dir: policy_dir,
        }
    }

    /// Both raw answers to `request`.
    fn both_bytes(&mut self, request: &str) -> (String, String) {
        let ours = self.ours.request_bytes(request).expect("our answer");
        let theirs = self.theirs.request_bytes(request).expect("qemu-ga's answer");
        (
            String::from_utf8_lossy(&ours).into_owned(),
            String::from_utf8_lossy(&theirs).into_owned(),
        )
    }

    /// Both `return` values (and the answers' texts), after checking that
    /// the members come in the same order.
    fn both(&mut self, request: &str) -> (Value, Value) {
        let (ours, theirs) = self.both_bytes(request);
        let parse = |text: &str| -> Value {
            let value: Value = serde_json::from_str(text).unwrap_or_else(|error| panic!("{error}: {text}"));
            value
                .get("return")
                .cloned()
                .unwrap_or_else(|| panic!("{request} failed: {text}"))
        };
        (parse(&ours), parse(&theirs))
    }
}

/// The object member names of a JSON text, in the order they are written.
fn member_order(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut names = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] != b'"' {
            index += 1;
            continue;
        }
        let start = index + 1;
        index += 1;
        while index < bytes.len() && bytes[index] != b'"' {
            index += if bytes[index] == b'\\' { 2 } else { 1 };
        }
        let end = index.min(bytes.len());
        index += 1;
        let rest = text[index.min(text.len())..].trim_start();
        if rest.starts_with(':') {
            names.push(text[start..end].to_owned());
        }
    }
    names
}

/// Same JSON type at every level, and the same members in objects (arrays:
/// element by element, up to the shorter).
fn assert_same_shape(ours: &Value, theirs: &Value, path: &str) {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let (mut names_a, mut names_b): (Vec<_>, Vec<_>) = (a.keys().collect(), b.keys().collect());
            names_a.sort();
            names_b.sort();
            assert_eq!(names_a, names_b, "members of {path}");
            for (name, value) in a {
                assert_same_shape(value, &b[name], &format!("{path}.{name}"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (index, (x, y)) in a.iter().zip(b).enumerate() {
                assert_same_shape(x, y, &format!("{path}[{index}]"));
            }
        }
        (Value::Number(a), Value::Number(b)) => {
            assert_eq!(
                (a.is_i64(), a.is_u64()),
                (b.is_i64(), b.is_u64()),
                "integer-ness of {path}"
            );
        }
        (a, b) => assert_eq!(
            std::mem::discriminant(a),
            std::mem::discriminant(b),
            "type of {path}: {a} vs {b}"
        ),
    }
}

#[test]
fn read_only_commands_answer_as_qemu_ga_answers_on_the_same_machine() {
    let mut peers = Peers::start();

    // Nothing differs: the same bytes.
    for request in [
        r#"{"execute":"guest-ping"}"#,
        r#"{"execute":"guest-ping","id":"abc"}"#,
        r#"{"execute":"guest-sync", "arguments":{"id":1796151436780}}"#,
        r#"{"execute":"guest-sync","arguments":{"id":-9223372036854775808},"id":7}"#,
        r#"{"execute":"guest-sync-delimited","arguments":{"id":123}}"#,
        r#"{"execute":"guest-get-host-name"}"#,
        r#"{"execute":"guest-get-osinfo"}"#,
        r#"{"execute":"guest-get-timezone"}"#,
        r#"{"execute":"guest-get-users"}"#,
    ] {
        let (ours, theirs) = peers.both_bytes(request);
        assert_eq!(ours, theirs, "{request}");
    }
    // Argument errors: the same words.
    for request in [
        r#"{"execute":"guest-sync","arguments":{}}"#,
        r#"{"execute":"guest-sync","arguments":{"id":1.5}}"#,
        r#"{"execute":"guest-sync","arguments":{"id":"5"}}"#,
        r#"{"execute":"guest-sync-delimited","arguments":{"id":9223372036854775808}}"#,
        r#"{"execute":"guest-get-osinfo","arguments":{"x":1}}"#,
        r#"{"execute":"guest-network-get-interfaces","arguments":{"verbose":true}}"#,
    ] {
        let (ours, theirs) = peers.both_bytes(request);
        assert_eq!(ours, theirs, "{request}");
    }

    // The values of this machine, as both see it.
    let (ours, theirs) = peers.both(r#"{"execute":"guest-get-host-name"}"#);
    assert_eq!(ours["host-name"], theirs["host-name"]);
    let (ours, theirs) = peers.both(r#"{"execute":"guest-get-osinfo"}"#);
    assert_eq!(ours, theirs);
    assert!(
        ours.get("kernel-release").is_some() && ours.get("id").is_some(),
        "{ours}"
    );

    // The time: within a few seconds (and microsecond resolution, both).
    let (ours, theirs) = peers.both(r#"{"execute":"guest-get-time"}"#);
    let (ours, theirs) = (ours.as_i64().unwrap(), theirs.as_i64().unwrap());
    assert!((ours - theirs).abs() < 5_000_000_000, "{ours} vs {theirs}");
    assert_eq!((ours % 1000, theirs % 1000), (0, 0));
}

#[test]
fn interfaces_and_info_match_qemu_ga_member_by_member() {
    let mut peers = Peers::start();

    let request = r#"{"execute":"guest-network-get-interfaces"}"#;
    let (ours_text, theirs_text) = peers.both_bytes(request);
    let (ours, theirs) = peers.both(request);
    assert_same_shape(&ours, &theirs, "interfaces");
    let summary = |interfaces: &Value| -> Vec<(Value, Value, Value, bool)> {
        interfaces
            .as_array()
            .unwrap()
            .iter()
            .map(|nic| {
                (
                    nic["name"].clone(),
                    nic["hardware-address"].clone(),
                    nic["ip-addresses"].clone(),
                    nic.get("statistics").is_some(),
                )
            })
            .collect()
    };
    // Names, order, hardware and IP addresses and which have counters are
    // equal; the counters themselves move with the traffic.
    assert_eq!(summary(&ours), summary(&theirs));
    assert!(
        summary(&ours).iter().any(|(name, ..)| name == "lo"),
        "loopback is listed: {ours}"
    );
    for nic in ours.as_array().unwrap().iter().filter_map(|nic| nic.get("statistics")) {
        assert_eq!(nic.as_object().unwrap().len(), 8, "{nic}");
    }
    // The first interface (lo) has its members in qemu-ga's order.
    let first_entry = |text: &str| -> Vec<String> {
        let names = member_order(text);
        let next = names
            .iter()
            .skip(1)
            .position(|name| name == "name")
            .map_or(names.len(), |at| at + 1);
        names[..next].to_vec()
    };
    assert_eq!(first_entry(&ours_text), first_entry(&theirs_text));

    let request = r#"{"execute":"guest-info"}"#;
    let (ours_text, theirs_text) = peers.both_bytes(request);
    assert_eq!(member_order(&ours_text)[..5], member_order(&theirs_text)[..5]);
    let (ours, theirs) = peers.both(request);
    assert_same_shape(&ours, &theirs, "guest-info");
    assert_eq!(ours["version"], env!("CARGO_PKG_VERSION"));
    let theirs_by_name = |name: &Value| {
        theirs["supported_commands"]
            .as_array()
            .unwrap()
            .iter()
            .find(|command| command["name"] == *name)
            .cloned()
    };
    let ours = ours["supported_commands"].as_array().unwrap();
    for name in [
        "guest-ping",
        "guest-info",
        "guest-sync",
        "guest-sync-delimited",
        "guest-get-host-name",
        "guest-get-osinfo",
        "guest-get-timezone",
        "guest-get-time",
        "guest-network-get-interfaces",
        "guest-get-users",
    ] {
        assert!(ours.iter().any(|command| command["name"] == name), "{name} in {ours:?}");
    }
    for command in ours {
        let theirs = theirs_by_name(&command["name"]).unwrap_or_else(|| panic!("qemu-ga has no {command}"));
        assert_eq!(*command, theirs, "enabled and success-response as qemu-ga's");
    }
}
