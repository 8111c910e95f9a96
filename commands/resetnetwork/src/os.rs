//! Which system this is, and which network configuration it actually uses.
//!
//! The family comes from `/etc/os-release` (`ID`, then `ID_LIKE`), else the
//! marker files the legacy agent's detection relied on. The renderer is
//! what the running system uses, in this order: the setting `renderer`
//! (the operator knows best); netplan when `/etc/netplan` exists and
//! netplan is installed; NetworkManager when it is running
//! (`/run/NetworkManager`); systemd-networkd when it is running
//! (`/run/systemd/netif`); else the family's own format.

use guestward_sdk::agent;

use crate::current;

/// The distribution family, as the legacy agent grouped them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Debian,
    RedHat,
    Suse,
    Gentoo,
    Arch,
    FreeBsd,
}

/// The format the configuration is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renderer {
    /// Debian's `/etc/network/interfaces` (ifupdown).
    Ifupdown,
    /// Red Hat's `ifcfg-*` and `route-*` (initscripts).
    Ifcfg,
    /// SuSE's `ifcfg-*` and `ifroute-*` (wicked).
    SuseIfcfg,
    /// Gentoo's `/etc/conf.d/net`: OpenRC's strings, or the legacy arrays.
    Gentoo {
        openrc: bool,
    },
    /// Arch's netctl profiles.
    Netctl,
    /// Arch before systemd: netcfg profiles.
    ArchNetcfg,
    /// Arch before systemd: `rc.conf` variables.
    ArchRcConf,
    /// FreeBSD's `/etc/rc.conf`.
    FreeBsd,
    Netplan,
    Networkd,
    NetworkManager,
}

/// The names the `renderer` setting takes: every renderer.
pub const RENDERERS: &[(&str, Renderer)] = &[
    ("ifupdown", Renderer::Ifupdown),
    ("ifcfg", Renderer::Ifcfg),
    ("suse", Renderer::SuseIfcfg),
    ("gentoo", Renderer::Gentoo { openrc: true }),
    ("gentoo-legacy", Renderer::Gentoo { openrc: false }),
    ("netctl", Renderer::Netctl),
    ("netcfg", Renderer::ArchNetcfg),
    ("arch-rc", Renderer::ArchRcConf),
    ("freebsd", Renderer::FreeBsd),
    ("netplan", Renderer::Netplan),
    ("networkd", Renderer::Networkd),
    ("networkmanager", Renderer::NetworkManager),
];

/// The system: its family and the name the legacy agent used for it (the
/// hostname of last resort).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct System {
    pub family: Family,
    pub name: String,
}

/// Detect the family.
pub fn detect() -> Result<System, String> {
    if let Some(release) = current::read("/etc/os-release")? {
        let field = |key: &str| os_release_field(&release, key);
        let candidates = field("ID").into_iter().chain(
            field("ID_LIKE")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        );
        for id in candidates {
            if let Some(family) = family_of_id(&id) {
                return Ok(System {
                    family,
                    name: field("ID").unwrap_or(id),
                });
            }
        }
    }
    const MARKERS: &[(&str, Family, &str)] = &[
        ("/etc/debian_version", Family::Debian, "debian"),
        ("/etc/redhat-release", Family::RedHat, "redhat"),
        ("/etc/SuSE-release", Family::Suse, "suse"),
        ("/etc/gentoo-release", Family::Gentoo, "gentoo"),
        ("/etc/arch-release", Family::Arch, "arch"),
        ("/bin/freebsd-version", Family::FreeBsd, "freebsd"),
    ];
    for (marker, family, name) in MARKERS {
        if current::exists(marker)? {
            return Ok(System {
                family: *family,
                name: (*name).to_owned(),
            });
        }
    }
    Err("Couldn't figure out my OS".to_owned())
}

fn family_of_id(id: &str) -> Option<Family> {
    Some(match id {
        "debian" | "ubuntu" | "raspbian" => Family::Debian,
        "rhel" | "redhat" | "centos" | "fedora" | "ol" | "oracle" | "rocky" | "almalinux" | "amzn" => Family::RedHat,
        "opensuse" | "opensuse-leap" | "opensuse-tumbleweed" | "suse" | "sles" | "sled" => Family::Suse,
        "gentoo" => Family::Gentoo,
        "arch" | "archlinux" | "manjaro" => Family::Arch,
        "freebsd" => Family::FreeBsd,
        _ => return None,
    })
}

/// `KEY=value` or `KEY="value"` from os-release text.
fn os_release_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let value = line.trim().strip_prefix(key)?.strip_prefix('=')?;
        let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
        (!value.is_empty()).then(|| value.to_ascii_lowercase())
    })
}

