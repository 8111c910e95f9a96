//! Guestward: a guest agent for cloud VMs whose every command runs as a
//! WebAssembly component in a sandbox granting exactly what the operator's
//! policy allows.
//!
//! The data flow of one request, module by module:
//!
//! ```text
//! exchange  (XenStore data/host/<id>, or the local socket)   bytes in
//!   → protocol::nova::parse (the exchange's own protocol)    request {name, value}
//!   → dispatch (runtime::registry routes name → component)   one lane per component
//!   → runtime (fresh Store, grants, deadline, memory cap)    the component runs
//!       → capability::* (log, state, agent, files, xenstore,  host interfaces, each
//!         programs, hostname, network, download, update)      checked against its grant
//!   → protocol::nova::encode                                  reply bytes
//! exchange  (data/guest/<id>, or the socket)                 bytes out
//! ```
//!
//! The layering, bottom up (each module uses only those before it): `wit`
//! (the generated bindings), `root`, `trust`, `xenstore` (our own client),
//! `protocol`, `config`, then `policy` → `capability` → `runtime` →
//! `dispatch` → `status` → `exchange` and `install` → `daemon`; `fuzz` (over
//! `runtime`) runs one component on mutated inputs; the command line is
//! the binary's (`main.rs`, `cli/`).

pub mod capability;
pub mod config;
pub mod daemon;
pub mod dispatch;
pub mod exchange;
pub mod fuzz;
pub mod install;
pub mod policy;
pub mod protocol;
pub mod root;
pub mod runtime;
pub mod status;
pub mod trust;
pub mod wit;
pub mod xenstore;
