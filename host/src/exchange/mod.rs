//! How requests arrive and answers leave.
//!
//! * [`xenstore`]: the Nova XenAPI agent exchange, `data/host/<id>` in,
//!   `data/guest/<id>` out.
//! * [`socket`]: a local unix socket (root only) for administration and
//!   development (`guestward call`).
//!
//! Both hand raw request bytes to the [`Dispatcher`](crate::dispatch::Dispatcher)
//! and write back the encoded reply; neither knows what commands exist.

pub mod socket;
pub mod xenstore;
