//! Per-call sandbox cost: a fresh Store, instantiating the `version`
//! component from its pre-instantiation, calling it, checking the reply, as
//! the daemon does for every request. Target: p50 under 25 µs.

use std::time::{Duration, Instant};

use guestward::capability::Services;
use guestward::policy::Policy;
use guestward::root::Root;
use guestward::runtime::{Runtime, RuntimeOptions};
use guestward_tests::artifacts;
use guestward_tests::bench::Samples;

const WARM_UP: usize = 2_000;
const CALLS: usize = 20_000;

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(measure())
}

async fn measure() -> anyhow::Result<()> {
    let policy = Policy::builtin();
    let sandbox = Runtime::new(&RuntimeOptions::for_policy(&policy), Services::new(Root::host()?, None))?;
    let version = sandbox.load(&artifacts::component("version"), &policy).await?;
    for _ in 0..WARM_UP {
        sandbox.call(&version, "version", "\"agent\"", "bench").await;
    }
    let mut samples = Samples::with_capacity(CALLS);
    for _ in 0..CALLS {
        let started = Instant::now();
        let reply = sandbox.call(&version, "version", "\"agent\"", "bench").await;
        samples.push(started.elapsed());
        anyhow::ensure!(reply.is_success(), "version failed: {reply:?}");
    }
    samples.report(
        "sandbox call (new Store + instantiate + call version)",
        Duration::from_micros(25),
    );
    Ok(())
}
