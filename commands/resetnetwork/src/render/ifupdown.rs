//! Debian and Ubuntu without netplan: `/etc/network/interfaces` for
//! ifupdown, byte for byte as the legacy agent wrote it (§8.3, §8.6), plus
//! what the administrator kept there: `source` lines and the stanzas of
//! interfaces this agent does not configure.
//!
//! Deliberate differences from the legacy file:
//! * static routes are added with `ip route` (iproute2, which ifupdown
//!   itself uses) instead of net-tools' `route`, which ifupdown does not
//!   depend on, and their failure is no longer hidden by `|| true`: a route
//!   that cannot be added fails `ifup`, and the change is rolled back;
//! * a next hop outside the interface's subnets gets `onlink` (ifupdown
//!   adds it to the default route itself);
//! * when several interfaces have a default gateway, each gets a `metric`
//!   (100, 200, …): the legacy file made the second `ifup` fail with
//!   "File exists" and the whole change was rolled back.

use crate::config::{Interface, Interfaces, default_route_metric};
use crate::current;
use crate::plan::{Check, Plan, Step};
use crate::render::routes;

pub const PATH: &str = "/etc/network/interfaces";
/// Where the new file is checked by ifupdown's parser before it replaces
/// the old one.
pub const SCRATCH: &str = "/etc/network/interfaces.guestward-check";

const HEADER: &str = "\
# Used by ifup(8) and ifdown(8). See the interfaces(5) manpage or
# /usr/share/doc/ifupdown/examples for more information.
# The loopback network interface
auto lo
iface lo inet loopback
";

const FAILURE: &str = "Couldn't restart network";

pub fn render(interfaces: &Interfaces) -> Result<Plan, String> {
    let old = current::read(PATH)?.unwrap_or_default();
    let configured = |name: &str| {
        let base = name.split(':').next().unwrap_or(name);
        interfaces.contains_key(base)
    };
    let mut text = HEADER.to_owned();
    let kept = kept_lines(&old, &configured);
    if !kept.is_empty() {
        text.push('\n');
        text.push_str(&kept.join("\n"));
        text.push('\n');
    }
    let mut stanzas = Vec::new();
    for interface in interfaces.values() {
        text.push_str(&stanza(interfaces, interface, &mut stanzas));
    }
    let mut plan = Plan::default();
    plan.checks.push(Check::file(
        SCRATCH,
        &text,
        Step::required(
            "Invalid /etc/network/interfaces",
            &["/sbin/ifup", "--no-act", "-a", "-i", SCRATCH],
        ),
    ));
    plan.write(PATH, text);
    // Take down what the old file configured for these interfaces (before
    // the file changes: ifdown reads it), then bring each stanza up.
    for name in declared(&old).into_iter().filter(|name| configured(name)) {
        plan.before.push(Step::optional(&["/sbin/ifdown", &name]));
    }
    for name in &stanzas {
        plan.apply.push(Step::required(FAILURE, &["/sbin/ifup", name]));
    }
    Ok(plan)
}

