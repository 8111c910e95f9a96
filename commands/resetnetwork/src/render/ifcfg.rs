//! Red Hat, CentOS, Fedora with network-scripts: `ifcfg-<name>` per
//! address pair (aliases `eth0:1`, …) and `route-<if>`, byte for byte as
//! the legacy agent wrote them (§8.3, §8.6), keeping the keys this agent
//! does not manage (`MTU`, `ETHTOOL_OPTS`, …) from the previous file.
//!
//! Fixed on purpose: the route file is named after the interface
//! (`route-eth0`), not after its last alias, where initscripts never read
//! it; and routes are numbered from 0 without the gap a skipped default
//! route left. Stale `ifcfg-*` files are removed only if this agent wrote
//! them (their first line says so); the administrator's stay.

use crate::config::{Interface, Interfaces};
use crate::current;
use crate::plan::{GENERATED, Plan};
use crate::render::{is_ifcfg_file, restart_network_service, stale_files};

pub const DIR: &str = "/etc/sysconfig/network-scripts";

/// The keys this agent writes; any other key of an old file is kept.
const MANAGED: &[&str] = &[
    "DEVICE",
    "BOOTPROTO",
    "HWADDR",
    "IPADDR",
    "NETMASK",
    "PREFIX",
    "DEFROUTE",
    "GATEWAY",
    "IPV6INIT",
    "IPV6_AUTOCONF",
    "IPV6ADDR",
    "IPV6ADDR_SECONDARIES",
    "IPV6_DEFAULTGW",
    "ONBOOT",
    "NM_CONTROLLED",
];

pub fn render(interfaces: &Interfaces) -> Result<Plan, String> {
    let mut plan = Plan::default();
    for interface in interfaces.values() {
        for (name, text) in ifcfg_files(interface) {
            let path = format!("{DIR}/ifcfg-{name}");
            let kept = kept_keys(current::read(&path)?.as_deref().unwrap_or_default());
            plan.write(path, text + &kept);
        }
        let route_path = format!("{DIR}/route-{}", interface.name);
        match route_file(interface) {
            Some(text) => plan.write(route_path, text),
            None if current::exists(&route_path)? => plan.removes.push(route_path),
            None => {}
        }
    }
    let stale = stale_files(DIR, &plan, is_ifcfg_file)?;
    plan.removes.extend(stale);
    plan.apply.push(restart_network_service()?);
    Ok(plan)
}

/// `(name, contents)` of each ifcfg file of one interface.
fn ifcfg_files(interface: &Interface) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for (index, (ip4, ip6)) in interface.pairs().into_iter().enumerate() {
        let name = if index == 0 {
            interface.name.clone()
        } else {
            format!("{}:{index}", interface.name)
        };
        let mut text = format!("{GENERATED}\n\n");
        if let Some(label) = &interface.label {
            text.push_str(&format!("# Label {label}\n"));
        }
        text.push_str(&format!("DEVICE={name}\nBOOTPROTO=static\nHWADDR={}\n", interface.mac));
        if let Some(ip) = ip4 {
            text.push_str(&format!("IPADDR={}\nNETMASK={}\n", ip.address, ip.netmask));
            if let (0, Some(gateway)) = (index, interface.gateway4) {
                text.push_str(&format!("DEFROUTE=yes\nGATEWAY={gateway}\n"));
            }
        }
        if let Some(ip) = ip6 {
            text.push_str(&format!(
                "IPV6INIT=yes\nIPV6_AUTOCONF=no\nIPV6ADDR={}/{}\n",
                ip.address, ip.prefixlen
            ));
            if let (0, Some(gateway)) = (index, interface.gateway6) {
                text.push_str(&format!("IPV6_DEFAULTGW={gateway}%{name}\n"));
            }
        }
        if index == 0 {
            for (number, server) in interface.dns.iter().enumerate() {
                text.push_str(&format!("DNS{}={server}\n", number + 1));
            }
        }
        text.push_str("ONBOOT=yes\nNM_CONTROLLED=no\n");
        files.push((name, text));
    }
    files
}

