//! The QEMU guest agent exchange from the host's side: the protocol's
//! framing, ids and error classes byte for byte as qemu-ga 7.2 answers
//! them, the 0xFF resynchronisation, hostile clients, the operator's
//! allow and block lists, the virtio port (a pty standing in for it)
//! reopened when the host goes away, and the wall between the two
//! protocols' commands.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use guestward_tests::AgentBuilder;
use guestward_tests::qga::QgaClient;

use crate::protocol::PROBE_POLICY;

fn probe_agent() -> AgentBuilder {
    AgentBuilder::new()
        .component("probe")
        .policy(PROBE_POLICY)
        .log_level("info")
        .qga()
}

#[test]
fn answers_ids_and_errors_are_qemu_gas_byte_for_byte() {
    let agent = probe_agent().start();
    let mut qga = agent.qga();
    let vectors = [
        (r#"{"execute":"probe-echo"}"#, "{\"return\": {}}\n"),
        (
            r#"{"execute":"probe-echo","arguments":{"a":[1,2],"b":"é"},"id":"abc"}"#,
            "{\"return\": {\"a\": [1, 2], \"b\": \"\\u00E9\"}, \"id\": \"abc\"}\n",
        ),
        (r#"{"id":42,"execute":"probe-echo"}"#, "{\"return\": {}, \"id\": 42}\n"),
        (
            r#"{"execute":"probe-echo","id":{"a":[1,2]}}"#,
            "{\"return\": {}, \"id\": {\"a\": [1, 2]}}\n",
        ),
        (
            r#"{"execute":"guest-bogus","id":9}"#,
            "{\"id\": 9, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command guest-bogus has not been found\"}}\n",
        ),
        (
            r#"{"execute":""}"#,
            "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command  has not been found\"}}\n",
        ),
        (
            r#"{"arguments":{}}"#,
            "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input lacks member 'execute'\"}}\n",
        ),
        (
            r#"{"execute":1}"#,
            "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member 'execute' must be a string\"}}\n",
        ),
        (
            r#"{"execute":"probe-echo","foo":1,"id":"x"}"#,
            "{\"id\": \"x\", \"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member 'foo' is unexpected\"}}\n",
        ),
        (
            r#"{"execute":"probe-echo","arguments":[]}"#,
            "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member 'arguments' must be an object\"}}\n",
        ),
        (
            "[]",
            "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input must be a JSON object\"}}\n",
        ),
        (
            r#"{"execute":"a","execute":"b"}"#,
            "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, duplicate key\"}}\n",
        ),
        (
            r#"{'execute': 'probe-echo', 'id': 'single quotes'}"#,
            "{\"return\": {}, \"id\": \"single quotes\"}\n",
        ),
        (
            r#"{"execute":"probe-fail","arguments":{"class":"DeviceNotFound","desc":"no such disk"}}"#,
            "{\"error\": {\"class\": \"DeviceNotFound\", \"desc\": \"no such disk\"}}\n",
        ),
        // A code that is no QGA class (the runtime's 500) is a GenericError.
        (
            r#"{"execute":"probe-fail","arguments":{"class":"500","desc":"trapped"}}"#,
            "{\"error\": {\"class\": \"GenericError\", \"desc\": \"trapped\"}}\n",
        ),
    ];
    for (request, expected) in vectors {
        assert_eq!(qga.request(request), expected, "{request}");
    }
    // Malformed JSON: qemu-ga's class and prefix (the rest is the parser's).
    for garbage in ["{\"execute\":}", "nonsense", "{\"execute\" \"x\"}"] {
        let answer = qga.request(garbage);
        assert!(
            answer.starts_with("{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, "),
            "{garbage}: {answer}"
        );
    }
    assert_eq!(
        qga.request(r#"{"execute":"probe-echo","id":"still"}"#),
        "{\"return\": {}, \"id\": \"still\"}\n"
    );
}

#[test]
fn requests_are_cut_from_the_stream_not_from_lines() {
    let agent = probe_agent().start();
    let mut qga = agent.qga();
    // Two in one write without a separator, then one split across writes.
    qga.send(br#"{"execute":"probe-echo","id":1}{"execute":"probe-echo","id":2}"#)
        .unwrap();
    assert_eq!(qga.answer_text(), "{\"return\": {}, \"id\": 1}\n");
    assert_eq!(qga.answer_text(), "{\"return\": {}, \"id\": 2}\n");
    qga.send(br#"{"execute":"probe-e"#).unwrap();
    assert!(qga.is_silent_for(Duration::from_millis(200)));
    qga.send(b"cho\",\r\n \"id\": \"split\"}").unwrap();
    assert_eq!(qga.answer_text(), "{\"return\": {}, \"id\": \"split\"}\n");
    // A command without a success response answers nothing; the next
    // answer is the next request's.
    qga.send(br#"{"execute":"probe-silent"}{"execute":"probe-echo","id":"after"}"#)
        .unwrap();
    assert_eq!(qga.answer_text(), "{\"return\": {}, \"id\": \"after\"}\n");
}

#[test]
fn a_delimiter_byte_drops_the_partial_request_and_resynchronises() {
    let agent = probe_agent().start();
    let mut qga = agent.qga();
    // A stuck, unfinished object would swallow every later request...
    qga.send(b"{\"execute\":\"probe-echo\",\"arguments\":{\"x\":[").unwrap();
    assert!(qga.is_silent_for(Duration::from_millis(200)));
    // ...until the host sends 0xFF, as a client of guest-sync-delimited
    // does before syncing (libvirt syncs with guest-sync instead).
    let mut resync = vec![0xFF];
    resync.extend_from_slice(br#"{"execute":"probe-echo","id":"synced"}"#);
    qga.send(&resync).unwrap();
    assert_eq!(qga.answer_text(), "{\"return\": {}, \"id\": \"synced\"}\n");
    // 0xFF inside a string resets too; 0xFE is the same.
    qga.send(b"{\"execute\":\"probe-e\xfe{\"execute\":\"probe-echo\",\"id\":2}")
        .unwrap();
    assert_eq!(qga.answer_text(), "{\"return\": {}, \"id\": 2}\n");
}

#[test]
fn an_oversized_or_too_deep_request_gets_one_error_and_the_session_goes_on() {
    let agent = probe_agent().start();
    let mut qga = agent.qga();
    let rss_before = agent.rss_kib();
    // 16 MiB in one string: refused once, never buffered.
    let mut huge = br#"{"execute":"probe-echo","arguments":{"x":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'a', 16 << 20));
    huge.extend_from_slice(br#""}}{"execute":"probe-echo","id":"next"}"#);
    let mut writer = UnixStream::connect(agent.qga_socket()).unwrap();
    writer.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let sender = std::thread::spawn(move || {
        writer.write_all(&huge).unwrap();
        writer
    });
    let writer = sender.join().unwrap();
    let mut reader = QgaClient::connect(&agent.qga_socket()).unwrap();
    drop(reader.request(r#"{"execute":"probe-echo"}"#)); // the agent still serves others
    let mut answers = String::new();
    let mut buffered = std::io::BufReader::new(writer);
    for _ in 0..2 {
        std::io::BufRead::read_line(&mut buffered, &mut answers).unwrap();
    }
    assert_eq!(
        answers,
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON token size limit exceeded\"}}\n{\"return\": {}, \"id\": \"next\"}\n"
    );
    let grown = agent.rss_kib().saturating_sub(rss_before);
    assert!(
        grown < 8 * 1024,
        "the agent grew by {grown} KiB reading a 16 MiB request"
    );
    // Nested deeper than QEMU's 1024 levels: one error, then service.
    let deep = format!(
        r#"{{"execute":"probe-echo","id":{}{}}}"#,
        "[".repeat(1100),
        "]".repeat(1100)
    );
    assert_eq!(
        qga.request(&deep),
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON nesting depth limit exceeded\"}}\n"
    );
    assert_eq!(
        qga.request(r#"{"execute":"probe-echo","id":1}"#),
        "{\"return\": {}, \"id\": 1}\n"
    );
}

#[test]
fn clients_that_vanish_mid_request_leave_the_agent_serving() {
    let agent = probe_agent().start();
    // Half a request, then gone: it dies with its connection (qemu-ga
    // carries it over into the next client's first request).
    let mut half = agent.qga();
    half.send(br#"{"execute":"probe-echo","id":"#).unwrap();
    drop(half);
    let mut next = agent.qga();
    assert_eq!(
        next.request(r#"{"execute":"probe-echo","id":"fresh"}"#),
        "{\"return\": {}, \"id\": \"fresh\"}\n"
    );
    // A request whose answer is never read, closed while it runs, and one
    // closed with its answer unread (qemu-ga 7.2 exits on the reset).
    let mut gone = agent.qga();
    gone.send(br#"{"execute":"probe-sleep","arguments":{"ms":300}}"#)
        .unwrap();
    drop(gone);
    let mut unread = UnixStream::connect(agent.qga_socket()).unwrap();
    unread
        .write_all(br#"{"execute":"probe-echo","arguments":{"pad":"xxxxxxxx"}}"#)
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    drop(unread);
    std::thread::sleep(Duration::from_millis(400));
    assert!(agent.exit_status().is_none(), "the agent exited:\n{}", agent.log());
    assert_eq!(
        next.request(r#"{"execute":"probe-echo","id":"alive"}"#),
        "{\"return\": {}, \"id\": \"alive\"}\n"
    );
}

#[test]
fn the_operators_lists_disable_commands_as_qemu_ga_does() {
    let blocked = probe_agent().arg("--qga-block-rpcs=probe-silent,probe-fail").start();
    let mut qga = blocked.qga();
    assert_eq!(
        qga.request(r#"{"execute":"probe-fail","arguments":"not even an object","id":1}"#),
        "{\"id\": 1, \"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member 'arguments' must be an object\"}}\n"
    );
    assert_eq!(
        qga.request(r#"{"execute":"probe-fail","arguments":{"bad":true},"id":1}"#),
        "{\"id\": 1, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Command probe-fail has been disabled\"}}\n"
    );
    // Components learn which commands are off (guest-info reports them).
    assert_eq!(
        qga.execute("probe-disabled", "")["return"],
        serde_json::json!(["qga:probe-fail", "qga:probe-silent"])
    );
    let allowed = probe_agent()
        .config("qga-allow-rpcs = [\"probe-echo\", \"probe-disabled\"]\n")
        .start();
    let mut qga = allowed.qga();
    assert_eq!(qga.request(r#"{"execute":"probe-echo"}"#), "{\"return\": {}}\n");
    assert_eq!(
        qga.request(r#"{"execute":"probe-sleep"}"#),
        "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Command probe-sleep has been disabled\"}}\n"
    );
    assert_eq!(
        qga.execute("probe-disabled", "")["return"],
        serde_json::json!(["qga:probe-fail", "qga:probe-silent", "qga:probe-sleep"])
    );
}

#[test]
fn neither_protocol_reaches_the_others_commands() {
    let agent = probe_agent().start();
    // The Nova socket cannot run a QGA command, even by its full name...
    assert_eq!(
        agent.call("qga:probe-echo", "{}"),
        r#"{"message": "No such agent command 'qga:probe-echo'", "returncode": "404"}"#
    );
    // ...nor can QGA run a Nova command, nor name one with the prefix.
    let mut qga = agent.qga();
    for name in ["echo", "qga:probe-echo", "version"] {
        assert_eq!(
            qga.request(&format!(r#"{{"execute":"{name}"}}"#)),
            format!(
                "{{\"error\": {{\"class\": \"CommandNotFound\", \"desc\": \"The command {name} has not been found\"}}}}\n"
            ),
        );
    }
    // And `features` lists only Nova commands.
    assert!(!agent.call("features", "\"\"").contains("qga:"));
}

#[test]
fn the_port_is_reopened_when_the_host_side_goes_away_and_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let port = dir.path().join("org.qemu.guest_agent.0");
    // A pty stands in for the virtio port: the agent opens the path; the
    // test is the host, on the pty's other side.
    // The agent starts before the port exists (udev makes it later in a
    // real boot) and serves it when it appears.
    let agent = probe_agent().arg(&format!("--qga-device={}", port.display())).start();
    let port_state = || {
        let status: serde_json::Value = serde_json::from_str(&agent.request(r#"{"status": {}}"#)).unwrap();
        let exchanges = status["exchanges"].as_array().cloned().unwrap_or_default();
        let port = exchanges
            .iter()
            .find(|exchange| exchange["name"] == "qga-port")
            .cloned();
        port.map(|port| port["state"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(port_state().as_deref(), Some("waiting"));
    let mut host = Pty::open(&port);
    let first = host.request_until_answered(r#"{"execute":"probe-echo","id":1}"#, Duration::from_secs(30));
    assert_eq!(first, "{\"return\": {}, \"id\": 1}\n", "{}", agent.log());
    assert_eq!(port_state().as_deref(), Some("open"));
    assert_eq!(
        host.request(r#"{"execute":"probe-echo","id":1}"#),
        "{\"return\": {}, \"id\": 1}\n"
    );
    // The host goes away mid-request; a new host side appears at the path.
    host.send(br#"{"execute":"probe-e"#);
    drop(host);
    let mut host = Pty::open(&port);
    // The agent reopens within a second or two; the half request is gone.
    let answer = host.request_until_answered(r#"{"execute":"probe-echo","id":2}"#, Duration::from_secs(30));
    assert_eq!(answer, "{\"return\": {}, \"id\": 2}\n");
    assert!(agent.log().contains("serving the QGA protocol on a port"));
}

/// A pty pair whose agent side is reachable at a path (a symlink, replaced
/// atomically), as a virtio port's host side comes and goes.
struct Pty {
    host: std::fs::File,
}

impl Pty {
    fn open(link: &std::path::Path) -> Self {
        use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let name = ptsname(&master, Vec::new()).unwrap();
        let name = std::path::PathBuf::from(name.to_string_lossy().into_owned());
        // Raw on both sides before the agent opens it: no echo, no
        // translation of 0xFF or newlines.
        let agent_side = std::fs::File::options().read(true).write(true).open(&name).unwrap();
        for fd in [rustix::fd::AsFd::as_fd(&master), rustix::fd::AsFd::as_fd(&agent_side)] {
            let mut termios = rustix::termios::tcgetattr(fd).unwrap();
            termios.make_raw();
            rustix::termios::tcsetattr(fd, rustix::termios::OptionalActions::Now, &termios).unwrap();
        }
        drop(agent_side);
        let staged = link.with_extension("new");
        let _ = std::fs::remove_file(&staged);
        std::os::unix::fs::symlink(&name, &staged).unwrap();
        std::fs::rename(&staged, link).unwrap();
        Self {
            host: std::fs::File::from(master),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.host.write_all(bytes).unwrap();
    }

    fn read_line(&mut self, timeout: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + timeout;
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while std::time::Instant::now() < deadline {
            let ready = rustix::event::poll(
                &mut [rustix::event::PollFd::new(&self.host, rustix::event::PollFlags::IN)],
                Some(&rustix::event::Timespec {
                    tv_sec: 0,
                    tv_nsec: 100_000_000,
                }),
            )
            .unwrap_or(0);
            if ready == 0 {
                continue;
            }
            if self.host.read(&mut byte).unwrap_or(0) == 0 {
                return None;
            }
            line.push(byte[0]);
            if byte[0] == b'\n' {
                return Some(String::from_utf8_lossy(&line).into_owned());
            }
        }
        None
    }

    fn request(&mut self, line: &str) -> String {
        self.send(line.as_bytes());
        self.read_line(Duration::from_secs(60)).expect("an answer on the port")
    }

    /// Send `line` until the agent (reopening the port) answers it.
    fn request_until_answered(&mut self, line: &str, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            self.send(line.as_bytes());
            if let Some(answer) = self.read_line(Duration::from_millis(500)) {
                return answer;
            }
            // Not yet reopened: the bytes wait in the pty; a resync byte
            // keeps a later copy from being appended to an earlier one.
            self.send(&[0xFF]);
        }
        panic!("the agent never opened the port");
    }
}

crate::guest_test!(
    while_qga_has_the_filesystems_frozen_nova_commands_that_could_write_are_refused,
    AgentBuilder::new()
        .component("probe")
        .component("fsfreeze")
        .policy(&format!("{PROBE_POLICY}\n[component.fsfreeze]\nfreeze = true\n"))
        .qga(),
    |guest| {
        let agent = &guest.agent;
        let mountinfo = agent.root().join("proc/self/mountinfo");
        std::fs::create_dir_all(mountinfo.parent().unwrap()).unwrap();
        std::fs::write(&mountinfo, "40 1 254:2 / /srv rw,relatime - xfs /dev/vdb rw\n").unwrap();
        std::fs::create_dir_all(agent.root().join("etc/app")).unwrap();
        let write = r#"{"name":"write-file","value":{"path":"/etc/app/conf","contents":"x"}}"#;
        let version = r#"{"name":"version","value":"agent"}"#;
        let mut qga = agent.qga();
        assert_eq!(
            qga.execute("guest-fsfreeze-freeze", ""),
            serde_json::json!({"return": 1})
        );
        // The probe is granted a write (files read-write under /etc/app):
        // all its commands are refused, from XenStore and the local socket.
        let refused = crate::answer(
            "the filesystems are frozen for a snapshot: 'write-file' could write to them and is refused until the host thaws them",
            "500",
        );
        assert_eq!(guest.dom0.call("w1", write), refused);
        assert_eq!(
            agent.call("write-file", r#"{"path":"/etc/app/conf","contents":"x"}"#),
            refused
        );
        assert!(!agent.root().join("etc/app/conf").exists());
        // version writes nothing: it runs.
        assert_eq!(guest.dom0.call("v1", version), crate::answer(crate::AGENT_VERSION, "0"));
        assert_eq!(qga.execute("guest-fsfreeze-thaw", ""), serde_json::json!({"return": 1}));
        assert_eq!(guest.dom0.call("w2", write), crate::answer("", "0"));
        assert_eq!(std::fs::read_to_string(agent.root().join("etc/app/conf")).unwrap(), "x");
    }
);
