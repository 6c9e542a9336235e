//! The RTP/RTCP relay: sans-IO stream logic ([`stream`], [`stats`]) and the
//! io_uring loop ([`ring`]).

pub mod ring;
pub mod stats;
pub mod stream;

pub use stats::{DropReason, StreamStats};
pub use stream::{Kind, StreamState, Verdict};
