//! The local socket exchange: Nova-protocol requests, one JSON object per
//! line, each answered by one line, over a unix socket that only root (or
//! the daemon's own user) may use. `guestward call` is its client. The
//! socket also answers the operator's status request (`guestward
//! status`), which is not a command.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::watch;

use super::listener::LocalListener;

use crate::dispatch::Dispatcher;
use crate::protocol::nova;
use crate::status::{self, StatusBoard};

/// The longest request line accepted.
pub const MAX_LINE: usize = nova::MAX_REQUEST_BYTES;

/// The local socket, bound and not yet serving.
#[derive(Debug)]
pub struct SocketExchange {
    listener: LocalListener,
}

impl SocketExchange {
    /// Bind `path` (see [`LocalListener::bind`]).
    pub async fn bind(path: &Path) -> io::Result<Self> {
        Ok(Self {
            listener: LocalListener::bind(path).await?,
        })
    }

    /// Serve connections until `shutdown` turns true, then remove the socket.
    pub async fn serve(self, dispatcher: Arc<Dispatcher>, status: Arc<StatusBoard>, shutdown: watch::Receiver<bool>) {
        tracing::info!(socket = %self.listener.path().display(), "serving the local socket");
        let counter = Arc::new(AtomicU64::new(0));
        self.listener
            .accept_until(shutdown, move |stream| {
                serve_connection(stream, dispatcher.clone(), status.clone(), counter.clone())
            })
            .await;
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
