//! The host side of the QEMU guest agent protocol, as libvirt speaks it:
//! a client for an agent's QGA unix socket (guestward's or qemu-ga's).
//! Raw bytes in, answer lines out, so that tests can check them byte for
//! byte; [`QgaClient::execute`] for the common case.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long a test waits for one answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// One connection to an agent's QGA socket.
#[derive(Debug)]
pub struct QgaClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl QgaClient {
    pub fn connect(socket: &Path) -> std::io::Result<Self> {
        let stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        Ok(Self {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
        })
    }

    /// Write bytes as they are.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// The next answer line, newline included (a 0xFF before it, as
    /// `guest-sync-delimited` sends, is kept).
    pub fn answer(&mut self) -> std::io::Result<Vec<u8>> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line)?;
        if line.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the agent closed the connection",
            ));
        }
        Ok(line)
    }

    /// The next answer line as text (lossy: a 0xFF shows as U+FFFD).
    pub fn answer_text(&mut self) -> String {
        let line = self.answer().unwrap_or_else(|error| panic!("no QGA answer: {error}"));
        String::from_utf8_lossy(&line).into_owned()
    }

    /// Send one request line and return its answer line.
    pub fn request(&mut self, line: &str) -> String {
        self.send(line.as_bytes())
            .and_then(|()| self.send(b"\n"))
            .unwrap_or_else(|error| panic!("cannot send {line}: {error}"));
        self.answer_text()
    }

    /// Run `command` with `arguments` (JSON text, `""` for none) and
    /// return the parsed answer object.
    pub fn execute(&mut self, command: &str, arguments: &str) -> serde_json::Value {
        let line = if arguments.is_empty() {
            format!(r#"{{"execute":"{command}"}}"#)
        } else {
            format!(r#"{{"execute":"{command}","arguments":{arguments}}}"#)
        };
        let answer = self.request(&line);
        serde_json::from_str(&answer).unwrap_or_else(|error| panic!("{command} answered {answer:?}: {error}"))
    }

    /// True when nothing arrives within `wait` (for commands that answer
    /// nothing).
    pub fn is_silent_for(&mut self, wait: Duration) -> bool {
        let stream = self.reader.get_ref();
        let _ = stream.set_read_timeout(Some(wait));
        let mut byte = [0u8; 1];
        let silent = !self.reader.buffer().is_empty() || matches!(self.reader.read(&mut byte), Ok(1));
        let _ = self.reader.get_ref().set_read_timeout(Some(ANSWER_TIMEOUT));
        !silent
    }
}
