//! The test harness: real components standing in for a hypervisor host.
//!
//! * [`xenstored`]: Debian's real C `xenstored`, run on a unix socket with a
//!   small `LD_PRELOAD` shim standing in for the hypervisor calls.
//! * [`bridge`]: a guest ring bridge, so that a client connected to its
//!   socket talks to xenstored *as guest domain N*, as the agent does
//!   through `/dev/xen/xenbus` in a real guest.
//! * [`agent`]: the agent under test, a real `guestward serve` process.
//! * [`nova`]: the hypervisor side, as Nova's dom0 plugin does it, with the
//!   real `xenstore-*` tools.
//! * [`hypervisor`]: dom0's view of requests and answers through our own
//!   XenStore client, counting every answer write.
//! * [`http`]: a loopback HTTP server for the download tests.
//! * [`netns`]: network namespaces where real network daemons bring a
//!   rendered configuration up (root only).
//! * [`artifacts`]: where the binary and the built components are.
//! * [`bench`]: latency percentiles for the benchmarks.
//! * [`peer`]: the benchmarks' peer, Debian's qemu-ga, and `/proc` readings.
//! * [`qga`]: the host side of the QEMU guest agent protocol (libvirt's
//!   part), for guestward's QGA socket and qemu-ga's.

pub mod agent;
pub mod artifacts;
pub mod bench;
pub mod bridge;
pub mod debian_root;
mod dom0_wire;
pub mod http;
pub mod hypervisor;
pub mod libvirt;
pub mod netns;
pub mod nova;
pub mod peer;
pub mod qga;
pub mod xenstored;

pub use agent::{Agent, AgentBuilder};
pub use bridge::GuestBridge;
pub use hypervisor::Hypervisor;
pub use nova::Dom0;
pub use xenstored::Xenstored;
