//! resetnetwork, applied for real: each network below is rendered by the
//! real agent under `--root` (through a real xenstored, as Nova writes
//! it), then brought up by the real consumer of that format in a network
//! namespace of its own, on veth pairs with the NICs' names and MACs, and
//! the kernel's addresses and routes are compared with what the network
//! says. See `guestward_tests::netns` for the namespace set-up.
//!
//! * networkd: systemd-networkd (on a private D-Bus) reads the `.network`
//!   files, then the agent's `networkctl reload` and `reconfigure` run
//!   against it.
//! * netplan: `netplan generate` turns the YAML into networkd files, which
//!   systemd-networkd brings up. (A veth has no permanent MAC, which
//!   netplan's `PermanentMACAddress=` match needs: the harness matches the
//!   current MAC instead, which is the same address here.)
//! * NetworkManager: the daemon, on a private D-Bus, loads the keyfiles
//!   and activates them, then the agent's `nmcli connection reload` and
//!   `up` run against it.
//! * ifupdown: `ifup` runs the stanzas the agent would have brought up,
//!   in its order, with an empty environment as the agent runs it.
//!
//! The tests need root and skip (saying so) without it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use guestward_tests::AgentBuilder;
use guestward_tests::netns::{NetNs, skip_unless_root};

use crate::{Guest, answer};

/// One NIC: its name, its MAC, and the hypervisor's entry for it.
struct Nic {
    name: &'static str,
    mac: &'static str,
    entry: &'static str,
}

/// A network and what the kernel must hold once it is up.
struct Network {
    name: &'static str,
    nics: &'static [Nic],
    /// `dev address/prefixlen`, every global address.
    addresses: &'static [&'static str],
    /// Routes that must be there (`dst [via gw] dev name`).
    routes: &'static [&'static str],
    /// Every default route, both families: `via gw dev name`.
    defaults: &'static [&'static str],
    /// The metrics of the default routes, when they must be set.
    metrics: &'static [u64],
    /// `dev server`: the name servers NetworkManager holds per device
    /// (a server of a family the device has no address in moves to the
    /// first device that has one).
    name_servers: &'static [&'static str],
}

const ETH0: &str = "bc:76:4e:20:5e:b2";
const ETH1: &str = "bc:76:4e:20:5e:fb";

