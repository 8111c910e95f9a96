//! Each command under its own policy entry, in the SDK's test host.

use guestward_sdk::network::{InterfaceDetails, InterfaceStatistics, IpAddress, IpAddressType};
use guestward_sdk::testing::{self, Fault};
use serde_json::{Value, json};

use super::*;

fn setup() {
    testing::reset();
    testing::load_asks::<Qga>("qga").unwrap();
}

/// `(code, message)` of a call.
fn call(name: &str, arguments: &str) -> (String, String) {
    let reply = testing::call::<Qga>(name, arguments);
    (reply.code, reply.message)
}

/// The `return` value of a successful call.
fn returned(name: &str) -> Value {
    let (code, message) = call(name, "{}");
    assert_eq!(code, "0", "{name}: {message}");
    serde_json::from_str(&message).unwrap()
}

fn generic(desc: &str) -> (String, String) {
    ("GenericError".to_owned(), desc.to_owned())
}

#[test]
fn ping_returns_an_empty_object_and_refuses_arguments() {
    setup();
    assert_eq!(call("qga:guest-ping", "{}"), ("0".into(), "{}".into()));
    assert_eq!(call("qga:guest-ping", ""), ("0".into(), "{}".into()));
    for name in Qga::NAMES.iter().filter(|name| !name.contains("sync")) {
        assert_eq!(
            call(name, r#"{"x": 1}"#),
            generic("Parameter 'x' is unexpected"),
            "{name}"
        );
        assert_eq!(
            call(name, "[]"),
            generic("QMP input member 'arguments' must be an object"),
            "{name}"
        );
    }
}

#[test]
fn sync_returns_the_id_and_checks_it_with_qemu_gas_words() {
    setup();
    for name in ["qga:guest-sync", "qga:guest-sync-delimited"] {
        assert_eq!(call(name, r#"{"id": 5}"#), ("0".into(), "5".into()));
        assert_eq!(call(name, r#"{"id": -1}"#), ("0".into(), "-1".into()));
        assert_eq!(
            call(name, r#"{"id": 9223372036854775807}"#),
            ("0".into(), "9223372036854775807".into())
        );
        for bad in ["9223372036854775808", "1.5", "1.0", "1e3", "\"5\"", "null"] {
            assert_eq!(
                call(name, &format!(r#"{{"id": {bad}}}"#)),
                generic("Invalid parameter type for 'id', expected: integer"),
                "{bad}"
            );
        }
        assert_eq!(call(name, "{}"), generic("Parameter 'id' is missing"));
        assert_eq!(
            call(name, r#"{"id": 1, "y": 2}"#),
            generic("Parameter 'y' is unexpected")
        );
    }
}

#[test]
fn info_lists_the_loaded_qga_commands_with_their_state() {
    setup();
    testing::with_host(|host| {
        host.version = "0.1.0".into();
        host.commands = [
            "features",
            "qga:guest-info",
            "qga:guest-ping",
            "qga:guest-shutdown",
            "version",
        ]
        .map(String::from)
        .to_vec();
        host.disabled_commands = vec!["qga:guest-shutdown".into()];
    });
    let (code, message) = call("qga:guest-info", "{}");
    assert_eq!(code, "0");
    assert_eq!(
        message,
        r#"{"version":"0.1.0","supported_commands":[{"enabled":true,"name":"guest-info","success-response":true},{"enabled":true,"name":"guest-ping","success-response":true},{"enabled":false,"name":"guest-shutdown","success-response":false}]}"#
    );
}

#[test]
fn host_name_is_the_kernels() {
    setup();
    testing::with_host(|host| host.files.insert("/proc/sys/kernel/hostname".into(), b"vm\n".to_vec()));
    assert_eq!(
        call("qga:guest-get-host-name", "{}"),
        ("0".into(), r#"{"host-name":"vm"}"#.into())
    );
    testing::with_host(|host| host.files.clear());
    let (code, message) = call("qga:guest-get-host-name", "{}");
    assert_eq!(code, "GenericError");
    assert!(message.starts_with("cannot get hostname: "), "{message}");
}

#[test]
fn osinfo_has_qemu_gas_members_from_os_release_and_the_kernel() {
    setup();
    testing::with_host(|host| {
        for (path, text) in [
            ("/proc/sys/kernel/osrelease", "6.18.44-fc-v1045\n"),
            ("/proc/sys/kernel/version", "#1 SMP PREEMPT_DYNAMIC @0\n"),
            ("/proc/sys/kernel/arch", "x86_64\n"),
            (
                "/usr/lib/os-release",
                "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\n\
                 VERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n",
            ),
        ] {
            host.files.insert(path.into(), text.as_bytes().to_vec());
        }
    });
    // The answer qemu-ga 7.2 gave on this machine (research notes §4),
    // byte for byte but for the separators the exchange writes.
    assert_eq!(
        call("qga:guest-get-osinfo", "{}").1,
        r##"{"name":"Debian GNU/Linux","kernel-release":"6.18.44-fc-v1045","version":"12 (bookworm)","pretty-name":"Debian GNU/Linux 12 (bookworm)","version-id":"12","kernel-version":"#1 SMP PREEMPT_DYNAMIC @0","machine":"x86_64","id":"debian"}"##
    );
    // /etc/os-release comes first; variants appear when set.
    testing::with_host(|host| {
        host.files.insert(
            "/etc/os-release".into(),
            b"ID=fedora\nVARIANT_ID=cloud\nVARIANT=\"Cloud\"\n".to_vec(),
        )
    });
    let osinfo = returned("qga:guest-get-osinfo");
    assert_eq!(osinfo["id"], "fedora");
    assert_eq!(osinfo["variant-id"], "cloud");
    assert_eq!(osinfo["variant"], "Cloud");
    assert!(osinfo.get("name").is_none(), "{osinfo}");
    // Nothing readable: an empty object, as qemu-ga answers, not an error.
    testing::with_host(|host| host.files.clear());
    assert_eq!(returned("qga:guest-get-osinfo"), json!({}));
}

#[test]
fn timezone_comes_from_localtime_and_is_utc_without_it() {
    setup();
    assert_eq!(
        call("qga:guest-get-timezone", "{}"),
        ("0".into(), r#"{"zone":"UTC","offset":0}"#.into())
    );
    // A fixed zone with no transitions: its only type.
    let mut file = b"TZif2".to_vec();
    let header = |file: &mut Vec<u8>| {
        file.extend_from_slice(&[0; 15]);
        for count in [0_u32, 0, 0, 0, 1, 4] {
            file.extend_from_slice(&count.to_be_bytes());
        }
        file.extend_from_slice(&19800_i32.to_be_bytes());
        file.extend_from_slice(&[0, 0]);
        file.extend_from_slice(b"IST\0");
    };
    header(&mut file);
    file.extend_from_slice(b"TZif2");
    header(&mut file);
    file.extend_from_slice(b"\nIST-5:30\n");
    testing::with_host(|host| host.files.insert("/etc/localtime".into(), file.clone()));
    assert_eq!(
        call("qga:guest-get-timezone", "{}"),
        ("0".into(), r#"{"zone":"IST","offset":19800}"#.into())
    );
    testing::with_host(|host| host.files.insert("/etc/localtime".into(), file[..30].to_vec()));
    let (code, message) = call("qga:guest-get-timezone", "{}");
    assert_eq!(code, "GenericError");
    assert!(
        message.starts_with("/etc/localtime is not a usable time zone file: it is truncated"),
        "{message}"
    );
    testing::with_host(|host| {
        host.faults.push(Fault::io("files.read").text("disk on fire"));
    });
    let (code, message) = call("qga:guest-get-timezone", "{}");
    assert_eq!(
        (code.as_str(), message.contains("disk on fire")),
        ("GenericError", true),
        "{message}"
    );
}

#[test]
fn time_is_now_in_nanoseconds_with_microsecond_resolution() {
    setup();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let time = returned("qga:guest-get-time").as_i64().unwrap();
    let time = u128::try_from(time).unwrap();
    assert_eq!(time % 1000, 0);
    assert!(
        time + 1000 >= before && time < before + 60_000_000_000,
        "{time} vs {before}"
    );
}

#[test]
fn users_come_from_utmp_and_a_missing_utmp_means_nobody() {
    setup();
    assert_eq!(call("qga:guest-get-users", "{}"), ("0".into(), "[]".into()));
    let mut record = vec![0_u8; 384];
    record[0..2].copy_from_slice(&7_i16.to_ne_bytes());
    record[44..49].copy_from_slice(b"alice");
    record[340..344].copy_from_slice(&1_796_149_800_i32.to_ne_bytes());
    testing::with_host(|host| host.files.insert("/var/run/utmp".into(), record.clone()));
    assert_eq!(
        call("qga:guest-get-users", "{}"),
        ("0".into(), r#"[{"login-time":1796149800,"user":"alice"}]"#.into())
    );
    testing::with_host(|host| host.files.insert("/var/run/utmp".into(), record[..100].to_vec()));
    assert_eq!(
        call("qga:guest-get-users", "{}"),
        generic("/var/run/utmp is not a utmp file: 100 bytes is not a whole number of 384-byte records")
    );
}

fn details(name: &str, addresses: &[(&str, u8)], statistics: bool) -> InterfaceDetails {
    InterfaceDetails {
        name: name.into(),
        hardware_address: Some("02:fc:00:00:00:01".into()),
        ip_addresses: addresses
            .iter()
            .map(|(address, prefix)| IpAddress {
                address_type: if address.contains(':') {
                    IpAddressType::Ipv6
                } else {
                    IpAddressType::Ipv4
                },
                address: (*address).into(),
                prefix: *prefix,
            })
            .collect(),
        statistics: statistics.then_some(InterfaceStatistics {
            rx_bytes: 1,
            rx_packets: 2,
            rx_errs: 3,
            rx_dropped: 4,
            tx_bytes: 5,
            tx_packets: 6,
            tx_errs: 7,
            tx_dropped: 8,
        }),
    }
}

#[test]
fn interfaces_are_shaped_as_qemu_ga_shapes_them() {
    setup();
    testing::with_host(|host| {
        host.interface_details = vec![
            details("eth0", &[("192.0.2.2", 24), ("fe80::fc:ff:fe00:1", 64)], true),
            // No address: neither addresses nor counters.
            details("ifb0", &[], true),
            // A label: an address without counters.
            details("eth0:1", &[("10.99.1.1", 16)], false),
        ];
    });
    assert_eq!(
        call("qga:guest-network-get-interfaces", "{}").1,
        concat!(
            r#"[{"name":"eth0","ip-addresses":[{"ip-address-type":"ipv4","ip-address":"192.0.2.2","prefix":24},"#,
            r#"{"ip-address-type":"ipv6","ip-address":"fe80::fc:ff:fe00:1","prefix":64}],"#,
            r#""statistics":{"tx-packets":6,"tx-errs":7,"rx-bytes":1,"rx-dropped":4,"rx-packets":2,"rx-errs":3,"tx-bytes":5,"tx-dropped":8},"#,
            r#""hardware-address":"02:fc:00:00:00:01"},"#,
            r#"{"name":"ifb0","hardware-address":"02:fc:00:00:00:01"},"#,
            r#"{"name":"eth0:1","ip-addresses":[{"ip-address-type":"ipv4","ip-address":"10.99.1.1","prefix":16}],"hardware-address":"02:fc:00:00:00:01"}]"#
        )
    );
}

#[test]
fn interface_failures_are_generic_errors_with_the_hosts_words() {
    setup();
    testing::with_host(|host| {
        host.faults
            .push(Fault::io("network.addresses").text("no netlink").times(1))
    });
    assert_eq!(call("qga:guest-network-get-interfaces", "{}"), generic("no netlink"));
    testing::with_host(|host| host.interface_details = vec![details("veth", &[], false); 1025]);
    let (code, message) = call("qga:guest-network-get-interfaces", "{}");
    assert_eq!(code, "GenericError");
    assert!(message.contains("more than the 1024"), "{message}");
    testing::load_policy("qga", "").unwrap();
    assert_eq!(
        call("qga:guest-network-get-interfaces", "{}"),
        generic("component qga may not list the network interfaces")
    );
}

#[test]
fn the_policy_grants_what_the_commands_read_and_nothing_more() {
    setup();
    testing::with_host(|host| host.files.insert("/etc/shadow".into(), b"root:x".to_vec()));
    assert!(matches!(files::read("/etc/shadow"), Err(files::Error::NotGranted(_))));
    for path in [
        "/etc/os-release",
        "/usr/share/zoneinfo/Europe/Paris",
        "/run/utmp",
        "/proc/sys/kernel/arch",
    ] {
        assert!(
            !matches!(files::read(path), Err(files::Error::NotGranted(_))),
            "{path} is granted"
        );
    }
    assert!(matches!(
        files::replace(
            "/etc/os-release",
            b"x",
            &files::ReplaceOptions {
                mode: None,
                owner: None,
                backup_suffix: None,
                create_parents: false
            }
        ),
        Err(files::Error::NotGranted(_))
    ));
}
