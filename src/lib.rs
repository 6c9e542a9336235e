//! cc-engine: a SIP call-center appliance.
//!
//! The protocol logic (SIP, registrar, queues, media bookkeeping) is a set of
//! sans-IO state machines with time passed in. `engine` wires them into one
//! integrator per kind of core (start reading at `engine::signalling`);
//! `shard` is the thin glommio shell that feeds those from sockets, timers
//! and channels. See DESIGN.md.

pub mod acd;
pub mod call;
pub mod config;
pub mod engine;
pub mod media;
pub mod mgmt;
pub mod shard;
pub mod sip;
