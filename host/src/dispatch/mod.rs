//! From a parsed request to a reply: route (registry), run (runtime). The
//! exchanges own their protocols: they parse requests before submitting
//! them, and put the reply, or the [`Refusal`], in their protocol's words.
//!
//! Each component has a lane: its requests run one at a time, in arrival
//! order (a `password` never overtakes the `keyinit` before it), while
//! requests for different components run concurrently. Submitting is
//! synchronous, so an exchange that submits in arrival order gets replies in
//! that order per component.

mod stats;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::protocol::{Reply, Request};
use crate::runtime::{LoadedComponent, Registry, Runtime};

pub use self::stats::{CallStats, CommandSummary};

/// Requests one component may have waiting before new ones are refused.
const LANE_DEPTH: usize = 256;

/// Why a request was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No loaded component answers this command.
    #[error("unknown command '{0}'")]
    UnknownCommand(String),
    /// Too many requests wait for the component.
    #[error("the agent is busy: too many requests waiting for '{0}'")]
    Busy(String),
}

/// Routes requests to component lanes.
pub struct Dispatcher {
    runtime: Arc<Runtime>,
    registry: RwLock<Arc<Registry>>,
    /// One lane per loaded component, by component name.
    lanes: Mutex<HashMap<String, Lane>>,
    /// Set at shutdown: lanes start no new job.
    stopping: Arc<AtomicBool>,
    /// Counters of the calls made, per command.
    stats: Arc<CallStats>,
}

/// A component's queue, and the component its task calls.
struct Lane {
    component: Arc<LoadedComponent>,
    jobs: mpsc::Sender<Job>,
}

struct Job {
    command: String,
    value: Box<serde_json::value::RawValue>,
    request_id: String,
    received: Instant,
    reply: oneshot::Sender<Reply>,
}

impl Dispatcher {
    pub fn new(runtime: Arc<Runtime>, registry: Registry) -> Self {
        let dispatcher = Self {
            runtime,
            registry: RwLock::new(Arc::default()),
            lanes: Mutex::new(HashMap::new()),
            stopping: Arc::new(AtomicBool::new(false)),
            stats: Arc::default(),
        };
        dispatcher.replace_registry(registry);
        dispatcher
    }

    /// The registry requests are routed with now.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry
            .read()
            .map(|registry| registry.clone())
            .unwrap_or_default()
    }

    /// Route new requests with `registry` from now on: the one place where
    /// the loaded commands change. Requests already queued finish with the
    /// components they were routed to; then the lanes of components no
    /// longer loaded end, and with them the last use of their compiled code.
    pub fn replace_registry(&self, registry: Registry) {
        self.runtime.capabilities().agent.set_commands(registry.names());
        let registry = Arc::new(registry);
        if let Ok(mut current) = self.registry.write() {
            *current = registry.clone();
        }
        let loaded = |lane: &Lane| {
            registry
                .components()
                .iter()
                .any(|component| Arc::ptr_eq(component, &lane.component))
        };
        self.lock_lanes().retain(|_, lane| loaded(lane));
    }

    /// The capabilities calls are served with (the QGA exchange asks the
    /// freeze whether filesystems are frozen).
    pub fn capabilities(&self) -> &crate::capability::Capabilities {
        self.runtime.capabilities()
    }

    /// The counters of the calls made so far, per command.
    pub fn stats(&self) -> &CallStats {
        &self.stats
    }

    /// Lanes open now (one per component that has had a request since it
    /// was loaded).
    pub fn lane_count(&self) -> usize {
        self.lock_lanes().len()
    }

    /// Start no new job from now on (shutdown): jobs waiting in a lane are
    /// dropped, so their reply channels close without a reply; jobs running
    /// finish.
    pub fn stop_starting(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Accept one request and return where its reply will arrive. Never
    /// blocks: a request no component answers, or one that would wait in a
    /// full lane, is refused at once.
    pub fn submit(&self, request: Request, request_id: &str) -> Result<oneshot::Receiver<Reply>, Refusal> {
        let registry = self.registry();
        let Some(component) = registry.route(&request.name) else {
            tracing::info!(request = request_id, command = request.name, "unknown command");
            return Err(Refusal::UnknownCommand(request.name));
        };
        // The value is never logged: it may hold a secret. Debug, not info:
        // the audit record already says that the call happened.
        tracing::debug!(
            request = request_id,
            command = request.name,
            component = component.name,
            "request received"
        );
        let (reply, receiver) = oneshot::channel();
        let job = Job {
            command: request.name,
            value: request.value,
            request_id: request_id.to_owned(),
            received: Instant::now(),
            reply,
        };
        match self.lane(component).try_send(job) {
            Ok(()) => Ok(receiver),
            Err(mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job)) => {
                Err(Refusal::Busy(job.command))
            }
        }
    }

    fn lock_lanes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Lane>> {
        self.lanes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The lane of `component`. A component replaced by an update (even by
    /// the same bytes) gets a new lane: the old one finishes what it has
    /// queued and ends, dropping the last use of the old compiled code.
    fn lane(&self, component: &Arc<LoadedComponent>) -> mpsc::Sender<Job> {
        let mut lanes = self.lock_lanes();
        if let Some(lane) = lanes
            .get(&component.name)
            .filter(|lane| Arc::ptr_eq(&lane.component, component) && !lane.jobs.is_closed())
        {
            return lane.jobs.clone();
        }
        let (sender, jobs) = mpsc::channel(LANE_DEPTH);
        tokio::spawn(run_lane(
            self.runtime.clone(),
            component.clone(),
            jobs,
            self.stopping.clone(),
            self.stats.clone(),
        ));
        let lane = Lane {
            component: component.clone(),
            jobs: sender.clone(),
        };
        lanes.insert(component.name.clone(), lane);
        sender
    }
}

async fn run_lane(
    runtime: Arc<Runtime>,
    component: Arc<LoadedComponent>,
    mut jobs: mpsc::Receiver<Job>,
    stopping: Arc<AtomicBool>,
    stats: Arc<CallStats>,
) {
    while let Some(job) = jobs.recv().await {
        if stopping.load(Ordering::SeqCst) {
            continue; // dropping the job tells its submitter
        }
        let started = Instant::now();
        let report = runtime
            .call_reported(&component, &job.command, job.value.get(), &job.request_id)
            .await;
        stats.record(&job.command, &report.reply, report.outcome, started.elapsed());
        let reply = report.reply;
        tracing::debug!(
            request = job.request_id,
            command = job.command,
            code = reply.code,
            elapsed_ms = job.received.elapsed().as_millis() as u64,
            "request answered"
        );
        let _ = job.reply.send(reply);
    }
}
