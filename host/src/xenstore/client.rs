//! An async XenStore client: one connection, many requests in flight,
//! watches, transactions, and reconnection when the connection drops.
//!
//! One task (the *link keeper*) owns the connection. Callers send it
//! requests; it gives each a request id, writes it, and hands the reply that
//! carries that id back to the caller. When the connection drops, requests
//! already written fail with [`Error::Disconnected`] (they may or may not
//! have been carried out, so callers retry idempotent operations), requests
//! not yet written wait for the next connection, and every watch is
//! registered again, which fires it once: watchers re-read their state.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use super::wire::{self, Incoming, MsgType};
use super::{Endpoint, Errno, Error, Result};

/// Times a listing in parts starts over because the directory changed,
/// before it is done inside a transaction instead.
const DIRECTORY_PART_RESTARTS: usize = 4;

/// Waits between reconnection attempts grow from the first to the last.
const RECONNECT_BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));

/// How long xenstored may take to answer a request before the connection
/// is taken for dead (it answers in microseconds when alive).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The state of the connection, as the daemon reports it (systemd's
/// `STATUS=`, `guestward status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    Connected,
    /// Lost; being reopened. Why it was lost, then why the latest attempt
    /// to reopen it failed.
    Reconnecting {
        error: String,
    },
}

/// A XenStore client. Cheap to clone; the connection closes when the last
/// clone is dropped.
#[derive(Debug, Clone)]
pub struct XsClient {
    keeper: mpsc::UnboundedSender<Command>,
    endpoint: Arc<Endpoint>,
    next_token: Arc<AtomicU64>,
    /// Which connection is current (bumped by each new one).
    generation: Arc<AtomicU64>,
    link_state: watch::Receiver<LinkState>,
}

/// The transaction a request belongs to: its id, and the connection it was
/// started on (a transaction dies with its connection, and its id may name
/// another transaction on the next one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TxRef {
    id: u32,
    generation: u64,
}

impl TxRef {
    /// Outside any transaction.
    const NONE: Self = Self { id: 0, generation: 0 };
}

/// Why a request did not get a payload back.
#[derive(Debug)]
enum Failure {
    Errno(Errno),
    Disconnected,
}

type ReplySender = oneshot::Sender<std::result::Result<Vec<u8>, Failure>>;

#[derive(Debug)]
enum Command {
    Request(Outgoing),
    Watch {
        path: String,
        token: String,
        events: mpsc::UnboundedSender<String>,
        reply: ReplySender,
    },
    Unwatch {
        path: String,
        token: String,
    },
    /// Drop the current connection (tests use it to exercise reconnection).
    Drop,
}

#[derive(Debug)]
struct Outgoing {
    msg_type: MsgType,
    tx_id: u32,
    /// With a transaction: the connection it belongs to.
    generation: u64,
    payload: Vec<u8>,
    /// `None` for requests the keeper makes itself (watch re-registration).
    reply: Option<ReplySender>,
}

impl XsClient {
    /// Connect to `endpoint`. The first connection must succeed; later drops
    /// are repaired in the background.
    pub async fn connect(endpoint: Endpoint) -> Result<Self> {
        Self::connect_with_timeout(endpoint, DEFAULT_REQUEST_TIMEOUT).await
    }

