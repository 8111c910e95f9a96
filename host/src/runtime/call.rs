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
        let Ok(_permit) = self.permits.acquire().await else {
            return Reply::error("the agent is shutting down");
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
        let reply = match outcome {
            Ok(Ok(reply)) => checked_reply(command, reply, &component.limits),
            Ok(Err(error)) => Reply::error(format!(
                "command '{command}' {}",
                failure_text(&error, store.data(), &component.limits)
            )),
            Err(_) => Reply::error(format!("command '{command}' {}", deadline_text(&component.limits))),
        };
        audit(component, command, request_id, &store, started, &reply);
        reply
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

/// Enforce the reply-size cap and sane return codes.
fn checked_reply(command: &str, reply: crate::wit::types::Reply, limits: &Limits) -> Reply {
    let size = reply.code.len() + reply.message.len();
    if size > limits.reply_bytes {
        return Reply::error(format!(
            "command '{command}' replied with {size} bytes, over its limit of {} bytes",
            limits.reply_bytes
        ));
    }
    let code_ok =
        !reply.code.is_empty() && reply.code.len() <= 16 && reply.code.bytes().all(|b| b.is_ascii_alphanumeric());
    if !code_ok {
        return Reply::error(format!(
            "command '{command}' returned an invalid return code {:?}",
            reply.code
        ));
    }
    Reply::new(reply.code, reply.message)
}

fn deadline_text(limits: &Limits) -> String {
    format!(
        "did not finish within its deadline of {} ms",
        limits.deadline.as_millis()
    )
}

/// Why a call failed, in words for the reply.
pub(super) fn failure_text(error: &wasmtime::Error, context: &CallContext, limits: &Limits) -> String {
    if context.deadline_passed {
        return deadline_text(limits);
    }
    if context.limiter.memory_refused() {
        return format!("exceeded its memory limit of {} MiB", limits.memory >> 20);
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return format!("exited with status {} instead of replying", exit.0);
    }
    let panic = panic_message(&context.stderr.contents());
    match (error.downcast_ref::<Trap>(), panic) {
        (_, Some(message)) => format!("panicked: {message}"),
        (Some(Trap::StackOverflow), None) => "overflowed its stack".to_owned(),
        (Some(trap), None) => format!("crashed: {trap}"),
        (None, None) => format!("failed: {}", error.root_cause()),
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
