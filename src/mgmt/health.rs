//! `/health`: whether every executor still ticks and the store commits.
//!
//! Pure bookkeeping with time passed in; the HTTP thread feeds it the
//! executors' heartbeat counters (the ones the systemd watchdog reads).

use std::time::{Duration, Instant};

/// An executor whose counter has not moved for this long is stuck: its
/// housekeeping tick is 100 ms, so this is thirty missed ticks.
pub const STALL: Duration = Duration::from_secs(3);

/// Each executor's last heartbeat value and when it last changed.
pub struct Beats {
    names: Vec<String>,
    last: Vec<(u64, Instant)>,
}

impl Beats {
    /// `names[i]` names the executor of heartbeat `i`.
    pub fn new(names: Vec<String>, now: Instant) -> Beats {
        let last = names.iter().map(|_| (0, now)).collect();
        Beats { names, last }
    }

    pub fn observe(&mut self, now: Instant, beats: impl IntoIterator<Item = u64>) {
        for (slot, b) in self.last.iter_mut().zip(beats) {
            if slot.0 != b {
                *slot = (b, now);
            }
        }
    }

    /// Executors silent for longer than [`STALL`], with how long.
    pub fn stalled(&self, now: Instant) -> Vec<(String, Duration)> {
        self.names
            .iter()
            .zip(&self.last)
            .filter_map(|(n, (_, at))| {
                let quiet = now.saturating_duration_since(*at);
                (quiet > STALL).then(|| (n.clone(), quiet))
            })
            .collect()
    }
}

/// A store commit running longer than this means the store cannot commit
/// (a hung disk, a full one that blocks): a healthy one takes
/// milliseconds, a slow one a second.
pub const COMMIT_STALL_MS: u64 = 3_000;

/// Why the store is unhealthy when its running commit is `running_ms` old.
pub fn commit_stalled(running_ms: u64) -> Option<String> {
    (running_ms > COMMIT_STALL_MS)
        .then(|| format!("store: a commit has been running for {:.1} s", running_ms as f64 / 1000.0))
}

/// The store's commit counters at one look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Commits {
    pub ok: u64,
    pub errors: u64,
}

/// The store is failing when commits failed since the previous look and
/// none succeeded (failed changes stay pending and are retried, so one
/// success means the disk is back).
pub fn store_failing(before: Commits, now: Commits) -> bool {
    now.errors > before.errors && now.ok == before.ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_executor_is_stalled() {
        let t0 = Instant::now();
        let mut b = Beats::new(vec!["shard 0".into(), "routing".into()], t0);
        b.observe(t0 + Duration::from_secs(1), [1, 1]);
        assert!(b.stalled(t0 + Duration::from_secs(2)).is_empty());
        // shard 0 keeps ticking, routing stops.
        b.observe(t0 + Duration::from_secs(4), [5, 1]);
        let s = b.stalled(t0 + Duration::from_millis(4500));
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].0, "routing");
        assert_eq!(s[0].1, Duration::from_millis(3500));
    }

    #[test]
    fn a_commit_that_does_not_come_back_is_a_failing_store() {
        assert_eq!(commit_stalled(0), None);
        assert_eq!(commit_stalled(COMMIT_STALL_MS), None);
        let why = commit_stalled(4_500).expect("stalled");
        assert!(why.starts_with("store:") && why.contains("4.5 s"), "{why}");
    }

    #[test]
    fn the_store_fails_only_without_a_success() {
        let c = |ok, errors| Commits { ok, errors };
        assert!(!store_failing(c(0, 0), c(5, 0)));
        assert!(store_failing(c(0, 0), c(0, 2)));
        assert!(store_failing(c(5, 1), c(5, 3)));
        assert!(!store_failing(c(5, 1), c(6, 3)), "a later success means it recovered");
        assert!(!store_failing(c(5, 3), c(5, 3)));
    }
}
