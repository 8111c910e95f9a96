//! The hostname: where it comes from when XenStore has none, and the files
//! that keep it across reboots (the running system's is set separately).

use crate::config::Interfaces;
use crate::current;
use crate::os::{Family, Renderer, System};
use crate::plan::Plan;
use crate::render::ifcfg;

const HOSTNAME: &str = "/etc/hostname";
const SYSCONFIG_NETWORK: &str = "/etc/sysconfig/network";
const SUSE_HOSTNAME: &str = "/etc/HOSTNAME";
const GENTOO_HOSTNAME: &str = "/etc/conf.d/hostname";

/// The hostname already configured, for when `vm-data/hostname` is absent:
/// the family's own file, else `/etc/hostname`, else the system's name.
pub fn configured(system: &System) -> Result<String, String> {
    let family_value = match system.family {
        Family::RedHat => key_value(SYSCONFIG_NETWORK, "HOSTNAME")?,
        Family::Suse => current::read(SUSE_HOSTNAME)?.map(|text| text.trim().to_owned()),
        Family::Gentoo => match key_value(GENTOO_HOSTNAME, "hostname")? {
            Some(name) => Some(name),
            None => key_value(GENTOO_HOSTNAME, "HOSTNAME")?,
        },
        Family::FreeBsd => key_value("/etc/rc.conf", "hostname")?,
        Family::Arch => key_value("/etc/rc.conf", "HOSTNAME")?,
        Family::Debian => None,
    };
    let from_file = match family_value.filter(|name| !name.is_empty()) {
        Some(name) => Some(name),
        None => current::read(HOSTNAME)?.map(|text| text.trim().to_owned()),
    };
    Ok(from_file
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| system.name.clone()))
}

/// `KEY=value` (value unquoted) from a shell-style file.
fn key_value(path: &str, key: &str) -> Result<Option<String>, String> {
    let Some(text) = current::read(path)? else {
        return Ok(None);
    };
    Ok(text.lines().find_map(|line| {
        let (name, value) = line.trim().split_once('=')?;
        (name.trim() == key).then(|| value.trim().trim_matches(|c| c == '"' || c == '\'').to_owned())
    }))
}

/// The files that hold the hostname on this system.
pub fn plan(system: &System, renderer: Renderer, hostname: &str, interfaces: &Interfaces) -> Result<Plan, String> {
    let mut plan = Plan::default();
    let line = format!("{hostname}\n");
    match system.family {
        // Arch before systemd keeps it in rc.conf, which its renderers write.
        Family::Arch if matches!(renderer, Renderer::ArchNetcfg | Renderer::ArchRcConf) => {}
        Family::Debian | Family::Arch => plan.write(HOSTNAME, line),
        Family::RedHat => {
            if renderer == Renderer::Ifcfg || current::exists(SYSCONFIG_NETWORK)? {
                let ipv6 = interfaces.values().any(|interface| !interface.ip6s.is_empty());
                let old = current::read(SYSCONFIG_NETWORK)?.unwrap_or_default();
                plan.write(SYSCONFIG_NETWORK, ifcfg::sysconfig_network(&old, ipv6, hostname));
            }
            if renderer != Renderer::Ifcfg || current::exists(HOSTNAME)? {
                plan.write(HOSTNAME, line);
            }
        }
        Family::Suse => {
            // Current SuSE links /etc/HOSTNAME to /etc/hostname: write the
            // file it names, not over the link.
            match current::link_target(SUSE_HOSTNAME)? {
                Some(_) => plan.write(HOSTNAME, line),
                None => plan.write(SUSE_HOSTNAME, line),
            }
        }
        Family::Gentoo => {
            let openrc = matches!(renderer, Renderer::Gentoo { openrc: true });
            plan.write(GENTOO_HOSTNAME, crate::render::gentoo_hostname(hostname, openrc));
        }
        // In rc.conf, which the FreeBSD renderer writes.
        Family::FreeBsd => {}
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::tests::machine;

    fn system(family: Family, name: &str) -> System {
        System {
            family,
            name: name.to_owned(),
        }
    }

    #[test]
    fn the_configured_hostname_falls_back_like_the_legacy_agent() {
        machine(&[("/etc/sysconfig/network", "NETWORKING=yes\nHOSTNAME=\"web1\"\n")]);
        assert_eq!(configured(&system(Family::RedHat, "centos")).unwrap(), "web1");
        machine(&[("/etc/hostname", "deb1\n")]);
        assert_eq!(configured(&system(Family::Debian, "debian")).unwrap(), "deb1");
        machine(&[]);
        assert_eq!(configured(&system(Family::Debian, "debian")).unwrap(), "debian");
    }

    #[test]
    fn each_family_keeps_it_where_it_looks() {
        let interfaces = crate::config::tests::vector();
        machine(&[]);
        let plan = plan(
            &system(Family::Debian, "debian"),
            Renderer::Ifupdown,
            "example",
            &interfaces,
        )
        .unwrap();
        assert_eq!(plan.contents("/etc/hostname").unwrap(), "example\n");
        machine(&[("/etc/sysconfig/network", "NETWORKING=yes\nHOSTNAME=other\n")]);
        let redhat = super::plan(
            &system(Family::RedHat, "centos"),
            Renderer::Ifcfg,
            "example",
            &interfaces,
        )
        .unwrap();
        assert_eq!(
            redhat.contents("/etc/sysconfig/network").unwrap(),
            "NETWORKING=yes\nHOSTNAME=example\nNETWORKING_IPV6=yes\n"
        );
        assert!(redhat.contents("/etc/hostname").is_none());
        machine(&[]);
        let suse = super::plan(
            &system(Family::Suse, "suse"),
            Renderer::SuseIfcfg,
            "example",
            &interfaces,
        )
        .unwrap();
        assert_eq!(suse.contents("/etc/HOSTNAME").unwrap(), "example\n");
        let gentoo = super::plan(
            &system(Family::Gentoo, "gentoo"),
            Renderer::Gentoo { openrc: false },
            "example",
            &interfaces,
        )
        .unwrap();
        assert!(
            gentoo
                .contents("/etc/conf.d/hostname")
                .unwrap()
                .ends_with("HOSTNAME=\"example\"")
        );
    }
}
