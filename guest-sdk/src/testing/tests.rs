//! The test host does what the daemon does: each grant, limit, fault and
//! fixture, with the daemon's texts.

use super::*;
use crate::{Command, Reply, Request, download, files, hostname, network, programs, update, xenstore};

/// A command that replies with as many bytes as its value says.
struct Big;

impl Command for Big {
    const NAMES: &'static [&'static str] = &["big"];
    const SUMMARY: &'static str = "Replies with N bytes";
    const ASKS: &'static str = "limits = { reply-bytes = 2048 }";

    fn handle(request: Request<'_>) -> Reply {
        let size: usize = request.raw_value().parse().unwrap_or(0);
        Reply::ok("x".repeat(size))
    }
}

/// A command that does what its request names.
struct Acts;

impl Command for Acts {
    const NAMES: &'static [&'static str] = &["log", "sleep", "panic", "bad-code", "remaining"];
    const SUMMARY: &'static str = "Acts as asked";

    fn handle(request: Request<'_>) -> Reply {
        match request.name() {
            "log" => {
                for n in 0..5 {
                    crate::log::log(crate::log::Level::Info, &format!("line {n}"));
                }
                Reply::ok("")
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_millis(30));
                Reply::ok(crate::agent::remaining_ms().to_string())
            }
            "panic" => panic!("boom: it broke"),
            "bad-code" => Reply::new("0 OK", ""),
            _ => Reply::ok(crate::agent::remaining_ms().to_string()),
        }
    }
}

fn granted(entry: &str) {
    reset();
    load_policy("c", entry).unwrap();
}

fn no_options() -> files::ReplaceOptions {
    files::ReplaceOptions {
        mode: None,
        owner: None,
        backup_suffix: None,
        create_parents: false,
    }
}

#[test]
fn a_reply_over_its_limit_fails_as_in_the_daemon() {
    reset();
    load_asks::<Big>("big").unwrap();
    assert_eq!(call::<Big>("big", "2000").code, "0");
    assert_eq!(
        call::<Big>("big", "3000"),
        Reply::error("command 'big' replied with 3001 bytes, over its limit of 2048 bytes")
    );
    // The daemon's default is 16 KiB.
    reset();
    assert_eq!(call::<Big>("big", "16000").code, "0");
    assert_eq!(
        call::<Big>("big", "17000").message,
        "command 'big' replied with 17001 bytes, over its limit of 16384 bytes"
    );
}

#[test]
fn invalid_return_codes_and_panics_get_the_daemons_replies() {
    reset();
    assert_eq!(
        call::<Acts>("bad-code", ""),
        Reply::error("command 'bad-code' returned an invalid return code \"0 OK\"")
    );
    assert_eq!(
        call::<Acts>("panic", ""),
        Reply::error("command 'panic' panicked: boom: it broke")
    );
    // The host is usable after a panic.
    assert_eq!(call::<Acts>("log", "").code, "0");
}

#[test]
fn log_lines_past_the_limit_are_dropped_and_counted_per_call() {
    granted("limits = { log-lines = 2 }");
    assert_eq!(call::<Acts>("log", "").code, "0");
    with_host(|host| {
        assert_eq!(host.logs.len(), 2);
        assert_eq!(host.logs[1].1, "line 1");
        assert_eq!(host.logs_dropped, 3);
    });
    call::<Acts>("log", "");
    with_host(|host| assert_eq!((host.logs.len(), host.logs_dropped), (4, 3)));
}

#[test]
fn remaining_ms_counts_down_and_the_deadline_fails_the_call() {
    granted("limits = { deadline-ms = 10000 }");
    assert_eq!(call::<Acts>("remaining", "").message.parse::<u32>().unwrap() / 1000, 9);
    let left: u32 = call::<Acts>("sleep", "").message.parse().unwrap();
    assert!(left <= 10000 - 30, "{left}");
    assert_eq!(
        crate::agent::remaining_ms(),
        10000,
        "outside a call: the whole deadline"
    );
    granted("limits = { deadline-ms = 5 }");
    assert_eq!(
        call::<Acts>("sleep", ""),
        Reply::error("command 'sleep' did not finish within its deadline of 5 ms")
    );
    with_host(|host| host.remaining_ms = Some(7));
    assert_eq!(crate::agent::remaining_ms(), 7, "a fixed value wins");
}

