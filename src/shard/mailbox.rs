//! The receiving step shared by the cross-thread mailboxes that wake a
//! glommio task from another thread (the store thread's outcomes, the
//! management plane's commands): take the next item, or, if none, remember
//! the task's waker so the sender can wake it.

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

/// The next item of `queue`; `None` once `closed` and drained; otherwise
/// pending, with `waker` set to this task's (kept when it would wake the
/// same task, so a busy poll loop does not clone it each time).
pub fn poll_next<T>(queue: &mut VecDeque<T>, closed: bool, waker: &mut Option<Waker>, cx: &Context<'_>) -> Poll<Option<T>> {
    if let Some(item) = queue.pop_front() {
        return Poll::Ready(Some(item));
    }
    if closed {
        return Poll::Ready(None);
    }
    match waker {
        Some(w) if w.will_wake(cx.waker()) => {}
        slot => *slot = Some(cx.waker().clone()),
    }
    Poll::Pending
}
