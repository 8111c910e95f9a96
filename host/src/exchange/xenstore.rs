//! The XenStore exchange of the Nova agent protocol.
//!
//! The hypervisor writes a request to `data/host/<id>`; we read it, answer
//! it, remove the request and then write the answer to `data/guest/<id>`
//! (the legacy order). Requests are found by a watch on `data/host`, with a
//! slow re-scan as a safety net for a missed event.
//!
//! No request is lost or answered twice:
//! * an id is *in flight* from the moment it is read until its answer is
//!   written, and a scan skips in-flight ids;
//! * an answer that cannot be written (connection lost, `ENOSPC` because the
//!   guest's quota is full, `EACCES`) is retried with backoff until it is;
//! * after a reconnection the watch fires again and the directory is
//!   re-scanned, so requests written meanwhile are found.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::dispatch::Dispatcher;
use crate::protocol::{Reply, nova};
use crate::xenstore::{Errno, XsClient, wire};

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
    /// How long shutdown waits for answers in flight.
    pub drain: Duration,
}

impl Default for ExchangeOptions {
    fn default() -> Self {
        Self {
            rescan: Duration::from_secs(10),
            drain: Duration::from_secs(30),
        }
    }
}

/// An answered request.
#[derive(Debug)]
struct Answered {
    id: String,
    /// False when the request could not be removed from `data/host`.
    removed: bool,
}

/// Serve requests from XenStore until `shutdown` turns true.
pub async fn serve(
    client: XsClient,
    dispatcher: Arc<Dispatcher>,
    options: ExchangeOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut exchange = Exchange {
        client,
        dispatcher,
        in_flight: HashSet::new(),
        tombstones: Tombstones::default(),
    };
    let (answered, mut answers) = mpsc::unbounded_channel();
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
    let mut rescan = tokio::time::interval(options.rescan);
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            event = requests.next() => {
                if event.is_none() {
                    break;
                }
                // Events may come in bursts: one scan covers them all.
                while requests.try_next().is_some() {}
                exchange.scan(&answered).await;
            }
            _ = rescan.tick() => exchange.scan(&answered).await,
            Some(done) = answers.recv() => exchange.finish(done),
        }
    }
    drop(requests);
    let drained = tokio::time::timeout(options.drain, async {
        while !exchange.in_flight.is_empty() {
            match answers.recv().await {
                Some(done) => exchange.finish(done),
                None => break,
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            in_flight = exchange.in_flight.len(),
            "shutting down with answers still unwritten"
        );
    }
}

struct Exchange {
    client: XsClient,
    dispatcher: Arc<Dispatcher>,
    in_flight: HashSet<String>,
    tombstones: Tombstones,
}

impl Exchange {
    /// List `data/host` and submit every request not already in flight, in
    /// the order xenstored lists them (creation order).
    async fn scan(&mut self, answered: &mpsc::UnboundedSender<Answered>) {
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
            if self.in_flight.contains(&id) || self.tombstones.contains(&id) {
                continue;
            }
            let path = format!("{REQUESTS}/{id}");
            let raw = match self.client.read(&path).await {
                Ok(raw) => raw,
                Err(error) if error.is_not_found() => continue, // withdrawn
                Err(error) => {
                    tracing::warn!(request = id, %error, "cannot read request");
                    continue;
                }
            };
            let reply = self.dispatcher.submit(&raw, &id);
            self.in_flight.insert(id.clone());
            tokio::spawn(deliver(self.client.clone(), id, reply, answered.clone()));
        }
    }

    fn finish(&mut self, done: Answered) {
        if !done.removed {
            self.tombstones.insert(done.id.clone());
        }
        self.in_flight.remove(&done.id);
    }
}

/// Wait for the reply, then remove the request and write the answer,
/// retrying each step until it succeeds.
async fn deliver(
    client: XsClient,
    id: String,
    reply: oneshot::Receiver<Reply>,
    answered: mpsc::UnboundedSender<Answered>,
) {
    let reply = reply
        .await
        .unwrap_or_else(|_| Reply::error("internal error: the request was dropped"));
    let request_path = format!("{REQUESTS}/{id}");
    let answer_path = format!("{ANSWERS}/{id}");
    let answer = fit_for_xenstore(&answer_path, &reply);
    let removed = retry(&id, "remove the request", || async {
        match client.rm(&request_path).await {
            Ok(()) => Ok(true),
            Err(error) if error.is_not_found() => Ok(true),
            Err(error) if matches!(error, crate::xenstore::Error::Disconnected { .. }) => Err(error),
            Err(error) => {
                // We may not remove it (EACCES): answer anyway, and never
                // run it again.
                tracing::warn!(request = id, %error, "cannot remove the request; answering it anyway");
                Ok(false)
            }
        }
    })
    .await;
    retry(&id, "write the answer", || {
        write_answer(&client, &answer_path, &answer, &id)
    })
    .await;
    let _ = answered.send(Answered { id, removed });
}

/// Write the answer. When xenstored refuses it for lack of room (`ENOSPC`),
/// try a short error answer at once: if that fits, the answer was over the
/// guest's node-size quota (2048 bytes by default) and the hypervisor gets
/// an error that says so instead of nothing, forever; if it does not fit
/// either, the guest's node quota is full and the answer waits for room.
async fn write_answer(client: &XsClient, path: &str, answer: &str, id: &str) -> Result<(), crate::xenstore::Error> {
    match client.write(path, answer.as_bytes()).await {
        Err(error) if error.errno() == Some(&Errno::ENOSPC) => {
            let short = nova::encode(&Reply::error(format!(
                "the reply ({} bytes encoded) is larger than XenStore lets this guest write",
                answer.len()
            )));
            if short.len() >= answer.len() || client.write(path, short.as_bytes()).await.is_err() {
                return Err(error);
            }
            tracing::warn!(
                request = id,
                bytes = answer.len(),
                "answer over the XenStore node-size quota: sent an error instead"
            );
            Ok(())
        }
        other => other,
    }
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

/// Run `step` until it succeeds, waiting longer after each failure (up to
/// 30 s) and logging the first failure and every tenth after it.
async fn retry<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    id: &str,
    what: &str,
    mut step: impl FnMut() -> F,
) -> T {
    let mut delay = Duration::from_millis(100);
    let mut failures = 0u32;
    loop {
        match step().await {
            Ok(value) => {
                if failures > 0 {
                    tracing::info!(request = id, failures, "managed to {what}");
                }
                return value;
            }
            Err(error) => {
                if failures.is_multiple_of(10) {
                    tracing::warn!(request = id, failures, %error, "cannot {what}; retrying");
                }
                failures += 1;
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
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
