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
    const ASKS: &'static str = include_str!("../policy.toml");

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

/// Every format's plan for `interfaces`, on an empty test host.
#[cfg(not(target_arch = "wasm32"))]
fn render_everything(interfaces: &config::Interfaces, hostname: &str) -> Vec<(os::Renderer, Plan)> {
    let mut plans = Vec::new();
    for (_, renderer) in os::RENDERERS {
        guestward_sdk::testing::reset();
        let Ok(mut plan) = render::render(*renderer, interfaces, hostname) else {
            continue;
        };
        plan.extend(hosts_plan(interfaces, hostname).unwrap_or_default());
        plans.push((*renderer, plan));
    }
    plans
}

/// For the fuzz target (`host/fuzz`, `network_config`): normalise any
/// entries and render them in every format. What is written must hold no
/// control character but newlines and tabs: nothing the hypervisor sends
/// can add a line to a configuration file.
#[doc(hidden)]
#[cfg(not(target_arch = "wasm32"))]
pub fn fuzz_render_everything(entries: &[serde_json::Value], hostname: &str) {
    let nics = [("eth0", "bc:76:4e:20:5e:b2"), ("eth1", "bc:76:4e:20:5e:fb")].map(|(name, mac)| config::LocalNic {
        name: name.into(),
        mac: mac.into(),
        up: true,
    });
    let Ok(interfaces) = config::normalise(entries, &nics) else {
        return;
    };
    if config::check_hostname(hostname).is_err() {
        return;
    }
    for (renderer, plan) in render_everything(&interfaces, hostname) {
        for write in &plan.writes {
            let bad = write
                .contents
                .chars()
                .find(|c| c.is_control() && !matches!(c, '\n' | '\t'));
            assert!(bad.is_none(), "{renderer:?} wrote {bad:?} into {}", write.path);
        }
    }
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
                .map(|nic| guestward_sdk::network::NetworkInterface {
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
    fn a_label_only_ever_lands_in_comments() {
        let label = "x'; reboot; echo \"$(id)\" `id` # ${HOME} \\";
        let entry = serde_json::json!({"label": label, "mac": "bc:76:4e:20:5e:b2", "gateway": "192.0.2.1",
            "ips": [{"ip": "192.0.2.2", "netmask": "255.255.255.0"}, {"ip": "192.0.2.3", "netmask": "255.255.255.0"}],
            "ip6s": [{"ip": "2001:db8::2", "netmask": 64}], "dns": ["192.0.2.53"]});
        let interfaces = config::normalise(&[entry], &config::tests::vector_nics()).unwrap();
        let plans = render_everything(&interfaces, "host");
        assert_eq!(plans.len(), 12);
        for (renderer, plan) in plans {
            for write in &plan.writes {
                for line in write.contents.lines().filter(|line| line.contains(label)) {
                    assert!(
                        line.trim_start().starts_with('#'),
                        "{renderer:?} {}: {line}",
                        write.path
                    );
                }
            }
        }
    }

    #[test]
    fn hostile_entries_never_put_control_characters_in_files() {
        let entries = [
            serde_json::json!({"label": "ok", "mac": "bc:76:4e:20:5e:b2", "ips": [{"ip": "192.0.2.2", "netmask": "255.255.255.0"}]}),
            serde_json::json!({"label": "bad\u{0}", "mac": "bc:76:4e:20:5e:fb", "ips": [{"ip": "192.0.2.3", "netmask": "255.255.255.0"}]}),
        ];
        fuzz_render_everything(&entries[..1], "host");
        fuzz_render_everything(&entries, "host");
        fuzz_render_everything(&entries[..1], "bad\rhost");
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
