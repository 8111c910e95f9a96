//! A unix socket only root (or the daemon's own user) may use: what the
//! local Nova socket and the QGA socket accept their connections on.

use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

/// A bound socket, not yet accepting.
#[derive(Debug)]
pub struct LocalListener {
    path: PathBuf,
    listener: UnixListener,
}

impl LocalListener {
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

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accept connections until `shutdown` turns true, spawning `serve` for
    /// each one from root or the daemon's own user; then remove the socket.
    pub async fn accept_until<F, Fut>(self, mut shutdown: watch::Receiver<bool>, serve: F)
    where
        F: Fn(UnixStream) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
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
                            tokio::spawn(serve(stream));
                        } else {
                            tracing::warn!(?uid, socket = %self.path.display(), "refused a local connection from another user");
                        }
                    }
                    Err(error) => {
                        // Out of descriptors (EMFILE/ENFILE) the connection stays
                        // queued and accept fails again at once: wait instead of
                        // spinning, and say so once per streak, not per try.
                        let pause = backoff.next();
                        if backoff.is_first() {
                            tracing::warn!(%error, socket = %self.path.display(), "accept failed; retrying with back-off");
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
