//! Reporting counters kept by the router and persisted with its state, so
//! a restart does not reset them: per queue (over the current UTC day and
//! since the database was created) and per agent.

use serde::{Deserialize, Serialize};

use super::router::Misses;

const DAY_MS: u64 = 86_400_000;

/// One queue's counters over one window. A call entering the queue is
/// `offered`; it leaves as exactly one of answered, abandoned, timed out,
/// overflowed (moved to another queue) or failed. Callers refused at the
/// door (full, empty) are `rejected` and not offered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueCounters {
    pub offered: u64,
    pub answered: u64,
    pub abandoned: u64,
    pub timed_out: u64,
    pub overflowed: u64,
    pub failed: u64,
    pub rejected: u64,
    /// Sum of answered calls' waits (arrival → answer).
    pub wait_ms_answered: u64,
    /// Longest wait of any caller that left the queue, answered or not.
    pub longest_wait_ms: u64,
    pub talk_ms: u64,
    /// Answered within the queue's `service_level_s`.
    pub answered_in_sl: u64,
}

impl QueueCounters {
    pub fn avg_wait_ms(&self) -> u64 {
        self.wait_ms_answered.checked_div(self.answered).unwrap_or(0)
    }

    /// Answered calls' average talk time; a call's talk is counted when it
    /// ends.
    pub fn avg_talk_ms(&self) -> u64 {
        self.talk_ms.checked_div(self.answered).unwrap_or(0)
    }

    /// Answered within the threshold ÷ answered, in percent.
    pub fn service_level_answered(&self) -> Option<f64> {
        (self.answered > 0).then(|| 100.0 * self.answered_in_sl as f64 / self.answered as f64)
    }

    /// Answered within the threshold ÷ (answered + abandoned), in percent.
    pub fn service_level_offered(&self) -> Option<f64> {
        let n = self.answered + self.abandoned;
        (n > 0).then(|| 100.0 * self.answered_in_sl as f64 / n as f64)
    }
}

/// A queue's counters for today (UTC) and in total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueStats {
    /// Days since the epoch (UTC) that `today` counts.
    pub day: u64,
    pub today: QueueCounters,
    pub total: QueueCounters,
}

impl QueueStats {
    /// Applies `f` to both windows, starting a new day first if `now_ms`
    /// is in one.
    pub fn update(&mut self, now_ms: u64, f: impl Fn(&mut QueueCounters)) {
        self.roll(now_ms);
        f(&mut self.today);
        f(&mut self.total);
    }

    /// Today's counters start from zero at UTC midnight.
    pub fn roll(&mut self, now_ms: u64) {
        let day = now_ms / DAY_MS;
        if day != self.day {
            self.day = day;
            self.today = QueueCounters::default();
        }
    }
}

/// An agent's counters since the database was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentCounters {
    pub answered: u64,
    pub missed: Misses,
    pub talk_ms: u64,
    /// Time spent paused, counted when a pause ends.
    pub pause_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_levels_and_averages() {
        let c = QueueCounters { answered: 4, abandoned: 1, answered_in_sl: 3, wait_ms_answered: 40_000, talk_ms: 8_000, ..Default::default() };
        assert_eq!(c.service_level_answered(), Some(75.0));
        assert_eq!(c.service_level_offered(), Some(60.0));
        assert_eq!((c.avg_wait_ms(), c.avg_talk_ms()), (10_000, 2_000));
        assert_eq!(QueueCounters::default().service_level_answered(), None);
    }

    #[test]
    fn today_starts_again_at_utc_midnight_total_does_not() {
        let mut s = QueueStats::default();
        let t = 20_000 * DAY_MS + 5;
        s.update(t, |c| c.offered += 1);
        s.update(t + DAY_MS - 6, |c| c.offered += 1);
        assert_eq!((s.today.offered, s.total.offered), (2, 2));
        s.update(t + DAY_MS, |c| c.offered += 1);
        assert_eq!((s.today.offered, s.total.offered, s.day), (1, 3, 20_001));
    }
}
