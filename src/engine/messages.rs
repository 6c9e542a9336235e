//! Facts the signalling shards tell the routing shard, and its decisions.
//! Plain data: they cross executors over glommio's lock-free channels.

use crate::acd::facts::{CallFact, Decision};
use crate::acd::feature::{FeatureReply, FeatureRequest};
use crate::acd::{RegisterReply, RegisterRequest};

/// Shard → routing.
#[derive(Debug)]
pub enum ToRouting {
    /// A REGISTER to authenticate and apply; `tx` comes back in the reply.
    Register { shard: u16, tx: u64, req: RegisterRequest },
    /// A feature-code INVITE to authenticate and apply; `tx` comes back in
    /// the reply.
    Feature { shard: u16, tx: u64, req: FeatureRequest },
    /// Something happened to a call this shard owns.
    Call(CallFact),
    /// What became of a [`FromRouting::Probe`]: `ok` when the contact sent
    /// any response, false on timeout or transport error.
    ProbeResult { probe: u64, ok: bool },
}

/// Routing → shard.
#[derive(Debug)]
pub enum FromRouting {
    RegisterReply { tx: u64, reply: RegisterReply },
    FeatureReply { tx: u64, reply: FeatureReply },
    /// The router's decision about a call this shard owns.
    Decision(Decision),
    /// Send OPTIONS to a registered contact (`uri` at `dest`) and answer
    /// with [`ToRouting::ProbeResult`]: the routing shard knows bindings,
    /// signalling shards own sockets and transactions.
    Probe { probe: u64, uri: String, dest: std::net::SocketAddr },
    /// Per-queue call settings after a config reload: for the next call.
    CallConfig(crate::call::CallConfig),
}

/// Shard → shard over the mesh.
#[derive(Debug)]
pub enum Forwarded {
    /// A datagram that landed on a shard which does not own it (DESIGN.md,
    /// "Affinity"): the owner processes it as if it had received it.
    Datagram { data: bytes::Bytes, src: std::net::SocketAddr },
    /// The kernel reported `dest` unreachable on this shard's socket. With
    /// SO_REUSEPORT the ICMP error is delivered to whichever shard's socket
    /// the kernel's hash picks, not the sender's, so every shard is told.
    Unreachable { dest: std::net::SocketAddr },
    /// Bytes for a TCP/TLS connection the sender does not hold: a
    /// connection belongs to the shard that accepted it, so the send goes
    /// round the other shards (`hops` so far) until one holds it; the last
    /// tells `origin` [`Forwarded::Unreachable`]. The shells handle it.
    StreamSend { dest: std::net::SocketAddr, data: bytes::Bytes, origin: u16, hops: u16 },
}
