//! The routing shard: sole owner of agents, registrations, queues and CDRs,
//! and the only writer of the redb database, so nothing on the call path
//! takes a lock.
//!
//! Registrations and decisions are answered as soon as they are made; what
//! they change reaches the disk in the next group commit, at most
//! `group_commit_ms` later. That interval is what a `kill -9` can lose
//! (README, "Persistence").

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use glommio::channels::shared_channel::{ConnectedSender, SharedReceiver, SharedSender};

use super::shared::{housekeeping, Shared};
use super::wake::Wake;
use crate::acd::{
    contacts_of, AgentDef, Change, GroupCommit, Registrar, RegistrarConfig, Router, RouterEvent,
    RouterOutput, Store, StoreOp,
};
use crate::config::Config;
use crate::engine::{FromRouting, ToRouting};
use crate::mgmt::Sample;

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

/// The routing shard's protocol state.
struct State {
    registrar: Registrar,
    router: Router,
    /// `None` once closed at shutdown: the detached tasks that share this
    /// state may outlive the executor's main future, and redb marks a
    /// database that is never dropped as needing repair.
    store: Option<Store>,
    /// Changes decided but not yet committed.
    pending: GroupCommit<StoreOp>,
    /// Decisions waiting to be sent: (shard, message).
    outbox: Vec<(u16, FromRouting)>,
    registers: [u64; 10],
    facts: u64,
    decisions: u64,
    commits: u64,
    commit_errors: u64,
    agents_dirty: bool,
}

impl State {
    fn handle(&mut self, msg: ToRouting, now: u64) {
        match msg {
            ToRouting::Register { shard, tx, req } => {
                let out = self.registrar.handle_register(&req, now);
                tracing::debug!(agent = %req.user, status = out.reply.status(), src = %req.source, "REGISTER");
                if let Some(c) = self.registers.get_mut(usize::from(out.reply.status() / 100)) {
                    *c += 1;
                }
                self.apply_changes(out.changes, now);
                self.outbox.push((shard, FromRouting::RegisterReply { tx, reply: out.reply }));
            }
            ToRouting::Call(fact) => {
                self.facts += 1;
                self.router.call_fact(fact, now);
            }
        }
        self.drain_router(now);
    }

    /// Registrar changes go to the store, and each touched agent's live
    /// contacts to the router (an agent without contacts is offline).
    fn apply_changes(&mut self, changes: Vec<Change>, now: u64) {
        if changes.is_empty() {
            return;
        }
        self.agents_dirty = true;
        let mut touched: Vec<String> = Vec::new();
        for c in changes {
            match &c {
                Change::Upsert(b) => {
                    if b.registered_at_ms == now {
                        tracing::info!(agent = %b.agent, contact = %b.contact_uri, target = %b.target, "agent registered");
                    }
                    touched.push(b.agent.clone());
                }
                Change::Remove { agent, contact } => {
                    tracing::info!(%agent, %contact, "agent contact removed");
                    touched.push(agent.clone());
                }
            }
            self.pending.push(StoreOp::Binding(c), now);
        }
        touched.sort();
        touched.dedup();
        for agent in touched {
            self.refresh_contacts(&agent, now);
        }
    }

    fn refresh_contacts(&mut self, agent: &str, now: u64) {
        let contacts = contacts_of(&self.registrar.live_bindings(agent, now));
        if let Err(e) = self.router.agent_contacts(agent, contacts, now) {
            tracing::warn!(%agent, error = %e, "router refused contacts");
        }
    }

    fn drain_router(&mut self, now: u64) {
        while let Some(o) = self.router.poll_output() {
            match o {
                RouterOutput::Decision(d) => {
                    self.decisions += 1;
                    self.outbox.push((d.call().shard(), FromRouting::Decision(d)));
                }
                RouterOutput::Persist(op) => self.pending.push(op, now),
                RouterOutput::Event(e) => log_event(&e),
            }
        }
    }

    fn on_timer(&mut self, now: u64) {
        if self.registrar.next_expiry().is_some_and(|t| t <= now) {
            let gone = self.registrar.reap(now);
            if !gone.is_empty() {
                tracing::info!(expired = gone.len(), "registrations expired");
            }
            self.apply_changes(gone, now);
        }
        if self.router.next_timeout().is_some_and(|t| t <= now) {
            self.router.handle_timeout(now);
        }
        self.drain_router(now);
        if self.pending.due(now) {
            self.commit();
        }
    }

