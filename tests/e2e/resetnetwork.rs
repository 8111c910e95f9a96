//! resetnetwork end to end, in `--root` mode through the real xenstored:
//! the hypervisor writes `vm-data/hostname` and `vm-data/networking/*` as
//! Nova does, the interfaces come from `--interfaces`, and what the agent
//! writes is parsed by the real tools that consume it (ifupdown's `ifup
//! --no-act`, `netplan generate`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use guestward_tests::AgentBuilder;

use crate::{Guest, answer};

/// The end-to-end vector of legacy-agent.md §8.6.
const PUBLIC: &str = r#"{"label":"public","broadcast":"104.130.169.255","ips":[{"ip":"104.130.169.159","netmask":"255.255.255.0","enabled":"1","gateway":"104.130.169.1"},{"ip":"104.130.169.160","netmask":"255.255.255.0","enabled":"1","gateway":"104.130.169.1"}],"ip6s":[{"ip":"2001:4802:7803:104:be76:4eff:fe20:5eb2","netmask":64,"enabled":"1","gateway":"fe80::def"}],"mac":"BC:76:4E:20:5E:B2","gateway_v6":"fe80::def","dns":["69.20.0.164","69.20.0.196"],"gateway":"104.130.169.1"}"#;
const PRIVATE: &str = r#"{"label":"private","broadcast":"10.176.223.255","ips":[{"ip":"10.176.195.183","netmask":"255.255.224.0","enabled":"1","gateway":null}],"mac":"BC:76:4E:20:5E:FB","routes":[{"route":"10.208.0.0","netmask":"255.240.0.0","gateway":"10.176.192.1"},{"route":"10.176.0.0","netmask":"255.240.0.0","gateway":"10.176.192.1"}],"gateway":null}"#;
const NICS: &str = r#"[{"name":"eth0","mac":"bc:76:4e:20:5e:b2","up":true},{"name":"eth1","mac":"bc:76:4e:20:5e:fb","up":true},{"name":"eth2","mac":"bc:76:4e:20:5e:ff","up":false}]"#;

const INTERFACES_86: &str = "\
# Used by ifup(8) and ifdown(8). See the interfaces(5) manpage or
# /usr/share/doc/ifupdown/examples for more information.
# The loopback network interface
auto lo
iface lo inet loopback

# Label public
auto eth0
iface eth0 inet static
    address 104.130.169.159
    netmask 255.255.255.0
    gateway 104.130.169.1
iface eth0 inet6 static
    address 2001:4802:7803:104:be76:4eff:fe20:5eb2
    netmask 64
    gateway fe80::def
    dns-nameservers 69.20.0.164 69.20.0.196

# Label public
auto eth0:1
iface eth0:1 inet static
    address 104.130.169.160
    netmask 255.255.255.0

# Label private
auto eth1
iface eth1 inet static
    address 10.176.195.183
    netmask 255.255.224.0
    post-up ip route add 10.208.0.0/12 via 10.176.192.1 dev eth1
    pre-down ip route del 10.208.0.0/12 via 10.176.192.1 dev eth1 || true
    post-up ip route add 10.176.0.0/12 via 10.176.192.1 dev eth1
    pre-down ip route del 10.176.0.0/12 via 10.176.192.1 dev eth1 || true
";

fn write_files(root: &Path, files: &[(&str, &str)]) {
    for (path, contents) in files {
        let path = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
}

fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path.trim_start_matches('/'))).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// A guest whose hypervisor wrote the §8.6 vector.
fn guest_with_vector(builder: AgentBuilder) -> Guest {
    let guest = Guest::start(builder.interfaces(NICS));
    guest.dom0.write("vm-data/hostname", "test-server");
    guest.dom0.write("vm-data/networking/BC764E205EB2", PUBLIC);
    guest.dom0.write("vm-data/networking/BC764E205EFB", PRIVATE);
    guest
}

