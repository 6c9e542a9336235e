//! Which agent takes a call, per queue strategy. `candidates` are the free
//! agents that may take the call (right tier, skills in force), in config
//! order; the strategy picks one. Ties always fall back to config order,
//! and the random strategies draw from the router's seeded generator, so
//! the same inputs give the same picks.
//!
//! - `round-robin`: the first candidate after the last agent offered a call
//!   from this queue, cycling through the queue's agents in config order.
//! - `linear`: the first candidate in config order, every time.
//! - `longest-idle` (default) and `priority`: earliest `idle_since`.
//!   (`priority` is about which *call* goes first; see `queue.rs`.)
//! - `fewest-calls`: fewest answered calls since the router started, then
//!   longest idle.
//! - `least-talk-time`: least talk time since the router started, then
//!   longest idle.
//! - `random`: uniform among the candidates.
//! - `weighted-random`: random with weight 1/level (the agent's tier level
//!   for the queue): a level-1 agent is twice as likely as a level-2 one.
//! - `ring-all`: every candidate of the lowest tier level present rings
//!   at once (`Router::choose_all`); the first to answer takes the call.
//! - `skills`: only agents with every skill in force at its minimum
//!   (filtered by the caller); highest proficiency sum, then longest idle.

use std::cell::Cell;

use super::agent_state::Agent;
use crate::config::{QueueConfig, SkillReq, Strategy};

/// SplitMix64: tiny, seedable, good enough to spread calls; the router
/// owns one so a replay with the same seed picks the same agents.
#[derive(Debug)]
pub(super) struct Rng(Cell<u64>);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(Cell::new(seed))
    }

    pub fn next_u64(&self) -> u64 {
        let s = self.0.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.0.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    pub fn unit(&self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
}

/// `candidates`: the free agents that may take the call with their tier
/// level, ascending by `order` (config position); walked once, nothing
/// collected, since a queue may have thousands of members and this runs
/// per offer. `rr_last`: config position of the agent offered last from
/// this queue, if it is still one of the queue's members. `needed`: the
/// skills in force for this call (`skills` strategy).
pub(super) fn pick<'a>(
    q: &QueueConfig,
    needed: &[SkillReq],
    mut candidates: impl Iterator<Item = (&'a Agent, u32)>,
    rr_last: Option<usize>,
    rng: &Rng,
) -> Option<&'a Agent> {
    let idle = |a: &Agent| (a.idle_since, a.order);
    match q.strategy {
        // Cycling through members from the one after `rr_last` and taking
        // the first candidate is, with candidates in config order, the
        // first candidate after `rr_last`, else the first.
        Strategy::RoundRobin => {
            let mut first = None;
            for (a, _) in candidates {
                if rr_last.is_none_or(|l| a.order > l) {
                    return Some(a);
                }
                first.get_or_insert(a);
            }
            first
        }
        Strategy::Linear => candidates.next().map(|(a, _)| a),
        // Ring-all rings every candidate (`Router::choose_all`); asked for
        // one, it would give the longest idle.
        Strategy::LongestIdle | Strategy::Priority | Strategy::RingAll => candidates.map(|(a, _)| a).min_by_key(|a| idle(a)),
        Strategy::FewestCalls => candidates.map(|(a, _)| a).min_by_key(|a| (a.answered, idle(a))),
        Strategy::LeastTalkTime => candidates.map(|(a, _)| a).min_by_key(|a| (a.talk_ms, idle(a))),
        // Reservoir sampling: the i-th candidate replaces the pick with
        // chance 1/i, which leaves each with chance 1/n, in one pass.
        Strategy::Random => {
            let mut chosen = None;
            for (i, (a, _)) in candidates.enumerate() {
                if rng.next_u64() % (i as u64 + 1) == 0 {
                    chosen = Some(a);
                }
            }
            chosen
        }
        // Efraimidis–Spirakis: the largest u^(1/w) wins; with w = 1/level
        // that is the largest level·ln(u).
        Strategy::WeightedRandom => {
            let mut best: Option<(f64, &Agent)> = None;
            for (a, level) in candidates {
                let key = f64::from(level.max(1)) * rng.unit().ln();
                if best.is_none_or(|(k, _)| key > k) {
                    best = Some((key, a));
                }
            }
            best.map(|(_, a)| a)
        }
        Strategy::Skills => candidates
            .filter_map(|(a, _)| a.skill_score(needed).map(|s| (a, s)))
            .min_by_key(|(a, s)| (std::cmp::Reverse(*s), idle(a)))
            .map(|(a, _)| a),
    }
}
