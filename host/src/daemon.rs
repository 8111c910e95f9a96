//! `guestward serve`: wire the pieces together and run until SIGTERM.

mod systemd;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, watch};

use crate::capability::{Capabilities, Policy};
use crate::dispatch::Dispatcher;
use crate::exchange::LocalListener;
use crate::exchange::qga::{self, QgaOptions};
use crate::exchange::socket::SocketExchange;
use crate::exchange::xenstore::{self as xenstore_exchange, ExchangeOptions};
use crate::install::InstallService;
use crate::root::Root;
use crate::runtime::{Registry, Runtime, RuntimeOptions};
use crate::status::StatusBoard;
use crate::trust::TrustStore;
use crate::xenstore::{Endpoint, LinkState, XsClient};

/// Everything `serve` needs, resolved from the config file and the flags.
#[derive(Debug)]
pub struct DaemonSettings {
    pub xenstore: Option<Endpoint>,
    /// The directory of command components (the built-in ones by default).
    pub commands: PathBuf,
    /// More directories of components, loaded beside `commands`.
    pub extra_commands: Vec<PathBuf>,
    /// The effective policy.
    pub policy: Policy,
    /// Where it was read from (for the compiling child).
    pub policy_file: Option<PathBuf>,
    pub policy_dir: PathBuf,
    pub root: PathBuf,
    /// Network interfaces described by a JSON file instead of the
    /// machine's own (for `--root`).
    pub interfaces: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    /// The QEMU guest agent protocol's port and socket.
    pub qga: QgaOptions,
    pub cache: Option<PathBuf>,
    /// Where state that outlives a crash is kept (a tmpfs).
    pub runtime_dir: PathBuf,
    /// How long xenstored may take to answer before the connection is
    /// taken for dead.
    pub xenstore_timeout: Duration,
    pub exchange: ExchangeOptions,
    /// How long filesystems stay frozen when the host never thaws them.
    pub freeze_timeout: Duration,
    /// Which components may run.
    pub trust: TrustStore,
}

/// The loaded pieces, before serving (also what `run` and tests use).
pub struct Agent {
    pub runtime: Arc<Runtime>,
    pub dispatcher: Arc<Dispatcher>,
    pub xenstore: Option<XsClient>,
}

impl Agent {
    /// Connect, load the commands and build the dispatcher.
    pub async fn start(settings: &DaemonSettings) -> anyhow::Result<Self> {
        let root = Root::open(&settings.root)?.with_interfaces_file(settings.interfaces.clone());
        let xenstore = match &settings.xenstore {
            Some(endpoint) => Some(XsClient::connect_with_timeout(endpoint.clone(), settings.xenstore_timeout).await?),
            None => None,
        };
        let options = RuntimeOptions {
            cache_dir: settings.cache.clone(),
            trust: Some(settings.trust.clone()),
            ..RuntimeOptions::for_policy(&settings.policy)
        };
        let (installer, install_requests) = mpsc::channel(4);
        let mut capabilities = Capabilities::new(Arc::new(root), xenstore.clone(), Some(installer));
        capabilities.freeze.set_timeout(settings.freeze_timeout);
        capabilities.freeze.record_in(&settings.runtime_dir).await;
        capabilities.agent = crate::capability::agent::Agent::with_qga_filter(settings.qga.filter.clone())
            .with_frozen_flag(capabilities.freeze.frozen_flag());
        let runtime = Arc::new(Runtime::new(&options, capabilities)?);
        let mut components = Runtime::read_dir(&settings.commands)?;
        for dir in &settings.extra_commands {
            components.extend(Runtime::read_dir(dir)?);
        }
        if runtime.cache_is_cold(&components) {
            compile_in_child(settings).await;
        }
        let components = runtime.load_all(components, &settings.policy).await;
        let dispatcher = Arc::new(Dispatcher::new(runtime.clone(), Registry::build(components)));
        let install = InstallService {
            runtime: runtime.clone(),
            dispatcher: dispatcher.clone(),
            commands: settings.commands.clone(),
            policy: settings.policy.clone(),
        };
        tokio::spawn(install.run(install_requests));
        Ok(Self {
            runtime,
            dispatcher,
            xenstore,
        })
    }
}

