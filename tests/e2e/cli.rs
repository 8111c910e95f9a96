//! The `guestward` command line.

use std::process::{Command, Output};

use guestward_tests::artifacts::guestward;
use guestward_tests::{AgentBuilder, artifacts};

use crate::{AGENT_VERSION, answer};

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim_end().to_owned()
}

#[test]
fn run_executes_one_command_in_the_sandbox() {
    let version = artifacts::component("version");
    let output = guestward(&["run", version.to_str().unwrap(), "version", "agent"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), answer(AGENT_VERSION, "0"));

    let output = guestward(&["run", version.to_str().unwrap(), "nope"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), answer("No such agent command 'nope'", "404"));
}

#[test]
fn run_resolves_files_under_its_root() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc/readonly")).unwrap();
    std::fs::write(root.path().join("etc/readonly/conf"), "inside the root").unwrap();
    let policy = root.path().join("policy.toml");
    std::fs::write(&policy, crate::protocol::PROBE_POLICY).unwrap();
    let probe = artifacts::component("probe");
    let output = guestward(&[
        "run",
        probe.to_str().unwrap(),
        "read-file",
        "/etc/readonly/conf",
        "--root",
        root.path().to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(stdout(&output), answer("inside the root", "0"), "{output:?}");
}

#[test]
fn inspect_shows_names_imports_and_needs() {
    let probe = artifacts::component("probe");
    let output = guestward(&["inspect", probe.to_str().unwrap()]);
    let text = stdout(&output);
    assert!(text.contains("names      echo, count, spin"), "{text}");
    assert!(
        text.contains("guestward:command/files@1.1.0 (granted by policy)"),
        "{text}"
    );
    assert!(text.contains("needs      policy grants for: files, xenstore"), "{text}");
    assert!(text.contains("would refuse: imports guestward:command/"), "{text}");
    assert_eq!(
        output.status.code(),
        Some(1),
        "the built-in policy does not grant the probe"
    );

    let version = artifacts::component("version");
    let output = guestward(&["inspect", version.to_str().unwrap()]);
    assert!(output.status.success());
    assert!(stdout(&output).contains("needs      nothing beyond the always-granted interfaces"));
}

#[test]
fn call_talks_to_a_running_agent() {
    let agent = AgentBuilder::new().start();
    let socket = agent.socket();
    let output = guestward(&["call", "--socket", socket.to_str().unwrap(), "version", "agent"]);
    assert!(output.status.success());
    assert_eq!(stdout(&output), answer(AGENT_VERSION, "0"));
    let output = guestward(&["call", "--socket", socket.to_str().unwrap(), "nope"]);
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn serve_finds_the_builtin_commands_next_to_the_binary() {
    // `make` puts the built-in components in commands/ next to the binary;
    // `serve` with no --commands uses them.
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let socket = dir.path().join("s.sock");
    let mut child = Command::new(artifacts::guestward_bin())
        .args([
            "serve",
            "--no-cache",
            "--socket",
            socket.to_str().unwrap(),
            "--root",
            dir.path().to_str().unwrap(),
        ])
        .env("GUESTWARD_LOG", "warn")
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !socket.exists() {
        assert!(std::time::Instant::now() < deadline, "the agent did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = guestward(&["call", "--socket", socket.to_str().unwrap(), "features"]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(stdout(&output), answer(artifacts::BUILTIN_FEATURES, "0"));
}

#[test]
fn serve_with_nothing_to_serve_says_so() {
    // (Without --no-qga-device the agent would wait for QEMU's port.)
    let output = guestward(&["serve", "--no-socket", "--no-cache", "--no-qga-device"]);
    assert_eq!(output.status.code(), Some(2));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("nothing to serve"), "{error}");
}

#[test]
fn a_second_agent_on_the_same_socket_is_refused() {
    let agent = AgentBuilder::new().start();
    let output = guestward(&["serve", "--no-cache", "--socket", agent.socket().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("another guestward is serving"));
    assert_eq!(agent.call("version", "null"), answer(AGENT_VERSION, "0"));
}

#[test]
fn a_stopped_agent_exits_cleanly_and_removes_its_socket() {
    let agent = AgentBuilder::new().start();
    let status = agent.stop().expect("the agent should stop on SIGTERM");
    assert!(status.success(), "{status:?}\n{}", agent.log());
    assert!(!agent.socket().exists());
}

#[test]
fn policy_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[component.x]\n\nfiles = [{ path = \"relative\", access = \"read\" }]\n",
    )
    .unwrap();
    let version = artifacts::component("version");
    let output = guestward(&[
        "run",
        version.to_str().unwrap(),
        "version",
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("policy.toml:3: component.x.files"), "{error}");
}

#[test]
fn keygen_sign_and_verify_work_together() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let output = guestward(&["keygen", "vendor", "--dir", keys.to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    let private = keys.join("vendor.key");
    assert_eq!(std::fs::metadata(&private).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(
        !guestward(&["keygen", "vendor", "--dir", keys.to_str().unwrap()])
            .status
            .success(),
        "never overwrites"
    );

    let probe = dir.path().join("probe.wasm");
    std::fs::copy(artifacts::component("probe"), &probe).unwrap();
    let output = guestward(&["sign", "--key", private.to_str().unwrap(), probe.to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    // The private key stays in its file: trusted keys are the .pub files.
    std::fs::rename(&private, dir.path().join("vendor.key")).unwrap();
    let verify = |path: &std::path::Path| {
        guestward(&[
            "verify",
            "--trusted-keys",
            keys.to_str().unwrap(),
            path.to_str().unwrap(),
        ])
    };
    let output = verify(&probe);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout(&output).ends_with("signed by vendor"), "{}", stdout(&output));

    // The signature names the component: a renamed copy is refused until
    // it is signed for its new name.
    let renamed = dir.path().join("renamed.wasm");
    std::fs::copy(&probe, &renamed).unwrap();
    std::fs::copy(
        guestward::trust::signature_path(&probe),
        guestward::trust::signature_path(&renamed),
    )
    .unwrap();
    let output = verify(&renamed);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("the signature is for component probe, not renamed"),
        "{}",
        stdout(&output)
    );
    let key = dir.path().join("vendor.key");
    let output = guestward(&[
        "sign",
        "--key",
        key.to_str().unwrap(),
        "--name",
        "renamed",
        renamed.to_str().unwrap(),
    ]);
    assert!(stdout(&output).contains("as component renamed"), "{output:?}");
    assert!(verify(&renamed).status.success());

    let mut bytes = std::fs::read(&probe).unwrap();
    bytes.push(0);
    std::fs::write(&probe, bytes).unwrap();
    let output = verify(&probe);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("does not match"), "{}", stdout(&output));
}

#[test]
fn policy_check_shows_grants_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let commands = dir.path().join("commands");
    std::fs::create_dir(&commands).unwrap();
    for name in ["version", "probe"] {
        std::fs::copy(artifacts::component(name), commands.join(format!("{name}.wasm"))).unwrap();
    }
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, crate::protocol::PROBE_POLICY).unwrap();
    let output = guestward(&[
        "policy",
        "check",
        policy.to_str().unwrap(),
        "--commands",
        commands.to_str().unwrap(),
        "--trusted-keys",
        dir.path().join("no-keys").to_str().unwrap(),
    ]);
    let text = stdout(&output);
    assert!(text.contains("policy.toml: valid"), "{text}");
    assert!(text.contains("component version"), "{text}");
    assert!(
        text.contains("refused: ") && text.contains("probe.wasm: not signed"),
        "{text}"
    );
    assert!(text.contains("policy entry features: no such component"), "{text}");
    assert_eq!(output.status.code(), Some(1));

    std::fs::write(
        &policy,
        "[component.probe]\nfiles = [{ path = \"/etc\", access = \"writable\" }]\n",
    )
    .unwrap();
    let output = guestward(&[
        "policy",
        "check",
        policy.to_str().unwrap(),
        "--commands",
        commands.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("policy.toml:2:"),
        "{output:?}"
    );
}

/// A commands directory holding the built-in `version` and the test
/// components `others`, signed by a key in the returned keys directory.
fn signed_commands(others: &[&str]) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (commands, keys) = (dir.path().join("commands"), dir.path().join("keys"));
    std::fs::create_dir(&commands).unwrap();
    std::fs::create_dir(&keys).unwrap();
    let (private, public) = artifacts::test_key();
    std::fs::write(keys.join("tests.pub"), public).unwrap();
    std::fs::copy(artifacts::component("version"), commands.join("version.wasm")).unwrap();
    for name in others {
        let path = commands.join(format!("{name}.wasm"));
        std::fs::copy(artifacts::component(name), &path).unwrap();
        guestward_tests::agent::sign(private, &path);
    }
    (dir, commands, keys)
}

fn policy_check(policy: &str, commands: &std::path::Path, keys: &std::path::Path) -> Output {
    let file = commands.with_file_name("policy.toml");
    std::fs::write(&file, policy).unwrap();
    guestward(&[
        "policy",
        "check",
        file.to_str().unwrap(),
        "--commands",
        commands.to_str().unwrap(),
        "--trusted-keys",
        keys.to_str().unwrap(),
    ])
}

#[test]
fn policy_check_runs_info_with_no_grants() {
    // `policy check` acts on the real machine: the impostor's info() tries
    // to create this file under its /tmp grant.
    let mark = std::path::Path::new("/tmp/guestward-impostor-info");
    let _ = std::fs::remove_file(mark);
    let (_dir, commands, keys) = signed_commands(&["impostor"]);
    let output = policy_check(&crate::trust::impostor_policy(), &commands, &keys);
    let text = stdout(&output);
    let wrote = mark.exists();
    let _ = std::fs::remove_file(mark);
    assert!(text.contains("component impostor"), "{text}");
    assert!(!wrote, "info() wrote {} during policy check", mark.display());
}

#[test]
fn policy_check_reports_two_components_claiming_one_command() {
    let (_dir, commands, keys) = signed_commands(&["squatter"]);
    let output = policy_check("[component.version]\n[component.squatter]\n", &commands, &keys);
    let text = stdout(&output);
    assert!(
        text.contains("refused: ")
            && text.contains("squatter.wasm claims 'version', which")
            && text.contains("version.wasm"),
        "{text}"
    );
    assert_eq!(output.status.code(), Some(1), "{text}");
}

#[test]
fn the_daemon_cannot_dump_core_and_its_proc_files_are_roots() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;
    // Run it as an unprivileged user, so that root owning its /proc files
    // shows that it is not dumpable (a dumpable process owns them).
    let user = if rustix::process::getuid().is_root() {
        65534
    } else {
        rustix::process::getuid().as_raw()
    };
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let socket = dir.path().join("s.sock");
    let mut command = Command::new(artifacts::guestward_bin());
    command
        .args(["serve", "--no-cache", "--socket", socket.to_str().unwrap()])
        .args(["--root", dir.path().to_str().unwrap()])
        .env("GUESTWARD_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .uid(user)
        .gid(user);
    let mut child = command.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !socket.exists() && child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the agent did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let proc_dir = std::path::PathBuf::from(format!("/proc/{}", child.id()));
    let limits = std::fs::read_to_string(proc_dir.join("limits")).unwrap_or_default();
    let status = std::fs::read_to_string(proc_dir.join("status")).unwrap_or_default();
    let owner = std::fs::metadata(proc_dir.join("status")).map(|meta| meta.uid());
    let _ = child.kill();
    let _ = child.wait();
    let core = limits
        .lines()
        .find(|line| line.starts_with("Max core file size"))
        .map(|line| line.split_whitespace().skip(4).take(2).collect::<Vec<_>>());
    assert_eq!(core, Some(vec!["0", "0"]), "{limits}");
    assert!(
        status.lines().any(|line| line.starts_with(&format!("Uid:\t{user}\t"))),
        "{status}"
    );
    assert_eq!(owner.ok(), Some(0), "the daemon is dumpable");
}

#[test]
fn inspect_prints_the_policy_entry_a_component_asks_for() {
    let password = artifacts::component("password");
    let output = guestward(&["inspect", password.to_str().unwrap()]);
    let text = stdout(&output);
    let stub = text
        .split_once("# The policy entry it asks for:\n")
        .map(|(_, stub)| stub)
        .unwrap_or_else(|| panic!("no policy stub: {text}"));
    assert!(stub.starts_with("[component.password]\n"), "{stub}");
    assert!(
        stub.contains(r#"{ path = "/etc/shadow", access = "read-write" }"#),
        "{stub}"
    );
    // The stub is a policy the daemon takes as it is.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stub.toml");
    std::fs::write(&file, stub).unwrap();
    let output = guestward(&[
        "inspect",
        password.to_str().unwrap(),
        "--policy",
        file.to_str().unwrap(),
    ]);
    let text = stdout(&output);
    assert!(text.contains("stub.toml: would load"), "{text}");
    assert!(!text.contains("than asked"), "{text}");
}

#[test]
fn policy_check_says_where_the_policy_grants_more_or_less_than_asked() {
    let (_dir, commands, keys) = signed_commands(&[]);
    for name in ["password", "resetnetwork"] {
        std::fs::copy(artifacts::component(name), commands.join(format!("{name}.wasm"))).unwrap();
    }
    // The built-in policy grants each built-in exactly what it asks.
    let output = policy_check(guestward::policy::DEFAULT_POLICY, &commands, &keys);
    let text = stdout(&output);
    assert!(text.contains("component resetnetwork"), "{text}");
    assert!(!text.contains("than it asks"), "{text}");
    // Narrowed, and widened: each difference is named.
    let policy = guestward::policy::DEFAULT_POLICY
        .replace(r#"    { path = "/etc/shadow", access = "read-write" },"#, "")
        .replace(
            "[component.resetnetwork]\n",
            "[component.resetnetwork]\nupdate = true\n",
        );
    let output = policy_check(&policy, &commands, &keys);
    let text = stdout(&output);
    assert!(
        text.contains("less      than it asks: files read-write /etc/shadow"),
        "{text}"
    );
    assert!(
        text.contains("more      than it asks: update may install components"),
        "{text}"
    );
}
