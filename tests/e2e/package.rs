//! `make deb`: the package installed into a fresh Debian root (debootstrap)
//! with dpkg, as an image builder would: its files, modes and owners, the
//! unit enabled, the compile cache made, the legacy nova-agent replaced;
//! an upgrade and a remove keep the operator's /etc/guestward files; a
//! purge removes what the package and its scripts created.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use guestward_tests::artifacts;
use guestward_tests::debian_root::{DebianRoot, describe};
use guestward_tests::netns::skip_unless_root;

/// `make deb-files` of the binary under test (its debug info stripped, and
/// gzip instead of xz, for speed) into `dir`.
fn build_package(dir: &Path) -> PathBuf {
    let binary = dir.join("guestward");
    std::fs::copy(artifacts::guestward_bin(), &binary).unwrap();
    let strip = Command::new("strip")
        .arg("--strip-debug")
        .arg(&binary)
        .status()
        .unwrap();
    assert!(strip.success());
    let output = Command::new("make")
        .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
        .args(["--no-print-directory", "deb-files", "DEB_COMPRESS=-Zgzip"])
        .arg(format!("INSTALL_BIN={}", binary.display()))
        .arg(format!("DEB_DIR={}", dir.display()))
        .env_remove("MAKEFLAGS")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .expect("a .deb")
}

/// A stand-in for the legacy agent's package, with one file of its own.
fn legacy_package(dir: &Path) -> PathBuf {
    let root = dir.join("nova-agent");
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join("usr/sbin")).unwrap();
    std::fs::write(root.join("usr/sbin/nova-agent"), "#!/bin/sh\n").unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        "Package: nova-agent\nVersion: 1.39.1\nArchitecture: all\nMaintainer: x <x@example.com>\nDescription: legacy\n",
    )
    .unwrap();
    let deb = dir.join("nova-agent.deb");
    let status = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&root)
        .arg(&deb)
        .status()
        .unwrap();
    assert!(status.success());
    deb
}

fn ok(root: &DebianRoot, script: &str) -> String {
    let output = root.sh(script);
    assert!(output.status.success(), "{script}: {}", describe(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn mode_and_owner(path: &Path) -> (u32, u32, u32) {
    let meta = std::fs::symlink_metadata(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    (meta.permissions().mode() & 0o7777, meta.uid(), meta.gid())
}

/// The target whose `.wants` the unit is enabled into.
fn wanted_by(root: &DebianRoot) -> String {
    let unit = std::fs::read_to_string(root.join("/usr/lib/systemd/system/guestward.service")).unwrap();
    unit.lines()
        .find_map(|line| line.strip_prefix("WantedBy="))
        .expect("the unit has WantedBy=")
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn the_package_installs_upgrades_removes_and_purges_in_a_fresh_debian_root() {
    if skip_unless_root("package") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let package = build_package(dir.path());
    let legacy = legacy_package(dir.path());
    let root = DebianRoot::fresh();
    std::fs::copy(&package, root.join("/tmp/guestward.deb")).unwrap();
    std::fs::copy(&legacy, root.join("/tmp/nova-agent.deb")).unwrap();

    // The legacy agent is there first; installing Guestward replaces it.
    ok(&root, "dpkg -i /tmp/nova-agent.deb");
    let install = ok(&root, "dpkg -i /tmp/guestward.deb 2>&1");
    assert!(install.contains("nova-agent"), "{install}");
    assert!(
        !root.join("/usr/sbin/nova-agent").exists(),
        "the legacy agent is removed"
    );
    assert!(ok(&root, "dpkg-query -W -f '${Status}' guestward").contains("install ok installed"));

    // Files, modes, owners.
    assert_eq!(mode_and_owner(&root.join("/usr/sbin/guestward")), (0o755, 0, 0));
    for name in ["version", "password", "resetnetwork"] {
        let wasm = root.join(&format!("/usr/lib/guestward/commands/{name}.wasm"));
        assert_eq!(mode_and_owner(&wasm), (0o644, 0, 0));
    }
    for dir in [
        "/etc/guestward",
        "/etc/guestward/policy.d",
        "/etc/guestward/trusted-keys",
    ] {
        assert_eq!(mode_and_owner(&root.join(dir)), (0o755, 0, 0), "{dir}");
    }
    assert_eq!(
        mode_and_owner(&root.join("/usr/lib/systemd/system/guestward.service")).0,
        0o644
    );
    assert!(root.join("/usr/share/man/man8/guestward-serve.8").is_file());
    // postinst made the cache, for this machine, private to root.
    assert_eq!(mode_and_owner(&root.join("/var/cache/guestward")), (0o700, 0, 0));
    assert!(std::fs::read_dir(root.join("/var/cache/guestward")).unwrap().count() > 0);
    // ...and enabled the unit.
    let wants = format!("/etc/systemd/system/{}.wants/guestward.service", wanted_by(&root));
    assert!(root.join(&wants).is_symlink(), "{wants}");
    // The binary runs in the image.
    assert!(ok(&root, "guestward --version").starts_with("guestward "));

    // The operator's files survive an upgrade (a reinstall runs the same
    // maintainer scripts with the old version) and a remove.
    let site = "/etc/guestward/policy.d/50-site.toml";
    std::fs::write(root.join(site), "[component.version]\n").unwrap();
    std::fs::write(root.join("/etc/guestward/guestward.toml"), "rescan-seconds = 30\n").unwrap();
    ok(&root, "dpkg -i /tmp/guestward.deb");
    assert_eq!(
        std::fs::read_to_string(root.join(site)).unwrap(),
        "[component.version]\n"
    );
    assert!(root.join(&wants).is_symlink(), "still enabled after the upgrade");

    ok(&root, "dpkg -r guestward");
    assert!(!root.join("/usr/sbin/guestward").exists());
    assert_eq!(
        std::fs::read_to_string(root.join(site)).unwrap(),
        "[component.version]\n"
    );
    assert!(root.join("/etc/guestward/guestward.toml").exists());
    let masked = std::fs::read_link(root.join("/etc/systemd/system/guestward.service")).unwrap();
    assert_eq!(masked, Path::new("/dev/null"), "masked while removed");

    // Purge removes what the package and its scripts made; what the
    // operator wrote stays.
    ok(&root, "dpkg -P guestward");
    assert!(!root.join("/var/cache/guestward").exists());
    assert!(!root.join(&wants).exists() && !root.join(&wants).is_symlink());
    assert!(
        !root.join("/etc/systemd/system/guestward.service").is_symlink(),
        "unmasked"
    );
    assert!(
        !root
            .join("/var/lib/systemd/deb-systemd-helper-enabled/guestward.service.dsh-also")
            .exists()
    );
    assert!(
        !root.join("/etc/guestward/trusted-keys").exists(),
        "the package's empty directories go"
    );
    assert!(root.join(site).exists(), "the operator's drop-in stays");
}
