//! Arch Linux: one netctl profile per interface in `/etc/netctl/<if>`.
//! Unlike the legacy agent: every address is written (it wrote only the
//! first of each family), prefixes are CIDR, and only profiles this agent
//! wrote are removed (it removed every file in `/etc/netctl`).

use crate::config::{Interface, Interfaces};
use crate::plan::{GENERATED, Plan, Step};
use crate::render::stale_files;

pub const DIR: &str = "/etc/netctl";

pub fn render(interfaces: &Interfaces) -> Result<Plan, String> {
    let mut plan = Plan::default();
    for interface in interfaces.values() {
        plan.write(format!("{DIR}/{}", interface.name), profile(interface));
    }
    let stale = stale_files(DIR, &plan, |name| !name.ends_with('~'))?;
    plan.removes.extend(stale);
    for interface in interfaces.values() {
        let name = interface.name.as_str();
        plan.apply.push(Step::required(
            "Failed to start",
            &["/usr/bin/netctl", "reenable", name],
        ));
        plan.apply
            .push(Step::required("Failed to start", &["/usr/bin/netctl", "restart", name]));
    }
    Ok(plan)
}

fn profile(interface: &Interface) -> String {
    let quoted = |items: Vec<String>| {
        items
            .iter()
            .map(|item| format!("'{item}'"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut text = format!("{GENERATED}\n");
    if let Some(label) = &interface.label {
        text.push_str(&format!("# Label {label}\n"));
    }
    // netctl profiles are shell: the label stays in the comment above.
    let name = &interface.name;
    text.push_str(&format!(
        "Description='guestward {name}'\nConnection=ethernet\nInterface={name}\n"
    ));
    if interface.ip4s.is_empty() {
        text.push_str("IP=no\n");
    } else {
        text.push_str("IP=static\n");
        let addresses = interface.ip4s.iter().map(|ip| ip.cidr()).collect();
        text.push_str(&format!("Address=({})\n", quoted(addresses)));
        if let Some(gateway) = interface.gateway4 {
            text.push_str(&format!("Gateway='{gateway}'\n"));
        }
        let routes: Vec<String> = interface
            .static_routes()
            .map(|route| format!("{}/{} via {}", route.network, route.prefixlen, route.gateway))
            .collect();
        if !routes.is_empty() {
            text.push_str(&format!("Routes=({})\n", quoted(routes)));
        }
    }
    if !interface.ip6s.is_empty() {
        text.push_str("IP6=static\n");
        let addresses = interface.ip6s.iter().map(|ip| ip.cidr()).collect();
        text.push_str(&format!("Address6=({})\n", quoted(addresses)));
        if let Some(gateway) = interface.gateway6 {
            text.push_str(&format!("Gateway6='{gateway}'\n"));
        }
    }
    if !interface.dns.is_empty() {
        text.push_str(&format!(
            "DNS=({})\n",
            quoted(interface.dns.iter().map(ToString::to_string).collect())
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::vector;
    use crate::render::tests::machine;

    #[test]
    fn profiles_hold_every_address() {
        machine(&[
            ("/etc/netctl/eth0", "Interface=eth0\n"),
            ("/etc/netctl/eth7", "# Automatically generated, do not edit\n"),
            ("/etc/netctl/wlan0", "Connection=wireless\n"),
        ]);
        let plan = render(&vector()).unwrap();
        assert_eq!(
            plan.contents("/etc/netctl/eth0").unwrap(),
            "# Automatically generated, do not edit\n# Label public\nDescription='guestward eth0'\nConnection=ethernet\nInterface=eth0\nIP=static\nAddress=('104.130.169.159/24' '104.130.169.160/24')\nGateway='104.130.169.1'\nIP6=static\nAddress6=('2001:4802:7803:104:be76:4eff:fe20:5eb2/64')\nGateway6='fe80::def'\nDNS=('69.20.0.164' '69.20.0.196')\n"
        );
        assert!(
            plan.contents("/etc/netctl/eth1")
                .unwrap()
                .contains("Routes=('10.208.0.0/12 via 10.176.192.1' '10.176.0.0/12 via 10.176.192.1')\n")
        );
        assert_eq!(plan.removes, ["/etc/netctl/eth7"]);
    }
}
