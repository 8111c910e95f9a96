//! The QEMU guest agent exchange: the QGA protocol over the virtio-serial
//! port the hypervisor connects to ([`port`]), and over a unix socket
//! (for tests and `--root` runs). Each connection is one session: requests
//! are answered one after the other, in order, as qemu-ga answers them.
//!
//! The exchange parses ([`protocol::qga`](crate::protocol::qga)), applies
//! the operator's allow and block lists ([`RpcFilter`]), and submits
//! `qga:` commands to the dispatcher; every command, `guest-sync`
//! included, is a component's.

mod port;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::listener::LocalListener;
use crate::capability::freeze::FrozenFlag;
use crate::dispatch::{Dispatcher, Refusal};
pub use crate::protocol::qga::RpcFilter;
use crate::protocol::qga::{self, DELIMITER, Frame, QgaRequest, class};
use crate::protocol::{Protocol, Reply, Request};

pub use crate::status::PortState;
pub use port::DEFAULT_DEVICE;

/// How long one answer may take to leave: a host that stopped reading
/// must not hold the session (and the port) forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a session needs: where to submit, what is enabled, and request
/// ids for the logs (`qga-1`, `qga-2`, …).
#[derive(Clone)]
pub struct Session {
    dispatcher: Arc<Dispatcher>,
    filter: Arc<RpcFilter>,
    counter: Arc<AtomicU64>,
    /// Set while filesystems are frozen (see [`Session::refused_while_frozen`]).
    frozen: FrozenFlag,
}

impl Session {
    pub fn new(dispatcher: Arc<Dispatcher>, filter: RpcFilter) -> Self {
        Self {
            frozen: dispatcher.capabilities().freeze.frozen_flag(),
            dispatcher,
            filter: Arc::new(filter),
            counter: Arc::default(),
        }
    }

    /// Serve one connection until the peer closes it, it fails, or
    /// `shutdown` turns true. A partial request is dropped with the
    /// connection.
    pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(&self, mut stream: S, mut shutdown: watch::Receiver<bool>) {
        let mut decoder = qga::Decoder::default();
        let mut frames = Vec::new();
        let mut buffer = vec![0; 16 * 1024];
        loop {
            let read = tokio::select! {
                _ = shutdown.changed() => return,
                read = stream.read(&mut buffer) => read,
            };
            match read {
                Ok(0) => return,
                Ok(read) => decoder.push(&buffer[..read], &mut frames),
                Err(error) => {
                    tracing::debug!(%error, "QGA connection closed");
                    return;
                }
            }
            for frame in frames.drain(..) {
                let Some(answer) = self.answer(frame).await else {
                    continue;
                };
                match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&answer)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        tracing::debug!(%error, "QGA connection closed while answering");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!("the QGA peer read no answer for {} s; closing", WRITE_TIMEOUT.as_secs());
                        return;
                    }
                }
            }
        }
    }

    /// The bytes answering one frame; `None` for a command that answers
    /// nothing on success (`guest-shutdown`).
    async fn answer(&self, frame: Frame) -> Option<Vec<u8>> {
        let text = match frame {
            Frame::Value(text) => text,
            Frame::Invalid(desc) => return Some(qga::encode_error(class::GENERIC_ERROR, &desc, None).into_bytes()),
        };
        let parsed = match qga::parse(&text) {
            Ok(parsed) => parsed,
            Err(refused) => return Some(refused.encode().into_bytes()),
        };
        let delimited = parsed.execute() == "guest-sync-delimited";
        let QgaRequest { request, id } = parsed;
        let reply = self.run(request).await;
        let mut answer = qga::encode_reply(&reply, id.as_deref())?.into_bytes();
        if delimited && reply.code == "0" {
            answer.insert(0, DELIMITER);
        }
        Some(answer)
    }

    /// Run a parsed request's command, or refuse it.
    async fn run(&self, request: Request) -> Reply {
        let execute = Protocol::of(&request.name).1.to_owned();
        if let Some(refusal) = self.refused_while_frozen(&request.name, &execute) {
            return refusal;
        }
        if !self.filter.is_enabled(&execute) {
            tracing::info!(command = request.name, "refused a QGA command the operator disabled");
            return Reply::new(class::COMMAND_NOT_FOUND, format!("Command {execute} has been disabled"));
        }
        let request_id = format!("qga-{}", self.counter.fetch_add(1, Ordering::Relaxed) + 1);
        match self.dispatcher.submit(request, &request_id) {
            Ok(receiver) => receiver
                .await
                .unwrap_or_else(|_| Reply::error("the agent is stopping: the request was dropped")),
            Err(Refusal::UnknownCommand(_)) => Reply::new(
                class::COMMAND_NOT_FOUND,
                format!("The command {execute} has not been found"),
            ),
            Err(refusal @ Refusal::Busy(_)) => Reply::error(refusal.to_string()),
        }
    }
}

impl Session {
    /// While filesystems are frozen, qemu-ga refuses every command it
    /// knows but a few (before looking at the arguments, and before the
    /// operator's lists): they could write and hang on a frozen
    /// filesystem. Unknown commands are still "not found".
    fn refused_while_frozen(&self, name: &str, execute: &str) -> Option<Reply> {
        let refused = self.frozen.is_frozen()
            && !qga::ENABLED_WHILE_FROZEN.contains(&execute)
            && self.dispatcher.registry().route(name).is_some();
        refused.then(|| {
            tracing::info!(command = name, "refused a QGA command while the filesystems are frozen");
            qga::frozen_refusal(execute)
        })
    }
}

/// Where the exchange listens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QgaOptions {
    /// The virtio-serial port (or any character device).
    pub device: Option<PathBuf>,
    /// A unix socket speaking the same protocol.
    pub socket: Option<PathBuf>,
    pub filter: RpcFilter,
}

/// Serve connections on a bound socket until `shutdown`.
pub async fn serve_socket(listener: LocalListener, session: Session, shutdown: watch::Receiver<bool>) {
    tracing::info!(socket = %listener.path().display(), "serving the QGA protocol on a unix socket");
    let connection_shutdown = shutdown.clone();
    listener
        .accept_until(shutdown, move |stream| {
            let session = session.clone();
            let shutdown = connection_shutdown.clone();
            async move { session.serve(stream, shutdown).await }
        })
        .await;
}

/// Serve the port at `path` until `shutdown`, reopening it whenever the
/// host side goes away; its state is published to `state`.
pub async fn serve_device(
    path: PathBuf,
    session: Session,
    state: watch::Sender<PortState>,
    shutdown: watch::Receiver<bool>,
) {
    port::serve(path, session, state, shutdown).await;
}
