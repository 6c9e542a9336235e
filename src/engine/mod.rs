//! The sans-IO integrators: one entry point per kind of core.
//!
//! * [`signalling::Signalling`] — one signalling shard: SIP endpoint, call
//!   table, media control, flood guard, REGISTERs waiting for routing.
//!   `handle(Input, now, wall_ms)` in, `poll_effect()` / `poll_timeout()` out.
//! * [`routing`] (defined in `acd::routing`, next to the registrar and
//!   router it drives) — the routing shard: `handle(Input, now_ms)` in,
//!   `poll_effect()` (decisions, REGISTER replies, `Commit { ops }` for the
//!   store thread) / `poll_timeout()` out.
//! * [`messages`] — what shards and the routing shard tell each other.
//!
//! Each wires the protocol state machines (`sip`, `call`, `acd`) together
//! with time passed in and no I/O, the way quinn-proto's `Connection` or
//! str0m's `Rtc` do. The glommio shells in `shard/` feed them from sockets,
//! timers and channels and carry out their effects; `tests/sim_calls.rs`
//! drives the same integrators in virtual time.

pub mod flood;
pub mod messages;
pub mod signalling;

pub use crate::acd::routing;

pub use messages::{Forwarded, FromRouting, ToRouting};
pub use signalling::{Effect, Input, Signalling, SignallingConfig};
