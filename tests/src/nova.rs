//! The hypervisor side, done the way Nova's dom0 `agent` plugin does it:
//! `xenstore-write` the request to `/local/domain/<N>/data/host/<id>`, then
//! poll `/local/domain/<N>/data/guest/<id>` with `xenstore-read` (the real
//! CLI tools, talking to the real xenstored as dom0).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A dom0 toolstack talking to guest `domid`.
#[derive(Debug, Clone)]
pub struct Dom0 {
    socket: PathBuf,
    domid: u32,
    /// How often answers are polled (Nova: 0.5 s; tests poll faster).
    pub poll: Duration,
}

impl Dom0 {
    pub fn new(xenstored_socket: &Path, domid: u32) -> Self {
        Self {
            socket: xenstored_socket.to_owned(),
            domid,
            poll: Duration::from_millis(10),
        }
    }

    /// `/local/domain/<N>/<relative>`.
    pub fn path(&self, relative: &str) -> String {
        format!("/local/domain/{}/{relative}", self.domid)
    }

    fn tool(&self, name: &str) -> Command {
        let mut command = Command::new(name);
        command.env("XENSTORED_PATH", &self.socket);
        command
    }

    /// `xenstore-write PATH VALUE`.
    pub fn write(&self, relative: &str, value: &str) {
        let output = self
            .tool("xenstore-write")
            .arg(self.path(relative))
            .arg(value)
            .output()
            .expect("xenstore-write");
        assert!(
            output.status.success(),
            "xenstore-write {relative}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `xenstore-read -R PATH` (the raw value: without `-R`, 4.17's tool
    /// escapes backslashes and non-printable bytes), or `None` if it does
    /// not exist.
    pub fn read(&self, relative: &str) -> Option<String> {
        let output = self
            .tool("xenstore-read")
            .arg("-R")
            .arg(self.path(relative))
            .output()
            .expect("xenstore-read");
        output.status.success().then(|| {
            String::from_utf8_lossy(&output.stdout)
                .trim_end_matches('\n')
                .to_owned()
        })
    }

    /// `xenstore-exists PATH`.
    pub fn exists(&self, relative: &str) -> bool {
        self.tool("xenstore-exists")
            .arg(self.path(relative))
            .status()
            .expect("xenstore-exists")
            .success()
    }

    /// `xenstore-rm PATH`.
    pub fn rm(&self, relative: &str) {
        let _ = self.tool("xenstore-rm").arg(self.path(relative)).status();
    }

    /// `xenstore-list PATH`.
    pub fn list(&self, relative: &str) -> Vec<String> {
        let output = self
            .tool("xenstore-list")
            .arg(self.path(relative))
            .output()
            .expect("xenstore-list");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Write request `id` (the JSON text `request`).
    pub fn send(&self, id: &str, request: &str) {
        self.write(&format!("data/host/{id}"), request);
    }

    /// Poll for the answer to `id` until `timeout`.
    pub fn wait_answer(&self, id: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(answer) = self.read(&format!("data/guest/{id}")) {
                return Some(answer);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(self.poll);
        }
    }

    /// Send a request and wait (30 s, as Nova does) for its answer.
    pub fn call(&self, id: &str, request: &str) -> String {
        self.send(id, request);
        self.wait_answer(id, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("no answer to {id} ({request}) within 30 s"))
    }
}
