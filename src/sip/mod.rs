//! SIP: message parsing and validation, transactions (RFC 3261 §17),
//! the per-shard endpoint, and digest authentication.
//!
//! - `message`: lenient zero-copy scanner + RFC 3261 §8.2 request checks
//! - `view`: typed accessors over a scanned message (`View`)
//! - `msg`: `Message`, a scanned message owning its bytes (what the TU reads)
//! - `build`: outgoing requests written once, with their client key
//! - `output`: what the endpoint and transactions emit (`Output`, `Counters`)
//! - `register`: a REGISTER read into the registrar's plain data
//! - `response`: responses built from a request's headers (§8.2.6, RFC 3581)
//! - `stream`: framing of SIP over TCP/TLS (Content-Length, keep-alives)
//! - `ids`: shard-owned branches/tags/Call-IDs and `owner_of`
//! - `transaction`: the four §17 machines, timers A–M, sans-IO
//! - `transport`: UDP/TCP/TLS, read from URIs and Vias
//! - `endpoint`: the per-shard front the shell drives (see its docs)

pub mod auth;
pub mod build;
pub mod endpoint;
pub mod feature;
pub mod ids;
pub mod message;
pub mod msg;
pub mod output;
pub mod register;
pub mod response;
pub mod stream;
pub mod transaction;
pub mod transport;
pub mod view;

#[cfg(test)]
mod proptests;

pub use endpoint::{Counters, Endpoint, EndpointConfig, Output, ResponseSpec};
pub use build::OutRequest;
pub use message::DropReason;
pub use msg::Message;
pub use view::View;
pub use transaction::{ClientTxId, ServerTxId, Timers};
pub use transport::Transport;
