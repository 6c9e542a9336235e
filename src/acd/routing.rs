//! The routing integrator: the registrar, the router and the group commit
//! behind one sans-IO interface, shaped like str0m's `Rtc` or quinn-proto's
//! `Connection`. It lives here in `acd/`, next to the state machines it
//! drives; `shard/routing.rs` is its glommio shell and the only caller in
//! the engine, and the simulation drives it the same way.
//!
//! - Input: [`Routing::handle`] with an [`Input`] (a shard's message, a
//!   timer, a commit's outcome, shutdown) and the wall-clock time in ms.
//! - Output: [`Routing::poll_effect`] until `None` ([`Effect`]: a message to
//!   a shard, a group of store ops to commit, "stopped"), and
//!   [`Routing::poll_timeout`], the wall-clock ms at which it wants a
//!   [`Input::Timer`].
//!
//! It never touches the database: the shell loads what it needs first
//! ([`Loaded::from_store`]) and applies each `Commit` with [`apply_commit`]
//! wherever it likes (a store thread in the engine), handing the
//! [`CommitOutcome`] back.
//!
//! A simulation drives it the same way with a real database: apply each
//! `Commit` with [`apply_commit`] (or leave it unapplied to crash between
//! commits), then drop the integrator and the `Store`, reopen, and build a
//! new one from [`Loaded::from_store`]: its first commit holds the restart
//! CDRs.
//!
//! Group commit, as README ("Persistence") promises: decisions are answered
//! at once; what they change is committed at most `group_commit_ms` after
//! the oldest pending change (sooner once 4096 are pending), plus the time
//! of a commit already running, since at most one commit is in flight and
//! commits land in order. A failed commit puts its ops back ahead of newer
//! ones and is retried after [`RETRY_MS`]; nothing is dropped silently.
//! The restart CDRs of calls that died with the previous process are the
//! first commit. After [`Input::Shutdown`] everything pending is committed
//! at once and [`Effect::Stopped`] says the store may be closed.

use std::collections::VecDeque;

use super::agent::AgentDef;
use super::binding::{Binding, Change};
use super::cdr::{RouterRestore, StoreOp};
use super::liveness::Liveness;
use super::registrar::{Registrar, RegistrarConfig};
use super::command::{Command, CommandResult};
use super::router::{contacts_of, Router, RouterError, RouterEvent, RouterOutput, RouterSnapshot};
use super::store::{GroupCommit, Store, StoreError};
use crate::call::CallConfig;
use super::feature::{FeatureReply, FeatureRequest};
use super::registrar::RegisterReply;
use crate::config::{Config, FeatureAction, FeatureError, FeaturesSection, Reload};
use crate::mgmt::Sample;
use crate::engine::{FromRouting, ToRouting};
use crate::sip::auth::{Algorithm, NonceKey};

/// Pending ops that make a commit due before its window ends: bounds the
/// size of one transaction under a burst.
const MAX_PENDING: usize = 4096;

/// How long after a failed commit the next attempt starts: a full or broken
/// disk is retried, but not in a loop that would take the core.
pub const RETRY_MS: u64 = 100;

/// A queue's counters go to the event stream at most once per this long:
/// a call changes them several times within milliseconds (offered,
/// answered, talk time), and a burst of calls many times more.
pub const COUNTERS_EVERY_MS: u64 = 1_000;

/// Commit attempts after shutdown before giving up on what is pending (and
/// saying so in the log): a process that cannot write must still stop.
const SHUTDOWN_ATTEMPTS: u32 = 3;

/// What the shell read from the store before starting the integrator.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub nonce_secret: [u8; 32],
    pub bindings: Vec<Binding>,
    pub restore: RouterRestore,
}

impl Loaded {
    /// Reads the nonce secret (created on first use), every binding and the
    /// router's saved state.
    pub fn from_store(store: &Store) -> Result<Loaded, StoreError> {
        Ok(Loaded {
            nonce_secret: store.nonce_secret()?,
            bindings: store.load_bindings()?,
            restore: store.load_router_state()?,
        })
    }
}

