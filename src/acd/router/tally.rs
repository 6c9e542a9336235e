//! Per-queue counts kept as calls change state, so that an arriving call
//! is checked against `max_waiting` and told its position without walking
//! every call. With 10,000 calls waiting, those two walks (a queue-name
//! compare per call) were a third of the engine's CPU per arrival (perf,
//! 2026-11-24). `Router::check_invariants` recounts from scratch in tests.

use std::collections::BTreeMap;

use super::queue::CallState;

/// What a call counts as; `None` for a call not (or no longer) in `calls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Waiting,
    Ringing,
    Talking,
}

impl Kind {
    pub fn of(s: &CallState) -> Kind {
        match s {
            CallState::Waiting => Kind::Waiting,
            CallState::Ringing { .. } => Kind::Ringing,
            CallState::Talking { .. } => Kind::Talking,
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct QueueTally {
    /// Waiting + ringing: what `max_waiting` limits.
    pub unanswered: usize,
    /// Waiting calls by priority (base + caller bonus).
    pub waiting: BTreeMap<i32, usize>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Tally(pub BTreeMap<String, QueueTally>);

impl Tally {
    /// A call of `queue` with `priority` went from `from` to `to`.
    pub fn moved(&mut self, queue: &str, priority: i32, from: Option<Kind>, to: Option<Kind>) {
        if from == to {
            return;
        }
        if !self.0.contains_key(queue) {
            self.0.insert(queue.to_string(), QueueTally::default());
        }
        let Some(t) = self.0.get_mut(queue) else { return };
        let unanswered = |k: Option<Kind>| matches!(k, Some(Kind::Waiting | Kind::Ringing));
        match (unanswered(from), unanswered(to)) {
            (true, false) => t.unanswered = t.unanswered.saturating_sub(1),
            (false, true) => t.unanswered += 1,
            _ => {}
        }
        if from == Some(Kind::Waiting) {
            if let Some(n) = t.waiting.get_mut(&priority) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    t.waiting.remove(&priority);
                }
            }
        }
        if to == Some(Kind::Waiting) {
            *t.waiting.entry(priority).or_default() += 1;
        }
    }

    pub fn unanswered(&self, queue: &str) -> usize {
        self.0.get(queue).map_or(0, |t| t.unanswered)
    }

    /// Waiting calls of `queue` with a priority of at least `priority`.
    pub fn waiting_at_least(&self, queue: &str, priority: i32) -> usize {
        self.0.get(queue).map_or(0, |t| t.waiting.range(priority..).map(|(_, n)| n).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_moves() {
        let mut t = Tally::default();
        t.moved("q", 0, None, Some(Kind::Waiting));
        t.moved("q", 5, None, Some(Kind::Waiting));
        t.moved("q", 0, None, Some(Kind::Waiting));
        assert_eq!((t.unanswered("q"), t.waiting_at_least("q", 0), t.waiting_at_least("q", 1)), (3, 3, 1));
        t.moved("q", 0, Some(Kind::Waiting), Some(Kind::Ringing));
        assert_eq!((t.unanswered("q"), t.waiting_at_least("q", 0)), (3, 2));
        t.moved("q", 0, Some(Kind::Ringing), Some(Kind::Talking));
        assert_eq!(t.unanswered("q"), 2);
        t.moved("q", 0, Some(Kind::Talking), None);
        t.moved("q", 5, Some(Kind::Waiting), None);
        t.moved("q", 0, Some(Kind::Waiting), None);
        assert_eq!((t.unanswered("q"), t.waiting_at_least("q", i32::MIN)), (0, 0));
        assert_eq!(t.unanswered("other"), 0);
    }
}