/// The stanzas of one interface: one per (IPv4, IPv6) pair, `eth0`, then
/// `eth0:1`, …; routes after the last.
fn stanza(interfaces: &Interfaces, interface: &Interface, names: &mut Vec<String>) -> String {
    let mut text = String::new();
    for (index, (ip4, ip6)) in interface.pairs().into_iter().enumerate() {
        let name = if index == 0 {
            interface.name.clone()
        } else {
            format!("{}:{index}", interface.name)
        };
        text.push('\n');
        if let Some(label) = &interface.label {
            text.push_str(&format!("# Label {label}\n"));
        }
        text.push_str(&format!("auto {name}\n"));
        if let Some(ip) = ip4 {
            text.push_str(&format!(
                "iface {name} inet static\n    address {}\n    netmask {}\n",
                ip.address, ip.netmask
            ));
            if let (0, Some(gateway)) = (index, interface.gateway4) {
                text.push_str(&format!("    gateway {gateway}\n"));
                if let Some(metric) = default_route_metric(interfaces, &interface.name, false) {
                    text.push_str(&format!("    metric {metric}\n"));
                }
            }
        }
        if let Some(ip) = ip6 {
            text.push_str(&format!(
                "iface {name} inet6 static\n    address {}\n    netmask {}\n",
                ip.address, ip.prefixlen
            ));
            if let (0, Some(gateway)) = (index, interface.gateway6) {
                text.push_str(&format!("    gateway {gateway}\n"));
                if let Some(metric) = default_route_metric(interfaces, &interface.name, true) {
                    text.push_str(&format!("    metric {metric}\n"));
                }
            }
        }
        if index == 0 && !interface.dns.is_empty() {
            let servers: Vec<String> = interface.dns.iter().map(ToString::to_string).collect();
            text.push_str(&format!("    dns-nameservers {}\n", servers.join(" ")));
        }
        names.push(name);
    }
    for route in routes(interfaces, interface).iter().filter(|route| !route.default) {
        let onlink = if route.on_link { " onlink" } else { "" };
        let spec = format!("{} via {} dev {}{onlink}", route.to, route.via, interface.name);
        text.push_str(&format!(
            "    post-up ip route add {spec}\n    pre-down ip route del {spec} || true\n"
        ));
    }
    text
}

/// The interface names an interfaces file declares (`iface`, `auto`,
/// `allow-*`), loopback excluded.
fn declared(text: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(keyword) = words.next() else { continue };
        let found: Vec<&str> = match keyword {
            "iface" => words.next().into_iter().collect(),
            "auto" => words.collect(),
            keyword if keyword.starts_with("allow-") => words.collect(),
            _ => Vec::new(),
        };
        for name in found {
            if !name.starts_with("lo") && !names.iter().any(|seen| seen == name) {
                names.push(name.to_owned());
            }
        }
    }
    names
}

