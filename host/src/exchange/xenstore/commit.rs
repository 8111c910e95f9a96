//! Writing answers: the request's removal and its answer in one XenStore
//! transaction, both or neither.
//!
//! One task commits for the whole exchange. It takes the answers that are
//! ready, up to [`BATCH`] at a time, and commits them in one transaction:
//! every transaction removes a node of `data/host`, so transactions of
//! their own would conflict with each other (`EAGAIN`) under a burst. A
//! request already gone when the transaction reads it was answered by an
//! earlier commit whose reply was lost with the connection (or withdrawn
//! by the hypervisor): its answer is not written again.
//!
//! A batch that xenstored refuses in part (quota full, permission taken
//! away) is committed again one request at a time, so that one answer that
//! cannot be written does not hold up the others; that one is retried with
//! backoff until it can be written.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{ANSWERS, REQUESTS};
use crate::protocol::{Reply, nova};
use crate::xenstore::{Errno, Error, Transaction, XsClient};

/// Answers committed in one transaction, at most (a guest may touch about
/// a thousand nodes in one transaction; each answer touches two).
const BATCH: usize = 64;

/// Conflicting commits (`EAGAIN`) in a row before pausing briefly.
const CONFLICTS_BEFORE_PAUSE: u32 = 16;

/// The longest wait before retrying an answer xenstored refused.
const RETRY_CEILING: Duration = Duration::from_secs(30);

/// An answer ready to be committed (`None`: the request was abandoned at
/// shutdown and stays in XenStore).
#[derive(Debug)]
pub struct Ready {
    id: String,
    answer: Option<String>,
    /// Times xenstored refused this answer so far.
    refusals: u32,
}

impl Ready {
    pub fn new(id: String, answer: Option<String>) -> Self {
        Self {
            id,
            answer,
            refusals: 0,
        }
    }
}

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Removed and answered, or already gone.
    Answered,
    /// Answered, but the request could not be removed (never run it again).
    NotRemoved,
    /// Not answered: left in XenStore for the next start.
    Abandoned,
}

#[derive(Debug)]
pub struct Committed {
    pub id: String,
    pub outcome: Outcome,
}

/// Start the committer: send it answers, receive what became of them.
pub fn start(client: XsClient) -> (mpsc::UnboundedSender<Ready>, mpsc::UnboundedReceiver<Committed>) {
    let (ready, answers) = mpsc::unbounded_channel();
    let (committed, outcomes) = mpsc::unbounded_channel();
    let committer = Committer {
        client,
        retry: ready.clone(),
        committed,
    };
    tokio::spawn(committer.run(answers));
    (ready, outcomes)
}

struct Committer {
    client: XsClient,
    /// Where refused answers come back after their backoff.
    retry: mpsc::UnboundedSender<Ready>,
    committed: mpsc::UnboundedSender<Committed>,
}

/// How one attempt at a transaction ended, short of committing.
enum Failed {
    /// The connection was lost (or the outcome of the commit is unknown):
    /// try again once it is back.
    Lost,
    /// xenstored refused an operation.
    Refused(Error),
    /// Another writer got in first (`EAGAIN`).
    Conflict,
}

impl From<Error> for Failed {
    fn from(error: Error) -> Self {
        match error {
            Error::Errno { .. } => Self::Refused(error),
            _ => Self::Lost,
        }
    }
}

impl Committer {
    async fn run(self, mut answers: mpsc::UnboundedReceiver<Ready>) {
        while let Some(first) = answers.recv().await {
            let mut batch = Vec::with_capacity(BATCH);
            self.take(first, &mut batch);
            while batch.len() < BATCH {
                match answers.try_recv() {
                    Ok(ready) => self.take(ready, &mut batch),
                    Err(_) => break,
                }
            }
            if batch.len() == 1 {
                if let Some(only) = batch.pop() {
                    self.commit_one(only).await;
                }
            } else if !batch.is_empty() {
                self.commit_batch(batch).await;
            }
        }
    }

    /// Add `ready` to the batch, or report an abandoned request at once.
    fn take(&self, ready: Ready, batch: &mut Vec<Ready>) {
        if ready.answer.is_some() {
            batch.push(ready);
        } else {
            self.report(ready.id, Outcome::Abandoned);
        }
    }

    fn report(&self, id: String, outcome: Outcome) {
        let _ = self.committed.send(Committed { id, outcome });
    }

    /// Commit a batch; if xenstored refuses any part of it, commit its
    /// answers one by one.
    async fn commit_batch(&self, batch: Vec<Ready>) {
        let mut attempt = Attempt::default();
        loop {
            match self.try_batch(&batch).await {
                Ok(()) => {
                    for ready in batch {
                        self.report(ready.id, Outcome::Answered);
                    }
                    return;
                }
                Err(Failed::Refused(_)) => break,
                Err(failed) => attempt.wait_after(&failed).await,
            }
        }
        for ready in batch {
            self.commit_one(ready).await;
        }
    }

    async fn try_batch(&self, batch: &[Ready]) -> Result<(), Failed> {
        let transaction = self.client.transaction().await?;
        let present = join_all(batch.iter().map(|ready| request_present(&transaction, &ready.id))).await;
        let mut writes = Vec::new();
        for (ready, present) in batch.iter().zip(present) {
            if present? {
                writes.push(remove_and_answer(&transaction, ready));
            }
        }
        for written in join_all(writes).await {
            written?;
        }
        commit(transaction).await
    }

