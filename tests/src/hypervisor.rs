//! dom0's view of a guest's requests and answers, through the XenStore
//! client on xenstored's own socket: write requests (one at a time or all
//! in one transaction), collect answers, and count every write to each
//! answer path (a watch fires once per write), which is how a test sees an
//! answer written twice.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use guestward::xenstore::{Endpoint, XsClient};

/// A hypervisor talking to guest `domid`.
pub struct Hypervisor {
    pub client: XsClient,
    domid: u32,
    /// Events on each answer path: one per write, one per removal.
    events: tokio::sync::watch::Receiver<HashMap<String, u32>>,
    /// Answers this hypervisor removed (each fired one event).
    removed: std::sync::Mutex<HashMap<String, u32>>,
}

impl Hypervisor {
    /// Connect to the xenstored socket and start counting answer writes.
    pub async fn connect(xenstored_socket: &Path, domid: u32) -> Self {
        let client = XsClient::connect(Endpoint::Socket(xenstored_socket.to_owned()))
            .await
            .expect("connect to xenstored as dom0");
        let guest_dir = format!("/local/domain/{domid}/data/guest");
        let mut watch = client.watch(&guest_dir).await.expect("watch data/guest");
        let (sender, events) = tokio::sync::watch::channel(HashMap::new());
        let prefix = format!("{guest_dir}/");
        tokio::spawn(async move {
            while let Some(path) = watch.next().await {
                if let Some(id) = path.strip_prefix(&prefix) {
                    sender.send_modify(|counts| *counts.entry(id.to_owned()).or_insert(0) += 1);
                }
            }
        });
        Self {
            client,
            domid,
            events,
            removed: std::sync::Mutex::default(),
        }
    }

    /// `/local/domain/<domid>/<relative>`.
    pub fn path(&self, relative: &str) -> String {
        format!("/local/domain/{}/{relative}", self.domid)
    }

    /// Write every request in one transaction: they appear at once.
    pub async fn send_all(&self, requests: &[(String, String)]) {
        loop {
            let transaction = self.client.transaction().await.expect("transaction");
            for (id, request) in requests {
                transaction
                    .write(&self.path(&format!("data/host/{id}")), request.as_bytes())
                    .await
                    .expect("write a request");
            }
            if transaction.commit().await.expect("commit") {
                return;
            }
        }
    }

    /// Write the requests one by one, as they come.
    pub async fn stream(&self, requests: &[(String, String)]) {
        for (id, request) in requests {
            self.client
                .write(&self.path(&format!("data/host/{id}")), request.as_bytes())
                .await
                .expect("write a request");
        }
    }

    /// Wait until every id has an answer; return the answers. With
    /// `remove`, each answer is removed once read (the guest's quota stays
    /// free, and an answer written again after that would show).
    pub async fn collect(&self, ids: &[String], timeout: Duration, remove: bool) -> BTreeMap<String, String> {
        let deadline = Instant::now() + timeout;
        let guest_dir = self.path("data/guest");
        let wanted: std::collections::HashSet<&String> = ids.iter().collect();
        let mut answers = BTreeMap::new();
        while answers.len() < wanted.len() {
            let listed = self.client.directory(&guest_dir).await.unwrap_or_default();
            for id in listed {
                if answers.contains_key(&id) || !wanted.contains(&id) {
                    continue;
                }
                let path = format!("{guest_dir}/{id}");
                if let Ok(value) = self.client.read(&path).await {
                    if remove {
                        self.client.rm(&path).await.expect("remove an answer");
                        let mut removed = self.removed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                        *removed.entry(id.clone()).or_insert(0) += 1;
                    }
                    answers.insert(id, String::from_utf8(value).expect("an answer in UTF-8"));
                }
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {} answered",
                answers.len(),
                wanted.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        answers
    }

    /// Wait until every id has an answer; return the answers.
    pub async fn answers_to(&self, ids: &[String], timeout: Duration) -> BTreeMap<String, String> {
        self.collect(ids, timeout, false).await
    }

    /// How many times each answer path was written so far (its events,
    /// less those of our own removals).
    pub fn write_counts(&self) -> HashMap<String, u32> {
        let removed = self.removed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut counts = self.events.borrow().clone();
        for (id, count) in counts.iter_mut() {
            *count = count.saturating_sub(removed.get(id).copied().unwrap_or(0));
        }
        counts
    }

    /// Fail if any of `ids` was answered other than exactly once.
    pub fn assert_written_once(&self, ids: &[String]) {
        let writes = self.write_counts();
        for id in ids {
            assert_eq!(
                writes.get(id),
                Some(&1),
                "answer {id} written {:?} times",
                writes.get(id)
            );
        }
    }

    /// Requests still waiting in `data/host`.
    pub async fn requests_left(&self) -> Vec<String> {
        self.client.directory(&self.path("data/host")).await.unwrap_or_default()
    }

    /// Answers present in `data/guest`.
    pub async fn answers_left(&self) -> Vec<String> {
        self.client
            .directory(&self.path("data/guest"))
            .await
            .unwrap_or_default()
    }
}

/// `how_many` requests `{"name": name}` with ids `<prefix>0000`, …
pub fn requests(prefix: &str, name: &str, how_many: usize) -> Vec<(String, String)> {
    (0..how_many)
        .map(|index| (format!("{prefix}{index:04}"), format!(r#"{{"name":"{name}"}}"#)))
        .collect()
}

pub fn ids(requests: &[(String, String)]) -> Vec<String> {
    requests.iter().map(|(id, _)| id.clone()).collect()
}

/// The message of an answer.
pub fn message(answer: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(answer).expect("an answer in JSON");
    value["message"].as_str().expect("a message").to_owned()
}

/// The numbers the probe's `count` answered, sorted: each run of the
/// command got one.
pub fn sorted_counts<'a>(answers: impl IntoIterator<Item = &'a String>) -> Vec<u64> {
    let mut counts: Vec<u64> = answers
        .into_iter()
        .map(|answer| message(answer).parse().expect("a count"))
        .collect();
    counts.sort_unstable();
    counts
}

/// Assert that the probe's `count` answered `first`, `first + 1`, … once
/// each: every request ran exactly once.
pub fn assert_counts(answers: &BTreeMap<String, String>, first: u64) {
    let expected: Vec<u64> = (first..first + answers.len() as u64).collect();
    assert_eq!(
        sorted_counts(answers.values()),
        expected,
        "each request ran exactly once"
    );
}