/// One input to [`Routing::handle`].
#[derive(Debug)]
pub enum Input {
    /// A message from a signalling shard.
    Shard(ToRouting),
    /// A deadline from [`Routing::poll_timeout`] passed (early is harmless).
    Timer,
    /// What became of an [`Effect::Commit`].
    Committed(CommitOutcome),
    /// Commit everything and stop; [`Effect::Stopped`] follows.
    Shutdown,
    /// An operator's command; [`Effect::CommandDone`] with the same `id`
    /// answers it.
    Command { id: u64, cmd: Command },
}

/// The answer to an [`Effect::Commit`]: its `seq`, its ops handed back (kept
/// for a retry on failure, their buffer reused on success) and the result.
#[derive(Debug)]
pub struct CommitOutcome {
    pub seq: u64,
    pub ops: Vec<StoreOp>,
    pub result: Result<(), StoreError>,
}

/// Applies one commit to the store, in one transaction: what the store
/// thread runs, and what a test calls to use a real database.
pub fn apply_commit(store: &Store, seq: u64, ops: Vec<StoreOp>) -> CommitOutcome {
    let t0 = std::time::Instant::now();
    let result = store.apply_ops(&ops);
    crate::acd::store::COMMIT_TIME.observe(t0.elapsed());
    CommitOutcome { seq, ops, result }
}

/// One output of the integrator.
#[derive(Debug)]
pub enum Effect {
    /// Send this to signalling shard `.0`.
    ToShard(u16, FromRouting),
    /// Apply `ops` in one transaction and answer with
    /// [`Input::Committed`] carrying the same `seq`.
    Commit { seq: u64, ops: Vec<StoreOp> },
    /// After shutdown: nothing more to commit; close the store.
    Stopped,
    /// The answer to [`Input::Command`] `id`.
    CommandDone { id: u64, result: CommandResult },
    /// Send to every signalling shard (as `FromRouting::CallConfig`): the
    /// call settings after a reload.
    CallConfig(CallConfig),
}

/// The commit the store is working on.
#[derive(Debug)]
struct InFlight {
    seq: u64,
    /// When it was handed to the store: `/health` flags a commit that
    /// does not come back.
    started_ms: u64,
    /// When the oldest of its ops was decided: kept for a retry's deadline.
    oldest_ms: u64,
}

/// The routing shard's protocol state. See the module docs.
pub struct Routing {
    registrar: Registrar,
    router: Router,
    liveness: Liveness,
    /// Signalling shards, to spread probes over.
    shards: u16,
    pending: GroupCommit<StoreOp>,
    in_flight: Option<InFlight>,
    next_seq: u64,
    /// No commit before this (after a failure).
    retry_at: Option<u64>,
    /// The start-up ops are not on disk yet. A failed commit's ops go back
    /// first, so the first commit that succeeds holds them.
    startup_pending: bool,
    /// A buffer handed back by a successful commit, for the next one.
    spare: Vec<StoreOp>,
    effects: VecDeque<Effect>,
    /// Router events kept for `poll_event` (off in the engine: logged only).
    events: Option<VecDeque<RouterEvent>>,
    stopping: bool,
    stopped: bool,
    shutdown_failures: u32,
    registers: [u64; 10],
    facts: u64,
    decisions: u64,
    commits: u64,
    commit_errors: u64,
    agents_dirty: bool,
    features: FeaturesSection,
    /// Feature-code requests by (action, result), for `/metrics`.
    feature_uses: std::collections::BTreeMap<(&'static str, &'static str), u64>,
    /// Queue counters changed and not yet on the event stream (the latest
    /// of each queue), kept only while events are.
    counters_due: std::collections::BTreeMap<String, RouterEvent>,
    /// When each queue's counters last went to the event stream.
    counters_sent: std::collections::BTreeMap<String, u64>,
    /// `queue-counters` events handed to the event stream.
    counter_events: u64,
}

