//! Reliability under real failures: the agent killed mid-burst, the
//! XenStore connection dropped mid-write or silently dead, xenstored killed
//! and restarted, SIGTERM with commands running, a long soak, a component
//! replaced on disk under a running daemon.
//!
//! Sizes for CI by default; the environment asks for more:
//! `GUESTWARD_KILL_TRIALS` (SIGKILL trials, default 5; the issue's figure
//! is 30) and `GUESTWARD_SOAK` (soak requests, default 3000; `make bench`
//! runs 20 000).

use std::time::{Duration, Instant};

use guestward_tests::hypervisor::{assert_counts, ids, requests};
use guestward_tests::{AgentBuilder, Xenstored, artifacts};

use crate::exchange::{hypervisor, probe_agent};
use crate::{AGENT_VERSION, DOMID, Guest, answer};

/// A number from the environment, or `default`.
fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator (the trials are reproducible).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_of_a_burst_loses_no_request_and_writes_no_answer_twice() {
    let trials = env_count("GUESTWARD_KILL_TRIALS", 5);
    let guest = Guest::start(probe_agent());
    let hypervisor = hypervisor(&guest).await;
    let mut random = Lcg(0x5eed);
    let mut mid_burst = 0;
    for trial in 0..trials {
        let burst = requests(&format!("k{trial}-"), "version", 300);
        hypervisor.send_all(&burst).await;
        tokio::time::sleep(Duration::from_millis(random.below(400))).await;
        guest.agent.kill();
        let answered = hypervisor.answers_left().await.len();
        if answered > 0 && answered < burst.len() {
            mid_burst += 1;
        }
        guest.agent.restart();
        let answers = hypervisor.collect(&ids(&burst), Duration::from_secs(120), true).await;
        assert!(
            answers
                .values()
                .all(|answer| *answer == crate::answer(AGENT_VERSION, "0")),
            "trial {trial}: a wrong answer"
        );
        assert!(
            hypervisor.requests_left().await.is_empty(),
            "trial {trial}: requests left"
        );
        hypervisor.assert_written_once(&ids(&burst));
    }
    // Nothing stale: every answer was removed by the hypervisor once read,
    // and none came back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        hypervisor.answers_left().await.is_empty(),
        "answers written after removal"
    );
    println!("{trials} trials, {mid_burst} killed mid-burst");
    assert!(mid_burst > 0 || trials < 3, "no trial killed the agent mid-burst");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_dropped_mid_write_write_no_answer_twice_and_leave_nothing_stale() {
    let guest = Guest::start(probe_agent());
    let hypervisor = hypervisor(&guest).await;
    let burst = requests("d", "count", 300);
    hypervisor.send_all(&burst).await;
    let dropping = async {
        for _ in 0..15 {
            tokio::time::sleep(Duration::from_millis(30)).await;
            guest.bridge.drop_client();
        }
    };
    // The hypervisor removes each answer as soon as it has read it.
    let wanted = ids(&burst);
    let (answers, ()) = tokio::join!(hypervisor.collect(&wanted, Duration::from_secs(120), true), dropping);
    assert_counts(&answers, 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    hypervisor.assert_written_once(&ids(&burst));
    assert!(hypervisor.answers_left().await.is_empty(), "a stale answer was left");
    assert!(hypervisor.requests_left().await.is_empty(), "requests left behind");
}

/// Short XenStore timeouts and re-scans, so that the tests of a dead
/// connection run in seconds.
const QUICK_RECOVERY: &str = "rescan-seconds = 2\nxenstore-timeout-seconds = 1\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_stops_answering_is_taken_for_lost_and_reopened() {
    let guest = Guest::start(probe_agent().config(QUICK_RECOVERY));
    assert_eq!(guest.dom0.call("before", r#"{"name":"count"}"#), answer("1", "0"));
    let served = guest.bridge.clients_served();
    guest.bridge.stall();
    guest.dom0.send("during", r#"{"name":"count"}"#);
    let reply = guest.dom0.wait_answer("during", Duration::from_secs(30));
    assert_eq!(
        reply.as_deref(),
        Some(answer("2", "0").as_str()),
        "{}",
        guest.agent.log()
    );
    assert!(guest.bridge.clients_served() > served, "the agent did not reconnect");
    assert!(guest.agent.log().contains("no reply within"), "{}", guest.agent.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_xenstored_with_requests_pending_loses_none_and_runs_none_twice() {
    let guest = Guest::start(probe_agent().config(QUICK_RECOVERY));
    let hypervisor = hypervisor(&guest).await;
    let burst = requests("f", "count", 200);
    hypervisor.send_all(&burst).await;
    tokio::time::sleep(Duration::from_millis(40)).await;
    guest.xenstored.freeze();
    // Longer than the agent's XenStore timeout: it gives the connection up.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    guest.xenstored.thaw();
    let answers = hypervisor.answers_to(&ids(&burst), Duration::from_secs(120)).await;
    assert_counts(&answers, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    hypervisor.assert_written_once(&ids(&burst));
}

/// Kill xenstored (its tree is lost), start a new one, and time until the
/// agent answers a request through it.
async fn restart_xenstored_and_time_recovery(guest: &mut Guest) -> Duration {
    guest.xenstored.restart(DOMID).expect("restart xenstored");
    // As the guest's kernel does when the store is gone: the device
    // connection is reset, and the agent must find its way back.
    guest.bridge.drop_client();
    let restarted = Instant::now();
    let dom0 = guest.dom0.clone();
    let reply = tokio::task::spawn_blocking(move || dom0.call("after-restart", r#"{"name":"version"}"#))
        .await
        .expect("the hypervisor's call");
    assert_eq!(reply, answer(AGENT_VERSION, "0"));
    restarted.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xenstored_killed_and_restarted_while_idle_is_served_again() {
    let mut guest = Guest::start(probe_agent());
    assert_eq!(guest.dom0.call("before", r#"{"name":"count"}"#), answer("1", "0"));
    let recovery = restart_xenstored_and_time_recovery(&mut guest).await;
    println!("answered {recovery:?} after xenstored restarted");
    assert_eq!(guest.dom0.call("later", r#"{"name":"count"}"#), answer("2", "0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xenstored_killed_and_restarted_with_requests_pending_loses_none_written_after() {
    let mut guest = Guest::start(probe_agent());
    {
        let hypervisor = hypervisor(&guest).await;
        hypervisor.send_all(&requests("p", "version", 200)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The old tree is gone with the old daemon; the toolstack writes its
    // requests again, and more arrive while the agent reconnects.
    let recovery = restart_xenstored_and_time_recovery(&mut guest).await;
    println!("answered {recovery:?} after xenstored restarted");
    let hypervisor = hypervisor(&guest).await;
    let again = requests("q", "version", 200);
    hypervisor.send_all(&again).await;
    let answers = hypervisor.answers_to(&ids(&again), Duration::from_secs(120)).await;
    assert!(
        answers
            .values()
            .all(|answer| *answer == crate::answer(AGENT_VERSION, "0"))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    hypervisor.assert_written_once(&ids(&again));
    assert!(hypervisor.requests_left().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_running_commands_and_leaves_waiting_ones_for_the_next_start() {
    let guest = Guest::start(probe_agent());
    let hypervisor = hypervisor(&guest).await;
    // One lane (the probe's): the first sleep runs, the others wait.
    let sleeps: Vec<(String, String)> = (0..4)
        .map(|index| (format!("s{index}"), r#"{"name":"sleep","value":1500}"#.to_owned()))
        .collect();
    hypervisor.send_all(&sleeps).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked = Instant::now();
    let status = guest.agent.stop().expect("the agent exits after SIGTERM");
    let took = asked.elapsed();
    assert!(status.success(), "{status}\n{}", guest.agent.log());
    // The bound: the running command's deadline plus the drain of its
    // answer; here it had a second left to run.
    assert!(took < Duration::from_secs(10), "SIGTERM took {took:?}");
    println!("SIGTERM with a command running: exited in {took:?}");
    assert_eq!(guest.dom0.read("data/guest/s0"), Some(answer("slept", "0")));
    let waiting = hypervisor.requests_left().await;
    assert_eq!(waiting.len(), 3, "the waiting requests stay: {waiting:?}");
    assert!(guest.dom0.read("data/guest/s1").is_none());
    guest.agent.restart();
    let answers = hypervisor.answers_to(&ids(&sleeps), Duration::from_secs(60)).await;
    assert!(answers.values().all(|reply| *reply == answer("slept", "0")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_when_idle_exits_at_once() {
    let guest = Guest::start(probe_agent());
    assert_eq!(
        guest.dom0.call("before", r#"{"name":"version"}"#),
        answer(AGENT_VERSION, "0")
    );
    let asked = Instant::now();
    let status = guest.agent.stop().expect("the agent exits after SIGTERM");
    assert!(status.success());
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "SIGTERM took {:?}",
        asked.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_soak_keeps_memory_and_file_descriptors_flat() {
    let total = env_count("GUESTWARD_SOAK", 3000);
    let guest = Guest::start(probe_agent().log_level("warn"));
    let hypervisor = hypervisor(&guest).await;
    let round = 100;
    let warm_up = total / 4;
    let mut baseline = None;
    let mut sent = 0;
    while sent < total {
        let batch: Vec<(String, String)> = (sent..sent + round)
            .map(|index| (format!("soak{index}"), r#"{"name":"version"}"#.to_owned()))
            .collect();
        hypervisor.stream(&batch).await;
        hypervisor.collect(&ids(&batch), Duration::from_secs(60), true).await;
        sent += round;
        if baseline.is_none() && sent >= warm_up {
            baseline = Some((guest.agent.rss_kib(), guest.agent.open_fds()));
        }
    }
    let (rss_before, fds_before) = baseline.expect("a baseline");
    let (rss_after, fds_after) = (guest.agent.rss_kib(), guest.agent.open_fds());
    println!("soak of {total}: RSS {rss_before} → {rss_after} KiB, fds {fds_before} → {fds_after}");
    assert!(fds_after <= fds_before + 2, "fds grew: {fds_before} → {fds_after}");
    // Flat: allocator noise, not growth with the number of calls.
    assert!(
        rss_after <= rss_before + 2048,
        "RSS grew by {} KiB over {} calls",
        rss_after.saturating_sub(rss_before),
        total - warm_up
    );
    assert!(hypervisor.answers_left().await.is_empty());
}

/// Replace `path` with `contents` by renaming a new file over it.
fn replace_file(path: &std::path::Path, contents: &[u8]) {
    let new = path.with_extension("new");
    std::fs::write(&new, contents).unwrap();
    std::fs::set_permissions(&new, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::rename(&new, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_replaced_on_disk_while_running_does_not_disturb_the_daemon() {
    let cache = tempfile::tempdir().unwrap();
    std::fs::set_permissions(cache.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let guest = Guest::start(AgentBuilder::new().cache(cache.path()).log_level("info"));
    // Started again, it loads its components from the cache it just filled.
    guest.agent.restart();
    assert_eq!(
        guest.dom0.call("before", r#"{"name":"version"}"#),
        answer(AGENT_VERSION, "0")
    );
    // A package upgrade or `guestward compile` replaces files as they all
    // do: a new file renamed over the old one. Here the component and
    // every compiled artifact become garbage on disk.
    let component = guest.agent.commands().join("version.wasm");
    replace_file(&component, b"not a component any more");
    for artifact in std::fs::read_dir(cache.path()).unwrap() {
        replace_file(&artifact.unwrap().path(), b"not an artifact any more");
    }
    for index in 0..20 {
        assert_eq!(
            guest.dom0.call(&format!("after{index}"), r#"{"name":"version"}"#),
            answer(AGENT_VERSION, "0"),
            "{}",
            guest.agent.log()
        );
        guest.dom0.rm(&format!("data/guest/after{index}"));
    }
    assert!(
        guest.agent.exit_status().is_none(),
        "the daemon died:\n{}",
        guest.agent.log()
    );
    // A restart loads what is on disk now: the replaced built-in is
    // refused (its hash is pinned), the garbage artifacts are recompiled,
    // and the others serve.
    guest.agent.restart();
    assert!(
        guest.agent.log().contains("refused command component"),
        "{}",
        guest.agent.log()
    );
    let features = guest.dom0.call("features", r#"{"name":"features"}"#);
    assert!(features.ends_with(r#""returncode": "0"}"#), "{features}");
}

fn artifacts_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|entry| entry.path().extension().is_some_and(|ext| ext == "cwasm"))
        })
        .count()
}

#[test]
fn guestward_compile_fills_the_cache_and_the_daemon_then_starts_warm() {
    let cache = artifacts::installed_cache();
    assert_eq!(artifacts_in(cache.path()), artifacts::builtin().len());
    let agent = AgentBuilder::new().cache(cache.path()).log_level("debug").start();
    assert!(
        !agent.log().contains("compiled the components into the cache"),
        "a warm start compiled:\n{}",
        agent.log()
    );
    // Nor did it run any component: what each answers to info() was
    // cached by `guestward compile` (running them kept ~2 MiB resident).
    assert_eq!(
        agent.log().matches("info() answer taken from the cache").count(),
        artifacts::builtin_loaded().len(),
        "{}",
        agent.log()
    );
    assert_eq!(agent.call("version", r#""agent""#), answer(AGENT_VERSION, "0"));
    // `keyinit` is a name only password.wasm's info() gives.
    let keyinit = agent.call("keyinit", r#""123456789012345678901234567890123""#);
    assert!(keyinit.ends_with(r#""returncode": "D0"}"#), "{keyinit}");
}

#[test]
fn a_first_boot_compiles_in_a_child_process_and_leaves_the_cache_warm() {
    let cache = artifacts::private_cache();
    let agent = AgentBuilder::new().cache(cache.path()).log_level("info").start();
    assert!(
        agent.log().contains("compiled the components into the cache"),
        "{}",
        agent.log()
    );
    assert_eq!(
        artifacts_in(cache.path()),
        std::fs::read_dir(agent.commands()).unwrap().count()
    );
    assert_eq!(agent.call("version", r#""agent""#), answer(AGENT_VERSION, "0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_does_not_outlive_its_connection() {
    use guestward::xenstore::{Endpoint, Error, XsClient};
    Xenstored::require_tools().unwrap();
    let xenstored = Xenstored::start().unwrap();
    let bridge = xenstored.guest(DOMID).unwrap();
    let client = XsClient::connect(Endpoint::Socket(bridge.socket().to_owned()))
        .await
        .unwrap();
    client.write("data/kept", b"1").await.unwrap();
    let transaction = client.transaction().await.unwrap();
    let served = bridge.clients_served();
    client.drop_connection();
    // Reconnected: a new connection, where the old transaction id means
    // nothing (or another transaction).
    while bridge.clients_served() == served || client.read("name").await.is_err() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for outcome in [
        transaction.read("data/kept").await.map(drop),
        transaction.rm("data/kept").await,
        transaction.write("data/new", b"x").await,
    ] {
        assert!(matches!(outcome, Err(Error::Disconnected { .. })), "{outcome:?}");
    }
    assert!(matches!(transaction.commit().await, Err(Error::Disconnected { .. })));
    assert_eq!(client.read("data/kept").await.unwrap(), b"1");
    assert!(client.read("data/new").await.is_err());
}