/// Fill a cold cache (a first boot) with `guestward compile` in a child
/// process: the compiler's memory and threads go with the child, and the
/// daemon then loads every component from the cache. If the child fails,
/// the daemon compiles for itself as it loads.
async fn compile_in_child(settings: &DaemonSettings) {
    let (Ok(exe), Some(cache)) = (std::env::current_exe(), &settings.cache) else {
        return;
    };
    let mut child = tokio::process::Command::new(exe);
    child
        .arg("compile")
        .arg("--commands")
        .arg(&settings.commands)
        .arg("--cache")
        .arg(cache)
        .arg("--policy-dir")
        .arg(&settings.policy_dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    for dir in &settings.extra_commands {
        child.arg("--extra-commands").arg(dir);
    }
    if let Some(file) = &settings.policy_file {
        child.arg("--policy").arg(file);
    }
    match child.status().await {
        Ok(status) if status.success() => tracing::info!("compiled the components into the cache"),
        Ok(status) => tracing::warn!(%status, "precompiling failed; compiling in the daemon"),
        Err(error) => tracing::warn!(%error, "cannot precompile; compiling in the daemon"),
    }
}

/// Serve until SIGTERM or SIGINT; answers in flight are written first.
pub async fn serve(settings: DaemonSettings) -> anyhow::Result<()> {
    if settings.xenstore.is_none()
        && settings.socket.is_none()
        && settings.qga.device.is_none()
        && settings.qga.socket.is_none()
    {
        anyhow::bail!(
            "nothing to serve: no XenStore (no xenbus device, no --xenstore), the QGA port off (--no-qga-device, or a --root), no --socket and no --qga-socket"
        );
    }
    // Before anything can answer: a SIGTERM from then on is a clean stop.
    let signals = Signals::install()?;
    let agent = Agent::start(&settings).await?;
    let (stop, shutdown) = watch::channel(false);
    let mut tasks = Vec::new();
    let status = Arc::new(StatusBoard::new(
        agent.dispatcher.clone(),
        settings.socket.clone(),
        agent.xenstore.as_ref().map(XsClient::link_state),
    ));
    status.set_qga_socket(settings.qga.socket.clone());
    tasks.extend(serve_qga(&settings.qga, &agent.dispatcher, &status, &shutdown).await?);
    if let Some(path) = &settings.socket {
        let socket = SocketExchange::bind(path)
            .await
            .with_context(|| format!("cannot serve the local socket {}", path.display()))?;
        tasks.push(tokio::spawn(socket.serve(
            agent.dispatcher.clone(),
            status,
            shutdown.clone(),
        )));
    }
    if let Some(client) = agent.xenstore.clone() {
        tasks.push(tokio::spawn(xenstore_exchange::serve(
            client,
            agent.dispatcher.clone(),
            settings.exchange.clone(),
            shutdown.clone(),
        )));
    }
    let registry = agent.dispatcher.registry();
    tracing::info!(
        version = crate::capability::agent::AGENT_VERSION,
        commands = registry.names().join(","),
        root = %settings.root.display(),
        "guestward ready"
    );
    let notifier = systemd::Notifier::from_env().map(Arc::new);
    if let Some(notifier) = &notifier {
        // Both exchanges are serving: the socket is bound and listening,
        // the XenStore exchange's task is running (requests written before
        // its watch is in place are found by the watch's first event).
        notifier.send(&["READY=1"]);
        tokio::spawn(report_status(
            notifier.clone(),
            registry.names().len(),
            agent.xenstore.as_ref().map(XsClient::link_state),
        ));
        if let Some(interval) = systemd::watchdog_interval_from_env() {
            tokio::spawn(ping_watchdog(notifier.clone(), agent.dispatcher.clone(), interval));
        }
    }
    signals.wait().await;
    tracing::info!("stopping");
    if let Some(notifier) = &notifier {
        notifier.send(&[
            "STOPPING=1",
            &systemd::status_line("stopping: finishing the commands running"),
        ]);
    }
    let _ = stop.send(true);
    for task in tasks {
        let _ = tokio::time::timeout(settings.exchange.drain + Duration::from_secs(1), task).await;
    }
    agent.runtime.capabilities().freeze.thaw_at_shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Start the QGA exchange on its socket and its port, whichever are set;
/// the port's state goes to `status`.
async fn serve_qga(
    options: &QgaOptions,
    dispatcher: &Arc<Dispatcher>,
    status: &StatusBoard,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let session = qga::Session::new(dispatcher.clone(), options.filter.clone());
    let mut tasks = Vec::new();
    if let Some(path) = &options.socket {
        let listener = LocalListener::bind(path)
            .await
            .with_context(|| format!("cannot serve the QGA socket {}", path.display()))?;
        tasks.push(tokio::spawn(qga::serve_socket(
            listener,
            session.clone(),
            shutdown.clone(),
        )));
    }
    if let Some(path) = &options.device {
        let (state, watched) = watch::channel(qga::PortState::Waiting);
        status.watch_qga_port(path.clone(), watched);
        tasks.push(tokio::spawn(qga::serve_device(
            path.clone(),
            session,
            state,
            shutdown.clone(),
        )));
    }
    Ok(tasks)
}

/// SIGTERM and SIGINT, caught from the moment they are installed.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

/// Keep systemd's `STATUS=` line current: what is served, and the
/// XenStore connection's state as it is lost and reopened.
async fn report_status(notifier: Arc<systemd::Notifier>, commands: usize, link: Option<watch::Receiver<LinkState>>) {
    let Some(mut link) = link else {
        notifier.send(&[&systemd::status_line(&format!(
            "serving {commands} commands on the local socket; no XenStore"
        ))]);
        return;
    };
    loop {
        let text = match &*link.borrow_and_update() {
            LinkState::Connected => format!("serving {commands} commands; xenstore connected"),
            LinkState::Reconnecting { error } => format!("serving {commands} commands; xenstore reconnecting: {error}"),
        };
        notifier.send(&[&systemd::status_line(&text)]);
        if link.changed().await.is_err() {
            return;
        }
    }
}

/// Ping systemd's watchdog every `interval` while the daemon can still
/// serve.
///
/// A wedged daemon is one whose process lives but answers nothing: every
/// worker thread of the tokio runtime blocked (a blocking call or a
/// deadlock inside a task), its timers no longer firing, or the
/// dispatcher's locks (taken by every request routed) held forever. Each
/// ping is earned by a probe through the same runtime and the same locks:
/// a fresh task must be scheduled, take the registry and lane locks and
/// answer within `interval`. In a wedged daemon either this loop's timer
/// never fires or the probe never answers; the pings stop and systemd
/// restarts the service after `WatchdogSec=`.
async fn ping_watchdog(notifier: Arc<systemd::Notifier>, dispatcher: Arc<Dispatcher>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let dispatcher = dispatcher.clone();
        let probe = tokio::spawn(async move {
            let routable = dispatcher.registry().names().len();
            let lanes = dispatcher.lane_count();
            (routable, lanes)
        });
        match tokio::time::timeout(interval, probe).await {
            Ok(Ok(_)) => notifier.send(&["WATCHDOG=1"]),
            Ok(Err(error)) => tracing::warn!(%error, "the liveness probe failed; not pinging the watchdog"),
            Err(_) => tracing::warn!("the liveness probe did not answer; not pinging the watchdog"),
        }
    }
}
