//! The network interfaces with their IP addresses and counters, as qemu-ga
//! reports them: from `getifaddrs(3)` (through nix's safe wrapper: the same
//! source, order and labels qemu-ga sees) and `/proc/net/dev`, or under
//! `--root` from the `--interfaces` file.

use std::io;
use std::net::IpAddr;

/// At most this many interfaces, and addresses over all of them: what a
/// component can be handed without a machine with thousands of veths
/// making one call allocate without bound.
pub const MAX_INTERFACES: usize = 1024;
pub const MAX_ADDRESSES: usize = 4096;

/// One interface, its addresses (IPv4 before IPv6, in the kernel's order)
/// and its counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceDetails {
    pub name: String,
    pub hardware_address: Option<String>,
    pub ip_addresses: Vec<IpPrefix>,
    pub statistics: Option<Statistics>,
}

/// An address and the length of its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpPrefix {
    pub address: IpAddr,
    pub prefix: u8,
}

/// The counters qemu-ga reports, from `/proc/net/dev`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Statistics {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errs: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errs: u64,
    pub tx_dropped: u64,
}

/// The machine's interfaces, as getifaddrs lists them: one per name, in
/// the order the names first appear (link entries come first, by index;
/// a labelled IPv4 address such as `eth0:1` adds its own entry, with its
/// parent's hardware address).
pub fn from_machine() -> io::Result<Vec<InterfaceDetails>> {
    let mut interfaces: Vec<InterfaceDetails> = Vec::new();
    let mut hardware: Vec<(String, String)> = Vec::new();
    for entry in nix::ifaddrs::getifaddrs().map_err(io::Error::from)? {
        let index = match interfaces.iter().position(|nic| nic.name == entry.interface_name) {
            Some(index) => index,
            None => {
                interfaces.push(InterfaceDetails {
                    name: entry.interface_name.clone(),
                    hardware_address: None,
                    ip_addresses: Vec::new(),
                    statistics: None,
                });
                interfaces.len() - 1
            }
        };
        let Some(address) = entry.address else { continue };
        if let Some(link) = address.as_link_addr() {
            let mac = format_mac(link.addr().unwrap_or_default());
            hardware.push((entry.interface_name.clone(), mac.clone()));
            interfaces[index].hardware_address = Some(mac);
        } else if let Some(ip) = ip_of(&address) {
            let prefix = entry.netmask.as_ref().and_then(ip_of).map_or(0, prefix_length);
            interfaces[index].ip_addresses.push(IpPrefix { address: ip, prefix });
        }
    }
    // A label (`eth0:1`) has no link entry: qemu-ga asks the kernel for its
    // hardware address by name, which answers the parent's.
    for nic in &mut interfaces {
        if nic.hardware_address.is_none()
            && let Some((_, mac)) = nic
                .name
                .split_once(':')
                .and_then(|(parent, _)| hardware.iter().find(|(name, _)| name == parent))
        {
            nic.hardware_address = Some(mac.clone());
        }
    }
    // IPv4 before IPv6, each in the kernel's order (getifaddrs lists the
    // families one after the other).
    for nic in &mut interfaces {
        nic.ip_addresses.sort_by_key(|ip| ip.address.is_ipv6());
    }
    check_bounds(&interfaces)?;
    let counters = std::fs::read_to_string("/proc/net/dev")
        .map_err(|error| io::Error::new(error.kind(), format!("/proc/net/dev: {error}")))?;
    let counters = parse_proc_net_dev(&counters);
    for nic in &mut interfaces {
        nic.statistics = counters
            .iter()
            .find(|(name, _)| *name == nic.name)
            .map(|(_, stats)| *stats);
    }
    Ok(interfaces)
}

/// Refuse more interfaces or addresses than a component is handed.
pub fn check_bounds(interfaces: &[InterfaceDetails]) -> io::Result<()> {
    if interfaces.len() > MAX_INTERFACES {
        return Err(io::Error::other(format!(
            "the machine has {} network interfaces, more than the {MAX_INTERFACES} a command is given",
            interfaces.len()
        )));
    }
    let addresses: usize = interfaces.iter().map(|nic| nic.ip_addresses.len()).sum();
    if addresses > MAX_ADDRESSES {
        return Err(io::Error::other(format!(
            "the machine has {addresses} IP addresses, more than the {MAX_ADDRESSES} a command is given"
        )));
    }
    Ok(())
}

fn ip_of(address: &nix::sys::socket::SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    address.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
}

