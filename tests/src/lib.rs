//! The test harness: real components standing in for a hypervisor host.
//!
//! * [`xenstored`]: Debian's real C `xenstored`, run on a unix socket with a
//!   small `LD_PRELOAD` shim standing in for the hypervisor calls.
//! * [`bridge`]: a guest ring bridge, so that a client connected to its
//!   socket talks to xenstored *as guest domain N*, as the agent does
//!   through `/dev/xen/xenbus` in a real guest.

pub mod bridge;
pub mod xenstored;

pub use bridge::GuestBridge;
pub use xenstored::Xenstored;
