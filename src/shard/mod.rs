//! The glommio shell: pinned executors, sockets, timers, the cross-shard mesh.
//!
//! Everything protocol-shaped lives in the sans-IO modules (`sip`, `acd`);
//! this module only moves bytes and messages between them and the world.

mod core;
mod flood;
mod icmp;
mod messages;
pub mod notify;
mod routing;
mod runtime;
pub mod signals;
mod signalling;
mod wake;

pub use messages::{FromRouting, ToRouting};
pub use runtime::{run, RunError};
