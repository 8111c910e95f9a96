//! The machine the agent acts on: `/`, or a directory given with `--root`.
//!
//! With `--root DIR`, every file a command touches resolves inside DIR (the
//! `files` capability walks paths itself, so `..` and symlinks, absolute ones
//! included, stay inside), which is how tests, demos and command authors run
//! commands safely on any machine.

use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

pub mod addresses;

pub use addresses::InterfaceDetails;

/// Where, under a `--root` directory, machine changes are recorded.
pub const ACTIONS_LOG: &str = ".guestward/actions.log";

/// An open root directory.
#[derive(Debug)]
pub struct Root {
    path: PathBuf,
    dir: OwnedFd,
    /// Where the network interfaces are described instead of
    /// `/sys/class/net` (`--interfaces`).
    interfaces_file: Option<PathBuf>,
}

/// One network interface of the machine, as `--interfaces` files list them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkInterface {
    pub name: String,
    pub mac: String,
    #[serde(default)]
    pub up: bool,
    /// Its IP addresses with their prefix (`"192.0.2.2/24"`, `"fe80::1/64"`),
    /// for `network.addresses`.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Its counters (`{"rx-bytes": 1, …}`, absent ones 0), for
    /// `network.addresses`.
    #[serde(default)]
    pub statistics: Option<addresses::Statistics>,
}

impl Root {
    /// The real root of the machine.
    pub fn host() -> io::Result<Self> {
        Self::open(Path::new("/"))
    }

    /// A directory standing in for `/`.
    pub fn open(path: &Path) -> io::Result<Self> {
        let path = path
            .canonicalize()
            .map_err(|error| io::Error::new(error.kind(), format!("root {}: {error}", path.display())))?;
        let dir = rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            path,
            dir,
            interfaces_file: None,
        })
    }

    /// Describe the network interfaces with a JSON file
    /// (`[{"name": "eth0", "mac": "bc:76:4e:20:5e:b2", "up": true}]`)
    /// instead of the machine's own.
    pub fn with_interfaces_file(mut self, file: Option<PathBuf>) -> Self {
        self.interfaces_file = file;
        self
    }

    /// Where the root is on this machine.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when this is the machine's own `/` (not a `--root` directory).
    pub fn is_host_root(&self) -> bool {
        self.path == Path::new("/")
    }

    /// The open root directory, the anchor of every path walk.
    pub fn dir(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// True when machine changes (programs, the hostname) are recorded
    /// instead of carried out: under a `--root` directory.
    pub fn records_changes(&self) -> bool {
        !self.is_host_root()
    }

    /// The network interfaces with a MAC address, loopback excluded,
    /// sorted by name.
    pub fn network_interfaces(&self) -> io::Result<Vec<NetworkInterface>> {
        let mut interfaces = match &self.interfaces_file {
            Some(file) => read_interfaces_file(file)?,
            None if self.is_host_root() => read_sys_class_net(Path::new("/sys/class/net"))?,
            None => {
                return Err(io::Error::other(
                    "under --root the network interfaces come from --interfaces FILE, and none was given",
                ));
            }
        };
        interfaces.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(interfaces)
    }

    /// Every interface with its addresses and counters, loopback
    /// included, in the kernel's order (under `--root`, the file's order).
    pub fn network_details(&self) -> io::Result<Vec<InterfaceDetails>> {
        let details = match &self.interfaces_file {
            Some(file) => read_interfaces_file(file)?
                .into_iter()
                .map(|nic| details_of(nic, file))
                .collect::<io::Result<Vec<_>>>()?,
            None if self.is_host_root() => addresses::from_machine()?,
            None => {
                return Err(io::Error::other(
                    "under --root the network interfaces come from --interfaces FILE, and none was given",
                ));
            }
        };
        addresses::check_bounds(&details)?;
        Ok(details)
    }

    /// Set the running system's hostname; under `--root`, record it.
    pub fn set_hostname(&self, name: &str) -> io::Result<()> {
        if self.records_changes() {
            return self.record(&serde_json::json!({"action": "set-hostname", "name": name}));
        }
        rustix::system::sethostname(name.as_bytes()).map_err(io::Error::from)
    }

    /// Append `entry` as one JSON line to [`ACTIONS_LOG`] under the root.
    ///
    /// A component granted files at `/` can put anything at that path (a
    /// symlink renamed there, pointing outside the root, or a FIFO), so the
    /// log is opened from the root's descriptor without following symlinks
    /// or blocking, and must be a regular file.
    pub fn record(&self, entry: &serde_json::Value) -> io::Result<()> {
        let (dir_name, file_name) = ACTIONS_LOG.split_once('/').unwrap_or((".", ACTIONS_LOG));
        match rustix::fs::mkdirat(&self.dir, dir_name, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(error) => return Err(error.into()),
        }
        let nofollow = OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let dir = rustix::fs::openat(
            &self.dir,
            dir_name,
            OFlags::RDONLY | OFlags::DIRECTORY | nofollow,
            Mode::empty(),
        )
        .map_err(|error| refused_log(error.into()))?;
        let flags = OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | nofollow;
        let log = rustix::fs::openat(&dir, file_name, flags, Mode::from_raw_mode(0o600))
            .map_err(|error| refused_log(error.into()))?;
        if !rustix::fs::fstat(&log).is_ok_and(|stat| rustix::fs::FileType::from_raw_mode(stat.st_mode).is_file()) {
            return Err(refused_log(io::Error::other("not a regular file")));
        }
        let mut line = entry.to_string();
        line.push('\n');
        std::fs::File::from(log).write_all(line.as_bytes())
    }
}

