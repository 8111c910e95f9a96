//! Arch Linux before systemd (initscripts), byte for byte as the legacy
//! agent wrote it (§8.3, §8.6): netcfg profiles in `/etc/network.d/<if>`
//! with `rc.conf` pointing at them, or, without netcfg, the interfaces and
//! routes as `rc.conf` variables. `HOSTNAME` is set in `rc.conf` either
//! way; every other line of it stays.

use crate::config::{Interface, Interfaces};
use crate::current;
use crate::plan::{Plan, Step};

pub const RC_CONF: &str = "/etc/rc.conf";
pub const NETCFG_DIR: &str = "/etc/network.d";

/// netcfg profiles, and `rc.conf` switched to them.
pub fn render_netcfg(interfaces: &Interfaces, hostname: &str) -> Result<Plan, String> {
    let old = current::read(RC_CONF)?.unwrap_or_default();
    let mut plan = Plan::default();
    for interface in interfaces.values() {
        plan.write(format!("{NETCFG_DIR}/{}", interface.name), netcfg_profile(interface));
    }
    plan.write(RC_CONF, with_hostname(&netcfg_rc_conf(&old, interfaces), hostname));
    for interface in interfaces.values().filter(|interface| interface.up) {
        plan.before
            .push(Step::optional(&["/usr/bin/netcfg", "-d", &interface.name]));
    }
    for interface in interfaces.values() {
        plan.apply.push(Step::required(
            "Failed to start",
            &["/usr/bin/netcfg", "-u", &interface.name],
        ));
    }
    Ok(plan)
}

/// Interfaces and routes as `rc.conf` variables.
pub fn render_rc_conf(interfaces: &Interfaces, hostname: &str) -> Result<Plan, String> {
    let old = current::read(RC_CONF)?.unwrap_or_default();
    let mut plan = Plan::default();
    plan.write(RC_CONF, with_hostname(&legacy_rc_conf(&old, interfaces), hostname));
    plan.before.push(Step::optional(&["/etc/rc.d/network", "stop"]));
    plan.apply.push(Step::required(
        "Couldn't start network",
        &["/etc/rc.d/network", "start"],
    ));
    Ok(plan)
}

fn netcfg_profile(interface: &Interface) -> String {
    let mut lines = Vec::new();
    if let Some(label) = &interface.label {
        lines.push(format!("# Label {label}"));
    }
    lines.push("CONNECTION=\"ethernet\"".to_owned());
    lines.push(format!("INTERFACE={}", interface.name));
    if let Some(ip) = interface.ip4s.first() {
        lines.push("IP=\"static\"".to_owned());
        lines.push(format!("ADDR=\"{}\"", ip.address));
        lines.push(format!("NETMASK=\"{}\"", ip.netmask));
        if let Some(gateway) = interface.gateway4 {
            lines.push(format!("GATEWAY=\"{gateway}\""));
        }
    }
    if let Some(ip) = interface.ip6s.first() {
        lines.push("IP6=\"static\"".to_owned());
        lines.push(format!("ADDR6=\"{}/{}\"", ip.address, ip.prefixlen));
        if let Some(gateway) = interface.gateway6 {
            lines.push(format!("GATEWAY6=\"{gateway}\""));
        }
    }
    let routes: Vec<String> = interface
        .static_routes()
        .map(|route| format!("\"{}/{} via {}\"", route.network, route.netmask, route.gateway))
        .collect();
    if !routes.is_empty() {
        lines.push(format!("ROUTES=({})", routes.join(" ")));
    }
    let extra: Vec<String> = interface
        .ip4s
        .iter()
        .skip(1)
        .map(|ip| ip.cidr())
        .chain(interface.ip6s.iter().skip(1).map(|ip| ip.cidr()))
        .collect();
    if !extra.is_empty() {
        let name = &interface.name;
        let up: Vec<String> = extra
            .iter()
            .map(|address| format!("ip addr add {address} dev {name}"))
            .collect();
        let down: Vec<String> = extra
            .iter()
            .rev()
            .map(|address| format!("ip addr del {address} dev {name}"))
            .collect();
        lines.push(format!("POST_UP=\"{}\"", up.join("; ")));
        lines.push(format!("PRE_DOWN=\"{}\"", down.join("; ")));
    }
    if !interface.dns.is_empty() {
        let servers: Vec<String> = interface.dns.iter().map(ToString::to_string).collect();
        lines.push(format!("DNS=({})", servers.join(" ")));
    }
    lines.iter().map(|line| format!("{line}\n")).collect()
}