impl Routing {
    /// Builds the state from config and what the store held. Bindings that
    /// expired while the engine was down, and the restart CDRs of calls
    /// that were live, are queued as the first commit, which is emitted at
    /// once.
    pub fn new(cfg: &Config, loaded: Loaded, now_ms: u64) -> Routing {
        let agents = agent_defs(cfg);
        let rc = RegistrarConfig {
            realm: cfg.sip.realm.clone(),
            default_expires: cfg.registrar.default_expires,
            min_expires: cfg.registrar.min_expires,
            max_expires: cfg.registrar.max_expires,
            max_contacts: cfg.registrar.max_contacts as usize,
            nonce_lifetime_ms: u64::from(cfg.registrar.nonce_lifetime_s) * 1000,
            algorithms: cfg.registrar.algorithms.iter().filter_map(|a| Algorithm::parse(a)).collect(),
            ..RegistrarConfig::new(cfg.sip.realm.clone())
        };
        let Loaded { nonce_secret, bindings, restore } = loaded;
        let mut registrar = Registrar::new(rc, agents, NonceKey::from_secret(nonce_secret));
        let restored = bindings.len();
        let expired = registrar.restore(bindings, now_ms);
        let (router, startup) = Router::new(&cfg.queues, &cfg.agents, restore, now_ms);
        let mut r = Routing {
            registrar,
            router,
            liveness: Liveness::new(cfg.registrar.keepalive_s, cfg.registrar.keepalive_failures, now_ms),
            shards: cfg.engine.shards.resolve().max(1),
            pending: GroupCommit::new(cfg.engine.group_commit_ms, MAX_PENDING),
            in_flight: None,
            next_seq: 1,
            retry_at: None,
            startup_pending: false,
            spare: Vec::new(),
            effects: VecDeque::new(),
            events: None,
            stopping: false,
            stopped: false,
            shutdown_failures: 0,
            registers: [0; 10],
            facts: 0,
            decisions: 0,
            commits: 0,
            commit_errors: 0,
            agents_dirty: true,
            features: cfg.features.clone(),
            feature_uses: std::collections::BTreeMap::new(),
            counters_due: Default::default(),
            counters_sent: Default::default(),
            counter_events: 0,
        };
        let restart_outputs = startup.len();
        for o in startup {
            match o {
                RouterOutput::Persist(op) => r.pending.push(op, now_ms),
                // Their events (call failed) were logged by the process that
                // died; there are no decisions without live calls.
                RouterOutput::Event(_) | RouterOutput::Decision(_) => {}
            }
        }
        for c in expired {
            r.pending.push(StoreOp::Binding(c), now_ms);
        }
        for a in &cfg.agents {
            r.refresh_contacts(&a.id, now_ms);
        }
        r.drain_router(now_ms);
        tracing::info!(restored, restart_outputs, "state loaded");
        // Calls that died with the previous process get their CDRs before
        // any new call is taken: the shell waits for this commit.
        if !r.pending.is_empty() {
            r.startup_pending = true;
            r.start_commit(now_ms);
        }
        r
    }

    /// Feeds one input at wall-clock `now_ms`, then commits if due.
    pub fn handle(&mut self, input: Input, now_ms: u64) {
        match input {
            Input::Shard(msg) => self.on_shard(msg, now_ms),
            Input::Timer => self.on_timer(now_ms),
            Input::Committed(o) => self.on_committed(o, now_ms),
            Input::Shutdown => self.stopping = true,
            Input::Command { id, cmd } => {
                let result = self.on_command(cmd, now_ms);
                self.effects.push_back(Effect::CommandDone { id, result });
            }
        }
        self.maybe_commit(now_ms);
    }

    /// The next effect, in the order they arose.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// Moves every pending effect to `out`.
    pub fn drain_effects(&mut self, out: &mut Vec<Effect>) {
        out.extend(self.effects.drain(..));
    }

    /// The earliest wall-clock ms at which an [`Input::Timer`] has work:
    /// a registration expiring, a router timer, the group-commit deadline
    /// (not while a commit is in flight: its outcome comes as an input).
    pub fn poll_timeout(&self) -> Option<u64> {
        let commit = match (&self.in_flight, self.pending.is_empty()) {
            (None, false) => {
                let now = self.stopping || self.startup_pending || self.pending.is_full();
                let due = if now {
                    Some(0)
                } else {
                    self.pending.deadline()
                };
                due.map(|d| self.retry_at.map_or(d, |r| r.max(d)))
            }
            _ => None,
        };
        // No binding, nothing to probe: no wake-up for liveness.
        let probes = self.registrar.next_expiry().and(self.liveness.next_timeout());
        let counters = self
            .counters_due
            .keys()
            .map(|q| self.counters_sent.get(q).map_or(0, |t| t.saturating_add(COUNTERS_EVERY_MS)))
            .min();
        [self.registrar.next_expiry(), self.router.next_timeout(), probes, commit, counters]
            .into_iter()
            .flatten()
            .min()
    }

