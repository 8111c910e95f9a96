//! `--root` mode and the `files` grants, through a real component: every
//! path resolves inside the root, and nothing outside the grants changes.

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

use guestward_tests::{Agent, AgentBuilder};

use crate::answer;
use crate::protocol::PROBE_POLICY;

fn agent() -> Agent {
    let agent = AgentBuilder::new().component("probe").policy(PROBE_POLICY).start();
    for dir in ["etc/app", "etc/readonly", "secret"] {
        std::fs::create_dir_all(agent.root().join(dir)).unwrap();
    }
    std::fs::write(agent.root().join("secret/key"), "top secret").unwrap();
    std::fs::write(agent.root().join("etc/readonly/conf"), "read me").unwrap();
    agent
}

fn write(agent: &Agent, path: &str, contents: &str) -> String {
    agent.call(
        "write-file",
        &serde_json::json!({"path": path, "contents": contents}).to_string(),
    )
}

#[test]
fn files_inside_the_grants_are_read_and_replaced_inside_the_root() {
    let agent = agent();
    assert_eq!(
        agent.call("read-file", r#""/etc/readonly/conf""#),
        answer("read me", "0")
    );
    assert_eq!(write(&agent, "/etc/app/conf", "hello"), answer("", "0"));
    assert_eq!(
        std::fs::read_to_string(agent.root().join("etc/app/conf")).unwrap(),
        "hello"
    );
    assert_eq!(agent.call("list-dir", r#""/etc/app""#), answer("conf", "0"));
}

#[test]
fn escapes_are_refused_and_change_nothing() {
    let agent = agent();
    let root = agent.root();
    symlink("/secret/key", root.join("etc/app/key-link")).unwrap();
    symlink("/secret", root.join("etc/app/secret-dir")).unwrap();
    symlink("/etc/passwd", root.join("etc/app/host-passwd")).unwrap();
    let refused = [
        ("read-file", r#""/secret/key""#),
        ("read-file", r#""/etc/app/../../secret/key""#),
        ("read-file", r#""/etc/app/key-link""#),
        ("read-file", r#""/etc/app/secret-dir/key""#),
        ("read-file", r#""/etc/app/host-passwd""#),
        ("read-file", r#""/etc/passwd""#),
        ("list-dir", r#""/""#),
    ];
    for (command, value) in refused {
        let reply = agent.call(command, value);
        assert!(reply.contains(r#""returncode": "500""#), "{command} {value}: {reply}");
        assert!(!reply.contains("top secret") && !reply.contains("root:x:0"), "{reply}");
    }
    for path in [
        "/secret/planted",
        "/etc/app/secret-dir/planted",
        "/etc/readonly/conf",
        "/planted",
    ] {
        let reply = write(&agent, path, "planted");
        assert!(reply.contains("NotGranted"), "{path}: {reply}");
    }
    assert!(!root.join("secret/planted").exists() && !root.join("planted").exists());
    assert_eq!(
        std::fs::read_to_string(root.join("etc/readonly/conf")).unwrap(),
        "read me"
    );
}

#[test]
fn replacing_keeps_mode_and_owner() {
    let agent = agent();
    let path = agent.root().join("etc/app/private");
    std::fs::write(&path, "old").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let owner = std::fs::metadata(&path).unwrap().uid();
    assert_eq!(write(&agent, "/etc/app/private", "new"), answer("", "0"));
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o600, owner));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
}

#[test]
fn a_lock_keeps_other_programs_out_until_the_call_ends() {
    let agent = agent();
    let lock = agent.root().join("etc/app/.pwd.lock");
    let locked_elsewhere = || {
        // Another process trying the same fcntl lock, as lckpwdf(3) does.
        !std::process::Command::new("/usr/bin/python3")
            .args([
                "-c",
                "import fcntl,sys; f=open(sys.argv[1],'a'); fcntl.lockf(f, fcntl.LOCK_EX|fcntl.LOCK_NB)",
            ])
            .arg(&lock)
            .status()
            .unwrap()
            .success()
    };
    std::thread::scope(|scope| {
        let holder = scope.spawn(|| {
            agent.call(
                "lock",
                r#"{"path":"/etc/app/.pwd.lock","timeout-ms":1000,"hold-ms":1500}"#,
            )
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !lock.exists() {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(locked_elsewhere(), "the lock is held during the call");
        assert_eq!(holder.join().unwrap(), answer("locked", "0"));
    });
    assert!(!locked_elsewhere(), "released when the call ends");
    let refused = agent.call("lock", r#"{"path":"/etc/readonly/.lock","timeout-ms":0,"hold-ms":0}"#);
    assert!(refused.contains("NotGranted"), "{refused}");
}

#[test]
fn writing_through_a_hard_link_changes_only_the_link() {
    let agent = agent();
    let root = agent.root();
    std::fs::hard_link(root.join("secret/key"), root.join("etc/app/key-hardlink")).unwrap();
    assert_eq!(write(&agent, "/etc/app/key-hardlink", "overwritten"), answer("", "0"));
    // The write replaced the directory entry; the file outside the grant
    // keeps its contents.
    assert_eq!(std::fs::read_to_string(root.join("secret/key")).unwrap(), "top secret");
    assert_eq!(agent.call("remove", r#""/etc/app/key-hardlink""#), answer("", "0"));
    assert!(root.join("secret/key").exists());
}
