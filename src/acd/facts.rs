//! What signalling shards tell the router about calls, and what it decides.
//!
//! The router (routing shard) owns agents, queues and CDRs; a signalling
//! shard owns each call's SIP dialogs and relay legs. They talk only in these
//! plain values, over glommio's cross-executor channels (DESIGN.md, "One
//! call, end to end"). Times are wall-clock unix milliseconds, read at the
//! edge and passed in, because they end up in CDRs that outlive a restart.
//!
//! Ordering rules both sides rely on:
//! - a shard's facts reach the router in the order it sent them;
//! - a shard ignores a decision for a call it no longer has (the router has
//!   then already received, or will receive, the fact that ended it);
//! - the router accepts `Abandoned`/`Ended` for a call in any state.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::config::SkillReq;

/// Engine-wide call id; the owning shard is in the top 16 bits so a
/// decision finds its shard without a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CallId(pub u64);

impl CallId {
    pub fn new(shard: u16, seq: u64) -> CallId {
        CallId((u64::from(shard) << 48) | (seq & ((1 << 48) - 1)))
    }

    pub fn shard(self) -> u16 {
        (self.0 >> 48) as u16
    }
}

impl std::str::FromStr for CallId {
    type Err = ();

    /// The `Display` form back (`shard-seq`).
    fn from_str(s: &str) -> Result<CallId, ()> {
        let (shard, seq) = s.split_once('-').ok_or(())?;
        let shard: u16 = shard.parse().map_err(|_| ())?;
        let seq: u64 = seq.parse().map_err(|_| ())?;
        if seq >= 1 << 48 {
            return Err(());
        }
        Ok(CallId::new(shard, seq))
    }
}

impl std::fmt::Display for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.shard(), self.0 & ((1 << 48) - 1))
    }
}

/// Shard → router, about one call.
#[derive(Debug, Clone, PartialEq)]
pub enum CallFact {
    /// A customer INVITE for `queue` passed SIP and SDP checks and its relay
    /// ports are reserved. The router answers with `Queued` or `Rejected`.
    Arrived {
        call: CallId,
        queue: String,
        /// The caller's From URI.
        caller: String,
        /// Added to the queue's base priority: from the `Priority:` header
        /// (RFC 3261 §20.26): emergency +3, urgent +2, normal 0, non-urgent -1.
        priority_bonus: i32,
        /// The call's own skill requirement (a trusted source's
        /// `X-CC-Skills`): it replaces the queue's until the queue's first
        /// relaxation step. Empty: the queue's.
        skills: Vec<SkillReq>,
        /// The customer leg's SIP Call-ID, for the CDR.
        sip_call_id: String,
        at_ms: u64,
    },
    /// The caller hung up (CANCEL or BYE) before an agent was bridged. If an
    /// agent leg was ringing, the shard has already cancelled it.
    Abandoned { call: CallId, at_ms: u64 },
    /// How the agent leg of an `Offer` ended up.
    OfferResult { call: CallId, agent: String, result: OfferResult, at_ms: u64 },
    /// A call that had been answered by an agent ended.
    Ended {
        call: CallId,
        at_ms: u64,
        hangup: Party,
        reason: EndReason,
        rtp: RtpCounts,
    },
    /// A call failed on the shard before being bridged for a reason other
    /// than the caller (relay error, caller never ACKed our 200, …).
    Failed { call: CallId, at_ms: u64, reason: String },
}

/// The fate of an offer to an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OfferResult {
    /// 200 received and ACKed: the relay now bridges caller and agent.
    Answered,
    /// Ring timeout (we CANCELled) or 408.
    NoAnswer,
    /// 486 / 600.
    Busy,
    /// 603.
    Declined,
    /// Any other final status, or a transport error (`status: None`).
    Failed { status: Option<u16> },
    /// The shard could not open the agent-side relay leg (ports or sockets
    /// exhausted), so the agent was never rung: the engine's shortage, not
    /// the agent's doing. The call stays queued.
    MediaUnavailable,
    /// A `RingAll` offer: another agent answered first (or the winner's
    /// answer was unusable after the others had been let go), so this
    /// agent's phones were CANCELled. Not a miss: the agent did nothing
    /// wrong and is free again at once. The shard sends it before the
    /// winner's `Answered`.
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Party {
    Caller,
    Agent,
    Engine,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndReason {
    /// A BYE from either party.
    Normal,
    /// No RTP in either direction for `media_timeout`.
    MediaTimeout,
    /// Signalling failure after the bridge (e.g. BYE timed out).
    Failed,
    /// The router told the shard to end the call (max wait).
    TimedOut,
    /// The call reached its queue's `max_talk_s` and the engine ended it.
    MaxDuration,
    /// An operator hung the call up (`POST /v1/calls/{id}/hangup`).
    OperatorHangup,
}

/// RTP packets the relay forwarded for this call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtpCounts {
    pub caller_to_agent: u64,
    pub agent_to_caller: u64,
}