fn reset(guest: &Guest, id: &str) -> String {
    guest.dom0.call(id, r#"{"name":"resetnetwork","value":""}"#)
}

fn actions(root: &Path) -> String {
    std::fs::read_to_string(root.join(".guestward/actions.log")).unwrap_or_default()
}

#[test]
fn debian_gets_the_legacy_files_and_ifupdown_accepts_them() {
    let guest = guest_with_vector(AgentBuilder::new());
    let root = guest.agent.root();
    write_files(
        &root,
        &[
            ("/etc/os-release", "ID=debian\n"),
            ("/etc/hosts", "127.0.0.1\tlocalhost\n104.130.169.159\told-name\n"),
        ],
    );
    std::fs::create_dir_all(root.join("etc/network")).unwrap();
    assert_eq!(reset(&guest, "r1"), answer("", "0"));

    assert_eq!(read(&root, "/etc/network/interfaces"), INTERFACES_86);
    assert_eq!(read(&root, "/etc/hostname"), "test-server\n");
    assert_eq!(
        read(&root, "/etc/resolv.conf"),
        "# Automatically generated, do not edit\nnameserver 69.20.0.164\nnameserver 69.20.0.196\n"
    );
    assert_eq!(
        read(&root, "/etc/hosts"),
        "127.0.0.1\tlocalhost\n# 104.130.169.159\told-name\t# Removed by nova-agent\n104.130.169.159\ttest-server\n10.176.195.183\ttest-server\n2001:4802:7803:104:be76:4eff:fe20:5eb2\ttest-server\n"
    );
    let actions = actions(&root);
    for expected in [
        r#""action":"set-hostname","name":"test-server""#,
        r#"["/sbin/ifup","--no-act","-a","-i","/etc/network/interfaces.guestward-check"]"#,
        r#"["/sbin/ifup","eth0"]"#,
        r#"["/sbin/ifup","eth0:1"]"#,
        r#"["/sbin/ifup","eth1"]"#,
    ] {
        assert!(actions.contains(expected), "{expected} not in {actions}");
    }
    assert!(!actions.contains("eth2"), "{actions}");

    // ifupdown's own parser accepts the file and would configure exactly this.
    let output = Command::new("/sbin/ifup")
        .args(["--no-act", "-a", "-i"])
        .arg(root.join("etc/network/interfaces"))
        .output()
        .expect("ifup");
    let plan = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{plan}");
    for expected in [
        "ip addr add 104.130.169.159/255.255.255.0",
        "ip route add default via 104.130.169.1",
        "ip -6 addr add 2001:4802:7803:104:be76:4eff:fe20:5eb2/64",
        "ip addr add 104.130.169.160/255.255.255.0 broadcast 104.130.169.255 \t  dev eth0:1 label eth0:1",
        "ip addr add 10.176.195.183/255.255.224.0",
    ] {
        assert!(plan.contains(expected), "{expected} not in {plan}");
    }

    // A second run changes nothing.
    let before = read(&root, "/etc/network/interfaces") + &read(&root, "/etc/hosts");
    assert_eq!(reset(&guest, "r2"), answer("", "0"));
    assert_eq!(
        read(&root, "/etc/network/interfaces") + &read(&root, "/etc/hosts"),
        before
    );
}

#[test]
fn the_administrators_lines_survive_and_the_file_still_parses() {
    let guest = guest_with_vector(AgentBuilder::new());
    let root = guest.agent.root();
    let old = "source /etc/network/interfaces.d/*\n\nauto lo eth0 eth5\niface lo inet loopback\niface eth0 inet dhcp\nallow-hotplug eth5\niface eth5 inet static\n    address 10.9.9.9/24\n    mtu 9000\n";
    write_files(
        &root,
        &[
            ("/etc/os-release", "ID=debian\n"),
            ("/etc/network/interfaces", old),
            ("/etc/network/interfaces.d/.keep", ""),
        ],
    );
    assert_eq!(reset(&guest, "r"), answer("", "0"));
    let text = read(&root, "/etc/network/interfaces");
    assert!(text.contains("\nsource /etc/network/interfaces.d/*\nauto eth5\nallow-hotplug eth5\niface eth5 inet static\n    address 10.9.9.9/24\n    mtu 9000\n"), "{text}");
    assert!(!text.contains("dhcp"), "{text}");
    assert!(actions(&root).contains(r#"["/sbin/ifdown","eth0"]"#));
    let output = Command::new("/sbin/ifquery")
        .arg("-i")
        .arg(root.join("etc/network/interfaces"))
        .arg("--list")
        .output()
        .unwrap();
    // (`source` lines resolve against the real /etc; the listing is what matters.)
    let listed = String::from_utf8_lossy(&output.stdout);
    for name in ["eth0", "eth0:1", "eth1", "eth5"] {
        assert!(listed.lines().any(|line| line == name), "{name} not in {listed}");
    }
}

#[test]
fn netplan_systems_get_a_file_netplan_generate_accepts() {
    let guest = guest_with_vector(AgentBuilder::new());
    let root = guest.agent.root();
    // An image built with a static cloud-init file for eth0 (and eth5).
    let cloud_init = "network:\n  version: 2\n  ethernets:\n    eth0:\n      match:\n        macaddress: 'bc:76:4e:20:5e:b2'\n      dhcp4: true\n      addresses: [10.9.0.5/24]\n      routes: [{to: default, via: 10.9.0.1}]\n    eth5:\n      dhcp4: true\n";
    write_files(
        &root,
        &[
            ("/etc/os-release", "ID=ubuntu\nID_LIKE=debian\n"),
            ("/usr/sbin/netplan", ""),
            ("/etc/netplan/50-cloud-init.yaml", cloud_init),
        ],
    );
    assert_eq!(reset(&guest, "n"), answer("", "0"));
    let path = root.join("etc/netplan/90-guestward.yaml");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let actions = actions(&root);
    assert!(
        actions.contains(r#"["/usr/sbin/netplan","generate","--root-dir","/etc/netplan/.guestward-check"]"#),
        "{actions}"
    );
    assert!(actions.contains(r#"["/usr/sbin/netplan","generate"]"#));
    assert!(!root.join("etc/network/interfaces").exists());
    assert!(
        !root.join("etc/netplan/.guestward-check").exists(),
        "the check's copy is removed"
    );
    assert_eq!(
        read(&root, "/etc/netplan/50-cloud-init.yaml.guestward-orig"),
        cloud_init
    );

    // netplan's own merged view: only our addresses and routes for eth0
    // (netplan appends lists from later files), eth5 as it was.
    let netplan = |args: &[&str]| {
        let output = Command::new("/usr/sbin/netplan")
            .args(args)
            .arg("--root-dir")
            .arg(&root)
            .output()
            .expect("netplan");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let merged = netplan(&["get"]);
    assert!(!merged.contains("10.9.0"), "{merged}");
    assert!(
        merged.contains("104.130.169.159/24") && merged.contains("eth5:"),
        "{merged}"
    );
    netplan(&["generate"]);
    let eth0 = read(&root, "/run/systemd/network/10-netplan-eth0.network");
    for expected in [
        "Address=104.130.169.159/24",
        "Address=2001:4802:7803:104:be76:4eff:fe20:5eb2/64",
        "Gateway=104.130.169.1",
        "DNS=69.20.0.164",
    ] {
        assert!(eth0.contains(expected), "{expected} not in {eth0}");
    }
    assert!(
        !eth0.contains("DHCP=ipv4") && !eth0.contains("DHCP=yes") && !eth0.contains("10.9.0"),
        "{eth0}"
    );
    assert!(read(&root, "/run/systemd/network/10-netplan-eth5.network").contains("DHCP=ipv4"));
    let eth1 = read(&root, "/run/systemd/network/10-netplan-eth1.network");
    assert!(
        eth1.contains("Destination=10.208.0.0/12") && eth1.contains("Gateway=10.176.192.1"),
        "{eth1}"
    );
}

/// The files each renderer writes for `entries` (and `nics`), rendered
/// by the agent with the setting `renderer`.
fn rendered(renderer: &str, nics: &str, entries: &[&str]) -> (Guest, std::path::PathBuf) {
    let policy = guestward::policy::DEFAULT_POLICY.replace(
        "settings = { renderer = \"\" }",
        &format!("settings = {{ renderer = \"{renderer}\" }}"),
    );
    let guest = Guest::start(AgentBuilder::new().policy(&policy).interfaces(nics));
    let root = guest.agent.root();
    write_files(&root, &[("/etc/os-release", "ID=debian\n")]);
    for dir in ["etc/NetworkManager/system-connections", "etc/netplan"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    for (index, entry) in entries.iter().enumerate() {
        guest.dom0.write(&format!("vm-data/networking/mac{index}"), entry);
    }
    assert_eq!(reset(&guest, renderer), answer("", "0"), "{}", guest.agent.log());
    (guest, root)
}

/// The keyfiles of the networks NetworkManager refused before (name
/// servers of a family the NIC has no address in; a gateway outside the
/// subnet) pass its own check, the one resetnetwork runs before anything
/// changes; and that check does refuse a bad keyfile.
#[test]
fn network_manager_accepts_every_keyfile_and_its_check_refuses_a_bad_one() {
    let entries = [
        r#"{"mac":"bc:76:4e:20:5e:b2","gateway":"198.51.100.1","ips":[{"ip":"203.0.113.7","netmask":"255.255.255.255"}],"dns":["192.0.2.53","2001:db8::53"],"routes":[{"route":"10.20.0.0","netmask":"255.255.0.0","gateway":"198.51.100.9"}]}"#,
        r#"{"mac":"bc:76:4e:20:5e:fb","ip6s":[{"ip":"2001:db8:6::6","netmask":64,"gateway":"2001:db8:6::1"}],"dns":["2001:db8:6::53","198.51.100.53"]}"#,
    ];
    let (_guest, root) = rendered("networkmanager", NICS, &entries);
    let actions = actions(&root);
    let nmcli = |keyfile: &str| {
        let mut child = Command::new("/usr/bin/nmcli")
            .args(["--offline", "connection", "modify", "connection.id", "guestward-eth0"])
            .env_clear()
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("nmcli");
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(keyfile.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    for name in ["eth0", "eth1"] {
        let keyfile = read(
            &root,
            &format!("/etc/NetworkManager/system-connections/guestward-{name}.nmconnection"),
        );
        assert!(
            actions.contains(&format!(
                r#"["/usr/bin/nmcli","--offline","connection","modify","connection.id","guestward-{name}"]"#
            )),
            "{actions}"
        );
        let output = nmcli(&keyfile);
        assert!(
            output.status.success(),
            "{keyfile}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let bad = read(
        &root,
        "/etc/NetworkManager/system-connections/guestward-eth0.nmconnection",
    )
    .replace(
        "[ipv6]\nmethod=link-local\n",
        "[ipv6]\nmethod=ignore\ndns=2001:db8::53;\n",
    );
    let output = nmcli(&bad);
    assert_eq!(output.status.code(), Some(1), "{bad}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("ipv6.dns"));
}

/// The netplan check (the real generator on a scratch copy of
/// /etc/netplan as it will be) refuses what `netplan generate` would
/// refuse after the change, here an administrator's file that no longer
/// parses, so the command stops before anything changes.
#[test]
fn the_netplan_check_refuses_what_netplan_generate_refuses() {
    let (_guest, root) = rendered("netplan", NICS, &[PUBLIC, PRIVATE]);
    let check_root = root.join("etc/netplan/.guestward-check");
    let scratch = check_root.join("etc/netplan");
    std::fs::create_dir_all(&scratch).unwrap();
    std::fs::copy(
        root.join("etc/netplan/90-guestward.yaml"),
        scratch.join("90-guestward.yaml"),
    )
    .unwrap();
    let generate = || {
        Command::new("/usr/sbin/netplan")
            .arg("generate")
            .arg("--root-dir")
            .arg(&check_root)
            .env_clear()
            .output()
            .expect("netplan")
    };
    assert!(generate().status.success());
    std::fs::write(
        scratch.join("95-other.yaml"),
        "network:\n  ethernets:\n    eth5:\n      addresses: [10.0.0.1]\n",
    )
    .unwrap();
    std::fs::set_permissions(scratch.join("95-other.yaml"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let refused = generate();
    assert!(
        !refused.status.success(),
        "netplan accepted an address without a prefix"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("prefix"));
}

#[test]
fn red_hat_gets_ifcfg_files_and_keeps_its_settings() {
    let guest = guest_with_vector(AgentBuilder::new());
    let root = guest.agent.root();
    write_files(
        &root,
        &[
            ("/etc/os-release", "ID=\"centos\"\nID_LIKE=\"rhel fedora\"\n"),
            ("/etc/sysconfig/network", "NETWORKING=yes\nNOZEROCONF=yes\n"),
            (
                "/etc/sysconfig/network-scripts/ifcfg-eth0",
                "DEVICE=eth0\nBOOTPROTO=dhcp\nMTU=9000\n",
            ),
            ("/etc/sysconfig/network-scripts/ifcfg-lo", "DEVICE=lo\n"),
        ],
    );
    assert_eq!(reset(&guest, "rh"), answer("", "0"));
    assert_eq!(
        read(&root, "/etc/sysconfig/network"),
        "NETWORKING=yes\nNOZEROCONF=yes\nNETWORKING_IPV6=yes\nHOSTNAME=test-server\n"
    );
    let eth0 = read(&root, "/etc/sysconfig/network-scripts/ifcfg-eth0");
    assert!(
        eth0.starts_with("# Automatically generated, do not edit\n\n# Label public\nDEVICE=eth0\n"),
        "{eth0}"
    );
    assert!(eth0.ends_with("NM_CONTROLLED=no\nMTU=9000\n"), "{eth0}");
    assert_eq!(
        read(&root, "/etc/sysconfig/network-scripts/route-eth1"),
        "ADDRESS0=10.208.0.0\nNETMASK0=255.240.0.0\nGATEWAY0=10.176.192.1\nADDRESS1=10.176.0.0\nNETMASK1=255.240.0.0\nGATEWAY1=10.176.192.1\n"
    );
    assert_eq!(read(&root, "/etc/sysconfig/network-scripts/ifcfg-lo"), "DEVICE=lo\n");
    assert!(actions(&root).contains(r#"["/usr/bin/systemctl","restart","network"]"#));
}

#[test]
fn bad_input_is_refused_before_anything_changes() {
    let guest = Guest::start(AgentBuilder::new().interfaces(NICS));
    let root = guest.agent.root();
    write_files(
        &root,
        &[
            ("/etc/os-release", "ID=debian\n"),
            ("/etc/hosts", "127.0.0.1\tlocalhost\n"),
        ],
    );
    let cases = [
        (r#"{"label":"x"}"#, "No MAC found in config"),
        (
            r#"{"mac":"00:16:3e:00:00:01","ips":[]}"#,
            "Unknown interface MAC 00:16:3e:00:00:01",
        ),
        (r#"{"mac":"bc:76:4e:20:5e:b2"}"#, "No IPs found for interface"),
        (
            r#"{"mac":"bc:76:4e:20:5e:b2","ips":[{"ip":"10.0.0.2","netmask":"255.0.255.0","enabled":"1"}]}"#,
            "Invalid netmask '255.0.255.0'",
        ),
        (
            "not json",
            "Invalid JSON in vm-data/networking/X: expected ident at line 1 column 2",
        ),
    ];
    for (index, (entry, expected)) in cases.iter().enumerate() {
        guest.dom0.write("vm-data/networking/X", entry);
        assert_eq!(
            reset(&guest, &format!("bad{index}")),
            answer(expected, "500"),
            "{entry}"
        );
    }
    assert!(!root.join("etc/network/interfaces").exists());
    assert_eq!(read(&root, "/etc/hosts"), "127.0.0.1\tlocalhost\n");
    assert_eq!(actions(&root), "", "nothing was run");

    guest.dom0.write(
        "vm-data/networking/X",
        r#"{"mac":"bc:76:4e:20:5e:b2","ips":[{"ip":"10.0.0.2","netmask":"255.0.0.0"}]}"#,
    );
    guest.dom0.write("vm-data/hostname", "bad host\nname");
    assert_eq!(
        reset(&guest, "host"),
        answer("Invalid hostname \\\"bad host\\\\nname\\\"", "500")
    );
}

/// A policy without one program grant: running it is refused, as a
/// failing program would fail.
fn policy_without(program_line: &str) -> String {
    let policy = guestward::policy::DEFAULT_POLICY.replace(program_line, "");
    assert_ne!(policy, guestward::policy::DEFAULT_POLICY, "{program_line}");
    policy
}

#[test]
fn a_file_the_check_refuses_changes_nothing() {
    let policy = policy_without(
        "    [\"/sbin/ifup\", \"--no-act\", \"-a\", \"-i\", \"/etc/network/interfaces.guestward-check\"],\n",
    );
    let guest = guest_with_vector(AgentBuilder::new().policy(&policy));
    let root = guest.agent.root();
    let (old_interfaces, old_hosts) = ("auto lo\niface lo inet loopback\n", "127.0.0.1\tlocalhost\n");
    write_files(
        &root,
        &[
            ("/etc/os-release", "ID=debian\n"),
            ("/etc/network/interfaces", old_interfaces),
            ("/etc/hosts", old_hosts),
        ],
    );
    let reply = reset(&guest, "c");
    assert_eq!(
        reply,
        answer(
            "Invalid /etc/network/interfaces: /sbin/ifup --no-act -a -i /etc/network/interfaces.guestward-check: component resetnetwork may not run /sbin/ifup with these arguments",
            "500"
        )
    );
    assert_eq!(read(&root, "/etc/network/interfaces"), old_interfaces);
    assert_eq!(read(&root, "/etc/hosts"), old_hosts);
    assert!(!root.join("etc/network/interfaces.guestward-check").exists());
    assert!(!actions(&root).contains("set-hostname"), "{}", actions(&root));
}

#[test]
fn a_failed_apply_puts_the_previous_files_back() {
    let guest = guest_with_vector(AgentBuilder::new().policy(&policy_without("    [\"/sbin/ifup\", \"*\"],\n")));
    let root = guest.agent.root();
    let (old_interfaces, old_hosts) = ("auto lo\niface lo inet loopback\n", "127.0.0.1\tlocalhost\n");
    write_files(
        &root,
        &[
            ("/etc/os-release", "ID=debian\n"),
            ("/etc/network/interfaces", old_interfaces),
            ("/etc/hosts", old_hosts),
            ("/proc/sys/kernel/hostname", "old-name\n"),
        ],
    );
    let reply = reset(&guest, "f");
    assert_eq!(
        reply,
        answer(
            "Couldn't restart network: /sbin/ifup eth0: component resetnetwork may not run /sbin/ifup with these arguments; the previous configuration was restored",
            "500"
        )
    );
    assert_eq!(read(&root, "/etc/network/interfaces"), old_interfaces);
    assert_eq!(read(&root, "/etc/hosts"), old_hosts);
    assert!(!root.join("etc/hostname").exists() && !root.join("etc/resolv.conf").exists());
    // The running hostname is set back too.
    let actions = actions(&root);
    let set = |name: &str| {
        actions
            .find(&format!(r#""action":"set-hostname","name":"{name}""#))
            .unwrap_or_else(|| panic!("{name} not set: {actions}"))
    };
    assert!(set("test-server") < set("old-name"), "{actions}");
}

#[test]
fn without_interfaces_under_a_root_the_answer_says_what_is_missing() {
    let guest = Guest::start(AgentBuilder::new());
    write_files(&guest.agent.root(), &[("/etc/os-release", "ID=debian\n")]);
    guest.dom0.write("vm-data/networking/BC764E205EB2", PUBLIC);
    let reply = reset(&guest, "m");
    assert!(
        reply.contains("under --root the network interfaces come from --interfaces FILE"),
        "{reply}"
    );
}

#[test]
fn systemd_resolved_gets_the_servers_and_its_link_stays() {
    let guest = guest_with_vector(AgentBuilder::new());
    let root = guest.agent.root();
    write_files(
        &root,
        &[
            ("/etc/os-release", "ID=debian\n"),
            ("/run/systemd/resolve/stub-resolv.conf", "nameserver 127.0.0.53\n"),
        ],
    );
    for dir in ["etc/network", "etc/systemd"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::os::unix::fs::symlink("../run/systemd/resolve/stub-resolv.conf", root.join("etc/resolv.conf")).unwrap();
    assert_eq!(reset(&guest, "d"), answer("", "0"));
    assert_eq!(
        std::fs::read_link(root.join("etc/resolv.conf")).unwrap().to_str(),
        Some("../run/systemd/resolve/stub-resolv.conf")
    );
    assert_eq!(
        read(&root, "/etc/systemd/resolved.conf.d/90-guestward.conf"),
        "# Automatically generated, do not edit\n[Resolve]\nDNS=69.20.0.164 69.20.0.196\n"
    );
    assert!(actions(&root).contains(r#"["/usr/bin/systemctl","try-restart","systemd-resolved"]"#));
}

#[test]
fn the_operator_can_choose_the_format() {
    let policy = guestward::policy::DEFAULT_POLICY.replace(
        "settings = { renderer = \"\" }",
        "settings = { renderer = \"networkd\" }",
    );
    let guest = guest_with_vector(AgentBuilder::new().policy(&policy));
    let root = guest.agent.root();
    write_files(&root, &[("/etc/os-release", "ID=debian\n")]);
    std::fs::create_dir_all(root.join("etc/systemd/network")).unwrap();
    assert_eq!(reset(&guest, "o"), answer("", "0"));
    let eth0 = read(&root, "/etc/systemd/network/10-guestward-eth0.network");
    assert!(eth0.contains("[Match]\nMACAddress=bc:76:4e:20:5e:b2\n"), "{eth0}");
    assert!(!root.join("etc/network/interfaces").exists());
    assert!(actions(&root).contains(r#"["/usr/bin/networkctl","reconfigure","eth1"]"#));
}

#[test]
fn every_family_gets_its_own_format_through_the_daemon() {
    struct Case {
        markers: &'static [(&'static str, &'static str)],
        file: &'static str,
        expected: &'static str,
        runs: &'static str,
    }
    let cases = [
        Case {
            markers: &[
                ("/bin/freebsd-version", ""),
                (
                    "/etc/rc.conf",
                    "hostname=\"old\"\nsshd_enable=\"YES\"\nifconfig_re0=\"DHCP\"\n",
                ),
            ],
            file: "/etc/rc.conf",
            expected: "sshd_enable=\"YES\"\ndhcpd_enable=\"NO\"\nhostname=test-server\n# Label public\nifconfig_eth0=\"104.130.169.159 netmask 255.255.255.0 up\"\nipv6_ifconfig_eth0=\"2001:4802:7803:104:be76:4eff:fe20:5eb2/64\"\nifconfig_eth0_alias0=\"104.130.169.160 netmask 255.255.255.0\"\n# Label private\nifconfig_eth1=\"10.176.195.183 netmask 255.255.224.0 up\"\nroute_lan0=\"-net 10.208.0.0 -netmask 255.240.0.0 10.176.192.1\"\nroute_lan1=\"-net 10.176.0.0 -netmask 255.240.0.0 10.176.192.1\"\nstatic_routes=\"lan0 lan1\"\nipv6_enable=\"YES\"\nipv6_network_interfaces=\"eth0\"\ndefaultrouter=\"104.130.169.1\"\nipv6_defaultrouter=\"fe80::def%eth0\"\n",
            runs: r#"["/bin/sh","/etc/rc.d/netif","restart"]"#,
        },
        Case {
            markers: &[
                ("/etc/os-release", "ID=\"sles\"\n"),
                ("/etc/sysconfig/network/config", "NETCONFIG_DNS_STATIC_SERVERS=\"\"\n"),
            ],
            file: "/etc/sysconfig/network/ifroute-eth1",
            expected: "10.208.0.0 10.176.192.1 255.240.0.0 eth1\n10.176.0.0 10.176.192.1 255.240.0.0 eth1\n",
            runs: r#"["/usr/bin/systemctl","restart","network"]"#,
        },
        Case {
            markers: &[
                ("/etc/gentoo-release", "Gentoo Base System release 2.14\n"),
                ("/sbin/rc", ""),
                ("/sbin/ip", ""),
                ("/etc/conf.d/.keep", ""),
            ],
            file: "/etc/conf.d/hostname",
            expected: "# Set to the hostname of this machine\n# Automatically generated by guestward, do not edit\n# This file is regenerated from the hypervisor's network data at\n# every resetnetwork.\nhostname=\"test-server\"\n",
            runs: r#"["/sbin/rc-service","net.eth1","restart"]"#,
        },
        Case {
            markers: &[
                ("/etc/arch-release", ""),
                ("/etc/rc.conf", "HOSTNAME=\"old\"\nDAEMONS=(syslog-ng network crond)\n"),
            ],
            file: "/etc/rc.conf",
            expected: "HOSTNAME=\"test-server\"\nDAEMONS=(syslog-ng network crond)\neth0=\"eth0 104.130.169.159 netmask 255.255.255.0 add 2001:4802:7803:104:be76:4eff:fe20:5eb2/64\"\neth0_1=\"eth0:1 104.130.169.160 netmask 255.255.255.0\"\neth1=\"eth1 10.176.195.183 netmask 255.255.224.0\"\nINTERFACES=(eth0 eth0_1 eth1)\neth1_route0=\"-net 10.208.0.0 netmask 255.240.0.0 gw 10.176.192.1\"\neth1_route1=\"-net 10.176.0.0 netmask 255.240.0.0 gw 10.176.192.1\"\ngateway=\"default gw 104.130.169.1\"\ngateway6=\"default gw fe80::def\"\nROUTES=(eth1_route0 eth1_route1 gateway gateway6)\n",
            runs: r#"["/etc/rc.d/network","start"]"#,
        },
    ];
    for (index, case) in cases.iter().enumerate() {
        let guest = guest_with_vector(AgentBuilder::new());
        let root = guest.agent.root();
        write_files(&root, case.markers);
        assert_eq!(
            reset(&guest, &format!("family{index}")),
            answer("", "0"),
            "{}",
            case.file
        );
        assert_eq!(read(&root, case.file), case.expected, "{}", case.file);
        assert!(
            actions(&root).contains(case.runs),
            "{} not in {}",
            case.runs,
            actions(&root)
        );
    }
}

/// `guestward run --xenstore-data`: the real component in the real sandbox
/// with the hypervisor's keys from a file, no xenstored and no daemon.
#[test]
fn run_with_xenstore_data_configures_a_root_without_a_xenstored() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    write_files(
        &root,
        &[
            ("/etc/os-release", "ID=debian\n"),
            ("/etc/hosts", "127.0.0.1\tlocalhost\n"),
        ],
    );
    std::fs::create_dir_all(root.join("etc/network")).unwrap();
    let data = serde_json::json!({
        "vm-data/hostname": "test-server",
        "vm-data/networking/BC764E205EB2": PUBLIC,
        "vm-data/networking/BC764E205EFB": PRIVATE,
    });
    let data_file = dir.path().join("xenstore.json");
    std::fs::write(&data_file, data.to_string()).unwrap();
    let nics = dir.path().join("nics.json");
    std::fs::write(&nics, NICS).unwrap();
    let output = std::process::Command::new(guestward_tests::artifacts::guestward_bin())
        .arg("run")
        .arg(guestward_tests::artifacts::component("resetnetwork"))
        .arg("resetnetwork")
        .arg("--root")
        .arg(&root)
        .arg("--interfaces")
        .arg(&nics)
        .arg("--xenstore-data")
        .arg(&data_file)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        answer("", "0"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(read(&root, "/etc/network/interfaces"), INTERFACES_86);
    assert_eq!(read(&root, "/etc/hostname"), "test-server\n");
}