/// `rc.conf` for netcfg: `NETWORKS` lists the profiles, the initscripts'
/// own `INTERFACES`, `ROUTES` and the variables they name are commented
/// out, and `network` in `DAEMONS` gives way to `@net-profiles`.
fn netcfg_rc_conf(old: &str, interfaces: &Interfaces) -> String {
    let names: Vec<&str> = interfaces.keys().map(String::as_str).collect();
    let referenced = referenced_variables(old);
    let mut lines = Vec::new();
    let mut networks_set = false;
    for line in old.lines() {
        let key = variable(line);
        if key == Some("NETWORKS") {
            lines.push(format!("NETWORKS=({})", names.join(" ")));
            networks_set = true;
        } else if key
            .is_some_and(|key| key == "INTERFACES" || key == "ROUTES" || referenced.iter().any(|name| name == key))
        {
            lines.push(format!("#{line}"));
        } else if key == Some("DAEMONS") {
            lines.push(daemons(line, true));
        } else {
            lines.push(line.to_owned());
        }
    }
    if !networks_set {
        lines.push(format!("NETWORKS=({})", names.join(" ")));
    }
    lines.iter().map(|line| format!("{line}\n")).collect()
}

/// `rc.conf` with the interfaces and routes as variables (§8.6): the old
/// ones, `INTERFACES` and `ROUTES` are replaced where they were (or
/// appended), `NETWORKS` is commented out, and `DAEMONS` runs `network`
/// again instead of `@net-profiles`.
fn legacy_rc_conf(old: &str, interfaces: &Interfaces) -> String {
    let referenced = referenced_variables(old);
    let mut lines: Vec<String> = Vec::new();
    let mut insert_at = None;
    for line in old.lines() {
        let key = variable(line);
        if key.is_some_and(|key| key == "INTERFACES" || key == "ROUTES" || referenced.iter().any(|name| name == key)) {
            insert_at.get_or_insert(lines.len());
        } else if key == Some("NETWORKS") {
            lines.push(format!("#{line}"));
        } else if key == Some("DAEMONS") {
            lines.push(daemons(line, false));
        } else {
            lines.push(line.to_owned());
        }
    }
    let block = legacy_network_lines(interfaces);
    let at = insert_at.unwrap_or(lines.len());
    lines.splice(at..at, block);
    lines.iter().map(|line| format!("{line}\n")).collect()
}

/// The network variables of the legacy format.
fn legacy_network_lines(interfaces: &Interfaces) -> Vec<String> {
    let mut lines = Vec::new();
    let mut names = Vec::new();
    for interface in interfaces.values() {
        for (index, (ip4, ip6)) in interface.pairs().into_iter().enumerate() {
            let (variable, device) = if index == 0 {
                (interface.name.clone(), interface.name.clone())
            } else {
                (
                    format!("{}_{index}", interface.name),
                    format!("{}:{index}", interface.name),
                )
            };
            let mut value = device;
            if let Some(ip) = ip4 {
                value.push_str(&format!(" {} netmask {}", ip.address, ip.netmask));
            }
            if let Some(ip) = ip6 {
                value.push_str(&format!(" add {}/{}", ip.address, ip.prefixlen));
            }
            lines.push(format!("{variable}=\"{value}\""));
            names.push(variable);
        }
    }
    lines.push(format!("INTERFACES=({})", names.join(" ")));
    let mut routes = Vec::new();
    for interface in interfaces.values() {
        for (index, route) in interface.routes.iter().enumerate() {
            if interface.repeats_gateway(route) {
                continue;
            }
            let variable = format!("{}_route{index}", interface.name);
            lines.push(format!(
                "{variable}=\"-net {} netmask {} gw {}\"",
                route.network, route.netmask, route.gateway
            ));
            routes.push(variable);
        }
    }
    if let Some(gateway) = interfaces.values().find_map(|interface| interface.gateway4) {
        lines.push(format!("gateway=\"default gw {gateway}\""));
        routes.push("gateway".to_owned());
    }
    if let Some(gateway) = interfaces.values().find_map(|interface| interface.gateway6) {
        lines.push(format!("gateway6=\"default gw {gateway}\""));
        routes.push("gateway6".to_owned());
    }
    lines.push(format!("ROUTES=({})", routes.join(" ")));
    lines
}

/// `HOSTNAME="<h>"` replaced where it is, or appended.
fn with_hostname(text: &str, hostname: &str) -> String {
    let line = format!("HOSTNAME=\"{hostname}\"");
    let mut found = false;
    let mut out: String = text
        .lines()
        .map(|old| {
            if variable(old) == Some("HOSTNAME") {
                found = true;
                format!("{line}\n")
            } else {
                format!("{old}\n")
            }
        })
        .collect();
    if !found {
        out.push_str(&format!("{line}\n"));
    }
    out
}

/// The variable a `NAME=value` line sets.
fn variable(line: &str) -> Option<&str> {
    let (name, _) = line.trim().split_once('=')?;
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    valid.then_some(name)
}

