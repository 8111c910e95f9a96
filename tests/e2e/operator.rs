//! What authors and operators see: a command's own output in `guestward
//! run`, warnings and audit outcomes for calls that hit a limit or a
//! refusal, policy drop-ins and `policy show`, extra commands directories,
//! and clear errors for files that are not components.

use std::path::{Path, PathBuf};

use guestward_tests::agent::audit_records;
use guestward_tests::artifacts::guestward;
use guestward_tests::{AgentBuilder, artifacts};

use crate::answer;
use crate::protocol::PROBE_POLICY;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn run_shows_the_commands_own_logs_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "policy.toml", PROBE_POLICY);
    let probe = artifacts::component("probe");
    let output = guestward(&[
        "run",
        probe.to_str().unwrap(),
        "panic",
        "--root",
        dir.path().to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ]);
    let stderr = text(&output.stderr);
    // The panic message, as the component wrote it to its stderr.
    assert!(
        stderr.contains("guestward::component") && stderr.contains("probe panicked on request"),
        "{stderr}"
    );
    assert!(stderr.contains("stream=\"stderr\""), "{stderr}");
    // And the warning the daemon gives for it.
    assert!(stderr.contains("outcome=\"panic\""), "{stderr}");

    let output = guestward(&[
        "run",
        probe.to_str().unwrap(),
        "log-flood",
        "3",
        "--root",
        dir.path().to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ]);
    let stderr = text(&output.stderr);
    assert!(stderr.contains("guestward::command"), "{stderr}");
}

#[test]
fn calls_that_hit_a_limit_or_a_refusal_warn_and_say_so_in_the_audit_record() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    // (The audit log named in the configuration file; the flag is tested
    // in the sandbox tests.)
    let agent = AgentBuilder::new()
        .component("probe")
        .policy(PROBE_POLICY)
        .config(&format!("audit-log = \"{}\"\n", audit.display()))
        .start();
    agent.call("spin", "null");
    agent.call("read-file", r#""/etc/shadow""#);
    agent.call("big-reply", "100000");
    agent.call("echo", "1");
    let records = audit_records(&audit, |records| {
        records.iter().any(|record| record["fields"]["command"] == "echo")
    });
    let outcome = |command: &str| {
        let record = records
            .iter()
            .find(|record| record["fields"]["command"] == command)
            .unwrap_or_else(|| panic!("no record of {command}"));
        (
            record["fields"]["outcome"].as_str().unwrap().to_owned(),
            record["fields"]["refused"].as_str().unwrap().to_owned(),
        )
    };
    assert_eq!(outcome("spin"), ("deadline".to_owned(), String::new()));
    assert_eq!(outcome("read-file"), ("replied".to_owned(), "files".to_owned()));
    assert_eq!(outcome("big-reply"), ("reply-too-large".to_owned(), String::new()));
    assert_eq!(outcome("echo"), ("replied".to_owned(), String::new()));
    let log = agent.log();
    let warnings: Vec<&str> = log.lines().filter(|line| line.contains("WARN")).collect();
    assert!(
        warnings
            .iter()
            .any(|line| line.contains("outcome=\"deadline\"") && line.contains("spin")),
        "{log}"
    );
    assert!(
        warnings
            .iter()
            .any(|line| line.contains("refused=\"files\"") && line.contains("read-file")),
        "{log}"
    );
    assert!(!warnings.iter().any(|line| line.contains("command=\"echo\"")), "{log}");
}

