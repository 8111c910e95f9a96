//! The local socket exchange: Nova-protocol requests, one JSON object per
//! line, each answered by one line, over a unix socket that only root (or
//! the daemon's own user) may use. `guestward call` is its client. The
//! socket also answers the operator's status request (`guestward
//! status`), which is not a command.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use crate::dispatch::Dispatcher;
use crate::protocol::nova;
use crate::status::{self, StatusBoard};

/// The longest request line accepted.
pub const MAX_LINE: usize = nova::MAX_REQUEST_BYTES;

/// A bound, not yet serving, socket.
#[derive(Debug)]
pub struct SocketExchange {
    path: PathBuf,
    listener: UnixListener,
}

impl SocketExchange {
    /// Bind `path` (mode 0600, its directory created 0700 if missing). A
    /// stale socket file is replaced; a live one means another daemon is
    /// serving there, which is an error.
    pub async fn bind(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
        if std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_socket()) {
            if UnixStream::connect(path).await.is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{}: another guestward is serving there", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(Self {
            path: path.to_owned(),
            listener,
        })
    }

    /// Serve connections until `shutdown` turns true, then remove the socket.
    pub async fn serve(
        self,
        dispatcher: Arc<Dispatcher>,
        status: Arc<StatusBoard>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        tracing::info!(socket = %self.path.display(), "serving the local socket");
        let counter = Arc::new(AtomicU64::new(0));
        let own_uid = rustix::process::geteuid().as_raw();
        let mut backoff = AcceptBackoff::default();
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        backoff.reset();
                        let uid = stream.peer_cred().map(|cred| cred.uid()).ok();
                        if uid.is_some_and(|uid| uid == 0 || uid == own_uid) {
                            let connection = serve_connection(stream, dispatcher.clone(), status.clone(), counter.clone());
                            tokio::spawn(connection);
                        } else {
                            tracing::warn!(?uid, "refused a local connection from another user");
                        }
                    }
                    Err(error) => {
                        // Out of descriptors (EMFILE/ENFILE) the connection stays
                        // queued and accept fails again at once: wait instead of
                        // spinning, and say so once per streak, not per try.
                        let pause = backoff.next();
                        if backoff.is_first() {
                            tracing::warn!(%error, "local socket accept failed; retrying with back-off");
                        }
                        tokio::select! {
                            _ = shutdown.changed() => break,
                            () = tokio::time::sleep(pause) => {}
                        }
                    }
                },
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// How long to wait after a failed accept: 10 ms, doubling to 1 s.
#[derive(Debug, Default)]
struct AcceptBackoff {
    failures: u32,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    fn next(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        Self::FIRST
            .saturating_mul(1 << (self.failures - 1).min(10))
            .min(Self::MAX)
    }

    fn is_first(&self) -> bool {
        self.failures == 1
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

async fn serve_connection(
    stream: UnixStream,
    dispatcher: Arc<Dispatcher>,
    status: Arc<StatusBoard>,
    counter: Arc<AtomicU64>,
) {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_line(&mut reader, &mut line).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%error, "local connection closed");
                return;
            }
        }
        let request = line.trim_ascii();
        let mut answer = if status::is_request(request) {
            serde_json::to_string(&status.report()).unwrap_or_default()
        } else {
            let id = format!("local-{}", counter.fetch_add(1, Ordering::Relaxed) + 1);
            let reply = super::submit_nova(&dispatcher, request, &id)
                .reply()
                .await
                .unwrap_or_else(|| crate::protocol::Reply::error("internal error: the request was dropped"));
            nova::encode(&reply)
        };
        answer.push('\n');
        if writer.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// One line (without its newline), at most [`MAX_LINE`] bytes.
async fn read_line<R: AsyncBufReadExt + Unpin>(reader: &mut R, line: &mut Vec<u8>) -> io::Result<usize> {
    let mut limited = (&mut *reader).take(MAX_LINE as u64 + 1);
    let read = limited.read_until(b'\n', line).await?;
    if line.len() > MAX_LINE {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "request line too long"));
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    Ok(read)
}

use tokio::io::AsyncReadExt as _;

/// Send one request to a daemon's socket and return the answer line.
pub async fn call(path: &Path, request: &str) -> io::Result<String> {
    let stream = UnixStream::connect(path)
        .await
        .map_err(|error| io::Error::new(error.kind(), format!("cannot connect to {}: {error}", path.display())))?;
    let (reader, mut writer) = stream.into_split();
    writer.write_all(request.as_bytes()).await?;
    writer.write_all(b"\n").await?;
    let mut reader = BufReader::new(reader);
    let mut answer = Vec::new();
    read_line(&mut reader, &mut answer).await?;
    String::from_utf8(answer).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "answer is not UTF-8"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn accept_back_off_doubles_to_a_second_and_resets() {
        let mut backoff = super::AcceptBackoff::default();
        let pauses: Vec<u128> = (0..9).map(|_| backoff.next().as_millis()).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        backoff.reset();
        assert_eq!(backoff.next().as_millis(), 10);
        assert!(backoff.is_first());
    }
}
