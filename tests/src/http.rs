//! A small HTTP/1.1 server on loopback for the download tests: each path
//! answers a fixed response, including misbehaving ones (a body cut short,
//! redirects). Like many real servers, it percent-decodes the request path
//! and resolves `.`/`..` segments (`\` counting as `/`) before looking it
//! up, so that `/granted/..%2fsecret` reaches `/secret`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// What a path answers.
#[derive(Debug, Clone)]
pub enum Response {
    /// 200 with this body.
    Body(Vec<u8>),
    /// This status, no body.
    Status(u16),
    /// 302 to this location.
    Redirect(String),
    /// 200 announcing `announced` bytes, sending only `body`, then closing.
    Truncated { body: Vec<u8>, announced: usize },
}

/// A running server; dropped, it stops.
pub struct HttpServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Serve `routes` (path → response) on an ephemeral loopback port.
    pub fn start(routes: HashMap<String, Response>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let port = listener.local_addr().expect("local address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = serve(stream, &routes);
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        Self {
            port,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(stream: TcpStream, routes: &HashMap<String, Response>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
    }
    let path = resolve(request_line.split_whitespace().nth(1).unwrap_or("/"));
    let mut stream = stream;
    match routes.get(&path).cloned().unwrap_or(Response::Status(404)) {
        Response::Body(body) => respond(&mut stream, 200, &[], &body, body.len()),
        Response::Status(status) => respond(&mut stream, status, &[], b"", 0),
        Response::Redirect(location) => respond(&mut stream, 302, &[("Location", &location)], b"", 0),
        Response::Truncated { body, announced } => respond(&mut stream, 200, &[], &body, announced),
    }
}

/// The path as a decoding server resolves it: percent-decoded, `\` as
/// `/`, `.` and `..` segments applied.
fn resolve(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = bytes
            .get(index + 1..index + 3)
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match (bytes[index], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                index += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    let text = String::from_utf8_lossy(&decoded).replace('\\', "/");
    let mut segments: Vec<&str> = Vec::new();
    for segment in text.split('/').filter(|segment| !segment.is_empty()) {
        match segment {
            "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    format!("/{}", segments.join("/"))
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
    length: usize,
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {length}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}
