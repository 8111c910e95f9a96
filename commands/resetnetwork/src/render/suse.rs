//! SuSE: `ifcfg-<if>` (one per interface, every address in it) and
//! `ifroute-<if>` under `/etc/sysconfig/network`, byte for byte as the
//! legacy agent wrote them (§8.3, §8.6), keeping the keys this agent does
//! not manage; DNS in `config`'s `NETCONFIG_DNS_STATIC_SERVERS`, the
//! rest of that file untouched. Stale `ifcfg-*` files go only if this
//! agent wrote them; the global `routes` file is the administrator's and
//! stays (the legacy agent removed it).

use crate::config::{Interface, Interfaces};
use crate::current;
use crate::plan::{GENERATED, Plan};
use crate::render::{is_ifcfg_file, restart_network_service, stale_files};

pub const DIR: &str = "/etc/sysconfig/network";
const CONFIG: &str = "/etc/sysconfig/network/config";
const DNS_KEY: &str = "NETCONFIG_DNS_STATIC_SERVERS";

pub fn render(interfaces: &Interfaces) -> Result<Plan, String> {
    let mut plan = Plan::default();
    for interface in interfaces.values() {
        let path = format!("{DIR}/ifcfg-{}", interface.name);
        let kept = kept_keys(current::read(&path)?.as_deref().unwrap_or_default());
        plan.write(path, ifcfg(interface) + &kept);
        let route_path = format!("{DIR}/ifroute-{}", interface.name);
        match ifroute(interface) {
            Some(text) => plan.write(route_path, text),
            None if current::exists(&route_path)? => plan.removes.push(route_path),
            None => {}
        }
    }
    let servers: Vec<String> = interfaces
        .values()
        .flat_map(|interface| interface.dns.iter().map(ToString::to_string))
        .collect();
    let config = current::read(CONFIG)?.unwrap_or_default();
    plan.write(CONFIG, with_dns(&config, &servers.join(" ")));
    let stale = stale_files(DIR, &plan, is_ifcfg_file)?;
    plan.removes.extend(stale);
    plan.apply.push(restart_network_service()?);
    Ok(plan)
}

fn ifcfg(interface: &Interface) -> String {
    let mut text = format!("{GENERATED}\n\n");
    if let Some(label) = &interface.label {
        text.push_str(&format!("# Label {label}\n"));
    }
    text.push_str("BOOTPROTO='static'\n");
    let addresses = interface
        .ip4s
        .iter()
        .map(|ip| (ip.address.to_string(), format!("NETMASK{{}}='{}'", ip.netmask)))
        .chain(
            interface
                .ip6s
                .iter()
                .map(|ip| (ip.address.to_string(), format!("PREFIXLEN{{}}='{}'", ip.prefixlen))),
        );
    for (index, (address, mask)) in addresses.enumerate() {
        if index == 0 {
            text.push_str(&format!("IPADDR='{address}'\n{}\n", mask.replace("{}", "")));
        } else {
            let n = index - 1;
            text.push_str(&format!(
                "IPADDR_{n}='{address}'\n{}\nLABEL_{n}='{n}'\n",
                mask.replace("{}", &format!("_{n}"))
            ));
        }
    }
    text.push_str("STARTMODE='auto'\nUSERCONTROL='no'\n");
    text
}

/// `<net> <gw> <mask> <if>` per route (not the default one through the
/// gateway), then the default routes.
fn ifroute(interface: &Interface) -> Option<String> {
    let mut lines: Vec<String> = interface
        .static_routes()
        .map(|route| {
            format!(
                "{} {} {} {}",
                route.network, route.gateway, route.netmask, interface.name
            )
        })
        .collect();
    lines.extend(interface.gateway4.map(|gateway| format!("default {gateway} - -")));
    lines.extend(interface.gateway6.map(|gateway| format!("default {gateway} - -")));
    (!lines.is_empty()).then(|| lines.iter().map(|line| format!("{line}\n")).collect())
}

/// The previous file's lines for keys this agent does not write.
fn kept_keys(old: &str) -> String {
    const MANAGED: &[&str] = &[
        "BOOTPROTO",
        "IPADDR",
        "NETMASK",
        "PREFIXLEN",
        "LABEL",
        "STARTMODE",
        "USERCONTROL",
    ];
    old.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.split_once('=').is_some_and(|(key, _)| {
                let stem = key.trim().split('_').next().unwrap_or_default();
                !MANAGED.contains(&stem) && !MANAGED.contains(&key.trim())
            })
        })
        .map(|line| format!("{line}\n"))
        .collect()
}

