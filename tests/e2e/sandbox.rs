//! The sandbox through the daemon: every way a component can misbehave gets
//! a `500` that says what happened, within its deadline, and the daemon keeps
//! answering meanwhile.

use std::time::{Duration, Instant};

use guestward_tests::agent::audit_records;
use guestward_tests::{AgentBuilder, artifacts};

use crate::protocol::PROBE_POLICY;
use crate::{AGENT_VERSION, answer};

fn probe_agent() -> guestward_tests::Agent {
    AgentBuilder::new().component("probe").policy(PROBE_POLICY).start()
}

fn message(answer: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(answer).unwrap();
    value["message"].as_str().unwrap().to_owned()
}

#[test]
fn an_endless_loop_is_stopped_at_its_deadline_and_others_are_served_meanwhile() {
    let agent = probe_agent();
    let started = Instant::now();
    let spinning = std::thread::scope(|scope| {
        let spinning = scope.spawn(|| agent.call("spin", "null"));
        // While the probe spins, version keeps answering.
        std::thread::sleep(Duration::from_millis(300));
        for _ in 0..5 {
            assert_eq!(agent.call("version", r#""agent""#), answer(AGENT_VERSION, "0"));
        }
        spinning.join().unwrap()
    });
    assert_eq!(
        spinning,
        answer("command 'spin' did not finish within its deadline of 3000 ms", "500")
    );
    assert!(started.elapsed() < Duration::from_secs(20), "stopped far too late");
    // A fresh Store for the next call: the probe works again.
    assert_eq!(agent.call("echo", "1"), answer("1", "0"));
}

#[test]
fn a_command_blocked_in_the_host_is_stopped_at_its_deadline() {
    let agent = probe_agent();
    assert_eq!(
        agent.call("sleep", "60000"),
        answer("command 'sleep' did not finish within its deadline of 3000 ms", "500")
    );
}

#[test]
fn exhausting_memory_is_a_clear_error() {
    let agent = probe_agent();
    assert_eq!(
        agent.call("grow", "null"),
        answer("command 'grow' exceeded its memory limit of 32 MiB", "500")
    );
    assert_eq!(agent.call("echo", "2"), answer("2", "0"));
}

#[test]
fn panics_crashes_and_exits_are_clear_errors() {
    let agent = probe_agent();
    assert_eq!(
        agent.call("panic", "null"),
        answer("command 'panic' panicked: probe panicked on request", "500")
    );
    assert_eq!(
        agent.call("recurse", "null"),
        answer("command 'recurse' overflowed its stack", "500")
    );
    assert_eq!(
        agent.call("exit", "null"),
        answer("command 'exit' exited with status 1 instead of replying", "500")
    );
    assert_eq!(
        agent.call("bad-code", "null"),
        answer(r#"command 'bad-code' returned an invalid return code \"\""#, "500")
    );
    assert_eq!(agent.call("version", "null"), answer(AGENT_VERSION, "0"));
}

#[test]
fn replies_over_the_cap_are_refused() {
    let agent = probe_agent();
    assert_eq!(agent.call("big-reply", "1998"), answer(&"x".repeat(1998), "0"));
    assert_eq!(
        agent.call("big-reply", "100000"),
        answer(
            "command 'big-reply' replied with 100001 bytes, over its limit of 2000 bytes",
            "500"
        )
    );
}

#[test]
fn a_huge_value_gets_a_short_error_from_every_interface() {
    // Found by `guestward fuzz`: the daemon's error texts quoted the path,
    // key or URL whole, so a component relaying one (as agentupdate does a
    // refused URL) replied over its limit, and the requester got "replied
    // with N bytes" instead of what went wrong. Each interface now refuses
    // a value no real path, key or URL has, first, without quoting it.
    let agent = probe_agent();
    let long = "x".repeat(300_000);
    let path = format!("/etc/app/{long}");
    let url = format!("https://updates.example.com/agent/{}", " ".repeat(300_000));
    let cases = [
        ("read-file", serde_json::json!(path), "a path is at most 4095 bytes"),
        ("list-dir", serde_json::json!(path), "a path is at most 4095 bytes"),
        ("metadata", serde_json::json!(path), "a path is at most 4095 bytes"),
        ("read-link", serde_json::json!(path), "a path is at most 4095 bytes"),
        ("remove", serde_json::json!(path), "a path is at most 4095 bytes"),
        (
            "mkdir",
            serde_json::json!({ "path": path }),
            "a path is at most 4095 bytes",
        ),
        (
            "rename",
            serde_json::json!({ "from": path, "to": "/etc/app/a" }),
            "a path is at most 4095 bytes",
        ),
        (
            "lock",
            serde_json::json!({ "path": path }),
            "a path is at most 4095 bytes",
        ),
        (
            "chmod",
            serde_json::json!({ "path": path, "mode": 420 }),
            "a path is at most 4095 bytes",
        ),
        (
            "xs-read",
            serde_json::json!(format!("vm-data/{long}")),
            "a key is at most 2048 bytes",
        ),
        (
            "xs-dir",
            serde_json::json!(format!("/{long}")),
            "a key is at most 2048 bytes",
        ),
        (
            "run",
            serde_json::json!({ "argv": [format!("/bin/{long}")] }),
            "a program path is at most 4095 bytes",
        ),
        (
            "fetch",
            serde_json::json!({ "url": url }),
            "a URL is at most 2048 bytes",
        ),
    ];
    for (name, value, words) in cases {
        let answer = agent.call(name, &value.to_string());
        let text = message(&answer);
        assert!(text.contains(words), "{name}: {}", &text[..text.len().min(300)]);
        assert!(answer.len() < 200, "{name}: {} bytes", answer.len());
    }
    // Under the limits, a refusal still names what it refused.
    let refused = message(&agent.call("read-file", r#""/etc/shadow""#));
    assert!(
        refused.contains("/etc/shadow is outside the readable files of component probe"),
        "{refused}"
    );
}

#[test]
fn a_log_flood_is_cut_at_the_limit() {
    let agent = probe_agent();
    assert_eq!(agent.call("log-flood", "10000"), answer("flooded", "0"));
    let log = agent.log();
    let lines = log.lines().filter(|line| line.contains("flood line")).count();
    assert_eq!(lines, 10, "the policy allows 10 lines per call");
    assert!(log.contains("dropped=9990"), "{log}");
}

#[test]
fn state_persists_between_calls_of_one_component() {
    let agent = probe_agent();
    for expected in 1..=3 {
        assert_eq!(agent.call("count", "null"), answer(&expected.to_string(), "0"));
    }
}

#[test]
fn a_component_importing_what_its_policy_does_not_grant_is_refused_at_load() {
    // The built-in policy has no entry for the probe, which imports files
    // and xenstore.
    let agent = AgentBuilder::new().component("probe").start();
    let log = agent.log();
    assert!(
        log.contains("refused command component") && log.contains("imports guestward:command/files@1.1.0"),
        "{log}"
    );
    assert_eq!(agent.call("version", "null"), answer(AGENT_VERSION, "0"));
    assert_eq!(agent.call("features", "null"), answer(artifacts::BUILTIN_FEATURES, "0"));
    assert_eq!(agent.call("echo", "1"), answer("No such agent command 'echo'", "404"));
}

#[test]
fn two_components_claiming_one_name_keep_the_built_in_and_serve_on() {
    // (Issue 11: a clash used to stop the start.) The built-in wins, the
    // copy is refused with a log line, the agent serves.
    let copy = tempfile::tempdir().unwrap();
    let duplicate = copy.path().join("version-again.wasm");
    std::fs::copy(artifacts::component("version"), &duplicate).unwrap();
    let agent = AgentBuilder::new().component_file(&duplicate).start();
    assert_eq!(agent.call("version", "null"), answer(AGENT_VERSION, "0"));
    let log = agent.log();
    assert!(log.contains("version-again.wasm claims 'version', which"), "{log}");
    assert!(agent.exit_status().is_none(), "{log}");
}

#[test]
fn a_file_that_is_not_a_component_is_refused_and_the_rest_load() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm not really").unwrap();
    let agent = AgentBuilder::new().component_file(&garbage).start();
    assert!(
        agent.log().contains("garbage.wasm: not a valid component"),
        "{}",
        agent.log()
    );
    assert_eq!(agent.call("features", "null"), answer(artifacts::BUILTIN_FEATURES, "0"));
}

#[test]
fn the_value_is_never_logged() {
    let agent = probe_agent();
    let secret = "s3cr3t-value-that-must-not-be-logged";
    assert_eq!(
        agent.call("echo", &format!("\"{secret}\"")),
        answer(&format!("\\\"{secret}\\\""), "0")
    );
    assert!(!agent.log().contains(secret), "{}", agent.log());
    assert_eq!(message(&agent.call("version", "null")), AGENT_VERSION);
}

#[test]
fn settings_come_from_the_policy() {
    let agent = probe_agent();
    assert_eq!(agent.call("setting", r#""greeting""#), answer("hello", "0"));
    assert_eq!(agent.call("setting", r#""absent""#), answer("<unset>", "0"));
}

#[test]
fn programs_run_only_as_granted_and_are_recorded_under_a_root() {
    let agent = probe_agent();
    // Under --root, a granted run is recorded (not carried out)...
    let reply = agent.call("run", r#"{"argv":["/bin/echo","hi"],"stdin":"secret input"}"#);
    assert_eq!(reply, answer("exit=Some(0) stdout=", "0"));
    let record = std::fs::read_to_string(agent.root().join(".guestward/actions.log")).unwrap();
    let entry: serde_json::Value = serde_json::from_str(record.trim()).unwrap();
    assert_eq!(entry["argv"], serde_json::json!(["/bin/echo", "hi"]));
    assert_eq!(entry["stdin-bytes"], 12);
    assert!(!record.contains("secret input"), "the input is never recorded");
    // ...and anything else is refused.
    for argv in [
        r#"["/bin/echo"]"#,
        r#"["/bin/echo","a","b"]"#,
        r#"["/bin/sh","-c","id"]"#,
        r#"["echo","hi"]"#,
    ] {
        let reply = agent.call("run", &format!(r#"{{"argv":{argv}}}"#));
        assert!(reply.contains("NotGranted"), "{argv}: {reply}");
    }
    assert_eq!(record.lines().count(), 1);
}

#[test]
fn every_call_leaves_one_audit_record_without_values() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let agent = AgentBuilder::new()
        .component("probe")
        .policy(PROBE_POLICY)
        .arg("--audit-log")
        .arg(audit.to_str().unwrap())
        .start();
    std::fs::create_dir_all(agent.root().join("etc/readonly")).unwrap();
    std::fs::write(agent.root().join("etc/readonly/conf"), "secret-file-contents").unwrap();
    agent.call("version", "null");
    agent.call("read-file", r#""/etc/readonly/conf""#);
    agent.call("count", "null");
    agent.call("panic", "null");
    let records = audit_records(&audit, |records| {
        records.iter().any(|record| record["fields"]["command"] == "panic")
    });
    let text = std::fs::read_to_string(&audit).unwrap();
    let fields = |index: usize| records[index]["fields"].clone();
    let summary: Vec<(String, String, String)> = (0..records.len())
        .map(|index| {
            let fields = fields(index);
            (
                fields["command"].as_str().unwrap().to_owned(),
                fields["capabilities"].as_str().unwrap().to_owned(),
                fields["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("version", "agent", "0"),
        ("read-file", "files", "0"),
        ("count", "state", "0"),
        ("panic", "", "500"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    // The readiness probe's version call comes first.
    assert_eq!(summary[summary.len() - 4..], expected[..], "{text}");
    for index in 0..records.len() {
        let fields = fields(index);
        assert_eq!(fields["sha256"].as_str().unwrap().len(), 64);
        assert!(fields["request"].as_str().unwrap().starts_with("local-"));
        assert!(fields["elapsed_us"].is_u64());
    }
    assert!(!text.contains("secret-file-contents") && !text.contains("/etc/readonly/conf"));
}
