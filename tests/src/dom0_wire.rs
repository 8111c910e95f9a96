//! A tiny blocking dom0 client on xenstored's socket, for the harness's own
//! set-up (the toolstack's layout of a guest domain, `INTRODUCE`). It reuses
//! the agent's wire codec; tests of the agent's client use the agent's
//! client.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use guestward::xenstore::wire::{self, Incoming, MsgType};

pub(crate) struct Dom0Wire {
    stream: UnixStream,
    next_id: u32,
}

impl Dom0Wire {
    pub(crate) fn connect(socket: &Path) -> io::Result<Self> {
        let stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Self { stream, next_id: 1 })
    }

    /// Send one request and wait for its reply (watch events are skipped).
    pub(crate) fn call(&mut self, msg_type: MsgType, payload: &[u8]) -> io::Result<Vec<u8>> {
        let req_id = self.next_id;
        self.next_id += 1;
        let frame = wire::encode(msg_type, req_id, 0, payload).map_err(io::Error::other)?;
        self.stream.write_all(&frame)?;
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            while let Some((frame, used)) = wire::decode(&buffer).map_err(io::Error::other)? {
                buffer.drain(..used);
                match wire::classify(frame).map_err(io::Error::other)? {
                    Incoming::Reply { req_id: id, result } if id == req_id => {
                        return result.map_err(|errno| io::Error::other(format!("{msg_type:?}: {errno}")));
                    }
                    _ => {}
                }
            }
            let read = self.stream.read(&mut chunk)?;
            if read == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "xenstored closed the connection",
                ));
            }
            buffer.extend_from_slice(&chunk[..read]);
        }
    }

    pub(crate) fn write(&mut self, path: &str, value: &[u8]) -> io::Result<()> {
        let mut payload = wire::join_strings([path]);
        payload.extend_from_slice(value);
        self.call(MsgType::Write, &payload).map(drop)
    }

    pub(crate) fn mkdir(&mut self, path: &str) -> io::Result<()> {
        self.call(MsgType::Mkdir, &wire::join_strings([path])).map(drop)
    }

    pub(crate) fn read(&mut self, path: &str) -> io::Result<Vec<u8>> {
        self.call(MsgType::Read, &wire::join_strings([path]))
    }

    pub(crate) fn set_perms(&mut self, path: &str, perms: &[&str]) -> io::Result<()> {
        let payload = wire::join_strings(std::iter::once(path).chain(perms.iter().copied()));
        self.call(MsgType::SetPerms, &payload).map(drop)
    }

    /// Tell xenstored that domain `domid` exists (ring: its ring file;
    /// event channel port 1). Again for a domain already known, it resets
    /// the domain's connection: watches and transactions are dropped.
    pub(crate) fn introduce(&mut self, domid: u32) -> io::Result<()> {
        let domid = domid.to_string();
        self.call(MsgType::Introduce, &wire::join_strings([domid.as_str(), "0", "1"]))
            .map(drop)
    }
}
