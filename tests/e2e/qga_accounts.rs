//! The account commands of the QEMU guest agent protocol through the
//! daemon's QGA socket, under `--root`: guest-set-user-password checked
//! with libxcrypt, the SSH key commands with the modes and owners sshd
//! wants and the symlinks a local user can plant refused, guest-shutdown
//! recorded and never answered; and the argument errors compared with
//! Debian's real qemu-ga (error paths only: it runs on this machine).

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use guestward_sdk::legacy::b64encode;
use guestward_tests::peer::QemuGa;
use guestward_tests::qga::QgaClient;
use guestward_tests::{Agent, AgentBuilder};
use serde_json::{Value, json};

const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
alice:x:4001:4002::/home/alice:/bin/sh\n\
bob:x:4003:4004::/home/bob:/bin/sh\n\
svc:x:998:998::/srv/svc:/usr/sbin/nologin\n";
const SHADOW: &str = "root:$6$abcdefgh$old:17000:0:99999:7:::\nalice:!:17000:0:99999:7:::\n";
const K1: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOperator operator@host";
const K2: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBackup backup@host";
const ROOT_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIRoot root-only";

/// An agent serving QGA, its root holding accounts root, alice and bob
/// (homes owned by them, as useradd makes them).
fn agent_with_accounts(builder: AgentBuilder) -> Agent {
    let agent = builder.qga().start();
    let root = agent.root();
    write(&root.join("etc/passwd"), PASSWD, 0o644);
    write(&root.join("etc/shadow"), SHADOW, 0o640);
    write(&root.join("etc/login.defs"), "ENCRYPT_METHOD SHA512\n", 0o644);
    std::fs::create_dir_all(root.join("root")).unwrap();
    std::fs::set_permissions(root.join("root"), std::fs::Permissions::from_mode(0o700)).unwrap();
    for (user, uid, gid) in [("alice", 4001, 4002), ("bob", 4003, 4004)] {
        let home = root.join("home").join(user);
        std::fs::create_dir_all(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(uid), Some(gid)).unwrap();
    }
    agent
}

fn write(path: &Path, contents: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode_and_owner(path: &Path) -> (u32, u32, u32) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    (meta.mode() & 0o7777, meta.uid(), meta.gid())
}

fn ok() -> Value {
    json!({"return": {}})
}

fn generic_error(desc: &str) -> Value {
    json!({"error": {"class": "GenericError", "desc": desc}})
}

