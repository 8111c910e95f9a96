//! The three files, parsed: pure functions, tested on their own.

use serde_json::{Value, json};

/// What `/proc/meminfo` says about memory, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub total: u64,
    pub available: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

impl Memory {
    /// `MemTotal` is required; `MemAvailable` (Linux 3.14+) falls back to
    /// `MemFree + Buffers + Cached`; swap is 0 when absent.
    pub fn parse(text: &str) -> Result<Self, String> {
        let field = |name: &str| {
            text.lines().find_map(|line| {
                let (key, rest) = line.split_once(':')?;
                if key.trim() != name {
                    return None;
                }
                rest.split_whitespace().next()?.parse::<u64>().ok()
            })
        };
        let total = field("MemTotal").ok_or("/proc/meminfo has no MemTotal line")?;
        let available = field("MemAvailable").unwrap_or_else(|| {
            [field("MemFree"), field("Buffers"), field("Cached")]
                .into_iter()
                .flatten()
                .fold(0u64, u64::saturating_add)
        });
        Ok(Self {
            total,
            available: available.min(total),
            swap_total: field("SwapTotal").unwrap_or(0),
            swap_free: field("SwapFree").unwrap_or(0),
        })
    }

    /// Percent of memory in use, rounded down.
    pub fn used_percent(&self) -> u64 {
        match self.total {
            0 => 0,
            total => (total - self.available).saturating_mul(100) / total,
        }
    }

    pub fn to_json(self) -> Value {
        json!({
            "total_kib": self.total,
            "available_kib": self.available,
            "used_percent": self.used_percent(),
            "swap_total_kib": self.swap_total,
            "swap_free_kib": self.swap_free,
        })
    }
}

/// One mounted file system of `/proc/mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub device: String,
    pub path: String,
    pub fs_type: String,
    pub read_only: bool,
}

impl Mount {
    pub fn to_json(&self) -> Value {
        json!({
            "device": self.device,
            "path": self.path,
            "type": self.fs_type,
            "read_only": self.read_only,
        })
    }
}

/// File systems that hold data without a block device.
const STORAGE_WITHOUT_DEVICE: &[&str] = &["nfs", "nfs4", "cifs", "smb3", "9p", "virtiofs", "zfs", "overlay"];

/// The mounts that hold data (a block device, or a network or virtual
/// disk), in the kernel's order; kernel pseudo file systems (proc, sysfs,
/// cgroup, tmpfs, …) and malformed lines are left out.
pub fn mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (device, path, fs_type, options) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
            let storage = device.starts_with('/') || STORAGE_WITHOUT_DEVICE.contains(&fs_type);
            storage.then(|| Mount {
                device: unescape(device),
                path: unescape(path),
                fs_type: fs_type.to_owned(),
                read_only: options.split(',').any(|option| option == "ro"),
            })
        })
        .collect()
}

/// `/proc/mounts` writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let mut text = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        text.push_str(&rest[..at]);
        let code = rest
            .get(at + 1..at + 4)
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match code {
            Some(byte) => {
                text.push(char::from(byte));
                rest = &rest[at + 4..];
            }
            None => {
                text.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    text.push_str(rest);
    text
}

/// `PRETTY_NAME` of an os-release file, unquoted.
pub fn pretty_name(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let value = line.trim().strip_prefix("PRETTY_NAME=")?;
        let value = value.trim_matches(|c| c == '"' || c == '\'');
        Some(value.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_falls_back_without_mem_available() {
        let memory = Memory::parse("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n").unwrap();
        assert_eq!(
            (memory.available, memory.used_percent(), memory.swap_total),
            (400, 60, 0)
        );
        assert!(Memory::parse("MemFree: 1 kB\n").unwrap_err().contains("MemTotal"));
        assert_eq!(Memory::parse("MemTotal: 0 kB\n").unwrap().used_percent(), 0);
    }

    #[test]
    fn mounts_keep_storage_and_unescape_paths() {
        let text = "proc /proc proc rw 0 0\n/dev/vda1 / ext4 rw,relatime 0 0\n\
                    /dev/vdb /mnt/my\\040disk xfs ro,noatime 0 0\nserver:/x /net nfs4 rw 0 0\ngarbage\n";
        let mounts = mounts(text);
        let paths: Vec<&str> = mounts.iter().map(|mount| mount.path.as_str()).collect();
        assert_eq!(paths, ["/", "/mnt/my disk", "/net"]);
        assert!(mounts[1].read_only && !mounts[0].read_only);
        assert_eq!(unescape("a\\134b\\0"), "a\\b\\0");
    }

    #[test]
    fn the_pretty_name_is_unquoted() {
        assert_eq!(
            pretty_name("NAME=x\nPRETTY_NAME=\"Debian 12\"\n").as_deref(),
            Some("Debian 12")
        );
        assert_eq!(pretty_name("NAME=x\n"), None);
    }
}