/// What the administrator wrote that stays: `source` and
/// `source-directory` lines, and the stanzas (with their options) and
/// `auto`/`allow-*` names of interfaces this agent does not configure.
/// Comments and the loopback stanza are regenerated.
fn kept_lines(old: &str, configured: &dyn Fn(&str) -> bool) -> Vec<String> {
    let mut kept = Vec::new();
    let mut keeping_stanza = false;
    for line in old.lines() {
        let trimmed = line.trim();
        let indented = line.starts_with(char::is_whitespace) && !trimmed.is_empty();
        if indented {
            if keeping_stanza {
                kept.push(line.to_owned());
            }
            continue;
        }
        keeping_stanza = false;
        let mut words = trimmed.split_whitespace();
        match words.next() {
            Some("source" | "source-directory") => kept.push(trimmed.to_owned()),
            Some(keyword @ ("iface" | "mapping")) => {
                let name = words.next().unwrap_or_default();
                if !name.starts_with("lo") && !configured(name) {
                    keeping_stanza = true;
                    kept.push(trimmed.to_owned());
                }
                let _ = keyword;
            }
            Some(keyword) if keyword == "auto" || keyword.starts_with("allow-") => {
                let names: Vec<&str> = words
                    .filter(|name| !name.starts_with("lo") && !configured(name))
                    .collect();
                if !names.is_empty() {
                    kept.push(format!("{keyword} {}", names.join(" ")));
                }
            }
            _ => {}
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::vector;
    use crate::render::tests::{edge, machine, outside_gateway, single, two_gateways};

    const VECTOR_86: &str = "\
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

    #[test]
    fn the_end_to_end_vector_is_exact() {
        machine(&[]);
        let plan = render(&vector()).unwrap();
        assert_eq!(plan.contents(PATH).unwrap(), VECTOR_86);
        let ups: Vec<String> = plan.apply.iter().map(|step| step.argv.join(" ")).collect();
        assert_eq!(ups, ["/sbin/ifup eth0", "/sbin/ifup eth0:1", "/sbin/ifup eth1"]);
        assert_eq!(
            plan.checks[0].step.argv.join(" "),
            format!("/sbin/ifup --no-act -a -i {SCRATCH}")
        );
        assert_eq!(plan.checks[0].scratch[0].contents, VECTOR_86);
    }

    #[test]
    fn the_single_interface_vectors_are_exact() {
        machine(&[]);
        let ipv4 = format!(
            "{HEADER}\n# Label public\nauto eth0\niface eth0 inet static\n    address 192.0.2.42\n    netmask 255.255.255.0\n    gateway 192.0.2.1\n    dns-nameservers 192.0.2.2\n"
        );
        assert_eq!(render(&single(false)).unwrap().contents(PATH).unwrap(), ipv4);
        let ipv6 = format!(
            "{HEADER}\n# Label public\nauto eth0\niface eth0 inet6 static\n    address 2001:db8::42\n    netmask 96\n    gateway 2001:db8::1\n    dns-nameservers 2001:db8::2\n"
        );
        assert_eq!(render(&single(true)).unwrap().contents(PATH).unwrap(), ipv6);
    }

    #[test]
    fn routes_follow_the_last_alias_and_the_default_route_is_skipped() {
        machine(&[]);
        let text = render(&edge()).unwrap().contents(PATH).unwrap().to_owned();
        let expected_tail = "\
auto eth0:1
iface eth0:1 inet static
    address 203.0.113.11
    netmask 255.255.255.0
    post-up ip route add 198.51.100.0/24 via 203.0.113.254 dev eth0
    pre-down ip route del 198.51.100.0/24 via 203.0.113.254 dev eth0 || true
";
        assert!(text.ends_with(expected_tail), "{text}");
        assert!(!text.contains("0.0.0.0"), "{text}");
    }

    #[test]
    fn what_the_administrator_wrote_for_other_interfaces_stays() {
        let old = "\
# my notes
source /etc/network/interfaces.d/*
auto lo eth0 eth5
iface lo inet loopback
iface eth0 inet dhcp
    hostname old
allow-hotplug eth5
iface eth5 inet static
    address 10.9.9.9/24
    mtu 9000
";
        machine(&[(PATH, old)]);
        let plan = render(&single(false)).unwrap();
        let text = plan.contents(PATH).unwrap();
        let kept = "\nsource /etc/network/interfaces.d/*\nauto eth5\nallow-hotplug eth5\niface eth5 inet static\n    address 10.9.9.9/24\n    mtu 9000\n";
        assert!(
            text.starts_with(&format!("{HEADER}{kept}\n# Label public\nauto eth0\n")),
            "{text}"
        );
        assert!(!text.contains("dhcp") && !text.contains("hostname old"), "{text}");
        let downs: Vec<String> = plan.before.iter().map(|step| step.argv.join(" ")).collect();
        assert_eq!(downs, ["/sbin/ifdown eth0"]);
    }

    #[test]
    fn static_routes_use_ip_and_their_failure_is_not_hidden() {
        machine(&[]);
        let text = render(&vector()).unwrap().contents(PATH).unwrap().to_owned();
        assert!(
            !text.contains("route add -net") && !text.contains("|| true\n    pre-down"),
            "{text}"
        );
        assert!(
            text.contains("    post-up ip route add 10.208.0.0/12 via 10.176.192.1 dev eth1\n"),
            "{text}"
        );
    }

    #[test]
    fn a_next_hop_outside_the_subnet_is_onlink() {
        machine(&[]);
        let text = render(&outside_gateway()).unwrap().contents(PATH).unwrap().to_owned();
        assert!(
            text.contains("    post-up ip route add 10.20.0.0/16 via 198.51.100.9 dev eth0 onlink\n"),
            "{text}"
        );
    }

    #[test]
    fn two_interfaces_with_a_gateway_each_get_distinct_metrics() {
        machine(&[]);
        let text = render(&two_gateways()).unwrap().contents(PATH).unwrap().to_owned();
        assert!(text.contains("    gateway 192.0.2.1\n    metric 100\n"), "{text}");
        assert!(text.contains("    gateway 198.51.100.1\n    metric 200\n"), "{text}");
        // One gateway: the legacy file, no metric.
        assert!(!render(&vector()).unwrap().contents(PATH).unwrap().contains("metric"));
    }
}
