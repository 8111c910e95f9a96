//! The network configuration Nova sends (`vm-data/networking/<MAC>`),
//! checked and normalised (legacy-agent.md §3.8.1). Every error is found
//! here, before any file is touched, with the legacy agent's texts.
//!
//! Deliberate differences from the legacy agent, all documented in the
//! README:
//!
//! * every address, mask, gateway and DNS server is parsed, and a label or
//!   value that could break a configuration file is refused, so nothing
//!   the renderers write can inject a line;
//! * an IP without `enabled` counts as enabled (the legacy agent silently
//!   dropped it); `"0"` still disables it, and an interface left with no
//!   enabled IP is an error, as one with none at all;
//! * the IPv6 default gateway is the last non-null per-IP `gateway`, else
//!   `gateway6`, else `gateway_v6` (the key Nova actually writes, which the
//!   legacy agent ignored); a `null` never erases one already found;
//! * a non-canonical netmask says so (`Invalid netmask '255.0.255.0'`)
//!   instead of Python's bare KeyError text;
//! * two entries for one interface are an error instead of the last one
//!   silently winning;
//! * everything is ordered: interfaces by name, addresses and routes as
//!   given.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use guestward_sdk::{EXCERPT_CHARS, excerpt};
use serde_json::Value;

/// One local network interface, as the `network` interface lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNic {
    pub name: String,
    pub mac: String,
    pub up: bool,
}

/// The normalised configuration of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    /// Lower-case.
    pub mac: String,
    pub label: Option<String>,
    pub up: bool,
    pub ip4s: Vec<Ipv4>,
    pub ip6s: Vec<Ipv6>,
    pub gateway4: Option<Ipv4Addr>,
    pub gateway6: Option<Ipv6Addr>,
    pub routes: Vec<Route>,
    pub dns: Vec<IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4 {
    pub address: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub prefixlen: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6 {
    pub address: Ipv6Addr,
    pub prefixlen: u8,
}

/// A static IPv4 route (Nova sends no IPv6 routes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub network: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub prefixlen: u8,
    pub gateway: Ipv4Addr,
}

impl Route {
    /// `0.0.0.0/0.0.0.0`.
    pub fn is_default(&self) -> bool {
        self.network.is_unspecified() && self.prefixlen == 0
    }
}

/// Every configured interface, by name.
pub type Interfaces = BTreeMap<String, Interface>;

impl Ipv4 {
    /// `address/prefixlen`.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.address, self.prefixlen)
    }
}

impl Ipv6 {
    /// `address/prefixlen`.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.address, self.prefixlen)
    }
}

impl Interface {
    /// Every address as `address/prefixlen`, IPv4 first.
    pub fn cidrs(&self) -> Vec<String> {
        self.ip4s
            .iter()
            .map(Ipv4::cidr)
            .chain(self.ip6s.iter().map(Ipv6::cidr))
            .collect()
    }

    /// Whether `route` is the default route through this interface's own
    /// gateway, which every format already holds as the gateway (the
    /// legacy agent skipped it too).
    pub fn repeats_gateway(&self, route: &Route) -> bool {
        route.is_default() && Some(route.gateway) == self.gateway4
    }

    /// The routes to write: all but one that repeats the gateway.
    pub fn static_routes(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter().filter(|route| !self.repeats_gateway(route))
    }

    /// Whether a route through `gateway` needs the on-link flag: the
    /// gateway is in none of this interface's subnets (a /32 address with
    /// a provider gateway, a next hop outside the prefix), so the kernel
    /// would refuse the route as unreachable. IPv6 link-local gateways are
    /// always on the link.
    pub fn needs_on_link(&self, gateway: IpAddr) -> bool {
        match gateway {
            IpAddr::V4(gateway) => !self
                .ip4s
                .iter()
                .any(|ip| same_prefix4(ip.address, gateway, ip.prefixlen)),
            IpAddr::V6(gateway) => {
                let link_local = gateway.segments()[0] & 0xffc0 == 0xfe80;
                !link_local
                    && !self
                        .ip6s
                        .iter()
                        .any(|ip| same_prefix6(ip.address, gateway, ip.prefixlen))
            }
        }
    }

