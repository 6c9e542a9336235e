//! The routing shard's shell: sole owner of agents, registrations, queues
//! and CDRs, and the only writer of the redb database, so nothing on the
//! call path takes a lock.
//!
//! The protocol state is `acd::routing::Routing` (sans-IO); this shell only
//! feeds it shard messages, timers and commit outcomes, sends its decisions
//! to the shards, and hands its commits to the store thread
//! (`store_thread.rs`), so no disk wait ever runs on this executor, which
//! may be a signalling shard's. Registrations and decisions are answered as
//! soon as they are made; what they change reaches the disk in the next
//! group commit, at most `group_commit_ms` later plus the time of a commit
//! already running. That is what a `kill -9` can lose (README,
//! "Persistence").

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use glommio::channels::local_channel::{self, LocalSender};
use glommio::channels::shared_channel::{ConnectedSender, SharedReceiver, SharedSender};

use super::shared::{housekeeping, Shared};
use super::store_thread::StoreThread;
use super::wake::Wake;
use crate::acd::routing::{CommitOutcome, Effect, Input, Loaded, Routing};
use crate::acd::{Store, StoreError};
use crate::config::Config;
use crate::engine::{FromRouting, ToRouting};
use crate::mgmt::Control;

pub struct Context {
    pub cfg: Config,
    pub store: Store,
    pub inbox: Vec<SharedReceiver<ToRouting>>,
    pub outbox: Vec<SharedSender<FromRouting>>,
    pub shared: Shared,
    pub slot: usize,
}

/// Wall-clock milliseconds: registrations and CDRs outlive restarts, so
/// their times are wall-clock. Read here, at the edge, and passed in.
fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// What the routing shard's tasks share: the integrator, the store
/// thread, and the timer task's wake-up.
struct Shell {
    routing: RefCell<Routing>,
    store: StoreThread,
    wake: Wake,
    /// Told once the integrator says `Stopped` after shutdown.
    stopped: LocalSender<()>,
    /// Where operators' commands come from and their answers go.
    control: Arc<Control>,
    /// Signalling shards (each gets the call settings after a reload).
    shards: u16,
}

impl Shell {
    /// Feeds one input, hands commits to the store thread (a channel send,
    /// never a disk wait) and leaves the messages for shards in `out`.
    fn step(&self, input: Input, out: &mut Vec<(u16, FromRouting)>) {
        let mut r = self.routing.borrow_mut();
        let mut next = Some(input);
        while let Some(input) = next.take() {
            let now = now_ms();
            r.handle(input, now);
            while let Some(e) = r.poll_effect() {
                match e {
                    Effect::ToShard(shard, msg) => out.push((shard, msg)),
                    Effect::Commit { seq, ops } => {
                        if let Err(ops) = self.store.commit(seq, ops) {
                            // At most one commit is in flight, so at most one
                            // comes back; the integrator retries it later.
                            let result = Err(StoreError::ThreadGone);
                            next = Some(Input::Committed(CommitOutcome { seq, ops, result }));
                        }
                    }
                    Effect::Stopped => {
                        let _ = self.stopped.try_send(());
                    }
                    Effect::CommandDone { id, result } => self.control.commands.answer(id, result),
                    Effect::CallConfig(c) => {
                        for shard in 0..self.shards {
                            out.push((shard, FromRouting::CallConfig(c.clone())));
                        }
                    }
                }
            }
            self.wake.check(r.poll_timeout().map(|t| instant_at(t, now)));
            // Events for the live stream, handed over under one lock.
            let mut events = Vec::new();
            while let Some(e) = r.poll_event() {
                events.extend(crate::mgmt::events::router_event(&e, now));
            }
            if !events.is_empty() {
                self.control.events.publish(events);
            }
        }
    }
}

