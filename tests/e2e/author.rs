//! A third-party author's path, as the docs tell it: `guestward new` outside
//! this repository, a native `cargo test` with the SDK's test host, a
//! `wasm32-wasip2` build, `guestward sign`, and a run in the real sandbox.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use guestward_tests::artifacts::{self, guestward};

use crate::{AGENT_VERSION, answer};

/// Cargo on the new crate, offline (the workspace's build has already
/// fetched every crate the SDK needs), with a target directory kept between
/// runs of this test so that the SDK's dependencies are compiled once.
fn cargo(krate: &Path, args: &[&str]) -> Output {
    let started = Instant::now();
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(args)
        .arg("--offline")
        .current_dir(krate)
        .env("CARGO_TARGET_DIR", shared_target())
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .unwrap();
    eprintln!("cargo {}: {:.1} s", args.join(" "), started.elapsed().as_secs_f64());
    output
}

fn shared_target() -> PathBuf {
    artifacts::target_dir().join("authors")
}

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn a_new_command_tests_builds_signs_and_runs_in_the_sandbox() {
    // A temporary directory: outside this repository and its workspace.
    let work = tempfile::tempdir().unwrap();
    let krate = work.path().join("hello-author");
    let sdk = repository().join("guest-sdk");
    let output = guestward(&[
        "new",
        "hello-author",
        "--path",
        krate.to_str().unwrap(),
        "--sdk-path",
        sdk.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{output:?}");
    assert!(krate.join("policy.toml").is_file() && krate.join("README.md").is_file());

    let output = cargo(&krate, &["test"]);
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(log.contains("test result: ok. 2 passed"), "{log}");

    let output = cargo(&krate, &["build", "--profile", "wasm", "--target", "wasm32-wasip2"]);
    assert!(output.status.success(), "{output:?}");
    // The component's name is the file's stem: cargo turned '-' into '_'.
    let built = shared_target().join("wasm32-wasip2/wasm/hello_author.wasm");
    let commands = work.path().join("commands");
    std::fs::create_dir(&commands).unwrap();
    let wasm = commands.join("hello_author.wasm");
    std::fs::copy(&built, &wasm).unwrap();

    let keys = work.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    assert!(
        guestward(&["keygen", "author", "--dir", keys.to_str().unwrap()])
            .status
            .success()
    );
    let private = keys.join("author.key");
    let output = guestward(&["sign", "--key", private.to_str().unwrap(), wasm.to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    std::fs::rename(&private, work.path().join("author.key")).unwrap();
    let output = guestward(&[
        "verify",
        "--trusted-keys",
        keys.to_str().unwrap(),
        wasm.to_str().unwrap(),
    ]);
    let verdict = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && verdict.trim_end().ends_with("signed by author"),
        "{output:?}"
    );

    let output = guestward(&["run", wasm.to_str().unwrap(), "hello-author", "e2e"]);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim_end(),
        answer(&format!("hello, e2e, from guestward {AGENT_VERSION}"), "0"),
        "{output:?}"
    );
    assert!(output.status.success(), "{output:?}");
}