/// The prefix length of a netmask: its one bits (qemu-ga counts them too).
fn prefix_length(mask: IpAddr) -> u8 {
    let ones = match mask {
        IpAddr::V4(mask) => u32::from(mask).count_ones(),
        IpAddr::V6(mask) => u128::from(mask).count_ones(),
    };
    u8::try_from(ones).unwrap_or(u8::MAX)
}

/// Six octets as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(octets: [u8; 6]) -> String {
    let parts: Vec<String> = octets.iter().map(|octet| format!("{octet:02x}")).collect();
    parts.join(":")
}

/// The counters of each interface in `/proc/net/dev`: after the two header
/// lines, `name: rx-bytes rx-packets rx-errs rx-drop fifo frame compressed
/// multicast tx-bytes tx-packets tx-errs tx-drop …`. Lines that do not
/// have that shape are skipped.
pub fn parse_proc_net_dev(text: &str) -> Vec<(&str, Statistics)> {
    text.lines()
        .filter_map(|line| {
            let (name, numbers) = line.split_once(':')?;
            let numbers: Vec<u64> = numbers
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            if numbers.len() < 12 {
                return None;
            }
            let stats = Statistics {
                rx_bytes: numbers[0],
                rx_packets: numbers[1],
                rx_errs: numbers[2],
                rx_dropped: numbers[3],
                tx_bytes: numbers[8],
                tx_packets: numbers[9],
                tx_errs: numbers[10],
                tx_dropped: numbers[11],
            };
            Some((name.trim(), stats))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_dev_gives_qemu_gas_eight_counters() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
            face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
            lo: 94042181   15663    0    0    0     0          0         0 94042181   15663    0    0    0     0       0          0\n  \
            eth0: 10 2 3 4 0 0 0 0 20 5 6 7 0 0 0 0\n  \
            bad: 1 2 three\n  short: 1 2 3\n";
        let parsed = parse_proc_net_dev(text);
        let names: Vec<&str> = parsed.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, ["lo", "eth0"]);
        assert_eq!(
            parsed[1].1,
            Statistics {
                rx_bytes: 10,
                rx_packets: 2,
                rx_errs: 3,
                rx_dropped: 4,
                tx_bytes: 20,
                tx_packets: 5,
                tx_errs: 6,
                tx_dropped: 7,
            }
        );
    }

    #[test]
    fn netmasks_become_prefix_lengths() {
        assert_eq!(prefix_length("255.255.255.0".parse().unwrap()), 24);
        assert_eq!(prefix_length("255.0.0.0".parse().unwrap()), 8);
        assert_eq!(prefix_length("ffff:ffff:ffff:ffff::".parse().unwrap()), 64);
        assert_eq!(
            prefix_length("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap()),
            128
        );
        assert_eq!(format_mac([0x02, 0xfc, 0, 0, 0, 0x0a]), "02:fc:00:00:00:0a");
    }

    #[test]
    fn more_interfaces_or_addresses_than_a_command_is_given_are_refused() {
        let nic = |addresses: usize| InterfaceDetails {
            name: "veth".into(),
            hardware_address: None,
            ip_addresses: vec![
                IpPrefix {
                    address: IpAddr::from([10, 0, 0, 1]),
                    prefix: 8
                };
                addresses
            ],
            statistics: None,
        };
        assert!(check_bounds(&vec![nic(0); MAX_INTERFACES]).is_ok());
        let error = check_bounds(&vec![nic(0); MAX_INTERFACES + 1]).unwrap_err();
        assert!(error.to_string().contains("more than the 1024"), "{error}");
        let error = check_bounds(&[nic(MAX_ADDRESSES), nic(1)]).unwrap_err();
        assert!(error.to_string().contains("4097 IP addresses"), "{error}");
    }

    /// The machine's own: loopback is listed with 127.0.0.1/8 and its
    /// counters, as qemu-ga lists it.
    #[test]
    fn the_machine_lists_loopback_with_its_address_and_counters() {
        let interfaces = from_machine().unwrap();
        let lo = interfaces.iter().find(|nic| nic.name == "lo").unwrap();
        assert_eq!(lo.hardware_address.as_deref(), Some("00:00:00:00:00:00"));
        if lo.ip_addresses.iter().any(|ip| ip.address.is_ipv4()) {
            assert_eq!(
                lo.ip_addresses[0],
                IpPrefix {
                    address: IpAddr::from([127, 0, 0, 1]),
                    prefix: 8
                }
            );
            assert!(lo.statistics.is_some());
        }
    }
}
