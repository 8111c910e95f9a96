//! The audit file's writer: a thread of its own behind a bounded queue, so
//! that no command and no tokio worker ever waits on the file.
//!
//! The file may sit on a filesystem the host froze (guest-fsfreeze-freeze):
//! a write there blocks in the kernel until the thaw. Meanwhile records
//! wait in the queue; when it is full they are dropped and counted, and the
//! count is written as a record of its own once the file takes writes
//! again. The log itself goes to stderr or the journal (a pipe or a
//! socket), which a freeze does not block.
//!
//! Even opening the file for appending waits on a frozen filesystem, and
//! a daemon restarted while filesystems are frozen must still start (it is
//! the one to thaw them): the thread opens the file, and the start waits
//! for it only a moment.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// Records the queue holds while the file does not take writes.
pub const QUEUE_RECORDS: usize = 1024;

/// How long the start waits for the file to open before it goes on
/// without (the records wait in the queue).
const OPEN_WAIT: Duration = Duration::from_secs(2);

/// Whether the audit file was open when the start went on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    Yes,
    /// Still opening: its filesystem takes no writes (frozen).
    Waiting,
}

/// The audit records' way to their file.
#[derive(Debug, Clone)]
pub struct AuditFile {
    queue: SyncSender<Vec<u8>>,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    /// Records dropped since the last report.
    dropped: AtomicU64,
    /// Records queued and not yet written.
    pending: AtomicUsize,
}

