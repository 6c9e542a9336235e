//! The routing shard: sole owner of agents and registrations, and the only
//! writer of the redb database, so nothing on the call path takes a lock.
//!
//! Registrations are answered as soon as the registrar decides; the changes
//! reach the disk in the next group commit, at most `group_commit_ms` later.
//! That interval is what a `kill -9` can lose (README, "Persistence").

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use glommio::channels::shared_channel::{ConnectedSender, SharedReceiver, SharedSender};

use super::messages::{FromRouting, ToRouting};
use super::runtime::Shared;
use super::signalling::housekeeping;
use crate::acd::{AgentDef, Change, GroupCommit, Registrar, RegistrarConfig, Store};
use crate::config::Config;
use crate::mgmt::Sample;

pub struct Context {
    pub cfg: Config,
    pub store: Store,
    pub inbox: Vec<SharedReceiver<ToRouting>>,
    pub outbox: Vec<SharedSender<FromRouting>>,
    pub shared: Shared,
    pub slot: usize,
}

/// Wall-clock milliseconds: registrations outlive restarts, so their expiry
/// is wall-clock time. Read here, at the edge, and passed into the core.
fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

struct State {
    registrar: Registrar,
    store: Store,
    /// Changes decided but not yet committed.
    pending: GroupCommit,
    registers: [u64; 10],
    commits: u64,
    commit_errors: u64,
    agents_dirty: bool,
}

impl State {
    fn handle(&mut self, msg: ToRouting, now: u64) -> (u16, FromRouting) {
        match msg {
            ToRouting::Register { shard, tx, req } => {
                let out = self.registrar.handle_register(&req, now);
                let class = (out.reply.status() / 100) as usize;
                if let Some(c) = self.registers.get_mut(class) {
                    *c += 1;
                }
                tracing::debug!(agent = %req.user, status = out.reply.status(), src = %req.source, "REGISTER");
                for c in &out.changes {
                    match c {
                        Change::Upsert(b) if b.registered_at_ms == now => {
                            tracing::info!(agent = %b.agent, contact = %b.contact_uri, target = %b.target, "agent registered")
                        }
                        Change::Upsert(_) => {}
                        Change::Remove { agent, contact } => {
                            tracing::info!(%agent, %contact, "agent unregistered")
                        }
                    }
                }
                if !out.changes.is_empty() {
                    self.agents_dirty = true;
                }
                self.pending.extend(out.changes, now);
                (shard, FromRouting::RegisterReply { tx, reply: out.reply })
            }
        }
    }

    /// Commits what is pending. On failure the changes stay pending and the
    /// next tick retries: a full disk must not lose registrations silently.
    fn commit(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        match self.pending.flush(&self.store) {
            Ok(_) => self.commits += 1,
            Err(e) => {
                self.commit_errors += 1;
                tracing::error!(error = %e, pending = self.pending.len(), "group commit failed; will retry");
            }
        }
    }

    fn reap(&mut self, now: u64) {
        let gone = self.registrar.reap(now);
        if !gone.is_empty() {
            tracing::info!(expired = gone.len(), "registrations expired");
            self.agents_dirty = true;
            self.pending.extend(gone, now);
        }
    }

    fn agents_lines(&self) -> Vec<serde_json::Value> {
        let mut v: Vec<serde_json::Value> = self
            .registrar
            .all_bindings()
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
            .collect();
        v.sort_by_cached_key(|j| j.to_string());
        v
    }

    fn samples(&self) -> Vec<Sample> {
        let mut v = Vec::new();
        for (class, n) in self.registers.iter().enumerate().filter(|(_, n)| **n > 0) {
            v.push(Sample::new("cc_registrations_total", format!("class=\"{class}xx\""), *n));
        }
        v.push(Sample::new("cc_registered_contacts", "", self.registrar.all_bindings().count() as u64));
        v.push(Sample::new("cc_store_commits_total", "", self.commits));
        v.push(Sample::new("cc_store_commit_errors_total", "", self.commit_errors));
        v.push(Sample::new("cc_store_pending_changes", "", self.pending.len() as u64));
        v
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
    let (nonce_key, stored) = match (store.nonce_secret(), store.load_bindings()) {
        (Ok(k), Ok(b)) => (crate::sip::auth::NonceKey::from_secret(k), b),
        (Err(e), _) | (_, Err(e)) => {
            // The database opened but cannot be read: refuse to run rather
            // than silently forget every registration.
            tracing::error!(error = %e, "cannot load state; stopping");
            shared.shutdown.store(true, Ordering::Relaxed);
            return;
        }
    };
    let mut registrar = Registrar::new(rc, agents, nonce_key);
    let restored = stored.len();
    let expired = registrar.restore(stored, now);
    tracing::info!(restored, expired = expired.len(), "registrations loaded");
    let state = Rc::new(RefCell::new(State {
        registrar,
        store,
        pending: {
            let mut g = GroupCommit::new(cfg.engine.group_commit_ms, 1024);
            g.extend(expired, now);
            g
        },
        registers: [0; 10],
        commits: 0,
        commit_errors: 0,
        agents_dirty: true,
    }));

    // Connect every end from its own task: connect() waits for the peer.
    let outbox: Vec<_> = outbox.into_iter().map(|t| glommio::spawn_local(t.connect())).collect();
    let inbox: Vec<_> = inbox.into_iter().map(|r| glommio::spawn_local(r.connect())).collect();
    let mut senders: Vec<ConnectedSender<FromRouting>> = Vec::with_capacity(outbox.len());
    for tx in outbox {
        senders.push(tx.await);
    }
    let senders = Rc::new(senders);
    for rx in inbox {
        let rx = rx.await;
        let (state, senders) = (state.clone(), senders.clone());
        glommio::spawn_local(async move {
            while let Some(msg) = rx.recv().await {
                let (shard, reply) = state.borrow_mut().handle(msg, now_ms());
                if let Some(tx) = senders.get(shard as usize) {
                    if tx.send(reply).await.is_err() {
                        tracing::warn!(shard, "shard is gone; reply dropped");
                    }
                }
            }
        })
        .detach();
    }
    // Group commit and reaping. Registrations expire on wall-clock seconds,
    // so checking every group interval is both timely and cheap.
    {
        let state = state.clone();
        let board = shared.board.clone();
        let every = Duration::from_millis(cfg.engine.group_commit_ms);
        let shutdown = shared.shutdown.clone();
        glommio::spawn_local(async move {
            while !shutdown.load(Ordering::Relaxed) {
                glommio::timer::sleep(every).await;
                let now = now_ms();
                let mut s = state.borrow_mut();
                if s.registrar.next_expiry().is_some_and(|t| t <= now) {
                    s.reap(now);
                }
                if s.pending.due(now) {
                    s.commit();
                }
                if s.agents_dirty {
                    s.agents_dirty = false;
                    board.publish_agents(s.agents_lines());
                }
            }
        })
        .detach();
    }
    let _ = shared.ready.send("routing".into());
    let samples_state = state.clone();
    housekeeping(slot, &shared, || samples_state.borrow().samples()).await;
    // Shutdown: whatever is decided reaches the disk before we return.
    state.borrow_mut().commit();
    tracing::debug!("routing shard stopped");
}
