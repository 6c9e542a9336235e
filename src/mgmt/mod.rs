//! Management plane: metrics and snapshots, off the hot cores.
//!
//! The shards publish into a [`Board`] at the housekeeping tick (100 ms)
//! after a reader asked; the HTTP thread asks, waits for the answers
//! (bounded), and reads it. A shard never waits for the management plane:
//! the board's locks are held for a copy, never across I/O.

mod board;
mod http;

pub use board::{Board, Sample};
pub use http::serve;
