//! What every executor of the engine shares with the main thread, and the
//! housekeeping loop they all run: the signalling shards, the routing shard
//! and `runtime` (which starts them) use these, so they live apart from
//! each of them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::mgmt::{Board, Control, Sample};

/// Everything an executor shares with the main thread.
#[derive(Clone)]
pub struct Shared {
    pub board: Arc<Board>,
    /// Operator commands in, events out (the routing shard's end).
    pub control: Arc<Control>,
    pub shutdown: Arc<AtomicBool>,
    /// Bumped by each executor's housekeeping tick; the watchdog is only
    /// fed while all of them move.
    pub heartbeats: Arc<Vec<AtomicU64>>,
    pub ready: mpsc::Sender<String>,
    /// Each executor's [`ExitNotice`] reports here when it ends, even by panic.
    pub exited: mpsc::Sender<String>,
}

/// Tells the main thread an executor ended, however it ended: the drop runs
/// on return and on unwinding.
pub struct ExitNotice {
    name: String,
    tx: mpsc::Sender<String>,
}

impl ExitNotice {
    pub fn new(name: &str, shared: &Shared) -> ExitNotice {
        ExitNotice { name: name.to_string(), tx: shared.exited.clone() }
    }
}

impl Drop for ExitNotice {
    fn drop(&mut self) {
        let _ = self.tx.send(self.name.clone());
    }
}

/// Wall-clock unix ms: registrations and CDRs outlive restarts, so their
/// times are wall-clock. Read here, at the edge, and passed in.
pub fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Heartbeat and the shutdown check every 100 ms, and metrics publication
/// when the management plane asked for them (see `mgmt::Board`).
pub async fn housekeeping(slot: usize, shared: &Shared, samples: impl Fn() -> Vec<Sample>) {
    let mut last = 0;
    while !shared.shutdown.load(Ordering::Relaxed) {
        glommio::timer::sleep(Duration::from_millis(100)).await;
        if let Some(b) = shared.heartbeats.get(slot) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(r) = shared.board.wanted(last) {
            shared.board.publish(slot, samples());
            shared.board.answered(slot, r);
            last = r;
        }
    }
}
