//! Network namespaces for the live network tests: a real network daemon
//! brings a rendered configuration up on veth pairs in a namespace of its
//! own, and the kernel's addresses and routes are read back.
//!
//! Set-up (everything is created by the test and removed by [`Drop`], even
//! when the test panics; nothing touches the host's namespace, its `/etc`
//! or its services):
//!
//! * `ip netns add gwtest-<pid>-<n>`; in it, loopback up, duplicate address
//!   detection off (so IPv6 addresses are usable at once), and one veth
//!   pair per NIC: the NIC side with the name and MAC the hypervisor's data
//!   names (`eth0`, `ens3`, …), the peer `gwpN`, up, so the NIC has a
//!   carrier, and unconfigured.
//! * A daemon runs through `ip netns exec` (which gives it a mount
//!   namespace of its own and this namespace's `/sys`) and `unshare
//!   --mount --propagation private`, and its script then mounts over what
//!   the daemon would otherwise read or write on the host: a tmpfs on
//!   `/run`, and the test's scratch directories bound onto its
//!   configuration directories (`/etc/systemd/network`, `/etc/network`,
//!   `/etc/NetworkManager`, `/var/lib/NetworkManager`). `/sys` is
//!   remounted read-only there: that is how systemd-networkd and
//!   NetworkManager know that no udev will announce the links (as in a
//!   container), instead of waiting for it.
//! * Root is needed; [`skip_unless_root`] says why a test did nothing.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// True (and a message on stderr) when the live tests cannot run here.
pub fn skip_unless_root(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return false;
    }
    eprintln!("{test}: skipped, network namespaces need root (CI runs as root)");
    true
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A named network namespace, deleted (with every process in it) on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    daemons: Vec<Child>,
}