/// `ADDRESSn`, `NETMASKn`, `GATEWAYn` per route, the default route through
/// the interface's gateway left out; `None` when no route is left.
fn route_file(interface: &Interface) -> Option<String> {
    let routes: Vec<_> = interface.static_routes().collect();
    if routes.is_empty() {
        return None;
    }
    let lines = routes.iter().enumerate().map(|(index, route)| {
        format!(
            "ADDRESS{index}={}\nNETMASK{index}={}\nGATEWAY{index}={}\n",
            route.network, route.netmask, route.gateway
        )
    });
    Some(lines.collect())
}

/// The `KEY=value` lines of an old ifcfg file whose key this agent does
/// not manage, in their order.
fn kept_keys(old: &str) -> String {
    old.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once('=').map(|(key, _)| (key.trim(), line)))
        .filter(|(key, _)| !is_managed(key))
        .map(|(_, line)| format!("{line}\n"))
        .collect()
}

fn is_managed(key: &str) -> bool {
    let stem = key.trim_end_matches(|c: char| c.is_ascii_digit());
    MANAGED.contains(&stem) || (stem == "DNS" && stem.len() < key.len())
}

/// `/etc/sysconfig/network`: `NETWORKING_IPV6` and `HOSTNAME` set in
/// place (every other line kept, stripped), missing keys appended.
pub fn sysconfig_network(old: &str, ipv6: bool, hostname: &str) -> String {
    let mut wanted = vec![
        ("NETWORKING_IPV6", if ipv6 { "yes" } else { "no" }.to_owned()),
        ("HOSTNAME", hostname.to_owned()),
    ];
    let mut lines: Vec<String> = Vec::new();
    for line in old.lines().map(str::trim) {
        let key = line.split_once('=').map(|(key, _)| key.trim());
        match wanted.iter().position(|(name, _)| Some(*name) == key) {
            Some(index) => {
                let (name, value) = wanted.remove(index);
                lines.push(format!("{name}={value}"));
            }
            None => lines.push(line.to_owned()),
        }
    }
    lines.extend(wanted.into_iter().map(|(name, value)| format!("{name}={value}")));
    lines.iter().map(|line| format!("{line}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::vector;
    use crate::render::tests::{edge, machine, single};

    fn file(plan: &Plan, name: &str) -> String {
        plan.contents(&format!("{DIR}/{name}"))
            .unwrap_or_else(|| panic!("no {name}"))
            .to_owned()
    }

    #[test]
    fn the_single_interface_vectors_are_exact() {
        machine(&[]);
        let ipv4 = "# Automatically generated, do not edit\n\n# Label public\nDEVICE=eth0\nBOOTPROTO=static\nHWADDR=00:11:22:33:44:55\nIPADDR=192.0.2.42\nNETMASK=255.255.255.0\nDEFROUTE=yes\nGATEWAY=192.0.2.1\nDNS1=192.0.2.2\nONBOOT=yes\nNM_CONTROLLED=no\n";
        assert_eq!(file(&render(&single(false)).unwrap(), "ifcfg-eth0"), ipv4);
        let ipv6 = "# Automatically generated, do not edit\n\n# Label public\nDEVICE=eth0\nBOOTPROTO=static\nHWADDR=00:11:22:33:44:55\nIPV6INIT=yes\nIPV6_AUTOCONF=no\nIPV6ADDR=2001:db8::42/96\nIPV6_DEFAULTGW=2001:db8::1%eth0\nDNS1=2001:db8::2\nONBOOT=yes\nNM_CONTROLLED=no\n";
        assert_eq!(file(&render(&single(true)).unwrap(), "ifcfg-eth0"), ipv6);
    }

    #[test]
    fn the_end_to_end_vector_is_exact() {
        machine(&[]);
        let plan = render(&vector()).unwrap();
        let header = "# Automatically generated, do not edit\n\n";
        assert_eq!(
            file(&plan, "ifcfg-eth0"),
            format!(
                "{header}# Label public\nDEVICE=eth0\nBOOTPROTO=static\nHWADDR=bc:76:4e:20:5e:b2\nIPADDR=104.130.169.159\nNETMASK=255.255.255.0\nDEFROUTE=yes\nGATEWAY=104.130.169.1\nIPV6INIT=yes\nIPV6_AUTOCONF=no\nIPV6ADDR=2001:4802:7803:104:be76:4eff:fe20:5eb2/64\nIPV6_DEFAULTGW=fe80::def%eth0\nDNS1=69.20.0.164\nDNS2=69.20.0.196\nONBOOT=yes\nNM_CONTROLLED=no\n"
            )
        );
        assert_eq!(
            file(&plan, "ifcfg-eth0:1"),
            format!(
                "{header}# Label public\nDEVICE=eth0:1\nBOOTPROTO=static\nHWADDR=bc:76:4e:20:5e:b2\nIPADDR=104.130.169.160\nNETMASK=255.255.255.0\nONBOOT=yes\nNM_CONTROLLED=no\n"
            )
        );
        assert_eq!(
            file(&plan, "ifcfg-eth1"),
            format!(
                "{header}# Label private\nDEVICE=eth1\nBOOTPROTO=static\nHWADDR=bc:76:4e:20:5e:fb\nIPADDR=10.176.195.183\nNETMASK=255.255.224.0\nONBOOT=yes\nNM_CONTROLLED=no\n"
            )
        );
        assert_eq!(
            file(&plan, "route-eth1"),
            "ADDRESS0=10.208.0.0\nNETMASK0=255.240.0.0\nGATEWAY0=10.176.192.1\nADDRESS1=10.176.0.0\nNETMASK1=255.240.0.0\nGATEWAY1=10.176.192.1\n"
        );
    }

    #[test]
    fn the_route_file_is_named_after_the_interface_and_numbered_from_zero() {
        machine(&[]);
        let plan = render(&edge()).unwrap();
        assert_eq!(
            file(&plan, "route-eth0"),
            "ADDRESS0=198.51.100.0\nNETMASK0=255.255.255.0\nGATEWAY0=203.0.113.254\n"
        );
        assert!(plan.contents(&format!("{DIR}/route-eth0:1")).is_none());
    }

    #[test]
    fn unknown_keys_stay_and_only_generated_stale_files_go() {
        machine(&[
            (
                "/etc/sysconfig/network-scripts/ifcfg-eth0",
                "DEVICE=eth0\nBOOTPROTO=dhcp\nMTU=9000\nETHTOOL_OPTS=\"-K eth0 tso off\"\nDNS1=1.1.1.1\n",
            ),
            (
                "/etc/sysconfig/network-scripts/ifcfg-eth0:1",
                "# Automatically generated, do not edit\n\nDEVICE=eth0:1\n",
            ),
            (
                "/etc/sysconfig/network-scripts/ifcfg-bond0",
                "DEVICE=bond0\nBONDING_OPTS=\"mode=1\"\n",
            ),
            (
                "/etc/sysconfig/network-scripts/ifcfg-lo",
                "# Automatically generated, do not edit\nDEVICE=lo\n",
            ),
            ("/etc/sysconfig/network-scripts/route-eth0", "ADDRESS0=10.0.0.0\n"),
        ]);
        let plan = render(&single(false)).unwrap();
        let eth0 = file(&plan, "ifcfg-eth0");
        assert!(
            eth0.ends_with("NM_CONTROLLED=no\nMTU=9000\nETHTOOL_OPTS=\"-K eth0 tso off\"\n"),
            "{eth0}"
        );
        assert!(!eth0.contains("dhcp") && !eth0.contains("1.1.1.1"), "{eth0}");
        assert_eq!(
            plan.removes,
            [format!("{DIR}/route-eth0"), format!("{DIR}/ifcfg-eth0:1")]
        );
    }

    #[test]
    fn sysconfig_network_is_updated_in_place() {
        assert_eq!(
            sysconfig_network("NETWORKING=yes\nNETWORKING_IPV6=yes\n", true, "example"),
            "NETWORKING=yes\nNETWORKING_IPV6=yes\nHOSTNAME=example\n"
        );
        assert_eq!(
            sysconfig_network("NETWORKING=yes\nHOSTNAME=other\nNOZEROCONF=yes\n", false, "example"),
            "NETWORKING=yes\nHOSTNAME=example\nNOZEROCONF=yes\nNETWORKING_IPV6=no\n"
        );
        assert_eq!(
            sysconfig_network("NETWORKING=yes\nNOZEROCONF=yes\n", true, "test-server"),
            "NETWORKING=yes\nNOZEROCONF=yes\nNETWORKING_IPV6=yes\nHOSTNAME=test-server\n"
        );
    }
}