#[test]
fn a_policy_drop_in_adds_an_entry_and_policy_show_names_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let drop_ins = dir.path().join("policy.d");
    std::fs::create_dir(&drop_ins).unwrap();
    let probe_entry = PROBE_POLICY.split("[component.probe]").nth(1).unwrap();
    write(&drop_ins, "50-probe.toml", &format!("[component.probe]{probe_entry}"));
    write(&drop_ins, "README", "not a drop-in: only *.toml files count");
    // The built-in policy plus the drop-in: the built-ins keep their
    // entries, and the probe loads.
    let agent = AgentBuilder::new()
        .component("probe")
        .arg("--policy-dir")
        .arg(drop_ins.to_str().unwrap())
        .start();
    assert_eq!(agent.call("echo", r#""hi""#), answer("\\\"hi\\\"", "0"));
    assert_eq!(agent.call("version", r#""agent""#), answer(crate::AGENT_VERSION, "0"));

    let output = guestward(&["policy", "show", "--policy-dir", drop_ins.to_str().unwrap()]);
    let shown = text(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(shown.contains("policy    built-in policy, then "), "{shown}");
    assert!(shown.contains("50-probe.toml"), "{shown}");
    assert!(
        shown.contains("[component.password]  # from built-in policy"),
        "{shown}"
    );
    assert!(shown.contains("[component.probe]  # from "), "{shown}");

    // A bad drop-in is an error naming its file and line.
    write(
        &drop_ins,
        "60-bad.toml",
        "[component.x]\nfiles = [{ path = \"etc\", access = \"read\" }]\n",
    );
    let output = guestward(&["policy", "show", "--policy-dir", drop_ins.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("60-bad.toml:2: component.x.files"),
        "{output:?}"
    );
}

#[test]
fn an_extra_commands_directory_adds_to_the_built_in_commands() {
    let dir = tempfile::tempdir().unwrap();
    let extra = dir.path().join("extra");
    std::fs::create_dir(&extra).unwrap();
    std::fs::copy(artifacts::component("probe"), extra.join("probe.wasm")).unwrap();
    guestward_tests::agent::sign(artifacts::test_key().0, &extra.join("probe.wasm"));
    let agent = AgentBuilder::new()
        .policy(PROBE_POLICY)
        .arg("--extra-commands")
        .arg(extra.to_str().unwrap())
        .start();
    assert_eq!(agent.call("echo", r#""hi""#), answer("\\\"hi\\\"", "0"));
    assert_eq!(agent.call("version", r#""agent""#), answer(crate::AGENT_VERSION, "0"));
}

#[test]
fn files_that_are_not_components_get_errors_that_say_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let output = guestward(&["inspect", core.to_str().unwrap()]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.contains("a core WebAssembly module, not a component"),
        "{stderr}"
    );
    assert!(stderr.contains("wasm32-wasip2"), "{stderr}");

    let script = write(dir.path(), "script.wasm", "#!/bin/sh\n");
    let stderr = text(&guestward(&["inspect", script.to_str().unwrap()]).stderr);
    assert!(stderr.contains("not a WebAssembly file"), "{stderr}");

    let missing = dir.path().join("missing.wasm");
    let stderr = text(&guestward(&["run", missing.to_str().unwrap(), "version"]).stderr);
    assert_eq!(stderr.matches("No such file or directory").count(), 1, "{stderr}");
}

/// The drop-in of docs/migration.md, as printed there.
fn migration_drop_in() -> String {
    let guide = include_str!("../../docs/migration.md");
    let start = guide
        .find("    # /etc/guestward/policy.d/50-image.toml")
        .expect("the example drop-in");
    let block: Vec<&str> = guide[start..]
        .lines()
        .take_while(|line| line.is_empty() || line.starts_with("    "))
        .map(|line| line.strip_prefix("    ").unwrap_or(line))
        .collect();
    block.join("\n")
}

#[test]
fn the_migration_guides_narrowed_policy_loads_and_configures_a_netplan_image() {
    let dir = tempfile::tempdir().unwrap();
    let drop_ins = dir.path().join("policy.d");
    std::fs::create_dir(&drop_ins).unwrap();
    std::fs::write(drop_ins.join("50-image.toml"), migration_drop_in()).unwrap();
    let drop_ins = drop_ins.to_str().unwrap();

    let check = artifacts::guestward(&["policy", "check", "--policy-dir", drop_ins]);
    let report = text(&check.stdout);
    assert!(check.status.success(), "{report}\n{}", text(&check.stderr));
    assert!(!report.contains("refused"), "{report}");

    // A netplan image, configured by the narrowed resetnetwork.
    let root = dir.path().join("root");
    for (path, contents) in [
        ("etc/os-release", "ID=ubuntu\nVERSION_ID=\"24.04\"\n"),
        ("etc/hosts", "127.0.0.1\tlocalhost\n"),
        ("usr/sbin/netplan", "#!/bin/sh\n"),
    ] {
        std::fs::create_dir_all(root.join(path).parent().unwrap()).unwrap();
        std::fs::write(root.join(path), contents).unwrap();
    }
    std::fs::create_dir_all(root.join("etc/netplan")).unwrap();
    let network = serde_json::json!({
        "mac": "BC:76:4E:20:5E:B2", "label": "public", "gateway": "192.0.2.1", "dns": ["198.51.100.53"],
        "ips": [{"ip": "192.0.2.10", "netmask": "255.255.255.0", "enabled": "1"}],
    });
    let data = serde_json::json!({
        "vm-data/hostname": "web1",
        "vm-data/networking/BC764E205EB2": network.to_string(),
    });
    let data_file = dir.path().join("vm-data.json");
    std::fs::write(&data_file, data.to_string()).unwrap();
    let nics = dir.path().join("nics.json");
    std::fs::write(&nics, r#"[{"name": "eth0", "mac": "bc:76:4e:20:5e:b2", "up": true}]"#).unwrap();
    let resetnetwork = artifacts::component("resetnetwork");
    let output = artifacts::guestward(&[
        "run",
        resetnetwork.to_str().unwrap(),
        "resetnetwork",
        "--root",
        root.to_str().unwrap(),
        "--interfaces",
        nics.to_str().unwrap(),
        "--xenstore-data",
        data_file.to_str().unwrap(),
        "--policy-dir",
        drop_ins,
    ]);
    let reply = text(&output.stdout);
    assert_eq!(
        reply.trim(),
        r#"{"message": "", "returncode": "0"}"#,
        "{}",
        text(&output.stderr)
    );
    let netplan = std::fs::read_to_string(root.join("etc/netplan/90-guestward.yaml")).unwrap();
    assert!(netplan.contains("192.0.2.10/24"), "{netplan}");
    assert_eq!(std::fs::read_to_string(root.join("etc/hostname")).unwrap(), "web1\n");
}
