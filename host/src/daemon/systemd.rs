//! The daemon's side of systemd's service protocol (`sd_notify(3)`), in
//! the few lines it needs rather than a libsystemd binding:
//!
//! * `NOTIFY_SOCKET` names a datagram socket, a path (`/run/systemd/notify`)
//!   or a name in Linux's abstract namespace (`@name`, a leading NUL byte on
//!   the wire); each datagram holds newline-separated `KEY=value`
//!   assignments (`READY=1`, `STATUS=…`, `STOPPING=1`, `WATCHDOG=1`).
//! * `WATCHDOG_USEC` asks for a `WATCHDOG=1` at least that often (we ping at
//!   half of it, as `sd_watchdog_enabled(3)` advises), unless
//!   `WATCHDOG_PID` names another process (the variables were inherited by
//!   a child that is not the service's main process).
//!
//! Without `NOTIFY_SOCKET` (not under systemd, or `Type=simple`) nothing
//! is sent; a socket that cannot be reached costs a debug line, never the
//! daemon.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// What is wrong with the environment systemd gave us.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("NOTIFY_SOCKET {0:?} is neither a path (/…) nor an abstract socket (@…)")]
    NotifyAddress(String),
    #[error("WATCHDOG_USEC {0:?} is not a positive number of microseconds")]
    WatchdogUsec(String),
}

/// Where systemd listens for our state.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    address: SocketAddr,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`; `None` when it is unset, empty or unusable
    /// (the last with a warning: a unit that expects notifications would
    /// time out, and the log says why).
    pub fn from_env() -> Option<Self> {
        let value = std::env::var_os("NOTIFY_SOCKET").filter(|value| !value.is_empty())?;
        let address = match notify_address(&value) {
            Ok(address) => address,
            Err(error) => {
                tracing::warn!(%error, "not notifying systemd");
                return None;
            }
        };
        match UnixDatagram::unbound() {
            Ok(socket) => Some(Self { socket, address }),
            Err(error) => {
                tracing::warn!(%error, "not notifying systemd: cannot open a datagram socket");
                None
            }
        }
    }

    /// Send one datagram of assignments, e.g. `["READY=1", &status_line(..)]`.
    pub fn send(&self, assignments: &[&str]) {
        let datagram = assignments.join("\n");
        if let Err(error) = self.socket.send_to_addr(datagram.as_bytes(), &self.address) {
            tracing::debug!(%error, "cannot notify systemd");
        }
    }
}

/// A `STATUS=` assignment. The text is one line: a line break inside it
/// (from an error message) would start another assignment, e.g. a forged
/// `READY=1`.
pub fn status_line(text: &str) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    format!("STATUS={flat}")
}

/// The address `NOTIFY_SOCKET` names.
fn notify_address(value: &OsStr) -> Result<SocketAddr, EnvError> {
    let bytes = value.as_bytes();
    let invalid = || EnvError::NotifyAddress(value.to_string_lossy().into_owned());
    match bytes.first() {
        Some(b'/') => SocketAddr::from_pathname(value).map_err(|_| invalid()),
        Some(b'@') if bytes.len() > 1 => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(&bytes[1..]).map_err(|_| invalid())
        }
        _ => Err(invalid()),
    }
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC`, or `None` when
/// no watchdog is asked of this process.
pub fn watchdog_interval_from_env() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    match watchdog_interval(usec.as_deref(), pid.as_deref(), std::process::id()) {
        Ok(interval) => interval,
        Err(error) => {
            tracing::warn!(%error, "no watchdog pings");
            None
        }
    }
}

fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, our_pid: u32) -> Result<Option<Duration>, EnvError> {
    let Some(usec) = usec else { return Ok(None) };
    // A WATCHDOG_PID that is not ours (or not a pid at all) means the
    // variables were meant for another process.
    if pid.is_some_and(|pid| pid.trim().parse::<u32>() != Ok(our_pid)) {
        return Ok(None);
    }
    match usec.trim().parse::<u64>() {
        Ok(usec) if usec > 0 => Ok(Some(Duration::from_micros(usec) / 2)),
        _ => Err(EnvError::WatchdogUsec(usec.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use std::os::linux::net::SocketAddrExt;

    use super::*;

    #[test]
    fn a_path_and_an_abstract_name_are_addresses() {
        let path = notify_address(OsStr::new("/run/systemd/notify")).unwrap();
        assert_eq!(path.as_pathname(), Some(std::path::Path::new("/run/systemd/notify")));
        let abstract_name = notify_address(OsStr::new("@guestward/notify")).unwrap();
        assert_eq!(abstract_name.as_abstract_name(), Some(&b"guestward/notify"[..]));
        assert_eq!(abstract_name.as_pathname(), None);
    }

    #[test]
    fn anything_else_is_refused_by_name() {
        for value in ["", "@", "relative/notify", "vsock:2:1234"] {
            let error = notify_address(OsStr::new(value)).unwrap_err();
            assert_eq!(error, EnvError::NotifyAddress(value.to_owned()));
        }
        let too_long = format!("/{}", "x".repeat(200));
        assert!(notify_address(OsStr::new(&too_long)).is_err());
    }

    #[test]
    fn status_text_cannot_start_another_assignment() {
        let line = status_line("xenstore reconnecting: closed\nREADY=1\r\0");
        assert_eq!(line, "STATUS=xenstore reconnecting: closed READY=1  ");
        assert_eq!(line.lines().count(), 1);
    }

    #[test]
    fn the_watchdog_is_pinged_at_half_its_timeout() {
        let interval = watchdog_interval(Some("400000"), None, 7).unwrap();
        assert_eq!(interval, Some(Duration::from_millis(200)));
        assert_eq!(
            watchdog_interval(Some("400000"), Some("7"), 7).unwrap(),
            Some(Duration::from_millis(200))
        );
    }

    #[test]
    fn a_watchdog_meant_for_another_process_is_not_pinged() {
        assert_eq!(watchdog_interval(Some("400000"), Some("8"), 7), Ok(None));
        assert_eq!(watchdog_interval(Some("400000"), Some("not a pid"), 7), Ok(None));
        assert_eq!(watchdog_interval(None, Some("7"), 7), Ok(None));
    }

    #[test]
    fn a_bad_watchdog_timeout_is_an_error_not_a_ping_storm() {
        for usec in ["0", "-5", "soon", ""] {
            assert_eq!(
                watchdog_interval(Some(usec), None, 7),
                Err(EnvError::WatchdogUsec(usec.to_owned()))
            );
        }
    }

    #[test]
    fn notifications_reach_an_abstract_socket() {
        let name = format!("guestward-notify-test-{}", std::process::id());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&address).unwrap();
        let notifier = Notifier {
            socket: UnixDatagram::unbound().unwrap(),
            address: notify_address(OsStr::new(&format!("@{name}"))).unwrap(),
        };
        notifier.send(&["READY=1", &status_line("serving")]);
        let mut buffer = [0u8; 128];
        let count = listener.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..count], b"READY=1\nSTATUS=serving");
    }
}
