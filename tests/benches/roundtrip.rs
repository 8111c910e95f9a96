//! The XenStore round trip through the real xenstored: dom0 writes a
//! `version` request to `data/host/<id>`, and we time until its answer is
//! visible at `data/guest/<id>` (seen through a dom0 watch), over many
//! requests. The agent is the release binary, a genuine guest domain behind
//! the ring bridge. Target: p50 under 1 ms.

use std::time::{Duration, Instant};

use guestward::xenstore::{Endpoint, XsClient};
use guestward_tests::bench::Samples;
use guestward_tests::{AgentBuilder, Xenstored};

const DOMID: u32 = 7;
const WARM_UP: usize = 50;
const REQUESTS: usize = 1_000;

fn main() -> anyhow::Result<()> {
    Xenstored::require_tools().map_err(anyhow::Error::msg)?;
    let xenstored = Xenstored::start()?;
    let bridge = xenstored.guest(DOMID)?;
    let agent = AgentBuilder::new().xenstore(bridge.socket()).log_level("warn").start();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let result = runtime.block_on(measure(&xenstored));
    drop(agent);
    result
}

async fn measure(xenstored: &Xenstored) -> anyhow::Result<()> {
    let dom0 = XsClient::connect(Endpoint::Socket(xenstored.socket().to_owned())).await?;
    let home = format!("/local/domain/{DOMID}");
    let mut answers = dom0.watch(&format!("{home}/data/guest")).await?;
    answers.next().await; // the watch's initial event
    let mut samples = Samples::with_capacity(REQUESTS);
    for index in 0..WARM_UP + REQUESTS {
        let id = format!("bench-{index}");
        let answer = format!("{home}/data/guest/{id}");
        let started = Instant::now();
        dom0.write(
            &format!("{home}/data/host/{id}"),
            br#"{"name":"version","value":"agent"}"#,
        )
        .await?;
        loop {
            let path = tokio::time::timeout(Duration::from_secs(10), answers.next())
                .await?
                .ok_or_else(|| anyhow::anyhow!("the watch ended"))?;
            if path == answer {
                break;
            }
        }
        let elapsed = started.elapsed();
        if index >= WARM_UP {
            samples.push(elapsed);
        }
        // Nova never deletes answers; the guest's quota would fill up.
        dom0.rm(&answer).await?;
    }
    samples.report(
        "XenStore round trip (request written → answer visible)",
        Duration::from_millis(1),
    );
    Ok(())
}