    /// Connect, taking the connection for lost (and reconnecting) whenever
    /// a request goes unanswered for `request_timeout`: a connection that
    /// stops answering without closing looks like this.
    pub async fn connect_with_timeout(endpoint: Endpoint, request_timeout: Duration) -> Result<Self> {
        let connection = endpoint.connect().await.map_err(|source| Error::Connect {
            endpoint: endpoint.to_string(),
            source,
        })?;
        let (keeper, commands) = mpsc::unbounded_channel();
        let (link_events, link_receiver) = mpsc::unbounded_channel();
        let generation = Arc::new(AtomicU64::new(0));
        let (link_state_sender, link_state) = watch::channel(LinkState::Connected);
        let mut link_keeper = LinkKeeper {
            link_state: link_state_sender,
            shared_generation: generation.clone(),
            endpoint: endpoint.clone(),
            commands,
            link_events,
            link_receiver,
            link: None,
            generation: 0,
            pending: HashMap::new(),
            queued: VecDeque::new(),
            watches: HashMap::new(),
            next_req_id: 1,
            next_seq: 0,
            sent: VecDeque::new(),
            request_timeout,
        };
        link_keeper.establish(connection);
        tokio::spawn(link_keeper.run());
        info!(%endpoint, "connected to XenStore");
        Ok(Self {
            keeper,
            endpoint: Arc::new(endpoint),
            next_token: Arc::new(AtomicU64::new(1)),
            generation,
            link_state,
        })
    }

    /// The connection's state, changing as it is lost and reopened.
    pub fn link_state(&self) -> watch::Receiver<LinkState> {
        self.link_state.clone()
    }