#[test]
fn files_outside_the_grants_are_refused_with_the_daemons_texts() {
    granted(
        "files = [{ path = \"/etc/app\", access = \"read-write\" }, { path = \"/proc/meminfo\", access = \"read\" }]",
    );
    with_host(|host| {
        host.files.insert("/proc/meminfo".into(), b"MemTotal: 1 kB".to_vec());
        host.files.insert("/etc/shadow".into(), b"secret".to_vec());
    });
    assert!(files::read("/proc/meminfo").is_ok());
    assert_eq!(
        files::read("/etc/shadow").unwrap_err(),
        files::Error::NotGranted("/etc/shadow is outside the readable files of component c".into())
    );
    assert_eq!(
        files::replace("/proc/meminfo", b"x", &no_options()).unwrap_err(),
        files::Error::NotGranted("/proc/meminfo is outside the writable files of component c".into())
    );
    assert_eq!(
        files::read("/etc/app/../shadow").unwrap_err(),
        files::Error::InvalidPath("\"/etc/app/../shadow\" contains '..'".into())
    );
    assert_eq!(
        files::read("etc/app").unwrap_err(),
        files::Error::InvalidPath("\"etc/app\" is not an absolute path".into())
    );
    assert_eq!(
        files::list_dir("/etc//").unwrap_err(),
        files::Error::NotGranted("/etc// is outside the readable files of component c".into())
    );
    files::replace("/etc/app/conf", b"x", &no_options()).unwrap();
    assert_eq!(files::read("/etc/app/./conf").unwrap(), b"x");
    assert_eq!(
        files::rename("/etc/app/conf", "/etc/conf").unwrap_err(),
        files::Error::NotGranted("/etc/conf is outside the writable files of component c".into())
    );
    let setuid = files::ReplaceOptions {
        mode: Some(0o4755),
        ..no_options()
    };
    assert_eq!(
        files::replace("/etc/app/tool", b"x", &setuid).unwrap_err(),
        files::Error::NotGranted(
            "/etc/app/tool: mode 4755 sets the setuid or setgid bit, which is not granted to component c".into()
        )
    );
    let owner = Some(files::Owner { uid: 1000, gid: 1000 });
    assert!(matches!(
        files::set_permissions("/etc/app/conf", None, owner),
        Err(files::Error::NotGranted(text)) if text.starts_with("/etc/app/conf: giving it to 1000:1000 is not granted")
    ));
    granted("files = [{ path = \"/etc/app\", access = \"read-write\", setuid = true, chown = \"any\" }]");
    files::replace("/etc/app/tool", b"x", &setuid).unwrap();
    files::set_permissions("/etc/app/tool", None, owner).unwrap();
    granted("hostname = true");
    assert_eq!(
        files::read("/etc/app/conf").unwrap_err(),
        files::Error::NotGranted("this component has no files grant".into())
    );
}

