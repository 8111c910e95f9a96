//! `guestward status`: the operator's view of a running agent, over the
//! local socket only.

use guestward_tests::{AgentBuilder, artifacts};

use crate::guest_test;
use crate::protocol::PROBE_POLICY;

fn status(socket: &std::path::Path, json: bool) -> String {
    let mut args = vec!["status", "--socket", socket.to_str().unwrap()];
    if json {
        args.push("--json");
    }
    let output = artifacts::guestward(&args);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

guest_test!(
    status_shows_the_exchanges_components_and_counters_and_the_hypervisor_cannot_ask,
    AgentBuilder::new().component("probe").policy(PROBE_POLICY),
    |guest| {
        let agent = &guest.agent;
        // (Starting the agent may have called `version` already.)
        let before: serde_json::Value = serde_json::from_str(&status(&agent.socket(), true)).unwrap();
        let versions = before["commands"]["version"]["calls"].as_u64().unwrap_or(0);
        for _ in 0..3 {
            agent.call("version", "null");
        }
        agent.call("spin", "null");
        agent.call("read-file", r#""/etc/shadow""#);

        let report: serde_json::Value = serde_json::from_str(&status(&agent.socket(), true)).unwrap();
        assert_eq!(report["version"], crate::AGENT_VERSION);
        let exchanges = report["exchanges"].as_array().unwrap();
        assert_eq!(exchanges[0]["name"], "xenstore");
        assert_eq!(exchanges[0]["state"], "connected");
        assert_eq!(exchanges[1]["name"], "socket");
        assert_eq!(exchanges[1]["detail"], agent.socket().to_str().unwrap());

        let probe = report["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|component| component["name"] == "probe")
            .unwrap();
        let wasm = std::fs::read(agent.commands().join("probe.wasm")).unwrap();
        assert_eq!(probe["sha256"], guestward::runtime::component::sha256_hex(&wasm));
        let grants: Vec<&str> = probe["grants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_str().unwrap())
            .collect();
        assert!(grants.iter().any(|grant| grant.contains("/etc/app")), "{grants:?}");
        assert!(probe["commands"].as_array().unwrap().contains(&"spin".into()));

        let commands = &report["commands"];
        assert_eq!(commands["version"]["calls"], versions + 3);
        assert_eq!(commands["version"]["failures"], 0);
        assert_eq!(commands["spin"]["timeouts"], 1);
        assert_eq!(commands["spin"]["failures"], 1);
        assert!(
            commands["spin"]["p99-ms"].as_f64().unwrap() >= 3000.0,
            "the deadline is 3 s"
        );
        assert_eq!(commands["read-file"]["failures"], 1);

        let text = status(&agent.socket(), false);
        let xenstore_row = text.lines().find(|line| line.trim_start().starts_with("xenstore"));
        assert_eq!(
            xenstore_row.map(|row| row.split_whitespace().collect::<Vec<_>>()),
            Some(vec!["xenstore", "connected"]),
            "{text}"
        );
        assert!(text.contains("probe: "), "{text}");
        let version_line = format!(" {} ", versions + 3);
        assert!(
            text.lines()
                .any(|line| line.trim_start().starts_with("version") && line.contains(&version_line)),
            "{text}"
        );

        // Not a command: the hypervisor cannot ask for it, and a local
        // request named `status` is an unknown command.
        let from_dom0 = guest.dom0.call("s1", r#"{"status": {}}"#);
        assert_eq!(from_dom0, crate::answer("Request is missing 'name' key", "500"));
        assert_eq!(
            agent.call("status", "{}"),
            crate::answer("No such agent command 'status'", "404")
        );
    }
);

#[test]
fn a_freeze_shows_in_the_status_and_a_killed_daemons_successor_takes_it_over() {
    // Under --root the freeze is simulated (recorded in the root's actions
    // log), and the runtime directory is the root's run/guestward.
    let agent = AgentBuilder::new()
        .component("fsfreeze")
        .policy("[component.version]\n[component.fsfreeze]\nfreeze = true\n")
        .qga()
        .start();
    let mountinfo = agent.root().join("proc/self/mountinfo");
    std::fs::create_dir_all(mountinfo.parent().unwrap()).unwrap();
    std::fs::write(&mountinfo, "40 1 254:2 / /srv rw,relatime - xfs /dev/vdb rw\n").unwrap();
    let frozen = |agent: &guestward_tests::Agent| {
        let report: serde_json::Value = serde_json::from_str(&status(&agent.socket(), true)).unwrap();
        report["filesystems-frozen"].as_bool().unwrap()
    };
    assert!(!frozen(&agent));
    assert_eq!(
        agent.qga().execute("guest-fsfreeze-freeze", ""),
        serde_json::json!({"return": 1})
    );
    assert!(frozen(&agent));
    assert!(status(&agent.socket(), false).contains("filesystems frozen"));
    assert!(agent.root().join("run/guestward/frozen").exists());

    agent.restart();
    assert!(frozen(&agent), "{}", agent.log());
    assert_eq!(
        agent.qga().execute("guest-fsfreeze-status", ""),
        serde_json::json!({"return": "frozen"})
    );
    assert_eq!(
        agent.qga().execute("guest-fsfreeze-thaw", ""),
        serde_json::json!({"return": 1})
    );
    assert!(!frozen(&agent));
    assert!(!status(&agent.socket(), false).contains("filesystems frozen"));
    assert!(!agent.root().join("run/guestward/frozen").exists());
}
