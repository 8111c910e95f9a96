//! Per-call sandbox cost of every built-in command: a fresh Store,
//! instantiating the component from its pre-instantiation, calling it,
//! checking the reply, as the daemon does for every request (in a scratch
//! root). Each command is called on a path that does its real work short of
//! changing the machine. Target for `version`: p50 under 25 µs. qemu-ga has
//! no sandbox: its whole round trip is in the `report` benchmark.

use std::time::{Duration, Instant};

use guestward::capability::{Capabilities, Policy};
use guestward::root::Root;
use guestward::runtime::{ComponentSource, Runtime, RuntimeOptions};
use guestward_tests::artifacts;
use guestward_tests::bench::Samples;

/// (component, command, value, calls)
const CALLS: &[(&str, &str, &str, usize)] = &[
    ("version", "version", "\"agent\"", 20_000),
    ("features", "features", "\"\"", 20_000),
    ("password", "keyinit", "\"123456789012345678901234567890123\"", 200),
    ("password", "password", "\"c2VjcmV0\"", 5_000),
    ("injectfile", "injectfile", "\"L3RtcC9iZW5jaCxoZWxsbw==\"", 2_000),
    ("kmsactivate", "kmsactivate", "{}", 5_000),
    ("agentupdate", "agentupdate", "\"x\"", 5_000),
    ("resetnetwork", "resetnetwork", "\"\"", 5_000),
    ("qga", "qga:guest-ping", "{}", 20_000),
    ("qga", "qga:guest-get-osinfo", "{}", 5_000),
];

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(measure())
}

async fn measure() -> anyhow::Result<()> {
    let policy = Policy::builtin();
    let root = tempfile::tempdir()?;
    std::fs::create_dir_all(root.path().join("tmp"))?;
    let sandbox = Runtime::new(
        &RuntimeOptions::for_policy(&policy),
        Capabilities::new(std::sync::Arc::new(Root::open(root.path())?), None, None),
    )?;
    for &(component, command, value, calls) in CALLS {
        let bytes = ComponentSource::read(&artifacts::component(component))?;
        let loaded = sandbox.load_bytes(&bytes, &policy).await?;
        for _ in 0..calls / 10 {
            sandbox.call(&loaded, command, value, "bench").await;
        }
        let mut samples = Samples::with_capacity(calls);
        for _ in 0..calls {
            let started = Instant::now();
            sandbox.call(&loaded, command, value, "bench").await;
            samples.push(started.elapsed());
        }
        let target = if command == "version" {
            Duration::from_micros(25)
        } else {
            Duration::from_secs(1)
        };
        samples.report(&format!("sandbox call: {command} ({component}.wasm)"), target);
    }
    Ok(())
}