    /// Where this client connects.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The value of `path`.
    pub async fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.read_in(TxRef::NONE, path).await
    }

    /// Set `path` to `value`, creating missing parents.
    pub async fn write(&self, path: &str, value: &[u8]) -> Result<()> {
        self.write_in(TxRef::NONE, path, value).await
    }

    /// Remove `path` and everything below it (no error if it is missing but
    /// its parent exists).
    pub async fn rm(&self, path: &str) -> Result<()> {
        self.rm_in(TxRef::NONE, path).await
    }

    /// Create `path` with an empty value (no error if it exists).
    pub async fn mkdir(&self, path: &str) -> Result<()> {
        self.mkdir_in(TxRef::NONE, path).await
    }

    /// The names of the children of `path`, in xenstored's order.
    pub async fn directory(&self, path: &str) -> Result<Vec<String>> {
        self.directory_in(TxRef::NONE, path).await
    }

    /// The permission entries of `path` (`n0`, `r5`, …; the first names the owner).
    pub async fn get_perms(&self, path: &str) -> Result<Vec<String>> {
        let payload = self
            .call(
                "get_perms",
                path,
                MsgType::GetPerms,
                TxRef::NONE,
                wire::join_strings([path]),
            )
            .await?;
        strings(payload, "get_perms", path)
    }

    /// Replace the permission entries of `path`.
    pub async fn set_perms(&self, path: &str, perms: &[&str]) -> Result<()> {
        let payload = wire::join_strings(std::iter::once(path).chain(perms.iter().copied()));
        self.call("set_perms", path, MsgType::SetPerms, TxRef::NONE, payload)
            .await
            .map(drop)
    }

    /// The home path of domain `domid` (`/local/domain/<domid>`).
    pub async fn get_domain_path(&self, domid: u32) -> Result<String> {
        let domid = domid.to_string();
        let payload = self
            .call(
                "get_domain_path",
                &domid,
                MsgType::GetDomainPath,
                TxRef::NONE,
                wire::join_strings([domid.as_str()]),
            )
            .await?;
        Ok(String::from_utf8_lossy(payload.strip_suffix(&[0]).unwrap_or(&payload)).into_owned())
    }

    /// Tell xenstored that domain `domid` exists, with its ring at `gfn`
    /// and event channel `port` (dom0 only; test harnesses use it).
    pub async fn introduce(&self, domid: u32, gfn: u64, port: u32) -> Result<()> {
        let (domid, gfn, port) = (domid.to_string(), gfn.to_string(), port.to_string());
        let payload = wire::join_strings([domid.as_str(), gfn.as_str(), port.as_str()]);
        self.call("introduce", &domid, MsgType::Introduce, TxRef::NONE, payload)
            .await
            .map(drop)
    }

    /// Watch `path` and everything below it. The watch fires once at once,
    /// again after every reconnection, and on every change.
    pub async fn watch(&self, path: &str) -> Result<Watch> {
        super::path::validate(path)?;
        let token = format!("guestward-{}", self.next_token.fetch_add(1, Ordering::Relaxed));
        let (events_sender, events) = mpsc::unbounded_channel();
        let (reply, answer) = oneshot::channel();
        self.send(Command::Watch {
            path: path.to_owned(),
            token: token.clone(),
            events: events_sender,
            reply,
        })?;
        settle("watch", path, answer).await?;
        Ok(Watch {
            events,
            keeper: self.keeper.clone(),
            path: path.to_owned(),
            token,
        })
    }

    /// Start a transaction: its reads see one snapshot, and its writes show
    /// all at once when it commits.
    pub async fn transaction(&self) -> Result<Transaction> {
        // Read first: if the connection changes before the reply, the
        // transaction's requests fail as disconnected (and are retried).
        let generation = self.generation.load(Ordering::SeqCst);
        let payload = self
            .call("transaction_start", "", MsgType::TransactionStart, TxRef::NONE, vec![0])
            .await?;
        let text = String::from_utf8_lossy(payload.strip_suffix(&[0]).unwrap_or(&payload)).into_owned();
        let id = text.parse().map_err(|_| Error::Protocol {
            op: "transaction_start",
            path: String::new(),
            reason: format!("transaction id {text:?} is not a number"),
        })?;
        Ok(Transaction {
            client: self.clone(),
            id,
            generation,
        })
    }

    /// Drop the current connection now; the client reconnects as it would
    /// after any failure. For tests of what depends on reconnection.
    pub fn drop_connection(&self) {
        let _ = self.keeper.send(Command::Drop);
    }

    async fn read_in(&self, tx: TxRef, path: &str) -> Result<Vec<u8>> {
        self.call("read", path, MsgType::Read, tx, wire::join_strings([path]))
            .await
    }

    async fn write_in(&self, tx: TxRef, path: &str, value: &[u8]) -> Result<()> {
        let mut payload = wire::join_strings([path]);
        payload.extend_from_slice(value);
        self.call("write", path, MsgType::Write, tx, payload).await.map(drop)
    }

    async fn rm_in(&self, tx: TxRef, path: &str) -> Result<()> {
        self.call("rm", path, MsgType::Rm, tx, wire::join_strings([path]))
            .await
            .map(drop)
    }

    async fn mkdir_in(&self, tx: TxRef, path: &str) -> Result<()> {
        self.call("mkdir", path, MsgType::Mkdir, tx, wire::join_strings([path]))
            .await
            .map(drop)
    }

    /// `DIRECTORY`, or when the names do not fit in one reply (`E2BIG`),
    /// `DIRECTORY_PART` in stretches, as libxenstore does.
    async fn directory_in(&self, tx: TxRef, path: &str) -> Result<Vec<String>> {
        match self
            .call("directory", path, MsgType::Directory, tx, wire::join_strings([path]))
            .await
        {
            Ok(payload) => strings(payload, "directory", path),
            Err(error) if error.errno() == Some(&Errno::E2BIG) => self.directory_in_parts(tx, path).await,
            Err(error) => Err(error),
        }
    }

    /// List `path` in parts. Each part carries the directory's generation
    /// count: when it changes between parts, the directory changed under
    /// us and the listing starts over. Outside a transaction, a directory
    /// that keeps changing is listed inside one, whose snapshot holds still.
    async fn directory_in_parts(&self, tx: TxRef, path: &str) -> Result<Vec<String>> {
        for _ in 0..DIRECTORY_PART_RESTARTS {
            if let Some(names) = self.try_directory_parts(tx, path).await? {
                return Ok(names);
            }
        }
        if tx == TxRef::NONE {
            let snapshot = self.transaction().await?;
            let listed = Box::pin(snapshot.directory(path)).await;
            let _ = snapshot.abort().await;
            return listed;
        }
        Err(Error::Protocol {
            op: "directory_part",
            path: path.to_owned(),
            reason: "the directory kept changing while it was listed".to_owned(),
        })
    }

    /// One pass over the parts; `None` if the generation changed meanwhile.
    async fn try_directory_parts(&self, tx: TxRef, path: &str) -> Result<Option<Vec<String>>> {
        let malformed = |error: wire::WireError| Error::Protocol {
            op: "directory_part",
            path: path.to_owned(),
            reason: error.to_string(),
        };
        let mut generation: Option<Vec<u8>> = None;
        let mut names = Vec::new();
        loop {
            let offset = names.len().to_string();
            let payload = self
                .call(
                    "directory_part",
                    path,
                    MsgType::DirectoryPart,
                    tx,
                    wire::join_strings([path, offset.as_str()]),
                )
                .await?;
            let part = wire::DirectoryPart::parse(&payload).map_err(malformed)?;
            match &generation {
                Some(first) if first.as_slice() != part.generation => return Ok(None),
                Some(_) => {}
                None => generation = Some(part.generation.to_vec()),
            }
            names.extend_from_slice(part.names);
            if wire::directory_parts_complete(&names) {
                return wire::directory_part_names(&names).map(Some).map_err(malformed);
            }
        }
    }

    async fn call(
        &self,
        op: &'static str,
        path: &str,
        msg_type: MsgType,
        tx: TxRef,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>> {
        if payload.len() > wire::PAYLOAD_MAX {
            return Err(Error::TooLarge {
                op,
                path: path.to_owned(),
                source: wire::WireError::PayloadTooLarge {
                    len: payload.len(),
                    max: wire::PAYLOAD_MAX,
                },
            });
        }
        let (reply, answer) = oneshot::channel();
        self.send(Command::Request(Outgoing {
            msg_type,
            tx_id: tx.id,
            generation: tx.generation,
            payload,
            reply: Some(reply),
        }))?;
        settle(op, path, answer).await
    }

    fn send(&self, command: Command) -> Result<()> {
        self.keeper.send(command).map_err(|_| Error::Closed)
    }
}

