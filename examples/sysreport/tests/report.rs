//! `sysreport` under the SDK's test host: granted exactly what
//! `policy.toml` asks, serving the files of `tests/fixtures/root`.

use guestward_sdk::testing::{self, Fault};
use guestward_sdk::{Command, Reply};
use serde_json::{Value, json};
use sysreport::Sysreport;

/// A machine as the fixtures describe it, granted what the command asks.
fn machine() {
    testing::reset();
    testing::load_asks::<Sysreport>("sysreport").expect("policy.toml is a valid policy entry");
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/root");
    testing::with_host(|host| host.add_files_from(fixtures, "/")).expect("the fixtures");
}

fn report(value: &str) -> Value {
    let reply = testing::call::<Sysreport>("sysreport", value);
    assert_eq!(reply.code, "0", "{}", reply.message);
    serde_json::from_str(&reply.message).expect("the reply is JSON")
}

#[test]
fn reports_os_memory_and_storage_mounts() {
    machine();
    assert_eq!(
        report(""),
        json!({
            "os": "Debian GNU/Linux 12 (bookworm)",
            "memory": {
                "total_kib": 2048000, "available_kib": 1536000, "used_percent": 25,
                "swap_total_kib": 1048576, "swap_free_kib": 524288,
            },
            "mounts": [
                {"device": "/dev/vda1", "path": "/", "type": "ext4", "read_only": false},
                {"device": "/dev/vda15", "path": "/boot/efi", "type": "vfat", "read_only": false},
                {"device": "/dev/vdb", "path": "/srv/data disk", "type": "xfs", "read_only": true},
            ],
            "mounts_omitted": 0,
        })
    );
}

#[test]
fn a_section_alone() {
    machine();
    assert_eq!(report("\"os\""), json!({"os": "Debian GNU/Linux 12 (bookworm)"}));
    assert_eq!(report("\"memory\"")["memory"]["used_percent"], 25);
    let reply = testing::call::<Sysreport>("sysreport", "\"disks\"");
    assert_eq!(
        reply,
        Reply::error("no section \"disks\": use \"memory\", \"mounts\" or \"os\"")
    );
    let reply = testing::call::<Sysreport>("sysreport", "{\"section\": 1}");
    assert_eq!(reply.code, "500");
}

/// Thousands of mounts (containers, snaps) still fit the 4096-byte reply
/// limit the policy sets: the rest are counted.
#[test]
fn many_mounts_fit_the_reply_limit() {
    machine();
    let mounts: String = (0..2000)
        .map(|n| format!("/dev/loop{n} /snap/some-long-package-name/{n} squashfs ro,nodev,relatime 0 0\n"))
        .collect();
    testing::with_host(|host| host.files.insert("/proc/mounts".into(), mounts.into_bytes()));
    let reply = testing::call::<Sysreport>("sysreport", "");
    assert_eq!(reply.code, "0", "{}", reply.message);
    assert!(reply.message.len() <= 4096 - 1);
    let report: Value = serde_json::from_str(&reply.message).unwrap();
    let listed = report["mounts"].as_array().unwrap().len();
    assert!(listed > 10, "{listed}");
    assert_eq!(report["mounts_omitted"].as_u64().unwrap() as usize, 2000 - listed);
}

/// An operator who grants less than asked: os-release is optional.
#[test]
fn without_os_release_granted_the_os_is_null() {
    machine();
    let narrower = "files = [{ path = \"/proc\", access = \"read\" }]";
    testing::load_policy("sysreport", narrower).unwrap();
    assert_eq!(report("\"os\""), json!({"os": null}));
}

#[test]
fn a_missing_grant_for_meminfo_is_named_in_the_reply() {
    machine();
    testing::load_policy(
        "sysreport",
        "files = [{ path = \"/etc/os-release\", access = \"read\" }]",
    )
    .unwrap();
    let reply = testing::call::<Sysreport>("sysreport", "\"memory\"");
    assert_eq!(
        reply,
        Reply::error("cannot read /proc/meminfo: /proc/meminfo is outside the readable files of component sysreport")
    );
}

#[test]
fn io_errors_fail_the_call_with_the_reason() {
    machine();
    testing::with_host(|host| {
        host.faults
            .push(Fault::io("files.read").on("/proc/mounts").text("disk on fire"))
    });
    let reply = testing::call::<Sysreport>("sysreport", "");
    assert_eq!(reply, Reply::error("cannot read /proc/mounts: disk on fire"));
    // An unreadable os-release is an error too, unlike a missing one.
    machine();
    testing::with_host(|host| host.faults.push(Fault::io("files").on("/etc/os-release")));
    assert_eq!(testing::call::<Sysreport>("sysreport", "\"os\"").code, "500");
    machine();
    testing::with_host(|host| host.files.remove("/etc/os-release"));
    assert_eq!(report("\"os\""), json!({"os": null}));
}

#[test]
fn asks_only_to_read() {
    assert!(!Sysreport::ASKS.contains("read-write"));
}
