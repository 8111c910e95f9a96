//! The XenStore exchange of the Nova agent protocol.
//!
//! The hypervisor writes a request to `data/host/<id>`; we read it, run it,
//! and then remove the request and write the answer to `data/guest/<id>`
//! in one XenStore transaction ([`commit`]), so that both happen or
//! neither. Requests are found by a watch on `data/host` (an event names
//! the request that appeared), with a rare re-scan of the whole directory
//! as a safety net.
//!
//! No request is lost or answered twice:
//! * an id is *in flight* from the moment it is read until its answer is
//!   committed, and nothing submits an in-flight id again;
//! * the answer is written in the transaction that removes the request: if
//!   the daemon dies before the commit, the request is still there and runs
//!   again after a restart; if it dies after, the answer is there;
//! * a commit whose outcome is unknown (the connection dropped) is retried,
//!   and a retry that finds the request gone writes nothing: the earlier
//!   commit went through (or the hypervisor withdrew the request);
//! * an answer that cannot be written (`ENOSPC` because the guest's quota
//!   is full, `EACCES`) is retried with backoff until it can be;
//! * after a reconnection the watch fires again and the directory is
//!   re-scanned, so requests written meanwhile are found;
//! * a backlog larger than one XenStore reply is listed in parts
//!   (`DIRECTORY_PART`), and submitted [`ExchangeOptions::in_flight`] at a
//!   time so that no component's lane overflows.

mod commit;

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use self::commit::{Committed, Outcome, Ready};
use crate::dispatch::Dispatcher;
use crate::protocol::{Reply, nova};
use crate::xenstore::{XsClient, wire};

/// Where requests arrive (relative to the domain's home).
pub const REQUESTS: &str = "data/host";
/// Where answers go.
pub const ANSWERS: &str = "data/guest";

/// Ids whose request could not be removed, remembered so that they are not
/// answered again; the oldest are forgotten past this many.
const TOMBSTONES: usize = 4096;

/// Settings of the exchange.
#[derive(Debug, Clone)]
pub struct ExchangeOptions {
    /// The safety re-scan interval.
    pub rescan: Duration,
    /// How long shutdown waits for the commands already running to finish
    /// and for their answers to be written.
    pub drain: Duration,
    /// Requests submitted and not yet answered, at most (the rest wait in
    /// XenStore, in order).
    pub in_flight: usize,
}

impl Default for ExchangeOptions {
    fn default() -> Self {
        Self {
            rescan: Duration::from_secs(60),
            drain: Duration::from_secs(30),
            in_flight: 128,
        }
    }
}