fn refused_log(error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{ACTIONS_LOG} under the root: {error}"))
}

fn read_interfaces_file(file: &Path) -> io::Result<Vec<NetworkInterface>> {
    let text = std::fs::read_to_string(file)
        .map_err(|error| io::Error::new(error.kind(), format!("{}: {error}", file.display())))?;
    let interfaces: Vec<NetworkInterface> = serde_json::from_str(&text)
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {error}", file.display())))?;
    interfaces
        .into_iter()
        .map(|interface| {
            let mac = normalize_mac(&interface.mac).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: invalid MAC {:?}", file.display(), interface.mac),
                )
            })?;
            Ok(NetworkInterface { mac, ..interface })
        })
        .collect()
}

/// An `--interfaces` entry as `network.addresses` reports it.
fn details_of(nic: NetworkInterface, file: &Path) -> io::Result<InterfaceDetails> {
    let ip_addresses = nic
        .addresses
        .iter()
        .map(|text| {
            parse_ip_prefix(text).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: invalid address {text:?} (ADDRESS/PREFIX)", file.display()),
                )
            })
        })
        .collect::<io::Result<Vec<_>>>()?;
    Ok(InterfaceDetails {
        name: nic.name,
        hardware_address: Some(nic.mac),
        ip_addresses,
        statistics: nic.statistics,
    })
}

/// `192.0.2.2/24`, `fe80::1/64`: the prefix no longer than the address.
fn parse_ip_prefix(text: &str) -> Option<addresses::IpPrefix> {
    let (address, prefix) = text.split_once('/')?;
    let address: std::net::IpAddr = address.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    let bits = if address.is_ipv4() { 32 } else { 128 };
    (prefix <= bits).then_some(addresses::IpPrefix { address, prefix })
}

