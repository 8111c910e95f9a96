//! Where the XenStore connection comes from: the guest's xenbus device or a
//! xenstored unix socket.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;

/// The xenbus devices of a Linux guest, newest first.
pub const GUEST_DEVICES: [&str; 2] = ["/dev/xen/xenbus", "/proc/xen/xenbus"];

/// A place to open a XenStore connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A xenbus character device: we are the guest domain.
    Device(PathBuf),
    /// A xenstored unix socket (dom0, or a test bridge acting as a guest).
    Socket(PathBuf),
}

impl Endpoint {
    /// The guest's xenbus device, when this machine has one.
    pub fn detect() -> Option<Self> {
        GUEST_DEVICES
            .iter()
            .map(Path::new)
            .find(|path| path.exists())
            .map(|path| Self::Device(path.to_owned()))
    }

    /// The endpoint at `path`: a socket if the file is one, else a device.
    pub fn at(path: &Path) -> Self {
        match std::fs::metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => Self::Socket(path.to_owned()),
            _ => Self::Device(path.to_owned()),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            Self::Device(path) | Self::Socket(path) => path,
        }
    }

    /// Open a new connection.
    pub async fn connect(&self) -> io::Result<Connection> {
        match self {
            Self::Socket(path) => Ok(Connection::Socket(UnixStream::connect(path).await?)),
            Self::Device(path) => {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                    .open(path)?;
                // SAFETY: a `File` owns its descriptor, keeps it open until
                // it is dropped (with the AsyncFd) and always reports the
                // same one.
                #[allow(unsafe_code)]
                let registered = unsafe { AsyncFd::register(file) }?;
                Ok(Connection::Device(registered))
            }
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Device(path) => write!(f, "device {}", path.display()),
            Self::Socket(path) => write!(f, "socket {}", path.display()),
        }
    }
}

/// An open connection: bytes in, bytes out.
#[derive(Debug)]
pub enum Connection {
    Socket(UnixStream),
    /// The device returns whole messages per read and buffers partial
    /// writes until a message is complete; it supports poll, so it is driven
    /// non-blocking through the reactor.
    Device(AsyncFd<File>),
}

fn poll_device<T>(
    fd: &AsyncFd<File>,
    cx: &mut Context<'_>,
    interest: tokio::io::Interest,
    mut op: impl FnMut(&File) -> io::Result<T>,
) -> Poll<io::Result<T>> {
    loop {
        let mut guard = if interest.is_readable() {
            ready!(fd.poll_read_ready(cx))?
        } else {
            ready!(fd.poll_write_ready(cx))?
        };
        match guard.try_io(|inner| op(inner.get_ref())) {
            Ok(result) => return Poll::Ready(result),
            Err(_would_block) => continue,
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Socket(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Device(fd) => {
                let unfilled = buf.initialize_unfilled();
                let read = ready!(poll_device(fd, cx, tokio::io::Interest::READABLE, |mut file| {
                    file.read(unfilled)
                }))?;
                buf.advance(read);
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Socket(stream) => Pin::new(stream).poll_write(cx, data),
            Self::Device(fd) => poll_device(fd, cx, tokio::io::Interest::WRITABLE, |mut file| file.write(data)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Socket(stream) => Pin::new(stream).poll_flush(cx),
            Self::Device(_) => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Socket(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Device(_) => Poll::Ready(Ok(())),
        }
    }
}