/// The renderer for this system.
pub fn renderer(system: &System) -> Result<Renderer, String> {
    if let Some(name) = agent::setting("renderer").filter(|name| !name.is_empty()) {
        let names: Vec<&str> = RENDERERS.iter().map(|(name, _)| *name).collect();
        return RENDERERS
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, renderer)| *renderer)
            .ok_or_else(|| {
                format!(
                    "Unknown renderer '{name}' in the settings (one of: {})",
                    names.join(", ")
                )
            });
    }
    if system.family == Family::FreeBsd {
        return Ok(Renderer::FreeBsd);
    }
    if current::is_dir("/etc/netplan")?
        && (current::exists("/usr/sbin/netplan")? || current::exists("/usr/bin/netplan")?)
    {
        return Ok(Renderer::Netplan);
    }
    if current::is_dir("/run/NetworkManager")? {
        return Ok(Renderer::NetworkManager);
    }
    if current::is_dir("/run/systemd/netif")? {
        return Ok(Renderer::Networkd);
    }
    Ok(match system.family {
        Family::Debian => Renderer::Ifupdown,
        Family::RedHat => Renderer::Ifcfg,
        Family::Suse => Renderer::SuseIfcfg,
        Family::Gentoo => Renderer::Gentoo {
            openrc: current::exists("/sbin/rc")? || current::exists("/sbin/openrc")?,
        },
        Family::Arch => arch_renderer()?,
        Family::FreeBsd => Renderer::FreeBsd,
    })
}

/// netctl where it is installed (systemd Arch), else netcfg, else the
/// initscripts' `rc.conf`.
fn arch_renderer() -> Result<Renderer, String> {
    if current::exists("/usr/bin/netctl")? {
        Ok(Renderer::Netctl)
    } else if current::exists("/usr/bin/netcfg")? {
        Ok(Renderer::ArchNetcfg)
    } else if current::exists("/etc/rc.conf")? {
        Ok(Renderer::ArchRcConf)
    } else {
        Ok(Renderer::Netctl)
    }
}

#[cfg(test)]
mod tests {
    use guestward_sdk::testing;

    use super::*;

    fn with_files(files: &[(&str, &str)]) {
        testing::reset();
        testing::with_host(|host| {
            for (path, contents) in files {
                host.files.insert((*path).to_owned(), contents.as_bytes().to_vec());
            }
        });
    }

    #[test]
    fn the_family_comes_from_os_release_then_markers() {
        with_files(&[(
            "/etc/os-release",
            "NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n",
        )]);
        assert_eq!(
            detect().unwrap(),
            System {
                family: Family::RedHat,
                name: "rocky".into()
            }
        );
        with_files(&[("/etc/os-release", "ID=pop\nID_LIKE=\"ubuntu debian\"\n")]);
        assert_eq!(detect().unwrap().family, Family::Debian);
        with_files(&[("/etc/gentoo-release", "Gentoo Base System release 2.14\n")]);
        assert_eq!(
            detect().unwrap(),
            System {
                family: Family::Gentoo,
                name: "gentoo".into()
            }
        );
        with_files(&[("/etc/os-release", "ID=plan9\n")]);
        assert_eq!(detect().unwrap_err(), "Couldn't figure out my OS");
    }

    #[test]
    fn the_renderer_is_what_the_system_runs() {
        let debian = System {
            family: Family::Debian,
            name: "debian".into(),
        };
        with_files(&[]);
        assert_eq!(renderer(&debian).unwrap(), Renderer::Ifupdown);
        with_files(&[("/etc/netplan/50-cloud-init.yaml", ""), ("/usr/sbin/netplan", "")]);
        assert_eq!(renderer(&debian).unwrap(), Renderer::Netplan);
        with_files(&[("/run/NetworkManager/NetworkManager.pid", "1")]);
        assert_eq!(renderer(&debian).unwrap(), Renderer::NetworkManager);
        with_files(&[("/run/systemd/netif/links/2", "")]);
        assert_eq!(renderer(&debian).unwrap(), Renderer::Networkd);
        with_files(&[("/run/systemd/netif/links/2", "")]);
        testing::with_host(|host| host.settings.insert("renderer".into(), "ifupdown".into()));
        assert_eq!(renderer(&debian).unwrap(), Renderer::Ifupdown);
        testing::with_host(|host| host.settings.insert("renderer".into(), "wicked".into()));
        assert!(renderer(&debian).unwrap_err().starts_with("Unknown renderer 'wicked'"));
        let gentoo = System {
            family: Family::Gentoo,
            name: "gentoo".into(),
        };
        with_files(&[("/sbin/rc", "")]);
        assert_eq!(renderer(&gentoo).unwrap(), Renderer::Gentoo { openrc: true });
        with_files(&[]);
        assert_eq!(renderer(&gentoo).unwrap(), Renderer::Gentoo { openrc: false });
    }
}