    /// The (IPv4, IPv6) pairs the legacy formats give one stanza or alias
    /// each: the two lists zipped, the shorter padded with `None`.
    pub fn pairs(&self) -> Vec<(Option<&Ipv4>, Option<&Ipv6>)> {
        let count = self.ip4s.len().max(self.ip6s.len());
        (0..count)
            .map(|index| (self.ip4s.get(index), self.ip6s.get(index)))
            .collect()
    }
}

fn same_prefix4(a: Ipv4Addr, b: Ipv4Addr, prefixlen: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefixlen)).unwrap_or(0);
    u32::from(a) & mask == u32::from(b) & mask
}

fn same_prefix6(a: Ipv6Addr, b: Ipv6Addr, prefixlen: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefixlen)).unwrap_or(0);
    u128::from(a) & mask == u128::from(b) & mask
}

/// The metric of `name`'s default route of one family (`ipv6`), when
/// several interfaces have a gateway of that family: 100 for the first by
/// name, 200 for the next, and so on, so that every format installs all of
/// them (two default routes of equal metric collide: ifupdown's second
/// `ifup` fails with "File exists", netplan refuses them) and the first
/// interface's is preferred. `None` when one interface at most has one:
/// each format's own default, as the legacy agent wrote it.
pub fn default_route_metric(interfaces: &Interfaces, name: &str, ipv6: bool) -> Option<u32> {
    let with_gateway: Vec<&str> = interfaces
        .values()
        .filter(|interface| {
            if ipv6 {
                interface.gateway6.is_some()
            } else {
                interface.gateway4.is_some()
            }
        })
        .map(|interface| interface.name.as_str())
        .collect();
    if with_gateway.len() < 2 {
        return None;
    }
    let position = with_gateway.iter().position(|candidate| *candidate == name)?;
    u32::try_from(position + 1).ok().map(|rank| rank * 100)
}

/// Normalise the XenStore entries against the local interfaces.
pub fn normalise(entries: &[Value], nics: &[LocalNic]) -> Result<Interfaces, String> {
    let mut interfaces = Interfaces::new();
    for entry in entries {
        let interface = normalise_one(entry, nics)?;
        if let Some(twice) = interfaces.insert(interface.name.clone(), interface) {
            return Err(format!(
                "Two configurations for interface {} ({})",
                twice.name, twice.mac
            ));
        }
    }
    Ok(interfaces)
}

