//! From request bytes to a reply: parse (protocol), route (registry), run
//! (runtime).
//!
//! Each component has a lane: its requests run one at a time, in arrival
//! order (a `password` never overtakes the `keyinit` before it), while
//! requests for different components run concurrently. Submitting is
//! synchronous, so an exchange that submits in arrival order gets replies in
//! that order per component.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::protocol::{Reply, nova};
use crate::runtime::{LoadedComponent, Registry, Runtime};

/// Requests one component may have waiting before new ones are refused.
const LANE_DEPTH: usize = 256;

/// Routes requests to component lanes.
pub struct Dispatcher {
    runtime: Arc<Runtime>,
    registry: RwLock<Arc<Registry>>,
    lanes: Mutex<HashMap<String, mpsc::Sender<Job>>>,
    /// Set at shutdown: lanes start no new job.
    stopping: Arc<AtomicBool>,
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
        Self {
            runtime,
            registry: RwLock::new(Arc::new(registry)),
            lanes: Mutex::new(HashMap::new()),
            stopping: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The registry requests are routed with now.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry
            .read()
            .map(|registry| registry.clone())
            .unwrap_or_default()
    }

    /// Route new requests with `registry` from now on (requests already
    /// queued finish with the components they were routed to).
    pub fn replace_registry(&self, registry: Registry) {
        self.runtime.services().agent.set_commands(registry.names());
        if let Ok(mut current) = self.registry.write() {
            *current = Arc::new(registry);
        }
    }

    /// Start no new job from now on (shutdown): jobs waiting in a lane are
    /// dropped, so their reply channels close without a reply; jobs running
    /// finish.
    pub fn stop_starting(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Accept one request (raw protocol bytes) and return where its reply
    /// will arrive. Never blocks: protocol errors and unknown commands are
    /// answered at once.
    pub fn submit(&self, raw: &[u8], request_id: &str) -> oneshot::Receiver<Reply> {
        let (reply, receiver) = oneshot::channel();
        let request = match nova::parse(raw) {
            Ok(request) => request,
            Err(error) => {
                tracing::info!(
                    request = request_id,
                    code = error.code,
                    "invalid request: {}",
                    error.message
                );
                let _ = reply.send(error);
                return receiver;
            }
        };
        let registry = self.registry();
        let Some(component) = registry.route(&request.name) else {
            tracing::info!(request = request_id, command = request.name, "unknown command");
            let _ = reply.send(nova::unknown_command(&request.name));
            return receiver;
        };
        // The value is never logged: it may hold a secret. Debug, not info:
        // the audit record already says that the call happened.
        tracing::debug!(
            request = request_id,
            command = request.name,
            component = component.name,
            "request received"
        );
        let job = Job {
            command: request.name,
            value: request.value,
            request_id: request_id.to_owned(),
            received: Instant::now(),
            reply,
        };
        if let Err(refused) = self.lane(component).try_send(job) {
            let job = match refused {
                mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job) => job,
            };
            let message = format!("the agent is busy: too many requests waiting for '{}'", job.command);
            let _ = job.reply.send(Reply::error(message));
        }
        receiver
    }

    fn lane(&self, component: &Arc<LoadedComponent>) -> mpsc::Sender<Job> {
        let key = format!("{}@{}", component.name, component.sha256);
        let mut lanes = self.lanes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(lane) = lanes.get(&key).filter(|lane| !lane.is_closed()) {
            return lane.clone();
        }
        let (sender, jobs) = mpsc::channel(LANE_DEPTH);
        tokio::spawn(run_lane(
            self.runtime.clone(),
            component.clone(),
            jobs,
            self.stopping.clone(),
        ));
        lanes.insert(key, sender.clone());
        sender
    }
}

async fn run_lane(
    runtime: Arc<Runtime>,
    component: Arc<LoadedComponent>,
    mut jobs: mpsc::Receiver<Job>,
    stopping: Arc<AtomicBool>,
) {
    while let Some(job) = jobs.recv().await {
        if stopping.load(Ordering::SeqCst) {
            continue; // dropping the job tells its submitter
        }
        let reply = runtime
            .call(&component, &job.command, job.value.get(), &job.request_id)
            .await;
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
