//! What the router hands back: decisions, store ops, events; and its errors.

use crate::acd::cdr::{Disposition, StoreOp};
use crate::acd::facts::{CallId, Decision, OfferResult};

#[derive(Debug, Clone, PartialEq)]
pub enum RouterOutput {
    Decision(Decision),
    Persist(StoreOp),
    Event(RouterEvent),
}

/// For logs and metrics; nothing depends on them.
#[derive(Debug, Clone, PartialEq)]
pub enum RouterEvent {
    Overflowed {
        call: CallId,
        from: String,
        to: String,
    },
    /// Carries who is calling and from which queue, so that a CRM can
    /// show the caller on the agent's screen as the phone rings.
    Offered {
        call: CallId,
        agent: String,
        queue: String,
        caller: String,
        sip_call_id: String,
    },
    Answered {
        call: CallId,
        agent: String,
    },
    OfferFailed {
        call: CallId,
        agent: String,
        result: OfferResult,
    },
    AgentPaused {
        agent: String,
        reason: Option<String>,
    },
    AgentUnpaused {
        agent: String,
    },
    AgentOnline {
        agent: String,
    },
    AgentLoggedOut {
        agent: String,
    },
    /// Logout asked while the agent has a call: it takes effect (and
    /// `AgentLoggedOut` follows) when the agent's last call ends.
    AgentLogoutRequested {
        agent: String,
    },
    AgentLoggedIn {
        agent: String,
    },
    AgentOffline {
        agent: String,
    },
    /// All of a registered agent's contacts stopped answering the liveness
    /// check (`reachable` false), or one answers again (true).
    AgentReachability {
        agent: String,
        reachable: bool,
        /// The status it shows now (`unreachable`, or the one it returns to).
        status: super::AgentStatus,
    },
    WrapUpEnded {
        agent: String,
    },
    CallFinished {
        call: CallId,
        disposition: Disposition,
        /// The CDR's reason (`operator-hangup`, `timed-out`, a status…).
        reason: Option<String>,
    },
    /// A fact for an unknown or finished call, or one that no longer fits
    /// the call's state (e.g. an offer result from an agent not ringing).
    Ignored {
        call: CallId,
        fact: &'static str,
    },
    /// A queue's reporting counters changed (the integrator coalesces
    /// these before the event stream sees them).
    QueueCounters {
        queue: String,
        stats: crate::acd::stats::QueueStats,
        service_level_s: u32,
    },
    /// The configuration was reloaded (`Router::reconfigure`).
    Reloaded(super::ReloadSummary),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouterError {
    #[error("no agent \"{0}\" is configured")]
    UnknownAgent(String),
    #[error("no live call {0}")]
    UnknownCall(String),
    #[error("call {0} is already ending")]
    CallEnding(String),
}
