//! The store thread: the one place the running engine writes to redb.
//!
//! A commit (with its fdatasync, 0.3–1.3 ms on a good disk, seconds on a
//! bad one) must never run on an executor that also answers SIP. The
//! routing shell sends each `Effect::Commit` here over a channel (a send
//! never blocks) and awaits the outcomes from a mailbox whose waker the
//! store thread fires; glommio accepts wake-ups from foreign threads. The
//! mailbox lock is taken once per commit, never per SIP message.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Poll, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::acd::retention::Sweep;
use crate::acd::routing::{apply_commit, CommitOutcome};
use crate::acd::{Store, StoreOp};

/// Test hook, off unless set: each commit first sleeps this many ms, to
/// prove that a slow disk delays durability and never SIP answers. It only
/// makes commits later, within what a slow disk does anyway.
pub const TEST_COMMIT_DELAY_ENV: &str = "CC_ENGINE_TEST_COMMIT_DELAY_MS";

/// Test hook, off unless set: while the file this names exists, a commit
/// waits before it writes (checked every 10 ms), to show `/health` a store
/// that cannot commit and then one that recovers.
pub const TEST_COMMIT_HOLD_ENV: &str = "CC_ENGINE_TEST_COMMIT_HOLD_FILE";

enum Job {
    Commit { seq: u64, ops: Vec<StoreOp> },
    /// A read for the management plane, run between commits.
    Read(StoreRead),
}

/// A read-only look at the database, run on the store thread.
pub type StoreRead = Box<dyn FnOnce(&Store) + Send>;

/// The management plane's way to read the database while the engine
/// runs: the read runs on the store thread (redb allows one open handle
/// per file), between commits, never on a shard.
#[derive(Clone)]
pub struct StoreReader(mpsc::Sender<Job>);

impl StoreReader {
    /// Queues `read`; `Err` if the store thread has ended.
    pub fn read(&self, read: StoreRead) -> Result<(), ()> {
        self.0.send(Job::Read(read)).map_err(|_| ())
    }
}

#[derive(Default)]
struct Inbox {
    outcomes: VecDeque<CommitOutcome>,
    /// The store thread ended (and closed the database).
    closed: bool,
    waker: Option<Waker>,
}

/// The routing executor's end of the store thread.
pub struct StoreThread {
    jobs: RefCell<Option<mpsc::Sender<Job>>>,
    inbox: Arc<Mutex<Inbox>>,
    thread: RefCell<Option<JoinHandle<()>>>,
}

/// Marks the inbox closed when the store thread ends, even by panic, so
/// the routing shard is not left waiting for an outcome.
struct Closing(Arc<Mutex<Inbox>>);

impl Drop for Closing {
    fn drop(&mut self) {
        deliver(&self.0, |i| i.closed = true);
    }
}

impl StoreThread {
    /// Moves `store` to a new thread that applies commits in order and,
    /// with `sweep`, runs retention between them.
    pub fn spawn(store: Store, sweep: Option<Sweep>) -> std::io::Result<StoreThread> {
        let (tx, rx) = mpsc::channel::<Job>();
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let delay = test_commit_delay();
        if let Some(d) = delay {
            tracing::warn!(delay_ms = d.as_millis() as u64, "{TEST_COMMIT_DELAY_ENV} is set: every commit is delayed");
        }
        let hold = std::env::var_os(TEST_COMMIT_HOLD_ENV).map(std::path::PathBuf::from);
        if let Some(f) = &hold {
            tracing::warn!(file = %f.display(), "{TEST_COMMIT_HOLD_ENV} is set: commits wait while that file exists");
        }
        let theirs = inbox.clone();
        let thread = std::thread::Builder::new().name("cc-store".into()).spawn(move || {
            let _closing = Closing(theirs.clone());
            // Declared after `_closing`, so dropped (database closed) before
            // the inbox says so: redb marks a database that is never
            // dropped as needing repair.
            let store = store;
            let mut sweep = sweep;
            let t0 = std::time::Instant::now();
            let mono_ms = || u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
            loop {
                // A sweep runs one batch per turn, after at most one job:
                // queued commits and batches take turns, so neither starves.
                let job = match sweep.as_ref().map(|s| s.wait_ms(mono_ms())) {
                    None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                    Some(wait) => rx.recv_timeout(Duration::from_millis(wait)),
                };
                match job {
                    Ok(Job::Commit { seq, ops }) => {
                        if let Some(d) = delay {
                            std::thread::sleep(d);
                        }
                        while hold.as_ref().is_some_and(|f| f.exists()) {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        let outcome = apply_commit(&store, seq, ops);
                        deliver(&theirs, |i| i.outcomes.push_back(outcome));
                    }
                    Ok(Job::Read(read)) => read(&store),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
                if let Some(s) = sweep.as_mut() {
                    if s.wait_ms(mono_ms()) == 0 {
                        s.step(&store, mono_ms(), super::shared::wall_ms());
                    }
                }
            }
        })?;
        Ok(StoreThread {
            jobs: RefCell::new(Some(tx)),
            inbox,
            thread: RefCell::new(Some(thread)),
        })
    }

    /// Queues a commit; never blocks. The ops come back if the thread is
    /// gone.
    pub fn commit(&self, seq: u64, ops: Vec<StoreOp>) -> Result<(), Vec<StoreOp>> {
        match self.jobs.borrow().as_ref() {
            Some(j) => j.send(Job::Commit { seq, ops }).map_err(|e| match e.0 {
                Job::Commit { ops, .. } => ops,
                Job::Read(_) => Vec::new(),
            }),
            None => Err(ops),
        }
    }

    /// A handle for reads; drop every one before `finish` can end the thread.
    pub fn reader(&self) -> Option<StoreReader> {
        self.jobs.borrow().as_ref().map(|j| StoreReader(j.clone()))
    }

    /// The next outcome, in commit order; `None` once the thread has ended
    /// and closed the database. One task awaits this (one waker is kept).
    pub async fn outcome(&self) -> Option<CommitOutcome> {
        poll_fn(|cx| {
            let Ok(mut i) = self.inbox.lock() else {
                return Poll::Ready(None);
            };
            let i = &mut *i;
            super::mailbox::poll_next(&mut i.outcomes, i.closed, &mut i.waker, cx)
        })
        .await
    }

    /// No more commits: the thread ends after those queued, closes the
    /// database, and `outcome` then returns `None`.
    pub fn finish(&self) {
        self.jobs.borrow_mut().take();
    }

    /// Waits for the thread to return; call after `outcome` returned `None`
    /// (it has closed the database by then, so this is short).
    pub fn join(&self) {
        if let Some(t) = self.thread.borrow_mut().take() {
            if t.join().is_err() {
                tracing::error!("store thread panicked");
            }
        }
    }
}

/// Updates the inbox and wakes the waiting task outside the lock.
fn deliver(inbox: &Mutex<Inbox>, f: impl FnOnce(&mut Inbox)) {
    let waker = match inbox.lock() {
        Ok(mut i) => {
            f(&mut i);
            i.waker.take()
        }
        Err(_) => None,
    };
    if let Some(w) = waker {
        w.wake();
    }
}

fn test_commit_delay() -> Option<Duration> {
    let ms: u64 = std::env::var(TEST_COMMIT_DELAY_ENV).ok()?.trim().parse().ok()?;
    (ms > 0).then(|| Duration::from_millis(ms))
}

#[cfg(test)]
#[path = "store_thread_tests.rs"]
mod tests;
