//! Guestward beside its peer, as a cloud sees them from outside: the
//! release binary, the real xenstored (the agent a genuine guest domain
//! behind the ring bridge), and Debian's qemu-ga on a unix socket on the
//! same machine, in one run. Every figure is printed with the peer's
//! beside it (or the floor the agent cannot beat, for XenStore).
//!
//! `GUESTWARD_IDLE_SECONDS` sets the idle window (default 60 s).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use guestward::xenstore::{Endpoint, XsClient};
use guestward_tests::bench::Samples;
use guestward_tests::hypervisor::{ids, requests};
use guestward_tests::peer::{self, QemuGa};
use guestward_tests::qga::QgaClient;
use guestward_tests::{Agent, AgentBuilder, Hypervisor, Xenstored, artifacts};

const DOMID: u32 = 7;
/// Runs of each start-up measurement (the median is reported).
const STARTS: usize = 3;
const SOCKET_CALLS: usize = 5_000;
const ROUND_TRIPS: usize = 1_000;
const SOAK_CALLS: usize = 10_000;
/// QGA round trips measured on each agent, after as many warm-up ones.
const QGA_CALLS: usize = 5_000;
const QGA_WARM_UP: usize = 500;
/// Round trips on one agent before the other takes its turn.
const QGA_BATCH: usize = 100;
/// The most guestward's QGA round trip may take, as a multiple of qemu-ga's.
const QGA_LIMIT: f64 = 1.5;

fn main() -> anyhow::Result<()> {
    Xenstored::require_tools().map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        Path::new(peer::QEMU_GA).exists(),
        "{} is missing: `make bench` installs qemu-guest-agent",
        peer::QEMU_GA
    );
    let idle = Duration::from_secs(
        std::env::var("GUESTWARD_IDLE_SECONDS")
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(60),
    );
    println!("{:<58} {:>16} {:>22}", "figure", "guestward", "peer");
    sizes()?;
    start_to_ready()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    // A backlog of 1000 needs the guest's node and node-size quotas raised
    // (tests/e2e/exchange.rs says why).
    let xenstored = Xenstored::start_with_args(&["-E", "4000", "-S", "65536"])?;
    let bridge = xenstored.guest(DOMID)?;
    let agent = AgentBuilder::new().xenstore(bridge.socket()).log_level("warn").start();
    let (qemu_ga, _) = QemuGa::start()?;
    local_socket(&agent, &qemu_ga)?;
    qga_socket(&qemu_ga)?;
    runtime.block_on(xenstore_figures(&xenstored))?;
    idle_cost(&agent, &qemu_ga, idle);
    runtime.block_on(soak(&xenstored, &agent))?;
    Ok(())
}

fn row(figure: &str, ours: impl std::fmt::Display, peer: impl std::fmt::Display) {
    println!("{figure:<58} {ours:>16} {peer:>22}");
}

fn micros(duration: Duration) -> String {
    format!("{:.1} µs", duration.as_secs_f64() * 1e6)
}