/// `config` with `NETCONFIG_DNS_STATIC_SERVERS` replaced, or appended.
fn with_dns(config: &str, servers: &str) -> String {
    let line = format!("{DNS_KEY}=\"{servers}\"");
    let mut replaced = false;
    let mut lines: Vec<String> = config
        .lines()
        .map(|old| {
            if old.trim_start().starts_with(&format!("{DNS_KEY}=")) {
                replaced = true;
                line.clone()
            } else {
                old.to_owned()
            }
        })
        .collect();
    if !replaced {
        lines.push(line);
    }
    lines.iter().map(|line| format!("{line}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::vector;
    use crate::render::tests::{machine, single};

    #[test]
    fn the_single_interface_vectors_are_exact() {
        machine(&[]);
        let plan = render(&single(false)).unwrap();
        assert_eq!(
            plan.contents("/etc/sysconfig/network/ifcfg-eth0").unwrap(),
            "# Automatically generated, do not edit\n\n# Label public\nBOOTPROTO='static'\nIPADDR='192.0.2.42'\nNETMASK='255.255.255.0'\nSTARTMODE='auto'\nUSERCONTROL='no'\n"
        );
        let plan = render(&single(true)).unwrap();
        assert_eq!(
            plan.contents("/etc/sysconfig/network/ifcfg-eth0").unwrap(),
            "# Automatically generated, do not edit\n\n# Label public\nBOOTPROTO='static'\nIPADDR='2001:db8::42'\nPREFIXLEN='96'\nSTARTMODE='auto'\nUSERCONTROL='no'\n"
        );
    }

    #[test]
    fn the_end_to_end_vector_is_exact() {
        machine(&[(
            CONFIG,
            "## comment\nNETCONFIG_DNS_POLICY=\"auto\"\nNETCONFIG_DNS_STATIC_SERVERS=\"\"\n",
        )]);
        let plan = render(&vector()).unwrap();
        assert_eq!(
            plan.contents("/etc/sysconfig/network/ifcfg-eth0").unwrap(),
            "# Automatically generated, do not edit\n\n# Label public\nBOOTPROTO='static'\nIPADDR='104.130.169.159'\nNETMASK='255.255.255.0'\nIPADDR_0='104.130.169.160'\nNETMASK_0='255.255.255.0'\nLABEL_0='0'\nIPADDR_1='2001:4802:7803:104:be76:4eff:fe20:5eb2'\nPREFIXLEN_1='64'\nLABEL_1='1'\nSTARTMODE='auto'\nUSERCONTROL='no'\n"
        );
        assert_eq!(
            plan.contents("/etc/sysconfig/network/ifroute-eth0").unwrap(),
            "default 104.130.169.1 - -\ndefault fe80::def - -\n"
        );
        assert_eq!(
            plan.contents("/etc/sysconfig/network/ifroute-eth1").unwrap(),
            "10.208.0.0 10.176.192.1 255.240.0.0 eth1\n10.176.0.0 10.176.192.1 255.240.0.0 eth1\n"
        );
        assert_eq!(
            plan.contents(CONFIG).unwrap(),
            "## comment\nNETCONFIG_DNS_POLICY=\"auto\"\nNETCONFIG_DNS_STATIC_SERVERS=\"69.20.0.164 69.20.0.196\"\n"
        );
    }

    #[test]
    fn unknown_keys_stay() {
        machine(&[(
            "/etc/sysconfig/network/ifcfg-eth0",
            "BOOTPROTO='dhcp'\nMTU='9000'\nIPADDR_x='1.2.3.4'\nETHTOOL_OPTIONS='-K eth0 tso off'\n",
        )]);
        let text = render(&single(false))
            .unwrap()
            .contents("/etc/sysconfig/network/ifcfg-eth0")
            .unwrap()
            .to_owned();
        assert!(
            text.ends_with("USERCONTROL='no'\nMTU='9000'\nETHTOOL_OPTIONS='-K eth0 tso off'\n"),
            "{text}"
        );
    }
}
