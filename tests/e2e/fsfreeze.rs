//! guest-fsfreeze-* on a real filesystem: an ext4 image loop-mounted in a
//! scratch directory, frozen and thawed by a real daemon serving the QGA
//! protocol on the machine's own root, with only the fsfreeze component
//! (and the hostile `freezer`) loaded. Every freeze here names the loop
//! mount point: nothing else on the machine is ever frozen.
//!
//! The tests take turns: a thaw thaws every frozen filesystem, as
//! qemu-ga's does, so one test's thaw would end another's freeze.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use guestward_tests::agent::audit_records;
use guestward_tests::artifacts;
use guestward_tests::qga::QgaClient;
use serde_json::json;

static TURNS: Mutex<()> = Mutex::new(());

fn take_turn() -> MutexGuard<'static, ()> {
    TURNS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How long a writer on the frozen filesystem must still be waiting to
/// count as blocked.
const BLOCKED: Duration = Duration::from_millis(300);

/// An ext4 image mounted on a loop device under a scratch directory.
struct LoopFs {
    mnt: PathBuf,
    /// Holds the image and the mount point (removed after the unmount).
    _dir: tempfile::TempDir,
}

impl LoopFs {
    /// `None` (with the reason printed) where loop devices are not
    /// available: not root, or no loop support in the kernel.
    fn mount() -> Option<Self> {
        let free_loop = Command::new("losetup").arg("-f").output();
        if !rustix::process::geteuid().is_root() || !free_loop.is_ok_and(|output| output.status.success()) {
            eprintln!("skipping: fsfreeze tests need root and a free loop device (`losetup -f` failed)");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("gw-freeze-")
            .tempdir_in("/tmp")
            .unwrap();
        let image = dir.path().join("fs.img");
        std::fs::File::create(&image).unwrap().set_len(16 << 20).unwrap();
        run("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()]);
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        run("mount", &["-o", "loop", image.to_str().unwrap(), mnt.to_str().unwrap()]);
        Some(Self { mnt, _dir: dir })
    }

    fn mount_point(&self) -> &str {
        self.mnt.to_str().unwrap()
    }

    /// `{"mountpoints": [this mount point]}`.
    fn list(&self) -> String {
        json!({"mountpoints": [self.mount_point()]}).to_string()
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        // Whatever a failed test left, the filesystem is thawed and gone.
        let _ = Command::new("fsfreeze")
            .arg("-u")
            .arg(&self.mnt)
            .stderr(Stdio::null())
            .status();
        let unmounted = Command::new("umount").arg(&self.mnt).status();
        if !unmounted.is_ok_and(|status| status.success()) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|error| panic!("{program}: {error}"));
    assert!(status.success(), "{program} {args:?}: {status}");
}

/// A `guestward serve` on the machine's root, serving QGA on a socket,
/// with a runtime directory of its own (not the machine's /run/guestward).
struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
}

impl Daemon {
    /// Start with the built-in policy, the policy drop-ins `dropins` (name,
    /// TOML) and the extra flags `args`.
    fn start(dropins: &[(&str, &str)], args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("gw-freeze-agent-")
            .tempdir_in("/tmp")
            .unwrap();
        let path = |name: &str| dir.path().join(name);
        for sub in ["commands", "policy.d", "keys"] {
            std::fs::create_dir(path(sub)).unwrap();
        }
        for component in ["fsfreeze", "freezer"] {
            std::fs::copy(
                artifacts::component(component),
                path("commands").join(format!("{component}.wasm")),
            )
            .unwrap();
        }
        for (name, toml) in dropins {
            std::fs::write(path("policy.d").join(name), toml).unwrap();
        }
        std::fs::write(path("guestward.toml"), "").unwrap();
        let child = Self::launch(dir.path(), args);
        let daemon = Self { child, dir };
        daemon.wait_ready();
        daemon
    }

