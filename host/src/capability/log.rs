//! `log`: structured log lines from components. Always granted.
//!
//! Each line is tagged with the component, command and request, stripped of
//! control characters, truncated, and counted against the call's
//! `log-lines` limit; lines over the limit are dropped and their number is
//! logged when the call ends.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use super::{CallInfo, Capability, Services};
use crate::policy::ComponentPolicy;
use crate::runtime::CallContext;
use crate::runtime::bindings::guestward::command::log::{self as wit, Level};

/// Longest line kept, in characters.
const MAX_LINE: usize = 1024;

pub struct Log;

/// The `log` grant: always given.
#[derive(Debug)]
pub struct LogGrant;

/// One call's logger.
#[derive(Debug)]
pub struct CallLog {
    component: String,
    command: String,
    request_id: String,
    remaining: u32,
    dropped: u32,
    used: bool,
}

impl Capability for Log {
    const INTERFACE: &'static str = "guestward:command/log";
    type Grant = LogGrant;
    type CallState = CallLog;

    fn add_to_linker(linker: &mut Linker<CallContext>) -> wasmtime::Result<()> {
        wit::add_to_linker::<_, HasSelf<CallLog>>(linker, |context| &mut context.capabilities.log)
    }

    fn grant(_policy: &ComponentPolicy) -> Option<LogGrant> {
        Some(LogGrant)
    }

    fn call_state(_grant: Option<&Arc<LogGrant>>, _services: &Services, call: &CallInfo<'_>) -> CallLog {
        CallLog {
            component: call.component.to_owned(),
            command: call.command.to_owned(),
            request_id: call.request_id.to_owned(),
            remaining: call.limits.log_lines,
            dropped: 0,
            used: false,
        }
    }

    fn used(state: &CallLog) -> bool {
        state.used
    }
}

impl wit::Host for CallLog {
    fn log(&mut self, level: Level, message: String) {
        self.used = true;
        if self.remaining == 0 {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        self.remaining -= 1;
        let message = sanitize(&message);
        let (component, command, request) = (&self.component, &self.command, &self.request_id);
        match level {
            Level::Trace => {
                tracing::trace!(target: "guestward::command", component, command, request, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "guestward::command", component, command, request, "{message}")
            }
            Level::Info => {
                tracing::info!(target: "guestward::command", component, command, request, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "guestward::command", component, command, request, "{message}")
            }
            Level::Error => {
                tracing::error!(target: "guestward::command", component, command, request, "{message}")
            }
        }
    }
}

impl Drop for CallLog {
    fn drop(&mut self) {
        if self.dropped > 0 {
            tracing::warn!(
                component = self.component,
                command = self.command,
                request = self.request_id,
                dropped = self.dropped,
                "log lines over the call's limit were dropped"
            );
        }
    }
}

/// One line, printable: control characters escaped, at most [`MAX_LINE`]
/// characters.
fn sanitize(message: &str) -> String {
    let mut line = String::with_capacity(message.len().min(MAX_LINE + 3));
    for (count, ch) in message.chars().enumerate() {
        if count == MAX_LINE {
            line.push('…');
            break;
        }
        if ch.is_control() {
            line.extend(ch.escape_default());
        } else {
            line.push(ch);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn lines_are_single_and_bounded() {
        assert_eq!(sanitize("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
        assert_eq!(sanitize(&"x".repeat(5000)).chars().count(), 1025);
    }
}