    /// True once the start-up commit (restart CDRs, expired bindings) is on
    /// disk, or if there was nothing to commit: the shell takes traffic
    /// only then.
    pub fn startup_committed(&self) -> bool {
        !self.startup_pending
    }

    /// True once [`Effect::Stopped`] has been emitted.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// The seq of the commit the store is working on, if any: a shell whose
    /// store died mid-commit answers it with a failure.
    pub fn in_flight(&self) -> Option<u64> {
        self.in_flight.as_ref().map(|f| f.seq)
    }

    /// Changes decided and not yet handed to the store (a commit in flight
    /// is not counted): what `cc_store_pending_changes` shows.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Keep the router's events (offers, answers, ignored facts…) for
    /// [`poll_event`](Self::poll_event): the simulation counts them; the
    /// engine only logs them.
    pub fn keep_events(&mut self) {
        self.events.get_or_insert_with(VecDeque::new);
    }

    /// The next kept router event (see [`keep_events`](Self::keep_events)).
    pub fn poll_event(&mut self) -> Option<RouterEvent> {
        self.events.as_mut()?.pop_front()
    }

    /// The router's state: queues and agents.
    pub fn snapshot(&self, now_ms: u64) -> RouterSnapshot {
        self.router.snapshot(now_ms)
    }

    /// Whether a registration changed since the last call (the management
    /// plane's agents list is rebuilt only then: it is O(bindings)).
    pub fn take_agents_dirty(&mut self) -> bool {
        std::mem::replace(&mut self.agents_dirty, false)
    }

    fn on_command(&mut self, cmd: Command, now: u64) -> CommandResult {
        let result = match cmd {
            Command::Pause { agent, reason } => {
                self.router.pause(&agent, reason, now).map(|()| self.agent_detail(&agent, now))
            }
            Command::Unpause { agent } => match self.router.is_paused(&agent) {
                Ok(false) => {
                    return CommandResult::Conflict { reason: format!("agent {agent} is not paused") };
                }
                _ => self.router.unpause(&agent, now).map(|()| self.agent_detail(&agent, now)),
            },
            Command::Reload(r) => return self.reload(&r.0, now),
            Command::Logout { agent } => match self.router.logout(&agent, now) {
                Ok(false) => return CommandResult::Conflict { reason: format!("agent {agent} is logged out already") },
                r => r.map(|_| self.agent_detail(&agent, now)),
            },
            Command::Login { agent } => match self.router.login(&agent, now) {
                Ok(false) => return CommandResult::Conflict { reason: format!("agent {agent} is not logged out") },
                r => r.map(|_| self.agent_detail(&agent, now)),
            },
            Command::Hangup { call, status } => self.router.hangup(call, status).map(|state| {
                tracing::info!(%call, state, status, "operator hangs up a call");
                serde_json::json!({ "call": call.to_string(), "state": state, "ending": true })
            }),
        };
        self.drain_router(now);
        match result {
            Ok(detail) => CommandResult::Done { detail },
            Err(RouterError::UnknownAgent(a)) => CommandResult::NotFound { what: format!("agent {a}") },
            Err(RouterError::UnknownCall(c)) => CommandResult::NotFound { what: format!("live call {c}") },
            Err(e @ RouterError::CallEnding(_)) => CommandResult::Conflict { reason: e.to_string() },
        }
    }

