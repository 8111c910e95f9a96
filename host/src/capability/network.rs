//! `network`: the machine's network interfaces, read-only, granted by
//! `network = true`: from `/sys/class/net` (`interfaces`), from
//! `getifaddrs(3)` and `/proc/net/dev` (`addresses`), or under `--root`
//! from the JSON file given with `--interfaces`.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use super::{CallInfo, Capability, Refusals};
use crate::policy::{PolicyError, SectionErrors};
use crate::root::{InterfaceDetails, Root};
use crate::wit::network::{self as wit, Error, InterfaceStatistics, IpAddress, IpAddressType, NetworkInterface};

/// The `network` capability: the interfaces of the agent's root.
#[derive(Debug)]
pub struct Network {
    root: Arc<Root>,
}

impl Network {
    /// Lists the interfaces of `root`.
    pub fn new(root: Arc<Root>) -> Self {
        Self { root }
    }
}

/// The `network` grant (`network = true`).
#[derive(Debug, PartialEq, Eq)]
pub struct NetworkGrant;

/// One call's view of the interfaces.
#[derive(Debug)]
pub struct CallNetwork {
    granted: bool,
    root: Arc<Root>,
    component: String,
    refusals: Refusals,
}

impl Capability for Network {
    const NAME: &'static str = "network";
    /// `network = true`; `false` grants nothing.
    type Config = bool;
    type Grant = NetworkGrant;
    type CallState = CallNetwork;

    fn grant(enabled: bool, _errors: &SectionErrors<'_>) -> Result<Option<NetworkGrant>, PolicyError> {
        Ok(enabled.then_some(NetworkGrant))
    }

    fn describe(_grant: &NetworkGrant) -> Vec<String> {
        vec!["may list the network interfaces".to_owned()]
    }

    fn how_to_grant() -> String {
        "its policy entry has no `network = true`".to_owned()
    }

    fn call_state(&self, grant: Option<&Arc<NetworkGrant>>, call: &CallInfo<'_>) -> CallNetwork {
        CallNetwork {
            granted: grant.is_some(),
            root: self.root.clone(),
            component: call.component.to_owned(),
            refusals: call.refusals.clone(),
        }
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut CallNetwork,
    ) -> wasmtime::Result<()> {
        wit::add_to_linker::<_, HasSelf<CallNetwork>>(linker, get)
    }
}

impl CallNetwork {
    /// Refuse unless granted; else read from the root off the async thread.
    async fn read<T: Send + 'static>(&mut self, read: fn(&Root) -> std::io::Result<T>) -> Result<T, Error> {
        if !self.granted {
            self.refusals.note(Network::NAME);
            return Err(Error::NotGranted(format!(
                "component {} may not list the network interfaces",
                self.component
            )));
        }
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || read(&root))
            .await
            .map_err(|error| Error::Failed(format!("cannot list the network interfaces: {error}")))?
            .map_err(|error| Error::Failed(format!("cannot list the network interfaces: {error}")))
    }
}

impl wit::Host for CallNetwork {
    async fn addresses(&mut self) -> Result<Vec<wit::InterfaceDetails>, Error> {
        let details = self.read(Root::network_details).await?;
        Ok(details.into_iter().map(to_wit).collect())
    }

    async fn interfaces(&mut self) -> Result<Vec<NetworkInterface>, Error> {
        let interfaces = self.read(Root::network_interfaces).await?;
        Ok(interfaces
            .into_iter()
            .map(|nic| NetworkInterface {
                name: nic.name,
                mac: nic.mac,
                up: nic.up,
            })
            .collect())
    }
}

fn to_wit(nic: InterfaceDetails) -> wit::InterfaceDetails {
    wit::InterfaceDetails {
        name: nic.name,
        hardware_address: nic.hardware_address,
        ip_addresses: nic
            .ip_addresses
            .into_iter()
            .map(|ip| IpAddress {
                address_type: if ip.address.is_ipv4() {
                    IpAddressType::Ipv4
                } else {
                    IpAddressType::Ipv6
                },
                address: ip.address.to_string(),
                prefix: ip.prefix,
            })
            .collect(),
        statistics: nic.statistics.map(|stats| InterfaceStatistics {
            rx_bytes: stats.rx_bytes,
            rx_packets: stats.rx_packets,
            rx_errs: stats.rx_errs,
            rx_dropped: stats.rx_dropped,
            tx_bytes: stats.tx_bytes,
            tx_packets: stats.tx_packets,
            tx_errs: stats.tx_errs,
            tx_dropped: stats.tx_dropped,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(granted: bool, root: Root) -> CallNetwork {
        CallNetwork {
            granted,
            root: Arc::new(root),
            component: "c".into(),
            refusals: Refusals::default(),
        }
    }

    #[tokio::test]
    async fn addresses_are_refused_without_the_grant() {
        let mut call = call(false, Root::host().unwrap());
        let error = wit::Host::addresses(&mut call).await.unwrap_err();
        assert!(
            matches!(&error, Error::NotGranted(text) if text == "component c may not list the network interfaces"),
            "{error:?}"
        );
        assert_eq!(call.refusals.list(), ["network"]);
    }

    #[tokio::test]
    async fn a_file_with_more_interfaces_than_a_command_is_given_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nics.json");
        let many: Vec<String> = (0..100_000)
            .map(|n| format!(r#"{{"name":"veth{n}","mac":"02:00:00:00:00:01","addresses":["10.0.0.1/8"]}}"#))
            .collect();
        std::fs::write(&file, format!("[{}]", many.join(","))).unwrap();
        let root = Root::open(dir.path()).unwrap().with_interfaces_file(Some(file.clone()));
        let error = wit::Host::addresses(&mut call(true, root)).await.unwrap_err();
        let Error::Failed(text) = error else {
            panic!("{error:?}")
        };
        assert!(text.contains("100000 network interfaces, more than the 1024"), "{text}");

        let addresses: Vec<String> = (0..5000)
            .map(|n| format!(r#""10.0.{}.{}/16""#, n / 250, n % 250))
            .collect();
        std::fs::write(
            &file,
            format!(
                r#"[{{"name":"eth0","mac":"02:00:00:00:00:01","addresses":[{}]}}]"#,
                addresses.join(",")
            ),
        )
        .unwrap();
        let root = Root::open(dir.path()).unwrap().with_interfaces_file(Some(file));
        let error = wit::Host::addresses(&mut call(true, root)).await.unwrap_err();
        assert!(
            matches!(&error, Error::Failed(text) if text.contains("5000 IP addresses")),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn addresses_are_typed_and_in_text_form() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nics.json");
        std::fs::write(
            &file,
            r#"[{"name":"eth0","mac":"02:FC:00:00:00:01","addresses":["192.0.2.2/24","fd00:0:0::2/64"]}]"#,
        )
        .unwrap();
        let root = Root::open(dir.path()).unwrap().with_interfaces_file(Some(file));
        let details = wit::Host::addresses(&mut call(true, root)).await.unwrap();
        assert_eq!(details.len(), 1);
        assert_eq!(details[0].name, "eth0");
        assert_eq!(details[0].hardware_address.as_deref(), Some("02:fc:00:00:00:01"));
        let addresses: Vec<_> = details[0]
            .ip_addresses
            .iter()
            .map(|ip| {
                (
                    matches!(ip.address_type, IpAddressType::Ipv4),
                    ip.address.as_str(),
                    ip.prefix,
                )
            })
            .collect();
        assert_eq!(addresses, [(true, "192.0.2.2", 24), (false, "fd00::2", 64)]);
        assert!(details[0].statistics.is_none());
    }
}