    /// The earliest wall-clock ms at which `on_timer` has work.
    fn next_deadline(&self) -> Option<u64> {
        [self.registrar.next_expiry(), self.router.next_timeout(), self.pending.deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Commits what is pending. On failure the changes stay pending and the
    /// next deadline retries: a full disk must not lose state silently.
    fn commit(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let Some(store) = &self.store else {
            return;
        };
        match self.pending.flush(store) {
            Ok(_) => self.commits += 1,
            Err(e) => {
                self.commit_errors += 1;
                tracing::error!(error = %e, pending = self.pending.len(), "group commit failed; will retry");
            }
        }
    }

    fn agents_lines(&self) -> Vec<serde_json::Value> {
        let mut bindings: Vec<_> = self.registrar.all_bindings().collect();
        bindings.sort_by(|a, b| (&a.agent, &a.contact_uri).cmp(&(&b.agent, &b.contact_uri)));
        bindings
            .into_iter()
            .map(|b| {
                serde_json::json!({
                    "agent": b.agent,
                    "contact": b.contact_uri,
                    "target": b.target.to_string(),
                    "received": b.received.map(|r| r.to_string()),
                    "expires_at_ms": b.expires_at_ms,
                    "user_agent": b.user_agent,
                })
            })
            .collect()
    }

    fn samples(&self, now: u64) -> (Vec<Sample>, serde_json::Value) {
        let mut v = Vec::new();
        for (class, n) in self.registers.iter().enumerate().filter(|(_, n)| **n > 0) {
            v.push(Sample::new("cc_registrations_total", format!("class=\"{class}xx\""), *n));
        }
        v.push(Sample::new("cc_registered_contacts", "", self.registrar.all_bindings().count() as u64));
        v.push(Sample::new("cc_routing_facts_total", "", self.facts));
        v.push(Sample::new("cc_routing_decisions_total", "", self.decisions));
        v.push(Sample::new("cc_store_commits_total", "", self.commits));
        v.push(Sample::new("cc_store_commit_errors_total", "", self.commit_errors));
        v.push(Sample::new("cc_store_pending_changes", "", self.pending.len() as u64));
        let snap = self.router.snapshot(now);
        for q in &snap.queues {
            let l = |extra: &str| format!("queue=\"{}\"{extra}", q.name);
            v.push(Sample::new("cc_queue_calls", l(",state=\"waiting\""), q.waiting as u64));
            v.push(Sample::new("cc_queue_calls", l(",state=\"ringing\""), q.ringing as u64));
            v.push(Sample::new("cc_queue_calls", l(",state=\"talking\""), q.talking as u64));
            v.push(Sample::new("cc_queue_longest_wait_ms", l(""), q.longest_wait_ms));
            v.push(Sample::new("cc_queue_agents_online", l(""), q.agents_online as u64));
            v.push(Sample::new("cc_queue_agents_available", l(""), q.agents_available as u64));
        }
        for a in &snap.agents {
            let status = serde_json::to_value(a.status).ok();
            let status = status.as_ref().and_then(|s| s.as_str()).unwrap_or("unknown");
            v.push(Sample::new("cc_agent_status", format!("agent=\"{}\",status=\"{status}\"", a.id), 1));
            v.push(Sample::new("cc_agent_answered_total", format!("agent=\"{}\"", a.id), a.answered));
        }
        (v, serde_json::to_value(&snap).unwrap_or_default())
    }
}

/// One info line per call event; per-message detail stays at debug.
fn log_event(e: &RouterEvent) {
    match e {
        RouterEvent::Ignored { call, fact } => tracing::debug!(%call, fact, "stale fact ignored"),
        other => tracing::info!(event = ?other, "acd"),
    }
}

pub async fn run(ctx: Context) {
    let Context { cfg, store, inbox, outbox, shared, slot } = ctx;
    let now = now_ms();
    let agents = cfg.agents.iter().map(|a| {
        let mut d = AgentDef::new(a.id.clone(), a.password.clone());
        d.max_calls = a.max_calls;
        d.queues = a.queues.clone();
        d
    });
    let rc = RegistrarConfig {
        realm: cfg.sip.realm.clone(),
        default_expires: cfg.registrar.default_expires,
        min_expires: cfg.registrar.min_expires,
        max_expires: cfg.registrar.max_expires,
        max_contacts: cfg.registrar.max_contacts as usize,
        nonce_lifetime_ms: u64::from(cfg.registrar.nonce_lifetime_s) * 1000,
        algorithms: cfg
            .registrar
            .algorithms
            .iter()
            .filter_map(|a| crate::sip::auth::Algorithm::parse(a))
            .collect(),
        ..RegistrarConfig::new(cfg.sip.realm.clone())
    };
    let loaded = store
        .nonce_secret()
        .and_then(|k| Ok((k, store.load_bindings()?, store.load_router_state()?)));
    let (nonce_key, stored, restore) = match loaded {
        Ok((k, b, r)) => (crate::sip::auth::NonceKey::from_secret(k), b, r),
        Err(e) => {
            // The database opened but cannot be read: refuse to run rather
            // than silently forget every registration and live call.
            tracing::error!(error = %e, "cannot load state; stopping");
            shared.shutdown.store(true, Ordering::Relaxed);
            return;
        }
    };
    let mut registrar = Registrar::new(rc, agents, nonce_key);
    let restored = stored.len();
    let expired = registrar.restore(stored, now);
    let (router, startup) = Router::new(&cfg.queues, &cfg.agents, restore, now);
    let mut state = State {
        registrar,
        router,
        store: Some(store),
        pending: GroupCommit::new(cfg.engine.group_commit_ms, 4096),
        outbox: Vec::new(),
        registers: [0; 10],
        facts: 0,
        decisions: 0,
        commits: 0,
        commit_errors: 0,
        agents_dirty: true,
    };
    let restart_cdrs = startup.len();
    for o in startup {
        if let RouterOutput::Persist(op) = o {
            state.pending.push(op, now);
        }
    }
    for c in expired {
        state.pending.push(StoreOp::Binding(c), now);
    }
    for a in &cfg.agents {
        state.refresh_contacts(&a.id, now);
    }
    state.drain_router(now);
    // Calls that died with the previous process get their CDRs before any
    // new call is taken.
    state.commit();
    tracing::info!(restored, restart_outputs = restart_cdrs, "state loaded");
    let state = Rc::new(RefCell::new(state));

    // Connect every end from its own task: connect() waits for the peer.
    let outbox: Vec<_> = outbox.into_iter().map(|t| glommio::spawn_local(t.connect())).collect();
    let inbox: Vec<_> = inbox.into_iter().map(|r| glommio::spawn_local(r.connect())).collect();
    let mut senders: Vec<ConnectedSender<FromRouting>> = Vec::with_capacity(outbox.len());
    for tx in outbox {
        senders.push(tx.await);
    }
    let senders = Rc::new(senders);
    tracing::debug!("routing senders connected");
    let (wake, wake_rx) = Wake::new();
    let wake = Rc::new(wake);
    for rx in inbox {
        let rx = rx.await;
        let (state, senders, wake) = (state.clone(), senders.clone(), wake.clone());
        glommio::spawn_local(async move {
            let mut out = Vec::new();
            while let Some(msg) = rx.recv().await {
                let now = now_ms();
                {
                    let mut s = state.borrow_mut();
                    s.handle(msg, now);
                    std::mem::swap(&mut out, &mut s.outbox);
                    wake.check(s.next_deadline().map(|t| instant_at(t, now)));
                }
                send_all(&senders, &mut out).await;
            }
        })
        .detach();
    }
    // Timers: registration expiry, router timers (wrap-up, max wait), and
    // the group commit deadline, whichever is first.
    {
        let (state, senders, wake) = (state.clone(), senders.clone(), wake.clone());
        glommio::spawn_local(async move {
            let mut out = Vec::new();
            loop {
                let now = now_ms();
                let next = state.borrow().next_deadline().map(|t| instant_at(t, now));
                wake.arm(next);
                let d = super::wake::sleep_for(next, Instant::now());
                futures_lite::future::or(glommio::timer::sleep(d), async {
                    let _ = wake_rx.recv().await;
                })
                .await;
                let now = now_ms();
                {
                    let mut s = state.borrow_mut();
                    s.on_timer(now);
                    std::mem::swap(&mut out, &mut s.outbox);
                }
                send_all(&senders, &mut out).await;
            }
        })
        .detach();
    }
    {
        let s = state.borrow();
        let (samples, queues) = s.samples(now_ms());
        shared.board.publish(slot, samples);
        shared.board.publish_queues(queues);
        shared.board.publish_agents(s.agents_lines());
    }
    let _ = shared.ready.send("routing".into());
    let samples_state = state.clone();
    let board = shared.board.clone();
    // Snapshots for the management plane when it asks: the agents list is
    // rebuilt only when a registration changed too, never per REGISTER (it
    // is O(bindings)).
    housekeeping(slot, &shared, || {
        let mut s = samples_state.borrow_mut();
        if s.agents_dirty {
            s.agents_dirty = false;
            board.publish_agents(s.agents_lines());
        }
        let (samples, queues) = s.samples(now_ms());
        board.publish_queues(queues);
        samples
    })
    .await;
    // Shutdown: whatever is decided reaches the disk, and the database is
    // closed, before we return.
    let mut s = state.borrow_mut();
    s.commit();
    drop(s.store.take());
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
