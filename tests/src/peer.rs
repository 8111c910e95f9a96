//! The peer the benchmarks compare with: Debian's `qemu-guest-agent`
//! (`qemu-ga`), run on a unix socket (`qemu-ga -m unix-listen -p PATH`),
//! and what both are measured with from outside: `/proc/<pid>`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's qemu-ga (package qemu-guest-agent; `make bench` installs it).
pub const QEMU_GA: &str = "/usr/sbin/qemu-ga";

/// A running qemu-ga. Dropping it kills it.
pub struct QemuGa {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl QemuGa {
    /// Start qemu-ga on a socket of its own; return it and how long it took
    /// until it answered `guest-ping`.
    pub fn start() -> std::io::Result<(Self, Duration)> {
        let dir = tempfile::Builder::new().prefix("qga-").tempdir_in("/tmp")?;
        let socket = dir.path().join("qga.sock");
        let started = Instant::now();
        // A pid file of its own: the default, /var/run/qemu-ga.pid, is
        // locked by any other qemu-ga running.
        let child = Command::new(QEMU_GA)
            .args(["-m", "unix-listen", "-p"])
            .arg(&socket)
            .arg("-t")
            .arg(dir.path())
            // A pid file of its own: the default, /var/run/qemu-ga.pid, is
            // locked by whichever other qemu-ga runs (a parallel test).
            .arg("-f")
            .arg(dir.path().join("qemu-ga.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let peer = Self {
            child,
            socket,
            _dir: dir,
        };
        loop {
            if let Ok(mut connection) = peer.connect()
                && connection.execute("guest-ping").is_ok()
            {
                return Ok((peer, started.elapsed()));
            }
            if started.elapsed() > Duration::from_secs(10) {
                return Err(std::io::Error::other("qemu-ga did not answer within 10 s"));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its unix socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A connection to its socket.
    pub fn connect(&self) -> std::io::Result<QgaConnection> {
        QgaConnection::open(&self.socket)
    }
}

impl Drop for QemuGa {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One connection to a QGA socket (qemu-ga's or guestward's), requests
/// one line at a time. Read every answer before dropping it: qemu-ga 7.2
/// exits when a client closes with an answer unread.
pub struct QgaConnection {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    line: String,
}

impl QgaConnection {
    /// Connect to the QGA socket at `socket`.
    pub fn open(socket: &Path) -> std::io::Result<Self> {
        let stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Self {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
            line: String::new(),
        })
    }

    /// Run `command` (no arguments); its answer line.
    pub fn execute(&mut self, command: &str) -> std::io::Result<&str> {
        writeln!(self.writer, r#"{{"execute":"{command}"}}"#)?;
        self.line.clear();
        self.reader.read_line(&mut self.line)?;
        if !self.line.starts_with(r#"{"return""#) {
            return Err(std::io::Error::other(format!("qemu-ga answered {}", self.line)));
        }
        Ok(&self.line)
    }

    /// Send one request (a JSON text, without the newline); the answer's
    /// bytes, up to and including its newline (a `guest-sync-delimited`
    /// answer starts with 0xFF).
    pub fn request_bytes(&mut self, request: &str) -> std::io::Result<Vec<u8>> {
        writeln!(self.writer, "{request}")?;
        let mut answer = Vec::new();
        self.reader.read_until(b'\n', &mut answer)?;
        if !answer.ends_with(b"\n") {
            return Err(std::io::Error::other(format!(
                "the answer to {request} ended early: {}",
                String::from_utf8_lossy(&answer)
            )));
        }
        Ok(answer)
    }

    /// Send one request; its answer, parsed (a 0xFF before it dropped).
    pub fn request(&mut self, request: &str) -> std::io::Result<serde_json::Value> {
        let answer = self.request_bytes(request)?;
        let text = answer.strip_prefix(&[0xFF]).unwrap_or(&answer);
        serde_json::from_slice(text).map_err(|error| {
            std::io::Error::other(format!(
                "the answer to {request} is not JSON ({error}): {}",
                String::from_utf8_lossy(&answer)
            ))
        })
    }
}

/// Resident memory of `pid` (`VmRSS`), in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_field(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// Context switches of every thread of `pid` so far (voluntary and not):
/// each one is a wake-up.
pub fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .map(|task| {
            let status = task.path().join("status");
            let status = status.to_string_lossy();
            status_field(&status, "voluntary_ctxt_switches:") + status_field(&status, "nonvoluntary_ctxt_switches:")
        })
        .sum()
}

/// Threads of `pid`.
pub fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, Iterator::count)
}

fn status_field(path: &str, field: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