fn millis(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

fn kib(value: u64) -> String {
    format!("{:.1} MiB", value as f64 / 1024.0)
}

fn sizes() -> anyhow::Result<()> {
    let size = |path: &Path| std::fs::metadata(path).map(|meta| meta.len()).unwrap_or(0);
    let ours = size(&artifacts::guestward_bin());
    row(
        "binary size",
        kib(ours / 1024),
        format!("{} (qemu-ga)", kib(size(Path::new(peer::QEMU_GA)) / 1024)),
    );
    for name in artifacts::builtin() {
        let bytes = size(&artifacts::component(name));
        row(
            &format!("  component {name}.wasm"),
            format!("{} KiB", bytes / 1024),
            "-",
        );
    }
    Ok(())
}

/// Time from spawning the daemon until it answers on its socket, and its
/// RSS once idle, with a cold compile cache (a first boot) and a warm one.
fn start_to_ready() -> anyhow::Result<()> {
    let mut cold = Vec::new();
    let mut cold_rss = Vec::new();
    let mut warm = Vec::new();
    let mut warm_rss = Vec::new();
    for _ in 0..STARTS {
        let cache = artifacts::private_cache();
        let (ready, rss) = timed_start(cache.path());
        cold.push(ready);
        cold_rss.push(rss);
        let (ready, rss) = timed_start(cache.path());
        warm.push(ready);
        warm_rss.push(rss);
    }
    let (mut installed, mut installed_rss) = (Vec::new(), Vec::new());
    for _ in 0..STARTS {
        let (ready, rss) = timed_start(artifacts::installed_cache().path());
        installed.push(ready);
        installed_rss.push(rss);
    }
    let mut peer_starts = Vec::new();
    let mut peer_rss = Vec::new();
    for _ in 0..STARTS {
        let (qemu_ga, took) = QemuGa::start()?;
        peer_starts.push(took);
        std::thread::sleep(Duration::from_millis(300));
        peer_rss.push(peer::rss_kib(qemu_ga.pid()));
    }
    let peer_start = median(&mut peer_starts);
    let peer_rss = median(&mut peer_rss);
    row(
        "start to ready, cold cache (first boot)",
        millis(median(&mut cold)),
        millis(peer_start),
    );
    row(
        "start to ready, warm cache",
        millis(median(&mut warm)),
        millis(peer_start),
    );
    row(
        "start to ready, installed package (guestward compile)",
        millis(median(&mut installed)),
        millis(peer_start),
    );
    row("RSS after a cold start", kib(median(&mut cold_rss)), kib(peer_rss));
    row("RSS after a warm start", kib(median(&mut warm_rss)), kib(peer_rss));
    row(
        "RSS after an installed package's first boot",
        kib(median(&mut installed_rss)),
        kib(peer_rss),
    );
    Ok(())
}

/// Start the agent on `cache`: how long until it answered, and its RSS
/// once it has settled.
fn timed_start(cache: &Path) -> (Duration, u64) {
    let started = Instant::now();
    let agent = AgentBuilder::new().cache(cache).log_level("warn").start();
    let ready = started.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    (ready, agent.rss_kib())
}

fn median<T: Ord + Copy + Default>(values: &mut [T]) -> T {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

/// `version` over the agent's local socket beside qemu-ga's `guest-ping`
/// and `guest-info`, each on one persistent connection.
fn local_socket(agent: &Agent, qemu_ga: &QemuGa) -> anyhow::Result<()> {
    let stream = UnixStream::connect(agent.socket())?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let mut ours = Samples::with_capacity(SOCKET_CALLS);
    for index in 0..SOCKET_CALLS + 500 {
        let started = Instant::now();
        writer.write_all(b"{\"name\":\"version\",\"value\":\"agent\"}\n")?;
        line.clear();
        reader.read_line(&mut line)?;
        if index >= 500 {
            ours.push(started.elapsed());
        }
        anyhow::ensure!(line.contains("\"returncode\": \"0\""), "version failed: {line}");
    }
    let peer_samples = |command: &str| -> anyhow::Result<Samples> {
        let mut connection = qemu_ga.connect()?;
        let mut samples = Samples::with_capacity(SOCKET_CALLS);
        for index in 0..SOCKET_CALLS + 500 {
            let started = Instant::now();
            connection.execute(command)?;
            if index >= 500 {
                samples.push(started.elapsed());
            }
        }
        Ok(samples)
    };
    let ping = peer_samples("guest-ping")?;
    let info = peer_samples("guest-info")?;
    let ratio = ours.quantile(0.5).as_secs_f64() / ping.quantile(0.5).as_secs_f64();
    row(
        "local socket: version p50 vs guest-ping",
        micros(ours.quantile(0.5)),
        format!("{} (×{ratio:.2})", micros(ping.quantile(0.5))),
    );
    row(
        "local socket: version p99 vs guest-ping",
        micros(ours.quantile(0.99)),
        micros(ping.quantile(0.99)),
    );
    row(
        "local socket: version p50 vs guest-info",
        micros(ours.quantile(0.5)),
        micros(info.quantile(0.5)),
    );
    Ok(())
}

/// `guest-ping` over guestward's QGA socket beside qemu-ga's, one
/// persistent connection each and the same client for both: the goal is
/// parity, the limit 1.5×. The two are measured in alternating batches, so
/// whatever else this shared machine does weighs on both alike (measured
/// one after the other, the ratio of two runs differed by 0.3).
fn qga_socket(qemu_ga: &QemuGa) -> anyhow::Result<()> {
    let Some((agent, command)) = qga_agent()? else {
        row("QGA socket: guest-ping p50", "not served", "-");
        return Ok(());
    };
    let mut ours = QgaRoundTrips::new(&agent.qga_socket(), command)?;
    let mut peer = QgaRoundTrips::new(qemu_ga.socket(), "guest-ping")?;
    for _ in 0..QGA_CALLS / QGA_BATCH {
        ours.measure(QGA_BATCH)?;
        peer.measure(QGA_BATCH)?;
    }
    let ratio =
        |fraction| ours.samples.quantile(fraction).as_secs_f64() / peer.samples.quantile(fraction).as_secs_f64();
    let verdict = if ratio(0.5) <= QGA_LIMIT { "meets" } else { "MISSES" };
    row(
        &format!("QGA socket: {command} p50 vs guest-ping ({verdict} limit ×{QGA_LIMIT})"),
        micros(ours.samples.quantile(0.5)),
        format!("{} (×{:.2})", micros(peer.samples.quantile(0.5)), ratio(0.5)),
    );
    row(
        &format!("QGA socket: {command} p99 vs guest-ping"),
        micros(ours.samples.quantile(0.99)),
        format!("{} (×{:.2})", micros(peer.samples.quantile(0.99)), ratio(0.99)),
    );
    Ok(())
}

/// An agent serving QGA with the built-in commands and the command to
/// time: `guest-ping`; in a build where no built-in answers it yet, the
/// probe's `probe-echo` (when `make test` built it) stands in, as it takes
/// the same path: parse, dispatch, one component call, encode.
fn qga_agent() -> anyhow::Result<Option<(Agent, &'static str)>> {
    let agent = AgentBuilder::new().qga().log_level("warn").start();
    if answers(&agent, "guest-ping")? {
        return Ok(Some((agent, "guest-ping")));
    }
    let Some(probe) = artifacts::built_component("probe") else {
        return Ok(None);
    };
    let agent = AgentBuilder::new()
        .component_file(&probe)
        .policy(guestward_tests::agent::PROBE_POLICY)
        .qga()
        .log_level("warn")
        .start();
    Ok(answers(&agent, "probe-echo")?.then_some((agent, "probe-echo")))
}

/// Whether the agent's QGA socket answers `command` with a `return`.
fn answers(agent: &Agent, command: &str) -> anyhow::Result<bool> {
    let mut client = QgaClient::connect(&agent.qga_socket())?;
    client.send(format!("{{\"execute\":\"{command}\"}}\n").as_bytes())?;
    Ok(client.answer()?.starts_with(b"{\"return\""))
}

/// Round trips of one command on one connection. Every answer is read
/// before the next request (qemu-ga exits when a client leaves one unread).
struct QgaRoundTrips {
    client: QgaClient,
    request: String,
    samples: Samples,
}

impl QgaRoundTrips {
    /// Connect to `socket` and warm up with as many calls as
    /// [`QGA_WARM_UP`].
    fn new(socket: &Path, command: &str) -> anyhow::Result<Self> {
        let mut round_trips = Self {
            client: QgaClient::connect(socket)?,
            request: format!("{{\"execute\":\"{command}\"}}\n"),
            samples: Samples::with_capacity(QGA_CALLS),
        };
        round_trips.measure(QGA_WARM_UP)?;
        round_trips.samples = Samples::with_capacity(QGA_CALLS);
        Ok(round_trips)
    }

    fn measure(&mut self, calls: usize) -> anyhow::Result<()> {
        for _ in 0..calls {
            let started = Instant::now();
            self.client.send(self.request.as_bytes())?;
            let answer = self.client.answer()?;
            self.samples.push(started.elapsed());
            anyhow::ensure!(
                answer.starts_with(b"{\"return\""),
                "{} answered {}",
                self.request.trim_end(),
                String::from_utf8_lossy(&answer)
            );
        }
        Ok(())
    }
}

/// The XenStore round trip beside a dom0 write and read of the same size
/// through the same xenstored, and backlogs of 1000.
async fn xenstore_figures(xenstored: &Xenstored) -> anyhow::Result<()> {
    let dom0 = XsClient::connect(Endpoint::Socket(xenstored.socket().to_owned())).await?;
    let home = format!("/local/domain/{DOMID}");
    let request = br#"{"name":"version","value":"agent"}"#;
    let mut answers = dom0.watch(&format!("{home}/data/guest")).await?;
    answers.next().await; // the watch's initial event
    let mut round_trips = Samples::with_capacity(ROUND_TRIPS);
    let mut floor = Samples::with_capacity(ROUND_TRIPS);
    for index in 0..50 + ROUND_TRIPS {
        let id = format!("bench-{index}");
        let answer = format!("{home}/data/guest/{id}");
        let started = Instant::now();
        dom0.write(&format!("{home}/data/host/{id}"), request).await?;
        loop {
            let path = tokio::time::timeout(Duration::from_secs(10), answers.next())
                .await?
                .ok_or_else(|| anyhow::anyhow!("the watch ended"))?;
            if path == answer {
                break;
            }
        }
        let elapsed = started.elapsed();
        dom0.rm(&answer).await?;
        // The floor: the same write, and the read of an answer, by dom0.
        let scratch = format!("{home}/bench-floor");
        let started = Instant::now();
        dom0.write(&scratch, request).await?;
        dom0.read(&scratch).await?;
        if index >= 50 {
            round_trips.push(elapsed);
            floor.push(started.elapsed());
        }
    }
    row(
        "XenStore round trip p50 vs floor (dom0 write + read)",
        millis(round_trips.quantile(0.5)),
        millis(floor.quantile(0.5)),
    );
    row(
        "XenStore round trip p99 vs floor",
        millis(round_trips.quantile(0.99)),
        millis(floor.quantile(0.99)),
    );
    drop(answers);
    let hypervisor = Hypervisor::connect(xenstored.socket(), DOMID).await;
    let backlog = requests("tx", "version", 1000);
    let started = Instant::now();
    hypervisor.send_all(&backlog).await;
    hypervisor
        .collect(&ids(&backlog), Duration::from_secs(300), false)
        .await;
    let in_one = started.elapsed();
    remove_answers(&hypervisor, &backlog).await?;
    let streamed = requests("st", "version", 1000);
    let started = Instant::now();
    hypervisor.stream(&streamed).await;
    hypervisor
        .collect(&ids(&streamed), Duration::from_secs(300), false)
        .await;
    let one_by_one = started.elapsed();
    remove_answers(&hypervisor, &streamed).await?;
    row("1000 requests in one transaction: all answered", millis(in_one), "-");
    row("1000 requests streamed: all answered", millis(one_by_one), "-");
    Ok(())
}

async fn remove_answers(hypervisor: &Hypervisor, requests: &[(String, String)]) -> anyhow::Result<()> {
    for id in ids(requests) {
        hypervisor
            .client
            .rm(&hypervisor.path(&format!("data/guest/{id}")))
            .await?;
    }
    Ok(())
}

/// Idle RSS and wake-ups (context switches of every thread) over the same
/// window, side by side.
fn idle_cost(agent: &Agent, qemu_ga: &QemuGa, window: Duration) {
    std::thread::sleep(Duration::from_secs(1));
    let before = (
        peer::context_switches(agent.pid()),
        peer::context_switches(qemu_ga.pid()),
    );
    std::thread::sleep(window);
    let after = (
        peer::context_switches(agent.pid()),
        peer::context_switches(qemu_ga.pid()),
    );
    let per_minute = |count: u64| count as f64 * 60.0 / window.as_secs_f64();
    row(
        &format!("idle wake-ups per minute (over {} s)", window.as_secs()),
        format!("{:.0}", per_minute(after.0 - before.0)),
        format!("{:.0}", per_minute(after.1 - before.1)),
    );
    row(
        "idle RSS",
        kib(peer::rss_kib(agent.pid())),
        kib(peer::rss_kib(qemu_ga.pid())),
    );
    row("threads", peer::threads(agent.pid()), peer::threads(qemu_ga.pid()));
}

/// RSS after many calls through XenStore.
async fn soak(xenstored: &Xenstored, agent: &Agent) -> anyhow::Result<()> {
    let hypervisor = Hypervisor::connect(xenstored.socket(), DOMID).await;
    let before = agent.rss_kib();
    for round in 0..SOAK_CALLS / 100 {
        let batch = requests(&format!("soak{round}-"), "version", 100);
        hypervisor.stream(&batch).await;
        hypervisor.collect(&ids(&batch), Duration::from_secs(60), true).await;
    }
    row(
        &format!("RSS before → after {SOAK_CALLS} calls"),
        format!("{} → {}", kib(before), kib(agent.rss_kib())),
        "-",
    );
    Ok(())
}
