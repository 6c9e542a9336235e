//! The glommio shell: pinned executors, sockets, timers, the cross-shard mesh.
//!
//! Everything protocol-shaped lives in the sans-IO modules (`sip`, `call`,
//! `acd`) and their integrators (`engine`); this module only moves bytes and
//! messages between them and the world.
//!
//! `runtime` starts the executors; `signalling` and `routing` are their
//! shells; `shared` holds what all three use; `unix_signals` is SIGTERM /
//! SIGINT handling, nothing to do with SIP signalling.

mod icmp;
pub(crate) mod mailbox;
pub mod notify;
mod routing;
mod runtime;
mod shared;
mod signalling;
mod streams;
mod tls;
pub mod store_thread;
pub mod unix_signals;
mod wake;

pub use crate::engine::{FromRouting, ToRouting};
pub use runtime::{run, RunError};
