//! The daemon under systemd's service protocol: the real `guestward serve`
//! with `NOTIFY_SOCKET` pointing at a datagram socket the test holds, as
//! systemd's own would be (a path, or an abstract name), and a watchdog.
//! Counts are asserted loosely and nothing against a tight clock: a slow
//! machine sends fewer pings, never a failed test.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

use guestward_tests::{Agent, AgentBuilder, Xenstored};

/// What the agent waits up to, at most, for anything it should send.
const PATIENCE: Duration = Duration::from_secs(60);
/// The watchdog timeout the tests give: pings every 200 ms.
const WATCHDOG_USEC: &str = "400000";

/// systemd's end of the notification socket.
struct NotifySocket {
    socket: UnixDatagram,
    /// What `NOTIFY_SOCKET` says.
    address: String,
    /// Every datagram received so far, with when it arrived.
    received: Vec<(Instant, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl NotifySocket {
    fn at_path() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("gw-notify-")
            .tempdir_in("/tmp")
            .expect("dir");
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        Self::new(socket, path.display().to_string(), Some(dir))
    }

    fn abstract_name() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        let name = format!("guestward-tests/notify-{}-{nanos:x}", std::process::id());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract address");
        let socket = UnixDatagram::bind_addr(&address).expect("bind the abstract notify socket");
        Self::new(socket, format!("@{name}"), None)
    }

    fn new(socket: UnixDatagram, address: String, dir: Option<tempfile::TempDir>) -> Self {
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        Self {
            socket,
            address,
            received: Vec::new(),
            _dir: dir,
        }
    }

    /// An agent that notifies this socket, with a watchdog.
    fn builder(&self) -> AgentBuilder {
        AgentBuilder::new()
            .env("NOTIFY_SOCKET", &self.address)
            .env("WATCHDOG_USEC", WATCHDOG_USEC)
    }

    /// Receive until some datagram received (now or before) satisfies
    /// `wanted`; fail with everything received and the agent's log.
    fn wait_for(&mut self, agent: &Agent, what: &str, wanted: impl Fn(&[(Instant, String)]) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !wanted(&self.received) {
            assert!(
                Instant::now() < deadline,
                "no {what} from the agent; received {:?}\n{}",
                self.texts(),
                agent.log()
            );
            self.receive_for(Duration::from_millis(100));
        }
    }

    /// Receive whatever arrives in the next `time`.
    fn receive_for(&mut self, time: Duration) {
        let until = Instant::now() + time;
        let mut buffer = [0u8; 4096];
        while Instant::now() < until {
            if let Ok(count) = self.socket.recv(&mut buffer) {
                let text = String::from_utf8_lossy(&buffer[..count]).into_owned();
                self.received.push((Instant::now(), text));
            }
        }
    }

    fn texts(&self) -> Vec<&str> {
        self.received.iter().map(|(_, text)| text.as_str()).collect()
    }

    /// The assignments received, in order, one per line.
    fn assignments(&self) -> Vec<&str> {
        self.received.iter().flat_map(|(_, text)| text.lines()).collect()
    }

    fn pings(&self) -> Vec<Instant> {
        let is_ping = |text: &String| text.lines().any(|line| line == "WATCHDOG=1");
        self.received
            .iter()
            .filter(|(_, text)| is_ping(text))
            .map(|(at, _)| *at)
            .collect()
    }
}

fn has(received: &[(Instant, String)], assignment: &str) -> bool {
    received
        .iter()
        .any(|(_, text)| text.lines().any(|line| line == assignment))
}

fn has_status(received: &[(Instant, String)], part: &str) -> bool {
    received.iter().any(|(_, text)| {
        text.lines()
            .any(|line| line.starts_with("STATUS=") && line.contains(part))
    })
}