const NETWORKS: &[Network] = &[
    Network {
        name: "single static IPv4",
        nics: &[Nic {
            name: "eth0",
            mac: ETH0,
            entry: r#"{"mac":"BC:76:4E:20:5E:B2","label":"public","gateway":"192.0.2.1","ips":[{"ip":"192.0.2.10","netmask":"255.255.255.0","enabled":"1"}],"dns":["192.0.2.53"]}"#,
        }],
        addresses: &["eth0 192.0.2.10/24"],
        routes: &["192.0.2.0/24 dev eth0"],
        defaults: &["via 192.0.2.1 dev eth0"],
        metrics: &[],
        name_servers: &["eth0 192.0.2.53"],
    },
    Network {
        name: "IPv4 and IPv6",
        nics: &[Nic {
            name: "eth0",
            mac: ETH0,
            entry: r#"{"mac":"bc:76:4e:20:5e:b2","gateway":"192.0.2.1","ips":[{"ip":"192.0.2.10","netmask":"255.255.255.0"}],"ip6s":[{"ip":"2001:db8:10::10","netmask":64,"gateway":"2001:db8:10::1"}],"dns":["192.0.2.53"]}"#,
        }],
        addresses: &["eth0 192.0.2.10/24", "eth0 2001:db8:10::10/64"],
        routes: &["192.0.2.0/24 dev eth0", "2001:db8:10::/64 dev eth0"],
        defaults: &["via 192.0.2.1 dev eth0", "via 2001:db8:10::1 dev eth0"],
        metrics: &[],
        name_servers: &["eth0 192.0.2.53"],
    },
    Network {
        name: "public and private NICs with static routes, several addresses (legacy §8.6)",
        nics: &[
            Nic {
                name: "eth0",
                mac: ETH0,
                entry: r#"{"label":"public","broadcast":"104.130.169.255","ips":[{"ip":"104.130.169.159","netmask":"255.255.255.0","enabled":"1","gateway":"104.130.169.1"},{"ip":"104.130.169.160","netmask":"255.255.255.0","enabled":"1","gateway":"104.130.169.1"}],"ip6s":[{"ip":"2001:4802:7803:104:be76:4eff:fe20:5eb2","netmask":64,"enabled":"1","gateway":"fe80::def"}],"mac":"BC:76:4E:20:5E:B2","gateway_v6":"fe80::def","dns":["69.20.0.164","69.20.0.196"],"gateway":"104.130.169.1"}"#,
            },
            Nic {
                name: "eth1",
                mac: ETH1,
                entry: r#"{"label":"private","broadcast":"10.176.223.255","ips":[{"ip":"10.176.195.183","netmask":"255.255.224.0","enabled":"1","gateway":null}],"mac":"BC:76:4E:20:5E:FB","routes":[{"route":"10.208.0.0","netmask":"255.240.0.0","gateway":"10.176.192.1"},{"route":"10.176.0.0","netmask":"255.240.0.0","gateway":"10.176.192.1"}],"gateway":null}"#,
            },
        ],
        addresses: &[
            "eth0 104.130.169.159/24",
            "eth0 104.130.169.160/24",
            "eth0 2001:4802:7803:104:be76:4eff:fe20:5eb2/64",
            "eth1 10.176.195.183/19",
        ],
        routes: &[
            "104.130.169.0/24 dev eth0",
            "10.176.192.0/19 dev eth1",
            "10.208.0.0/12 via 10.176.192.1 dev eth1",
            "10.176.0.0/12 via 10.176.192.1 dev eth1",
        ],
        defaults: &["via 104.130.169.1 dev eth0", "via fe80::def dev eth0"],
        metrics: &[],
        name_servers: &["eth0 69.20.0.164", "eth0 69.20.0.196"],
    },
    Network {
        name: "several addresses of both families on one NIC",
        nics: &[Nic {
            name: "eth0",
            mac: ETH0,
            entry: r#"{"mac":"bc:76:4e:20:5e:b2","gateway":"192.0.2.1","ips":[{"ip":"192.0.2.10","netmask":"255.255.255.0"},{"ip":"192.0.2.11","netmask":"255.255.255.0"},{"ip":"198.51.100.12","netmask":"255.255.255.128"}],"ip6s":[{"ip":"2001:db8:10::10","netmask":64},{"ip":"2001:db8:20::20","netmask":64}]}"#,
        }],
        addresses: &[
            "eth0 192.0.2.10/24",
            "eth0 192.0.2.11/24",
            "eth0 198.51.100.12/25",
            "eth0 2001:db8:10::10/64",
            "eth0 2001:db8:20::20/64",
        ],
        routes: &["192.0.2.0/24 dev eth0", "198.51.100.0/25 dev eth0"],
        defaults: &["via 192.0.2.1 dev eth0"],
        metrics: &[],
        name_servers: &[],
    },
    Network {
        name: "IPv6 only",
        nics: &[Nic {
            name: "eth0",
            mac: ETH0,
            entry: r#"{"mac":"bc:76:4e:20:5e:b2","ip6s":[{"ip":"2001:db8:6::6","netmask":64,"gateway":"2001:db8:6::1"}],"dns":["2001:db8:6::53"]}"#,
        }],
        addresses: &["eth0 2001:db8:6::6/64"],
        routes: &["2001:db8:6::/64 dev eth0"],
        defaults: &["via 2001:db8:6::1 dev eth0"],
        metrics: &[],
        name_servers: &["eth0 2001:db8:6::53"],
    },
    Network {
        name: "name servers of the other family",
        nics: &[
            Nic {
                name: "eth0",
                mac: ETH0,
                entry: r#"{"mac":"bc:76:4e:20:5e:b2","gateway":"192.0.2.1","ips":[{"ip":"192.0.2.10","netmask":"255.255.255.0"}],"dns":["192.0.2.53","2001:db8::53"]}"#,
            },
            Nic {
                name: "eth1",
                mac: ETH1,
                entry: r#"{"mac":"bc:76:4e:20:5e:fb","ip6s":[{"ip":"2001:db8:6::6","netmask":64}],"dns":["2001:db8:6::53","198.51.100.53"]}"#,
            },
        ],
        addresses: &["eth0 192.0.2.10/24", "eth1 2001:db8:6::6/64"],
        routes: &["192.0.2.0/24 dev eth0", "2001:db8:6::/64 dev eth1"],
        defaults: &["via 192.0.2.1 dev eth0"],
        metrics: &[],
        name_servers: &[
            "eth0 192.0.2.53",
            "eth0 198.51.100.53",
            "eth1 2001:db8:6::53",
            "eth1 2001:db8::53",
        ],
    },
    Network {
        name: "masks other than /24",
        nics: &[
            Nic {
                name: "eth0",
                mac: ETH0,
                entry: r#"{"mac":"bc:76:4e:20:5e:b2","gateway":"172.16.0.1","ips":[{"ip":"172.16.5.9","netmask":"255.255.240.0"}],"ip6s":[{"ip":"2001:db8:1:2::9","netmask":"56"}]}"#,
            },
            Nic {
                name: "eth1",
                mac: ETH1,
                entry: r#"{"mac":"bc:76:4e:20:5e:fb","ips":[{"ip":"10.1.2.2","netmask":"255.255.255.252"}],"routes":[{"route":"10.64.0.0","netmask":"255.192.0.0","gateway":"10.1.2.1"}]}"#,
            },
        ],
        addresses: &["eth0 172.16.5.9/20", "eth0 2001:db8:1:2::9/56", "eth1 10.1.2.2/30"],
        routes: &[
            "172.16.0.0/20 dev eth0",
            "10.1.2.0/30 dev eth1",
            "10.64.0.0/10 via 10.1.2.1 dev eth1",
        ],
        defaults: &["via 172.16.0.1 dev eth0"],
        metrics: &[],
        name_servers: &[],
    },
    Network {
        name: "gateways outside the subnet",
        nics: &[Nic {
            name: "eth0",
            mac: ETH0,
            entry: r#"{"mac":"bc:76:4e:20:5e:b2","gateway":"198.51.100.1","ips":[{"ip":"203.0.113.7","netmask":"255.255.255.255"}],"ip6s":[{"ip":"2001:db8:7::7","netmask":128,"gateway":"2001:db8:1::1"}],"routes":[{"route":"10.20.0.0","netmask":"255.255.0.0","gateway":"198.51.100.9"}]}"#,
        }],
        addresses: &["eth0 203.0.113.7/32", "eth0 2001:db8:7::7/128"],
        routes: &["10.20.0.0/16 via 198.51.100.9 dev eth0"],
        defaults: &["via 198.51.100.1 dev eth0", "via 2001:db8:1::1 dev eth0"],
        metrics: &[],
        name_servers: &[],
    },
    Network {
        name: "two NICs with a gateway each",
        nics: &[
            Nic {
                name: "eth0",
                mac: ETH0,
                entry: r#"{"mac":"bc:76:4e:20:5e:b2","gateway":"192.0.2.1","ips":[{"ip":"192.0.2.10","netmask":"255.255.255.0"}]}"#,
            },
            Nic {
                name: "eth1",
                mac: ETH1,
                entry: r#"{"mac":"bc:76:4e:20:5e:fb","gateway":"198.51.100.1","ips":[{"ip":"198.51.100.10","netmask":"255.255.255.0"}]}"#,
            },
        ],
        addresses: &["eth0 192.0.2.10/24", "eth1 198.51.100.10/24"],
        routes: &["192.0.2.0/24 dev eth0", "198.51.100.0/24 dev eth1"],
        defaults: &["via 192.0.2.1 dev eth0", "via 198.51.100.1 dev eth1"],
        metrics: &[100, 200],
        name_servers: &[],
    },
    Network {
        name: "an interface named ens3",
        nics: &[Nic {
            name: "ens3",
            mac: "52:54:00:12:34:56",
            entry: r#"{"mac":"52:54:00:12:34:56","gateway":"192.0.2.1","ips":[{"ip":"192.0.2.10","netmask":"255.255.255.0"}],"ip6s":[{"ip":"2001:db8:10::10","netmask":64,"gateway":"2001:db8:10::1"}]}"#,
        }],
        addresses: &["ens3 192.0.2.10/24", "ens3 2001:db8:10::10/64"],
        routes: &["192.0.2.0/24 dev ens3"],
        defaults: &["via 192.0.2.1 dev ens3", "via 2001:db8:10::1 dev ens3"],
        metrics: &[],
        name_servers: &[],
    },
];

