//! injectfile and file_inject through the real xenstored, under the
//! built-in policy: the legacy vectors, contents of any bytes, what is kept
//! of an existing file, SSH keys as sshd wants them, and paths outside the
//! grants refused.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use guestward_sdk::legacy::b64encode;
use guestward_tests::AgentBuilder;

use crate::{Guest, answer, guest_test};

/// `{"name":"injectfile","value":b64("<path>,<contents>")}`.
fn injectfile(path: &str, contents: &[u8]) -> String {
    let data = [path.as_bytes(), b",", contents].concat();
    serde_json::json!({"name": "injectfile", "value": b64encode(&data)}).to_string()
}

/// `{"name":"file_inject","value":{"b64_path":…,"b64_file":…}}`.
fn file_inject(path: &str, contents: &[u8]) -> String {
    let value = serde_json::json!({"b64_path": b64encode(path.as_bytes()), "b64_file": b64encode(contents)});
    serde_json::json!({"name": "file_inject", "value": value}).to_string()
}

fn mode_and_owner(path: &Path) -> (u32, u32, u32) {
    let meta = std::fs::metadata(path).unwrap();
    (meta.mode() & 0o7777, meta.uid(), meta.gid())
}

guest_test!(the_legacy_vectors_are_exact, AgentBuilder::new(), |guest| {
    let reply = guest.dom0.call("v1", r#"{"name":"injectfile","value":"L3RtcC94"}"#);
    assert_eq!(reply, answer("need more than 1 value to unpack", "500"));
    assert_eq!(
        guest.dom0.call("v2", &injectfile("/tmp/t/f", b"a,b\nc")),
        answer("", "0")
    );
    let written = guest.agent.root().join("tmp/t/f");
    assert_eq!(std::fs::read(&written).unwrap(), b"a,b\nc");
    assert_eq!(mode_and_owner(&written), (0o644, 0, 0));
    for id in ["v1", "v2"] {
        assert!(!guest.dom0.exists(&format!("data/host/{id}")));
    }
});

guest_test!(features_offers_the_newer_form, AgentBuilder::new(), |guest| {
    let reply = guest.dom0.call("f", r#"{"name":"features","value":""}"#);
    let features: serde_json::Value = serde_json::from_str(&reply).unwrap();
    let list: Vec<&str> = features["message"].as_str().unwrap().split(',').collect();
    assert!(list.contains(&"file_inject") && list.contains(&"injectfile"), "{reply}");
});

guest_test!(contents_may_hold_any_bytes, AgentBuilder::new(), |guest| {
    let binary: Vec<u8> = (0..=255u8).chain([b',', b'\n', 0, b',']).collect();
    assert_eq!(guest.dom0.call("b1", &injectfile("/tmp/bin", &binary)), answer("", "0"));
    assert_eq!(std::fs::read(guest.agent.root().join("tmp/bin")).unwrap(), binary);
    assert_eq!(
        guest.dom0.call("b2", &file_inject("/tmp/new,form", &binary)),
        answer("", "0")
    );
    assert_eq!(std::fs::read(guest.agent.root().join("tmp/new,form")).unwrap(), binary);
});

guest_test!(
    an_existing_file_keeps_its_mode_and_owner,
    AgentBuilder::new(),
    |guest| {
        let path = guest.agent.root().join("tmp/app.conf");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::chown(&path, Some(1234), Some(5678)).unwrap();
        assert_eq!(
            guest.dom0.call("k", &file_inject("/tmp/app.conf", b"new")),
            answer("", "0")
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(mode_and_owner(&path), (0o640, 1234, 5678));
    }
);

guest_test!(ssh_keys_get_the_modes_sshd_requires, AgentBuilder::new(), |guest| {
    let root = guest.agent.root();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("root")).unwrap();
    std::fs::create_dir_all(root.join("home/alice")).unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1001:Alice:/home/alice:/bin/sh\n",
    )
    .unwrap();
    let key = b"\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB nova\n";
    let reply = guest.dom0.call("s1", &injectfile("/root/.ssh/authorized_keys", key));
    assert_eq!(reply, answer("", "0"));
    assert_eq!(std::fs::read(root.join("root/.ssh/authorized_keys")).unwrap(), key);
    assert_eq!(mode_and_owner(&root.join("root/.ssh")), (0o700, 0, 0));
    assert_eq!(mode_and_owner(&root.join("root/.ssh/authorized_keys")), (0o600, 0, 0));

    let reply = guest
        .dom0
        .call("s2", &file_inject("/home/alice/.ssh/authorized_keys", key));
    assert_eq!(reply, answer("", "0"));
    assert_eq!(mode_and_owner(&root.join("home/alice/.ssh")), (0o700, 1000, 1001));
    assert_eq!(
        mode_and_owner(&root.join("home/alice/.ssh/authorized_keys")),
        (0o600, 1000, 1001)
    );
});

guest_test!(a_path_outside_the_grants_is_refused, AgentBuilder::new(), |guest| {
    let shadow = guest.agent.root().join("etc/shadow");
    std::fs::create_dir_all(shadow.parent().unwrap()).unwrap();
    std::fs::write(&shadow, "root:*:1::::::\n").unwrap();
    for (id, path) in [
        ("o1", "/etc/shadow"),
        ("o2", "/root/.bashrc"),
        ("o3", "/tmp/../etc/shadow"),
    ] {
        let reply = guest.dom0.call(id, &injectfile(path, b"root::0::::::\n"));
        let value: serde_json::Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(value["returncode"], "500", "{path}: {reply}");
        let message = value["message"].as_str().unwrap();
        assert!(
            message.starts_with("Not allowed to write there: ") || message.starts_with("Invalid path: "),
            "{path}: {reply}"
        );
    }
    assert_eq!(std::fs::read_to_string(&shadow).unwrap(), "root:*:1::::::\n");
    assert!(!guest.agent.root().join("root/.bashrc").exists());
});

#[test]
fn an_operator_can_keep_backups_and_narrow_the_grants() {
    let policy = guestward::policy::DEFAULT_POLICY
        .replace(
            "    { path = \"/tmp\", access = \"read-write\" },\n",
            "    { path = \"/etc/motd\", access = \"read-write\" },\n    { path = \"/etc/motd.bak\", access = \"read-write\" },\n",
        )
        .replace("settings = { backup-suffix = \"\" }", "settings = { backup-suffix = \".bak\" }");
    let guest = Guest::start(AgentBuilder::new().policy(&policy));
    let motd = guest.agent.root().join("etc/motd");
    std::fs::create_dir_all(motd.parent().unwrap()).unwrap();
    std::fs::write(&motd, "before\n").unwrap();
    assert_eq!(
        guest.dom0.call("m", &injectfile("/etc/motd", b"after\n")),
        answer("", "0")
    );
    assert_eq!(std::fs::read_to_string(&motd).unwrap(), "after\n");
    assert_eq!(
        std::fs::read_to_string(guest.agent.root().join("etc/motd.bak")).unwrap(),
        "before\n"
    );
    // The same request run again (after a crash, before its answer was
    // committed) changes nothing: the backup still holds the original.
    assert_eq!(
        guest.dom0.call("m-again", &injectfile("/etc/motd", b"after\n")),
        answer("", "0")
    );
    assert_eq!(
        std::fs::read_to_string(guest.agent.root().join("etc/motd.bak")).unwrap(),
        "before\n"
    );
    let reply = guest.dom0.call("t", &injectfile("/tmp/x", b"x"));
    assert!(
        reply.contains("Not allowed to write there") && reply.ends_with(r#""returncode": "500"}"#),
        "{reply}"
    );
}
