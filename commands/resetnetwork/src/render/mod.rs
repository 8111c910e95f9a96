//! One module per configuration format. Each turns the normalised
//! interfaces into a [`Plan`]: its files (keeping what the administrator
//! wrote where the format allows) and the programs that apply them.

mod arch;
mod freebsd;
mod gentoo;
pub mod ifcfg;
mod ifupdown;
mod netctl;
mod netplan;
mod networkd;
mod networkmanager;
mod suse;

pub use gentoo::hostname_file as gentoo_hostname;

use std::net::IpAddr;

use crate::config::{Interface, Interfaces, default_route_metric};
use crate::os::Renderer;
use crate::plan::{Plan, Step};

/// The plan of `renderer` for `interfaces`.
pub fn render(renderer: Renderer, interfaces: &Interfaces, hostname: &str) -> Result<Plan, String> {
    match renderer {
        Renderer::Ifupdown => ifupdown::render(interfaces),
        Renderer::Ifcfg => ifcfg::render(interfaces),
        Renderer::SuseIfcfg => suse::render(interfaces),
        Renderer::Gentoo { openrc } => gentoo::render(interfaces, openrc),
        Renderer::Netctl => netctl::render(interfaces),
        Renderer::ArchNetcfg => arch::render_netcfg(interfaces, hostname),
        Renderer::ArchRcConf => arch::render_rc_conf(interfaces, hostname),
        Renderer::FreeBsd => freebsd::render(interfaces, hostname),
        Renderer::Netplan => netplan::render(interfaces),
        Renderer::Networkd => networkd::render(interfaces),
        Renderer::NetworkManager => networkmanager::render(interfaces),
    }
}

/// One route an interface's configuration holds: its default routes
/// first (IPv4, IPv6), then its static routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// `0.0.0.0/0`, `::/0` or `network/prefixlen`.
    pub to: String,
    pub via: IpAddr,
    pub default: bool,
    /// The next hop is outside the interface's subnets (see
    /// [`Interface::needs_on_link`]).
    pub on_link: bool,
    /// Only for default routes, when several interfaces have one.
    pub metric: Option<u32>,
}

/// Every route of `interface`, as [`RouteSpec`]s.
pub fn routes(interfaces: &Interfaces, interface: &Interface) -> Vec<RouteSpec> {
    let default = |to: &str, via: IpAddr| RouteSpec {
        to: to.to_owned(),
        via,
        default: true,
        on_link: interface.needs_on_link(via),
        metric: default_route_metric(interfaces, &interface.name, via.is_ipv6()),
    };
    let mut routes = Vec::new();
    routes.extend(interface.gateway4.map(|gateway| default("0.0.0.0/0", gateway.into())));
    routes.extend(interface.gateway6.map(|gateway| default("::/0", gateway.into())));
    routes.extend(interface.static_routes().map(|route| RouteSpec {
        to: format!("{}/{}", route.network, route.prefixlen),
        via: route.gateway.into(),
        default: false,
        on_link: interface.needs_on_link(route.gateway.into()),
        metric: None,
    }));
    routes
}

/// The system-wide default gateways: which interface has each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gateways<'a> {
    pub ipv4: Option<(&'a str, std::net::Ipv4Addr)>,
    pub ipv6: Option<(&'a str, std::net::Ipv6Addr)>,
}

/// The one IPv4 and the one IPv6 default gateway across all interfaces:
/// formats with a single system-wide default route cannot hold more.
pub fn single_gateways(interfaces: &Interfaces) -> Result<Gateways<'_>, String> {
    let gateways4: Vec<_> = interfaces
        .values()
        .filter_map(|interface| interface.gateway4.map(|gateway| (interface.name.as_str(), gateway)))
        .collect();
    let gateways6: Vec<_> = interfaces
        .values()
        .filter_map(|interface| interface.gateway6.map(|gateway| (interface.name.as_str(), gateway)))
        .collect();
    if gateways4.len() > 1 {
        return Err("Multiple IPv4 default routes specified".to_owned());
    }
    if gateways6.len() > 1 {
        return Err("Multiple IPv6 default routes specified".to_owned());
    }
    Ok(Gateways {
        ipv4: gateways4.first().copied(),
        ipv6: gateways6.first().copied(),
    })
}

/// An interface's `ifcfg-*` file (Red Hat, SuSE): not loopback's, not a
/// backup or a disabled copy (no `.` in the name).
pub fn is_ifcfg_file(name: &str) -> bool {
    name.starts_with("ifcfg-") && name != "ifcfg-lo" && !name.contains('.')
}

/// Red Hat's and SuSE's `network` service, restarted through its init
/// script where there is one, else systemd.
pub fn restart_network_service() -> Result<Step, String> {
    const FAILURE: &str = "Couldn't restart network";
    Ok(if crate::current::exists("/etc/init.d/network")? {
        Step::required(FAILURE, &["/etc/init.d/network", "restart"])
    } else {
        Step::required(FAILURE, &["/usr/bin/systemctl", "restart", "network"])
    })
}