    /// Applies a reloaded config's agents and queues: the registrar's
    /// agent set and passwords (bindings of removed agents go), the
    /// router's queues and agents (calls kept, see `router/reconfig.rs`),
    /// and the shards' per-queue call settings.
    fn reload(&mut self, r: &Reload, now: u64) -> CommandResult {
        self.features = r.config.features.clone();
        let gone = self.registrar.set_agents(agent_defs(&r.config));
        self.apply_changes(gone, now);
        let summary = self.router.reconfigure(&r.config.queues, &r.config.agents, now);
        for a in &summary.agents_added {
            self.refresh_contacts(a, now);
        }
        self.agents_dirty = true;
        self.drain_router(now);
        self.effects
            .push_back(Effect::CallConfig(CallConfig::from_config(&r.config)));
        for key in &r.needs_restart {
            tracing::warn!(%key, "changed in the config file; applies after a restart");
        }
        tracing::info!(
            added_agents = ?summary.agents_added, removed_agents = ?summary.agents_removed,
            added_queues = ?summary.queues_added, removed_queues = ?summary.queues_removed,
            draining = ?summary.queues_draining, "config reloaded"
        );
        CommandResult::Done {
            detail: serde_json::json!({
                "agents_added": summary.agents_added,
                "agents_removed": summary.agents_removed,
                "queues_added": summary.queues_added,
                "queues_removed": summary.queues_removed,
                "queues_draining": summary.queues_draining,
                "agents_retiring": summary.agents_retiring,
                "needs_restart": r.needs_restart,
            }),
        }
    }

