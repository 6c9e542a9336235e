//! SIP: message parsing and validation, transactions (RFC 3261 §17),
//! the per-shard endpoint, and digest authentication.
//!
//! - `message`: lenient zero-copy scanner + RFC 3261 §8.2 request checks
//! - `response`: responses built from a request's headers (§8.2.6, RFC 3581)
//! - `ids`: shard-owned branches/tags/Call-IDs and `owner_of`
//! - `transaction`: the four §17 machines, timers A–M, sans-IO
//! - `endpoint`: the per-shard front the shell drives (see its docs)

pub mod auth;
pub mod endpoint;
pub mod ids;
pub mod message;
pub mod response;
pub mod transaction;

#[cfg(test)]
mod proptests;

pub use endpoint::{Counters, Endpoint, EndpointConfig, Output, ResponseSpec};
pub use message::DropReason;
pub use transaction::{ClientTxId, ServerTxId, Timers};
