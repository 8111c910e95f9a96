//! The agent under test, as a real `guestward serve` process in a scratch
//! directory of its own (its `--root`, its commands, its socket, its log).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::artifacts;

/// A policy granting the probe component a XenStore prefix and a scratch
/// directory, with short limits.
pub const PROBE_POLICY: &str = r#"
[limits]
deadline-ms = 3000
memory-mib = 32

[component.version]
[component.features]

[component.probe]
files = [
    { path = "/etc/app", access = "read-write" },
    { path = "/etc/readonly", access = "read" },
]
xenstore = ["vm-data"]
programs = [["/bin/echo", "*"], ["/usr/bin/env"]]
download = ["https://updates.example.com/agent/"]
settings = { greeting = "hello" }
limits = { reply-bytes = 2000, log-lines = 10 }
"#;

/// How to start an agent.
#[derive(Debug, Default)]
pub struct AgentBuilder {
    xenstore: Option<PathBuf>,
    components: Vec<PathBuf>,
    /// Components copied as they are.
    unsigned: Vec<PathBuf>,
    allow_unsigned: bool,
    policy: Option<String>,
    interfaces: Option<String>,
    args: Vec<String>,
    qga: bool,
    host_root: bool,
    log_level: Option<String>,
    config: Option<String>,
    cache: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl AgentBuilder {
    /// The built-in commands, the built-in policy, no XenStore.
    pub fn new() -> Self {
        Self {
            components: artifacts::builtin().into_iter().map(artifacts::component).collect(),
            ..Self::default()
        }
    }

    /// Connect to XenStore through `socket` (a guest bridge or xenstored).
    pub fn xenstore(mut self, socket: &Path) -> Self {
        self.xenstore = Some(socket.to_owned());
        self
    }

    /// Also load the component `name` (e.g. `probe`).
    pub fn component(mut self, name: &str) -> Self {
        self.components.push(artifacts::component(name));
        self
    }

    /// Load a component from any path.
    pub fn component_file(mut self, path: &Path) -> Self {
        self.components.push(path.to_owned());
        self
    }

    /// Load a component from any path as it is: not signed by the
    /// harness (its own `.sig` file, if it has one, is copied with it).
    pub fn component_file_as_is(mut self, path: &Path) -> Self {
        self.unsigned.push(path.to_owned());
        self
    }

    /// Let the agent run unsigned components from its commands directory.
    pub fn allow_unsigned(mut self) -> Self {
        self.allow_unsigned = true;
        self
    }

    /// Use this policy (TOML text) instead of the built-in one.
    pub fn policy(mut self, toml: &str) -> Self {
        self.policy = Some(toml.to_owned());
        self
    }

    /// Describe the machine's network interfaces with this JSON
    /// (`--interfaces`).
    pub fn interfaces(mut self, json: &str) -> Self {
        self.interfaces = Some(json.to_owned());
        self
    }

    /// Extra `serve` arguments.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    /// Use this configuration file (TOML text), e.g. `rescan-seconds = 1`.
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_owned());
        self
    }

    /// Cache compiled components in `dir` instead of the tests' shared
    /// cache (for tests that tamper with the cache).
    pub fn cache(mut self, dir: &Path) -> Self {
        self.cache = Some(dir.to_owned());
        self
    }

    /// Set an environment variable of the agent's process (e.g. systemd's
    /// `NOTIFY_SOCKET`).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Log filter (default `debug`).
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = Some(level.to_owned());
        self
    }

    /// Act on the machine itself (no `--root`): only for tests that call
    /// read-only commands, to compare with another agent on the same
    /// machine.
    pub fn host_root(mut self) -> Self {
        self.host_root = true;
        self
    }

    /// Also serve the QEMU guest agent protocol on a socket
    /// ([`Agent::qga_socket`]).
    pub fn qga(mut self) -> Self {
        self.qga = true;
        self
    }

    /// Start the agent and wait until it answers `version` on its socket.
    pub fn start(self) -> Agent {
        let agent = self.spawn();
        agent.wait_ready();
        agent
    }

    /// Start the agent without waiting (for agents expected to fail).
    pub fn spawn(self) -> Agent {
        let scratch = tempfile::Builder::new()
            .prefix("gw-agent-")
            .tempdir_in("/tmp")
            .expect("scratch dir");
        let dir = scratch.path().to_owned();
        let (root, commands) = (dir.join("root"), dir.join("commands"));
        std::fs::create_dir_all(&root).expect("root dir");
        std::fs::create_dir_all(&commands).expect("commands dir");
        // The agent trusts a key of its own; every component that is not
        // a built-in (pinned into the binary) is signed with it.
        let keys = dir.join("trusted-keys");
        std::fs::create_dir_all(&keys).expect("keys dir");
        let (private, public) = artifacts::test_key();
        std::fs::write(keys.join("tests.pub"), public).expect("write the public key");
        for component in &self.components {
            let name = component.file_name().expect("component file name");
            let copy = commands.join(name);
            std::fs::copy(component, &copy).expect("copy component");
            if !artifacts::is_builtin(&copy) {
                sign(private, &copy);
            }
        }
        for component in &self.unsigned {
            let name = component.file_name().expect("component file name");
            let copy = commands.join(name);
            std::fs::copy(component, &copy).expect("copy component");
            let signature = guestward::trust::signature_path(component);
            if signature.exists() {
                std::fs::copy(&signature, guestward::trust::signature_path(&copy)).expect("copy signature");
            }
        }
        let mut command = Command::new(artifacts::guestward_bin());
        command
            .arg("serve")
            .args(["--commands".as_ref(), commands.as_os_str()])
            .args(["--socket".as_ref(), dir.join("agent.sock").as_os_str()])
            .args([
                "--cache".as_ref(),
                self.cache.clone().unwrap_or_else(artifacts::shared_cache).as_os_str(),
            ])
            .args(["--trusted-keys".as_ref(), keys.as_os_str()]);
        if self.host_root {
            // Never the machine's own /run/guestward.
            command.args(["--runtime-dir".as_ref(), dir.join("run").as_os_str()]);
        } else {
            command.args(["--root".as_ref(), root.as_os_str()]);
        }
        if self.allow_unsigned {
            command.args(["--allow-unsigned".as_ref(), commands.as_os_str()]);
        }
        if let Some(xenstore) = &self.xenstore {
            command.args(["--xenstore".as_ref(), xenstore.as_os_str()]);
        }
        if let Some(policy) = &self.policy {
            let path = dir.join("policy.toml");
            std::fs::write(&path, policy).expect("write policy");
            command.args(["--policy".as_ref(), path.as_os_str()]);
        }
        if let Some(interfaces) = &self.interfaces {
            let path = dir.join("interfaces.json");
            std::fs::write(&path, interfaces).expect("write interfaces");
            command.args(["--interfaces".as_ref(), path.as_os_str()]);
        }
        if let Some(config) = &self.config {
            let path = dir.join("guestward.toml");
            std::fs::write(&path, config).expect("write config");
            command.args(["--config".as_ref(), path.as_os_str()]);
        }
        if self.qga {
            command.args(["--qga-socket".as_ref(), dir.join("qga.sock").as_os_str()]);
        }
        command.args(&self.args);
        command.env("GUESTWARD_LOG", self.log_level.as_deref().unwrap_or("debug"));
        command.envs(self.env.iter().map(|(name, value)| (name, value)));
        let agent = Agent {
            child: Mutex::new(None),
            command: Mutex::new(command),
            dir,
            _scratch: scratch,
        };
        agent.launch();
        agent
    }
}