fn desc(answer: &Value) -> String {
    answer["error"]["desc"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error: {answer}"))
        .to_owned()
}

fn hash_of(root: &Path, user: &str) -> String {
    let shadow = std::fs::read_to_string(root.join("etc/shadow")).unwrap();
    let line = shadow
        .lines()
        .find(|line| line.starts_with(&format!("{user}:")))
        .unwrap();
    line.split(':').nth(1).unwrap().to_owned()
}

/// crypt(3) from libxcrypt (Debian's Python): does `password` match `hash`?
fn libxcrypt_verifies(password: &str, hash: &str) -> bool {
    Command::new("/usr/bin/python3")
        .args(["-W", "ignore", "-c"])
        .arg("import crypt,sys; sys.exit(0 if crypt.crypt(sys.argv[1], sys.argv[2]) == sys.argv[2] else 1)")
        .args([password, hash])
        .status()
        .expect("/usr/bin/python3")
        .success()
}

/// A SHA-512 hash of `password` made by libxcrypt.
fn libxcrypt_hash(password: &str) -> String {
    let output = Command::new("/usr/bin/python3")
        .args(["-W", "ignore", "-c"])
        .arg("import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_SHA512)))")
        .arg(password)
        .output()
        .expect("/usr/bin/python3");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn set_password(qga: &mut QgaClient, username: &str, password: &str, crypted: bool) -> Value {
    // The key order libvirt writes.
    let arguments = json!({"crypted": crypted, "username": username, "password": b64encode(password.as_bytes())});
    qga.execute("guest-set-user-password", &arguments.to_string())
}

#[test]
fn set_user_password_plain_and_crypted_as_libxcrypt_reads_them() {
    let agent = agent_with_accounts(AgentBuilder::new());
    let root = agent.root();
    let mut qga = agent.qga();
    assert_eq!(set_password(&mut qga, "root", "Tr0ub4dor&3", false), ok());
    let hash = hash_of(&root, "root");
    assert!(hash.starts_with("$6$") && hash != "$6$abcdefgh$old", "{hash}");
    assert!(libxcrypt_verifies("Tr0ub4dor&3", &hash), "libxcrypt rejects {hash}");
    assert_eq!(
        mode_and_owner(&root.join("etc/shadow")),
        (0o640, 0, 0),
        "mode and owner kept"
    );

    let crypted = libxcrypt_hash("s3cond pw");
    assert_eq!(set_password(&mut qga, "alice", &crypted, true), ok());
    assert_eq!(hash_of(&root, "alice"), crypted, "a crypted password goes in verbatim");
    assert!(libxcrypt_verifies("s3cond pw", &hash_of(&root, "alice")));
    assert_eq!(hash_of(&root, "root"), hash, "root's line untouched");

    // Refusals change nothing; a request id comes back first.
    let before = std::fs::read(root.join("etc/shadow")).unwrap();
    assert_eq!(
        set_password(&mut qga, "nosuchuser", "pw", false),
        generic_error("child process has failed to set user password")
    );
    let answer = qga.request(
        r#"{"execute":"guest-set-user-password","arguments":{"crypted":true,"username":"alice","password":"eDow"},"id":7}"#,
    );
    assert_eq!(
        answer.trim_end(),
        r#"{"id": 7, "error": {"class": "GenericError", "desc": "forbidden characters in crypted password"}}"#
    );
    assert_eq!(std::fs::read(root.join("etc/shadow")).unwrap(), before);
    let log = agent.log();
    for secret in ["Tr0ub4dor&3", &b64encode(b"Tr0ub4dor&3"), "s3cond pw", &crypted] {
        assert!(!log.contains(secret), "{secret} reached the log");
    }
}

/// Debian's shadow tools (`chage`, `passwd -S`) reading the account from
/// the agent's root: the password change date, and whether a change is
/// forced at the next login.
fn shadow_tool(root: &Path, tool: &str, args: &[&str]) -> String {
    let output = Command::new(tool)
        .env("LC_ALL", "C")
        .arg("-R")
        .arg(root)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("{tool}: {error}"));
    assert!(
        output.status.success(),
        "{tool}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn utc_today() -> String {
    let output = Command::new("date").args(["-u", "+%F"]).output().expect("date");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn a_new_password_is_dated_today_and_ends_a_forced_change_as_chpasswd_does() {
    let agent = agent_with_accounts(AgentBuilder::new());
    let root = agent.root();
    // alice must change her password at the next login (`passwd -e`).
    write(
        &root.join("etc/shadow"),
        "root:$6$abcdefgh$old:17000:0:99999:7:::\nalice:$6$abcdefgh$old:0:0:99999:7:::\n",
        0o640,
    );
    assert!(shadow_tool(&root, "chage", &["-l", "alice"]).contains("password must be changed"));

    let before = utc_today();
    let mut qga = agent.qga();
    assert_eq!(set_password(&mut qga, "alice", "Tr0ub4dor&3", false), ok());
    let status = shadow_tool(&root, "passwd", &["-S", "alice"]);
    let fields: Vec<&str> = status.split_whitespace().collect();
    assert_eq!(fields[..2], ["alice", "P"], "{status}");
    assert!(
        [before, utc_today()].contains(&fields[2].to_owned()),
        "changed on {status}"
    );
    assert_eq!(
        fields[3..],
        ["0", "99999", "7", "-1"],
        "the ageing fields are kept: {status}"
    );
    let ageing = shadow_tool(&root, "chage", &["-l", "alice"]);
    assert!(!ageing.contains("must be changed"), "{ageing}");
    assert!(
        shadow_tool(&root, "passwd", &["-S", "root"]).contains(" 2016-07-18 "),
        "root's line untouched"
    );
}

#[test]
fn ssh_keys_are_added_listed_and_removed_with_the_modes_sshd_wants() {
    let agent = agent_with_accounts(AgentBuilder::new());
    let root = agent.root();
    let mut qga = agent.qga();
    let add = |qga: &mut QgaClient, user: &str, keys: &[&str], reset: bool| {
        let arguments = json!({"username": user, "keys": keys, "reset": reset});
        qga.execute("guest-ssh-add-authorized-keys", &arguments.to_string())
    };
    let get = |qga: &mut QgaClient, user: &str| {
        qga.execute("guest-ssh-get-authorized-keys", &json!({"username": user}).to_string())
    };
    assert_eq!(add(&mut qga, "alice", &[K1, K2], false), ok());
    let ssh = root.join("home/alice/.ssh");
    assert_eq!(mode_and_owner(&ssh), (0o700, 4001, 4002));
    assert_eq!(mode_and_owner(&ssh.join("authorized_keys")), (0o600, 4001, 4002));
    assert_eq!(
        std::fs::read_to_string(ssh.join("authorized_keys")).unwrap(),
        format!("{K1}\n{K2}")
    );
    assert_eq!(get(&mut qga, "alice"), json!({"return": {"keys": [K2, K1]}}));

    let remove = json!({"username": "alice", "keys": [K1]}).to_string();
    assert_eq!(qga.execute("guest-ssh-remove-authorized-keys", &remove), ok());
    assert_eq!(get(&mut qga, "alice"), json!({"return": {"keys": [K2]}}));
    assert_eq!(add(&mut qga, "alice", &[K1], true), ok());
    assert_eq!(std::fs::read_to_string(ssh.join("authorized_keys")).unwrap(), K1);

    // Root's keys: /root/.ssh is made for root.
    assert_eq!(add(&mut qga, "root", &[ROOT_KEY], false), ok());
    assert_eq!(mode_and_owner(&root.join("root/.ssh")), (0o700, 0, 0));
    assert_eq!(mode_and_owner(&root.join("root/.ssh/authorized_keys")), (0o600, 0, 0));
    // A home outside the grants is refused with the reason.
    let answer = add(&mut qga, "svc", &[K1], false);
    assert!(
        desc(&answer).contains("outside the readable files of component sshkeys"),
        "{answer}"
    );
    assert!(!root.join("srv").exists());
}

/// A file, its contents, and its mode and owner.
type Snapshot = (std::path::PathBuf, Vec<u8>, (u32, u32, u32));

/// Root's keys, bob's keys and /etc as they were before an attack.
struct Targets {
    files: Vec<Snapshot>,
}

impl Targets {
    fn plant(root: &Path) -> Self {
        write(&root.join("root/.ssh/authorized_keys"), ROOT_KEY, 0o600);
        write(&root.join("home/bob/.ssh/authorized_keys"), K2, 0o600);
        std::os::unix::fs::chown(root.join("home/bob/.ssh"), Some(4003), Some(4004)).unwrap();
        std::os::unix::fs::chown(root.join("home/bob/.ssh/authorized_keys"), Some(4003), Some(4004)).unwrap();
        let files = [
            "root/.ssh/authorized_keys",
            "home/bob/.ssh/authorized_keys",
            "etc/shadow",
            "etc/passwd",
        ]
        .into_iter()
        .map(|path| {
            let path = root.join(path);
            let contents = std::fs::read(&path).unwrap();
            let meta = mode_and_owner(&path);
            (path, contents, meta)
        })
        .collect();
        Self { files }
    }

    fn assert_untouched(&self, root: &Path, attack: &str) {
        for (path, contents, meta) in &self.files {
            assert_eq!(
                &std::fs::read(path).unwrap(),
                contents,
                "{attack}: {} changed",
                path.display()
            );
            assert_eq!(
                &mode_and_owner(path),
                meta,
                "{attack}: {} changed hands",
                path.display()
            );
        }
        for stray in [
            "etc/authorized_keys",
            "root/authorized_keys",
            "home/bob/authorized_keys",
        ] {
            assert!(!root.join(stray).exists(), "{attack}: {stray} written");
        }
    }
}

#[test]
fn symlinks_and_hard_links_a_user_plants_lead_nowhere() {
    let agent = agent_with_accounts(AgentBuilder::new());
    let root = agent.root();
    let targets = Targets::plant(&root);
    let mut qga = agent.qga();
    let alice = root.join("home/alice");
    let ssh = alice.join(".ssh");
    let calls = [
        (
            "guest-ssh-add-authorized-keys",
            json!({"username": "alice", "keys": [K1], "reset": false}),
        ),
        (
            "guest-ssh-add-authorized-keys",
            json!({"username": "alice", "keys": [K1], "reset": true}),
        ),
        (
            "guest-ssh-remove-authorized-keys",
            json!({"username": "alice", "keys": [ROOT_KEY, K2]}),
        ),
        ("guest-ssh-get-authorized-keys", json!({"username": "alice"})),
    ];
    // ~/.ssh a symlink, as alice can make it in her own home.
    for target in ["/root/.ssh", "/etc", "/home/bob/.ssh", "../bob/.ssh", "/root"] {
        symlink(target, &ssh).unwrap();
        std::os::unix::fs::lchown(&ssh, Some(4001), Some(4002)).unwrap();
        for (command, arguments) in &calls {
            let answer = qga.execute(command, &arguments.to_string());
            assert!(
                desc(&answer).contains("symlink"),
                "~/.ssh -> {target}: {command} answered {answer}"
            );
        }
        targets.assert_untouched(&root, &format!("~/.ssh -> {target}"));
        std::fs::remove_file(&ssh).unwrap();
    }
    // ~/.ssh hers, authorized_keys a symlink to root's or bob's keys.
    std::fs::create_dir(&ssh).unwrap();
    std::os::unix::fs::chown(&ssh, Some(4001), Some(4002)).unwrap();
    for target in [
        "/root/.ssh/authorized_keys",
        "/home/bob/.ssh/authorized_keys",
        "/etc/shadow",
    ] {
        let keys = ssh.join("authorized_keys");
        symlink(target, &keys).unwrap();
        for (command, arguments) in &calls {
            let answer = qga.execute(command, &arguments.to_string());
            if arguments["reset"] == true {
                // Nothing is read: her link is replaced by her own file.
                assert_eq!(answer, ok(), "{target}");
                assert_eq!(mode_and_owner(&keys), (0o600, 4001, 4002));
                assert_eq!(std::fs::read_to_string(&keys).unwrap(), K1);
                std::fs::remove_file(&keys).unwrap();
                symlink(target, &keys).unwrap();
            } else {
                assert!(
                    desc(&answer).contains("symlink"),
                    "-> {target}: {command} answered {answer}"
                );
            }
        }
        targets.assert_untouched(&root, &format!("authorized_keys -> {target}"));
        std::fs::remove_file(&keys).unwrap();
    }
    // A hard link to a file she cannot read (protected_hardlinks would stop
    // her making it; root can): never answered, never copied into her file.
    std::fs::hard_link(root.join("etc/shadow"), ssh.join("authorized_keys")).unwrap();
    for (command, arguments) in [&calls[0], &calls[2], &calls[3]] {
        let answer = qga.execute(command, &arguments.to_string());
        assert!(
            desc(&answer).contains("alice may not read it"),
            "{command} answered {answer}"
        );
    }
    targets.assert_untouched(&root, "hard link to /etc/shadow");
}

#[test]
fn guest_shutdown_is_off_by_default_and_recorded_never_answered_when_granted() {
    let agent = AgentBuilder::new().qga().start();
    let mut qga = agent.qga();
    // Off by default: not loaded, so not found (and not in guest-info).
    assert_eq!(
        qga.request(r#"{"execute":"guest-shutdown"}"#),
        "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command guest-shutdown has not been found\"}}\n"
    );
    let info = qga.execute("guest-info", "");
    assert!(!info.to_string().contains("guest-shutdown"), "{info}");
    let actions = agent.root().join(".guestward/actions.log");
    assert!(!actions.exists() || !std::fs::read_to_string(&actions).unwrap().contains("shutdown"));
    drop(agent);

    // The operator's drop-in, as docs/policy.md shows it.
    let drop_ins = tempfile::tempdir().unwrap();
    std::fs::write(
        drop_ins.path().join("shutdown.toml"),
        r#"[component.shutdown]
programs = [
    ["/sbin/shutdown", "-h", "-P", "+0", "hypervisor initiated shutdown"],
    ["/sbin/shutdown", "-h", "-r", "+0", "hypervisor initiated shutdown"],
]
"#,
    )
    .unwrap();
    let agent = AgentBuilder::new()
        .qga()
        .arg("--policy-dir")
        .arg(drop_ins.path().to_str().unwrap())
        .start();
    let mut qga = agent.qga();
    for (line, flag) in [
        (r#"{"execute":"guest-shutdown"}"#, "-P"),
        (
            r#"{"execute":"guest-shutdown","arguments":{"mode":"reboot"},"id":3}"#,
            "-r",
        ),
    ] {
        qga.send(format!("{line}\n").as_bytes()).unwrap();
        // No answer on the wire: the next request's answer comes first
        // (whether guest-ping is loaded or not).
        let after: Value = serde_json::from_str(&qga.request(r#"{"execute":"guest-ping","id":"after"}"#)).unwrap();
        assert_eq!(after["id"], "after", "{after}");
        let actions = std::fs::read_to_string(agent.root().join(".guestward/actions.log")).unwrap();
        let recorded = format!(r#"["/sbin/shutdown","-h","{flag}","+0","hypervisor initiated shutdown"]"#);
        assert!(actions.contains(&recorded), "{actions}");
    }
    // A mode the drop-in leaves out stays off.
    let answer = qga.execute("guest-shutdown", r#"{"mode":"halt"}"#);
    assert!(desc(&answer).starts_with("guest-shutdown is off: "), "{answer}");
    assert!(qga.is_silent_for(Duration::from_millis(100)));
}

#[test]
fn argument_errors_read_as_qemu_gas() {
    // Only requests qemu-ga refuses before touching anything: it runs as
    // root on this machine.
    let requests = [
        r#"{"execute":"guest-set-user-password","arguments":{"password":"cHc=","crypted":false}}"#,
        r#"{"execute":"guest-set-user-password","arguments":{"username":"gw-nobody","password":"!!!notbase64","crypted":false}}"#,
        r#"{"execute":"guest-set-user-password","arguments":{"username":"gw:nobody","password":"cHc=","crypted":false}}"#,
        r#"{"execute":"guest-set-user-password","arguments":{"username":"gw-nobody","password":"YQpi","crypted":true}}"#,
        r#"{"execute":"guest-set-user-password","arguments":{"username":"gw-nobody","password":"cHc=","crypted":"no"}}"#,
        r#"{"execute":"guest-ssh-get-authorized-keys","arguments":{}}"#,
        r#"{"execute":"guest-ssh-get-authorized-keys","arguments":{"username":"gw-nosuchuser"}}"#,
        r#"{"execute":"guest-ssh-add-authorized-keys","arguments":{"username":"gw-nosuchuser","keys":["ssh-ed25519 AAAA k"]}}"#,
        r##"{"execute":"guest-ssh-add-authorized-keys","arguments":{"username":"root","keys":["# comment"]}}"##,
        r#"{"execute":"guest-ssh-add-authorized-keys","arguments":{"username":"root","keys":[1]}}"#,
        r#"{"execute":"guest-ssh-remove-authorized-keys","arguments":{"username":"root","keys":["a\nb"]}}"#,
        r#"{"execute":"guest-shutdown","arguments":{"mode":"bogus"}}"#,
        r#"{"execute":"guest-shutdown","arguments":{"mode":1}}"#,
    ];
    let (qemu_ga, _) = QemuGa::start().expect("qemu-ga");
    let mut theirs = QgaClient::connect(qemu_ga.socket()).unwrap();
    // With the shipped drop-ins, which turn guest-shutdown on.
    let drop_ins = concat!(env!("CARGO_MANIFEST_DIR"), "/../dist/policy.d");
    let agent = agent_with_accounts(AgentBuilder::new().arg("--policy-dir").arg(drop_ins));
    let mut ours = agent.qga();
    for request in requests {
        let expected = theirs.request(request);
        assert!(
            expected.contains(r#""error""#),
            "qemu-ga accepted {request}: {expected}"
        );
        assert_eq!(ours.request(request), expected, "{request}");
    }
}
