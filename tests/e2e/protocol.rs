//! The Nova agent protocol through the real xenstored, driven from dom0 the
//! way Nova's plugin does it (legacy-agent.md §2.4, §8.7).

use guestward_tests::AgentBuilder;

use crate::{AGENT_VERSION, answer, guest_test};

guest_test!(version_answers_and_the_request_is_gone, AgentBuilder::new(), |guest| {
    let reply = guest.dom0.call(
        "748dee41-c47f-4ec7-b2cd-037e51da4031",
        r#"{"name":"version","value":"agent"}"#,
    );
    assert_eq!(reply, answer(AGENT_VERSION, "0"));
    assert!(!guest.dom0.exists("data/host/748dee41-c47f-4ec7-b2cd-037e51da4031"));
});

guest_test!(
    features_lists_every_loaded_command_sorted,
    AgentBuilder::new().component("probe").policy(PROBE_POLICY),
    |guest| {
        // (The probe's policy has no entry for the password component, so
        // keyinit and password are not loaded.)
        let reply = guest.dom0.call("f1", r#"{"name":"features"}"#);
        let expected = "bad-code,big-reply,chmod,count,echo,exit,features,fetch,grow,list-dir,lock,lock-many,log-flood,metadata,mkdir,panic,read-file,read-link,recurse,remove,rename,run,setting,sleep,spin,version,write-file,xs-dir,xs-read";
        assert_eq!(reply, answer(expected, "0"));
    }
);

guest_test!(legacy_error_vectors_are_exact, AgentBuilder::new(), |guest| {
    let vectors = [
        (
            r#"{"name":"nope","value":""}"#,
            answer("No such agent command 'nope'", "404"),
        ),
        (r#"{"value":""}"#, answer("Request is missing 'name' key", "500")),
        ("abc", answer("Request is malformed", "500")),
        (r#"{"name":5}"#, answer("No such agent command '5'", "404")),
    ];
    for (index, (request, expected)) in vectors.iter().enumerate() {
        let id = format!("vector-{index}");
        assert_eq!(&guest.dom0.call(&id, request), expected, "{request}");
        assert!(!guest.dom0.exists(&format!("data/host/{id}")), "{request} left behind");
    }
});

guest_test!(
    json_that_is_not_an_object_is_answered_and_removed,
    AgentBuilder::new(),
    |guest| {
        // The legacy agent raised on these, never answered, and re-read them in
        // a busy loop (bug B3).
        for (index, request) in ["[1,2]", r#""str""#, "5", "null"].iter().enumerate() {
            let id = format!("b3-{index}");
            assert_eq!(guest.dom0.call(&id, request), answer("Request is malformed", "500"));
            assert!(!guest.dom0.exists(&format!("data/host/{id}")));
        }
        // And the agent goes on serving.
        assert_eq!(
            guest.dom0.call("after", r#"{"name":"version"}"#),
            answer(AGENT_VERSION, "0")
        );
    }
);

guest_test!(request_ids_are_arbitrary_strings, AgentBuilder::new(), |guest| {
    for id in ["system-init", "1", "a_b-c@d", "UPPER"] {
        assert_eq!(
            guest.dom0.call(id, r#"{"name":"version","value":"agent"}"#),
            answer(AGENT_VERSION, "0")
        );
    }
});

guest_test!(
    values_reach_commands_exactly_as_written,
    AgentBuilder::new().component("probe").policy(PROBE_POLICY),
    |guest| {
        guest.dom0.send("self", r#"{"name":"echo","value":{"x":[1,2.50,"é"]}}"#);
        let reply = guest
            .dom0
            .wait_answer("self", std::time::Duration::from_secs(30))
            .expect("answer");
        // The value reaches the command exactly as written, and non-ASCII is
        // escaped in the answer as Python's json.dumps did.
        assert_eq!(
            reply,
            r#"{"message": "{\"x\":[1,2.50,\"\u00e9\"]}", "returncode": "0"}"#
        );
    }
);

pub use guestward_tests::agent::PROBE_POLICY;