/// Router → shard, about one call.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The call waits in `queue` (the one asked for, or its overflow). In
    /// `immediate` answer mode the shard now answers 200 and plays hold audio;
    /// in `on-agent` mode it sends 180.
    Queued { call: CallId, queue: String, position: u32 },
    /// Refuse the caller with `status` (404, 480, 486, 503 + Retry-After).
    Rejected { call: CallId, status: u16, retry_after_s: Option<u32> },
    /// Ring `agent`. The shard opens the agent's relay leg, INVITEs the
    /// first target (the contact URI as Request-URI, sent to the address),
    /// arms the ring timer and answers with `OfferResult` (at once
    /// `MediaUnavailable` when it has no relay leg to offer).
    Offer {
        call: CallId,
        agent: String,
        targets: Vec<(String, SocketAddr)>,
        ring_timeout_ms: u64,
    },
    /// Ring every agent in `agents` (each with its targets, as in `Offer`)
    /// at once, on one agent-side relay leg: the first 200 is bridged, every
    /// other phone is CANCELled (a 200 crossing the CANCEL gets ACK + BYE).
    /// The shard answers one `OfferResult` per agent: `Cancelled` for the
    /// agents that lost to the winner, the agent's own failure for one
    /// whose phones all failed (sent as soon as they have, while the others
    /// may still ring), `NoAnswer` for each at the ring timeout.
    RingAll {
        call: CallId,
        agents: Vec<(String, Vec<(String, SocketAddr)>)>,
        ring_timeout_ms: u64,
    },
    /// The call waited `max_wait_s`: the shard hangs up the caller (BYE, or
    /// 408 if not yet answered) and sends nothing more about it.
    TimedOut { call: CallId },
    /// The bridged call reached its queue's `max_talk_s`: the shard BYEs
    /// both legs and answers `Ended { hangup: Engine, reason: MaxDuration }`.
    /// A call not (or no longer) bridged there is left alone.
    MaxDuration { call: CallId },
    /// An operator ends the call, in whatever state it is: an unanswered
    /// caller gets `status` as the final response (a caller on hold audio
    /// and a bridged one a BYE), a ringing agent a CANCEL, an answered one
    /// a BYE. The shard answers `Ended { reason: OperatorHangup }` (bridged)
    /// or `Failed { reason: OPERATOR_HANGUP }`.
    Hangup { call: CallId, status: u16 },
}

/// CDR and `Failed` reason of a call an operator hung up.
pub const OPERATOR_HANGUP: &str = "operator-hangup";

impl Decision {
    pub fn call(&self) -> CallId {
        match self {
            Decision::Queued { call, .. }
            | Decision::Rejected { call, .. }
            | Decision::Offer { call, .. }
            | Decision::RingAll { call, .. }
            | Decision::TimedOut { call }
            | Decision::MaxDuration { call }
            | Decision::Hangup { call, .. } => *call,
        }
    }
}

impl CallFact {
    pub fn call(&self) -> CallId {
        match self {
            CallFact::Arrived { call, .. }
            | CallFact::Abandoned { call, .. }
            | CallFact::OfferResult { call, .. }
            | CallFact::Ended { call, .. }
            | CallFact::Failed { call, .. } => *call,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_id_carries_its_shard() {
        let c = CallId::new(7, 123_456);
        assert_eq!(c.shard(), 7);
        assert_eq!(c.to_string(), "7-123456");
        assert_eq!(CallId::new(u16::MAX, u64::MAX).shard(), u16::MAX);
        assert_eq!("7-123456".parse::<CallId>(), Ok(c));
        for bad in ["", "7", "7-", "-1", "x-1", "70000-1", "1-281474976710656", "1-2-3"] {
            assert!(bad.parse::<CallId>().is_err(), "{bad}");
        }
    }
}