async fn settle(
    op: &'static str,
    path: &str,
    answer: oneshot::Receiver<std::result::Result<Vec<u8>, Failure>>,
) -> Result<Vec<u8>> {
    match answer.await {
        Ok(Ok(payload)) => Ok(payload),
        Ok(Err(Failure::Errno(errno))) => Err(Error::Errno {
            op,
            path: path.to_owned(),
            errno,
        }),
        Ok(Err(Failure::Disconnected)) => Err(Error::Disconnected {
            op,
            path: path.to_owned(),
        }),
        Err(_) => Err(Error::Closed),
    }
}

fn strings(payload: Vec<u8>, op: &'static str, path: &str) -> Result<Vec<String>> {
    wire::split_strings(&payload, op).map_err(|error| Error::Protocol {
        op,
        path: path.to_owned(),
        reason: error.to_string(),
    })
}

/// A registered watch. Dropping it unregisters it.
#[derive(Debug)]
pub struct Watch {
    events: mpsc::UnboundedReceiver<String>,
    keeper: mpsc::UnboundedSender<Command>,
    path: String,
    token: String,
}

impl Watch {
    /// The next path that fired. `None` once the client has shut down.
    pub async fn next(&mut self) -> Option<String> {
        self.events.recv().await
    }

    /// A path that already fired, without waiting.
    pub fn try_next(&mut self) -> Option<String> {
        self.events.try_recv().ok()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.keeper.send(Command::Unwatch {
            path: std::mem::take(&mut self.path),
            token: std::mem::take(&mut self.token),
        });
    }
}

/// An open transaction. Dropping it without committing aborts it.
#[derive(Debug)]
pub struct Transaction {
    client: XsClient,
    id: u32,
    generation: u64,
}

impl Transaction {
    fn tx(&self) -> TxRef {
        TxRef {
            id: self.id,
            generation: self.generation,
        }
    }