fn normalise_one(entry: &Value, nics: &[LocalNic]) -> Result<Interface, String> {
    let mac = entry
        .get("mac")
        .and_then(Value::as_str)
        .ok_or("No MAC found in config")?
        .to_ascii_lowercase();
    // The last one wins on duplicates, as in the legacy agent's map.
    let nic = nics
        .iter()
        .rev()
        .find(|nic| nic.mac == mac)
        .ok_or_else(|| format!("Unknown interface MAC {}", shown(&mac)))?;
    check_interface_name(&nic.name)?;
    let list = |key: &str| match entry.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items.clone()),
        Some(other) => Err(format!("Invalid value {} for '{key}' key", shown(other))),
    };
    let (ips, ip6s) = (list("ips")?, list("ip6s")?);
    if ips.is_empty() && ip6s.is_empty() {
        return Err("No IPs found for interface".to_owned());
    }
    let gateway4 = optional_address(entry.get("gateway"), "IPv4 gateway", parse_ipv4)?;
    let mut gateway6 = optional_address(entry.get("gateway6"), "IPv6 gateway", parse_ipv6)?;
    let mut ip4s = Vec::new();
    for ip in ips.iter().filter_map(|ip| enabled(ip).transpose()) {
        ip4s.push(ipv4(ip?)?);
    }
    let mut ipv6s = Vec::new();
    for ip in ip6s.iter().filter_map(|ip| enabled(ip).transpose()) {
        let ip = ip?;
        if let Some(gateway) = optional_address(ip.get("gateway"), "IPv6 gateway", parse_ipv6)? {
            gateway6 = Some(gateway);
        }
        ipv6s.push(ipv6(ip)?);
    }
    if gateway6.is_none() {
        gateway6 = optional_address(entry.get("gateway_v6"), "IPv6 gateway", parse_ipv6)?;
    }
    if ip4s.is_empty() && ipv6s.is_empty() {
        return Err("No IPs found for interface".to_owned());
    }
    let routes = list("routes")?.iter().map(route).collect::<Result<Vec<_>, _>>()?;
    let dns = list("dns")?
        .iter()
        .map(|server| {
            let text = server
                .as_str()
                .ok_or_else(|| format!("Invalid DNS server {}", shown(server)))?;
            text.parse::<IpAddr>()
                .map_err(|_| format!("Invalid DNS server '{}'", shown(text)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Interface {
        name: nic.name.clone(),
        mac,
        label: label(entry.get("label"))?,
        up: nic.up,
        ip4s,
        ip6s: ipv6s,
        gateway4,
        gateway6,
        routes,
        dns,
    })
}

/// The IP if it is enabled: `int(ip.get("enabled", 1))` in Python terms.
fn enabled(ip: &Value) -> Result<Option<&Value>, String> {
    let value = match ip.get("enabled") {
        None => return Ok(Some(ip)),
        Some(value) => value,
    };
    let number = match value {
        Value::Bool(flag) => Some(i64::from(*flag)),
        Value::Number(number) => number.as_i64().or_else(|| number.as_f64().map(|float| float as i64)),
        Value::String(text) => text.trim().parse::<i64>().ok(),
        _ => None,
    };
    let repr = match value {
        Value::String(text) => format!("'{text}'"),
        other => other.to_string(),
    };
    match number {
        Some(0) => Ok(None),
        Some(_) => Ok(Some(ip)),
        None => Err(format!("Invalid value {} for 'enabled' key", shown(&repr))),
    }
}

fn ipv4(ip: &Value) -> Result<Ipv4, String> {
    let address = required_text(ip, "ip", "Missing 'ip' key for IPv4 address")?;
    let netmask = required_text(ip, "netmask", "Missing 'netmask' key for IPv4 address")?;
    let (netmask, prefixlen) = dotted_netmask(netmask)?;
    Ok(Ipv4 {
        address: parse_ipv4(address).ok_or_else(|| format!("Invalid IPv4 address '{}'", shown(address)))?,
        netmask,
        prefixlen,
    })
}

fn ipv6(ip: &Value) -> Result<Ipv6, String> {
    let address = ip
        .get("ip")
        .or_else(|| ip.get("address"))
        .and_then(Value::as_str)
        .ok_or("Missing 'ip' or 'address' key for IPv6 address")?;
    let prefix = ip.get("netmask").ok_or("Missing 'netmask' key for IPv6 address")?;
    let prefixlen = match prefix {
        Value::Number(number) => number.as_u64(),
        Value::String(text) => text.trim().parse::<u64>().ok(),
        _ => None,
    }
    .filter(|prefix| *prefix <= 128)
    .ok_or_else(|| format!("Invalid IPv6 prefix length {}", shown(prefix)))?;
    Ok(Ipv6 {
        address: parse_ipv6(address).ok_or_else(|| format!("Invalid IPv6 address '{}'", shown(address)))?,
        prefixlen: prefixlen as u8,
    })
}

fn route(route: &Value) -> Result<Route, String> {
    let network = required_text(route, "route", "Missing 'route' key for route")?;
    let netmask = required_text(route, "netmask", "Missing 'netmask' key for route")?;
    let gateway = required_text(route, "gateway", "Missing 'gateway' key for route")?;
    let (netmask, prefixlen) = dotted_netmask(netmask)?;
    Ok(Route {
        network: parse_ipv4(network).ok_or_else(|| format!("Invalid route network '{}'", shown(network)))?,
        netmask,
        prefixlen,
        gateway: parse_ipv4(gateway).ok_or_else(|| format!("Invalid route gateway '{}'", shown(gateway)))?,
    })
}

fn required_text<'a>(value: &'a Value, key: &str, missing: &str) -> Result<&'a str, String> {
    match value.get(key) {
        None | Some(Value::Null) => Err(missing.to_owned()),
        Some(Value::String(text)) => Ok(text),
        Some(other) => Err(format!("Invalid value {} for '{key}' key", shown(other))),
    }
}

fn optional_address<T>(value: Option<&Value>, what: &str, parse: fn(&str) -> Option<T>) -> Result<Option<T>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => parse(text)
            .map(Some)
            .ok_or_else(|| format!("Invalid {what} '{}'", shown(text))),
        Some(other) => Err(format!("Invalid {what} {}", shown(other))),
    }
}

fn parse_ipv4(text: &str) -> Option<Ipv4Addr> {
    text.parse().ok()
}