    fn launch(dir: &Path, args: &[&str]) -> Child {
        let path = |name: &str| dir.join(name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path("agent.log"))
            .unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        Command::new(artifacts::guestward_bin())
            .arg("serve")
            .arg("--config")
            .arg(path("guestward.toml"))
            .arg("--commands")
            .arg(path("commands"))
            .arg("--allow-unsigned")
            .arg(path("commands"))
            .arg("--trusted-keys")
            .arg(path("keys"))
            .arg("--policy")
            .arg(repo.join("host/src/policy/default.toml"))
            .arg("--policy-dir")
            .arg(path("policy.d"))
            .args(["--root", "/", "--no-socket", "--no-qga-device"])
            .arg("--qga-socket")
            .arg(path("qga.sock"))
            .arg("--cache")
            .arg(artifacts::shared_cache())
            .arg("--runtime-dir")
            .arg(path("run"))
            .args(args)
            .env("GUESTWARD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    /// SIGKILL (nothing is thawed on the way out), then the same daemon
    /// started again, with the flags `args`.
    fn kill_and_restart(&mut self, args: &[&str]) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::launch(self.dir.path(), args);
        self.wait_ready();
    }

    /// The record a freeze leaves for a successor.
    fn freeze_marker(&self) -> PathBuf {
        self.dir.path().join("run/frozen")
    }

    /// The documented drop-in (dist/policy.d/fsfreeze.toml).
    fn fsfreeze_dropin() -> (&'static str, &'static str) {
        ("fsfreeze.toml", include_str!("../../dist/policy.d/fsfreeze.toml"))
    }

    fn wait_ready(&self) {
        let until = Instant::now() + Duration::from_secs(120);
        while Instant::now() < until {
            if let Ok(mut qga) = QgaClient::connect(&self.dir.path().join("qga.sock"))
                && qga.send(b"{\"execute\":\"guest-fsfreeze-status\"}\n").is_ok()
                && qga.answer().is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the agent did not start:\n{}", self.log());
    }

    /// A connection to its QGA socket (an answer that does not come fails
    /// the test: a daemon blocked on the frozen filesystem).
    fn qga(&self) -> QgaClient {
        QgaClient::connect(&self.dir.path().join("qga.sock")).unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// Whether the log says `text` within 10 s: the daemon's own thaws
    /// log after the ioctl that releases the test's writer.
    fn logs(&self, text: &str) -> bool {
        let until = Instant::now() + Duration::from_secs(10);
        while !self.log().contains(text) {
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// SIGTERM, and the exit status.
    fn stop(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        wait_child(&mut self.child, Duration::from_secs(30))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.stop().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `echo x > PATH` from another process.
fn start_writer(path: &Path) -> Child {
    Command::new("sh")
        .args(["-c", "echo x > \"$1\"", "sh"])
        .arg(path)
        .spawn()
        .unwrap()
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let until = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The writer is still waiting on the frozen filesystem.
fn assert_blocked(writer: &mut Child, daemon: &Daemon) {
    std::thread::sleep(BLOCKED);
    assert!(
        writer.try_wait().unwrap().is_none(),
        "a write to the frozen filesystem went through:\n{}",
        daemon.log()
    );
}

/// The writer finished (the filesystem thawed) and its file is there.
fn assert_written(writer: &mut Child, file: &Path, daemon: &Daemon) {
    let status = wait_child(writer, Duration::from_secs(20));
    assert!(
        status.is_some_and(|status| status.success()),
        "the write did not complete: {status:?}\n{}",
        daemon.log()
    );
    assert_eq!(std::fs::read_to_string(file).unwrap(), "x\n");
}

/// The hostile component's drop-in: it may freeze, and has a second to
/// fail in.
const FREEZER: (&str, &str) = (
    "freezer.toml",
    "[component.freezer]\nfreeze = true\nlimits = { deadline-ms = 1000 }\n",
);

fn frozen_refusal(execute: &str) -> serde_json::Value {
    json!({"error": {
        "class": "CommandNotFound",
        "desc": format!("Command {execute} has been disabled: the agent is in frozen state"),
    }})
}

#[test]
fn a_frozen_filesystem_holds_writers_until_the_thaw() {
    let _turn = take_turn();
    let Some(fs) = LoopFs::mount() else { return };
    let daemon = Daemon::start(&[Daemon::fsfreeze_dropin(), FREEZER], &[]);
    let mut qga = daemon.qga();
    // Names that are not exactly a mount point freeze nothing, without an
    // error, as qemu-ga answers them.
    let near_misses = json!({"mountpoints": [
        format!("{}/", fs.mount_point()),
        format!("{}/sub", fs.mount_point()),
        "/nonexistent",
        "/proc",
    ]});
    assert_eq!(
        qga.execute("guest-fsfreeze-freeze-list", &near_misses.to_string()),
        json!({"return": 0})
    );
    assert_eq!(qga.execute("guest-fsfreeze-status", ""), json!({"return": "thawed"}));

    assert_eq!(
        qga.execute("guest-fsfreeze-freeze-list", &fs.list()),
        json!({"return": 1})
    );
    assert_eq!(qga.execute("guest-fsfreeze-status", ""), json!({"return": "frozen"}));
    let file = fs.mnt.join("f");
    let mut writer = start_writer(&file);
    assert_blocked(&mut writer, &daemon);
    // While frozen, qemu-ga's few commands only; unknown ones are still
    // unknown.
    assert_eq!(
        qga.execute("guest-fsfreeze-freeze-list", &fs.list()),
        frozen_refusal("guest-fsfreeze-freeze-list")
    );
    assert_eq!(
        qga.execute("test-freeze-then-panic", "{\"mountpoints\": []}"),
        frozen_refusal("test-freeze-then-panic")
    );
    assert_eq!(
        qga.execute("guest-bogus", ""),
        json!({"error": {"class": "CommandNotFound", "desc": "The command guest-bogus has not been found"}})
    );
    assert!(writer.try_wait().unwrap().is_none());

    assert_eq!(qga.execute("guest-fsfreeze-thaw", ""), json!({"return": 1}));
    assert_written(&mut writer, &file, &daemon);
    assert_eq!(qga.execute("guest-fsfreeze-status", ""), json!({"return": "thawed"}));
    assert_eq!(qga.execute("guest-fsfreeze-thaw", ""), json!({"return": 0}));
}

#[test]
fn nobody_thawing_thaws_after_the_timeout_and_stopping_thaws() {
    let _turn = take_turn();
    let Some(fs) = LoopFs::mount() else { return };
    let mut daemon = Daemon::start(&[Daemon::fsfreeze_dropin()], &["--freeze-timeout-seconds", "2"]);
    let mut qga = daemon.qga();
    assert_eq!(
        qga.execute("guest-fsfreeze-freeze-list", &fs.list()),
        json!({"return": 1})
    );
    let file = fs.mnt.join("timer");
    let mut writer = start_writer(&file);
    assert_blocked(&mut writer, &daemon);
    assert_written(&mut writer, &file, &daemon);
    assert_eq!(qga.execute("guest-fsfreeze-status", ""), json!({"return": "thawed"}));
    assert!(daemon.logs("nobody thawed them within 2 s"), "{}", daemon.log());

    // Frozen again, then the daemon is stopped: it thaws on its way out.
    assert_eq!(
        qga.execute("guest-fsfreeze-freeze-list", &fs.list()),
        json!({"return": 1})
    );
    let file = fs.mnt.join("stop");
    let mut writer = start_writer(&file);
    assert_blocked(&mut writer, &daemon);
    assert!(daemon.stop().is_some_and(|status| status.success()), "{}", daemon.log());
    assert_written(&mut writer, &file, &daemon);
    assert!(daemon.log().contains("the agent is stopping"), "{}", daemon.log());
}

#[test]
fn a_component_failing_with_filesystems_frozen_has_them_thawed_at_once() {
    let _turn = take_turn();
    let Some(fs) = LoopFs::mount() else { return };
    let daemon = Daemon::start(&[Daemon::fsfreeze_dropin(), FREEZER], &[]);
    let mut qga = daemon.qga();
    for (command, failure) in [
        (
            "test-freeze-then-panic",
            "panicked: failing with filesystems frozen: Ok(1)",
        ),
        ("test-freeze-then-loop", "did not finish within its deadline of 1000 ms"),
    ] {
        let answer = qga.execute(command, &fs.list());
        let desc = answer["error"]["desc"].as_str().unwrap_or_default();
        assert!(desc.contains(failure), "{command}: {answer}\n{}", daemon.log());
        assert_eq!(
            qga.execute("guest-fsfreeze-status", ""),
            json!({"return": "thawed"}),
            "{command}"
        );
        let file = fs.mnt.join(command);
        let mut writer = start_writer(&file);
        assert_written(&mut writer, &file, &daemon);
    }
    assert!(
        daemon.log().contains("the call that froze them ended: panic"),
        "{}",
        daemon.log()
    );
}

#[test]
fn the_audit_log_on_a_frozen_filesystem_holds_up_no_command() {
    let _turn = take_turn();
    let Some(fs) = LoopFs::mount() else { return };
    let audit = fs.mnt.join("audit.jsonl");
    let daemon = Daemon::start(&[Daemon::fsfreeze_dropin()], &["--audit-log", audit.to_str().unwrap()]);
    let mut qga = daemon.qga();
    assert_eq!(
        qga.execute("guest-fsfreeze-freeze-list", &fs.list()),
        json!({"return": 1})
    );
    // Each answered (the freeze lasts 600 s, longer than the client
    // waits), though every call's audit record is due in a file that takes
    // no writes.
    for _ in 0..20 {
        assert_eq!(qga.execute("guest-fsfreeze-status", ""), json!({"return": "frozen"}));
    }
    assert_eq!(qga.execute("guest-fsfreeze-thaw", ""), json!({"return": 1}));
    // The records of the calls made while frozen, after the freeze's own.
    let while_frozen = |records: &[serde_json::Value]| {
        let command = |record: &serde_json::Value| record["fields"]["command"].clone();
        records
            .iter()
            .skip_while(|record| command(record) != "qga:guest-fsfreeze-freeze-list")
            .filter(|record| command(record) == "qga:guest-fsfreeze-status")
            .count()
    };
    let records = audit_records(&audit, |records| while_frozen(records) >= 20);
    assert_eq!(while_frozen(&records), 20, "{records:?}");
}

#[test]
fn a_daemon_killed_while_frozen_is_followed_by_one_that_takes_the_freeze_over() {
    let _turn = take_turn();
    let Some(fs) = LoopFs::mount() else { return };
    let mut daemon = Daemon::start(&[Daemon::fsfreeze_dropin(), FREEZER], &[]);
    assert_eq!(
        daemon.qga().execute("guest-fsfreeze-freeze-list", &fs.list()),
        json!({"return": 1})
    );
    assert!(daemon.freeze_marker().exists());
    let file = fs.mnt.join("across-a-kill");
    let mut writer = start_writer(&file);
    // The successor's audit log is on the frozen filesystem: even opening
    // it waits for the thaw, and the successor must start all the same.
    // (Not the killed instance's: a process with a thread blocked on a
    // frozen filesystem cannot finish dying until the thaw.)
    let audit = fs.mnt.join("audit.jsonl");
    daemon.kill_and_restart(&["--audit-log", audit.to_str().unwrap()]);
    // Still frozen (nothing thawed on a SIGKILL), and the new instance
    // knows it: it says so and refuses what could write.
    assert_blocked(&mut writer, &daemon);
    assert!(
        daemon.log().contains("the audit log's filesystem takes no writes yet"),
        "{}",
        daemon.log()
    );
    let mut qga = daemon.qga();
    assert_eq!(qga.execute("guest-fsfreeze-status", ""), json!({"return": "frozen"}));
    assert_eq!(
        qga.execute("test-freeze-then-panic", &fs.list()),
        frozen_refusal("test-freeze-then-panic")
    );
    assert!(
        daemon
            .log()
            .contains("a previous instance exited with filesystems frozen"),
        "{}",
        daemon.log()
    );
    // The host's thaw counts the filesystem the killed instance froze.
    assert_eq!(qga.execute("guest-fsfreeze-thaw", ""), json!({"return": 1}));
    assert_written(&mut writer, &file, &daemon);
    assert_eq!(qga.execute("guest-fsfreeze-status", ""), json!({"return": "thawed"}));
    assert!(!daemon.freeze_marker().exists());
    // The records of the calls made while frozen reached the file after
    // the thaw.
    let has_the_thaw = |records: &[serde_json::Value]| {
        records
            .iter()
            .any(|record| record["fields"]["command"] == "qga:guest-fsfreeze-thaw")
    };
    let records = audit_records(&audit, has_the_thaw);
    assert!(has_the_thaw(&records), "{records:?}");

    // A crash does not lengthen a freeze: the successor (whose own
    // timeout is the default ten minutes) thaws at the deadline the
    // freeze was made with.
    daemon.kill_and_restart(&["--freeze-timeout-seconds", "2"]);
    assert_eq!(
        daemon.qga().execute("guest-fsfreeze-freeze-list", &fs.list()),
        json!({"return": 1})
    );
    let file = fs.mnt.join("after-the-deadline");
    let mut writer = start_writer(&file);
    daemon.kill_and_restart(&[]);
    assert_written(&mut writer, &file, &daemon);
    assert_eq!(
        daemon.qga().execute("guest-fsfreeze-status", ""),
        json!({"return": "thawed"})
    );
    assert!(
        daemon.logs("nobody thawed them by the deadline they were frozen with"),
        "{}",
        daemon.log()
    );
}

#[test]
fn without_a_freeze_grant_nothing_can_freeze() {
    // The built-in policy leaves fsfreeze off: it is not loaded, and its
    // commands are unknown. A component granted nothing that imports the
    // interface (freezer) is refused at load. No freeze is attempted, so
    // this needs no loop device; it still runs on the machine's root.
    let _turn = take_turn();
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipping: the agent on the machine's root needs root");
        return;
    }
    let daemon = Daemon::start(&[], &[]);
    let mut qga = daemon.qga();
    for command in [
        "guest-fsfreeze-freeze",
        "guest-fsfreeze-freeze-list",
        "test-freeze-then-panic",
    ] {
        assert_eq!(
            qga.execute(command, ""),
            json!({"error": {"class": "CommandNotFound", "desc": format!("The command {command} has not been found")}}),
        );
    }
    let log = daemon.log();
    assert!(
        log.contains("command component off") && log.contains("fsfreeze"),
        "{log}"
    );
    assert!(
        log.contains("refused command component") && log.contains("imports guestward:command/freeze@1.1.0"),
        "{log}"
    );
}
