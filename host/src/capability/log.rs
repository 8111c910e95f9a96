//! `log`: structured log lines from components. Always granted.
//!
//! Each line is tagged with the component, command and request, stripped of
//! control characters, truncated, and counted against the call's
//! `log-lines` limit; lines over the limit are dropped and their number is
//! logged when the call ends.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use super::{CallInfo, Capability, NoConfig};
use crate::policy::{PolicyError, SectionErrors};
use crate::wit::log::{self as wit, Level};

/// Longest line kept, in characters.
const MAX_LINE: usize = 1024;

/// The `log` capability: nothing to configure, always granted.
#[derive(Debug, Default)]
pub struct Log;

/// One call's logger.
#[derive(Debug)]
pub struct CallLog {
    component: String,
    command: String,
    request_id: String,
    remaining: u32,
    dropped: u32,
}

impl Capability for Log {
    const NAME: &'static str = "log";
    const POLICY_KEY: Option<&'static str> = None;
    const ALWAYS_GRANTED: bool = true;
    type Config = NoConfig;
    type Grant = ();
    type CallState = CallLog;

    fn grant(_config: NoConfig, _errors: &SectionErrors<'_>) -> Result<Option<()>, PolicyError> {
        Ok(Some(()))
    }

    fn describe(_grant: &()) -> Vec<String> {
        Vec::new()
    }

    fn call_state(&self, _grant: Option<&Arc<()>>, call: &CallInfo<'_>) -> CallLog {
        CallLog {
            component: call.component.to_owned(),
            command: call.command.to_owned(),
            request_id: call.request_id.to_owned(),
            remaining: call.limits.log_lines,
            dropped: 0,
        }
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut CallLog,
    ) -> wasmtime::Result<()> {
        wit::add_to_linker::<_, HasSelf<CallLog>>(linker, get)
    }
}

impl wit::Host for CallLog {
    fn log(&mut self, level: Level, message: String) {
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
