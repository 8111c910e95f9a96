//! One call: a fresh Store with the component's grants and limits, the
//! export called under a deadline, the reply checked, the failure put in
//! words, and the audit record written.

use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use super::limits::CallLimiter;
use super::{CallContext, EPOCH_TICK, LoadedComponent, Runtime};
use crate::capability::{CallInfo, Grants, Refusals};
use crate::policy::Limits;
use crate::protocol::Reply;

/// Bytes of a component's stdout and of its stderr kept per call (stderr
/// holds panic messages; both are logged at debug level for authors).
const OUTPUT_CAPTURE: usize = 8 << 10;

/// How a call ended, as the audit record and the warning name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// The component replied (any return code) within its limits.
    Replied,
    /// Stopped at its deadline.
    Deadline,
    /// Stopped at its memory limit.
    Memory,
    /// Overflowed its stack.
    Stack,
    /// A Rust panic.
    Panic,
    /// Any other trap.
    Crashed,
    /// Called `exit` instead of replying.
    Exited,
    /// The reply was over the reply-size limit.
    ReplyTooLarge,
    /// The reply's return code was not a plain code.
    InvalidCode,
    /// Failed otherwise (a host error, shutdown).
    Failed,
}

impl Outcome {
    /// The name in the audit record.
    pub fn name(self) -> &'static str {
        match self {
            Self::Replied => "replied",
            Self::Deadline => "deadline",
            Self::Memory => "memory",
            Self::Stack => "stack",
            Self::Panic => "panic",
            Self::Crashed => "crashed",
            Self::Exited => "exited",
            Self::ReplyTooLarge => "reply-too-large",
            Self::InvalidCode => "invalid-code",
            Self::Failed => "failed",
        }
    }
}

/// One call's reply and how it ended.
#[derive(Debug, Clone)]
pub struct CallReport {
    pub reply: Reply,
    pub outcome: Outcome,
    /// The interfaces that refused the call something not granted.
    pub refused: Vec<&'static str>,
}

impl CallReport {
    /// A warning for what an operator should look at: a limit hit, a
    /// panic, a crash, a refused grant.
    fn warn(&self, component: &LoadedComponent, command: &str, request_id: &str) {
        if self.outcome != Outcome::Replied {
            tracing::warn!(
                request = request_id,
                command,
                component = component.name,
                outcome = self.outcome.name(),
                "{}",
                self.reply.message
            );
        }
        if !self.refused.is_empty() {
            tracing::warn!(
                request = request_id,
                command,
                component = component.name,
                refused = self.refused.join(","),
                "the call was refused something its policy entry does not grant"
            );
        }
    }
}

impl Runtime {
    /// Run one request in a fresh sandbox.
    pub async fn call(&self, component: &LoadedComponent, command: &str, value: &str, request_id: &str) -> Reply {
        self.call_reported(component, command, value, request_id).await.reply
    }

    /// Run one request in a fresh sandbox, and say how it ended.
    pub async fn call_reported(
        &self,
        component: &LoadedComponent,
        command: &str,
        value: &str,
        request_id: &str,
    ) -> CallReport {
        let Ok(_permit) = self.permits.acquire().await else {
            return CallReport {
                reply: Reply::error("the agent is shutting down"),
                outcome: Outcome::Failed,
                refused: Vec::new(),
            };
        };
        let started = Instant::now();
        let refusals = Refusals::default();
        let mut store = self.new_store(component, &component.grants, command, request_id, &refusals);
        // The epoch deadline stops a component that computes; this timeout
        // also stops one blocked in a host call.
        let ended = tokio::time::timeout(component.limits.deadline + EPOCH_TICK * 10, async {
            let instance = component.pre.instantiate_async(&mut store).await?;
            instance.call_handle(&mut store, command, value).await
        })
        .await;
        let (outcome, reply) = match ended {
            Ok(Ok(reply)) => checked_reply(command, reply, &component.limits),
            Ok(Err(error)) => {
                let (outcome, text) = failure(&error, store.data(), &component.limits);
                (outcome, Reply::error(format!("command '{command}' {text}")))
            }
            Err(_) => (
                Outcome::Deadline,
                Reply::error(format!("command '{command}' {}", deadline_text(&component.limits))),
            ),
        };
        if outcome != Outcome::Replied {
            // Filesystems frozen by a call that failed are thawed before
            // anything answers: nobody may be left waiting on them.
            let freeze = &store.data().capabilities.freeze;
            self.capabilities
                .freeze
                .thaw_after_failure(freeze, outcome.name())
                .await;
        }
        let report = CallReport {
            reply,
            outcome,
            refused: refusals.list(),
        };
        log_output(component, command, request_id, store.data());
        report.warn(component, command, request_id);
        audit(component, command, request_id, &store, started, &report);
        report
    }

