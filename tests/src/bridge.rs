//! A guest's XenStore ring, bridged to a unix socket: a client connected to
//! the bridge talks to xenstored *as guest domain N* (unprivileged, relative
//! paths under `/local/domain/N/`), as the agent does through
//! `/dev/xen/xenbus` inside a real guest.
//!
//! The ring is `struct xenstore_domain_interface`: one page, shared with
//! xenstored through the file `ring-N` (see the shim), with a 1024-byte
//! request ring at 0, a 1024-byte response ring at 1024, and free-running
//! `u32` indexes at 2048 (`req_cons`, `req_prod`) and 2056 (`rsp_cons`,
//! `rsp_prod`). Kicking xenstored is writing a byte to the `evtchn` FIFO;
//! xenstored kicks back through `notify-N`.
//!
//! One client at a time. Each new client re-introduces the domain, which
//! makes xenstored drop that domain's watches and transactions and reset the
//! ring: every client starts clean, as after a reconnection to the device.
//! While paused, the bridge serves nobody: the client it served is dropped,
//! and new connections wait in the listen backlog until `resume`. While
//! stalled, the client stays connected but nothing moves either way, as on a
//! connection that stops answering without closing; a new client ends the
//! stall.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};

use crate::dom0_wire::Dom0Wire;

const PAGE: usize = 4096;
const RING: u32 = 1024;
const REQUESTS: usize = 0;
const RESPONSES: usize = 1024;
const REQ_CONS: usize = 2048;
const REQ_PROD: usize = 2052;
const RSP_CONS: usize = 2056;
const RSP_PROD: usize = 2060;

/// How long the bridge waits for something to happen before checking the
/// ring again (xenstored's wake-ups can be lost; see `serve`).
const TICK: Duration = Duration::from_millis(5);

/// A running bridge. Dropping it stops it.
pub struct GuestBridge {
    socket: PathBuf,
    domid: u32,
    control: Arc<Control>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for GuestBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestBridge")
            .field("socket", &self.socket)
            .field("domid", &self.domid)
            .finish()
    }
}

#[derive(Default)]
struct Control {
    stop: AtomicBool,
    paused: AtomicBool,
    stalled: AtomicBool,
    /// Bumped by `drop_client`: the client being served is dropped.
    drops: AtomicU64,
    served: AtomicU64,
}

impl GuestBridge {
    /// Bridge domain `domid` of the xenstored whose state is in `dir` and
    /// whose dom0 socket is `dom0_socket`; listen on `dir/guest-<domid>.sock`.
    pub(crate) fn start(dir: &Path, dom0_socket: &Path, domid: u32) -> io::Result<Self> {
        let ring = Ring::map(&dir.join(format!("ring-{domid}")))?;
        ring.zero();
        let notify = open_fifo(&dir.join(format!("notify-{domid}")))?;
        let kick = OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(dir.join("evtchn"))?;
        let mut dom0 = Dom0Wire::connect(dom0_socket)?;
        dom0.introduce(domid)?;
        let socket = dir.join(format!("guest-{domid}.sock"));
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)?;
        listener.set_nonblocking(true)?;
        let control = Arc::new(Control::default());
        let link = Link {
            ring,
            notify,
            kick,
            dom0,
            dom0_socket: dom0_socket.to_owned(),
            domid,
            control: control.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("guest-bridge-{domid}"))
            .spawn(move || link.run(&listener))?;
        Ok(Self {
            socket,
            domid,
            control,
            thread: Some(thread),
        })
    }

    /// Connect here to be guest `domid`.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn domid(&self) -> u32 {
        self.domid
    }

    /// Close the client connection being served: it sees end-of-file.
    pub fn drop_client(&self) {
        self.control.drops.fetch_add(1, Ordering::SeqCst);
    }

    /// Stop moving bytes for the client being served, without closing its
    /// connection, until it reconnects.
    pub fn stall(&self) {
        self.control.stalled.store(true, Ordering::SeqCst);
    }

    /// Serve nobody until [`resume`](Self::resume).
    pub fn pause(&self) {
        self.control.paused.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.control.paused.store(false, Ordering::SeqCst);
    }

    /// Client connections served so far.
    pub fn clients_served(&self) -> u64 {
        self.control.served.load(Ordering::SeqCst)
    }
}