fn parse_ipv6(text: &str) -> Option<Ipv6Addr> {
    text.parse().ok()
}

/// A dotted netmask and its prefix length; only the 33 canonical masks.
pub fn dotted_netmask(text: &str) -> Result<(Ipv4Addr, u8), String> {
    let invalid = || format!("Invalid netmask '{}'", shown(text));
    let mask: Ipv4Addr = text.parse().map_err(|_| invalid())?;
    let bits = u32::from(mask);
    let prefixlen = bits.leading_ones();
    if bits.checked_shl(prefixlen).unwrap_or(0) != 0 {
        return Err(invalid());
    }
    Ok((mask, prefixlen as u8))
}

/// A label goes only into comments, in every format: one line of text
/// (no control characters, nor the Unicode line separators YAML honours).
fn label(value: Option<&Value>) -> Result<Option<String>, String> {
    let breaks_a_line = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.chars().any(breaks_a_line) => Err(format!("Invalid label {:?}", shown(text))),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(format!("Invalid label {}", shown(other))),
    }
}

/// At most [`EXCERPT_CHARS`] characters of a value from XenStore, for an
/// error reply: the value can be megabytes long, and the reply must fit
/// the command's reply limit to reach the hypervisor at all.
fn shown(value: &(impl std::fmt::Display + ?Sized)) -> String {
    excerpt(&value.to_string(), EXCERPT_CHARS).into_owned()
}

/// A hostname every format can hold, quoted or not (FreeBSD's `rc.conf`
/// is a shell script and has it bare): 1 to 64 letters, digits, `-`, `_`
/// and `.`.
pub fn check_hostname(hostname: &str) -> Result<(), String> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    if hostname.is_empty() || hostname.len() > 64 || !hostname.bytes().all(allowed) {
        return Err(format!("Invalid hostname {:?}", shown(hostname)));
    }
    Ok(())
}

/// An interface name goes into file names and shell variable names:
/// letters, digits, `-`, `_` and `.` only.
fn check_interface_name(name: &str) -> Result<(), String> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    if name.is_empty() || name.len() > 15 || !name.bytes().all(allowed) {
        return Err(format!("Unsupported interface name {:?}", shown(name)));
    }
    Ok(())
}

#[cfg(test)]
pub mod tests {
    use serde_json::json;

    use super::*;

    /// The local NICs of the end-to-end vector (legacy-agent.md §8.6).
    pub fn vector_nics() -> Vec<LocalNic> {
        [
            ("eth0", "bc:76:4e:20:5e:b2", true),
            ("eth1", "bc:76:4e:20:5e:fb", true),
            ("eth2", "bc:76:4e:20:5e:ff", false),
        ]
        .into_iter()
        .map(|(name, mac, up)| LocalNic {
            name: name.into(),
            mac: mac.into(),
            up,
        })
        .collect()
    }

    /// The XenStore entries of the end-to-end vector.
    pub fn vector_entries() -> Vec<Value> {
        vec![
            json!({"label":"public","broadcast":"104.130.169.255","ips":[{"ip":"104.130.169.159","netmask":"255.255.255.0","enabled":"1","gateway":"104.130.169.1"},{"ip":"104.130.169.160","netmask":"255.255.255.0","enabled":"1","gateway":"104.130.169.1"}],"ip6s":[{"ip":"2001:4802:7803:104:be76:4eff:fe20:5eb2","netmask":64,"enabled":"1","gateway":"fe80::def"}],"mac":"BC:76:4E:20:5E:B2","gateway_v6":"fe80::def","dns":["69.20.0.164","69.20.0.196"],"gateway":"104.130.169.1"}),
            json!({"label":"private","broadcast":"10.176.223.255","ips":[{"ip":"10.176.195.183","netmask":"255.255.224.0","enabled":"1","gateway":null}],"mac":"BC:76:4E:20:5E:FB","routes":[{"route":"10.208.0.0","netmask":"255.240.0.0","gateway":"10.176.192.1"},{"route":"10.176.0.0","netmask":"255.240.0.0","gateway":"10.176.192.1"}],"gateway":null}),
        ]
    }

    pub fn vector() -> Interfaces {
        normalise(&vector_entries(), &vector_nics()).unwrap()
    }