/// How long a daemon may take to bring a network up.
const BRING_UP: Duration = Duration::from_secs(10);

/// Render `network` with `renderer` through the agent; returns the guest
/// (whose root holds the files) after checking the answer.
fn render(network: &Network, renderer: &str, prepare: impl FnOnce(&Path)) -> Guest {
    let nics: Vec<String> = network
        .nics
        .iter()
        .map(|nic| format!(r#"{{"name":"{}","mac":"{}","up":true}}"#, nic.name, nic.mac))
        .collect();
    let policy = guestward::policy::DEFAULT_POLICY.replace(
        "settings = { renderer = \"\" }",
        &format!("settings = {{ renderer = \"{renderer}\" }}"),
    );
    let guest = Guest::start(
        AgentBuilder::new()
            .policy(&policy)
            .interfaces(&format!("[{}]", nics.join(","))),
    );
    let root = guest.agent.root();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/os-release"), "ID=debian\n").unwrap();
    prepare(&root);
    guest.dom0.write("vm-data/hostname", "live-test");
    for nic in network.nics {
        guest
            .dom0
            .write(&format!("vm-data/networking/{}", nic.mac.replace(':', "")), nic.entry);
    }
    let reply = guest.dom0.call("live", r#"{"name":"resetnetwork","value":""}"#);
    assert_eq!(
        reply,
        answer("", "0"),
        "{renderer}, {}:\n{}",
        network.name,
        guest.agent.log()
    );
    guest
}

/// A namespace with the network's NICs.
fn namespace(network: &Network) -> NetNs {
    let netns = NetNs::create();
    for (index, nic) in network.nics.iter().enumerate() {
        netns.add_nic(nic.name, nic.mac, index);
    }
    netns
}

/// What differs between the kernel's state and `network`'s, if anything.
fn mismatch(netns: &NetNs, network: &Network) -> Option<String> {
    let devices: Vec<&str> = network.nics.iter().map(|nic| nic.name).collect();
    let addresses = netns.addresses(&devices);
    let mut expected: Vec<String> = network.addresses.iter().map(|text| (*text).to_owned()).collect();
    expected.sort();
    if addresses != expected {
        return Some(format!("addresses {addresses:?}, expected {expected:?}"));
    }
    let routes: Vec<String> = [false, true]
        .into_iter()
        .flat_map(|ipv6| netns.routes(ipv6, &devices))
        .collect();
    if let Some(missing) = network
        .routes
        .iter()
        .find(|route| !routes.iter().any(|found| found == *route))
    {
        return Some(format!("route {missing} missing from {routes:?}"));
    }
    let defaults: Vec<(String, u64)> = [false, true]
        .into_iter()
        .flat_map(|ipv6| netns.default_routes(ipv6))
        .collect();
    let mut found: Vec<&str> = defaults.iter().map(|(route, _)| route.as_str()).collect();
    let mut wanted = network.defaults.to_vec();
    found.sort();
    wanted.sort();
    if found != wanted {
        return Some(format!("default routes {defaults:?}, expected {wanted:?}"));
    }
    if !network.metrics.is_empty() {
        let mut metrics: Vec<u64> = defaults.iter().map(|(_, metric)| *metric).collect();
        metrics.sort();
        if metrics != network.metrics {
            return Some(format!(
                "default routes {defaults:?}, expected metrics {:?}",
                network.metrics
            ));
        }
    }
    None
}

/// Wait until the kernel holds `network`, or fail with the daemon's log.
fn assert_up(netns: &NetNs, network: &Network, renderer: &str, log: &Path, root: &Path) {
    let mut last = None;
    let up = netns.wait_until(BRING_UP, |netns| {
        last = mismatch(netns, network);
        last.is_none()
    });
    assert!(
        up,
        "{renderer}, {}: {}\n--- log:\n{}\n--- files:\n{}",
        network.name,
        last.unwrap_or_default(),
        std::fs::read_to_string(log).unwrap_or_default(),
        rendered_files(root)
    );
}

/// Run the agent's `steps` against the daemon (`daemon`, its command
/// name), inside its namespaces, with an empty environment as the agent
/// runs them; each must succeed. There is one per NIC and a reload.
fn replay(netns: &NetNs, daemon: &str, steps: &[Vec<String>], network: &Network, log: &Path) {
    assert_eq!(steps.len(), network.nics.len() + 1, "reload, then each NIC: {steps:?}");
    for argv in steps {
        let output = netns.in_daemon(daemon, argv);
        assert!(
            output.status.success(),
            "{}: {argv:?}: {}\n{}",
            network.name,
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
}

/// The runs of `program` the agent recorded under `--root`, in order.
fn recorded_runs(root: &Path, program: &str) -> Vec<Vec<String>> {
    let actions = std::fs::read_to_string(root.join(".guestward/actions.log")).unwrap_or_default();
    actions
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|action| {
            let argv = action["argv"].as_array()?;
            Some(
                argv.iter()
                    .filter_map(|arg| arg.as_str().map(str::to_owned))
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|argv| argv.first().is_some_and(|first| first == program))
        .collect()
}

/// Every file the agent wrote under `root`, for failure messages.
fn rendered_files(root: &Path) -> String {
    let output = Command::new("sh")
        .arg("-c")
        .arg("find etc run -type f 2>/dev/null | sort | while read f; do echo \"== $f\"; cat \"$f\"; done")
        .current_dir(root)
        .output()
        .expect("find");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Start systemd-networkd in `netns` with `etc` as /etc/systemd/network
/// and `run` as /run/systemd/network, on a private D-Bus (for networkctl).
fn start_networkd(netns: &mut NetNs, root: &Path, etc: &Path, run: &Path, log: &Path) {
    let script = format!(
        "mount -o remount,bind,ro /sys
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/netif /run/systemd/network /run/dbus
chown systemd-network:systemd-network /run/systemd/netif
mount --bind '{}' /etc/systemd/network
mount --bind '{}' /run/systemd/network
dbus-daemon --config-file='{}' --fork --nopidfile
exec /lib/systemd/systemd-networkd",
        etc.display(),
        run.display(),
        bus_config(root).display()
    );
    netns.spawn(&script, log);
}

/// A system bus configuration under `root` that lets everything through,
/// for the daemons in the namespace only.
fn bus_config(root: &Path) -> std::path::PathBuf {
    let path = root.join("bus.conf");
    std::fs::write(&path, BUS_CONF).unwrap();
    path
}

fn empty_dir(root: &Path, name: &str) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Run `each` for every network, two at a time (each in its own
/// namespace and agent).
fn for_every_network(each: impl Fn(&Network) + Sync) {
    std::thread::scope(|scope| {
        for pair in NETWORKS.chunks(2) {
            let handles: Vec<_> = pair.iter().map(|network| scope.spawn(|| each(network))).collect();
            for handle in handles {
                if let Err(panic) = handle.join() {
                    std::panic::resume_unwind(panic);
                }
            }
        }
    });
}

/// The live test `test` of `renderer`: every network rendered into a root
/// holding `files` (a path ending in `/` is a directory), then
/// `bring_up(network, root)`.
fn live_test(test: &str, renderer: &str, files: &[(&str, &str)], bring_up: impl Fn(&Network, &Path) + Sync) {
    if skip_unless_root(test) {
        return;
    }
    for_every_network(|network| {
        let guest = render(network, renderer, |root| {
            for (path, contents) in files {
                let path = root.join(path);
                if contents.is_empty() && path.to_string_lossy().ends_with('/') {
                    std::fs::create_dir_all(&path).unwrap();
                } else {
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    std::fs::write(&path, contents).unwrap();
                }
            }
        });
        bring_up(network, &guest.agent.root());
    });
}

#[test]
fn networkd_brings_every_network_up() {
    live_test(
        "networkd_brings_every_network_up",
        "networkd",
        &[("etc/systemd/network/", "")],
        |network, root| {
            let mut netns = namespace(network);
            let log = root.join("networkd.log");
            let run = empty_dir(root, "scratch-run");
            start_networkd(&mut netns, root, &root.join("etc/systemd/network"), &run, &log);
            assert_up(&netns, network, "networkd", &log, root);
            // What the agent runs on a real machine: reload, reconfigure.
            replay(
                &netns,
                "systemd-network",
                &recorded_runs(root, "/usr/bin/networkctl"),
                network,
                &log,
            );
            assert_up(&netns, network, "networkd", &log, root);
        },
    );
}

/// A bridge (or bond, or VLAN) carries its NIC's MAC: networkd matched by
/// MAC alone configured the bridge as well as the NIC.
#[test]
fn networkd_leaves_a_bridge_with_the_nics_mac_alone() {
    if skip_unless_root("networkd_leaves_a_bridge_with_the_nics_mac_alone") {
        return;
    }
    let network = &NETWORKS[0];
    let guest = render(network, "networkd", |root| {
        std::fs::create_dir_all(root.join("etc/systemd/network")).unwrap();
    });
    let root = guest.agent.root();
    let mut netns = namespace(network);
    // The bridge has a port, so it has a carrier and would be configured.
    netns.exec(&[
        "ip",
        "link",
        "add",
        "br0",
        "address",
        ETH0,
        "type",
        "bridge",
        "forward_delay",
        "0",
    ]);
    netns.exec(&["ip", "link", "add", "gwb0", "type", "veth", "peer", "name", "gwb1"]);
    netns.exec(&["ip", "link", "set", "gwb0", "master", "br0"]);
    for link in ["gwb0", "gwb1", "br0"] {
        netns.exec(&["ip", "link", "set", link, "up"]);
    }
    let log = root.join("networkd.log");
    let run = empty_dir(&root, "scratch-run");
    start_networkd(&mut netns, &root, &root.join("etc/systemd/network"), &run, &log);
    assert_up(&netns, network, "networkd", &log, &root);
    // networkd matches every link when it enumerates them, and says so.
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!log.contains("br0: Configuring"), "{log}");
    let bridge = netns.addresses(&["br0"]);
    assert!(bridge.is_empty(), "br0 was configured too: {bridge:?}");
}

/// An image whose cloud-init file already gave eth0 other static
/// addresses and a default route.
const CLOUD_INIT: &str = "network:\n  version: 2\n  ethernets:\n    eth0:\n      match:\n        macaddress: 'bc:76:4e:20:5e:b2'\n      addresses: [10.9.0.5/24]\n      routes: [{to: default, via: 10.9.0.1}]\n      nameservers: {addresses: [10.9.0.53]}\n";

#[test]
fn netplan_brings_every_network_up_through_networkd() {
    live_test(
        "netplan_brings_every_network_up_through_networkd",
        "netplan",
        &[("etc/netplan/50-cloud-init.yaml", CLOUD_INIT)],
        |network, root| {
            let generate = Command::new("/usr/sbin/netplan")
                .arg("generate")
                .arg("--root-dir")
                .arg(root)
                .env_clear()
                .output()
                .expect("netplan");
            assert!(
                generate.status.success(),
                "{}: {}\n{}",
                network.name,
                String::from_utf8_lossy(&generate.stderr),
                rendered_files(root)
            );
            let generated = root.join("run/systemd/network");
            for entry in std::fs::read_dir(&generated).unwrap() {
                let path = entry.unwrap().path();
                let text = std::fs::read_to_string(&path).unwrap();
                // A veth has no permanent MAC (see the module's comment).
                std::fs::write(&path, text.replace("PermanentMACAddress=", "MACAddress=")).unwrap();
            }
            let mut netns = namespace(network);
            let log = root.join("networkd.log");
            let etc = empty_dir(root, "scratch-etc");
            start_networkd(&mut netns, root, &etc, &generated, &log);
            assert_up(&netns, network, "netplan", &log, root);
        },
    );
}

#[test]
fn ifupdown_brings_every_network_up() {
    live_test(
        "ifupdown_brings_every_network_up",
        "ifupdown",
        &[("etc/network/", "")],
        |network, root| {
            let etc_network = root.join("etc/network");
            for hooks in ["if-pre-up.d", "if-up.d", "if-down.d", "if-post-down.d"] {
                std::fs::create_dir_all(etc_network.join(hooks)).unwrap();
            }
            // The stanzas the agent brought up, in its order.
            let ifups: Vec<String> = recorded_runs(root, "/sbin/ifup")
                .into_iter()
                .filter(|argv| argv.len() == 2)
                .map(|argv| format!("env -i /sbin/ifup '{}'", argv[1]))
                .collect();
            assert!(!ifups.is_empty(), "{}", rendered_files(root));
            let netns = namespace(network);
            let log = root.join("ifup.log");
            let script = format!(
                "mount -t tmpfs tmpfs /run\nmkdir -p /run/network\nmount --bind '{}' /etc/network\n{}",
                etc_network.display(),
                ifups.join("\n")
            );
            let status = netns.script(&script, &log);
            assert!(
                status.success(),
                "{}: ifup failed:\n{}\n{}",
                network.name,
                std::fs::read_to_string(&log).unwrap_or_default(),
                rendered_files(root)
            );
            assert_up(&netns, network, "ifupdown", &log, root);
        },
    );
}

/// NetworkManager's configuration for the test: keyfiles only, every
/// device but the veth peers managed, and nothing outside the namespace
/// touched (no resolv.conf, no hostname).
const NM_CONF: &str = "[main]
plugins=keyfile
dns=none
rc-manager=unmanaged
hostname-mode=none
no-auto-default=*

[keyfile]
unmanaged-devices=interface-name:gwp*

[device]
managed=1
";

/// A system bus that lets everything through (networkd runs as
/// systemd-network), for the daemons in a test's namespace only.
const BUS_CONF: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"#;

/// The name servers NetworkManager holds for each NIC, as `dev server`,
/// asked with nmcli inside the daemon's namespaces.
fn network_manager_servers(netns: &NetNs, network: &Network) -> Vec<String> {
    let mut servers = Vec::new();
    for nic in network.nics {
        let output = netns.in_daemon(
            "NetworkManager",
            &["/usr/bin/nmcli", "-g", "IP4.DNS,IP6.DNS", "device", "show", nic.name],
        );
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        // `-g` escapes the colons of IPv6 addresses.
        let text = String::from_utf8_lossy(&output.stdout).replace("\\:", ":");
        servers.extend(
            text.split(|c: char| c.is_whitespace() || c == '|')
                .filter(|server| !server.is_empty())
                .map(|server| format!("{} {server}", nic.name)),
        );
    }
    servers
}

#[test]
fn network_manager_brings_every_network_up() {
    live_test(
        "network_manager_brings_every_network_up",
        "networkmanager",
        &[
            ("etc/NetworkManager/system-connections/", ""),
            ("etc/NetworkManager/NetworkManager.conf", NM_CONF),
        ],
        |network, root| {
            let etc = root.join("etc/NetworkManager");
            std::fs::create_dir_all(etc.join("conf.d")).unwrap();
            let var = empty_dir(root, "scratch-var");
            let bus = bus_config(root);
            let mut netns = namespace(network);
            let log = root.join("NetworkManager.log");
            let script = format!(
                "mount -o remount,bind,ro /sys
mount -t tmpfs tmpfs /run
mkdir -p /run/dbus
mount --bind '{}' /etc/NetworkManager
mount --bind '{}' /var/lib/NetworkManager
dbus-daemon --config-file='{}' --fork --nopidfile
exec /usr/sbin/NetworkManager --debug",
                etc.display(),
                var.display(),
                bus.display()
            );
            netns.spawn(&script, &log);
            assert_up(&netns, network, "NetworkManager", &log, root);
            // What the agent runs on a real machine, against the daemon:
            // reload, then bring each connection up again.
            let steps = recorded_runs(root, "/usr/bin/nmcli");
            let steps: Vec<Vec<String>> = steps.into_iter().filter(|argv| argv[1] != "--offline").collect();
            replay(&netns, "NetworkManager", &steps, network, &log);
            assert_up(&netns, network, "NetworkManager", &log, root);
            let mut servers = network_manager_servers(&netns, network);
            let mut expected = network.name_servers.to_vec();
            servers.sort();
            expected.sort();
            assert_eq!(servers, expected, "{}", network.name);
        },
    );
}