/// Serve requests from XenStore until `shutdown` turns true.
pub async fn serve(
    client: XsClient,
    dispatcher: Arc<Dispatcher>,
    options: ExchangeOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    let (ready, mut committed) = commit::start(client.clone());
    let mut exchange = Exchange {
        client,
        dispatcher,
        ready,
        capacity: options.in_flight.max(1),
        in_flight: HashSet::new(),
        found: VecDeque::new(),
        found_ids: HashSet::new(),
        tombstones: Tombstones::default(),
    };
    let mut requests = loop {
        match exchange.client.watch(REQUESTS).await {
            Ok(watch) => break watch,
            Err(error) => {
                tracing::warn!(%error, "cannot watch {REQUESTS}; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    };
    tracing::info!(endpoint = %exchange.client.endpoint(), "serving the Nova agent protocol on XenStore");
    let mut rescan = tokio::time::interval_at(tokio::time::Instant::now() + options.rescan, options.rescan);
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            event = requests.next() => {
                let Some(path) = event else { break };
                // Events may come in bursts: take them all, then act once.
                let mut scan = exchange.notice(&path);
                while let Some(path) = requests.try_next() {
                    scan |= exchange.notice(&path);
                }
                if scan {
                    exchange.scan().await;
                }
                exchange.submit_found().await;
            }
            _ = rescan.tick() => {
                exchange.scan().await;
                exchange.submit_found().await;
            }
            Some(done) = committed.recv() => {
                exchange.finish(done);
                while let Ok(done) = committed.try_recv() {
                    exchange.finish(done);
                }
                exchange.submit_found().await;
            }
        }
    }
    drop(requests);
    // Requests queued for a lane but not started are abandoned (they stay
    // in XenStore for the next start); those running finish and are
    // answered.
    exchange.dispatcher.stop_starting();
    let drained = tokio::time::timeout(options.drain, async {
        while !exchange.in_flight.is_empty() {
            match committed.recv().await {
                Some(done) => exchange.finish(done),
                None => break,
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            in_flight = exchange.in_flight.len(),
            "shutting down with answers still unwritten; their requests run again at the next start"
        );
    }
}

struct Exchange {
    client: XsClient,
    dispatcher: Arc<Dispatcher>,
    ready: mpsc::UnboundedSender<Ready>,
    capacity: usize,
    /// Submitted, answer not yet committed.
    in_flight: HashSet<String>,
    /// Found in XenStore, not yet submitted, in the order found.
    found: VecDeque<String>,
    found_ids: HashSet<String>,
    tombstones: Tombstones,
}

impl Exchange {
    /// Take note of a watch event. An event naming one request queues that
    /// request; anything else (the watch's first event, the directory
    /// itself) asks for a full scan (true).
    fn notice(&mut self, path: &str) -> bool {
        let id = path
            .strip_prefix(REQUESTS)
            .and_then(|rest| rest.strip_prefix('/'))
            .and_then(|rest| rest.split('/').next());
        match id {
            Some(id) if !id.is_empty() => {
                self.enqueue(id);
                false
            }
            _ => true,
        }
    }

    /// List `data/host` and queue every request not already known, in the
    /// order xenstored lists them (creation order).
    async fn scan(&mut self) {
        let ids = match self.client.directory(REQUESTS).await {
            Ok(ids) => ids,
            Err(error) if error.is_not_found() => {
                if let Err(error) = self.client.mkdir(REQUESTS).await {
                    tracing::warn!(%error, "cannot create {REQUESTS}");
                }
                return;
            }
            Err(error) => {
                // After a reconnection the watch fires and we scan again.
                tracing::warn!(%error, "cannot list requests");
                return;
            }
        };
        for id in ids {
            self.enqueue(&id);
        }
    }

    fn enqueue(&mut self, id: &str) {
        let known = self.in_flight.contains(id) || self.found_ids.contains(id) || self.tombstones.contains(id);
        if !known {
            self.found_ids.insert(id.to_owned());
            self.found.push_back(id.to_owned());
        }
    }

    /// Read and submit queued requests while there is room in flight.
    async fn submit_found(&mut self) {
        while self.in_flight.len() < self.capacity {
            let Some(id) = self.found.pop_front() else { return };
            self.found_ids.remove(&id);
            let path = format!("{REQUESTS}/{id}");
            let raw = match self.client.read(&path).await {
                Ok(raw) => raw,
                Err(error) if error.is_not_found() => continue, // answered or withdrawn
                Err(error) => {
                    // The next event or scan finds it again.
                    tracing::warn!(request = id, %error, "cannot read request");
                    continue;
                }
            };
            let reply = super::submit_nova(&self.dispatcher, &raw, &id);
            self.in_flight.insert(id.clone());
            tokio::spawn(hand_over(id, reply, self.ready.clone()));
        }
    }

    fn finish(&mut self, done: Committed) {
        if done.outcome == Outcome::NotRemoved {
            self.tombstones.insert(done.id.clone());
        }
        self.in_flight.remove(&done.id);
    }
}

/// Wait for the reply and hand the encoded answer to the committer. A
/// request its lane abandoned (shutdown) is reported without an answer.
async fn hand_over(id: String, reply: super::Pending, ready: mpsc::UnboundedSender<Ready>) {
    let answer = reply
        .reply()
        .await
        .map(|reply| fit_for_xenstore(&format!("{ANSWERS}/{id}"), &reply));
    let _ = ready.send(Ready::new(id, answer));
}

/// The encoded answer, or a short error if it would not fit in one
/// XenStore write.
fn fit_for_xenstore(answer_path: &str, reply: &Reply) -> String {
    let answer = nova::encode(reply);
    let room = wire::PAYLOAD_MAX - answer_path.len() - 1;
    if answer.len() <= room {
        return answer;
    }
    nova::encode(&Reply::error(format!(
        "the reply ({} bytes encoded) is too large for XenStore ({room} bytes)",
        answer.len()
    )))
}

/// A bounded set of ids, forgetting the oldest first.
#[derive(Debug, Default)]
struct Tombstones {
    order: VecDeque<String>,
    ids: HashSet<String>,
}

impl Tombstones {
    fn insert(&mut self, id: String) {
        if self.ids.insert(id.clone()) {
            self.order.push_back(id);
        }
        while self.order.len() > TOMBSTONES {
            if let Some(oldest) = self.order.pop_front() {
                self.ids.remove(&oldest);
            }
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_too_large_for_xenstore_become_errors() {
        let path = "data/guest/748dee41-c47f-4ec7-b2cd-037e51da4031";
        let small = Reply::ok("1.0");
        assert_eq!(fit_for_xenstore(path, &small), nova::encode(&small));
        let huge = Reply::ok("é".repeat(1000)); // 6 bytes each once escaped
        let answer = fit_for_xenstore(path, &huge);
        assert!(answer.contains("too large for XenStore"), "{answer}");
        assert!(answer.len() + path.len() < wire::PAYLOAD_MAX);
    }

    #[test]
    fn tombstones_forget_the_oldest() {
        let mut tombstones = Tombstones::default();
        for id in 0..=TOMBSTONES {
            tombstones.insert(id.to_string());
        }
        assert!(!tombstones.contains("0"));
        assert!(tombstones.contains(&TOMBSTONES.to_string()));
    }
}