    #[test]
    fn the_end_to_end_vector_normalises_as_the_legacy_agent_did() {
        let config = vector();
        assert_eq!(config.keys().collect::<Vec<_>>(), ["eth0", "eth1"]);
        let eth0 = &config["eth0"];
        assert_eq!(eth0.gateway4, Some("104.130.169.1".parse().unwrap()));
        assert_eq!(eth0.gateway6, Some("fe80::def".parse().unwrap()));
        assert_eq!(eth0.ip4s.iter().map(|ip| ip.prefixlen).collect::<Vec<_>>(), [24, 24]);
        assert_eq!(eth0.ip6s[0].prefixlen, 64);
        assert_eq!(eth0.dns.len(), 2);
        let eth1 = &config["eth1"];
        assert_eq!((eth1.gateway4, eth1.gateway6), (None, None));
        assert_eq!(eth1.ip4s[0].prefixlen, 19);
        assert_eq!(
            eth1.routes.iter().map(|route| route.prefixlen).collect::<Vec<_>>(),
            [12, 12]
        );
        assert!(eth1.dns.is_empty() && eth1.up && eth1.label.as_deref() == Some("private"));
    }

    fn error(entry: Value) -> String {
        normalise(&[entry], &vector_nics()).unwrap_err()
    }

    const MAC: &str = "bc:76:4e:20:5e:b2";

    #[test]
    fn every_normalisation_error_has_its_text() {
        let ip = |extra: Value| {
            let mut ip = json!({"ip": "192.0.2.1", "netmask": "255.255.255.0", "enabled": "1"});
            ip.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            ip
        };
        let cases = [
            (json!({}), "No MAC found in config"),
            (
                json!({"mac": "00:00:00:00:00:01", "ips": [ip(json!({}))]}),
                "Unknown interface MAC 00:00:00:00:00:01",
            ),
            (json!({"mac": MAC}), "No IPs found for interface"),
            (
                json!({"mac": MAC, "ips": [], "ip6s": null}),
                "No IPs found for interface",
            ),
            (
                json!({"mac": MAC, "ips": [ip(json!({"enabled": "yes"}))]}),
                "Invalid value 'yes' for 'enabled' key",
            ),
            (
                json!({"mac": MAC, "ips": [ip(json!({"enabled": "0"}))]}),
                "No IPs found for interface",
            ),
            (
                json!({"mac": MAC, "ips": [{"netmask": "255.0.0.0"}]}),
                "Missing 'ip' key for IPv4 address",
            ),
            (
                json!({"mac": MAC, "ips": [{"ip": "192.0.2.1"}]}),
                "Missing 'netmask' key for IPv4 address",
            ),
            (
                json!({"mac": MAC, "ips": [ip(json!({"netmask": "255.0.255.0"}))]}),
                "Invalid netmask '255.0.255.0'",
            ),
            (
                json!({"mac": MAC, "ips": [ip(json!({"ip": "192.0.2.300"}))]}),
                "Invalid IPv4 address '192.0.2.300'",
            ),
            (
                json!({"mac": MAC, "ip6s": [{"netmask": 64}]}),
                "Missing 'ip' or 'address' key for IPv6 address",
            ),
            (
                json!({"mac": MAC, "ip6s": [{"ip": "2001:db8::1"}]}),
                "Missing 'netmask' key for IPv6 address",
            ),
            (
                json!({"mac": MAC, "ip6s": [{"ip": "2001:db8::1", "netmask": 129}]}),
                "Invalid IPv6 prefix length 129",
            ),
            (
                json!({"mac": MAC, "ips": [ip(json!({}))], "routes": [{"netmask": "255.0.0.0", "gateway": "192.0.2.9"}]}),
                "Missing 'route' key for route",
            ),
            (
                json!({"mac": MAC, "ips": [ip(json!({}))], "routes": [{"route": "10.0.0.0", "gateway": "192.0.2.9"}]}),
                "Missing 'netmask' key for route",
            ),
            (
                json!({"mac": MAC, "ips": [ip(json!({}))], "routes": [{"route": "10.0.0.0", "netmask": "255.0.0.0"}]}),
                "Missing 'gateway' key for route",
            ),
            (
                json!({"mac": MAC, "ips": [ip(json!({}))], "gateway": "not-an-ip"}),
                "Invalid IPv4 gateway 'not-an-ip'",
            ),
            (
                json!({"mac": MAC, "ips": [ip(json!({}))], "dns": ["8.8.8.8; rm -rf /"]}),
                "Invalid DNS server '8.8.8.8; rm -rf /'",
            ),
            (
                json!({"mac": MAC, "ips": [ip(json!({}))], "label": "pub\nIPADDR=6.6.6.6"}),
                "Invalid label \"pub\\nIPADDR=6.6.6.6\"",
            ),
        ];
        for (entry, expected) in cases {
            assert_eq!(error(entry.clone()), expected, "{entry}");
        }
    }