/// Names in `dir` that this agent generated before and `plan` no longer
/// writes: they are removed, so an interface that went away leaves no
/// configuration behind. `candidate` picks the names to look at.
pub fn stale_files(dir: &str, plan: &Plan, candidate: impl Fn(&str) -> bool) -> Result<Vec<String>, String> {
    let mut stale = Vec::new();
    for name in crate::current::list(dir)? {
        let path = format!("{dir}/{name}");
        if !candidate(&name) || plan.contents(&path).is_some() {
            continue;
        }
        if crate::current::read(&path)?.is_some_and(|contents| crate::plan::is_generated(&contents)) {
            stale.push(path);
        }
    }
    Ok(stale)
}

#[cfg(test)]
pub mod tests {
    use guestward_sdk::testing;

    /// A fresh test host holding `files`.
    pub fn machine(files: &[(&str, &str)]) {
        testing::reset();
        testing::with_host(|host| {
            for (path, contents) in files {
                host.files.insert((*path).to_owned(), contents.as_bytes().to_vec());
            }
        });
    }

    /// `entries` normalised against the §8.6 NICs (eth0 `bc:76:4e:20:5e:b2`,
    /// eth1 `bc:76:4e:20:5e:fb`).
    pub fn interfaces(entries: &[serde_json::Value]) -> crate::config::Interfaces {
        crate::config::normalise(entries, &crate::config::tests::vector_nics()).unwrap()
    }

    /// A /32 public address whose provider gateway is outside it, and a
    /// static route through a next hop outside the NIC's prefix.
    pub fn outside_gateway() -> crate::config::Interfaces {
        interfaces(&[
            serde_json::json!({"mac": "bc:76:4e:20:5e:b2", "gateway": "198.51.100.1",
            "ips": [{"ip": "203.0.113.7", "netmask": "255.255.255.255"}],
            "ip6s": [{"ip": "2001:db8:7::7", "netmask": 128, "gateway": "2001:db8:1::1"}],
            "routes": [{"route": "10.20.0.0", "netmask": "255.255.0.0", "gateway": "198.51.100.9"}]}),
        ])
    }

    /// Two NICs that each have an IPv4 gateway.
    pub fn two_gateways() -> crate::config::Interfaces {
        interfaces(&[
            serde_json::json!({"mac": "bc:76:4e:20:5e:b2", "gateway": "192.0.2.1",
                "ips": [{"ip": "192.0.2.10", "netmask": "255.255.255.0"}]}),
            serde_json::json!({"mac": "bc:76:4e:20:5e:fb", "gateway": "198.51.100.1",
                "ips": [{"ip": "198.51.100.10", "netmask": "255.255.255.0"}]}),
        ])
    }

    /// The legacy agent's single-interface test input (§8.3): eth0,
    /// `public`, 00:11:22:33:44:55, IPv4 or IPv6 only.
    pub fn single(ipv6: bool) -> crate::config::Interfaces {
        let entry = if ipv6 {
            serde_json::json!({"label": "public", "mac": "00:11:22:33:44:55",
                "ip6s": [{"ip": "2001:db8::42", "netmask": 96, "enabled": "1", "gateway": "2001:db8::1"}],
                "dns": ["2001:db8::2"]})
        } else {
            serde_json::json!({"label": "public", "mac": "00:11:22:33:44:55", "gateway": "192.0.2.1",
                "ips": [{"ip": "192.0.2.42", "netmask": "255.255.255.0", "enabled": "1"}],
                "dns": ["192.0.2.2"]})
        };
        let nics = [crate::config::LocalNic {
            name: "eth0".into(),
            mac: "00:11:22:33:44:55".into(),
            up: true,
        }];
        crate::config::normalise(&[entry], &nics).unwrap()
    }

    /// The extra Debian/RedHat edge vector: two IPv4 addresses, a default
    /// route through the gateway (skipped) and one more route.
    pub fn edge() -> crate::config::Interfaces {
        let entry = serde_json::json!({"label": "public", "mac": "00:11:22:33:44:55", "gateway": "203.0.113.1",
            "ips": [{"ip": "203.0.113.10", "netmask": "255.255.255.0", "enabled": "1"},
                    {"ip": "203.0.113.11", "netmask": "255.255.255.0", "enabled": "1"}],
            "dns": ["8.8.8.8"],
            "routes": [{"route": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "203.0.113.1"},
                       {"route": "198.51.100.0", "netmask": "255.255.255.0", "gateway": "203.0.113.254"}]});
        let nics = [crate::config::LocalNic {
            name: "eth0".into(),
            mac: "00:11:22:33:44:55".into(),
            up: true,
        }];
        crate::config::normalise(&[entry], &nics).unwrap()
    }
}
