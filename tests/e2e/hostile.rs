//! The hostile suite: every way the probe can misbehave, run by the daemon
//! at once. Each gets a `500` that says what happened, within its deadline;
//! `version` keeps answering meanwhile; nothing outside the grants changes.

use std::time::{Duration, Instant};

use guestward_tests::AgentBuilder;

use crate::protocol::PROBE_POLICY;
use crate::{AGENT_VERSION, answer};

/// (command, value, what the 500 says). The probe's deadline is 3 s.
const HOSTILE: &[(&str, &str, &str)] = &[
    ("spin", "null", "did not finish within its deadline of 3000 ms"),
    ("sleep", "60000", "did not finish within its deadline of 3000 ms"),
    ("grow", "null", "exceeded its memory limit of 32 MiB"),
    ("recurse", "null", "overflowed its stack"),
    ("panic", "null", "panicked: probe panicked on request"),
    ("exit", "null", "exited with status 1 instead of replying"),
    ("big-reply", "100000", "over its limit of 2000 bytes"),
    ("read-file", r#""/etc/shadow""#, "NotGranted"),
    ("read-file", r#""/etc/app/../../secret/key""#, "InvalidPath"),
    (
        "write-file",
        r#"{"path":"/secret/planted","contents":"x"}"#,
        "NotGranted",
    ),
    ("run", r#"{"argv":["/bin/sh","-c","touch /tmp/pwned"]}"#, "NotGranted"),
    ("fetch", r#"{"url":"http://127.0.0.1:1/x","max":10}"#, "NotGranted"),
    ("xs-read", r#""data/host""#, "NotGranted"),
];

#[test]
fn hostile_commands_fail_clearly_while_version_keeps_answering() {
    // Separate agents: a component's requests run one at a time, in order.
    let agents: Vec<_> = HOSTILE
        .iter()
        .map(|_| AgentBuilder::new().component("probe").policy(PROBE_POLICY).start())
        .collect();
    for agent in &agents {
        std::fs::create_dir_all(agent.root().join("secret")).unwrap();
        std::fs::write(agent.root().join("secret/key"), "top secret").unwrap();
    }
    let started = Instant::now();
    std::thread::scope(|scope| {
        let calls: Vec<_> = HOSTILE
            .iter()
            .zip(&agents)
            .map(|((name, value, _), agent)| scope.spawn(move || agent.call(name, value)))
            .collect();
        // While the hostile calls run, every agent answers version.
        std::thread::sleep(Duration::from_millis(200));
        for agent in &agents {
            assert_eq!(agent.call("version", "null"), answer(AGENT_VERSION, "0"));
        }
        for (call, (name, _, says)) in calls.into_iter().zip(HOSTILE) {
            let reply = call.join().unwrap();
            assert!(
                reply.ends_with(r#""returncode": "500"}"#) && reply.contains(says),
                "{name}: {reply}"
            );
        }
    });
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "hostile calls outlived their deadlines"
    );
    for agent in &agents {
        assert_eq!(
            std::fs::read_to_string(agent.root().join("secret/key")).unwrap(),
            "top secret"
        );
        assert!(!agent.root().join("secret/planted").exists());
        assert!(agent.exit_status().is_none(), "the daemon died");
    }
    assert!(!std::path::Path::new("/tmp/pwned").exists());
}