#[test]
fn xenstore_keys_outside_the_prefixes_are_refused() {
    granted("xenstore = [\"vm-data/networking\"]");
    with_host(|host| {
        host.add_xenstore_json(r#"{"vm-data": {"networking": {"mac1": "{}"}, "hostname": "h"}}"#)
            .unwrap();
    });
    assert_eq!(xenstore::directory("vm-data/networking").unwrap(), ["mac1"]);
    assert_eq!(xenstore::read("vm-data/networking/mac1").unwrap(), "{}");
    assert_eq!(
        xenstore::read("vm-data/hostname").unwrap_err(),
        xenstore::Error::NotGranted("vm-data/hostname is outside the XenStore grants of component c".into())
    );
    assert_eq!(
        xenstore::read("vm-data/networkingX").unwrap_err().text(),
        "vm-data/networkingX is outside the XenStore grants of component c"
    );
    assert_eq!(
        xenstore::read("/local/domain/5/vm-data").unwrap_err(),
        xenstore::Error::InvalidKey("/local/domain/5/vm-data: use a key relative to the domain (vm-data/…)".into())
    );
    granted("");
    assert_eq!(
        xenstore::read("vm-data/hostname").unwrap_err(),
        xenstore::Error::NotGranted("component c has no XenStore grant".into())
    );
}

#[test]
fn programs_must_match_a_pattern_exactly() {
    granted("programs = [[\"/sbin/ifup\", \"*\"]]");
    let run = |program: &str, args: &[&str]| programs::run(program, &programs::plain(args), b"", Default::default());
    assert!(run("/sbin/ifup", &["eth0"]).is_ok());
    for (program, args) in [
        ("/sbin/ifup", &[][..]),
        ("/sbin/ifup", &["eth0", "--force"]),
        ("/bin/sh", &["-c"]),
    ] {
        assert_eq!(
            run(program, args).unwrap_err(),
            programs::Error::NotGranted(format!("component c may not run {program} with these arguments"))
        );
    }
    with_host(|host| assert_eq!(host.runs.len(), 1, "refused runs are not recorded"));
}

#[test]
fn switches_need_their_key() {
    granted("");
    assert_eq!(
        hostname::set("h").unwrap_err(),
        hostname::Error::NotGranted("component c may not set the hostname".into())
    );
    assert_eq!(
        network::interfaces().unwrap_err(),
        network::Error::NotGranted("component c may not list the network interfaces".into())
    );
    assert_eq!(
        network::addresses().unwrap_err(),
        network::Error::NotGranted("component c may not list the network interfaces".into())
    );
    assert_eq!(
        update::install(&[]).unwrap_err(),
        update::Error::NotGranted("this component may not install components".into())
    );
    assert_eq!(
        download::fetch("https://example.com/a", 10).unwrap_err(),
        download::Error::NotGranted("component c has no download grant".into())
    );
    granted("hostname = true\nnetwork = true\nupdate = true\ndownload = [\"https://example.com/\"]");
    hostname::set("h").unwrap();
    network::interfaces().unwrap();
    network::addresses().unwrap();
    update::install(&[]).unwrap();
    assert_eq!(
        download::fetch("https://example.org/a", 10).unwrap_err(),
        download::Error::NotGranted("https://example.org/a is outside the download grants of component c".into())
    );
}

#[test]
fn downloads_are_capped_by_the_limit() {
    granted("download = [\"https://example.com/\"]\nlimits = { download-mib = 1 }");
    with_host(|host| {
        host.downloads
            .insert("https://example.com/big".into(), vec![0; (1 << 20) + 1])
    });
    assert_eq!(
        download::fetch("https://example.com/big", u64::MAX).unwrap_err(),
        download::Error::TooLarge("https://example.com/big is larger than 1048576 bytes".into())
    );
}

#[test]
fn faults_inject_errors_per_path_and_per_call() {
    reset();
    with_host(|host| {
        host.files.insert("/a/one".into(), b"1".to_vec());
        host.files.insert("/b/two".into(), b"2".to_vec());
        host.faults.push(Fault::io("files.read").on("/a").times(2));
        host.faults
            .push(Fault::not_granted("files.list-dir").text("no listing"));
    });
    assert_eq!(
        files::read("/a/one").unwrap_err(),
        files::Error::Io("/a/one: input/output error (injected by the test)".into())
    );
    assert!(files::read("/a/one").is_err());
    assert!(files::read("/a/one").is_ok(), "twice only");
    assert!(files::read("/b/two").is_ok(), "only under /a");
    assert!(files::metadata("/a/one").is_ok(), "only files.read");
    assert_eq!(
        files::list_dir("/b").unwrap_err(),
        files::Error::NotGranted("no listing".into())
    );
    with_host(|host| {
        host.add_xenstore_json(r#"{"vm-data/hostname": "h"}"#).unwrap();
        host.faults.push(Fault::io("xenstore"));
        host.faults.push(Fault::not_granted("programs.run").on("/bin/true"));
    });
    assert!(matches!(
        xenstore::read("vm-data/hostname"),
        Err(xenstore::Error::Unavailable(_))
    ));
    assert!(matches!(
        programs::run("/bin/true", &[], b"", Default::default()),
        Err(programs::Error::NotGranted(_))
    ));
    assert!(programs::run("/bin/false", &[], b"", Default::default()).is_ok());
}

#[test]
fn fixtures_come_from_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("proc/sys")).unwrap();
    std::fs::write(dir.path().join("proc/meminfo"), "MemTotal: 1 kB\n").unwrap();
    std::fs::write(dir.path().join("proc/sys/x"), "1").unwrap();
    reset();
    with_host(|host| host.add_files_from(dir.path(), "/")).unwrap();
    assert_eq!(files::read("/proc/meminfo").unwrap(), b"MemTotal: 1 kB\n");
    let names: Vec<String> = files::list_dir("/proc")
        .unwrap()
        .into_iter()
        .map(|entry| entry.name)
        .collect();
    assert_eq!(names, ["meminfo", "sys"]);
    with_host(|host| host.add_files_from(dir.path().join("proc"), "/host/proc/")).unwrap();
    assert_eq!(files::read("/host/proc/sys/x").unwrap(), b"1");
}