    /// A Store for one call of `component` with `grants` (none while
    /// loading).
    pub(super) fn new_store(
        &self,
        component: &LoadedComponent,
        grants: &Grants,
        command: &str,
        request_id: &str,
        refusals: &Refusals,
    ) -> Store<CallContext> {
        let deadline = Instant::now() + component.limits.deadline;
        let call = CallInfo {
            component: &component.name,
            command,
            request_id,
            limits: &component.limits,
            deadline,
            refusals,
        };
        let stdout = MemoryOutputPipe::new(OUTPUT_CAPTURE);
        let stderr = MemoryOutputPipe::new(OUTPUT_CAPTURE);
        let context = CallContext {
            // Default WASI: no environment, no arguments, no preopened
            // directories, no network.
            wasi: WasiCtxBuilder::new()
                .stdout(stdout.clone())
                .stderr(stderr.clone())
                .build(),
            table: ResourceTable::new(),
            limiter: CallLimiter::new(component.limits.memory),
            deadline_passed: false,
            stdout,
            stderr,
            capabilities: self.capabilities.call_states(grants, &call),
            _ticking: self.ticker.call_started(),
        };
        let mut store = Store::new(&self.engine, context);
        store.limiter(|context| &mut context.limiter);
        store.epoch_deadline_callback(move |mut context| {
            if Instant::now() >= deadline {
                context.data_mut().deadline_passed = true;
                Ok(UpdateDeadline::Interrupt)
            } else {
                // Let other calls run, then check again next tick.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        store
    }
}

/// The audit record of one call: who ran what, with which interfaces, for
/// how long, how it ended and what was refused. Never a value: those may
/// be secrets.
fn audit(
    component: &LoadedComponent,
    command: &str,
    request_id: &str,
    store: &Store<CallContext>,
    started: Instant,
    report: &CallReport,
) {
    tracing::info!(
        target: AUDIT_TARGET,
        request = request_id,
        command,
        component = component.name,
        sha256 = component.sha256,
        capabilities = store.data().capabilities.used().join(","),
        elapsed_us = started.elapsed().as_micros() as u64,
        code = report.reply.code,
        outcome = report.outcome.name(),
        refused = report.refused.join(","),
        "call"
    );
}

/// What the component wrote to stdout and stderr, for its author: at debug
/// level, one line each, control characters escaped.
fn log_output(component: &LoadedComponent, command: &str, request_id: &str, context: &CallContext) {
    // (No `tracing::enabled!` shortcut here: with per-layer filters, an
    // `enabled!` not followed by its event leaves filter state behind that
    // silenced the next audit record.)
    for (stream, pipe) in [("stdout", &context.stdout), ("stderr", &context.stderr)] {
        let contents = pipe.contents();
        if contents.is_empty() {
            continue;
        }
        for line in String::from_utf8_lossy(&contents).lines() {
            tracing::debug!(
                target: OUTPUT_TARGET,
                request = request_id,
                command,
                component = component.name,
                stream,
                "{}",
                line.escape_debug()
            );
        }
    }
}

/// The tracing target of components' stdout and stderr lines.
pub const OUTPUT_TARGET: &str = "guestward::component";

/// The tracing target of audit records (`--audit-log` writes them to a file).
pub const AUDIT_TARGET: &str = "guestward::audit";

/// Enforce the reply-size cap and sane return codes.
fn checked_reply(command: &str, reply: crate::wit::types::Reply, limits: &Limits) -> (Outcome, Reply) {
    let size = reply.code.len() + reply.message.len();
    if size > limits.reply_bytes {
        let text = format!(
            "command '{command}' replied with {size} bytes, over its limit of {} bytes",
            limits.reply_bytes
        );
        return (Outcome::ReplyTooLarge, Reply::error(text));
    }
    let code_ok =
        !reply.code.is_empty() && reply.code.len() <= 16 && reply.code.bytes().all(|b| b.is_ascii_alphanumeric());
    if !code_ok {
        let text = format!("command '{command}' returned an invalid return code {:?}", reply.code);
        return (Outcome::InvalidCode, Reply::error(text));
    }
    (Outcome::Replied, Reply::new(reply.code, reply.message))
}

fn deadline_text(limits: &Limits) -> String {
    format!(
        "did not finish within its deadline of {} ms",
        limits.deadline.as_millis()
    )
}

/// Why a call failed, in words for the reply.
pub(super) fn failure_text(error: &wasmtime::Error, context: &CallContext, limits: &Limits) -> String {
    failure(error, context, limits).1
}

/// How a call failed, and why in words for the reply.
fn failure(error: &wasmtime::Error, context: &CallContext, limits: &Limits) -> (Outcome, String) {
    if context.deadline_passed {
        return (Outcome::Deadline, deadline_text(limits));
    }
    if context.limiter.memory_refused() {
        return (
            Outcome::Memory,
            format!("exceeded its memory limit of {} MiB", limits.memory >> 20),
        );
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return (
            Outcome::Exited,
            format!("exited with status {} instead of replying", exit.0),
        );
    }
    let panic = panic_message(&context.stderr.contents());
    match (error.downcast_ref::<Trap>(), panic) {
        (_, Some(message)) => (Outcome::Panic, format!("panicked: {message}")),
        (Some(Trap::StackOverflow), None) => (Outcome::Stack, "overflowed its stack".to_owned()),
        (Some(trap), None) => (Outcome::Crashed, format!("crashed: {trap}")),
        (None, None) => (Outcome::Failed, format!("failed: {}", error.root_cause())),
    }
}

/// The message of a Rust panic in captured stderr (`panicked at src/x.rs:1:2:\nmessage`).
fn panic_message(stderr: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stderr);
    let after = text.split_once("panicked at ")?.1;
    let message: Vec<&str> = after
        .lines()
        .skip(1)
        .take_while(|line| !line.starts_with("note: "))
        .collect();
    let message = message.join(" ");
    let message = message.trim();
    if message.is_empty() {
        return None;
    }
    Some(message.chars().take(512).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_found_in_stderr() {
        let stderr =
            b"\nthread '<unnamed>' panicked at src/lib.rs:12:9:\nboom: it broke\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(panic_message(stderr).as_deref(), Some("boom: it broke"));
        assert_eq!(panic_message(b"nothing to see"), None);
    }
}