    #[test]
    fn legacy_quirks_decided() {
        // No `enabled`: kept (the legacy agent dropped the IP).
        let config = normalise(
            &[json!({"mac": MAC, "ips": [{"ip": "192.0.2.1", "netmask": "255.255.255.0"}]})],
            &vector_nics(),
        )
        .unwrap();
        assert_eq!(config["eth0"].ip4s.len(), 1);
        // gateway_v6 is used when nothing else names the IPv6 gateway.
        let config = normalise(
            &[json!({"mac": MAC, "ip6s": [{"ip": "2001:db8::2", "netmask": "64", "enabled": 1}], "gateway_v6": "2001:db8::1"})],
            &vector_nics(),
        )
        .unwrap();
        assert_eq!(config["eth0"].gateway6, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(config["eth0"].ip6s[0].prefixlen, 64);
        // Two entries for one NIC are an error, not a silent overwrite.
        let entry = json!({"mac": MAC, "ips": [{"ip": "192.0.2.1", "netmask": "255.255.255.0"}]});
        assert_eq!(
            normalise(&[entry.clone(), entry], &vector_nics()).unwrap_err(),
            format!("Two configurations for interface eth0 ({MAC})")
        );
    }

    #[test]
    fn only_the_33_canonical_masks_are_accepted() {
        let valid: Vec<u8> = (0..=32u32)
            .map(|bits| {
                let mask = Ipv4Addr::from(u32::MAX.checked_shl(32 - bits).unwrap_or(0));
                dotted_netmask(&mask.to_string()).unwrap().1
            })
            .collect();
        assert_eq!(valid, (0..=32).collect::<Vec<u8>>());
        for bad in ["255.255.255.1", "0.255.255.255", "255.255.0.255", "24", "255.255.255"] {
            assert!(dotted_netmask(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hostnames_that_would_break_a_file_are_refused() {
        check_hostname("test-server").unwrap();
        check_hostname("a.b.example.com").unwrap();
        for bad in [
            "",
            "two words",
            "a\nb",
            "quote\"d",
            "a;reboot",
            "$(id)",
            "a\u{2028}b",
            &"x".repeat(65),
        ] {
            assert!(check_hostname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn huge_values_are_quoted_short() {
        // Found by `guestward fuzz`: a 100 KB hostname was echoed whole, and
        // the reply, over the 16 KiB limit, reached the hypervisor as a size
        // error instead of "Invalid hostname".
        let huge = "fe80::def".repeat(10_000);
        let text = check_hostname(&huge).unwrap_err();
        assert!(text.starts_with("Invalid hostname \"fe80::def"), "{text}");
        assert!(text.len() < 300, "{} bytes", text.len());

        let nics = [LocalNic {
            name: "eth0".into(),
            mac: "bc:76:4e:20:5e:b2".into(),
            up: true,
        }];
        let entries = [
            serde_json::json!({"mac": huge}),
            serde_json::json!({"mac": "bc:76:4e:20:5e:b2", "ips": [{"ip": huge, "netmask": "255.255.255.0"}]}),
            serde_json::json!({"mac": "bc:76:4e:20:5e:b2", "ips": [{"ip": "10.0.0.2", "netmask": huge}]}),
            serde_json::json!({"mac": "bc:76:4e:20:5e:b2", "ips": {"deep": [huge]}}),
            serde_json::json!({"mac": "bc:76:4e:20:5e:b2", "ips": [{"ip": "10.0.0.2", "netmask": "255.0.0.0"}], "label": [huge]}),
            serde_json::json!({"mac": "bc:76:4e:20:5e:b2", "ips": [{"ip": "10.0.0.2", "netmask": "255.0.0.0"}], "dns": [huge]}),
        ];
        for entry in entries {
            let text = normalise(std::slice::from_ref(&entry), &nics).unwrap_err();
            assert!(text.len() < 300, "{} bytes: {}", text.len(), &text[..80]);
        }
    }
}
