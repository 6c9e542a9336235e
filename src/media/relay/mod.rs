//! The RTP/RTCP relay: the sans-IO leg table (`table`) over the per-stream
//! logic ([`stream`], [`stats`]), and the io_uring loop ([`ring`]) with its
//! buffer pool (`pool`) and address conversion (`sockaddr`).

mod pool;
pub mod ring;
mod sockaddr;
pub mod stats;
pub mod stream;
mod table;

pub use stats::{DropReason, RelayTotals, RelayTraffic, StreamStats};
pub use stream::{Kind, StreamState, Verdict};