    pub async fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.client.read_in(self.tx(), path).await
    }

    pub async fn write(&self, path: &str, value: &[u8]) -> Result<()> {
        self.client.write_in(self.tx(), path, value).await
    }

    pub async fn rm(&self, path: &str) -> Result<()> {
        self.client.rm_in(self.tx(), path).await
    }

    pub async fn mkdir(&self, path: &str) -> Result<()> {
        self.client.mkdir_in(self.tx(), path).await
    }

    pub async fn directory(&self, path: &str) -> Result<Vec<String>> {
        self.client.directory_in(self.tx(), path).await
    }

    /// Commit. `Ok(false)` means another writer got in first (`EAGAIN`):
    /// nothing was applied, and the whole transaction should be retried.
    pub async fn commit(mut self) -> Result<bool> {
        let id = std::mem::take(&mut self.id);
        match self.end(id, "T").await {
            Ok(()) => Ok(true),
            Err(error) if error.errno() == Some(&Errno::EAGAIN) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Abort: nothing written in the transaction is applied.
    pub async fn abort(mut self) -> Result<()> {
        let id = std::mem::take(&mut self.id);
        self.end(id, "F").await
    }

    async fn end(&self, id: u32, verdict: &str) -> Result<()> {
        self.client
            .call(
                "transaction_end",
                "",
                MsgType::TransactionEnd,
                TxRef {
                    id,
                    generation: self.generation,
                },
                wire::join_strings([verdict]),
            )
            .await
            .map(drop)
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if self.id != 0 {
            let _ = self.client.send(Command::Request(Outgoing {
                msg_type: MsgType::TransactionEnd,
                tx_id: self.id,
                generation: self.generation,
                payload: wire::join_strings(["F"]),
                reply: None,
            }));
        }
    }
}

/// What the reader and writer tasks of one connection report.
#[derive(Debug)]
enum LinkEvent {
    Message(u64, Incoming),
    Closed(u64, String),
}

#[derive(Debug)]
struct Link {
    writer: mpsc::UnboundedSender<Vec<u8>>,
    reader: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct Pending {
    seq: u64,
    reply: Option<ReplySender>,
}

#[derive(Debug)]
struct WatchEntry {
    path: String,
    events: mpsc::UnboundedSender<String>,
}

/// The task that owns the connection.
struct LinkKeeper {
    /// Published on every loss and reconnection.
    link_state: watch::Sender<LinkState>,
    /// `generation`, for the client handles.
    shared_generation: Arc<AtomicU64>,
    endpoint: Endpoint,
    commands: mpsc::UnboundedReceiver<Command>,
    link_events: mpsc::UnboundedSender<LinkEvent>,
    link_receiver: mpsc::UnboundedReceiver<LinkEvent>,
    link: Option<Link>,
    generation: u64,
    pending: HashMap<u32, Pending>,
    queued: VecDeque<Outgoing>,
    watches: HashMap<String, WatchEntry>,
    next_req_id: u32,
    next_seq: u64,
    /// Requests written, oldest first (some already answered): the oldest
    /// unanswered one decides when the connection is taken for dead.
    sent: VecDeque<Sent>,
    request_timeout: Duration,
}

#[derive(Debug)]
struct Sent {
    req_id: u32,
    seq: u64,
    at: tokio::time::Instant,
}

impl LinkKeeper {
    async fn run(mut self) {
        let mut backoff = RECONNECT_BACKOFF.0;
        loop {
            if self.link.is_none() {
                match self.endpoint.connect().await {
                    Ok(connection) => {
                        info!(endpoint = %self.endpoint, "reconnected to XenStore");
                        backoff = RECONNECT_BACKOFF.0;
                        self.establish(connection);
                    }
                    Err(error) => {
                        debug!(endpoint = %self.endpoint, %error, "XenStore reconnection failed");
                        self.publish(LinkState::Reconnecting {
                            error: error.to_string(),
                        });
                        if !self.wait_queueing(backoff).await {
                            return;
                        }
                        backoff = (backoff * 2).min(RECONNECT_BACKOFF.1);
                    }
                }
                continue;
            }
            // No timer while nothing is pending: an idle client sleeps.
            let overdue_at = self.oldest_unanswered().map(|sent| sent + self.request_timeout);
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => self.handle(command),
                    None => return,
                },
                Some(event) = self.link_receiver.recv() => self.on_link_event(event),
                () = sleep_until(overdue_at) => {
                    let reason = format!("no reply within {:?}", self.request_timeout);
                    self.disconnect(&reason);
                }
            }
        }
    }

    /// When the oldest request still unanswered was written.
    fn oldest_unanswered(&mut self) -> Option<tokio::time::Instant> {
        while let Some(front) = self.sent.front() {
            match self.pending.get(&front.req_id) {
                Some(pending) if pending.seq == front.seq => return Some(front.at),
                _ => {
                    self.sent.pop_front();
                }
            }
        }
        None
    }

    /// While disconnected: queue commands for `delay`. False when every
    /// client handle is gone.
    async fn wait_queueing(&mut self, delay: Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return true,
                command = self.commands.recv() => match command {
                    Some(command) => self.handle(command),
                    None => return false,
                },
            }
        }
    }

    fn establish(&mut self, connection: super::transport::Connection) {
        self.generation += 1;
        self.shared_generation.store(self.generation, Ordering::SeqCst);
        let generation = self.generation;
        let (mut read_half, mut write_half) = tokio::io::split(connection);
        let events = self.link_events.clone();
        let reader = tokio::spawn(async move {
            let mut buffer = Vec::with_capacity(2 * wire::DAEMON_PAYLOAD_MAX);
            let mut chunk = vec![0u8; 64 * 1024];
            let reason = loop {
                match read_half.read(&mut chunk).await {
                    Ok(0) => break "closed by the other end".to_owned(),
                    Ok(count) => buffer.extend_from_slice(&chunk[..count]),
                    Err(error) => break error.to_string(),
                }
                match drain_frames(&mut buffer, |incoming| {
                    let _ = events.send(LinkEvent::Message(generation, incoming));
                }) {
                    Ok(()) => {}
                    Err(error) => break error.to_string(),
                }
            };
            let _ = events.send(LinkEvent::Closed(generation, reason));
        });
        let (writer, mut outgoing) = mpsc::unbounded_channel::<Vec<u8>>();
        let events = self.link_events.clone();
        tokio::spawn(async move {
            while let Some(bytes) = outgoing.recv().await {
                if let Err(error) = write_half.write_all(&bytes).await {
                    let _ = events.send(LinkEvent::Closed(generation, error.to_string()));
                    return;
                }
            }
        });
        self.link = Some(Link { writer, reader });
        self.publish(LinkState::Connected);
        for (token, watch) in &self.watches {
            let payload = wire::join_strings([watch.path.as_str(), token.as_str()]);
            self.queued.push_front(Outgoing {
                msg_type: MsgType::Watch,
                tx_id: 0,
                generation: 0,
                payload,
                reply: None,
            });
        }
        while let Some(outgoing) = self.queued.pop_front() {
            self.transmit(outgoing);
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Request(outgoing) => self.transmit(outgoing),
            Command::Watch {
                path,
                token,
                events,
                reply,
            } => {
                let payload = wire::join_strings([path.as_str(), token.as_str()]);
                self.watches.insert(token, WatchEntry { path, events });
                self.transmit(Outgoing {
                    msg_type: MsgType::Watch,
                    tx_id: 0,
                    generation: 0,
                    payload,
                    reply: Some(reply),
                });
            }
            Command::Unwatch { path, token } => {
                if self.watches.remove(&token).is_some() {
                    self.transmit(Outgoing {
                        msg_type: MsgType::Unwatch,
                        tx_id: 0,
                        generation: 0,
                        payload: wire::join_strings([path.as_str(), token.as_str()]),
                        reply: None,
                    });
                }
            }
            Command::Drop => self.disconnect("dropped on request"),
        }
    }

    /// Write a request now, or queue it until the next connection. A
    /// request of a transaction whose connection is gone fails at once:
    /// the transaction died with it.
    fn transmit(&mut self, outgoing: Outgoing) {
        if outgoing.tx_id != 0 && (self.link.is_none() || outgoing.generation != self.generation) {
            if let Some(reply) = outgoing.reply {
                let _ = reply.send(Err(Failure::Disconnected));
            }
            return;
        }
        if self.link.is_none() {
            self.queued.push_back(outgoing);
            return;
        }
        let req_id = self.allocate_req_id();
        let Some(link) = &self.link else { return };
        let bytes = match wire::encode(outgoing.msg_type, req_id, outgoing.tx_id, &outgoing.payload) {
            Ok(bytes) => bytes,
            Err(error) => {
                // Callers check sizes first; this is a last line of defence.
                warn!(%error, "XenStore request not sent");
                return;
            }
        };
        if link.writer.send(bytes).is_err() {
            self.queued.push_back(outgoing);
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.sent.push_back(Sent {
            req_id,
            seq,
            at: tokio::time::Instant::now(),
        });
        self.pending.insert(
            req_id,
            Pending {
                seq,
                reply: outgoing.reply,
            },
        );
    }

    fn allocate_req_id(&mut self) -> u32 {
        loop {
            let id = self.next_req_id;
            self.next_req_id = self.next_req_id.wrapping_add(1).max(1);
            if !self.pending.contains_key(&id) {
                return id;
            }
        }
    }

    fn on_link_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Message(generation, incoming) if generation == self.generation => self.deliver(incoming),
            LinkEvent::Closed(generation, reason) if generation == self.generation => self.disconnect(&reason),
            _ => {} // from a connection already replaced
        }
    }

    fn deliver(&mut self, incoming: Incoming) {
        match incoming {
            Incoming::WatchEvent { path, token } => {
                if let Some(watch) = self.watches.get(&token) {
                    let _ = watch.events.send(path);
                }
            }
            Incoming::Reply { req_id, result } => {
                let pending = match self.pending.remove(&req_id) {
                    Some(pending) => pending,
                    None => {
                        // Some guest kernels do not echo request ids
                        // faithfully; xenstored answers in order, so the
                        // oldest request is the one answered.
                        let Some(oldest) = self.pending.iter().min_by_key(|(_, p)| p.seq).map(|(id, _)| *id) else {
                            warn!(req_id, "XenStore reply to no request, ignored");
                            return;
                        };
                        debug!(
                            req_id,
                            oldest, "XenStore reply with an unknown id given to the oldest request"
                        );
                        let Some(pending) = self.pending.remove(&oldest) else {
                            return;
                        };
                        pending
                    }
                };
                if let Some(reply) = pending.reply {
                    let _ = reply.send(result.map_err(Failure::Errno));
                }
            }
        }
    }

    fn disconnect(&mut self, reason: &str) {
        let Some(link) = self.link.take() else { return };
        link.reader.abort();
        warn!(endpoint = %self.endpoint, reason, in_flight = self.pending.len(), "XenStore connection lost; reconnecting");
        self.publish(LinkState::Reconnecting {
            error: reason.to_owned(),
        });
        for (_, pending) in self.pending.drain() {
            if let Some(reply) = pending.reply {
                let _ = reply.send(Err(Failure::Disconnected));
            }
        }
        self.sent.clear();
    }
}

impl LinkKeeper {
    /// Tell watchers of the state, only when it changed (a reconnection
    /// failing the same way every backoff is one change).
    fn publish(&self, state: LinkState) {
        self.link_state.send_if_modified(|current| {
            let changed = *current != state;
            *current = state;
            changed
        });
    }
}

/// Sleep until `deadline`; forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Decode every complete frame at the front of `buffer`.
fn drain_frames(buffer: &mut Vec<u8>, mut deliver: impl FnMut(Incoming)) -> std::result::Result<(), wire::WireError> {
    let mut start = 0;
    while let Some((frame, used)) = wire::decode(&buffer[start..])? {
        start += used;
        deliver(wire::classify(frame)?);
    }
    buffer.drain(..start);
    Ok(())
}