pub async fn run(ctx: Context) {
    let Context { cfg, store, inbox, outbox, shared, slot } = ctx;
    let loaded = match Loaded::from_store(&store) {
        Ok(l) => l,
        Err(e) => {
            // The database opened but cannot be read: refuse to run rather
            // than silently forget every registration and live call.
            tracing::error!(error = %e, "cannot load state; stopping");
            shared.shutdown.store(true, Ordering::Relaxed);
            return;
        }
    };
    let sweep = crate::acd::retention::Sweep::new(crate::acd::retention::RetentionConfig::from_engine(&cfg.engine), 0);
    let store = match StoreThread::spawn(store, Some(sweep)) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the store thread; stopping");
            shared.shutdown.store(true, Ordering::Relaxed);
            return;
        }
    };
    shared.control.set_store(store.reader());
    let mut routing = Routing::new(&cfg, loaded, now_ms());
    // Kept for the live event stream, drained after every step.
    routing.keep_events();
    let shards = u16::try_from(outbox.len()).unwrap_or(u16::MAX);
    let (wake, wake_rx) = Wake::new();
    let (stopped_tx, stopped_rx) = local_channel::new_bounded(1);
    let control = shared.control.clone();
    let shell = Rc::new(Shell { routing: RefCell::new(routing), store, wake, stopped: stopped_tx, control, shards });

    // Calls that died with the previous process get their CDRs before any
    // new call is taken: no shard is connected until that commit is done.
    let mut early = Vec::new();
    // The first step hands the start-up commit, queued by `Routing::new`,
    // to the store thread.
    shell.step(Input::Timer, &mut early);
    while !shell.routing.borrow().startup_committed() {
        let next = shell.routing.borrow().poll_timeout().map(|t| instant_at(t, now_ms()));
        let d = super::wake::sleep_for(next, Instant::now());
        let input = futures_lite::future::or(
            async { shell.store.outcome().await.map(Input::Committed) },
            async {
                glommio::timer::sleep(d).await;
                Some(Input::Timer)
            },
        )
        .await;
        let Some(input) = input else {
            tracing::error!("store thread ended during start-up; stopping");
            shared.shutdown.store(true, Ordering::Relaxed);
            return;
        };
        shell.step(input, &mut early);
    }

    // Connect every end from its own task: connect() waits for the peer.
    let outbox: Vec<_> = outbox.into_iter().map(|t| glommio::spawn_local(t.connect())).collect();
    let inbox: Vec<_> = inbox.into_iter().map(|r| glommio::spawn_local(r.connect())).collect();
    let mut senders: Vec<ConnectedSender<FromRouting>> = Vec::with_capacity(outbox.len());
    for tx in outbox {
        senders.push(tx.await);
    }
    let senders = Rc::new(senders);
    tracing::debug!("routing senders connected");
    send_all(&senders, &mut early).await;
    for rx in inbox {
        let rx = rx.await;
        let (shell, senders) = (shell.clone(), senders.clone());
        glommio::spawn_local(async move {
            let mut out = Vec::new();
            while let Some(msg) = rx.recv().await {
                shell.step(Input::Shard(msg), &mut out);
                send_all(&senders, &mut out).await;
            }
        })
        .detach();
    }
    // Commit outcomes from the store thread; when it has ended (database
    // closed), the shutdown below is told.
    let (closed_tx, closed_rx) = local_channel::new_bounded::<()>(1);
    {
        let (shell, senders) = (shell.clone(), senders.clone());
        glommio::spawn_local(async move {
            let mut out = Vec::new();
            while let Some(o) = shell.store.outcome().await {
                shell.step(Input::Committed(o), &mut out);
                send_all(&senders, &mut out).await;
            }
            // Ended before answering a commit: only a panic does that, and
            // that commit's ops went with it. Failing it lets later commits
            // be tried (and counted as errors) and shutdown finish.
            let lost = shell.routing.borrow().in_flight();
            if let Some(seq) = lost {
                tracing::error!(seq, "store thread ended during a commit; its changes are lost");
                let result = Err(StoreError::ThreadGone);
                shell.step(Input::Committed(CommitOutcome { seq, ops: Vec::new(), result }), &mut out);
                send_all(&senders, &mut out).await;
            }
            let _ = closed_tx.try_send(());
        })
        .detach();
    }
    // Operators' commands from the management thread, one at a time; each
    // is answered as soon as the integrator has handled it.
    {
        let (shell, senders) = (shell.clone(), senders.clone());
        glommio::spawn_local(async move {
            let mut out = Vec::new();
            while let Some((id, cmd)) = shell.control.commands.next().await {
                shell.step(Input::Command { id, cmd }, &mut out);
                send_all(&senders, &mut out).await;
            }
        })
        .detach();
    }
    // Timers: registration expiry, router timers (wrap-up, max wait), the
    // group commit deadline and a failed commit's retry, whichever is first.
    {
        let (shell, senders) = (shell.clone(), senders.clone());
        glommio::spawn_local(async move {
            let mut out = Vec::new();
            loop {
                let next = shell.routing.borrow().poll_timeout().map(|t| instant_at(t, now_ms()));
                shell.wake.arm(next);
                let d = super::wake::sleep_for(next, Instant::now());
                futures_lite::future::or(glommio::timer::sleep(d), async {
                    let _ = wake_rx.recv().await;
                })
                .await;
                shell.step(Input::Timer, &mut out);
                send_all(&senders, &mut out).await;
            }
        })
        .detach();
    }
    {
        let r = shell.routing.borrow();
        let (samples, queues) = r.samples(now_ms());
        shared.board.publish(slot, samples);
        shared.board.publish_queues(queues);
        shared.board.publish_agents(r.agents_lines());
    }
    let _ = shared.ready.send("routing".into());
    let board = shared.board.clone();
    // Snapshots for the management plane when it asks: the agents list is
    // rebuilt only when a registration changed too, never per REGISTER (it
    // is O(bindings)).
    housekeeping(slot, &shared, || {
        let mut r = shell.routing.borrow_mut();
        if r.take_agents_dirty() {
            board.publish_agents(r.agents_lines());
        }
        let (samples, queues) = r.samples(now_ms());
        board.publish_queues(queues);
        samples
    })
    .await;
    // Shutdown: whatever is decided reaches the disk, and the database is
    // closed, before we return.
    shell.control.commands.close();
    let mut out = Vec::new();
    shell.step(Input::Shutdown, &mut out);
    send_all(&senders, &mut out).await;
    let _ = stopped_rx.recv().await;
    // The management plane's read handle would keep the thread alive.
    shell.control.set_store(None);
    shell.store.finish();
    let _ = closed_rx.recv().await;
    shell.store.join();
    tracing::debug!("routing shard stopped");
}

/// The monotonic instant of a wall-clock deadline, for the timer task.
fn instant_at(deadline_ms: u64, now_ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

async fn send_all(senders: &[ConnectedSender<FromRouting>], out: &mut Vec<(u16, FromRouting)>) {
    for (shard, msg) in out.drain(..) {
        match senders.get(usize::from(shard)) {
            Some(tx) => {
                if tx.send(msg).await.is_err() {
                    tracing::warn!(shard, "shard is gone; message dropped");
                }
            }
            None => tracing::warn!(shard, "decision for a shard that does not exist"),
        }
    }
}
