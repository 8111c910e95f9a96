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
    match dispatcher.submit(request, request_id) {
        Ok(receiver) => Pending::Later(receiver),
        Err(Refusal::UnknownCommand(name)) => Pending::Now(nova::unknown_command(&name)),
        Err(refusal @ Refusal::Busy(_)) => Pending::Now(Reply::error(refusal.to_string())),
    }
}
