//! `guest-network-get-interfaces`: every interface with its hardware
//! address, IP addresses and counters, shaped as qemu-ga shapes them: an
//! interface without an IP address has neither `ip-addresses` nor
//! `statistics` (qemu-ga gathers counters only for interfaces it found an
//! address for).

use guestward_sdk::network::{self, InterfaceDetails, IpAddressType};
use guestward_sdk::{Reply, qga};
use serde_json::{Map, Value, json};

pub fn guest_interfaces() -> Result<Value, Reply> {
    let interfaces = network::addresses().map_err(|error| qga::generic_error(error.text().to_owned()))?;
    Ok(Value::Array(interfaces.iter().map(interface).collect()))
}

fn interface(nic: &InterfaceDetails) -> Value {
    let mut members = Map::new();
    members.insert("name".to_owned(), json!(nic.name));
    if let Some(mac) = &nic.hardware_address {
        members.insert("hardware-address".to_owned(), json!(mac));
    }
    if !nic.ip_addresses.is_empty() {
        let addresses: Vec<Value> = nic
            .ip_addresses
            .iter()
            .map(|ip| {
                let family = match ip.address_type {
                    IpAddressType::Ipv4 => "ipv4",
                    IpAddressType::Ipv6 => "ipv6",
                };
                json!({"ip-address-type": family, "ip-address": ip.address, "prefix": ip.prefix})
            })
            .collect();
        members.insert("ip-addresses".to_owned(), Value::Array(addresses));
        if let Some(stats) = &nic.statistics {
            members.insert(
                "statistics".to_owned(),
                json!({
                    "rx-bytes": stats.rx_bytes,
                    "rx-packets": stats.rx_packets,
                    "rx-errs": stats.rx_errs,
                    "rx-dropped": stats.rx_dropped,
                    "tx-bytes": stats.tx_bytes,
                    "tx-packets": stats.tx_packets,
                    "tx-errs": stats.tx_errs,
                    "tx-dropped": stats.tx_dropped,
                }),
            );
        }
    }
    Value::Object(members)
}
