//! Name servers: where they go depends on who owns `/etc/resolv.conf`.
//!
//! * NetworkManager writes it from the connection's `dns` keys.
//! * systemd-resolved (`/etc/resolv.conf` links into
//!   `/run/systemd/resolve`): netplan and networkd pass the servers to it;
//!   for the other formats a drop-in `/etc/systemd/resolved.conf.d/
//!   90-guestward.conf` names them and resolved is restarted.
//! * resolvconf (`/etc/resolv.conf` links into a `resolvconf` directory):
//!   ifupdown feeds it the `dns-nameservers` lines; nothing else to do.
//!   (The legacy agent's own juggling of resolvconf's files, which left
//!   stray links behind on systems without it, is gone.)
//! * Otherwise the file is written as the legacy agent did
//!   (`# Automatically generated, do not edit` and a `nameserver` line
//!   per server, §8.6), keeping the administrator's `search`, `domain`,
//!   `options` and `sortlist` lines.
//!
//! With no server at all, nothing changes.

use std::net::IpAddr;

use guestward_sdk::log;

use crate::config::Interfaces;
use crate::current;
use crate::os::Renderer;
use crate::plan::{GENERATED, Plan, Step};

pub const PATH: &str = "/etc/resolv.conf";
const RESOLVED_DROP_IN: &str = "/etc/systemd/resolved.conf.d/90-guestward.conf";

pub fn plan(renderer: Renderer, interfaces: &Interfaces) -> Result<Plan, String> {
    let mut servers: Vec<IpAddr> = Vec::new();
    for server in interfaces.values().flat_map(|interface| interface.dns.iter()) {
        if !servers.contains(server) {
            servers.push(*server);
        }
    }
    let mut plan = Plan::default();
    if servers.is_empty() || renderer == Renderer::NetworkManager {
        return Ok(plan);
    }
    let target = current::link_target(PATH)?;
    match target.as_deref() {
        Some(target) if target.contains("systemd/resolve") => {
            if !matches!(renderer, Renderer::Netplan | Renderer::Networkd) {
                let list: Vec<String> = servers.iter().map(ToString::to_string).collect();
                plan.write(
                    RESOLVED_DROP_IN,
                    format!("{GENERATED}\n[Resolve]\nDNS={}\n", list.join(" ")),
                );
                plan.apply.push(Step::required(
                    "Couldn't restart systemd-resolved",
                    &["/usr/bin/systemctl", "try-restart", "systemd-resolved"],
                ));
            }
        }
        Some(target) if target.contains("resolvconf") && renderer == Renderer::Ifupdown => {}
        Some(target) => {
            log::log(
                log::Level::Warn,
                &format!("{PATH} links to {target}, which this agent does not manage: left alone"),
            );
        }
        None => {
            let old = current::read(PATH)?.unwrap_or_default();
            plan.write(PATH, resolv_conf(&old, &servers));
        }
    }
    Ok(plan)
}

/// The legacy file plus the administrator's resolver options.
pub fn resolv_conf(old: &str, servers: &[IpAddr]) -> String {
    let mut text = format!("{GENERATED}\n");
    for server in servers {
        text.push_str(&format!("nameserver {server}\n"));
    }
    for line in old.lines().map(str::trim) {
        let keyword = line.split_whitespace().next().unwrap_or_default();
        if matches!(keyword, "search" | "domain" | "options" | "sortlist") {
            text.push_str(&format!("{line}\n"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::vector;
    use crate::render::tests::machine;

    #[test]
    fn the_end_to_end_vector_is_exact() {
        machine(&[]);
        let plan = plan(Renderer::Ifupdown, &vector()).unwrap();
        assert_eq!(
            plan.contents(PATH).unwrap(),
            "# Automatically generated, do not edit\nnameserver 69.20.0.164\nnameserver 69.20.0.196\n"
        );
    }

    #[test]
    fn the_administrators_options_stay() {
        let servers = ["192.0.2.2".parse().unwrap()];
        let old = "nameserver 8.8.8.8\nsearch example.com\noptions rotate timeout:1\n# mine\n";
        assert_eq!(
            resolv_conf(old, &servers),
            "# Automatically generated, do not edit\nnameserver 192.0.2.2\nsearch example.com\noptions rotate timeout:1\n"
        );
    }

    #[test]
    fn network_manager_writes_it_itself() {
        machine(&[]);
        assert_eq!(plan(Renderer::NetworkManager, &vector()).unwrap(), Plan::default());
    }
}
