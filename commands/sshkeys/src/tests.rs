//! The three commands under the component's own policy entry, with the
//! SDK's test host (symlinks, which it does not model, are tested end to
//! end in tests/e2e/qga_accounts.rs).

use super::*;
use guestward_sdk::testing;

const PASSWD_TEXT: &str =
    "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1001::/home/alice:/bin/sh\nsvc:x:998:998::/srv/svc:/bin/sh\n";
const ALICE_KEYS: &str = "/home/alice/.ssh/authorized_keys";
const K1: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK1 k1";
const K2: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK2 k2";

fn setup(files: &[(&str, &str)]) {
    testing::reset();
    testing::load_asks::<SshKeys>("sshkeys").unwrap();
    testing::with_host(|host| {
        host.files
            .insert(account::PASSWD.into(), PASSWD_TEXT.as_bytes().to_vec());
        for (path, contents) in files {
            host.files.insert((*path).into(), contents.as_bytes().to_vec());
        }
    });
}

fn call(name: &str, arguments: serde_json::Value) -> (String, String) {
    let reply = testing::call::<SshKeys>(name, &arguments.to_string());
    (reply.code, reply.message)
}

fn ok() -> (String, String) {
    ("0".into(), "{}".into())
}

fn error(desc: &str) -> (String, String) {
    ("GenericError".into(), desc.into())
}

fn file(path: &str) -> Option<String> {
    testing::with_host(|host| {
        host.files
            .get(path)
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
    })
}

fn permissions(path: &str) -> Option<testing::Permissions> {
    testing::with_host(|host| host.permissions.get(path).copied())
}

#[test]
fn add_creates_ssh_and_the_file_for_the_account_then_get_lists_them_last_first() {
    setup(&[]);
    assert_eq!(
        call(ADD, json!({"username": "alice", "keys": [K1, K2], "reset": false})),
        ok()
    );
    assert_eq!(file(ALICE_KEYS).as_deref(), Some(format!("{K1}\n{K2}").as_str()));
    assert_eq!(permissions("/home/alice/.ssh"), Some((Some(0o700), Some((1000, 1001)))));
    assert_eq!(permissions(ALICE_KEYS), Some((Some(0o600), Some((1000, 1001)))));
    assert_eq!(
        call(GET, json!({"username": "alice"})),
        ("0".into(), json!({"keys": [K2, K1]}).to_string())
    );
    // Nothing new: the file is not written again.
    testing::with_host(|host| host.permissions.clear());
    assert_eq!(call(ADD, json!({"username": "alice", "keys": [K1]})), ok());
    assert_eq!(permissions(ALICE_KEYS), None);
}