/// READY only once the socket answers, a status, pings that keep coming
/// at about half the watchdog timeout, and STOPPING at SIGTERM.
fn ready_status_pings_and_stopping(mut notify: NotifySocket) {
    let agent = notify.builder().spawn();
    notify.wait_for(&agent, "READY=1", |received| has(received, "READY=1"));
    // Ready means answering: the first request, with no retry, is answered.
    let version = agent.request(r#"{"name":"version"}"#);
    assert!(version.contains(r#""returncode": "0""#), "{version}");
    notify.wait_for(&agent, "a status", |received| {
        has_status(received, "commands on the local socket; no XenStore")
    });

    notify.wait_for(&agent, "three watchdog pings", |received| {
        received
            .iter()
            .filter(|(_, text)| text.lines().any(|line| line == "WATCHDOG=1"))
            .count()
            >= 3
    });
    notify.receive_for(Duration::from_millis(600));
    let pings = notify.pings();
    // Never faster than asked (every 200 ms; a 100 ms bound leaves room
    // for a late tick followed by an on-time one), and still coming.
    let span = *pings.last().expect("pings") - pings[0];
    let at_most = (span.as_millis() / 100) as usize + 2;
    assert!(
        pings.len() <= at_most,
        "{} pings in {span:?}: a ping storm",
        pings.len()
    );

    agent.signal(rustix::process::Signal::TERM);
    notify.wait_for(&agent, "STOPPING=1", |received| has(received, "STOPPING=1"));
    let status = agent.wait_exit(PATIENCE).expect("the agent exits after SIGTERM");
    assert!(status.success(), "{status}\n{}", agent.log());
    let assignments = notify.assignments();
    let ready = assignments.iter().position(|line| *line == "READY=1");
    let stopping = assignments.iter().position(|line| *line == "STOPPING=1");
    assert!(ready < stopping, "{assignments:?}");
    assert_eq!(
        assignments.iter().filter(|line| **line == "READY=1").count(),
        1,
        "{assignments:?}"
    );
}

#[test]
fn a_notify_socket_path_gets_ready_status_watchdog_pings_and_stopping() {
    ready_status_pings_and_stopping(NotifySocket::at_path());
}

#[test]
fn an_abstract_notify_socket_gets_ready_status_watchdog_pings_and_stopping() {
    ready_status_pings_and_stopping(NotifySocket::abstract_name());
}

#[test]
fn a_watchdog_meant_for_another_process_is_never_pinged() {
    let mut notify = NotifySocket::at_path();
    // PID 1 is never the agent.
    let agent = notify.builder().env("WATCHDOG_PID", "1").spawn();
    notify.wait_for(&agent, "READY=1", |received| has(received, "READY=1"));
    notify.wait_for(&agent, "a status", |received| has_status(received, "serving"));
    // Ten ping intervals.
    notify.receive_for(Duration::from_secs(2));
    assert!(notify.pings().is_empty(), "pinged: {:?}", notify.texts());
}

#[test]
fn the_status_follows_the_xenstore_connection_as_it_is_lost_and_reopened() {
    let mut notify = NotifySocket::abstract_name();
    let mut xenstored = Xenstored::start().expect("start xenstored");
    let agent = notify.builder().xenstore(xenstored.socket()).start();
    notify.wait_for(&agent, "READY=1", |received| has(received, "READY=1"));
    notify.wait_for(&agent, "a connected status", |received| {
        has_status(received, "commands; xenstore connected")
    });

    // Down: the connection is lost and cannot be reopened until xenstored
    // is back, so the reconnecting state lasts and is reported.
    xenstored.stop();
    notify.wait_for(&agent, "a reconnecting status", |received| {
        has_status(received, "xenstore reconnecting: ")
    });
    let lost = notify.received.len();
    xenstored.restart(crate::DOMID).expect("restart xenstored");
    notify.wait_for(&agent, "a connected status again", |received| {
        has_status(&received[lost..], "xenstore connected")
    });
    // Pings kept coming throughout: a lost XenStore is not a dead daemon.
    assert!(notify.pings().len() >= 2, "{:?}", notify.texts());
}

/// Hostile environments: whatever systemd's variables hold, the daemon
/// serves, and says in its log why it does not notify.
#[test]
fn an_unusable_notify_socket_or_watchdog_timeout_does_not_stop_the_daemon() {
    let agent = AgentBuilder::new()
        .env("NOTIFY_SOCKET", "relative/notify")
        .env("WATCHDOG_USEC", "soon")
        .start();
    assert!(agent.call("version", "null").contains(r#""returncode": "0""#));
    assert!(agent.log().contains("not notifying systemd"), "{}", agent.log());

    let mut notify = NotifySocket::at_path();
    let agent = AgentBuilder::new()
        .env("NOTIFY_SOCKET", &notify.address)
        .env("WATCHDOG_USEC", "soon")
        .start();
    notify.wait_for(&agent, "READY=1", |received| has(received, "READY=1"));
    assert!(agent.log().contains("no watchdog pings"), "{}", agent.log());
    notify.receive_for(Duration::from_secs(1));
    assert!(notify.pings().is_empty(), "pinged: {:?}", notify.texts());

    // A notify socket nobody listens on.
    let gone = NotifySocket::at_path();
    let address = gone.address.clone();
    drop(gone);
    let agent = AgentBuilder::new()
        .env("NOTIFY_SOCKET", &address)
        .env("WATCHDOG_USEC", WATCHDOG_USEC)
        .start();
    assert!(agent.call("version", "null").contains(r#""returncode": "0""#));
    assert_eq!(
        agent.stop().map(|status| status.success()),
        Some(true),
        "{}",
        agent.log()
    );
}

/// The unit as shipped, with `ExecStart=` pointing at the binary under
/// test (`systemd-analyze verify` checks that the program exists).
fn unit_for_the_built_binary() -> (tempfile::TempDir, std::path::PathBuf) {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/guestward.service");
    let unit = std::fs::read_to_string(&shipped).expect("read dist/guestward.service");
    let binary = guestward_tests::artifacts::guestward_bin();
    let exec = "ExecStart=/usr/sbin/guestward ";
    assert_eq!(unit.matches(exec).count(), 1, "{unit}");
    let unit = unit.replace(exec, &format!("ExecStart={} ", binary.display()));
    let dir = tempfile::Builder::new()
        .prefix("gw-unit-")
        .tempdir_in("/tmp")
        .expect("dir");
    let path = dir.path().join("guestward.service");
    std::fs::write(&path, unit).expect("write the unit");
    (dir, path)
}

fn systemd_analyze(args: &[&str], unit: &std::path::Path) -> std::process::Output {
    std::process::Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .expect("run systemd-analyze (the systemd package; make setup-test installs it)")
}

/// Not only the exit code: verify exits 0 on an unknown or misspelt key
/// and only warns.
#[test]
fn the_unit_passes_systemd_analyze_verify_without_a_warning() {
    let (_dir, unit) = unit_for_the_built_binary();
    let output = systemd_analyze(&["verify"], &unit);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success() && said.trim().is_empty(), "{said}");
}

/// docs/operating.md gives the exposure score; the unit never gets worse
/// than that (`--threshold` is the score times ten).
#[test]
fn the_units_exposure_is_no_worse_than_the_documented_score() {
    let (_dir, unit) = unit_for_the_built_binary();
    let output = systemd_analyze(&["security", "--offline=yes", "--threshold=35", "--no-pager"], &unit);
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        said.contains("Overall exposure level for guestward.service: 3.5"),
        "{said}"
    );
    let docs = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operating.md"))
        .expect("read docs/operating.md");
    assert!(
        docs.contains("| guestward.service | 3.5 |"),
        "docs/operating.md lacks the score"
    );
}

/// In a mount namespace of its own (a private `/run/systemd`, `/run/log`,
/// `/var/log/journal`): a real systemd-journald, and the daemon with its
/// stderr on the journal's stream and `JOURNAL_STREAM` naming it, as
/// systemd starts a service. Prints the daemon's entries as JSON lines.
const JOURNAL_SCRIPT: &str = r#"
set -e
mount -t tmpfs tmpfs /run/systemd
mkdir /run/systemd/journal
mount -t tmpfs tmpfs /run/log
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
/lib/systemd/systemd-journald >"$SCRATCH/journald.log" 2>&1 &
journald=$!
trap 'kill $journald 2>/dev/null || true' EXIT
for _ in $(seq 200); do [ -S /run/systemd/journal/stdout ] && break; sleep 0.05; done
systemd-cat -t guestward-stream sh -c 'JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) exec "$GW" serve \
  --commands "$SCRATCH/commands" --root "$SCRATCH/root" --socket "$SCRATCH/agent.sock" \
  --cache "$CACHE" --trusted-keys "$SCRATCH/keys"' &
agent=$!
for _ in $(seq 1200); do "$GW" call --socket "$SCRATCH/agent.sock" version >/dev/null 2>&1 && break; sleep 0.05; done
"$GW" call --socket "$SCRATCH/agent.sock" nosuchcommand >/dev/null 2>&1 || true
kill -TERM $agent
wait $agent || true
journalctl --sync 2>/dev/null || sleep 1
journalctl -D /run/log/journal -o json --no-pager SYSLOG_IDENTIFIER=guestward
"#;

#[test]
fn under_systemd_the_daemon_logs_native_journal_entries_with_structured_fields() {
    for tool in [
        "/lib/systemd/systemd-journald",
        "/usr/bin/systemd-cat",
        "/usr/bin/journalctl",
    ] {
        assert!(
            std::path::Path::new(tool).exists(),
            "{tool} is missing (make setup-test installs systemd)"
        );
    }
    let scratch = tempfile::Builder::new()
        .prefix("gw-journal-")
        .tempdir_in("/tmp")
        .expect("scratch");
    for dir in ["commands", "root", "keys"] {
        std::fs::create_dir(scratch.path().join(dir)).expect("dir");
    }
    std::fs::copy(
        guestward_tests::artifacts::component("version"),
        scratch.path().join("commands/version.wasm"),
    )
    .expect("copy version");
    let output = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", JOURNAL_SCRIPT])
        .env("SCRATCH", scratch.path())
        .env("GW", guestward_tests::artifacts::guestward_bin())
        .env("CACHE", guestward_tests::artifacts::shared_cache())
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let context = format!(
        "{stdout}\n{}\njournald: {}",
        String::from_utf8_lossy(&output.stderr),
        std::fs::read_to_string(scratch.path().join("journald.log")).unwrap_or_default()
    );
    assert!(output.status.success(), "{context}");
    let entries: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let field = |entry: &serde_json::Value, name: &str| entry[name].as_str().unwrap_or_default().to_owned();
    // Native entries, not lines of text from the stream.
    assert!(!entries.is_empty(), "{context}");
    for entry in &entries {
        assert_eq!(field(entry, "_TRANSPORT"), "journal", "{entry}");
    }
    let call = entries
        .iter()
        .find(|entry| field(entry, "MESSAGE") == "call" && field(entry, "COMMAND") == "version")
        .unwrap_or_else(|| panic!("no call entry: {context}"));
    assert_eq!(field(call, "COMPONENT"), "version", "{call}");
    assert_eq!(field(call, "CODE"), "0", "{call}");
    assert_eq!(field(call, "PRIORITY"), "6", "{call}");
    assert!(!field(call, "REQUEST").is_empty(), "{call}");
    let unknown = entries
        .iter()
        .find(|entry| field(entry, "COMMAND") == "nosuchcommand")
        .unwrap_or_else(|| panic!("no entry for the unknown command: {context}"));
    assert!(!field(unknown, "REQUEST").is_empty(), "{unknown}");
    assert!(
        entries.iter().any(|entry| field(entry, "MESSAGE") == "guestward ready"),
        "{context}"
    );
}

/// `JOURNAL_STREAM` inherited with stderr elsewhere (here a file) is not
/// the journal: the logs stay where stderr goes.
#[test]
fn a_journal_stream_that_is_not_stderr_leaves_the_logs_on_stderr() {
    let agent = AgentBuilder::new().env("JOURNAL_STREAM", "1:1").start();
    assert!(agent.log().contains("guestward ready"), "{}", agent.log());
}
