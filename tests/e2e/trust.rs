//! Which components the daemon runs: built-ins pinned by hash at build
//! time, others only with a signature by a trusted key (or from a directory
//! the operator allows unsigned components from).

use guestward_tests::agent::sign;
use guestward_tests::{AgentBuilder, artifacts};

use crate::protocol::PROBE_POLICY;
use crate::{AGENT_VERSION, answer};

/// A copy of the probe in a directory of its own.
fn probe_copy() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probe.wasm");
    std::fs::copy(artifacts::component("probe"), &path).unwrap();
    (dir, path)
}

#[test]
fn built_in_components_run_unsigned_because_they_are_pinned() {
    let agent = AgentBuilder::new().start();
    assert_eq!(agent.call("version", "null"), answer(AGENT_VERSION, "0"));
    assert_eq!(
        agent.log().matches(r#"provenance="built-in (pinned)""#).count(),
        artifacts::builtin_loaded().len(),
        "{}",
        agent.log()
    );
}

#[test]
fn a_signed_component_runs_and_says_who_signed_it() {
    let agent = AgentBuilder::new().component("probe").policy(PROBE_POLICY).start();
    assert_eq!(agent.call("echo", "1"), answer("1", "0"));
    assert!(
        agent.log().contains(r#"provenance="signed by tests""#),
        "{}",
        agent.log()
    );
}

#[test]
fn an_unsigned_component_is_refused_and_the_log_says_why() {
    let (_dir, probe) = probe_copy();
    let agent = AgentBuilder::new()
        .component_file_as_is(&probe)
        .policy(PROBE_POLICY)
        .start();
    assert!(agent.log().contains("probe.wasm: not signed"), "{}", agent.log());
    assert_eq!(agent.call("echo", "1"), answer("No such agent command 'echo'", "404"));
}

#[test]
fn a_component_changed_after_signing_is_refused() {
    let (dir, probe) = probe_copy();
    sign(artifacts::test_key().0, &probe);
    // Same name, same signature file (by the trusted key), other bytes.
    std::fs::copy(artifacts::component("features"), &probe).unwrap();
    let agent = AgentBuilder::new()
        .component_file_as_is(&probe)
        .policy(PROBE_POLICY)
        .start();
    let log = agent.log();
    assert!(
        log.contains("probe.wasm: the signature does not match the component"),
        "{log}"
    );
    assert_eq!(agent.call("echo", "1"), answer("No such agent command 'echo'", "404"));
    drop(dir);
}

#[test]
fn a_signature_by_an_untrusted_key_is_refused() {
    let (_dir, probe) = probe_copy();
    let (stranger, _) = guestward::trust::generate_key().unwrap();
    sign(&stranger, &probe);
    let agent = AgentBuilder::new()
        .component_file_as_is(&probe)
        .policy(PROBE_POLICY)
        .start();
    assert!(
        agent.log().contains("signed by a key that is not trusted"),
        "{}",
        agent.log()
    );
    assert_eq!(agent.call("echo", "1"), answer("No such agent command 'echo'", "404"));
}

#[test]
fn a_built_in_under_another_name_is_not_pinned() {
    // features' bytes posing as version: pinned hashes go with their names.
    let dir = tempfile::tempdir().unwrap();
    let impostor = dir.path().join("version.wasm");
    std::fs::copy(artifacts::component("features"), &impostor).unwrap();
    let agent = AgentBuilder::new().component_file_as_is(&impostor).start();
    assert!(agent.log().contains("version.wasm: not signed"), "{}", agent.log());
    assert_eq!(
        agent.call("version", "null"),
        answer("No such agent command 'version'", "404")
    );
}

#[test]
fn the_operator_may_allow_unsigned_components_from_a_directory() {
    let (_dir, probe) = probe_copy();
    let agent = AgentBuilder::new()
        .component_file_as_is(&probe)
        .policy(PROBE_POLICY)
        .allow_unsigned()
        .start();
    assert_eq!(agent.call("echo", "1"), answer("1", "0"));
    assert!(
        agent
            .log()
            .contains(r#"provenance="unsigned (allowed for its directory)""#),
        "{}",
        agent.log()
    );
}

/// The impostor (hostile: it poses as `password`) signed by the agents'
/// trusted key as `password.wasm`, in a directory of its own.
fn impostor_as_password() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("password.wasm");
    std::fs::copy(artifacts::component("impostor"), &path).unwrap();
    sign(artifacts::test_key().0, &path);
    (dir, path)
}

#[test]
fn a_trusted_key_cannot_take_over_a_built_in_name_it_is_not_pinned_for() {
    let (_dir, impostor) = impostor_as_password();
    // It replaces the built-in password.wasm in the commands directory.
    let agent = AgentBuilder::new().component_file_as_is(&impostor).start();
    let log = agent.log();
    assert!(
        log.contains("password.wasm: `password` is a built-in command name"),
        "{log}"
    );
    let reply = agent.call("password", r#""x""#);
    assert!(!reply.contains("impostor"), "{reply}");
    assert_eq!(
        agent.call("keyinit", "1"),
        answer("No such agent command 'keyinit'", "404")
    );
    assert!(
        !agent.root().join("etc/shadow").exists(),
        "the impostor wrote /etc/shadow"
    );
}

#[test]
fn a_key_the_policy_names_as_signer_may_provide_a_built_in_name() {
    let (_dir, impostor) = impostor_as_password();
    let policy = guestward::policy::DEFAULT_POLICY.replace(
        "[component.password]\n",
        "[component.password]\nsigners = [\"tests\"]\n",
    );
    let agent = AgentBuilder::new()
        .component_file_as_is(&impostor)
        .policy(&policy)
        .start();
    assert!(
        agent.log().contains(r#"provenance="signed by tests""#),
        "{}",
        agent.log()
    );
    std::fs::create_dir(agent.root().join("etc")).unwrap();
    assert_eq!(
        agent.call("password", r#""x""#),
        answer("impostor rewrote /etc/shadow", "0")
    );
}

#[test]
fn a_signature_made_for_one_name_does_not_cover_another() {
    // The probe, signed as probe, shipped as echo-tool.wasm with that signature.
    let (dir, probe) = probe_copy();
    sign(artifacts::test_key().0, &probe);
    let renamed = dir.path().join("echo-tool.wasm");
    std::fs::rename(&probe, &renamed).unwrap();
    std::fs::rename(
        guestward::trust::signature_path(&probe),
        guestward::trust::signature_path(&renamed),
    )
    .unwrap();
    let policy = PROBE_POLICY.replace("[component.probe]", "[component.echo-tool]");
    let agent = AgentBuilder::new()
        .component_file_as_is(&renamed)
        .policy(&policy)
        .start();
    assert!(
        agent
            .log()
            .contains("echo-tool.wasm: the signature is for component probe, not echo-tool"),
        "{}",
        agent.log()
    );
    assert_eq!(agent.call("echo", "1"), answer("No such agent command 'echo'", "404"));
}

#[test]
fn old_unbound_signatures_need_the_operators_opt_in() {
    let (_dir, probe) = probe_copy();
    let digest = guestward::runtime::component::sha256_hex(&std::fs::read(&probe).unwrap());
    let v1 = guestward::trust::sign_v1(artifacts::test_key().0, &digest).unwrap();
    std::fs::write(guestward::trust::signature_path(&probe), v1).unwrap();
    let refusing = AgentBuilder::new()
        .component_file_as_is(&probe)
        .policy(PROBE_POLICY)
        .start();
    assert!(
        refusing
            .log()
            .contains("probe.wasm: a v1 signature (it does not name the component)"),
        "{}",
        refusing.log()
    );
    assert_eq!(
        refusing.call("echo", "1"),
        answer("No such agent command 'echo'", "404")
    );

    let accepting = AgentBuilder::new()
        .component_file_as_is(&probe)
        .policy(PROBE_POLICY)
        .arg("--accept-v1-signatures")
        .start();
    assert_eq!(accepting.call("echo", "1"), answer("1", "0"));
    assert!(
        accepting
            .log()
            .contains(r#"provenance="signed by tests (v1 signature: the name is not signed)""#),
        "{}",
        accepting.log()
    );
}

/// The probe's policy, and an entry that lets the impostor write `/tmp`.
pub fn impostor_policy() -> String {
    format!("{PROBE_POLICY}\n[component.impostor]\nfiles = [{{ path = \"/tmp\", access = \"read-write\" }}]\n")
}

#[test]
fn loading_a_component_runs_its_info_with_no_grants() {
    // A cache of its own: the impostor's info() is asked (by the child
    // that fills a cold cache), not found cached by another test.
    let cache = guestward_tests::artifacts::private_cache();
    let agent = AgentBuilder::new()
        .component("impostor")
        .policy(&impostor_policy())
        .cache(cache.path())
        .start();
    assert!(
        agent.log().contains("component=\"impostor\""),
        "the impostor loads: {}",
        agent.log()
    );
    assert!(
        !agent.root().join("tmp/guestward-impostor-info").exists(),
        "info() wrote a file while the daemon loaded it"
    );
    // `guestward compile` acts on the real machine.
    assert!(
        !std::path::Path::new("/tmp/guestward-impostor-info").exists(),
        "info() wrote a file while it was compiled into the cache"
    );
}

#[test]
fn a_drop_in_claiming_a_built_in_command_is_refused_and_the_agent_serves_on() {
    let agent = AgentBuilder::new().component("squatter").start();
    assert_eq!(agent.call("version", "null"), answer(AGENT_VERSION, "0"));
    assert_eq!(
        agent.call("squat", "null"),
        answer("No such agent command 'squat'", "404")
    );
    let log = agent.log();
    assert!(
        log.contains("squatter.wasm") && log.contains("claims 'version', which") && log.contains("version.wasm"),
        "{log}"
    );
    assert_eq!(agent.call("features", "null"), answer(artifacts::BUILTIN_FEATURES, "0"));
}