/// `/sys/class/net/<name>/{address,flags,type}`: every interface with a
/// hardware address, loopback (type 772) excluded.
fn read_sys_class_net(dir: &Path) -> io::Result<Vec<NetworkInterface>> {
    const ARPHRD_LOOPBACK: &str = "772";
    const IFF_UP: u32 = 0x1;
    let mut interfaces = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let read = |file: &str| std::fs::read_to_string(entry.path().join(file)).map(|text| text.trim().to_owned());
        if read("type").is_ok_and(|kind| kind == ARPHRD_LOOPBACK) {
            continue;
        }
        let Some(mac) = read("address").ok().and_then(|mac| normalize_mac(&mac)) else {
            continue;
        };
        if mac == "00:00:00:00:00:00" {
            continue;
        }
        let flags = read("flags")
            .ok()
            .and_then(|flags| u32::from_str_radix(flags.trim_start_matches("0x"), 16).ok())
            .unwrap_or(0);
        interfaces.push(NetworkInterface {
            name: entry.file_name().to_string_lossy().into_owned(),
            mac,
            up: flags & IFF_UP != 0,
            addresses: Vec::new(),
            statistics: None,
        });
    }
    Ok(interfaces)
}

/// Six colon-separated hex octets, lower-cased; `None` if it is not one.
fn normalize_mac(mac: &str) -> Option<String> {
    let octets: Vec<&str> = mac.split(':').collect();
    let valid = octets.len() == 6
        && octets
            .iter()
            .all(|octet| octet.len() == 2 && octet.bytes().all(|b| b.is_ascii_hexdigit()));
    valid.then(|| mac.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::{NetworkInterface, Root, normalize_mac, read_sys_class_net};

    #[test]
    fn interfaces_come_from_the_file_under_a_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        assert!(
            root.network_interfaces()
                .unwrap_err()
                .to_string()
                .contains("--interfaces")
        );
        let file = dir.path().join("nics.json");
        std::fs::write(
            &file,
            r#"[{"name":"eth1","mac":"BC:76:4E:20:5E:FB"},{"name":"eth0","mac":"bc:76:4e:20:5e:b2","up":true}]"#,
        )
        .unwrap();
        let root = root.with_interfaces_file(Some(file.clone()));
        assert_eq!(
            root.network_interfaces().unwrap(),
            [
                NetworkInterface {
                    name: "eth0".into(),
                    mac: "bc:76:4e:20:5e:b2".into(),
                    up: true,
                    addresses: Vec::new(),
                    statistics: None,
                },
                NetworkInterface {
                    name: "eth1".into(),
                    mac: "bc:76:4e:20:5e:fb".into(),
                    up: false,
                    addresses: Vec::new(),
                    statistics: None,
                },
            ]
        );
        std::fs::write(&file, r#"[{"name":"eth0","mac":"bc:76"}]"#).unwrap();
        assert!(
            root.network_interfaces()
                .unwrap_err()
                .to_string()
                .contains("invalid MAC")
        );
    }

    #[test]
    fn details_come_from_the_file_under_a_root_in_its_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nics.json");
        std::fs::write(
            &file,
            r#"[{"name":"lo","mac":"00:00:00:00:00:00","addresses":["127.0.0.1/8","::1/128"],
                "statistics":{"rx-bytes":5,"tx-packets":2}},
               {"name":"eth0","mac":"BC:76:4E:20:5E:B2"}]"#,
        )
        .unwrap();
        let root = Root::open(dir.path()).unwrap().with_interfaces_file(Some(file.clone()));
        let details = root.network_details().unwrap();
        assert_eq!(details[0].name, "lo");
        assert_eq!(details[0].ip_addresses[1].address.to_string(), "::1");
        assert_eq!(details[0].ip_addresses[1].prefix, 128);
        let stats = details[0].statistics.unwrap();
        assert_eq!((stats.rx_bytes, stats.tx_packets, stats.tx_bytes), (5, 2, 0));
        assert_eq!(details[1].hardware_address.as_deref(), Some("bc:76:4e:20:5e:b2"));
        assert!(details[1].ip_addresses.is_empty() && details[1].statistics.is_none());
        for bad in [r#""10.0.0.1""#, r#""10.0.0.1/33""#, r#""fe80::1/129""#, r#""x/8""#] {
            std::fs::write(
                &file,
                format!(r#"[{{"name":"eth0","mac":"bc:76:4e:20:5e:b2","addresses":[{bad}]}}]"#),
            )
            .unwrap();
            let error = root.network_details().unwrap_err().to_string();
            assert!(error.contains("invalid address"), "{bad}: {error}");
        }
        let many: Vec<String> = (0..=super::addresses::MAX_INTERFACES)
            .map(|n| format!(r#"{{"name":"veth{n}","mac":"bc:76:4e:20:5e:b2"}}"#))
            .collect();
        std::fs::write(&file, format!("[{}]", many.join(","))).unwrap();
        assert!(
            root.network_details()
                .unwrap_err()
                .to_string()
                .contains("more than the 1024")
        );
        let bare = Root::open(dir.path()).unwrap();
        assert!(bare.network_details().unwrap_err().to_string().contains("--interfaces"));
    }

    #[test]
    fn sysfs_lists_hardware_interfaces_with_their_state() {
        let dir = tempfile::tempdir().unwrap();
        for (name, address, flags, kind) in [
            ("lo", "00:00:00:00:00:00", "0x9", "772"),
            ("eth0", "52:54:00:12:34:56", "0x1003", "1"),
            ("eth1", "52:54:00:AB:CD:EF", "0x1002", "1"),
            ("tun0", "", "0x1091", "65534"),
        ] {
            let path = dir.path().join(name);
            std::fs::create_dir(&path).unwrap();
            std::fs::write(path.join("address"), format!("{address}\n")).unwrap();
            std::fs::write(path.join("flags"), format!("{flags}\n")).unwrap();
            std::fs::write(path.join("type"), format!("{kind}\n")).unwrap();
        }
        let mut found = read_sys_class_net(dir.path()).unwrap();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        let summary: Vec<_> = found
            .iter()
            .map(|nic| (nic.name.as_str(), nic.mac.as_str(), nic.up))
            .collect();
        assert_eq!(
            summary,
            [
                ("eth0", "52:54:00:12:34:56", true),
                ("eth1", "52:54:00:ab:cd:ef", false)
            ]
        );
    }

    #[test]
    fn the_action_log_never_leads_outside_the_root() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let entry = serde_json::json!({"action": "run"});

        std::fs::create_dir(dir.path().join(".guestward")).unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(super::ACTIONS_LOG)).unwrap();
        assert!(root.record(&entry).is_err(), "a symlinked log is refused");

        std::fs::remove_dir_all(dir.path().join(".guestward")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join(".guestward")).unwrap();
        std::fs::rename(&victim, outside.path().join("actions.log")).unwrap();
        assert!(root.record(&entry).is_err(), "a symlinked log directory is refused");
        assert_eq!(
            std::fs::read_to_string(outside.path().join("actions.log")).unwrap(),
            "untouched"
        );

        std::fs::remove_file(dir.path().join(".guestward")).unwrap();
        std::fs::create_dir(dir.path().join(".guestward")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.path().join(super::ACTIONS_LOG),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(root.record(&entry).is_err(), "a FIFO is refused without blocking");

        std::fs::remove_file(dir.path().join(super::ACTIONS_LOG)).unwrap();
        root.record(&entry).unwrap();
        root.record(&entry).unwrap();
        let log = std::fs::read_to_string(dir.path().join(super::ACTIONS_LOG)).unwrap();
        assert_eq!(log, "{\"action\":\"run\"}\n{\"action\":\"run\"}\n");
    }

    #[test]
    fn macs_are_checked_and_lower_cased() {
        assert_eq!(normalize_mac("AA:bb:0C:dd:EE:ff").as_deref(), Some("aa:bb:0c:dd:ee:ff"));
        assert_eq!(normalize_mac("aa:bb:cc:dd:ee"), None);
        assert_eq!(normalize_mac("aa:bb:cc:dd:ee:gg"), None);
    }
}
