//! Debian's real C `xenstored`, run on a unix socket in a directory of its
//! own, with an `LD_PRELOAD` shim (`shim/hypervisor.c`) standing in for the
//! hypervisor. Each test gets its own daemon; they run in parallel.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::bridge::GuestBridge;
use crate::dom0_wire::Dom0Wire;

/// Debian's xenstored (package xen-utils-4.17).
pub const XENSTORED: &str = "/usr/lib/xen-4.17/bin/xenstored";

/// The shim's source travels with the test binary.
const SHIM_SOURCE: &str = include_str!("shim/hypervisor.c");

/// A running xenstored. Dropping it stops it and removes its directory.
pub struct Xenstored {
    dir: tempfile::TempDir,
    socket: PathBuf,
    child: Option<Child>,
    args: Vec<String>,
}

impl std::fmt::Debug for Xenstored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Xenstored")
            .field("dir", &self.dir.path())
            .field("pid", &self.pid())
            .finish()
    }
}

impl Xenstored {
    /// Check that what the harness runs is installed.
    pub fn require_tools() -> Result<(), String> {
        let mut missing = Vec::new();
        if !Path::new(XENSTORED).exists() {
            missing.push(format!("{XENSTORED} (package xen-utils-4.17)"));
        }
        for (tool, package) in [("xenstore-read", "xenstore-utils"), ("gcc", "gcc")] {
            if !on_path(tool) {
                missing.push(format!("{tool} (package {package})"));
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the tests need {}: `make test` installs them (apt-get install xen-utils-4.17 xenstore-utils gcc)",
                missing.join(", ")
            ))
        }
    }

    /// Start a fresh xenstored and wait until it answers.
    pub fn start() -> io::Result<Self> {
        Self::start_with_args(&[])
    }

    /// Start a fresh xenstored with extra options (`-E 40`: a guest may own
    /// at most 40 nodes) and wait until it answers.
    pub fn start_with_args(extra: &[&str]) -> io::Result<Self> {
        // Short: the socket path must fit in 108 bytes.
        let dir = tempfile::Builder::new().prefix("gwxs-").tempdir_in("/tmp")?;
        let mut daemon = Self {
            socket: dir.path().join("socket"),
            dir,
            child: None,
            args: extra.iter().map(|arg| (*arg).to_owned()).collect(),
        };
        daemon.launch()?;
        Ok(daemon)
    }

    fn launch(&mut self) -> io::Result<()> {
        let shim = shim_library()?;
        let dir = self.dir.path();
        let log = File::options()
            .create(true)
            .append(true)
            .open(dir.join("xenstored.log"))?;
        let child = Command::new(XENSTORED)
            .arg("-N")
            .arg("-F")
            .arg(dir.join("xenstored.pid"))
            .args(&self.args)
            .env("XSFAKE_DIR", dir)
            .env("XENSTORED_RUNDIR", dir)
            .env("XENSTORED_PATH", dir.join("socket"))
            .env("LD_PRELOAD", &shim)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        self.wait_until_answering()
    }

    /// Kill the daemon (SIGKILL: its tree is lost, as in a crash) and start
    /// a new one in the same directory, on the same socket, with the
    /// domain `domid` laid out again. Guest bridges carry on with it.
    pub fn restart(&mut self, domid: u32) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.dir.path().join("xenstored.pid"));
        self.launch()?;
        self.lay_out_guest(domid)
    }

    /// Stop the daemon where it stands (SIGSTOP): connections stay open and
    /// nothing is answered, until [`thaw`](Self::thaw).
    pub fn freeze(&self) {
        self.send(rustix::process::Signal::STOP);
    }

    /// Let a frozen daemon go on (SIGCONT).
    pub fn thaw(&self) {
        self.send(rustix::process::Signal::CONT);
    }

    fn send(&self, signal: rustix::process::Signal) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid() as i32) {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }

    fn wait_until_answering(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                return Err(io::Error::other(format!(
                    "xenstored exited ({status}):\n{}",
                    self.log()
                )));
            }
            if let Ok(mut dom0) = Dom0Wire::connect(self.socket())
                && dom0.read("/").is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "xenstored did not answer within 10 s:\n{}",
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The dom0 socket: privileged, as the toolstack is.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The daemon's directory (its socket, log, ring files and FIFOs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// What the daemon logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("xenstored.log")).unwrap_or_default()
    }

    /// Lay out `/local/domain/<domid>` as a toolstack does (its `name`;
    /// readable by the guest, owned by dom0; `data/` owned by the guest,
    /// where requests and answers live) and start a bridge through which a
    /// client is that guest.
    pub fn guest(&self, domid: u32) -> io::Result<GuestBridge> {
        self.lay_out_guest(domid)?;
        GuestBridge::start(self.dir.path(), self.socket(), domid)
    }

    fn lay_out_guest(&self, domid: u32) -> io::Result<()> {
        let home = format!("/local/domain/{domid}");
        let mut dom0 = Dom0Wire::connect(self.socket())?;
        dom0.write(&format!("{home}/name"), format!("guest{domid}").as_bytes())?;
        dom0.mkdir(&format!("{home}/data"))?;
        let readable = [String::from("n0"), format!("r{domid}")];
        let readable: Vec<&str> = readable.iter().map(String::as_str).collect();
        dom0.set_perms(&home, &readable)?;
        dom0.set_perms(&format!("{home}/name"), &readable)?;
        dom0.set_perms(&format!("{home}/data"), &[&format!("n{domid}")])
    }

    /// Stop the daemon now: TERM, then KILL after 5 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::CONT);
        }
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Xenstored {
    fn drop(&mut self) {
        self.stop();
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

/// The compiled shim, built once per source version and shared by every
/// test process (compiled to a temporary name, then renamed into place).
fn shim_library() -> io::Result<PathBuf> {
    static SHIM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    SHIM.get_or_init(|| compile_shim().map_err(|error| error.to_string()))
        .clone()
        .map_err(io::Error::other)
}

fn compile_shim() -> io::Result<PathBuf> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    SHIM_SOURCE.hash(&mut hasher);
    let dir = crate::artifacts::target_dir().join("xenstored-shim");
    std::fs::create_dir_all(&dir)?;
    let library = dir.join(format!("libhypervisor-{:016x}.so", hasher.finish()));
    if library.exists() {
        return Ok(library);
    }
    let source = dir.join(format!("hypervisor-{}.c", std::process::id()));
    let building = dir.join(format!("libhypervisor-{}.so.tmp", std::process::id()));
    std::fs::write(&source, SHIM_SOURCE)?;
    let output = Command::new("gcc")
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
        .arg(&building)
        .arg(&source)
        .arg("-ldl")
        .output();
    let _ = std::fs::remove_file(&source);
    let output = output?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "cannot compile the xenstored shim: {}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    std::fs::rename(&building, &library)?;
    Ok(library)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
    }

    #[test]
    fn daemons_run_side_by_side_and_leave_nothing_behind() {
        Xenstored::require_tools().unwrap();
        let first = Xenstored::start().unwrap();
        let second = Xenstored::start().unwrap();
        let (pids, dirs) = (
            [first.pid(), second.pid()],
            [first.dir().to_owned(), second.dir().to_owned()],
        );
        assert!(pids.iter().all(|&pid| alive(pid)));
        let bridge = first.guest(3).unwrap();
        let socket = bridge.socket().to_owned();
        drop(bridge);
        drop(first);
        drop(second);
        assert!(pids.iter().all(|&pid| !alive(pid)), "xenstored still running");
        assert!(dirs.iter().all(|dir| !dir.exists()) && !socket.exists());
    }

    #[test]
    fn a_guest_sees_its_own_home_and_not_dom0s() {
        Xenstored::require_tools().unwrap();
        let daemon = Xenstored::start().unwrap();
        let bridge = daemon.guest(4).unwrap();
        let mut guest = Dom0Wire::connect(bridge.socket()).unwrap();
        assert_eq!(guest.read("name").unwrap(), b"guest4");
        guest.write("data/x", b"1").unwrap();
        assert!(guest.read("/local/domain/0").is_err());
        assert!(guest.write("name", b"renamed").is_err());
    }
}
