//! `make install`'s layout, into a DESTDIR: every file where an image
//! builder expects it with the right mode, a warm compile cache, man pages
//! and completions that work, and a second install (an upgrade) that keeps
//! what the operator put under /etc/guestward.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use guestward_tests::artifacts;

const BUILTINS: [&str; 7] = [
    "version",
    "features",
    "password",
    "injectfile",
    "kmsactivate",
    "agentupdate",
    "resetnetwork",
];

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `make install-files` of the binary under test into `destdir`.
fn install(destdir: &Path) {
    install_with(destdir, &[]);
}

fn install_with(destdir: &Path, variables: &[&str]) {
    let output = Command::new("make")
        .current_dir(repository())
        .arg("--no-print-directory")
        .arg("install-files")
        .args(variables)
        .arg(format!("INSTALL_BIN={}", artifacts::guestward_bin().display()))
        .arg(format!("DESTDIR={}", destdir.display()))
        .env_remove("MAKEFLAGS")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn make_install_lays_out_an_image_and_an_upgrade_keeps_the_operators_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    install(root);

    assert_eq!(mode(&root.join("usr/sbin/guestward")), 0o755);
    for name in BUILTINS {
        assert_eq!(
            mode(&root.join(format!("usr/lib/guestward/commands/{name}.wasm"))),
            0o644
        );
    }
    assert_eq!(mode(&root.join("usr/lib/systemd/system/guestward.service")), 0o644);
    for dir in ["etc/guestward", "etc/guestward/policy.d", "etc/guestward/trusted-keys"] {
        assert!(root.join(dir).is_dir(), "{dir}");
    }
    assert!(
        !root.join("etc/guestward/policy.toml").exists(),
        "the built-in policy is not frozen into /etc"
    );
    let documented = std::fs::read_to_string(root.join("usr/share/doc/guestward/policy.toml")).unwrap();
    assert_eq!(documented, include_str!("../../host/src/policy/default.toml"));
    assert!(root.join("usr/share/doc/guestward/guestward.toml").is_file());

    // A warm cache: the components compiled, and private to root.
    let cache = root.join("var/cache/guestward");
    assert_eq!(mode(&cache), 0o700);
    let cached = std::fs::read_dir(&cache).unwrap().count();
    assert!(cached >= BUILTINS.len(), "{cached} files in the cache");

    // Man pages from the CLI definition, one per subcommand.
    let man = root.join("usr/share/man/man8");
    for page in [
        "guestward.8",
        "guestward-serve.8",
        "guestward-policy-check.8",
        "guestward-fuzz.8",
    ] {
        let text = std::fs::read_to_string(man.join(page)).unwrap();
        assert!(text.starts_with(".ie") && text.contains(".TH "), "{page}");
    }
    let serve = std::fs::read_to_string(man.join("guestward-serve.8")).unwrap();
    assert!(serve.contains("audit\\-log"), "the page lists serve's flags");

    // The bash completion loads and completes subcommands.
    let completion = root.join("usr/share/bash-completion/completions/guestward");
    let script = format!(
        "source {}; COMP_WORDS=(guestward pol); COMP_CWORD=1; _guestward guestward pol guestward; echo \"${{COMPREPLY[@]}}\"",
        completion.display()
    );
    let output = Command::new("bash").arg("-c").arg(&script).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "policy");
    assert!(root.join("usr/share/zsh/vendor-completions/_guestward").is_file());
    assert!(
        root.join("usr/share/fish/vendor_completions.d/guestward.fish")
            .is_file()
    );

    // Another PREFIX: the unit names where the binary and commands are.
    let elsewhere = tempfile::tempdir().unwrap();
    install_with(elsewhere.path(), &["PREFIX=/opt/guestward"]);
    let unit = std::fs::read_to_string(
        elsewhere
            .path()
            .join("opt/guestward/lib/systemd/system/guestward.service"),
    )
    .unwrap();
    assert!(unit.contains("ExecStart=/opt/guestward/sbin/guestward serve"), "{unit}");
    assert!(
        !unit.contains("/usr/sbin") && !unit.contains("/usr/lib/guestward"),
        "{unit}"
    );
    assert!(
        elsewhere
            .path()
            .join("opt/guestward/lib/guestward/commands/version.wasm")
            .is_file()
    );

    // The operator's files survive a second install.
    let drop_in = root.join("etc/guestward/policy.d/50-site.toml");
    std::fs::write(&drop_in, "[component.version]\n").unwrap();
    let config = root.join("etc/guestward/guestward.toml");
    std::fs::write(&config, "rescan-seconds = 30\n").unwrap();
    install(root);
    assert_eq!(std::fs::read_to_string(&drop_in).unwrap(), "[component.version]\n");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "rescan-seconds = 30\n");
}