/// Sign `component` (a sidecar `.sig`) with the private key text `private`,
/// for the name it has (its file stem).
pub fn sign(private: &str, component: &Path) {
    let wasm = std::fs::read(component).expect("read component");
    let digest = guestward::runtime::component::sha256_hex(&wasm);
    let name = guestward::runtime::component::component_name(component);
    let signature = guestward::trust::sign(private, &name, &digest).expect("sign");
    std::fs::write(guestward::trust::signature_path(component), signature).expect("write signature");
}

/// A running agent. Dropping it kills it.
#[derive(Debug)]
pub struct Agent {
    child: Mutex<Option<Child>>,
    /// How it was started, to start it again.
    command: Mutex<Command>,
    dir: PathBuf,
    _scratch: tempfile::TempDir,
}

impl Agent {
    /// Start the process (its log appended to `agent.log`).
    fn launch(&self) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("agent.log"))
            .expect("log file");
        let mut command = self.command.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        let child = command.spawn().expect("start guestward");
        *self.child.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(child);
    }

    /// Start the agent again, as it was started, after it exited or was
    /// killed, and wait until it is ready.
    pub fn restart(&self) {
        self.kill();
        self.launch();
        self.wait_ready();
    }

    /// Resident memory (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Open file descriptors.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, Iterator::count)
    }

    /// The agent's `--root`.
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// The agent's commands directory.
    pub fn commands(&self) -> PathBuf {
        self.dir.join("commands")
    }

    /// The agent's local socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("agent.sock")
    }

    /// The agent's QGA socket (with [`AgentBuilder::qga`]).
    pub fn qga_socket(&self) -> PathBuf {
        self.dir.join("qga.sock")
    }

    /// A new connection to the agent's QGA socket.
    pub fn qga(&self) -> crate::qga::QgaClient {
        crate::qga::QgaClient::connect(&self.qga_socket())
            .unwrap_or_else(|error| panic!("cannot connect to the QGA socket: {error}\n{}", self.log()))
    }

    /// Everything the agent logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.with_child(|child| child.id()).unwrap_or(0)
    }

    fn with_child<R>(&self, f: impl FnOnce(&mut Child) -> R) -> Option<R> {
        let mut child = self.child.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        child.as_mut().map(f)
    }

    /// Send one request line over the local socket; return the answer line.
    pub fn request(&self, line: &str) -> String {
        self.try_request(line)
            .unwrap_or_else(|error| panic!("request {line}: {error}\n{}", self.log()))
    }

    /// Call `name` with a JSON `value` over the local socket.
    pub fn call(&self, name: &str, value: &str) -> String {
        self.request(&format!(r#"{{"name":"{name}","value":{value}}}"#))
    }

    /// Wait until the agent answers `version` on its socket (or fail with
    /// its log).
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.exit_status() {
                panic!("the agent exited ({status}) while starting:\n{}", self.log());
            }
            if self
                .try_request(r#"{"name":"version"}"#)
                .is_ok_and(|answer| answer.contains("returncode"))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("the agent did not become ready:\n{}", self.log());
    }

    fn try_request(&self, line: &str) -> std::io::Result<String> {
        let mut stream = UnixStream::connect(self.socket())?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        writeln!(stream, "{line}")?;
        let mut answer = String::new();
        BufReader::new(stream).read_line(&mut answer)?;
        Ok(answer.trim_end_matches('\n').to_owned())
    }

    /// The exit status, if the agent has exited.
    pub fn exit_status(&self) -> Option<std::process::ExitStatus> {
        self.with_child(|child| child.try_wait().ok().flatten()).flatten()
    }

    /// Wait for the agent to exit by itself.
    pub fn wait_exit(&self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Send `signal` to the agent.
    pub fn signal(&self, signal: rustix::process::Signal) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid() as i32) {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop(&self) -> Option<std::process::ExitStatus> {
        self.signal(rustix::process::Signal::TERM);
        self.wait_exit(Duration::from_secs(40))
    }

    /// SIGKILL, at once.
    pub fn kill(&self) {
        self.with_child(|child| {
            let _ = child.kill();
            let _ = child.wait();
        });
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The records of an audit log (`--audit-log`) once `complete` holds of
/// them, or whatever is there after 10 s. The agent writes the log from a
/// thread of its own so that a slow disk holds up no call; a record may
/// therefore land just after its call's reply.
pub fn audit_records(path: &Path, complete: impl Fn(&[serde_json::Value]) -> bool) -> Vec<serde_json::Value> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        // (Only whole lines: the writer may be halfway through one.)
        let whole = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
        let records: Vec<serde_json::Value> = whole
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}")))
            .collect();
        if complete(&records) || Instant::now() >= until {
            return records;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
