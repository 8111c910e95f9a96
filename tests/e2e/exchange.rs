//! The XenStore exchange under load and under failure: many requests at
//! once, a connection that drops, a full quota, a denied write.

use std::time::{Duration, Instant};

use guestward_tests::hypervisor::{assert_counts, ids, message, requests as named_requests};
use guestward_tests::{AgentBuilder, Hypervisor};

use crate::protocol::PROBE_POLICY;
use crate::{AGENT_VERSION, DOMID, Guest, answer};

pub fn probe_agent() -> AgentBuilder {
    AgentBuilder::new()
        .component("probe")
        .policy(PROBE_POLICY)
        .log_level("info")
}

/// dom0's view of the guest of `guest`.
pub async fn hypervisor(guest: &Guest) -> Hypervisor {
    Hypervisor::connect(guest.xenstored.socket(), DOMID).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_requests_at_once_are_each_answered_exactly_once() {
    let guest = Guest::start(probe_agent());
    let hypervisor = hypervisor(&guest).await;
    let mut requests = Vec::new();
    for index in 0..200 {
        let request = match index % 4 {
            0 => r#"{"name":"version","value":"agent"}"#,
            1 => r#"{"name":"features"}"#,
            _ => r#"{"name":"count"}"#,
        };
        requests.push((format!("r{index:03}"), request.to_owned()));
    }
    hypervisor.send_all(&requests).await;
    let ids: Vec<String> = requests.iter().map(|(id, _)| id.clone()).collect();
    let answers = hypervisor.answers_to(&ids, Duration::from_secs(60)).await;

    // Every request answered, and every request removed.
    for (index, id) in ids.iter().enumerate() {
        let expected_code = "\"returncode\": \"0\"";
        assert!(answers[id].contains(expected_code), "{id}: {}", answers[id]);
        if index % 4 == 0 {
            assert_eq!(answers[id], answer(AGENT_VERSION, "0"));
        }
    }
    let left = hypervisor
        .client
        .directory(&hypervisor.path("data/host"))
        .await
        .unwrap();
    assert!(left.is_empty(), "requests left behind: {left:?}");

    // The count command ran exactly once per request, in arrival order.
    let counts: Vec<u64> = ids
        .iter()
        .enumerate()
        .filter(|(index, _)| index % 4 >= 2)
        .map(|(_, id)| message(&answers[id]).parse().unwrap())
        .collect();
    assert_eq!(counts, (1..=100).collect::<Vec<u64>>());

    // Each answer was written once: no request answered twice.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let writes = hypervisor.write_counts();
    for id in &ids {
        assert_eq!(
            writes.get(id),
            Some(&1),
            "{id} answer written {:?} times",
            writes.get(id)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_written_while_the_connection_is_down_are_answered_after_it_returns() {
    let guest = Guest::start(probe_agent());
    let hypervisor = hypervisor(&guest).await;
    assert_eq!(guest.dom0.call("before", r#"{"name":"count"}"#), answer("1", "0"));
    let served = guest.bridge.clients_served();
    guest.bridge.pause();
    let requests = named_requests("down", "count", 20);
    hypervisor.send_all(&requests).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        guest.dom0.read("data/guest/down000").is_none(),
        "answered while disconnected?"
    );
    guest.bridge.resume();
    let answers = hypervisor.answers_to(&ids(&requests), Duration::from_secs(60)).await;
    assert_counts(&answers, 2);
    assert!(guest.bridge.clients_served() > served, "the agent reconnected");
    assert!(
        guest.agent.log().contains("reconnected to XenStore"),
        "{}",
        guest.agent.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_flight_loses_no_request_and_runs_none_twice() {
    let guest = Guest::start(probe_agent());
    let hypervisor = hypervisor(&guest).await;
    let requests = named_requests("m", "count", 150);
    hypervisor.send_all(&requests).await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(15)).await;
        guest.bridge.drop_client();
    }
    let answers = hypervisor.answers_to(&ids(&requests), Duration::from_secs(90)).await;
    assert_counts(&answers, 1);
    let left = hypervisor
        .client
        .directory(&hypervisor.path("data/host"))
        .await
        .unwrap();
    assert!(left.is_empty(), "requests left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_cannot_be_written_is_retried_until_it_can() {
    let guest = Guest::start(probe_agent());
    let hypervisor = hypervisor(&guest).await;
    assert_eq!(
        guest.dom0.call("warm-up", r#"{"name":"version"}"#),
        answer(AGENT_VERSION, "0")
    );
    // The hypervisor takes write access to data/guest away (EACCES).
    let guest_dir = hypervisor.path("data/guest");
    hypervisor
        .client
        .set_perms(&guest_dir, &["n0", &format!("r{DOMID}")])
        .await
        .unwrap();
    guest.dom0.send("denied", r#"{"name":"count"}"#);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !guest.agent.log().contains("cannot write the answer") {
        assert!(Instant::now() < deadline, "no retry logged:\n{}", guest.agent.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Meanwhile the agent goes on serving (through the local socket).
    assert_eq!(guest.agent.call("version", r#""agent""#), answer(AGENT_VERSION, "0"));
    hypervisor
        .client
        .set_perms(&guest_dir, &[&format!("n{DOMID}")])
        .await
        .unwrap();
    let answers = hypervisor
        .answers_to(&["denied".to_owned()], Duration::from_secs(60))
        .await;
    assert_eq!(answers["denied"], answer("1", "0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_quota_does_not_stop_the_agent() {
    // A guest quota of a few nodes: answers hit ENOSPC until the hypervisor
    // deletes old ones (Nova never does; answers pile up).
    let guest = Guest::start_with(probe_agent(), &["-E", QUOTA_NODES]);
    let hypervisor = hypervisor(&guest).await;
    let mut answered = Vec::new();
    let mut id = 0;
    // Fill the quota with answers.
    while !guest.agent.log().contains("ENOSPC") {
        assert!(id < 200, "the quota never filled:\n{}", guest.agent.log());
        let name = format!("q{id}");
        guest.dom0.send(&name, r#"{"name":"count"}"#);
        id += 1;
        tokio::time::sleep(Duration::from_millis(30)).await;
        if guest.dom0.read(&format!("data/guest/{name}")).is_some() {
            answered.push(name);
        }
    }
    assert!(guest.agent.exit_status().is_none(), "the agent died");
    // Free the quota: the pending answers arrive.
    for name in &answered {
        hypervisor
            .client
            .rm(&hypervisor.path(&format!("data/guest/{name}")))
            .await
            .unwrap();
    }
    let pending: Vec<String> = (0..id)
        .map(|index| format!("q{index}"))
        .filter(|name| !answered.contains(name))
        .collect();
    let answers = hypervisor.answers_to(&pending, Duration::from_secs(90)).await;
    assert_eq!(answers.len(), pending.len());
}

/// Nodes the guest may own in the quota test.
const QUOTA_NODES: &str = "12";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_command_does_not_hold_up_other_commands() {
    let guest = Guest::start(probe_agent());
    let hypervisor = hypervisor(&guest).await;
    hypervisor
        .send_all(&[
            ("slow".to_owned(), r#"{"name":"sleep","value":2500}"#.to_owned()),
            ("fast".to_owned(), r#"{"name":"version"}"#.to_owned()),
        ])
        .await;
    let fast = hypervisor
        .answers_to(&["fast".to_owned()], Duration::from_secs(30))
        .await;
    assert_eq!(fast["fast"], answer(AGENT_VERSION, "0"));
    assert!(
        guest.dom0.read("data/guest/slow").is_none(),
        "the slow command finished first?"
    );
    let slow = hypervisor
        .answers_to(&["slow".to_owned()], Duration::from_secs(30))
        .await;
    assert_eq!(slow["slow"], answer("slept", "0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_over_the_node_size_quota_becomes_an_error_answer() {
    // xenstored lets a guest write values of at most 2048 bytes by default.
    let guest = Guest::start(probe_agent());
    let reply = guest.dom0.call("big", r#"{"name":"big-reply","value":1500}"#);
    assert_eq!(reply.len(), 1500 + r#"{"message": "", "returncode": "0"}"#.len());
    let reply = guest.dom0.call("too-big", r#"{"name":"big-reply","value":1999}"#);
    assert_eq!(
        reply,
        answer(
            "the reply (2033 bytes encoded) is larger than XenStore lets this guest write",
            "500"
        )
    );
    assert_eq!(
        guest.dom0.call("after", r#"{"name":"version"}"#),
        answer(AGENT_VERSION, "0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xenstore_keys_outside_the_grant_are_refused() {
    let guest = Guest::start(probe_agent());
    let hypervisor = hypervisor(&guest).await;
    hypervisor
        .client
        .write(&hypervisor.path("vm-data/hostname"), b"test-server")
        .await
        .unwrap();
    assert_eq!(
        guest
            .dom0
            .call("in", r#"{"name":"xs-read","value":"vm-data/hostname"}"#),
        answer("test-server", "0")
    );
    for key in [
        "data/host",
        "name",
        "/local/domain/0/name",
        "vm-data/../name",
        "vm-datax",
    ] {
        let reply = guest
            .dom0
            .call("out", &format!(r#"{{"name":"xs-read","value":"{key}"}}"#));
        assert!(
            reply.contains("NotGranted") || reply.contains("InvalidKey"),
            "{key}: {reply}"
        );
        guest.dom0.rm("data/guest/out");
    }
}

/// Requests in the backlog tests: far more than one `XS_DIRECTORY` reply
/// can list (about 110 names of this length fit in 4 KB).
const BACKLOG: usize = 1000;

/// The requests dom0 writes under the guest's `data/` are the guest's own
/// nodes, and count against its node quota (1000 by default); and the
/// node-size quota (2048 bytes) covers a node's list of children, so a guest
/// cannot add a 37-character name to a directory that already lists about
/// 55. A backlog of 1000 (answers the hypervisor never removes) needs a
/// guest allowed more of both.
const BACKLOG_QUOTA: [&str; 4] = ["-E", "4000", "-S", "65536"];

/// Every request answered once, each `count` run once, nothing left over.
async fn assert_backlog_answered(hypervisor: &Hypervisor, requests: &[(String, String)]) {
    let answers = hypervisor.answers_to(&ids(requests), Duration::from_secs(180)).await;
    assert_counts(&answers, 1);
    assert!(hypervisor.requests_left().await.is_empty(), "requests left behind");
    tokio::time::sleep(Duration::from_millis(200)).await;
    hypervisor.assert_written_once(&ids(requests));
}

/// Ids as Nova makes them (UUIDs, 36 characters).
fn uuid_requests(how_many: usize) -> Vec<(String, String)> {
    (0..how_many)
        .map(|index| {
            (
                format!("748dee41-c47f-4ec7-b2cd-{index:012}"),
                r#"{"name":"count"}"#.to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_written_in_one_transaction_are_each_answered_once() {
    let guest = Guest::start_with(probe_agent(), &BACKLOG_QUOTA);
    let hypervisor = hypervisor(&guest).await;
    let requests = uuid_requests(BACKLOG);
    hypervisor.send_all(&requests).await;
    assert_backlog_answered(&hypervisor, &requests).await;
    // And the agent still serves new requests afterwards.
    assert_eq!(
        guest.dom0.call("after", r#"{"name":"version"}"#),
        answer(AGENT_VERSION, "0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_written_while_the_agent_was_stopped_are_each_answered_once() {
    let guest = Guest::start_with(probe_agent(), &BACKLOG_QUOTA);
    let hypervisor = hypervisor(&guest).await;
    assert!(guest.agent.stop().is_some_and(|status| status.success()));
    let requests = uuid_requests(BACKLOG);
    for chunk in requests.chunks(100) {
        hypervisor.send_all(chunk).await;
    }
    guest.agent.restart();
    assert_backlog_answered(&hypervisor, &requests).await;
}
