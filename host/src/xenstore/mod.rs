//! A XenStore client of our own, in pure Rust (the existing Rust clients are
//! GPL): the wire protocol over the guest's xenbus device or a xenstored
//! unix socket, with requests multiplexed on one connection, watches,
//! transactions and reconnection.
//!
//! * [`wire`]: the frame format, pure functions over bytes (fuzzed).
//! * [`path`]: XenStore path rules.
//! * [`transport`]: the device or socket underneath.
//! * [`client`]: the async client.

pub mod client;
mod error;
pub mod path;
pub mod transport;
pub mod wire;

pub use client::{LinkState, Transaction, Watch, XsClient};
pub use error::{Errno, Error, Result};
pub use transport::Endpoint;