#[test]
fn reset_replaces_and_remove_keeps_the_other_lines() {
    setup(&[(ALICE_KEYS, "# mine\n\nold\n")]);
    assert_eq!(call(ADD, json!({"username": "alice", "keys": [K1]})), ok());
    assert_eq!(
        file(ALICE_KEYS).as_deref(),
        Some(format!("# mine\n\nold\n\n{K1}").as_str())
    );
    assert_eq!(
        call(REMOVE, json!({"username": "alice", "keys": ["old", "absent"]})),
        ok()
    );
    assert_eq!(file(ALICE_KEYS).as_deref(), Some(format!("# mine\n\n\n{K1}").as_str()));
    assert_eq!(
        call(ADD, json!({"username": "alice", "keys": [K2], "reset": true})),
        ok()
    );
    assert_eq!(file(ALICE_KEYS).as_deref(), Some(K2));
    assert_eq!(call(ADD, json!({"username": "alice", "keys": [], "reset": true})), ok());
    assert_eq!(
        call(GET, json!({"username": "alice"})),
        ("0".into(), r#"{"keys":[]}"#.into())
    );
}

#[test]
fn root_keys_stay_roots() {
    setup(&[]);
    assert_eq!(call(ADD, json!({"username": "root", "keys": [K1]})), ok());
    assert_eq!(file("/root/.ssh/authorized_keys").as_deref(), Some(K1));
    assert_eq!(
        permissions("/root/.ssh/authorized_keys"),
        Some((Some(0o600), Some((0, 0))))
    );
}

#[test]
fn missing_things_answer_as_qemu_ga_does() {
    setup(&[]);
    assert_eq!(
        call(GET, json!({"username": "root"})),
        error(
            "failed to read '/root/.ssh/authorized_keys': Failed to open file \u{201C}/root/.ssh/authorized_keys\u{201D}: No such file or directory"
        )
    );
    // Removing from a missing file is no error.
    assert_eq!(call(REMOVE, json!({"username": "root", "keys": [K1]})), ok());
    for name in [GET, ADD, REMOVE] {
        assert_eq!(
            call(name, json!({"username": "nosuchuser", "keys": [K1]}).clone()).1,
            if name == GET {
                "Parameter 'keys' is unexpected".to_owned()
            } else {
                "failed to lookup user 'nosuchuser': Success".to_owned()
            }
        );
    }
    assert_eq!(
        call(GET, json!({"username": "nosuchuser"})),
        error("failed to lookup user 'nosuchuser': Success")
    );
}

#[test]
fn argument_errors_have_qemu_gas_words() {
    setup(&[]);
    let cases = [
        (GET, json!({}), "Parameter 'username' is missing"),
        (
            GET,
            json!({"username": 1}),
            "Invalid parameter type for 'username', expected: string",
        ),
        (ADD, json!({"username": "alice"}), "Parameter 'keys' is missing"),
        (
            ADD,
            json!({"username": "alice", "keys": "k"}),
            "Invalid parameter type for 'keys', expected: array",
        ),
        (
            ADD,
            json!({"username": "alice", "keys": [1]}),
            "Invalid parameter type for 'keys[0]', expected: string",
        ),
        (
            ADD,
            json!({"username": "alice", "keys": [], "reset": "yes"}),
            "Invalid parameter type for 'reset', expected: boolean",
        ),
        (
            REMOVE,
            json!({"username": "alice", "keys": {}}),
            "Invalid parameter type for 'keys', expected: array",
        ),
        (
            ADD,
            json!({"username": "alice", "keys": ["# comment"]}),
            "invalid OpenSSH public key: '# comment'",
        ),
        (
            REMOVE,
            json!({"username": "alice", "keys": [format!("{K1}\n{K2}")]}),
            "invalid OpenSSH public key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK1 k1\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK2 k2'",
        ),
        // Keys are checked before the account is looked up, as qemu-ga does.
        (
            ADD,
            json!({"username": "nosuchuser", "keys": ["#x"]}),
            "invalid OpenSSH public key: '#x'",
        ),
    ];
    for (name, arguments, desc) in cases {
        assert_eq!(call(name, arguments.clone()), error(desc), "{name} {arguments}");
    }
    assert_eq!(file(ALICE_KEYS), None, "nothing was written");
}

#[test]
fn a_home_outside_the_grants_is_refused_with_the_hosts_reason() {
    setup(&[]);
    let (code, desc) = call(ADD, json!({"username": "svc", "keys": [K1]}));
    assert_eq!(code, "GenericError");
    assert!(
        desc.starts_with("failed to read '/srv/svc/.ssh/authorized_keys': ")
            && desc.contains("outside the readable files of component sshkeys"),
        "{desc}"
    );
    assert_eq!(file("/srv/svc/.ssh/authorized_keys"), None);
}

#[test]
fn a_file_the_account_could_not_read_is_neither_answered_nor_copied() {
    // A root-owned 0600 file in alice's .ssh (a hard link to /etc/shadow
    // looks like this): its lines must not end up in a file alice owns.
    setup(&[(ALICE_KEYS, "root:$6$secret:1::\n")]);
    testing::with_host(|host| host.permissions.insert(ALICE_KEYS.into(), (Some(0o600), Some((0, 0)))));
    for (name, arguments) in [
        (GET, json!({"username": "alice"})),
        (ADD, json!({"username": "alice", "keys": [K1]})),
        (REMOVE, json!({"username": "alice", "keys": ["root:$6$secret:1::"]})),
    ] {
        let (code, desc) = call(name, arguments);
        assert_eq!(code, "GenericError");
        assert!(desc.contains("alice may not read it"), "{desc}");
    }
    assert_eq!(file(ALICE_KEYS).as_deref(), Some("root:$6$secret:1::\n"));
    // World-readable root-owned keys are the account's to have: qemu-ga
    // hands them over (0600, the account's) at the next change.
    testing::with_host(|host| host.permissions.insert(ALICE_KEYS.into(), (Some(0o644), Some((0, 0)))));
    assert_eq!(call(ADD, json!({"username": "alice", "keys": [K1]})), ok());
    assert_eq!(permissions(ALICE_KEYS), Some((Some(0o600), Some((1000, 1001)))));
    // With reset nothing is read: the file is simply replaced.
    testing::with_host(|host| host.permissions.insert(ALICE_KEYS.into(), (Some(0o600), Some((0, 0)))));
    assert_eq!(
        call(ADD, json!({"username": "alice", "keys": [K2], "reset": true})),
        ok()
    );
    assert_eq!(file(ALICE_KEYS).as_deref(), Some(K2));
}

#[test]
fn huge_files_and_key_lists_are_refused_whole() {
    let big = format!("{}\n", "k".repeat(keys::MAX_FILE_BYTES));
    setup(&[(ALICE_KEYS, &big)]);
    let (_, desc) = call(GET, json!({"username": "alice"}));
    assert!(desc.contains("over the limit of 262144 bytes"), "{desc}");
    setup(&[]);
    let many: Vec<String> = (0..6000).map(|i| format!("{K1}{i:04}")).collect();
    let (code, desc) = call(ADD, json!({"username": "alice", "keys": many}));
    assert_eq!(code, "GenericError");
    assert!(
        desc.starts_with("failed to write to '/home/alice/.ssh/authorized_keys': it would be "),
        "{desc}"
    );
    assert_eq!(file(ALICE_KEYS), None);
    // Up to the limit, every key fits in one answer.
    let fitting: Vec<String> = (0..2000).map(|i| format!("{K1}{i:04}")).collect();
    assert_eq!(call(ADD, json!({"username": "alice", "keys": fitting})), ok());
    let (code, listed) = call(GET, json!({"username": "alice"}));
    assert_eq!(code, "0", "{listed:.200}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&listed).unwrap()["keys"]
            .as_array()
            .map(Vec::len),
        Some(2000)
    );
}

#[test]
fn a_non_utf8_file_is_answered_but_never_rewritten() {
    setup(&[]);
    testing::with_host(|host| host.files.insert(ALICE_KEYS.into(), b"K\xff\nK2".to_vec()));
    assert_eq!(call(GET, json!({"username": "alice"})).0, "0");
    let (_, desc) = call(ADD, json!({"username": "alice", "keys": [K1]}));
    assert!(desc.ends_with("it is not UTF-8 text; not rewritten"), "{desc}");
    assert_eq!(testing::with_host(|host| host.files[ALICE_KEYS].clone()), b"K\xff\nK2");
}
