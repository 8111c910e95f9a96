//! The virtio-serial port: a character device the hypervisor's side
//! connects to and disconnects from as it pleases (libvirt opens it when
//! it has something to ask, a migration closes it).
//!
//! A port that is not there is waited for without polling (an inotify
//! watch on its directory): udev makes `/dev/virtio-ports/…` after the
//! daemon starts early in boot, and a Xen guest never has one, where the
//! wait costs nothing. While no host is connected, reads on a virtio port
//! end at once (end of file, and poll reports a hang-up), so the port
//! cannot be waited on; it is closed and reopened after [`REOPEN_PAUSE`].
//! The same loop survives a port that is busy (another agent holds it). A
//! terminal (a pty in tests, a serial line) is put in raw mode so that no
//! byte, 0xFF included, is translated.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{Mode, OFlags};
use tokio::io::Join;
use tokio::net::unix::pipe;
use tokio::sync::watch;

use super::Session;
use crate::status::PortState;

/// Where QEMU's `virtserialport` named `org.qemu.guest_agent.0` appears.
pub const DEFAULT_DEVICE: &str = "/dev/virtio-ports/org.qemu.guest_agent.0";

/// How long to wait before reopening a port whose host side went away.
const REOPEN_PAUSE: Duration = Duration::from_secs(1);

/// Serve the port at `path` until `shutdown`, one session per opening.
pub async fn serve(
    path: PathBuf,
    session: Session,
    state: watch::Sender<PortState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failing = false;
    let mut announced = false;
    loop {
        if !path.exists() {
            state.send_replace(PortState::Waiting);
            tracing::debug!(device = %path.display(), "waiting for the QGA port to appear");
            tokio::select! {
                _ = shutdown.changed() => return,
                appeared = appearance(&path) => if let Err(error) = appeared {
                    tracing::warn!(device = %path.display(), %error, "cannot watch for the QGA port; looking every second");
                    tokio::time::sleep(REOPEN_PAUSE).await;
                    continue;
                },
            }
        }
        if !announced {
            tracing::info!(device = %path.display(), "serving the QGA protocol on a port");
            announced = true;
        }
        match open(&path) {
            Ok(port) => {
                if failing {
                    tracing::info!(device = %path.display(), "the QGA port is open again");
                }
                failing = false;
                state.send_replace(PortState::Open);
                session.serve(port, shutdown.clone()).await;
                state.send_replace(PortState::Reopening {
                    error: "the host side closed the port".to_owned(),
                });
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(device = %path.display(), %error, "cannot open the QGA port; retrying every second");
                }
                failing = true;
                state.send_replace(PortState::Reopening {
                    error: error.to_string(),
                });
            }
        }
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            () = tokio::time::sleep(REOPEN_PAUSE) => {}
        }
    }
}

/// Wait until `path` exists: an inotify watch on the nearest directory
/// above it that exists, woken by whatever is created there.
async fn appearance(path: &Path) -> io::Result<()> {
    use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
    use tokio::io::AsyncReadExt;
    while !path.exists() {
        let watched = path
            .ancestors()
            .skip(1)
            .find(|dir| dir.is_dir())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no directory above the port"))?;
        let watch = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?;
        inotify::add_watch(&watch, watched, WatchFlags::CREATE | WatchFlags::MOVED_TO)?;
        if path.exists() {
            break; // made between the look and the watch
        }
        // An inotify descriptor reads like a pipe: wake on any event.
        let mut events = pipe::Receiver::from_owned_fd_unchecked(watch)?;
        let mut buffer = [0u8; 4096];
        let _events = events.read(&mut buffer).await?;
    }
    Ok(())
}

/// Open a port for reading and writing without blocking a thread: one
/// descriptor, duplicated, registered once as a reader and once as a
/// writer (tokio's pipe halves accept any pollable character device).
fn open(path: &Path) -> io::Result<Join<pipe::Receiver, pipe::Sender>> {
    let flags = OFlags::RDWR | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rustix::fs::open(path, flags, Mode::empty())?;
    if rustix::termios::isatty(&fd) {
        let mut termios = rustix::termios::tcgetattr(&fd)?;
        termios.make_raw();
        rustix::termios::tcsetattr(&fd, rustix::termios::OptionalActions::Now, &termios)?;
    }
    let writer = pipe::Sender::from_owned_fd_unchecked(fd.try_clone()?)?;
    let reader = pipe::Receiver::from_owned_fd_unchecked(fd)?;
    Ok(tokio::io::join(reader, writer))
}
