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

/// `candidates` ascending by `order`. `members`: config positions of all
/// agents serving the queue, ascending (for round-robin). `rr_last`: config
/// position of the agent offered last from this queue.
pub(super) fn pick(
    q: &QueueConfig,
    candidates: &[&Agent],
    members: &[usize],
    rr_last: Option<usize>,
) -> Option<usize> {
    if candidates.is_empty() {
        return None;
    }
    let idle = |i: &usize| (candidates[*i].idle_since, candidates[*i].order);
    let all = 0..candidates.len();
    match q.strategy {
        // Cycling through members from the one after `rr_last` and taking
        // the first candidate is, with both in config order, the first
        // candidate after `rr_last`, else the first: O(candidates).
        Strategy::RoundRobin => match rr_last.filter(|l| members.binary_search(l).is_ok()) {
            Some(last) => candidates.iter().position(|a| a.order > last).or(Some(0)),
            None => Some(0),
        },
        Strategy::LongestIdle | Strategy::Priority => all.min_by_key(idle),
        Strategy::FewestCalls => all.min_by_key(|i| (candidates[*i].answered, idle(i))),
        Strategy::Skills => all
            .filter_map(|i| candidates[i].skill_score(&q.skills).map(|s| (i, s)))
            .min_by_key(|(i, s)| (std::cmp::Reverse(*s), idle(i)))
            .map(|(i, _)| i),
    }
}