    /// Commit one answer, handling each refusal xenstored can give.
    async fn commit_one(&self, ready: Ready) {
        let mut attempt = Attempt::default();
        loop {
            match self.try_one(&ready).await {
                Ok(outcome) => return self.report(ready.id, outcome),
                Err(Failed::Refused(error)) => return self.retry_later(ready, &error),
                Err(failed) => attempt.wait_after(&failed).await,
            }
        }
    }

    /// Commit one answer. When xenstored refuses it for lack of room
    /// (`ENOSPC`, at the write or at the commit), try a short error answer:
    /// if that fits, the answer was over the guest's node-size quota (2048
    /// bytes by default) and the hypervisor gets an error that says so
    /// instead of nothing, forever; if it does not fit either, the guest's
    /// node quota is full and the answer waits for room.
    async fn try_one(&self, ready: &Ready) -> Result<Outcome, Failed> {
        let answer = ready.answer.as_deref().unwrap_or_default();
        match self.try_one_answer(ready, answer).await {
            Err(Failed::Refused(error)) if error.errno() == Some(&Errno::ENOSPC) => {
                let short = too_large(answer);
                if short.len() >= answer.len() {
                    return Err(Failed::Refused(error));
                }
                let outcome = self.try_one_answer(ready, &short).await?;
                tracing::warn!(
                    request = ready.id,
                    bytes = answer.len(),
                    "answer over the XenStore node-size quota: sent an error instead"
                );
                Ok(outcome)
            }
            other => other,
        }
    }

    async fn try_one_answer(&self, ready: &Ready, answer: &str) -> Result<Outcome, Failed> {
        let transaction = self.client.transaction().await?;
        if !request_present(&transaction, &ready.id).await? {
            return Ok(Outcome::Answered);
        }
        let request_path = format!("{REQUESTS}/{}", ready.id);
        let answer_path = format!("{ANSWERS}/{}", ready.id);
        match transaction.rm(&request_path).await {
            Ok(()) => {}
            Err(error @ Error::Errno { .. }) => {
                // We may not remove it (EACCES): answer anyway, outside the
                // transaction, and never run it again.
                drop(transaction);
                tracing::warn!(request = ready.id, %error, "cannot remove the request; answering it anyway");
                self.client.write(&answer_path, answer.as_bytes()).await?;
                return Ok(Outcome::NotRemoved);
            }
            Err(error) => return Err(error.into()),
        }
        transaction.write(&answer_path, answer.as_bytes()).await?;
        commit(transaction).await.map(|()| Outcome::Answered)
    }

    /// Try a refused answer again after a backoff that grows with each
    /// refusal; the committer goes on with other answers meanwhile.
    fn retry_later(&self, mut ready: Ready, error: &Error) {
        if ready.refusals.is_multiple_of(10) {
            tracing::warn!(request = ready.id, refusals = ready.refusals, %error, "cannot write the answer; retrying");
        }
        let delay = Duration::from_millis(100)
            .saturating_mul(1 << ready.refusals.min(9))
            .min(RETRY_CEILING);
        ready.refusals += 1;
        let retry = self.retry.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = retry.send(ready);
        });
    }
}

/// Whether the request is still in `data/host`, as the transaction sees it.
async fn request_present(transaction: &Transaction, id: &str) -> Result<bool, Failed> {
    match transaction.read(&format!("{REQUESTS}/{id}")).await {
        Ok(_) => Ok(true),
        Err(error) if error.is_not_found() => Ok(false),
        Err(error) => Err(error.into()),
    }
}

async fn remove_and_answer(transaction: &Transaction, ready: &Ready) -> Result<(), Failed> {
    let answer = ready.answer.as_deref().unwrap_or_default();
    let (request_path, answer_path) = (format!("{REQUESTS}/{}", ready.id), format!("{ANSWERS}/{}", ready.id));
    let (removed, written) = tokio::join!(
        transaction.rm(&request_path),
        transaction.write(&answer_path, answer.as_bytes()),
    );
    removed?;
    written?;
    Ok(())
}

async fn commit(transaction: Transaction) -> Result<(), Failed> {
    match transaction.commit().await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Failed::Conflict),
        // Refused: nothing was applied. Lost: committed or not, we cannot
        // tell; the retry finds out.
        Err(error) => Err(error.into()),
    }
}

/// The short error that replaces an answer XenStore will not take.
fn too_large(answer: &str) -> String {
    nova::encode(&Reply::error(format!(
        "the reply ({} bytes encoded) is larger than XenStore lets this guest write",
        answer.len()
    )))
}

/// Waits between attempts of one transaction.
#[derive(Debug, Default)]
struct Attempt {
    conflicts: u32,
    losses: u32,
}

impl Attempt {
    async fn wait_after(&mut self, failed: &Failed) {
        match failed {
            Failed::Conflict => {
                self.conflicts += 1;
                if self.conflicts.is_multiple_of(CONFLICTS_BEFORE_PAUSE) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            Failed::Lost | Failed::Refused(_) => {
                // The client reconnects by itself; requests made meanwhile
                // wait for the connection, so this only paces the retries.
                let delay = Duration::from_millis(20).saturating_mul(1 << self.losses.min(6));
                self.losses += 1;
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Await every future, polling them together: their requests are written
/// to the connection at once and answered in one round trip.
async fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|context| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(context) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn join_all_keeps_the_order_of_its_futures() {
        let delays = [30u64, 10, 20];
        let outputs = join_all(delays.iter().map(|&ms| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            ms
        }))
        .await;
        assert_eq!(outputs, delays);
    }
}
