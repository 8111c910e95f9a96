//! How requests arrive and answers leave. Each exchange owns its protocol:
//! it parses what arrives into a [`Request`], submits it to the
//! [`Dispatcher`], and encodes the reply (or the dispatcher's refusal) in
//! its protocol's words. A new protocol is a new exchange and a protocol
//! module; the dispatcher does not change.
//!
//! * [`xenstore`]: the Nova XenAPI agent exchange, `data/host/<id>` in,
//!   `data/guest/<id>` out.
//! * [`socket`]: a local unix socket (root only) for administration and
//!   development (`guestward call`), speaking the same Nova protocol.
//! * [`qga`]: the QEMU guest agent protocol, on the virtio-serial port of
//!   KVM clouds and on a unix socket.

mod listener;
pub mod qga;
pub mod socket;
pub mod xenstore;

pub use listener::LocalListener;

use tokio::sync::oneshot;

use crate::dispatch::{Dispatcher, Refusal};
use crate::protocol::{Protocol, Reply, Request, nova};

/// A Nova request handed to the dispatcher: answered at once (malformed,
/// unknown, refused), or later.
pub enum Pending {
    Now(Reply),
    Later(oneshot::Receiver<Reply>),
}

impl Pending {
    /// The reply; `None` when the request was dropped unanswered (shutdown).
    pub async fn reply(self) -> Option<Reply> {
        match self {
            Self::Now(reply) => Some(reply),
            Self::Later(receiver) => receiver.await.ok(),
        }
    }
}

/// While the host has filesystems frozen (QGA's guest-fsfreeze-freeze), a
/// Nova command whose grants could write to them is refused: its first
/// write would wait for the thaw past its deadline, and then complete
/// after its answer said it failed. A component's grants decide, for all
/// its commands: `version` and `features` still run, `keyinit` (with
/// `password`, which writes /etc/shadow) does not.
fn refused_while_frozen(dispatcher: &Dispatcher, name: &str, request_id: &str) -> Option<Reply> {
    if !dispatcher.capabilities().freeze.frozen_flag().is_frozen() {
        return None;
    }
    let writes = dispatcher
        .registry()
        .route(name)
        .is_some_and(|component| component.grants.writes_files());
    writes.then(|| {
        tracing::info!(request = request_id, command = name, "refused a command that could write while the filesystems are frozen");
        Reply::error(format!(
            "the filesystems are frozen for a snapshot: '{name}' could write to them and is refused until the host thaws them"
        ))
    })
}

/// Parse one Nova request and submit it.
pub fn submit_nova(dispatcher: &Dispatcher, raw: &[u8], request_id: &str) -> Pending {
    let request: Request = match nova::parse(raw) {
        Ok(request) => request,
        Err(error) => {
            tracing::info!(
                request = request_id,
                code = error.code,
                "invalid request: {}",
                error.message
            );
            return Pending::Now(error);
        }
    };
    if Protocol::of(&request.name).0 != Protocol::Nova {
        // Another protocol's command (`qga:…`): not reachable from here.
        return Pending::Now(nova::unknown_command(&request.name));
    }
    if let Some(refusal) = refused_while_frozen(dispatcher, &request.name, request_id) {
        return Pending::Now(refusal);
    }
    match dispatcher.submit(request, request_id) {
        Ok(receiver) => Pending::Later(receiver),
        Err(Refusal::UnknownCommand(name)) => Pending::Now(nova::unknown_command(&name)),
        Err(refusal @ Refusal::Busy(_)) => Pending::Now(Reply::error(refusal.to_string())),
    }
}