impl NetNs {
    /// A fresh namespace with loopback up and DAD off.
    pub fn create() -> Self {
        let name = format!("gwtest-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        run(Command::new("ip").args(["netns", "add", &name]));
        let netns = Self {
            name,
            daemons: Vec::new(),
        };
        netns.exec(&["ip", "link", "set", "lo", "up"]);
        netns.exec(&[
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        ]);
        netns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A NIC `name` with `mac`, up on the other end of a veth pair.
    pub fn add_nic(&self, name: &str, mac: &str, index: usize) {
        let peer = format!("gwp{index}");
        self.exec(&[
            "ip", "link", "add", name, "address", mac, "type", "veth", "peer", "name", &peer,
        ]);
        self.exec(&["ip", "link", "set", &peer, "up"]);
    }

    /// Run `argv` in the namespace; panic with its output if it fails.
    pub fn exec(&self, argv: &[&str]) -> Output {
        run(Command::new("ip").args(["netns", "exec", &self.name]).args(argv))
    }

    /// Run `script` with `sh` in the namespace and a private mount
    /// namespace; its output goes to `log`. Returns how it exited.
    pub fn script(&self, script: &str, log: &Path) -> std::process::ExitStatus {
        let log_file = std::fs::File::create(log).expect("log file");
        self.script_command(script, log_file).status().expect("ip netns exec")
    }

    /// Start `script` (which `exec`s a daemon) like [`Self::script`],
    /// in the background; it is killed on drop.
    pub fn spawn(&mut self, script: &str, log: &Path) {
        let log_file = std::fs::File::create(log).expect("log file");
        let child = self.script_command(script, log_file).spawn().expect("ip netns exec");
        self.daemons.push(child);
    }

    fn script_command(&self, script: &str, log: std::fs::File) -> Command {
        let mut command = Command::new("ip");
        command
            .args([
                "netns",
                "exec",
                &self.name,
                "unshare",
                "--mount",
                "--propagation",
                "private",
            ])
            .args(["sh", "-ec", script])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        command
    }

    /// The id of a process in the namespace whose command is `command`.
    pub fn pid_of(&self, command: &str) -> Option<u32> {
        let output = Command::new("ip").args(["netns", "pids", &self.name]).output().ok()?;
        String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .filter_map(|pid| pid.parse::<u32>().ok())
            .find(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == command))
    }

    /// Run `argv` with an empty environment inside the namespaces (network
    /// and mount) of the process `daemon` started here, e.g. a client that
    /// finds the daemon's socket in its private /run.
    pub fn in_daemon<S: AsRef<std::ffi::OsStr>>(&self, daemon: &str, argv: &[S]) -> Output {
        let pid = self
            .pid_of(daemon)
            .unwrap_or_else(|| panic!("{daemon} is not running in {}", self.name));
        Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-m", "-n"])
            .args(argv)
            .env_clear()
            .output()
            .expect("nsenter")
    }

    /// `ip -j <args>` in the namespace, parsed.
    pub fn ip_json(&self, args: &[&str]) -> Value {
        let mut argv = vec!["ip", "-j"];
        argv.extend(args);
        let output = self.exec(&argv);
        serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
    }

    /// The global addresses of `devices`, as `dev address/prefixlen`,
    /// sorted (link-local and the peers' are left out).
    pub fn addresses(&self, devices: &[&str]) -> Vec<String> {
        let mut found = Vec::new();
        for link in self.ip_json(&["addr"]).as_array().into_iter().flatten() {
            let dev = link["ifname"].as_str().unwrap_or_default();
            if !devices.contains(&dev) {
                continue;
            }
            for address in link["addr_info"].as_array().into_iter().flatten() {
                if address["scope"] == "global" {
                    found.push(format!(
                        "{dev} {}/{}",
                        address["local"].as_str().unwrap_or_default(),
                        address["prefixlen"]
                    ));
                }
            }
        }
        found.sort();
        found
    }

    /// The main table's routes of one family through `devices`, as `dst
    /// [via gateway] dev name` (IPv6 link-local ones left out), sorted.
    pub fn routes(&self, ipv6: bool, devices: &[&str]) -> Vec<String> {
        let family = if ipv6 { "-6" } else { "-4" };
        let mut found = Vec::new();
        for route in self.ip_json(&[family, "route"]).as_array().into_iter().flatten() {
            let dev = route["dev"].as_str().unwrap_or_default();
            let dst = route["dst"].as_str().unwrap_or_default();
            if !devices.contains(&dev) || dst.starts_with("fe80:") {
                continue;
            }
            let mut text = dst.to_owned();
            if let Some(gateway) = route["gateway"].as_str() {
                text.push_str(&format!(" via {gateway}"));
            }
            text.push_str(&format!(" dev {dev}"));
            found.push(text);
        }
        found.sort();
        found
    }

    /// The default routes of one family, as `via gateway dev name` and
    /// their metric.
    pub fn default_routes(&self, ipv6: bool) -> Vec<(String, u64)> {
        let family = if ipv6 { "-6" } else { "-4" };
        let mut found: Vec<(String, u64)> = self
            .ip_json(&[family, "route", "show", "default"])
            .as_array()
            .into_iter()
            .flatten()
            .map(|route| {
                let text = format!(
                    "via {} dev {}",
                    route["gateway"].as_str().unwrap_or_default(),
                    route["dev"].as_str().unwrap_or_default()
                );
                (text, route["metric"].as_u64().unwrap_or(0))
            })
            .collect();
        found.sort();
        found
    }

    /// Poll `ready` every 50 ms until it holds or `timeout` passes;
    /// returns whether it held.
    pub fn wait_until(&self, timeout: Duration, mut ready: impl FnMut(&Self) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if ready(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        for daemon in &mut self.daemons {
            let _ = daemon.kill();
        }
        // Whatever the daemons started (dbus-daemon forks away).
        if let Ok(output) = Command::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>()
                    && let Some(pid) = rustix::process::Pid::from_raw(pid)
                {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
        for daemon in &mut self.daemons {
            let _ = daemon.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap_or_else(|error| panic!("{command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