    /// The agent's row of the router snapshot, as the API shows it.
    fn agent_detail(&self, agent: &str, now: u64) -> serde_json::Value {
        let snap = self.router.snapshot(now);
        snap.agents
            .iter()
            .find(|a| a.id == agent)
            .and_then(|a| serde_json::to_value(a).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    fn on_shard(&mut self, msg: ToRouting, now: u64) {
        match msg {
            ToRouting::Register { shard, tx, req } => {
                let out = self.registrar.handle_register(&req, now);
                tracing::debug!(agent = %req.user, status = out.reply.status(), src = %req.source, "REGISTER");
                if let Some(c) = self.registers.get_mut(usize::from(out.reply.status() / 100)) {
                    *c += 1;
                }
                self.apply_changes(out.changes, now);
                self.effects
                    .push_back(Effect::ToShard(shard, FromRouting::RegisterReply { tx, reply: out.reply }));
            }
            ToRouting::Feature { shard, tx, req } => {
                let (action, reply) = self.on_feature(&req, now);
                tracing::info!(agent = %req.user, code = %req.code, status = reply.status(), ?reply, "feature code");
                *self.feature_uses.entry((action, reply.result())).or_default() += 1;
                self.effects.push_back(Effect::ToShard(shard, FromRouting::FeatureReply { tx, reply }));
            }
            ToRouting::Call(fact) => {
                self.facts += 1;
                self.router.call_fact(fact, now);
            }
            ToRouting::ProbeResult { probe, ok } => {
                if let Some(agent) = self.liveness.result(probe, ok) {
                    tracing::info!(%agent, reachable = ok, "agent contact reachability changed");
                    self.agents_dirty = true;
                    self.refresh_contacts(&agent, now);
                }
            }
        }
        self.drain_router(now);
    }

    /// A feature code dialled by an agent: the digest first (as REGISTER:
    /// nothing about codes leaks to an unauthenticated caller), then the
    /// code, applied like the operator's command. Returns the action's name
    /// for metrics (`unknown` before the code is read) and the reply.
    fn on_feature(&mut self, req: &FeatureRequest, now: u64) -> (&'static str, FeatureReply) {
        let auth = self.registrar.check_digest(&req.user, "INVITE", &req.request_uri, &req.authorizations, req.source, now);
        if let Err(r) = auth {
            let reply = match r {
                RegisterReply::Challenge { www_authenticate } => FeatureReply::Challenge { www_authenticate },
                RegisterReply::BadRequest(why) => FeatureReply::BadRequest(why),
                RegisterReply::NotFound => FeatureReply::Forbidden("unknown agent"),
                RegisterReply::Forbidden(why) => FeatureReply::Forbidden(why),
                _ => FeatureReply::Forbidden("not authenticated"),
            };
            return ("unknown", reply);
        }
        let action = match self.features.parse(&req.code) {
            Ok(a) => a,
            Err(FeatureError::BadReason(_)) => return ("unknown", FeatureReply::BadRequest("Bad Reason Code")),
            Err(FeatureError::UnknownCode(_) | FeatureError::Disabled) => return ("unknown", FeatureReply::UnknownCode),
        };
        let name = action.name();
        let agent = req.user.clone();
        let cmd = match action {
            FeatureAction::Pause { reason } => Command::Pause { agent, reason },
            FeatureAction::Unpause => Command::Unpause { agent },
            FeatureAction::Login => Command::Login { agent },
            FeatureAction::Logout => Command::Logout { agent },
        };
        let reply = match self.on_command(cmd, now) {
            CommandResult::Done { .. } => FeatureReply::Done { action: name },
            CommandResult::Conflict { .. } => FeatureReply::Refused(refusal_phrase(name).to_string()),
            _ => FeatureReply::Forbidden("agent not in the router"),
        };
        (name, reply)
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
        if self.liveness.next_timeout().is_some_and(|t| t <= now) {
            let contacts = self
                .registrar
                .all_bindings()
                .filter(|b| b.expires_at_ms > now)
                .map(|b| (b.agent.as_str(), b.contact_uri.as_str(), b.target));
            for p in self.liveness.round(contacts, now) {
                let shard = u16::try_from(p.id % u64::from(self.shards)).unwrap_or(0);
                self.effects.push_back(Effect::ToShard(
                    shard,
                    FromRouting::Probe { probe: p.id, uri: p.uri, dest: p.dest },
                ));
            }
        }
        self.drain_router(now);
    }

    fn on_committed(&mut self, o: CommitOutcome, now: u64) {
        let Some(f) = self.in_flight.take_if(|f| f.seq == o.seq) else {
            tracing::warn!(seq = o.seq, "outcome of a commit that is not in flight; ignored");
            return;
        };
        let CommitOutcome { mut ops, result, .. } = o;
        match result {
            Ok(()) => {
                self.commits += 1;
                self.retry_at = None;
                self.startup_pending = false;
                ops.clear();
                self.spare = ops;
            }
            Err(e) => {
                self.commit_errors += 1;
                let n = ops.len();
                self.pending.requeue_front(ops, f.oldest_ms);
                if self.stopping {
                    self.shutdown_failures += 1;
                }
                if self.stopping && self.shutdown_failures >= SHUTDOWN_ATTEMPTS {
                    tracing::error!(
                        error = %e, lost = self.pending.len(), attempts = self.shutdown_failures,
                        "final group commit failed; these changes are not on disk"
                    );
                    self.pending.take();
                } else {
                    tracing::error!(error = %e, ops = n, pending = self.pending.len(), "group commit failed; will retry");
                    self.retry_at = Some(now.saturating_add(RETRY_MS));
                }
            }
        }
    }

    /// Emits the next commit when one is due and none is in flight; after
    /// shutdown, emits `Stopped` once nothing is left.
    fn maybe_commit(&mut self, now: u64) {
        if self.in_flight.is_some() || self.stopped {
            return;
        }
        if self.pending.is_empty() {
            if self.stopping {
                self.stopped = true;
                self.effects.push_back(Effect::Stopped);
            }
            return;
        }
        if self.retry_at.is_some_and(|r| now < r) {
            return;
        }
        if self.stopping || self.startup_pending || self.pending.due(now) {
            self.start_commit(now);
        }
    }

    fn start_commit(&mut self, now: u64) {
        let oldest_ms = self.pending.oldest_ms().unwrap_or(now);
        let ops = self.pending.take_into(std::mem::take(&mut self.spare));
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight = Some(InFlight { seq, started_ms: now, oldest_ms });
        self.effects.push_back(Effect::Commit { seq, ops });
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
                    self.liveness.reset(&b.agent, &b.contact_uri);
                    if b.registered_at_ms == now {
                        tracing::info!(agent = %b.agent, contact = %b.contact_uri, target = %b.target, "agent registered");
                    }
                    touched.push(b.agent.clone());
                }
                Change::Remove { agent, contact } => {
                    self.liveness.reset(agent, contact);
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
        let mut live = self.registrar.live_bindings(agent, now);
        let registered = !live.is_empty();
        live.retain(|b| !self.liveness.is_unreachable(&b.agent, &b.contact_uri));
        let unreachable = registered && live.is_empty();
        let contacts = contacts_of(&live);
        if let Err(e) = self.router.agent_reach(agent, contacts, unreachable, now) {
            tracing::warn!(%agent, error = %e, "router refused contacts");
        }
    }

    fn drain_router(&mut self, now: u64) {
        while let Some(o) = self.router.poll_output() {
            match o {
                RouterOutput::Decision(d) => {
                    self.decisions += 1;
                    self.effects.push_back(Effect::ToShard(d.call().shard(), FromRouting::Decision(d)));
                }
                RouterOutput::Persist(op) => self.pending.push(op, now),
                RouterOutput::Event(RouterEvent::QueueCounters { queue, stats, service_level_s }) => {
                    if self.events.is_some() {
                        let e = RouterEvent::QueueCounters { queue: queue.clone(), stats, service_level_s };
                        self.counters_due.insert(queue, e);
                    }
                }
                RouterOutput::Event(e) => {
                    log_event(&e);
                    if let Some(q) = &mut self.events {
                        q.push_back(e);
                    }
                }
            }
        }
        self.flush_counters(now);
        self.router.drain_answered_waits(|ms| WAIT_TIME.observe(std::time::Duration::from_millis(ms)));
    }

    /// Queue counters whose last event is at least `COUNTERS_EVERY_MS` old
    /// go to the kept events; the others wait (`poll_timeout` knows when).
    fn flush_counters(&mut self, now: u64) {
        let Some(events) = &mut self.events else { return };
        let (sent, n) = (&mut self.counters_sent, &mut self.counter_events);
        self.counters_due.retain(|queue, e| {
            if sent.get(queue).is_some_and(|t| now < t.saturating_add(COUNTERS_EVERY_MS)) {
                return true;
            }
            sent.insert(queue.clone(), now);
            events.push_back(e.clone());
            *n += 1;
            false
        });
    }

    /// The management plane's agents list: one object per binding.
    pub fn agents_lines(&self) -> Vec<serde_json::Value> {
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
                    "reachable": !self.liveness.is_unreachable(&b.agent, &b.contact_uri),
                })
            })
            .collect()
    }

    /// Metrics samples and the queues snapshot for the management plane.
    pub fn samples(&self, now: u64) -> (Vec<Sample>, serde_json::Value) {
        let mut v = Vec::new();
        for (class, n) in self.registers.iter().enumerate().filter(|(_, n)| **n > 0) {
            v.push(Sample::new("cc_registrations_total", format!("class=\"{class}xx\""), *n));
        }
        v.push(Sample::new("cc_registered_contacts", "", self.registrar.all_bindings().count() as u64));
        v.push(Sample::new("cc_routing_facts_total", "", self.facts));
        for ((action, result), n) in &self.feature_uses {
            v.push(Sample::new("cc_feature_codes_total", format!("action=\"{action}\",result=\"{result}\""), *n));
        }
        v.push(Sample::new("cc_routing_decisions_total", "", self.decisions));
        v.push(Sample::new("cc_store_commits_total", "", self.commits));
        v.push(Sample::new("cc_store_commit_errors_total", "", self.commit_errors));
        v.push(Sample::new("cc_store_pending_changes", "", self.pending.len() as u64));
        let running = self.in_flight.as_ref().map_or(0, |f| now.saturating_sub(f.started_ms));
        v.push(Sample::new("cc_store_commit_running_ms", "", running));
        v.push(Sample::new("cc_queue_counter_events_total", "", self.counter_events));
        let snap = self.router.snapshot(now);
        for q in &snap.queues {
            let l = |extra: &str| format!("queue=\"{}\"{extra}", q.name);
            v.push(Sample::new("cc_queue_calls", l(",state=\"waiting\""), q.waiting as u64));
            v.push(Sample::new("cc_queue_calls", l(",state=\"ringing\""), q.ringing as u64));
            v.push(Sample::new("cc_queue_calls", l(",state=\"talking\""), q.talking as u64));
            v.push(Sample::new("cc_queue_longest_wait_ms", l(""), q.longest_wait_ms));
            v.push(Sample::new("cc_queue_agents_online", l(""), q.agents_online as u64));
            v.push(Sample::new("cc_queue_agents_available", l(""), q.agents_available as u64));
            // Reporting counters: since the database was created (counters),
            // and over the current UTC day (gauges: they restart at midnight).
            for (c, name) in [(&q.total, "cc_queue_dispositions_total"), (&q.today, "cc_queue_dispositions_today")] {
                for (disposition, n) in [
                    ("offered", c.offered),
                    ("answered", c.answered),
                    ("abandoned", c.abandoned),
                    ("timed_out", c.timed_out),
                    ("overflowed", c.overflowed),
                    ("failed", c.failed),
                    ("rejected", c.rejected),
                    ("answered_in_sl", c.answered_in_sl),
                ] {
                    v.push(Sample::new(name, l(&format!(",disposition=\"{disposition}\"")), n));
                }
            }
            v.push(Sample::new("cc_queue_wait_answered_ms_total", l(""), q.total.wait_ms_answered));
            v.push(Sample::new("cc_queue_talk_ms_total", l(""), q.total.talk_ms));
            v.push(Sample::new("cc_queue_longest_wait_today_ms", l(""), q.today.longest_wait_ms));
            v.push(Sample::new("cc_queue_service_level_threshold_seconds", l(""), u64::from(q.service_level_s)));
            // Percent of answered calls within the threshold (integer:
            // samples are whole numbers; the counters above give the exact
            // ratio).
            for (period, c) in [("today", &q.today), ("total", &q.total)] {
                if let Some(sl) = c.service_level_answered() {
                    v.push(Sample::new("cc_queue_service_level_percent", l(&format!(",period=\"{period}\"")), sl.round() as u64));
                }
            }
        }
        for a in &snap.agents {
            let status = serde_json::to_value(a.status).ok();
            let status = status.as_ref().and_then(|s| s.as_str()).unwrap_or("unknown");
            v.push(Sample::new("cc_agent_status", format!("agent=\"{}\",status=\"{status}\"", a.id), 1));
            v.push(Sample::new("cc_agent_answered_total", format!("agent=\"{}\"", a.id), a.answered));
            let c = &a.counters;
            let al = |extra: &str| format!("agent=\"{}\"{extra}", a.id);
            v.push(Sample::new("cc_agent_reported_answered_total", al(""), c.answered));
            for (kind, n) in [
                ("no_answer", c.missed.no_answer),
                ("busy", c.missed.busy),
                ("rejected", c.missed.rejected),
                ("unreachable", c.missed.unreachable),
            ] {
                v.push(Sample::new("cc_agent_missed_total", al(&format!(",kind=\"{kind}\"")), n));
            }
            v.push(Sample::new("cc_agent_talk_ms_total", al(""), c.talk_ms));
            v.push(Sample::new("cc_agent_pause_ms_total", al(""), c.pause_ms));
            v.push(Sample::new("cc_agent_status_seconds", al(""), now.saturating_sub(a.status_since_ms) / 1000));
        }
        (v, serde_json::to_value(&snap).unwrap_or_default())
    }
}

