//! Management plane: metrics and snapshots, off the hot cores.
//!
//! The shards publish into a [`Board`] every housekeeping tick (100 ms); the
//! HTTP thread only reads it. A shard never waits for the management plane:
//! the board's locks are held for a copy, never across I/O.

mod board;
mod http;

pub use board::{Board, Sample};
pub use http::serve;
