//! agentupdate through the real xenstored, against a loopback HTTP server:
//! a signed bundle (made with the real `tar`) is installed and answering
//! without a restart; every bad update (wrong checksum, bad signature, a
//! truncated or oversize download, one bad component among good ones)
//! leaves the commands directory exactly as it was; a legacy
//! `installer.sh` tarball runs only when the operator allows it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;

use guestward_tests::http::{HttpServer, Response};
use guestward_tests::{AgentBuilder, agent::sign, artifacts};

use crate::{Guest, answer};

/// The built-in policy, updates allowed from the server's `/updates/`
/// (at most 1 MiB), and an entry for the probe the bundles carry.
fn policy(server: &HttpServer) -> String {
    let probe = crate::protocol::PROBE_POLICY.split("[component.probe]").nth(1).unwrap();
    guestward::policy::DEFAULT_POLICY
        .replace("download = []", &format!("download = [{:?}]", server.url("/updates/")))
        .replace("download-mib = 64", "download-mib = 1")
        + "\n[component.probe]"
        + probe
}

/// A gzip tarball (by `tar -czf`) of `files`, under `top/` if given.
fn tarball(files: &[(&str, &[u8])], top: Option<&str>) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let content = match top {
        Some(top) => dir.path().join("tree").join(top),
        None => dir.path().join("tree"),
    };
    for (name, bytes) in files {
        let path = content.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let out = dir.path().join("bundle.tar.gz");
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&out)
        .arg("-C")
        .arg(dir.path().join("tree"))
        .arg(".")
        .status()
        .expect("tar");
    assert!(status.success());
    std::fs::read(out).unwrap()
}

/// The probe component and its signature by `key` (the agent's own key
/// unless told otherwise).
fn signed_probe(key: &str) -> (Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probe.wasm");
    std::fs::copy(artifacts::component("probe"), &path).unwrap();
    sign(key, &path);
    (
        std::fs::read(&path).unwrap(),
        std::fs::read(guestward::trust::signature_path(&path)).unwrap(),
    )
}

/// `md5sum`'s answer for `bytes`.
fn md5sum(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file");
    std::fs::write(&path, bytes).unwrap();
    let output = Command::new("md5sum").arg(&path).output().expect("md5sum");
    String::from_utf8(output.stdout)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_owned()
}

/// Every file of the commands directory and its contents.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let contents = std::fs::read(entry.path()).unwrap_or_default();
            (entry.file_name().to_string_lossy().into_owned(), contents)
        })
        .collect()
}

fn update_request(url: &str, md5: &str) -> String {
    serde_json::json!({"name": "agentupdate", "value": format!("{url},{md5}")}).to_string()
}

fn message_and_code(reply: &str) -> (String, String) {
    let value: serde_json::Value = serde_json::from_str(reply).unwrap();
    (
        value["message"].as_str().unwrap().to_owned(),
        value["returncode"].as_str().unwrap().to_owned(),
    )
}

struct Updates {
    server: HttpServer,
    bodies: HashMap<String, Vec<u8>>,
}

/// The server with its bundles, and an agent allowed to fetch from it.
fn start() -> (Updates, Guest) {
    let (private, _) = artifacts::test_key();
    let (other_private, _) = guestward::trust::generate_key().unwrap();
    let (wasm, signature) = signed_probe(private);
    let (_, forged) = signed_probe(&other_private);
    let bodies: HashMap<String, Vec<u8>> = [
        (
            "good-1.2.tar.gz",
            tarball(
                &[("probe.wasm", &wasm), ("probe.wasm.sig", &signature)],
                Some("guestward-1.2"),
            ),
        ),
        (
            "forged.tar.gz",
            tarball(&[("probe.wasm", &wasm), ("probe.wasm.sig", &forged)], None),
        ),
        (
            "one-bad.tar.gz",
            tarball(
                &[
                    ("probe.wasm", &wasm),
                    ("probe.wasm.sig", &signature),
                    ("other.wasm", b"\0asm\x0d\0\x01\0"),
                    ("other.wasm.sig", &signature),
                ],
                None,
            ),
        ),
        (
            "legacy.tar.gz",
            tarball(&[("installer.sh", b"#!/bin/sh\nexit 0\n")], Some("nova-agent")),
        ),
        ("oversize.tar", vec![0; 2 << 20]),
    ]
    .into_iter()
    .map(|(name, body)| (name.to_owned(), body))
    .collect();
    let mut routes: HashMap<String, Response> = bodies
        .iter()
        .map(|(name, body)| (format!("/updates/{name}"), Response::Body(body.clone())))
        .collect();
    let good = &bodies["good-1.2.tar.gz"];
    routes.insert(
        "/updates/cut.tar.gz".to_owned(),
        Response::Truncated {
            body: good[..good.len() / 2].to_vec(),
            announced: good.len(),
        },
    );
    let server = HttpServer::start(routes);
    let guest = Guest::start(AgentBuilder::new().policy(&policy(&server)));
    (Updates { server, bodies }, guest)
}

