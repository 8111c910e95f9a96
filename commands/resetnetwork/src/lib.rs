//! `resetnetwork`: configure the network from the hypervisor's data in
//! XenStore (legacy-agent.md §3.8), in the format the system actually
//! uses.
//!
//! 1. Read `vm-data/hostname` and every `vm-data/networking/<MAC>`, and the
//!    machine's interfaces ([`input`]).
//! 2. Normalise and check it all ([`config`]): every error is reported
//!    before anything changes.
//! 3. Find the system and the network configuration it uses ([`os`]).
//! 4. Render the files: the network configuration ([`render`]), the
//!    hostname files ([`hostname`]), `/etc/hosts` ([`hosts`]) and the
//!    name servers ([`resolv`]).
//! 5. Apply them safely ([`apply`]): atomic replacement, the allow-listed
//!    programs that bring the configuration up, and on failure the
//!    previous files back.

mod apply;
mod config;
mod current;
mod hostname;
mod hosts;
mod input;
mod os;
mod plan;
mod render;
mod resolv;

use guestward_sdk::{Command, Reply, Request, export_command, log};

use crate::plan::Plan;

pub struct ResetNetwork;

impl Command for ResetNetwork {
    const NAMES: &'static [&'static str] = &["resetnetwork"];
    const SUMMARY: &'static str = "Configure the network from the hypervisor's data in XenStore";

    fn handle(_request: Request<'_>) -> Reply {
        match reset() {
            Ok(()) => Reply::ok(""),
            Err(message) => Reply::error(message),
        }
    }
}

export_command!(ResetNetwork);

fn reset() -> Result<(), String> {
    let system = os::detect()?;
    let renderer = os::renderer(&system)?;
    let hostname = match input::hostname()? {
        Some(name) => name,
        None => hostname::configured(&system)?,
    };
    config::check_hostname(&hostname)?;
    let interfaces = config::normalise(&input::entries()?, &input::local_nics()?)?;
    let mut plan = render::render(renderer, &interfaces, &hostname)?;
    plan.extend(hostname::plan(&system, renderer, &hostname, &interfaces)?);
    plan.extend(hosts_plan(&interfaces, &hostname)?);
    plan.extend(resolv::plan(renderer, &interfaces)?);
    log::log(
        log::Level::Info,
        &format!(
            "{renderer:?} on {:?}: {} interface(s), {} file(s)",
            system.family,
            interfaces.len(),
            plan.writes.len()
        ),
    );
    apply::apply(&plan, &hostname)
}

fn hosts_plan(interfaces: &config::Interfaces, hostname: &str) -> Result<Plan, String> {
    let old = current::read(hosts::PATH)?.unwrap_or_default();
    let mut plan = Plan::default();
    plan.write(
        hosts::PATH,
        hosts::rewrite(&old, &hosts::addresses(interfaces), hostname),
    );
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use guestward_sdk::testing;

    use super::*;
    use crate::render::tests::machine;

    fn debian_with_vector() {
        machine(&[
            ("/etc/os-release", "ID=debian\n"),
            ("/etc/hosts", "127.0.0.1\tlocalhost\n"),
        ]);
        testing::with_host(|host| {
            host.xenstore.insert("vm-data/hostname".into(), "test-server".into());
            for (index, entry) in config::tests::vector_entries().iter().enumerate() {
                host.xenstore
                    .insert(format!("vm-data/networking/mac{index}"), entry.to_string());
            }
            host.interfaces = config::tests::vector_nics()
                .into_iter()
                .map(|nic| guestward_sdk::system::NetworkInterface {
                    name: nic.name,
                    mac: nic.mac,
                    up: nic.up,
                })
                .collect();
        });
    }

    fn call() -> (String, String) {
        let reply = ResetNetwork::handle(Request::new("resetnetwork", "\"\""));
        (reply.code, reply.message)
    }

    #[test]
    fn the_whole_flow_on_debian() {
        debian_with_vector();
        assert_eq!(call(), ("0".into(), String::new()));
        testing::with_host(|host| {
            assert!(String::from_utf8_lossy(&host.files["/etc/network/interfaces"]).contains("auto eth0:1\n"));
            assert_eq!(host.files["/etc/hostname"], b"test-server\n");
            assert!(
                String::from_utf8_lossy(&host.files["/etc/hosts"])
                    .ends_with("2001:4802:7803:104:be76:4eff:fe20:5eb2\ttest-server\n")
            );
            assert_eq!(host.hostname.as_deref(), Some("test-server"));
        });
    }

    #[test]
    fn a_normalisation_error_touches_nothing() {
        debian_with_vector();
        testing::with_host(|host| host.interfaces.retain(|nic| nic.name != "eth1"));
        assert_eq!(call(), ("500".into(), "Unknown interface MAC bc:76:4e:20:5e:fb".into()));
        testing::with_host(|host| {
            assert_eq!(host.files.keys().collect::<Vec<_>>(), ["/etc/hosts", "/etc/os-release"]);
            assert!(host.runs.is_empty() && host.hostname.is_none());
        });
    }
}
