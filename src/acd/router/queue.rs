//! Calls and their order.
//!
//! A call's place in line is `(effective priority desc, seq asc)`. `seq` is
//! the router's arrival counter and never changes, so a call that comes back
//! from a failed offer slots in at its original position.
//!
//! Effective priority, in `1/LEVEL_UNITS` of a level so that queues with
//! different ageing rates compare exactly enough:
//! `priority * LEVEL_UNITS + aged_ms * LEVEL_UNITS / ageing_ms`, where
//! `aged_ms` is the time waited for calls in a `priority`-strategy queue
//! (one level per the queue's `ageing_s`, 30 s by default) and 0 elsewhere.
//! It decides which call an agent gets across all the queues it serves,
//! after the queues' weights.

use crate::acd::facts::CallId;

/// Waiting this long raises a `priority`-queue call by one level, unless
/// the queue sets its own `ageing_s`.
pub const AGEING_MS_PER_LEVEL: u64 = 30_000;

/// Sub-level resolution of effective priorities.
const LEVEL_UNITS: i128 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CallState {
    Waiting,
    /// Offered to `agents` (one, or every agent a `ring-all` offer rang
    /// that has not answered or failed yet; never empty).
    Ringing { agents: Vec<String> },
    Talking { agent: String, answered_ms: u64 },
}

#[derive(Debug, Clone)]
pub(super) struct Call {
    pub id: CallId,
    pub seq: u64,
    pub sip_call_id: String,
    pub caller: String,
    /// The queue the call waits in (after any overflow).
    pub queue: String,
    pub overflowed_from: Option<String>,
    pub arrived_ms: u64,
    /// Base priority of `queue` plus the caller's bonus.
    pub priority: i32,
    /// The call's own skill requirement, in place of the queue's until
    /// the first relaxation step (empty: the queue's).
    pub skills: Vec<crate::config::SkillReq>,
    pub state: CallState,
    /// An operator asked to hang it up; the shard's fact that ends it is on
    /// its way. It is offered to no one and does not time out meanwhile.
    pub hangup_requested: bool,
    /// The agent that last failed to take this call: skipped next time if
    /// anyone else can take it.
    pub last_agent: Option<String>,
    /// When `last_agent` failed it: that agent waits the queue's
    /// `retry_s` before this call is offered to it again.
    pub last_failed_ms: u64,
    /// Every agent that failed this call, with when it last did: none is
    /// offered it again before the queue's `retry_s` (with only
    /// `last_agent` remembered, two agents that both fail would take
    /// turns ringing, each well inside its retry time).
    pub failed: Vec<(String, u64)>,
    /// Max-wait deadline (`None`: wait forever).
    pub deadline_ms: Option<u64>,
    /// When a talking call is cut (`max_talk_s`); cleared once the shard
    /// has been told, so it is told once.
    pub talk_deadline_ms: Option<u64>,
    /// Place in line on entering the queue (queue log `origposition`).
    pub orig_position: u32,
    /// When the current offer started ringing (queue log ring times).
    pub ring_started_ms: u64,
}

impl Call {
    /// Sort key: smaller goes first. `ageing_ms`: the queue's time per
    /// priority level gained by waiting, if it ages its callers.
    pub fn order_key(&self, ageing_ms: Option<u64>, now_ms: u64) -> (i128, u64) {
        let aged = match ageing_ms {
            Some(per_level) if per_level > 0 => {
                i128::from(now_ms.saturating_sub(self.arrived_ms)) * LEVEL_UNITS / i128::from(per_level)
            }
            _ => 0,
        };
        let eff = i128::from(self.priority) * LEVEL_UNITS + aged;
        (-eff, self.seq)
    }

    pub fn unanswered(&self) -> bool {
        !matches!(self.state, CallState::Talking { .. })
    }
}
