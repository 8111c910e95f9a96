//! A fresh Debian root to install packages into: debootstrap's minbase of
//! the host's own release, made once and kept as a tarball under
//! `target/debian-root/`, then unpacked per test with `/proc` mounted.
//! Needs root (chroot, mount); the Drop guard unmounts and removes it even
//! when a test panics.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::artifacts;

const MIRROR: &str = "http://deb.debian.org/debian";

/// An unpacked Debian root in a temporary directory.
#[derive(Debug)]
pub struct DebianRoot {
    dir: tempfile::TempDir,
    proc_mounted: bool,
}

impl DebianRoot {
    /// A fresh root (debootstrapping the cached one first if needed).
    pub fn fresh() -> Self {
        let tarball = cached_tarball();
        let dir = tempfile::Builder::new().prefix("guestward-debian-").tempdir().unwrap();
        let status = Command::new("tar")
            .arg("-xf")
            .arg(&tarball)
            .arg("-C")
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "cannot unpack {}", tarball.display());
        let mut root = Self {
            dir,
            proc_mounted: false,
        };
        let proc = root.path().join("proc");
        let status = Command::new("mount")
            .args(["-t", "proc", "proc"])
            .arg(&proc)
            .status()
            .unwrap();
        assert!(status.success(), "cannot mount /proc in the root");
        root.proc_mounted = true;
        root
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `path` inside the root, as a host path.
    pub fn join(&self, path: &str) -> PathBuf {
        self.path().join(path.trim_start_matches('/'))
    }

    /// Run `sh -c script` inside the root.
    pub fn sh(&self, script: &str) -> Output {
        Command::new("chroot")
            .arg(self.path())
            .args(["/bin/sh", "-c", script])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .unwrap()
    }
}

impl Drop for DebianRoot {
    fn drop(&mut self) {
        if self.proc_mounted {
            let _ = Command::new("umount").arg("-l").arg(self.path().join("proc")).status();
        }
    }
}

/// `target/debian-root/<codename>.tar`, made by debootstrap on first use.
fn cached_tarball() -> PathBuf {
    let codename = host_codename();
    let dir = artifacts::target_dir().join("debian-root");
    let tarball = dir.join(format!("{codename}.tar"));
    if tarball.exists() {
        return tarball;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let build = tempfile::Builder::new()
        .prefix("debootstrap-")
        .tempdir_in(&dir)
        .unwrap();
    let output = Command::new("debootstrap")
        .args(["--variant=minbase", &codename])
        .arg(build.path())
        .arg(MIRROR)
        .output()
        .expect("debootstrap (make test installs it)");
    assert!(
        output.status.success(),
        "debootstrap failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Written under another name, then renamed: a test run killed half-way
    // leaves no half tarball behind.
    let partial = dir.join(format!("{codename}.tar.partial"));
    let status = Command::new("tar")
        .arg("-cf")
        .arg(&partial)
        .arg("-C")
        .arg(build.path())
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::rename(&partial, &tarball).unwrap();
    tarball
}

/// The host's Debian release (`bookworm`), from /etc/os-release.
fn host_codename() -> String {
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    release
        .lines()
        .find_map(|line| line.strip_prefix("VERSION_CODENAME="))
        .map(|name| name.trim_matches('"').to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "bookworm".to_owned())
}

/// The output of `output`, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "{}\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
