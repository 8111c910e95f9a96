//! The WIT compatibility rule, checked against a binary: within 1.x the
//! package only grows, so a component built against 1.0.0 (kept as
//! `tests/fixtures/compat-1.0.0.wasm`, never rebuilt) loads and calls every
//! function of every interface on this host, through a real daemon and a
//! real xenstored.

use std::path::PathBuf;

use guestward_tests::AgentBuilder;

use crate::{AGENT_VERSION, Guest, answer};

/// Every interface granted, as an operator would for this component.
const COMPAT_POLICY: &str = r#"
[component.compat]
files = [{ path = "/data", access = "read-write" }]
xenstore = ["vm-data/compat"]
programs = [["/bin/echo", "*"]]
hostname = true
network = true
download = ["http://127.0.0.1/compat/"]
update = true
settings = { compat = "from the policy" }
"#;

const NICS: &str = r#"[{"name":"eth0","mac":"bc:76:4e:20:5e:b2","up":true}]"#;

/// The fixture under the name the policy knows it by (a component's name
/// is its file stem).
fn fixture() -> (tempfile::TempDir, PathBuf) {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("compat.wasm");
    std::fs::copy(fixtures.join("compat-1.0.0.wasm"), &path).unwrap();
    (dir, path)
}

fn message(answer: &str) -> serde_json::Value {
    let value: serde_json::Value = serde_json::from_str(answer).unwrap();
    assert_eq!(value["returncode"], "0", "{answer}");
    let message = value["message"].as_str().unwrap();
    serde_json::from_str(message).unwrap_or_else(|_| message.into())
}

#[test]
fn a_component_built_against_1_0_0_calls_every_interface_of_this_host() {
    let (_dir, compat) = fixture();
    let guest = Guest::start(
        AgentBuilder::new()
            .component_file(&compat)
            .policy(COMPAT_POLICY)
            .interfaces(NICS),
    );
    let agent = &guest.agent;
    std::fs::create_dir_all(agent.root().join("data")).unwrap();
    std::fs::write(agent.root().join("data/hello"), "hello 1.0").unwrap();
    guest.dom0.write("vm-data/compat/key", "xenstore value");

    let facts = message(&agent.call("compat-agent", r#""""#));
    assert_eq!(facts["version"], AGENT_VERSION);
    assert!(facts["remaining-ms"].as_u64().unwrap() > 0, "{facts}");
    assert_eq!(facts["setting"], "from the policy");
    assert!(
        facts["commands"].as_array().unwrap().contains(&"compat-agent".into()),
        "{facts}"
    );

    assert_eq!(agent.call("compat-log", r#""x""#), answer("logged 5 lines", "0"));
    assert_eq!(message(&agent.call("compat-state", r#""a""#))["now"], "a");
    assert_eq!(message(&agent.call("compat-state", r#""b""#))["previous"], "a");

    assert_eq!(agent.call("compat-files", r#""/data/hello""#), answer("hello 1.0", "0"));
    assert_eq!(
        agent.call("compat-files-write", r#"{"dir": "/data"}"#),
        answer(
            "read compat, backup old, file of 6 bytes mode 640, listed a,a.bak, renamed, mode now 600, locked, removed",
            "0"
        )
    );
    std::os::unix::fs::symlink("hello", agent.root().join("data/link")).unwrap();
    assert_eq!(agent.call("compat-read-link", r#""/data/link""#), answer("hello", "0"));

    assert_eq!(
        agent.call("compat-xs-read", r#""vm-data/compat/key""#),
        answer("xenstore value", "0")
    );
    assert_eq!(agent.call("compat-xs-dir", r#""vm-data/compat""#), answer("key", "0"));

    // Under --root a run is recorded, and reports success with no output.
    let run = message(&agent.call("compat-run", r#"{"argv": ["/bin/echo", "hi"], "timeout-ms": 5000}"#));
    assert_eq!(run["exit-code"], 0, "{run}");
    let actions = std::fs::read_to_string(agent.root().join(".guestward/actions.log")).unwrap();
    assert!(actions.contains(r#"["/bin/echo","hi"]"#), "{actions}");

    assert_eq!(
        agent.call("compat-hostname", r#""compat-host""#),
        answer("hostname set to compat-host", "0")
    );
    let nics = message(&agent.call("compat-network", r#""""#));
    assert_eq!(nics[0]["name"], "eth0", "{nics}");
    assert_eq!(nics[0]["mac"], "bc:76:4e:20:5e:b2", "{nics}");

    // The typed errors of 1.0.0 reach it as the cases it was built with.
    let refused = agent.call("compat-download", r#"{"url": "http://192.0.2.1/x", "max": 10}"#);
    assert!(refused.contains("download.not-granted"), "{refused}");
    let empty = agent.call("compat-update", r#""""#);
    assert!(
        empty.contains("update.refused: the update holds no components"),
        "{empty}"
    );
    let junk = agent.call(
        "compat-update",
        r#"{"name": "x.wasm", "wasm": "junk", "signature": "s"}"#,
    );
    assert!(junk.contains("update.refused"), "{junk}");
}
