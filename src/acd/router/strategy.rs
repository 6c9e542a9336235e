//! Which agent takes a call, per queue strategy. `candidates` are the free
//! agents serving the queue, in config order; the strategy returns an index
//! into it. Ties always fall back to config order, so picks are repeatable.
//!
//! - `round-robin`: the first candidate after the last agent offered a call
//!   from this queue, cycling through the queue's agents in config order.
//! - `longest-idle` (default) and `priority`: earliest `idle_since`.
//!   (`priority` is about which *call* goes first; see `queue.rs`.)
//! - `fewest-calls`: fewest answered calls since the router started, then
//!   longest idle.
//! - `skills`: only agents with every skill the queue lists (filtered by the
//!   caller); highest proficiency sum, then longest idle.

use super::agent_state::Agent;
use crate::config::{QueueConfig, Strategy};

/// `candidates`: the free agents that may take the call, ascending by
/// `order` (config position); walked once, nothing collected, since a
/// queue may have thousands of members and this runs per offer.
/// `rr_last`: config position of the agent offered last from this queue,
/// if it is still one of the queue's members.
pub(super) fn pick<'a>(
    q: &QueueConfig,
    candidates: impl Iterator<Item = &'a Agent>,
    rr_last: Option<usize>,
) -> Option<&'a Agent> {
    let idle = |a: &Agent| (a.idle_since, a.order);
    match q.strategy {
        // Cycling through members from the one after `rr_last` and taking
        // the first candidate is, with candidates in config order, the
        // first candidate after `rr_last`, else the first.
        Strategy::RoundRobin => {
            let mut first = None;
            for a in candidates {
                if rr_last.is_none_or(|l| a.order > l) {
                    return Some(a);
                }
                first.get_or_insert(a);
            }
            first
        }
        Strategy::LongestIdle | Strategy::Priority => candidates.min_by_key(|a| idle(a)),
        Strategy::FewestCalls => candidates.min_by_key(|a| (a.answered, idle(a))),
        Strategy::Skills => candidates
            .filter_map(|a| a.skill_score(&q.skills).map(|s| (a, s)))
            .min_by_key(|(a, s)| (std::cmp::Reverse(*s), idle(a)))
            .map(|(a, _)| a),
    }
}
