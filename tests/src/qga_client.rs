//! A client for a QEMU guest agent protocol socket (guestward's
//! `--qga-socket`, or qemu-ga's `-m unix-listen`), speaking as libvirt
//! does: one compact JSON request per line, one answer line back.
//!
//! Every answer is read before the connection closes: qemu-ga 7.2 exits
//! when a client leaves an answer unread.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long one answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// One connection.
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

    /// Send `line` and a newline, reading nothing (a command that
    /// answers nothing).
    pub fn send(&mut self, line: &str) {
        writeln!(self.writer, "{line}").unwrap_or_else(|error| panic!("cannot send {line}: {error}"));
    }

    /// Send `line` and a newline; the answer line, without its newline.
    pub fn request(&mut self, line: &str) -> String {
        self.send(line);
        let mut answer = Vec::new();
        self.reader
            .read_until(b'\n', &mut answer)
            .unwrap_or_else(|error| panic!("no answer to {line}: {error}"));
        assert!(answer.ends_with(b"\n"), "the agent closed the connection after {line}");
        answer.pop();
        String::from_utf8(answer).unwrap_or_else(|error| panic!("answer to {line} is not UTF-8: {error}"))
    }

    /// `{"execute": command, "arguments": arguments}` (no `arguments`
    /// member when `arguments` is `""`), its answer parsed.
    pub fn execute(&mut self, command: &str, arguments: &str) -> serde_json::Value {
        let line = if arguments.is_empty() {
            format!(r#"{{"execute":"{command}"}}"#)
        } else {
            format!(r#"{{"execute":"{command}","arguments":{arguments}}}"#)
        };
        let answer = self.request(&line);
        serde_json::from_str(&answer).unwrap_or_else(|error| panic!("{line} answered {answer:?}: {error}"))
    }

    /// True when no byte arrives within `wait` (a command without an
    /// answer); the connection's timeout is restored after.
    pub fn is_silent_for(&mut self, wait: Duration) -> bool {
        if !self.reader.buffer().is_empty() {
            return false;
        }
        let _ = self.reader.get_ref().set_read_timeout(Some(wait));
        let mut byte = [0u8; 1];
        let silent = self.reader.read(&mut byte).is_err();
        let _ = self.reader.get_ref().set_read_timeout(Some(ANSWER_TIMEOUT));
        silent
    }
}