#[test]
fn a_policy_entry_brings_its_settings() {
    reset();
    load_policy("c", "settings = { account = \"admin\" }").unwrap();
    assert_eq!(crate::agent::setting("account").as_deref(), Some("admin"));
    assert!(load_policy("c", "settings = { n = 1 }").is_err());
}

#[test]
fn without_a_policy_everything_is_granted() {
    reset();
    with_host(|host| host.files.insert("/etc/shadow".into(), b"s".to_vec()));
    assert!(files::read("/etc/shadow").is_ok());
    hostname::set("h").unwrap();
    assert!(xenstore::read("any/key").is_err_and(|error| matches!(error, xenstore::Error::NotFound(_))));
}

#[test]
fn values_longer_than_any_real_one_are_refused_first_and_not_quoted() {
    // As in the daemon: an error text may end up in a reply, which has a
    // size limit, so a huge path, key, URL or hostname is refused before
    // any other check, in words that do not quote it.
    reset();
    let long = "x".repeat(100_000);
    let path = format!("/etc/{long}");
    let texts = [
        files::read(&path).unwrap_err().text().to_owned(),
        files::lock(&path, 0).map(|_| ()).unwrap_err().text().to_owned(),
        xenstore::read(&format!("vm-data/{long}"))
            .unwrap_err()
            .text()
            .to_owned(),
        programs::run(
            &format!("/bin/{long}"),
            &[],
            b"",
            programs::RunOptions { timeout_ms: None },
        )
        .unwrap_err()
        .text()
        .to_owned(),
        download::fetch(&format!("https://example.com/{long}"), 10)
            .unwrap_err()
            .text()
            .to_owned(),
        hostname::set(&long).unwrap_err().text().to_owned(),
    ];
    let expected = [
        "a path is at most 4095 bytes, not 100005",
        "a path is at most 4095 bytes, not 100005",
        "a key is at most 2048 bytes, not 100008",
        "a program path is at most 4095 bytes, not 100005",
        "a URL is at most 2048 bytes, not 100020",
        "a hostname is at most 64 bytes, not 100000",
    ];
    assert_eq!(texts, expected);
    assert_eq!(
        hostname::set("two words").unwrap_err().text(),
        "\"two words\" is not a valid hostname"
    );
}

#[test]
fn addresses_past_the_daemons_bounds_fail_as_the_daemon_fails() {
    granted("network = true");
    let nic = |addresses: usize| network::InterfaceDetails {
        name: "veth".into(),
        hardware_address: None,
        ip_addresses: vec![
            network::IpAddress {
                address_type: network::IpAddressType::Ipv4,
                address: "10.0.0.1".into(),
                prefix: 8,
            };
            addresses
        ],
        statistics: None,
    };
    with_host(|host| host.interface_details = vec![nic(1); 1024]);
    assert_eq!(network::addresses().unwrap().len(), 1024);
    with_host(|host| host.interface_details = vec![nic(0); 1025]);
    assert!(
        matches!(network::addresses(), Err(network::Error::Failed(text)) if text.contains("1025 network interfaces"))
    );
    with_host(|host| host.interface_details = vec![nic(4096), nic(1)]);
    assert!(matches!(network::addresses(), Err(network::Error::Failed(text)) if text.contains("4097 IP addresses")));
}