/// Answered callers' wait (arrival → answer), for `/metrics`.
pub static WAIT_TIME: crate::mgmt::Histogram =
    crate::mgmt::Histogram::new(&[1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 1200.0]);
/// The registrar's view of the configured agents.
fn agent_defs(cfg: &Config) -> Vec<AgentDef> {
    cfg.agents
        .iter()
        .map(|a| {
            let mut d = AgentDef::new(a.id.clone(), a.password.clone());
            d.max_calls = a.max_calls;
            d.queues = a.queues.clone();
            d
        })
        .collect()
}

/// The 480 phrase when an agent is already in the state a code asks for.
fn refusal_phrase(action: &str) -> &'static str {
    match action {
        "unpause" => "Not Paused",
        "login" => "Already Logged In",
        "logout" => "Already Logged Out",
        _ => "Temporarily Unavailable",
    }
}

/// One info line per call event; per-message detail stays at debug.
fn log_event(e: &RouterEvent) {
    match e {
        RouterEvent::Ignored { call, fact } => tracing::debug!(%call, fact, "stale fact ignored"),
        RouterEvent::QueueCounters { .. } => {}
        other => tracing::info!(event = ?other, "acd"),
    }
}

#[cfg(test)]
#[path = "routing_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "routing_feature_tests.rs"]
mod feature_tests;
