//! Re-arming a sleeping timer task when an earlier deadline appears.
//!
//! The timer task sleeps until the core's next deadline. Input handled by
//! another task can create an earlier one; it then pokes the timer task
//! through a one-slot local channel instead of the timer polling.

use std::cell::Cell;
use std::time::{Duration, Instant};

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

pub struct Wake {
    armed: Cell<Option<Instant>>,
    tx: LocalSender<()>,
}

impl Wake {
    pub fn new() -> (Wake, LocalReceiver<()>) {
        let (tx, rx) = local_channel::new_bounded(1);
        (Wake { armed: Cell::new(None), tx }, rx)
    }

    /// Called by the timer task with the deadline it is about to sleep until.
    pub fn arm(&self, at: Option<Instant>) {
        self.armed.set(at);
    }

    /// Called after handling input: wakes the timer task if `next` is sooner
    /// than what it sleeps for.
    pub fn check(&self, next: Option<Instant>) {
        let sooner = match (next, self.armed.get()) {
            (Some(n), Some(a)) => n < a,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if sooner {
            // Full means a wake-up is already pending: nothing to add.
            let _ = self.tx.try_send(());
        }
    }
}

/// How long to sleep until `at`; `None` sleeps for a long, bounded time so
/// housekeeping (shutdown) is still noticed by the caller's loop.
pub fn sleep_for(at: Option<Instant>, now: Instant) -> Duration {
    match at {
        Some(t) => t.saturating_duration_since(now),
        None => Duration::from_secs(3600),
    }
}