impl Drop for GuestBridge {
    fn drop(&mut self) {
        self.control.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Everything the bridge thread owns.
struct Link {
    ring: Ring,
    notify: File,
    kick: File,
    dom0: Dom0Wire,
    dom0_socket: PathBuf,
    domid: u32,
    control: Arc<Control>,
}

impl Link {
    fn run(mut self, listener: &UnixListener) {
        while !self.control.stop.load(Ordering::SeqCst) {
            if self.control.paused.load(Ordering::SeqCst) {
                std::thread::sleep(TICK);
                continue;
            }
            match listener.accept() {
                Ok((client, _)) => {
                    if self.control.served.fetch_add(1, Ordering::SeqCst) > 0 && !self.introduce() {
                        continue; // xenstored is gone: drop the client
                    }
                    // A failing client only ends its own connection.
                    let mut next = Some(client);
                    while let Some(client) = next.take() {
                        self.control.stalled.store(false, Ordering::SeqCst);
                        next = self.serve(client, listener).unwrap_or(None);
                        if next.is_some() {
                            self.control.served.fetch_add(1, Ordering::SeqCst);
                            if !self.introduce() {
                                next = None;
                            }
                        }
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(TICK),
                Err(_) => std::thread::sleep(TICK),
            }
        }
    }

    /// Introduce the domain again (a clean start for the new client), on
    /// a new dom0 connection if xenstored was restarted.
    fn introduce(&mut self) -> bool {
        if self.dom0.introduce(self.domid).is_ok() {
            return true;
        }
        match Dom0Wire::connect(&self.dom0_socket) {
            Ok(dom0) => {
                // A new xenstored: the ring starts from nothing.
                self.ring.zero();
                self.dom0 = dom0;
                self.dom0.introduce(self.domid).is_ok()
            }
            Err(_) => false,
        }
    }

    /// Copy bytes both ways until the client leaves or is dropped; while
    /// stalled, until a new client arrives (returned, to be served next).
    fn serve(&mut self, mut client: UnixStream, listener: &UnixListener) -> io::Result<Option<UnixStream>> {
        client.set_nonblocking(true)?;
        let drops = self.control.drops.load(Ordering::SeqCst);
        let (mut to_ring, mut to_client) = (Vec::new(), Vec::new());
        let mut chunk = vec![0u8; 64 * 1024];
        // Message boundaries both ways: a dropped client's last message is
        // completed and its replies swallowed, as the kernel's xenbus
        // device does for a closed file, so that the next client starts
        // on a clean stream.
        let (mut requests, mut replies) = (Framer::default(), Framer::default());
        loop {
            if self.control.stop.load(Ordering::SeqCst) || self.control.paused.load(Ordering::SeqCst) {
                return Ok(None);
            }
            if self.control.drops.load(Ordering::SeqCst) != drops {
                self.finish_session(&mut client, &mut to_ring, &mut requests, &mut replies);
                return Ok(None);
            }
            if self.control.stalled.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((next, _)) => return Ok(Some(next)),
                    Err(_) => std::thread::sleep(TICK),
                }
                continue;
            }
            self.wait(&client, !to_client.is_empty())?;
            drain(&mut self.notify);
            match client.read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(count) => to_ring.extend_from_slice(&chunk[..count]),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
            let pushed = self.ring.push_requests(&to_ring);
            requests.advance(&to_ring[..pushed]);
            to_ring.drain(..pushed);
            // Kick while requests wait in the ring, not only when adding
            // them: xenstored can miss a wake-up.
            if self.ring.requests_waiting() {
                self.kick();
            }
            let before = to_client.len();
            if self.ring.pop_responses(&mut to_client) > 0 {
                replies.advance(&to_client[before..]);
                self.kick(); // xenstored may be waiting for room
            }
            match client.write(&to_client) {
                Ok(written) => {
                    to_client.drain(..written);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// End a session at a message boundary: push the rest of the message
    /// being written (reading it from the client if need be), then wait
    /// (at most 2 s) for the replies still due and throw them away.
    fn finish_session(
        &mut self,
        client: &mut UnixStream,
        to_ring: &mut Vec<u8>,
        requests: &mut Framer,
        replies: &mut Framer,
    ) {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let mut chunk = vec![0u8; 4096];
        let mut discarded = Vec::new();
        while std::time::Instant::now() < deadline {
            if !requests.at_boundary() {
                let end = requests.bytes_to_boundary(to_ring).unwrap_or(to_ring.len());
                let pushed = self.ring.push_requests(&to_ring[..end]);
                requests.advance(&to_ring[..pushed]);
                to_ring.drain(..pushed);
                if to_ring.is_empty()
                    && let Ok(count) = client.read(&mut chunk)
                {
                    // The rest of the message is still on its way.
                    to_ring.extend_from_slice(&chunk[..count]);
                }
            } else if replies.at_boundary() && replies.replies() >= requests.messages {
                return;
            }
            if self.ring.requests_waiting() {
                self.kick();
            }
            discarded.clear();
            if self.ring.pop_responses(&mut discarded) > 0 {
                replies.advance(&discarded);
                self.kick();
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Sleep until the client or xenstored has something, or a tick passes.
    fn wait(&self, client: &UnixStream, want_write: bool) -> io::Result<()> {
        let mut client_events = PollFlags::IN;
        if want_write {
            client_events |= PollFlags::OUT;
        }
        let mut fds = [
            PollFd::new(client, client_events),
            PollFd::new(&self.notify, PollFlags::IN),
        ];
        let timeout = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: TICK.as_nanos() as i64,
        };
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    fn kick(&mut self) {
        // A full FIFO already holds a pending wake-up.
        let _ = self.kick.write(b"!");
    }
}

fn drain(fifo: &mut File) {
    let mut sink = [0u8; 256];
    while matches!(fifo.read(&mut sink), Ok(count) if count > 0) {}
}

/// A FIFO, created if missing, opened read-write (so that it never reads as
/// end-of-file when xenstored has it closed) and non-blocking.
fn open_fifo(path: &Path) -> io::Result<File> {
    match rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    ) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(error) => return Err(error.into()),
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
}

/// Where the message boundaries of a byte stream lie.
#[derive(Debug, Clone, Default)]
struct Framer {
    header: Vec<u8>,
    payload_left: usize,
    /// Complete messages.
    messages: u64,
    /// Watch events among them (not replies to anything).
    events: u64,
}

impl Framer {
    const HEADER: usize = 16;
    const WATCH_EVENT: u32 = 15;

    fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let count = self.payload_left.min(bytes.len());
                self.payload_left -= count;
                bytes = &bytes[count..];
                if self.payload_left == 0 {
                    self.messages += 1;
                }
                continue;
            }
            let count = (Self::HEADER - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..count]);
            bytes = &bytes[count..];
            if self.header.len() == Self::HEADER {
                let word = |index: usize| {
                    u32::from_le_bytes([
                        self.header[index],
                        self.header[index + 1],
                        self.header[index + 2],
                        self.header[index + 3],
                    ])
                };
                if word(0) == Self::WATCH_EVENT {
                    self.events += 1;
                }
                self.payload_left = word(12) as usize;
                self.header.clear();
                if self.payload_left == 0 {
                    self.messages += 1;
                }
            }
        }
    }

    fn at_boundary(&self) -> bool {
        self.header.is_empty() && self.payload_left == 0
    }

    /// Messages that were replies.
    fn replies(&self) -> u64 {
        self.messages.saturating_sub(self.events)
    }

    /// How many bytes of `data` end the message under way, if they do.
    fn bytes_to_boundary(&self, data: &[u8]) -> Option<usize> {
        let mut ahead = self.clone();
        for (index, byte) in data.iter().enumerate() {
            ahead.advance(std::slice::from_ref(byte));
            if ahead.at_boundary() {
                return Some(index + 1);
            }
        }
        None
    }
}

/// The shared ring page.
struct Ring {
    page: NonNull<u8>,
}

// SAFETY: the mapping is owned by the bridge thread alone; xenstored, the
// other party, synchronises through the ring's indexes.
unsafe impl Send for Ring {}

impl Ring {
    fn map(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        file.set_len(PAGE as u64)?;
        // SAFETY: a fresh shared mapping of a file we just sized to one
        // page; nothing else in this process maps it.
        let page = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                PAGE,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::SHARED,
                file.as_fd(),
                0,
            )?
        };
        NonNull::new(page.cast::<u8>())
            .map(|page| Self { page })
            .ok_or_else(|| io::Error::other("mmap returned null"))
    }

    fn index(&self, offset: usize) -> &AtomicU32 {
        debug_assert!(offset.is_multiple_of(4) && offset + 4 <= PAGE);
        // SAFETY: offset is 4-aligned inside the page (page-aligned), and the
        // indexes are only ever accessed atomically.
        unsafe { &*self.page.as_ptr().add(offset).cast::<AtomicU32>() }
    }

    fn zero(&self) {
        // SAFETY: the page is PAGE bytes, mapped writable.
        unsafe { std::ptr::write_bytes(self.page.as_ptr(), 0, PAGE) };
    }

    fn requests_waiting(&self) -> bool {
        self.index(REQ_CONS).load(Ordering::Acquire) != self.index(REQ_PROD).load(Ordering::Acquire)
    }

    /// Copy as much of `data` as fits into the request ring.
    fn push_requests(&self, data: &[u8]) -> usize {
        let consumed = self.index(REQ_CONS).load(Ordering::Acquire);
        let produced = self.index(REQ_PROD).load(Ordering::Relaxed);
        let used = produced.wrapping_sub(consumed);
        if used > RING {
            return 0; // indexes being reset by xenstored
        }
        let count = data.len().min((RING - used) as usize);
        for (offset, &byte) in data[..count].iter().enumerate() {
            let slot = (produced.wrapping_add(offset as u32) % RING) as usize;
            // SAFETY: the slot lies in the request ring, inside the page.
            unsafe { std::ptr::write_volatile(self.page.as_ptr().add(REQUESTS + slot), byte) };
        }
        // The bytes must be visible before xenstored sees the new index.
        self.index(REQ_PROD)
            .store(produced.wrapping_add(count as u32), Ordering::Release);
        count
    }

    /// Move every response byte into `out`; returns how many.
    fn pop_responses(&self, out: &mut Vec<u8>) -> usize {
        let produced = self.index(RSP_PROD).load(Ordering::Acquire);
        let consumed = self.index(RSP_CONS).load(Ordering::Relaxed);
        let available = produced.wrapping_sub(consumed);
        if available == 0 || available > RING {
            return 0;
        }
        for offset in 0..available {
            let slot = (consumed.wrapping_add(offset) % RING) as usize;
            // SAFETY: the slot lies in the response ring, inside the page.
            out.push(unsafe { std::ptr::read_volatile(self.page.as_ptr().add(RESPONSES + slot)) });
        }
        self.index(RSP_CONS).store(produced, Ordering::Release);
        available as usize
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmapping the page mapped in `map`, used by nobody else.
        let _ = unsafe { rustix::mm::munmap(self.page.as_ptr().cast(), PAGE) };
    }
}
