//! Guestward: a guest agent for cloud VMs whose every command runs as a
//! WebAssembly component in a sandbox granting exactly what the operator's
//! policy allows.
//!
//! The data flow of one request, module by module:
//!
//! ```text
//! exchange  (XenStore data/host/<id>, or the local socket)   bytes in
//!   → protocol::nova::parse                                   request {name, value}
//!   → dispatch (runtime::registry routes name → component)   one lane per component
//!   → runtime (fresh Store, grants, deadline, memory cap)    the component runs
//!       → capability::* (log, state, agent, files, xenstore)  host interfaces, checked
//!   → protocol::nova::encode                                  reply bytes
//! exchange  (data/guest/<id>, or the socket)                 bytes out
//! ```
//!
//! `policy` turns the operator's file into per-component grants, `trust`
//! decides which components run at all (pinned built-ins, signatures), `root`
//! is the machine (or `--root` directory) commands act on, and `xenstore` is
//! our own XenStore client.

pub mod capability;
pub mod config;
pub mod daemon;
pub mod dispatch;
pub mod exchange;
pub mod install;
pub mod policy;
pub mod protocol;
pub mod root;
pub mod runtime;
pub mod trust;
pub mod wit;
pub mod xenstore;
