//! libvirt's agent calls (tests/fixtures/libvirt-agent-calls.json), sent
//! byte for byte as libvirt writes them, each answered with a `return` that
//! libvirt accepts (`guestward_tests::libvirt::accepts`): by Debian's
//! qemu-ga, which shows the fixture and the rules are real, and by
//! guestward's QGA socket. guest-shutdown and the fsfreeze calls are left
//! to their own tests (they stop the machine or freeze filesystems).

use std::os::unix::fs::PermissionsExt;

use guestward_tests::AgentBuilder;
use guestward_tests::libvirt::{AgentCall, accepts, agent_calls};
use guestward_tests::peer::QemuGa;
use guestward_tests::qga::QgaClient;

/// The calls that change nothing on the machine (what qemu-ga, running as
/// the real root here, may be sent).
const READ_ONLY: [&str; 10] = [
    "guest-sync",
    "guest-ping",
    "guest-info",
    "guest-fsfreeze-status",
    "guest-get-time",
    "guest-network-get-interfaces",
    "guest-get-host-name",
    "guest-get-users",
    "guest-get-osinfo",
    "guest-get-timezone",
];

/// The account the fixture's password and key calls name.
const USER: &str = "guestward-test";

/// Send each call as libvirt does and check libvirt would take the answer.
fn replay(client: &mut QgaClient, calls: &[AgentCall]) {
    for call in calls {
        client
            .send(format!("{}\n", call.wire).as_bytes())
            .unwrap_or_else(|error| panic!("{}: cannot send: {error}", call.call));
        let answer = client
            .answer()
            .unwrap_or_else(|error| panic!("{}: no answer: {error}", call.call));
        if let Err(problem) = accepts(&call.request, &answer) {
            panic!(
                "libvirt would refuse the answer to {} ({}): {problem}\n{}",
                call.call,
                call.wire,
                String::from_utf8_lossy(&answer)
            );
        }
    }
}

#[test]
fn qemu_ga_answers_libvirts_read_only_calls_as_libvirt_reads_them() {
    let (qemu_ga, _) = QemuGa::start().expect("start qemu-ga (make test installs qemu-guest-agent)");
    let calls: Vec<AgentCall> = agent_calls()
        .into_iter()
        .filter(|call| READ_ONLY.contains(&call.execute()))
        .collect();
    assert_eq!(calls.len(), READ_ONLY.len());
    let mut client = QgaClient::connect(qemu_ga.socket()).expect("connect to qemu-ga");
    replay(&mut client, &calls);
}

#[test]
fn guestward_answers_libvirts_calls_as_libvirt_reads_them() {
    // Under --root the interfaces come from a file, as a cloud's would.
    let interfaces = r#"[{"name": "eth0", "mac": "52:54:00:12:34:56", "up": true,
        "addresses": ["192.0.2.10/24", "fe80::5054:ff:fe12:3456/64"]}]"#;
    let agent = AgentBuilder::new()
        .qga()
        .interfaces(interfaces)
        .log_level("info")
        .start();
    add_account(&agent.root());
    add_machine_facts(&agent.root());
    let mut calls: Vec<AgentCall> = agent_calls()
        .into_iter()
        .filter(|call| call.execute() != "guest-shutdown" && !call.execute().starts_with("guest-fsfreeze"))
        .collect();
    // Keys are read after they were added: a missing authorized_keys is
    // an error for guest-ssh-get-authorized-keys, as in qemu-ga.
    calls.sort_by_key(|call| match call.execute() {
        "guest-ssh-add-authorized-keys" => 1,
        "guest-ssh-get-authorized-keys" => 2,
        "guest-ssh-remove-authorized-keys" => 3,
        _ => 0,
    });
    assert_eq!(calls.len(), READ_ONLY.len() - 1 + 2 + 4);
    replay(&mut agent.qga(), &calls);
}

/// What the read-only commands read, in the agent's root: under `--root`
/// even /proc comes from there.
fn add_machine_facts(root: &std::path::Path) {
    let kernel = root.join("proc/sys/kernel");
    std::fs::create_dir_all(&kernel).unwrap();
    for (name, value) in [
        ("hostname", "guest1\n"),
        ("osrelease", "6.1.0-13-cloud-amd64\n"),
        ("version", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.55-1 (2023-09-29)\n"),
        ("arch", "x86_64\n"),
    ] {
        std::fs::write(kernel.join(name), value).unwrap();
    }
    std::fs::write(
        root.join("etc/os-release"),
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n",
    )
    .unwrap();
}

/// The fixture's account in the agent's root: passwd, shadow, a home.
fn add_account(root: &std::path::Path) {
    let etc = root.join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        etc.join("passwd"),
        format!("root:x:0:0:root:/root:/bin/sh\n{USER}:x:1000:1000::/home/{USER}:/bin/sh\n"),
    )
    .unwrap();
    std::fs::write(etc.join("group"), format!("root:x:0:\n{USER}:x:1000:\n")).unwrap();
    std::fs::write(
        etc.join("shadow"),
        format!("root:*:20000:0:99999:7:::\n{USER}:!:20000:0:99999:7:::\n"),
    )
    .unwrap();
    std::fs::set_permissions(etc.join("shadow"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let home = root.join("home").join(USER);
    std::fs::create_dir_all(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(1000), Some(1000)).unwrap();
}
