//! Calls and their order.
//!
//! A call's place in line is `(effective priority desc, seq asc)`. `seq` is
//! the router's arrival counter and never changes, so a call that comes back
//! from a failed offer slots in at its original position.
//!
//! Effective priority, in `1/AGEING_MS_PER_LEVEL` units so it stays exact:
//! `priority * AGEING_MS_PER_LEVEL + aged_ms`, where `aged_ms` is the time
//! waited for calls in a `priority`-strategy queue and 0 elsewhere. That is
//! +1 priority level per 30 s of waiting. It decides which call an agent
//! gets across all the queues it serves.

use crate::acd::facts::CallId;

/// Waiting this long raises a `priority`-queue call by one level.
pub const AGEING_MS_PER_LEVEL: u64 = 30_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CallState {
    Waiting,
    Ringing { agent: String },
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
    pub state: CallState,
    /// The agent that last failed to take this call: skipped next time if
    /// anyone else can take it.
    pub last_agent: Option<String>,
    /// Max-wait deadline (`None`: wait forever).
    pub deadline_ms: Option<u64>,
}

impl Call {
    /// Sort key: smaller goes first.
    pub fn order_key(&self, ageing: bool, now_ms: u64) -> (i128, u64) {
        let aged = if ageing {
            now_ms.saturating_sub(self.arrived_ms)
        } else {
            0
        };
        let eff = i128::from(self.priority) * i128::from(AGEING_MS_PER_LEVEL) + i128::from(aged);
        (-eff, self.seq)
    }

    pub fn unanswered(&self) -> bool {
        !matches!(self.state, CallState::Talking { .. })
    }
}
