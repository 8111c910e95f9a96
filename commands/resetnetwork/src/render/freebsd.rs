//! FreeBSD: `/etc/rc.conf`, byte for byte as the legacy agent wrote it
//! (§8.5, §8.6): the network lines it manages are dropped and rewritten
//! after the rest, which is kept. The IPv6 default route's scope is the
//! interface that has it (the legacy agent always wrote `xn0`).

use crate::config::Interfaces;
use crate::current;
use crate::plan::{Plan, Step};
use crate::render::single_gateways;

pub const PATH: &str = "/etc/rc.conf";

/// Lines starting with these are the agent's to write.
const MANAGED: &[&str] = &[
    "ifconfig",
    "defaultrouter",
    "ipv6_ifconfig",
    "ipv6_defaultrouter",
    "ipv6_enable",
    "static_routes",
    "route_",
    "dhcpd_",
    "hostname",
];

pub fn render(interfaces: &Interfaces, hostname: &str) -> Result<Plan, String> {
    let old = current::read(PATH)?.unwrap_or_default();
    let mut plan = Plan::default();
    plan.write(PATH, rc_conf(&old, interfaces, hostname)?);
    plan.apply.push(Step::required(
        "Couldn't restart IPv4 networking",
        &["/bin/sh", "/etc/rc.d/netif", "restart"],
    ));
    if current::exists("/etc/rc.d/network_ipv6")? {
        plan.apply.push(Step::required(
            "Couldn't restart IPv6 networking",
            &["/bin/sh", "/etc/rc.d/network_ipv6", "restart"],
        ));
    }
    plan.apply
        .push(Step::optional(&["/bin/sh", "/etc/rc.d/routing", "restart"]));
    Ok(plan)
}