#[test]
fn a_signed_bundle_is_installed_and_answers_without_a_restart() {
    let (updates, guest) = start();
    let pid = guest.agent.pid();
    assert_eq!(
        guest.dom0.call("e0", r#"{"name":"echo","value":"hi"}"#),
        answer("No such agent command 'echo'", "404")
    );
    let body = &updates.bodies["good-1.2.tar.gz"];
    let url = updates.server.url("/updates/good-1.2.tar.gz");
    assert_eq!(
        guest.dom0.call("u", &update_request(&url, &md5sum(body))),
        answer("", "0")
    );
    assert_eq!(
        guest.dom0.call("e1", r#"{"name":"echo","value":"hi"}"#),
        answer("\\\"hi\\\"", "0")
    );
    assert_eq!(guest.agent.pid(), pid);
    let commands = snapshot(&guest.agent.commands());
    assert!(
        commands.contains_key("probe.wasm") && commands.contains_key("probe.wasm.sig"),
        "{:?}",
        commands.keys()
    );
    assert!(
        !commands.keys().any(|name| name.starts_with(".staging")),
        "{:?}",
        commands.keys()
    );
}

#[test]
fn a_bad_update_changes_nothing() {
    let (updates, guest) = start();
    let before = snapshot(&guest.agent.commands());
    let md5 = |name: &str| md5sum(&updates.bodies[name]);
    let cases = [
        (
            "good-1.2.tar.gz",
            "0123456789abcdef0123456789abcdef".to_owned(),
            "MD5 sums do not match (0123",
        ),
        (
            "forged.tar.gz",
            md5("forged.tar.gz"),
            "Update refused: probe.wasm: signed by a key that is not trusted",
        ),
        (
            "one-bad.tar.gz",
            md5("one-bad.tar.gz"),
            "Update refused: other.wasm: the signature is for component probe, not other",
        ),
        ("cut.tar.gz", md5("good-1.2.tar.gz"), "/updates/cut.tar.gz: "),
        (
            "oversize.tar",
            md5("oversize.tar"),
            "/updates/oversize.tar is larger than 1048576 bytes",
        ),
        (
            "legacy.tar.gz",
            md5("legacy.tar.gz"),
            "This update is a legacy tarball with installer.sh",
        ),
    ];
    for (index, (name, md5, expected)) in cases.iter().enumerate() {
        let reply = guest.dom0.call(
            &format!("bad-{index}"),
            &update_request(&updates.server.url(&format!("/updates/{name}")), md5),
        );
        let (message, code) = message_and_code(&reply);
        assert_eq!(code, "500", "{name}: {reply}");
        assert!(message.contains(expected), "{name}: {reply}");
        assert_eq!(
            snapshot(&guest.agent.commands()),
            before,
            "{name} changed the commands directory"
        );
    }
    // Nothing was loaded either; the agent serves on.
    assert_eq!(
        guest.dom0.call("e", r#"{"name":"echo","value":"hi"}"#),
        answer("No such agent command 'echo'", "404")
    );
    assert_eq!(
        guest.dom0.call("v", r#"{"name":"version","value":"agent"}"#),
        answer(crate::AGENT_VERSION, "0")
    );
}

#[test]
fn urls_outside_the_grant_and_legacy_argument_errors_are_refused() {
    let (updates, guest) = start();
    let vectors = [
        (
            r#"{"name":"agentupdate","value":5}"#.to_owned(),
            answer("Invalid arguments", "500"),
        ),
        (
            r#"{"name":"agentupdate","value":{"url":"x"}}"#.to_owned(),
            answer("Missing URL or MD5 sum in dictionary arguments", "500"),
        ),
        (
            update_request("http://h.example/agent", "00").replace(",00", ""),
            answer("need more than 1 value to unpack", "500"),
        ),
        (
            update_request(&updates.server.url("/updates/agent"), "00"),
            answer("Invalid URL", "500"),
        ),
    ];
    for (index, (request, expected)) in vectors.iter().enumerate() {
        assert_eq!(&guest.dom0.call(&format!("a{index}"), request), expected, "{request}");
    }
    let outside = updates.server.url("/elsewhere/good-1.2.tar.gz");
    let (message, code) = message_and_code(&guest.dom0.call("o", &update_request(&outside, "00")));
    assert_eq!(code, "500");
    assert!(
        message.contains("not granted") || message.contains("outside"),
        "{message}"
    );
}

#[test]
fn a_legacy_installer_runs_only_where_the_operator_allows_it() {
    let legacy = tarball(
        &[("installer.sh", b"#!/bin/sh\nexit 0\n"), ("bin/agent", b"ELF")],
        Some("nova-agent"),
    );
    let mut routes = HashMap::new();
    routes.insert(
        "/updates/nova-agent-1.39.tar.gz".to_owned(),
        Response::Body(legacy.clone()),
    );
    let server = HttpServer::start(routes);
    let policy = policy(&server)
        .replace(
            "update = true\n",
            "update = true\nsettings = { legacy-installer = \"allow\" }\n",
        )
        .replace(
            "files = []\nprograms = []\n",
            "files = [{ path = \"/var/lib/guestward\", access = \"read-write\" }]\n\
             programs = [[\"/bin/sh\", \"/var/lib/guestward/legacy-update/installer.sh\"]]\n",
        );
    let guest = Guest::start(AgentBuilder::new().policy(&policy));
    std::fs::create_dir_all(guest.agent.root().join("var/lib")).unwrap();
    let url = server.url("/updates/nova-agent-1.39.tar.gz");
    assert_eq!(
        guest.dom0.call("l", &update_request(&url, &md5sum(&legacy))),
        answer("", "0")
    );
    // Under --root the run is recorded; the unpacked tree is cleaned up.
    let root = guest.agent.root();
    let actions = std::fs::read_to_string(root.join(".guestward/actions.log")).unwrap();
    assert!(
        actions.contains(r#"["/bin/sh","/var/lib/guestward/legacy-update/installer.sh"]"#),
        "{actions}"
    );
    assert!(!root.join("var/lib/guestward/legacy-update").exists());
    assert!(root.join("var/lib/guestward").is_dir());
}

/// A server holding one bundle of `files` at `/updates/bundle.tar.gz`.
fn serve_bundle(files: &[(&str, &[u8])]) -> (HttpServer, Vec<u8>) {
    let bundle = tarball(files, None);
    let mut routes = HashMap::new();
    routes.insert("/updates/bundle.tar.gz".to_owned(), Response::Body(bundle.clone()));
    (HttpServer::start(routes), bundle)
}

/// A test component signed by the agents' trusted key as `name.wasm`.
fn signed_as(component: &str, name: &str) -> (Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.wasm"));
    std::fs::copy(artifacts::component(component), &path).unwrap();
    sign(artifacts::test_key().0, &path);
    (
        std::fs::read(&path).unwrap(),
        std::fs::read(guestward::trust::signature_path(&path)).unwrap(),
    )
}

#[test]
fn a_bundle_cannot_replace_a_built_in_with_a_component_signed_by_any_trusted_key() {
    let (wasm, signature) = signed_as("impostor", "password");
    let (server, bundle) = serve_bundle(&[("password.wasm", &wasm), ("password.wasm.sig", &signature)]);
    let guest = Guest::start(AgentBuilder::new().policy(&policy(&server)));
    let before = snapshot(&guest.agent.commands());
    let url = server.url("/updates/bundle.tar.gz");
    let (message, code) = message_and_code(&guest.dom0.call("u", &update_request(&url, &md5sum(&bundle))));
    assert_eq!(code, "500", "{message}");
    assert!(
        message.contains("Update refused: password.wasm: `password` is a built-in command name"),
        "{message}"
    );
    assert_eq!(snapshot(&guest.agent.commands()), before);
    let reply = guest.dom0.call("p", r#"{"name":"password","value":"x"}"#);
    assert!(!reply.contains("impostor"), "{reply}");
    assert!(!guest.agent.root().join("etc/shadow").exists());
}

#[test]
fn staging_an_update_runs_info_with_no_grants() {
    let (wasm, signature) = signed_as("impostor", "impostor");
    let (server, bundle) = serve_bundle(&[("impostor.wasm", &wasm), ("impostor.wasm.sig", &signature)]);
    // The built-in password (which answers the impostor's names) is not
    // loaded, so that the update goes through.
    let policy = policy(&server).replace("[component.password]", "[component.password-off]")
        + "\n[component.impostor]\nfiles = [{ path = \"/tmp\", access = \"read-write\" }]\n";
    // A cache of its own: the impostor's info() is asked, not found
    // cached by another test.
    let cache = guestward_tests::artifacts::private_cache();
    let guest = Guest::start(AgentBuilder::new().policy(&policy).cache(cache.path()));
    let url = server.url("/updates/bundle.tar.gz");
    assert_eq!(
        guest.dom0.call("u", &update_request(&url, &md5sum(&bundle))),
        answer("", "0")
    );
    assert!(
        !guest.agent.root().join("tmp/guestward-impostor-info").exists(),
        "info() wrote a file while the update was staged"
    );
}

/// The probe, made distinct by a custom section naming `round` (a
/// different hash, so a different compiled component), signed by the
/// agents' key.
fn distinct_probe(round: usize) -> (Vec<u8>, Vec<u8>) {
    let mut wasm = std::fs::read(artifacts::component("probe")).unwrap();
    let name = b"guestward-test-round";
    let payload = round.to_le_bytes();
    let size = 1 + name.len() + payload.len();
    assert!(size < 0x80 && name.len() < 0x80, "one-byte LEB128 sizes");
    wasm.push(0); // a custom section
    wasm.push(size as u8);
    wasm.push(name.len() as u8);
    wasm.extend_from_slice(name);
    wasm.extend_from_slice(&payload);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probe.wasm");
    std::fs::write(&path, &wasm).unwrap();
    sign(artifacts::test_key().0, &path);
    (wasm, std::fs::read(guestward::trust::signature_path(&path)).unwrap())
}

/// Every update replaces the component's compiled code: the old code must
/// go with the old component, or a daemon updated for years would grow
/// without bound.
#[test]
fn fifty_updates_of_one_component_do_not_grow_the_daemon() {
    const ROUNDS: usize = 55;
    let bodies: Vec<Vec<u8>> = (0..ROUNDS)
        .map(|round| {
            let (wasm, signature) = distinct_probe(round);
            tarball(&[("probe.wasm", &wasm), ("probe.wasm.sig", &signature)], None)
        })
        .collect();
    let routes = bodies
        .iter()
        .enumerate()
        .map(|(round, body)| (format!("/updates/{round}.tar.gz"), Response::Body(body.clone())))
        .collect();
    let server = HttpServer::start(routes);
    let cache = tempfile::tempdir().unwrap();
    let guest = Guest::start(AgentBuilder::new().policy(&policy(&server)).cache(cache.path()));
    let update_and_call = |round: usize| {
        let url = server.url(&format!("/updates/{round}.tar.gz"));
        let request = update_request(&url, &md5sum(&bodies[round]));
        assert_eq!(guest.dom0.call(&format!("u{round}"), &request), answer("", "0"));
        assert_eq!(
            guest.dom0.call(&format!("e{round}"), r#"{"name":"echo","value":"hi"}"#),
            answer("\\\"hi\\\"", "0")
        );
    };
    // Warm up: the first updates fill the pool and the allocator.
    for round in 0..5 {
        update_and_call(round);
    }
    let before = guest.agent.rss_kib();
    for round in 5..ROUNDS {
        update_and_call(round);
    }
    let after = guest.agent.rss_kib();
    // Each component kept alive held its compiled code and its instance
    // state (about 1 MiB of probe): 50 of them would show far above this.
    assert!(
        after < before + 8 * 1024,
        "RSS grew from {before} KiB to {after} KiB over 50 updates"
    );
}
