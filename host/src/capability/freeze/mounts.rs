//! The mount table, read as qemu-ga reads it: `/proc/self/mountinfo`,
//! keeping the filesystems a freeze applies to.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// One mounted filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted.
    pub dir: PathBuf,
    pub fstype: String,
    /// What is mounted (`/dev/vda1`).
    pub source: PathBuf,
    /// The device numbers of its superblock.
    pub device: (u32, u32),
}

impl Mount {
    /// True when `name` is this mount point, compared byte for byte as
    /// qemu-ga compares it (`/mnt/` is not `/mnt`).
    pub fn is_at(&self, name: &str) -> bool {
        self.dir.as_os_str().as_bytes() == name.as_bytes()
    }

    /// The mount point, for messages.
    pub fn dir_text(&self) -> String {
        self.dir.to_string_lossy().into_owned()
    }
}

/// Every mount of a `mountinfo` text, in mount order; lines that do not
/// parse are skipped.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw`: the
/// optional fields end at the lone `-`.
fn parse_line(line: &str) -> Option<Mount> {
    let fields: Vec<&str> = line.split(' ').collect();
    let (major, minor) = fields.get(2)?.split_once(':')?;
    let dir = fields.get(4)?;
    let separator = fields.iter().skip(6).position(|field| *field == "-")? + 6;
    Some(Mount {
        dir: unescape(dir),
        fstype: (*fields.get(separator + 1)?).to_owned(),
        source: unescape(fields.get(separator + 2)?),
        device: (major.parse().ok()?, minor.parse().ok()?),
    })
}

/// The kernel writes space, tab, newline and backslash in paths as `\ooo`.
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let octal = bytes
            .get(at + 1..at + 4)
            .filter(|digits| digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match (bytes[at], octal) {
            (b'\\', Some(digits)) => {
                let value = digits
                    .iter()
                    .fold(0u32, |value, digit| value * 8 + u32::from(digit - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                at += 4;
            }
            (byte, _) => {
                out.push(byte);
                at += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

/// The mounts a freeze applies to, in mount order: those backed by a
/// device. Virtual and network filesystems (proc, tmpfs, overlay, NFS,
/// CIFS…) have major number 0 and are skipped, except btrfs, whose
/// superblock reports 0 although a block device backs it (qemu-ga's rule;
/// `block_device` says what `source` is).
pub fn freezable(mounts: Vec<Mount>, block_device: impl Fn(&Path) -> Option<(u32, u32)>) -> Vec<Mount> {
    mounts
        .into_iter()
        .filter_map(|mut mount| {
            if mount.device.0 != 0 {
                return Some(mount);
            }
            if mount.fstype != "btrfs" {
                return None;
            }
            mount.device = block_device(&mount.source)?;
            Some(mount)
        })
        .collect()
}

/// The device numbers of a block device node.
pub fn block_device(path: &Path) -> Option<(u32, u32)> {
    let stat = rustix::fs::stat(path).ok()?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::BlockDevice {
        return None;
    }
    Some((rustix::fs::major(stat.st_rdev), rustix::fs::minor(stat.st_rdev)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
24 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs udev rw,size=4047224k
25 22 0:25 / /run rw,nosuid,nodev,noexec,relatime shared:5 - tmpfs tmpfs rw,size=812152k,mode=755
40 22 254:2 / /srv/my\\040data rw,relatime - xfs /dev/vdb rw,attr2
41 22 0:45 / /home rw,relatime shared:30 - btrfs /dev/vdc rw,space_cache
42 22 0:46 / /mnt/share rw,relatime shared:31 - nfs4 server:/export rw,vers=4.2
43 22 254:1 /srv /var/srv rw,relatime shared:1 - ext4 /dev/vda1 rw
garbage line
";

    #[test]
    fn mountinfo_lines_give_the_mount_point_type_source_and_device() {
        let mounts = parse(MOUNTINFO);
        assert_eq!(mounts.len(), 8, "{mounts:?}");
        assert_eq!(
            mounts[4],
            Mount {
                dir: PathBuf::from("/srv/my data"),
                fstype: "xfs".into(),
                source: PathBuf::from("/dev/vdb"),
                device: (254, 2),
            }
        );
        assert_eq!(mounts[6].source, PathBuf::from("server:/export"));
        // No optional fields at all.
        assert_eq!(mounts[4].fstype, "xfs");
    }

    #[test]
    fn only_device_backed_filesystems_are_freezable_and_btrfs_by_its_device() {
        let freezable = freezable(parse(MOUNTINFO), |source| {
            (source == Path::new("/dev/vdc")).then_some((254, 32))
        });
        let dirs: Vec<String> = freezable.iter().map(Mount::dir_text).collect();
        assert_eq!(dirs, ["/", "/srv/my data", "/home", "/var/srv"]);
        assert_eq!(freezable[2].device, (254, 32));
        // A btrfs whose source is not a block device is skipped.
        assert!(
            !super::freezable(parse(MOUNTINFO), |_| None)
                .iter()
                .any(|m| m.fstype == "btrfs")
        );
    }

    #[test]
    fn mount_points_compare_exactly() {
        let mount = &parse(MOUNTINFO)[4];
        assert!(mount.is_at("/srv/my data"));
        assert!(!mount.is_at("/srv/my data/"));
        assert!(!mount.is_at("/srv/my\\040data"));
    }

    #[test]
    fn escapes_decode_and_bad_ones_stay() {
        assert_eq!(unescape("a\\134b\\011c"), PathBuf::from("a\\b\tc"));
        assert_eq!(unescape("a\\9b\\"), PathBuf::from("a\\9b\\"));
        assert_eq!(unescape("\\777"), PathBuf::from("?"));
    }
}