impl AuditFile {
    /// Open `path` for appending (created with mode 0600) in the writer
    /// thread. An error opening it is returned; a file still opening
    /// after a moment is `Opened::Waiting`.
    pub fn open(path: &Path) -> io::Result<(Self, Opened)> {
        let path = path.to_owned();
        let open = move || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
        };
        Self::start_opening(open, QUEUE_RECORDS, OPEN_WAIT)
    }

    /// Start the writer thread, which first runs `open`; wait `wait` for
    /// it.
    fn start_opening<W: Write>(
        open: impl FnOnce() -> io::Result<W> + Send + 'static,
        capacity: usize,
        wait: Duration,
    ) -> io::Result<(Self, Opened)> {
        let (queue, records) = sync_channel(capacity);
        let (opened, open_result) = sync_channel(1);
        let counts = Arc::new(Counts::default());
        let thread_counts = counts.clone();
        std::thread::Builder::new()
            .name("audit-file".to_owned())
            .spawn(move || match open() {
                Ok(file) => {
                    let _ = opened.send(Ok(()));
                    write_records(file, &records, &thread_counts);
                }
                Err(error) => {
                    let _ = opened.send(Err(error));
                }
            })?;
        let file = Self { queue, counts };
        match open_result.recv_timeout(wait) {
            Ok(Ok(())) => Ok((file, Opened::Yes)),
            Ok(Err(error)) => Err(error),
            Err(RecvTimeoutError::Timeout) => Ok((file, Opened::Waiting)),
            Err(RecvTimeoutError::Disconnected) => Err(io::Error::other("the audit log's writer stopped")),
        }
    }

    #[cfg(test)]
    fn with_capacity(file: impl Write + Send + 'static, capacity: usize) -> io::Result<Self> {
        Self::start_opening(move || Ok(file), capacity, Duration::from_secs(10)).map(|(file, _)| file)
    }

    /// Wait until every queued record is written, at most `timeout` (at
    /// exit; a file that does not take writes is not waited for longer).
    pub fn drain(&self, timeout: Duration) {
        let until = Instant::now() + timeout;
        while self.counts.pending.load(Ordering::SeqCst) > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Queue one record; never waits.
    fn send(&self, record: Vec<u8>) {
        self.counts.pending.fetch_add(1, Ordering::SeqCst);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.queue.try_send(record) {
            self.counts.pending.fetch_sub(1, Ordering::SeqCst);
            self.counts.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The writer thread: write each record; after a write, report what was
/// dropped while it waited.
fn write_records(mut file: impl Write, records: &Receiver<Vec<u8>>, counts: &Counts) {
    while let Ok(record) = records.recv() {
        if let Err(error) = file.write_all(&record).and_then(|()| file.flush()) {
            tracing::warn!(%error, "cannot write the audit log");
        }
        counts.pending.fetch_sub(1, Ordering::SeqCst);
        let dropped = counts.dropped.swap(0, Ordering::SeqCst);
        if dropped > 0 {
            // Through the audit target: to the file (queued like any
            // record) and to the log.
            tracing::warn!(
                target: guestward::runtime::AUDIT_TARGET,
                dropped,
                "audit records were dropped while the audit log did not take writes"
            );
        }
    }
}

impl<'a> MakeWriter<'a> for AuditFile {
    type Writer = Record<'a>;

    fn make_writer(&'a self) -> Record<'a> {
        Record {
            file: self,
            bytes: Vec::new(),
        }
    }
}

/// One record as the formatter writes it; queued whole when dropped.
pub struct Record<'a> {
    file: &'a AuditFile,
    bytes: Vec<u8>,
}

impl Write for Record<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.bytes.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Record<'_> {
    fn drop(&mut self) {
        if !self.bytes.is_empty() {
            self.file.send(std::mem::take(&mut self.bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Condvar, Mutex};

    use super::*;

    /// Whether the gate is open, what went through, and its waiters.
    type GateState = (Mutex<(bool, Vec<u8>)>, Condvar);

    /// A file that takes no write until opened, like one on a frozen
    /// filesystem until the thaw.
    #[derive(Clone, Default)]
    struct Gate(Arc<GateState>);

    impl Gate {
        fn open(&self) {
            self.0.0.lock().unwrap().0 = true;
            self.0.1.notify_all();
        }

        fn text(&self) -> String {
            String::from_utf8(self.0.0.lock().unwrap().1.clone()).unwrap()
        }
    }

    impl Write for Gate {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let (lock, opened) = &*self.0;
            let mut state = opened.wait_while(lock.lock().unwrap(), |state| !state.0).unwrap();
            state.1.extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn record(file: &AuditFile, text: &str) {
        let mut writer = file.make_writer();
        writer.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn records_never_wait_for_a_blocked_file_and_the_dropped_are_counted() {
        let gate = Gate::default();
        let file = AuditFile::with_capacity(gate.clone(), 4).unwrap();
        // The writer thread takes the first record and blocks on it; four
        // more fill the queue; the rest are dropped, without waiting.
        for index in 0..20 {
            record(&file, &format!("record {index}\n"));
        }
        // The writer waits in its first write: nothing reported yet.
        let dropped = file.counts.dropped.load(Ordering::SeqCst);
        assert!(dropped >= 15, "{dropped}");
        gate.open();
        file.drain(Duration::from_secs(10));
        let text = gate.text();
        assert!(text.starts_with("record 0\n"), "{text}");
        let written = text.lines().filter(|line| line.starts_with("record ")).count();
        assert_eq!(written as u64 + dropped, 20, "{text}");
        // Once the file took a write, the count was taken for its report
        // (a record through the global subscriber, absent here).
        assert_eq!(file.counts.dropped.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_file_that_takes_writes_gets_every_record_in_order() {
        let gate = Gate::default();
        gate.open();
        let file = AuditFile::with_capacity(gate.clone(), 4).unwrap();
        for index in 0..50 {
            record(&file, &format!("record {index}\n"));
            file.drain(Duration::from_secs(10));
        }
        let expected: String = (0..50).map(|index| format!("record {index}\n")).collect();
        assert_eq!(gate.text(), expected);
    }

    #[test]
    fn a_file_that_cannot_be_opened_yet_holds_up_no_start_and_gets_the_records_later() {
        let gate = Gate::default();
        let opening = gate.clone();
        let open = move || {
            // Blocks as an open for writing on a frozen filesystem does.
            opening.clone().write_all(b"opened\n")?;
            Ok(opening)
        };
        let (file, opened) = AuditFile::start_opening(open, 4, Duration::from_millis(50)).unwrap();
        assert_eq!(opened, Opened::Waiting);
        record(&file, "record 0\n");
        gate.open();
        file.drain(Duration::from_secs(10));
        assert_eq!(gate.text(), "opened\nrecord 0\n");
    }

    #[test]
    fn a_file_that_cannot_be_opened_is_an_error_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let error = AuditFile::open(&dir.path().join("missing/audit.jsonl")).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        let (_, opened) = AuditFile::open(&dir.path().join("audit.jsonl")).unwrap();
        assert_eq!(opened, Opened::Yes);
        let mode = std::fs::metadata(dir.path().join("audit.jsonl")).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
    }
}
