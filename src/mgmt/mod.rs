//! Management plane: metrics, snapshots and the REST API, off the hot
//! cores.
//!
//! The shards publish into a [`Board`] at the housekeeping tick (100 ms)
//! after a reader asked; the HTTP thread asks, waits for the answers
//! (bounded, asynchronously), and reads it. A shard never waits for the
//! management plane: the board's locks are held for a copy, never across
//! I/O.

mod act;
mod api;
mod sse;
pub mod auth;
mod board;
pub mod client;
pub mod command_link;
pub mod control;
pub mod events;
mod histogram;
pub mod health;
pub mod log_level;
mod metrics;
mod reports;
mod retention_metrics;
mod server;
mod wallboard;
pub mod tls;

pub use board::{Board, Sample};
pub use control::Control;
pub use histogram::Histogram;
pub use metrics::help as metric_help;
pub use server::{serve, ServeError, MAX_BODY, MAX_CONNECTIONS, REQUEST_TIMEOUT};
