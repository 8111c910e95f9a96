//! What a hostile component, or a hostile local user next to the agent,
//! must not be able to do with the grants the policy gives: give files away
//! or make them setuid, race a command into root's files, wedge the daemon
//! with FIFOs, lead the `--root` action log outside the root, or take every
//! file descriptor.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use guestward_sdk::legacy::b64encode;
use guestward_tests::{Agent, AgentBuilder};

use crate::protocol::PROBE_POLICY;
use crate::{AGENT_VERSION, answer};

/// The uid (and gid) the hostile local user runs as.
const USER: u32 = 4242;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn probe() -> Agent {
    AgentBuilder::new().component("probe").policy(PROBE_POLICY).start()
}

fn assert_refused(reply: &str, says: &str) {
    assert!(
        reply.ends_with(r#""returncode": "500"}"#) && reply.contains(says),
        "expected a 500 saying {says}: {reply}"
    );
}

fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
}

#[test]
fn a_write_grant_neither_gives_files_away_nor_makes_them_setuid() {
    let agent = probe();
    let app = agent.root().join("etc/app");
    std::fs::create_dir_all(&app).unwrap();
    let reply = agent.call(
        "write-file",
        r#"{"path":"/etc/app/tool","contents":"tool","mode":3565}"#,
    );
    assert_refused(&reply, "sets the setuid or setgid bit");
    assert!(!app.join("tool").exists());
    let reply = agent.call(
        "write-file",
        r#"{"path":"/etc/app/given","contents":"x","uid":4242,"gid":4242}"#,
    );
    assert_refused(&reply, "giving it to 4242:4242 is not granted");
    assert!(!app.join("given").exists());

    assert_eq!(
        agent.call("write-file", r#"{"path":"/etc/app/tool","contents":"tool"}"#),
        answer("", "0")
    );
    assert_refused(
        &agent.call("chmod", r#"{"path":"/etc/app/tool","mode":2541}"#),
        "setuid or setgid",
    );
    assert_refused(
        &agent.call("chmod", r#"{"path":"/etc/app/tool","uid":0,"gid":4242}"#),
        "not granted",
    );
    let meta = std::fs::metadata(app.join("tool")).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.gid()),
        (0o644, rustix::process::getegid().as_raw())
    );
}

/// A local user who owns `/home/alice` swaps `~/.ssh` between a directory
/// and a symlink to `/root/.ssh` as fast as it can while the hypervisor
/// injects alice's key again and again: root's keys never change and
/// nothing outside her home becomes hers.
#[test]
fn a_local_user_racing_injectfile_never_reaches_roots_keys() {
    if !is_root() {
        eprintln!("skipped: the racing user needs root to be set up");
        return;
    }
    let agent = AgentBuilder::new().start();
    let root = agent.root();
    // The racer must reach the home inside the agent's scratch root.
    for dir in [root.parent().unwrap(), root.as_path()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        format!("root:x:0:0:root:/root:/bin/sh\nalice:x:{USER}:{USER}::/home/alice:/bin/sh\n"),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("root/.ssh")).unwrap();
    std::fs::set_permissions(root.join("root/.ssh"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(root.join("root/.ssh/authorized_keys"), "root's own key\n").unwrap();
    let home = root.join("home/alice");
    std::fs::create_dir_all(&home).unwrap();
    rustix::fs::chown(
        &home,
        Some(rustix::fs::Uid::from_raw(USER)),
        Some(rustix::fs::Gid::from_raw(USER)),
    )
    .unwrap();

    let stop = home.parent().unwrap().join("stop-racing");
    let racer = std::process::Command::new("/usr/bin/setpriv")
        .args([
            format!("--reuid={USER}"),
            format!("--regid={USER}"),
            "--clear-groups".into(),
        ])
        .args(["/usr/bin/python3", "-c", RACER])
        .arg(&home)
        .arg(&stop)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the racing user");

    let key = b64encode(b"/home/alice/.ssh/authorized_keys,ssh-ed25519 AAAA alice\n");
    let mut written = 0;
    for _ in 0..150 {
        let reply = agent.call("injectfile", &format!("\"{key}\""));
        if reply == answer("", "0") {
            written += 1;
        } else {
            assert!(reply.contains("returncode\": \"500\""), "{reply}");
        }
    }
    std::fs::write(&stop, "").unwrap();
    let output = racer.wait_with_output().unwrap();
    let swaps: u64 = String::from_utf8_lossy(&output.stdout).trim().parse().unwrap_or(0);
    assert!(swaps > 0, "the racer never ran");
    eprintln!("{written} of 150 injections written while the user swapped ~/.ssh {swaps} times");

    assert_eq!(
        std::fs::read_to_string(root.join("root/.ssh/authorized_keys")).unwrap(),
        "root's own key\n"
    );
    for path in [root.join("root/.ssh"), root.join("root/.ssh/authorized_keys")] {
        assert_eq!(std::fs::metadata(&path).unwrap().uid(), 0, "{}", path.display());
    }
    let given_away = owned_by(&root, USER, &home);
    assert!(
        given_away.is_empty(),
        "files outside her home became hers: {given_away:?}"
    );
}

/// The racing user: swap `<home>/.ssh` between a directory and a symlink
/// to root's `.ssh` until `<stop>` exists; print how many swaps it made.
const RACER: &str = r#"
import os, sys, time
home, stop = sys.argv[1], sys.argv[2]
ssh = os.path.join(home, ".ssh")
swaps, deadline = 0, time.time() + 120
while not os.path.exists(stop) and time.time() < deadline:
    try:
        os.rename(ssh, os.path.join(home, "old-%d" % swaps))
    except OSError:
        pass
    try:
        os.symlink("/root/.ssh", ssh)
        swaps += 1
    except OSError:
        pass
    time.sleep(0.0005)
    try:
        os.unlink(ssh)
        os.mkdir(ssh)
    except OSError:
        pass
    time.sleep(0.0005)
print(swaps)
"#;

/// Every path under `dir`, outside `except`, owned by `uid`.
fn owned_by(dir: &Path, uid: u32, except: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.starts_with(except) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.uid() == uid {
            found.push(path.clone());
        }
        if meta.is_dir() {
            found.extend(owned_by(&path, uid, except));
        }
    }
    found
}

/// Reading or locking a FIFO used to hold a blocking thread forever; a few
/// hundred such calls stopped every file operation and SIGTERM.
#[test]
fn fifos_in_a_grant_neither_block_nor_wedge_the_daemon() {
    let agent = probe();
    let app = agent.root().join("etc/app");
    std::fs::create_dir_all(&app).unwrap();
    mkfifo(&app.join("fifo"));
    std::fs::write(app.join("plain"), "plain text").unwrap();
    let started = Instant::now();
    for _ in 0..100 {
        assert_refused(&agent.call("read-file", r#""/etc/app/fifo""#), "not a regular file");
        assert_refused(
            &agent.call("lock", r#"{"path":"/etc/app/fifo","timeout-ms":0}"#),
            "not a regular file",
        );
        assert_refused(
            &agent.call("chmod", r#"{"path":"/etc/app/fifo","mode":420}"#),
            "not a regular file",
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "FIFO calls waited for their deadlines"
    );
    assert_eq!(
        agent.call("read-file", r#""/etc/app/plain""#),
        answer("plain text", "0")
    );
    assert_eq!(agent.call("version", "null"), answer(AGENT_VERSION, "0"));
    assert!(
        agent.stop().is_some_and(|status| status.success()),
        "SIGTERM did not stop the daemon"
    );
}

/// Under `--root`, a component granted `/` renames an absolute symlink
/// (as `/etc/mtab` is on real systems) onto the action log: the next
/// recorded program run must not append to the link's target outside the
/// root.
#[test]
fn the_action_log_cannot_be_led_outside_the_root() {
    let policy = PROBE_POLICY.replace(
        r#"{ path = "/etc/app", access = "read-write" },"#,
        r#"{ path = "/", access = "read-write" },"#,
    );
    let agent = AgentBuilder::new().component("probe").policy(&policy).start();
    let outside = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(outside.path(), "outside the root\n").unwrap();
    std::fs::create_dir_all(agent.root().join("etc")).unwrap();
    std::os::unix::fs::symlink(outside.path(), agent.root().join("etc/mtab")).unwrap();
    assert_eq!(
        agent.call("mkdir", r#"{"path":"/.guestward","recursive":true}"#),
        answer("", "0")
    );
    assert_eq!(
        agent.call("rename", r#"{"from":"/etc/mtab","to":"/.guestward/actions.log"}"#),
        answer("", "0")
    );
    let reply = agent.call("run", r#"{"argv":["/bin/echo","recorded"]}"#);
    assert_refused(&reply, "cannot record the run");
    assert_eq!(std::fs::read_to_string(outside.path()).unwrap(), "outside the root\n");
    assert_eq!(agent.call("version", "null"), answer(AGENT_VERSION, "0"));
}

/// Thousands of locks in one call used to take every descriptor of the
/// daemon: other components failed with EMFILE.
#[test]
fn one_call_cannot_take_the_daemons_descriptors() {
    let agent = probe();
    std::fs::create_dir_all(agent.root().join("etc/app")).unwrap();
    std::fs::write(agent.root().join("etc/app/plain"), "still readable").unwrap();
    let reply = agent.call("lock-many", r#"{"dir":"/etc/app","count":5000}"#);
    assert_refused(&reply, "held 16 locks, then");
    assert!(reply.contains("the most one call may hold"), "{reply}");
    // The locks went with the call.
    assert_eq!(
        agent.call("lock-many", r#"{"dir":"/etc/app","count":16}"#),
        answer("held 16 locks", "0")
    );
    assert_eq!(
        agent.call("read-file", r#""/etc/app/plain""#),
        answer("still readable", "0")
    );
    assert_eq!(agent.call("version", "null"), answer(AGENT_VERSION, "0"));
}