fn rc_conf(old: &str, interfaces: &Interfaces, hostname: &str) -> Result<String, String> {
    let gateways = single_gateways(interfaces)?;
    let mut lines: Vec<String> = old
        .lines()
        .map(str::trim)
        .filter(|line| !MANAGED.iter().any(|prefix| line.starts_with(prefix)))
        .map(str::to_owned)
        .collect();
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines.push("dhcpd_enable=\"NO\"".to_owned());
    lines.push(format!("hostname={hostname}"));
    for interface in interfaces.values() {
        let name = &interface.name;
        for (index, (ip4, ip6)) in interface.pairs().into_iter().enumerate() {
            let suffix = if index == 0 {
                String::new()
            } else {
                format!("_alias{}", index - 1)
            };
            if let (0, Some(label)) = (index, &interface.label) {
                lines.push(format!("# Label {label}"));
            }
            if let Some(ip) = ip4 {
                let up = if index == 0 { " up" } else { "" };
                lines.push(format!(
                    "ifconfig_{name}{suffix}=\"{} netmask {}{up}\"",
                    ip.address, ip.netmask
                ));
            }
            if let Some(ip) = ip6 {
                lines.push(format!(
                    "ipv6_ifconfig_{name}{suffix}=\"{}/{}\"",
                    ip.address, ip.prefixlen
                ));
            }
        }
    }
    let routes: Vec<_> = interfaces
        .values()
        .flat_map(|interface| interface.routes.iter())
        .collect();
    for (index, route) in routes.iter().enumerate() {
        lines.push(format!(
            "route_lan{index}=\"-net {} -netmask {} {}\"",
            route.network, route.netmask, route.gateway
        ));
    }
    if !routes.is_empty() {
        let names: Vec<String> = (0..routes.len()).map(|index| format!("lan{index}")).collect();
        lines.push(format!("static_routes=\"{}\"", names.join(" ")));
    }
    let ipv6: Vec<&str> = interfaces
        .values()
        .filter(|interface| !interface.ip6s.is_empty())
        .map(|interface| interface.name.as_str())
        .collect();
    if !ipv6.is_empty() {
        lines.push("ipv6_enable=\"YES\"".to_owned());
        lines.push(format!("ipv6_network_interfaces=\"{}\"", ipv6.join(",")));
    }
    if let Some((_, gateway)) = gateways.ipv4 {
        lines.push(format!("defaultrouter=\"{gateway}\""));
    }
    if let Some((name, gateway)) = gateways.ipv6 {
        lines.push(format!("ipv6_defaultrouter=\"{gateway}%{name}\""));
    }
    Ok(lines.iter().map(|line| format!("{line}\n")).collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::{LocalNic, normalise};
    use crate::render::tests::machine;

    const INPUT: &str = "hostname=\"oldhostname\"\ncheck_quotas=\"NO\"\nipv6_enable=\"YES\"\npf_enable=\"YES\"\npflog_enable=\"YES\"\nsshd_enable=\"YES\"\nifconfig_re0=\"DHCP\"\nifconfig_rl0=\"10.0.1.1 netmask 255.255.255.0 up\"\nifconfig_rl0_alias0=\"10.0.1.2 netmask 255.255.255.255\"\ndhcpd_enable=\"YES\"\ndhcpd_flags=\"-q\"\ndhcpd_conf=\"/usr/local/etc/dhcpd.conf\"\n";

    fn nics() -> Vec<LocalNic> {
        vec![
            LocalNic {
                name: "xn0".into(),
                mac: "40:40:8f:1e:a0:0a".into(),
                up: true,
            },
            LocalNic {
                name: "xn1".into(),
                mac: "40:40:a2:87:6e:26".into(),
                up: true,
            },
        ]
    }

    fn public(extra_ips: &[(&str, &str)], ip6s: &[(&str, u8)]) -> serde_json::Value {
        let mut ips = vec![json!({"ip": "10.127.31.38", "netmask": "255.255.255.0", "enabled": "1"})];
        ips.extend(
            extra_ips
                .iter()
                .map(|(ip, mask)| json!({"ip": ip, "netmask": mask, "enabled": "1"})),
        );
        let ip6s: Vec<_> = ip6s
            .iter()
            .map(|(ip, prefix)| json!({"ip": ip, "netmask": prefix, "enabled": "1"}))
            .collect();
        let mut entry = json!({"label": "public", "mac": "40:40:8f:1e:a0:0a", "ips": ips, "gateway": "10.127.31.1", "dns": ["10.6.24.4", "10.6.24.5"]});
        if !ip6s.is_empty() {
            entry["ip6s"] = json!(ip6s);
            entry["gateway6"] = json!("ffff::1");
        }
        entry
    }

    fn private() -> serde_json::Value {
        json!({"label": "private", "mac": "40:40:a2:87:6e:26",
            "ips": [{"ip": "192.168.2.30", "netmask": "255.255.224.0", "enabled": "1"}],
            "routes": [{"route": "10.176.0.0", "netmask": "255.248.0.0", "gateway": "10.177.96.1"},
                       {"route": "10.191.192.0", "netmask": "255.255.192.0", "gateway": "10.177.96.1"}]})
    }

    fn rendered(entries: &[serde_json::Value]) -> String {
        machine(&[(PATH, INPUT)]);
        let interfaces = normalise(entries, &nics()).unwrap();
        render(&interfaces, "myhostname")
            .unwrap()
            .contents(PATH)
            .unwrap()
            .to_owned()
    }

    const HEAD: &str = "check_quotas=\"NO\"\npf_enable=\"YES\"\npflog_enable=\"YES\"\nsshd_enable=\"YES\"\ndhcpd_enable=\"NO\"\nhostname=myhostname\n# Label public\nifconfig_xn0=\"10.127.31.38 netmask 255.255.255.0 up\"\n";
    const TAIL: &str = "# Label private\nifconfig_xn1=\"192.168.2.30 netmask 255.255.224.0 up\"\nroute_lan0=\"-net 10.176.0.0 -netmask 255.248.0.0 10.177.96.1\"\nroute_lan1=\"-net 10.191.192.0 -netmask 255.255.192.0 10.177.96.1\"\nstatic_routes=\"lan0 lan1\"\n";

    #[test]
    fn the_legacy_vector_is_exact() {
        assert_eq!(
            rendered(&[public(&[], &[]), private()]),
            format!("{HEAD}{TAIL}defaultrouter=\"10.127.31.1\"\n")
        );
    }

    #[test]
    fn aliases_follow_the_first_address() {
        let text = rendered(&[
            public(
                &[("10.127.32.38", "255.255.255.0"), ("10.127.32.39", "255.255.255.255")],
                &[],
            ),
            private(),
        ]);
        let aliases = "ifconfig_xn0_alias0=\"10.127.32.38 netmask 255.255.255.0\"\nifconfig_xn0_alias1=\"10.127.32.39 netmask 255.255.255.255\"\n";
        assert_eq!(text, format!("{HEAD}{aliases}{TAIL}defaultrouter=\"10.127.31.1\"\n"));
    }

    #[test]
    fn ipv6_lines_pair_with_the_ipv4_ones() {
        let text = rendered(&[public(&[], &[("ffff::2", 96)]), private()]);
        let expected = format!(
            "{HEAD}ipv6_ifconfig_xn0=\"ffff::2/96\"\n{TAIL}ipv6_enable=\"YES\"\nipv6_network_interfaces=\"xn0\"\ndefaultrouter=\"10.127.31.1\"\nipv6_defaultrouter=\"ffff::1%xn0\"\n"
        );
        assert_eq!(text, expected);
        let text = rendered(&[
            public(
                &[("10.127.32.38", "255.255.255.0"), ("10.127.32.39", "255.255.255.255")],
                &[("ffff::2", 96), ("ffff::1:2", 96), ("ffff::1:3", 128)],
            ),
            private(),
        ]);
        let pairs = "ifconfig_xn0=\"10.127.31.38 netmask 255.255.255.0 up\"\nipv6_ifconfig_xn0=\"ffff::2/96\"\nifconfig_xn0_alias0=\"10.127.32.38 netmask 255.255.255.0\"\nipv6_ifconfig_xn0_alias0=\"ffff::1:2/96\"\nifconfig_xn0_alias1=\"10.127.32.39 netmask 255.255.255.255\"\nipv6_ifconfig_xn0_alias1=\"ffff::1:3/128\"\n";
        assert!(text.contains(pairs), "{text}");
    }

    #[test]
    fn the_end_to_end_vector_is_exact() {
        machine(&[(PATH, "hostname=\"old\"\nsshd_enable=\"YES\"\nifconfig_re0=\"DHCP\"\n")]);
        let nics = [
            LocalNic {
                name: "xn0".into(),
                mac: "bc:76:4e:20:5e:b2".into(),
                up: true,
            },
            LocalNic {
                name: "xn1".into(),
                mac: "bc:76:4e:20:5e:fb".into(),
                up: true,
            },
        ];
        let interfaces = normalise(&crate::config::tests::vector_entries(), &nics).unwrap();
        let text = render(&interfaces, "test-server")
            .unwrap()
            .contents(PATH)
            .unwrap()
            .to_owned();
        assert_eq!(
            text,
            "sshd_enable=\"YES\"\ndhcpd_enable=\"NO\"\nhostname=test-server\n# Label public\nifconfig_xn0=\"104.130.169.159 netmask 255.255.255.0 up\"\nipv6_ifconfig_xn0=\"2001:4802:7803:104:be76:4eff:fe20:5eb2/64\"\nifconfig_xn0_alias0=\"104.130.169.160 netmask 255.255.255.0\"\n# Label private\nifconfig_xn1=\"10.176.195.183 netmask 255.255.224.0 up\"\nroute_lan0=\"-net 10.208.0.0 -netmask 255.240.0.0 10.176.192.1\"\nroute_lan1=\"-net 10.176.0.0 -netmask 255.240.0.0 10.176.192.1\"\nstatic_routes=\"lan0 lan1\"\nipv6_enable=\"YES\"\nipv6_network_interfaces=\"xn0\"\ndefaultrouter=\"104.130.169.1\"\nipv6_defaultrouter=\"fe80::def%xn0\"\n"
        );
    }

    #[test]
    fn two_default_gateways_are_refused() {
        machine(&[]);
        let mut second = private();
        second["gateway"] = json!("192.168.0.1");
        let interfaces = normalise(&[public(&[], &[]), second], &nics()).unwrap();
        assert_eq!(
            render(&interfaces, "h").unwrap_err(),
            "Multiple IPv4 default routes specified"
        );
    }
}
