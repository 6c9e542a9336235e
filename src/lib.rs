//! cc-engine: a SIP call-center appliance.
//!
//! The protocol logic (SIP, registrar, queues, media bookkeeping) is a set of
//! sans-IO state machines with time passed in; `shard` is the thin glommio
//! shell that feeds them from sockets and timers. See DESIGN.md.

pub mod acd;
pub mod call;
pub mod config;
pub mod media;
pub mod mgmt;
pub mod shard;
pub mod sip;
