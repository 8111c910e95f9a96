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
use crate::capability::{CallInfo, Grants};
use crate::policy::Limits;
use crate::protocol::Reply;

/// Bytes of a component's stderr kept per call (for panic messages).
const STDERR_CAPTURE: usize = 8 << 10;

impl Runtime {
    /// Run one request in a fresh sandbox.
    pub async fn call(&self, component: &LoadedComponent, command: &str, value: &str, request_id: &str) -> Reply {
        self.call_traced(component, command, value, request_id).await.reply
    }

    /// Run one request in a fresh sandbox, and say how the component
    /// misbehaved, if it did (`guestward fuzz` sorts its findings by it).
    pub async fn call_traced(
        &self,
        component: &LoadedComponent,
        command: &str,
        value: &str,
        request_id: &str,
    ) -> CallOutcome {
        let Ok(_permit) = self.permits.acquire().await else {
            return CallOutcome {
                reply: Reply::error("the agent is shutting down"),
                fault: None,
            };
        };
        let started = Instant::now();
        let mut store = self.new_store(component, &component.grants, command, request_id);
        // The epoch deadline stops a component that computes; this timeout
        // also stops one blocked in a host call.
        let outcome = tokio::time::timeout(component.limits.deadline + EPOCH_TICK * 10, async {
            let instance = component.pre.instantiate_async(&mut store).await?;
            instance.call_handle(&mut store, command, value).await
        })
        .await;
        let (reply, fault) = match outcome {
            Ok(Ok(reply)) => match checked_reply(command, reply, &component.limits) {
                Ok(reply) => (reply, None),
                Err((reply, fault)) => (reply, Some(fault)),
            },
            Ok(Err(error)) => {
                let (fault, text) = failure(&error, store.data(), &component.limits);
                (Reply::error(format!("command '{command}' {text}")), Some(fault))
            }
            Err(_) => (
                Reply::error(format!("command '{command}' {}", deadline_text(&component.limits))),
                Some(CallFault::Deadline),
            ),
        };
        audit(component, command, request_id, &store, started, &reply);
        CallOutcome { reply, fault }
    }

    /// A Store for one call of `component` with `grants` (none while
    /// loading).
    pub(super) fn new_store(
        &self,
        component: &LoadedComponent,
        grants: &Grants,
        command: &str,
        request_id: &str,
    ) -> Store<CallContext> {
        let deadline = Instant::now() + component.limits.deadline;
        let call = CallInfo {
            component: &component.name,
            command,
            request_id,
            limits: &component.limits,
            deadline,
        };
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
        let context = CallContext {
            // Default WASI: no environment, no arguments, no preopened
            // directories, no network.
            wasi: WasiCtxBuilder::new().stderr(stderr.clone()).build(),
            table: ResourceTable::new(),
            limiter: CallLimiter::new(component.limits.memory),
            deadline_passed: false,
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
/// how long, and how it ended. Never a value: those may be secrets.
fn audit(
    component: &LoadedComponent,
    command: &str,
    request_id: &str,
    store: &Store<CallContext>,
    started: Instant,
    reply: &Reply,
) {
    tracing::info!(
        target: AUDIT_TARGET,
        request = request_id,
        command,
        component = component.name,
        sha256 = component.sha256,
        capabilities = store.data().capabilities.used().join(","),
        elapsed_us = started.elapsed().as_micros() as u64,
        code = reply.code,
        "call"
    );
}

/// The tracing target of audit records (`--audit-log` writes them to a file).
pub const AUDIT_TARGET: &str = "guestward::audit";

/// What one call answered, and how the component misbehaved if it did.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    /// The reply the requester gets.
    pub reply: Reply,
    /// `None` when the component itself replied within its limits.
    pub fault: Option<CallFault>,
}

/// How a component misbehaved in a call (the reply says it in words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallFault {
    /// It ran past its deadline.
    Deadline,
    /// It asked for more memory than its limit.
    Memory,
    /// It overflowed its stack.
    Stack,
    /// A Rust panic (its message is in the reply).
    Panic,
    /// Any other trap (unreachable, out-of-bounds access, …).
    Trap,
    /// It called `exit` instead of replying.
    Exit,
    /// Its reply was over its size limit.
    OversizedReply,
    /// Its return code was not a protocol code.
    InvalidCode,
    /// The call failed in the host (an error of a host function).
    Host,
}

impl CallFault {
    /// A short name, for summaries and reproducer files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Deadline => "deadline",
            Self::Memory => "memory",
            Self::Stack => "stack",
            Self::Panic => "panic",
            Self::Trap => "trap",
            Self::Exit => "exit",
            Self::OversizedReply => "oversized-reply",
            Self::InvalidCode => "invalid-code",
            Self::Host => "host-error",
        }
    }
}

/// Enforce the reply-size cap and sane return codes.
fn checked_reply(command: &str, reply: crate::wit::types::Reply, limits: &Limits) -> Result<Reply, (Reply, CallFault)> {
    let size = reply.code.len() + reply.message.len();
    if size > limits.reply_bytes {
        let text = format!(
            "command '{command}' replied with {size} bytes, over its limit of {} bytes",
            limits.reply_bytes
        );
        return Err((Reply::error(text), CallFault::OversizedReply));
    }
    let code_ok =
        !reply.code.is_empty() && reply.code.len() <= 16 && reply.code.bytes().all(|b| b.is_ascii_alphanumeric());
    if !code_ok {
        let text = format!("command '{command}' returned an invalid return code {:?}", reply.code);
        return Err((Reply::error(text), CallFault::InvalidCode));
    }
    Ok(Reply::new(reply.code, reply.message))
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

/// How a call failed, and in words for the reply.
fn failure(error: &wasmtime::Error, context: &CallContext, limits: &Limits) -> (CallFault, String) {
    if context.deadline_passed {
        return (CallFault::Deadline, deadline_text(limits));
    }
    if context.limiter.memory_refused() {
        let text = format!("exceeded its memory limit of {} MiB", limits.memory >> 20);
        return (CallFault::Memory, text);
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return (
            CallFault::Exit,
            format!("exited with status {} instead of replying", exit.0),
        );
    }
    let panic = panic_message(&context.stderr.contents());
    match (error.downcast_ref::<Trap>(), panic) {
        (_, Some(message)) => (CallFault::Panic, format!("panicked: {message}")),
        (Some(Trap::StackOverflow), None) => (CallFault::Stack, "overflowed its stack".to_owned()),
        (Some(trap), None) => (CallFault::Trap, format!("crashed: {trap}")),
        (None, None) => (CallFault::Host, format!("failed: {}", error.root_cause())),
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