/// The names listed by `INTERFACES=(…)` and `ROUTES=(…)` (`!name` too).
fn referenced_variables(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| matches!(variable(line), Some("INTERFACES" | "ROUTES")))
        .filter_map(|line| {
            line.split_once('(')
                .and_then(|(_, rest)| rest.split_once(')'))
                .map(|(list, _)| list)
        })
        .flat_map(|list| {
            list.split_whitespace()
                .map(|name| name.trim_start_matches('!').to_owned())
        })
        .collect()
}

/// `DAEMONS=(…)` with `network` disabled for `@net-profiles` (netcfg), or
/// the reverse.
fn daemons(line: &str, netcfg: bool) -> String {
    let Some((head, rest)) = line.split_once('(') else {
        return line.to_owned();
    };
    let Some((list, tail)) = rest.split_once(')') else {
        return line.to_owned();
    };
    let mut out: Vec<String> = Vec::new();
    for daemon in list.split_whitespace() {
        match (netcfg, daemon) {
            (true, "network") => out.extend(["!network".to_owned(), "@net-profiles".to_owned()]),
            (true, "@net-profiles") if out.iter().any(|seen| seen == "@net-profiles") => {}
            (false, "!network") => out.push("network".to_owned()),
            (false, "@net-profiles" | "net-profiles") => {}
            _ => out.push(daemon.to_owned()),
        }
    }
    format!("{head}({}){tail}", out.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::vector;
    use crate::render::tests::single;

    #[test]
    fn the_legacy_vectors_are_exact() {
        let old = "eth0=\"eth0 192.0.2.250 netmask 255.255.255.0\"\nINTERFACES=(eth0)\ngateway=\"default gw 192.0.2.254\"\nROUTES=(gateway)\n";
        assert_eq!(
            legacy_rc_conf(old, &single(false)),
            "eth0=\"eth0 192.0.2.42 netmask 255.255.255.0\"\nINTERFACES=(eth0)\ngateway=\"default gw 192.0.2.1\"\nROUTES=(gateway)\n"
        );
        assert_eq!(
            legacy_rc_conf(old, &single(true)),
            "eth0=\"eth0 add 2001:db8::42/96\"\nINTERFACES=(eth0)\ngateway6=\"default gw 2001:db8::1\"\nROUTES=(gateway6)\n"
        );
        assert_eq!(
            legacy_rc_conf("", &vector()),
            "eth0=\"eth0 104.130.169.159 netmask 255.255.255.0 add 2001:4802:7803:104:be76:4eff:fe20:5eb2/64\"\neth0_1=\"eth0:1 104.130.169.160 netmask 255.255.255.0\"\neth1=\"eth1 10.176.195.183 netmask 255.255.224.0\"\nINTERFACES=(eth0 eth0_1 eth1)\neth1_route0=\"-net 10.208.0.0 netmask 255.240.0.0 gw 10.176.192.1\"\neth1_route1=\"-net 10.176.0.0 netmask 255.240.0.0 gw 10.176.192.1\"\ngateway=\"default gw 104.130.169.1\"\ngateway6=\"default gw fe80::def\"\nROUTES=(eth1_route0 eth1_route1 gateway gateway6)\n"
        );
    }

    #[test]
    fn the_netcfg_vector_is_exact() {
        assert_eq!(
            netcfg_rc_conf("NETWORKS=()\nDAEMONS=(foo network bar)\n", &single(false)),
            "NETWORKS=(eth0)\nDAEMONS=(foo !network @net-profiles bar)\n"
        );
        let interfaces = single(false);
        assert_eq!(
            netcfg_profile(&interfaces["eth0"]),
            "# Label public\nCONNECTION=\"ethernet\"\nINTERFACE=eth0\nIP=\"static\"\nADDR=\"192.0.2.42\"\nNETMASK=\"255.255.255.0\"\nGATEWAY=\"192.0.2.1\"\nDNS=(192.0.2.2)\n"
        );
    }

    #[test]
    fn extra_addresses_come_up_and_go_down_in_mirror_order() {
        let profile = netcfg_profile(&vector()["eth0"]);
        assert!(profile.contains("POST_UP=\"ip addr add 104.130.169.160/24 dev eth0\"\nPRE_DOWN=\"ip addr del 104.130.169.160/24 dev eth0\"\n"), "{profile}");
    }

    #[test]
    fn switching_back_from_netcfg_restores_network_and_the_hostname_is_set() {
        let old = "HOSTNAME=\"old\"\nNETWORKS=(eth0)\nDAEMONS=(syslog-ng !network @net-profiles crond)\n";
        let text = with_hostname(&legacy_rc_conf(old, &single(false)), "example");
        assert!(
            text.starts_with("HOSTNAME=\"example\"\n#NETWORKS=(eth0)\nDAEMONS=(syslog-ng network crond)\neth0="),
            "{text}"
        );
        assert!(with_hostname("", "example").ends_with("HOSTNAME=\"example\"\n"));
    }
}
