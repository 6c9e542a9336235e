//! The router: sans-IO heart of the ACD on the routing shard.
//!
//! Inputs (time passed in as wall-clock unix ms, the CDR clock):
//! - `call_fact(CallFact, now_ms)` from signalling shards;
//! - `agent_contacts(agent, contacts, now_ms)` from the registrar after every
//!   change for that agent (live bindings, best first; empty = offline);
//! - `pause` / `unpause` from the management plane;
//! - `handle_timeout(now_ms)` when `next_timeout()` is reached.
//!
//! Outputs, drained with `poll_output()`: `Decision`s for the shard owning
//! the call, `StoreOp`s for the group commit, `RouterEvent`s for logs and
//! metrics. `snapshot(now_ms)` serves `/metrics` and `/queues`.
//!
//! Assignment is event-driven (`dispatch`): it runs when a call arrives, an
//! agent frees up (login, offer result, wrap-up end, unpause) or a timer
//! fires; it walks waiting calls best first (`queue.rs`) and gives each the
//! agent its queue's strategy picks (`strategy.rs`). Everything iterates
//! BTreeMaps or sorted vectors, so the same inputs give the same outputs.
//!
//! Policy choices:
//! - Entering: unknown queue → 404. A queue is full when its unanswered
//!   calls (waiting + ringing) reach `max_waiting`; then its overflow queue
//!   is tried, along the chain, skipping queues already visited (cycle
//!   guard). If the chain ends full, the *requested* queue's `full_status`
//!   applies (the caller dialled that queue): 486, or 503 + its
//!   `retry_after_s`. No agent serving the chosen queue has a live binding →
//!   `no_agents = "reject"` gives 480, `"wait"` queues the call. This check
//!   is only made on arrival; calls already waiting keep waiting. For a
//!   `skills` queue only agents with every skill count as logged in.
//! - A call that overflows takes the overflow queue's priority, max wait,
//!   strategy, ring timeout and wrap-up; its arrival time stays.
//! - Offer results are counted apart (no answer, busy/DND, rejected,
//!   unreachable). Only ringing out counts toward the auto-pause:
//!   `max_no_answer` consecutive ones (of the queue of the call that
//!   failed) pause the agent with reason `no-answer`, lifted after the
//!   queue's `auto_unpause_s` if set; an answer or an unpause resets the
//!   count. The agent then rests per kind (`no_answer_delay_s`,
//!   `busy_delay_s`, `reject_delay_s`; an unreachable phone `retry_s`), so
//!   a dead phone is not offered the next call in the same millisecond.
//!   The call goes back at its original position, is offered elsewhere
//!   first if anyone else is free, and to the same agent only after the
//!   queue's `retry_s`.
//!   Except `MediaUnavailable` (the shard had no relay leg for the offer, the
//!   agent was never rung): no count, the agent stays free, and that shard's
//!   calls are not offered for `MEDIA_RETRY_MS` (another shard's may be), so
//!   a shard out of ports costs one failed offer per second, not a loop.
//! - Which agent: members of the tiers the call has reached (level L after
//!   (L-1) × `tier_wait_s` of waiting), lowest level first, whose skills
//!   meet the requirement in force (relaxed by `relax` steps as the call
//!   waits), then the queue's strategy (`strategy.rs`). A `ring-all`
//!   queue takes every such agent at once (`Decision::RingAll`): the call
//!   rings them all until one answers (the others are freed without a
//!   miss, `OfferResult::Cancelled`) or each has failed (misses counted
//!   per agent as above; the call goes back once the last has). An agent
//!   freed while a ring-all call rings is not added to it; it may take the
//!   next waiting call. Which call: queue
//!   `weight`, then effective priority (ageing per `ageing_s`), then
//!   arrival.
//! - Exits: at max wait a call moves to `max_wait_queue` (keeping its
//!   arrival time) or times out; `join_empty` / `leave_when_empty` treat a
//!   queue whose members are all in the listed states (offline, paused,
//!   wrap-up, unreachable) as empty: arrivals go to `join_empty_queue` or get 480,
//!   waiting callers go to `leave_empty_queue` or time out (`leave-empty`).
//! - Max wait applies to calls *waiting*: a call ringing an agent when its
//!   deadline passes is not torn down under the agent's hand; if the offer
//!   fails, it times out then.
//! - `Abandoned` for an answered call is treated as the caller hanging up
//!   (CDR `answered`, hangup caller). `Ended` for an unanswered call gives
//!   `abandoned` if the caller hung up, else `failed`. `Failed` of an
//!   answered call keeps agent/answer time in its `failed` CDR.
//! - Facts for unknown or finished calls, and repeated facts, are ignored
//!   (`RouterEvent::Ignored`). The last `FINISHED_MEMORY` finished call ids
//!   are remembered so a late duplicate `Arrived` cannot create a second CDR.
//! - CDR times come from the facts' `at_ms` (clamped so they never run
//!   backwards); timeouts use `now_ms`.
//!
//! Persistence (`StoreOp`, see `cdr.rs`): `CallLive` on arrival and on
//! answer, `Cdr` + `CallDone` when the call ends (one transaction, so a
//! crash never leaves both or neither), `RoundRobin` on each round-robin
//! offer, `Agent` (pause, no-answer count) whenever either changes. After a
//! crash, `Router::new` turns the store's live calls into `failed` /
//! `engine-restart` CDRs. The shell commits those first, and feeds
//! `agent_contacts(id, contacts_of(&registrar.live_bindings(id, now)), now)`
//! for every agent at start and after every registrar change or reap.
//!
//! Layout: `calls.rs` (arrival, offer results, time-outs, CDRs),
//! `dispatch.rs` (matching), `queue.rs` (call order, ageing),
//! `strategy.rs` (agent choice), `agent_state.rs` (status, capacity,
//! wrap-up), `snapshot.rs`, `output.rs`.

mod agent_state;
mod calls;
mod dispatch;
mod output;
mod queue;
mod reconfig;
mod report;
mod snapshot;
mod strategy;
mod tally;

#[cfg(test)]
mod operator_tests;
#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod reconfig_tests;
#[cfg(test)]
mod report_tests;
#[cfg(test)]
mod ring_all_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

pub use agent_state::{AgentStatus, Misses};
pub use output::{RouterError, RouterEvent, RouterOutput};
pub use queue::AGEING_MS_PER_LEVEL;
pub use reconfig::ReloadSummary;
pub use snapshot::{AgentSnapshot, CallSnapshot, QueueSnapshot, RouterSnapshot};

use agent_state::{Agent, AgentTable};
use calls::{end_reason_text, End};
use queue::{Call, CallState};
use tally::Tally;

use super::binding::Binding;
use super::cdr::{Disposition, Pause, RouterRestore, StoreOp};
use super::queue_log::{QueueEvent, QueueLogEntry};
use super::stats::QueueStats;
use super::facts::{CallFact, CallId, Decision, Party, RtpCounts};
use crate::config::{AgentConfig, QueueConfig};

/// Finished call ids remembered to drop late duplicate facts.
pub const FINISHED_MEMORY: usize = 65_536;

/// Reason recorded when the router pauses an agent for not answering.
pub const NO_ANSWER_REASON: &str = "no-answer";

/// How long a shard's calls are not offered after it had no relay leg for
/// an offer (`OfferResult::MediaUnavailable`): long enough not to spin
/// between router and shard, short enough that a freed port is used soon.
pub const MEDIA_RETRY_MS: u64 = 1_000;

pub struct Router {
    queues: BTreeMap<String, QueueConfig>,
    /// Queue → (config position, tier level) of the agents serving it,
    /// ascending by position.
    members: BTreeMap<String, Vec<(usize, u32)>>,
    agents: AgentTable,
    calls: BTreeMap<CallId, Call>,
    /// Per-queue counts of `calls` by state (see `tally.rs`).
    tally: Tally,
    rr_last: BTreeMap<String, String>,
    next_seq: u64,
    finished: BTreeSet<CallId>,
    finished_order: VecDeque<CallId>,
    /// Answered callers' waits (ms) not yet taken by the integrator for
    /// its histogram; emptied after every input, so it stays short.
    answered_waits: Vec<u64>,
    out: VecDeque<RouterOutput>,
    /// Every deadline ever set (max wait, end of wrap-up), some stale: the
    /// shell asks for the next timeout after every message, so it must not
    /// scan all calls and agents. A stale hint only costs one early
    /// `handle_timeout`, which scans and finds nothing due.
    timer_hints: BTreeSet<u64>,
    /// Shard → until when its calls are not offered (`MEDIA_RETRY_MS`).
    media_short: BTreeMap<u16, u64>,
    /// For the random strategies; seeded from the start time, which the
    /// shell passes in, so a simulation replays exactly.
    rng: strategy::Rng,
    /// Reporting counters per queue (`stats.rs`), persisted.
    qstats: BTreeMap<String, QueueStats>,
    /// The agents as configured, in config order (`reconfig.rs`).
    agent_cfgs: Vec<AgentConfig>,
    /// Removed queues still holding calls → who served them (id, level).
    draining: BTreeMap<String, Vec<(String, u32)>>,
    /// Removed agents still holding a call.
    retiring: BTreeSet<String>,
}

impl Router {
    /// Builds the router from config and what the store kept. Calls that
    /// were live when the engine died get their CDR now (`failed`,
    /// `engine-restart`); those outputs are returned rather than queued so
    /// the shell can commit them before taking traffic.
    pub fn new(
        queues: &[QueueConfig],
        agents: &[AgentConfig],
        restored: RouterRestore,
        now_ms: u64,
    ) -> (Router, Vec<RouterOutput>) {
        let queue_map: BTreeMap<String, QueueConfig> =
            queues.iter().map(|q| (q.name.clone(), q.clone())).collect();
        let mut members: BTreeMap<String, Vec<(usize, u32)>> =
            queue_map.keys().map(|k| (k.clone(), Vec::new())).collect();
        let mut agent_list = Vec::with_capacity(agents.len());
        for (i, cfg) in agents.iter().enumerate() {
            let mut a = Agent::new(i, cfg, now_ms);
            if let Some(p) = restored.agents.get(&cfg.id) {
                a.paused = p.paused.clone();
                a.no_answer = p.no_answer;
                a.counters = p.counters;
                a.logged_out = p.logged_out;
                a.logout_pending = p.logout_pending;
            }
            for (q, level) in cfg.queue_levels() {
                if let Some(m) = members.get_mut(q) {
                    m.push((i, level));
                }
            }
            agent_list.push(a);
        }
        let rr_last = restored
            .rr_last
            .into_iter()
            .filter(|(q, _)| queue_map.contains_key(q))
            .collect();
        let mut live = restored.live_calls;
        live.sort_by_key(|l| l.call);
        let mut outputs = Vec::new();
        let mut restart_cdrs = Vec::new();
        for l in live {
            let cdr = l.restart_cdr(now_ms);
            let reason = cdr.reason.clone();
            restart_cdrs.push(cdr.clone());
            outputs.push(RouterOutput::Persist(StoreOp::Cdr(cdr)));
            outputs.push(RouterOutput::Persist(StoreOp::CallDone(l.call)));
            outputs.push(RouterOutput::Event(RouterEvent::CallFinished {
                call: l.call,
                disposition: Disposition::Failed,
                reason,
            }));
        }
        let mut router = Router {
            queues: queue_map,
            members,
            agents: AgentTable::new(agent_list),
            calls: BTreeMap::new(),
            tally: Tally::default(),
            rr_last,
            next_seq: 0,
            finished: BTreeSet::new(),
            finished_order: VecDeque::new(),
            answered_waits: Vec::new(),
            out: VecDeque::new(),
            timer_hints: BTreeSet::new(),
            media_short: BTreeMap::new(),
            rng: strategy::Rng::new(now_ms ^ 0x6363_2d65_6e67_696e),
            qstats: restored.queue_stats,
            agent_cfgs: agents.to_vec(),
            draining: BTreeMap::new(),
            retiring: BTreeSet::new(),
        };
        for cdr in &restart_cdrs {
            router.report_restart(cdr);
        }
        outputs.extend(router.out.drain(..));
        let auto_unpause: Vec<u64> =
            router.agents.values().filter_map(|a| a.paused.as_ref()?.until_ms).collect();
        for t in auto_unpause {
            router.hint_timer(Some(t));
        }
        (router, outputs)
    }

    pub fn poll_output(&mut self) -> Option<RouterOutput> {
        self.out.pop_front()
    }

    /// Hands each answered caller's wait (ms) since the last call to `f`.
    pub fn drain_answered_waits(&mut self, mut f: impl FnMut(u64)) {
        for w in self.answered_waits.drain(..) {
            f(w);
        }
    }

    pub fn call_fact(&mut self, fact: CallFact, now_ms: u64) {
        match fact {
            CallFact::Arrived {
                call,
                queue,
                caller,
                priority_bonus,
                skills,
                sip_call_id,
                at_ms,
            } => self.arrived(
                call,
                &queue,
                caller,
                (priority_bonus, skills),
                sip_call_id,
                at_ms,
                now_ms,
            ),
            CallFact::Abandoned { call, at_ms } => {
                let Some(c) = self.take_call(call, "abandoned") else {
                    return;
                };
                let disposition = if c.unanswered() {
                    Disposition::Abandoned
                } else {
                    Disposition::Answered
                };
                let end = End {
                    at_ms,
                    disposition,
                    reason: None,
                    hangup: Some(Party::Caller),
                    rtp: RtpCounts::default(),
                };
                self.finish(c, end, now_ms);
            }
            CallFact::OfferResult {
                call,
                agent,
                result,
                at_ms,
            } => self.offer_result(call, agent, result, at_ms, now_ms),
            CallFact::Ended {
                call,
                at_ms,
                hangup,
                reason,
                rtp,
            } => {
                let Some(c) = self.take_call(call, "ended") else {
                    return;
                };
                let disposition = match (c.unanswered(), hangup) {
                    (false, _) => Disposition::Answered,
                    (true, Party::Caller) => Disposition::Abandoned,
                    (true, _) => Disposition::Failed,
                };
                let reason = end_reason_text(reason);
                self.finish(
                    c,
                    End {
                        at_ms,
                        disposition,
                        reason,
                        hangup: Some(hangup),
                        rtp,
                    },
                    now_ms,
                );
            }
            CallFact::Failed {
                call,
                at_ms,
                reason,
            } => {
                let Some(c) = self.take_call(call, "failed") else {
                    return;
                };
                let end = End {
                    at_ms,
                    disposition: Disposition::Failed,
                    reason: Some(reason),
                    hangup: None,
                    rtp: RtpCounts::default(),
                };
                self.finish(c, end, now_ms);
            }
        }
        self.prune_reloaded(now_ms);
        self.dispatch(now_ms);
    }

    /// The registrar's view of `agent` changed: `contacts` are its live
    /// bindings, best first; empty means offline.
    pub fn agent_contacts(
        &mut self,
        agent: &str,
        contacts: Vec<(String, SocketAddr)>,
        now_ms: u64,
    ) -> Result<(), RouterError> {
        self.agent_reach(agent, contacts, false, now_ms)
    }

    /// Like [`agent_contacts`](Self::agent_contacts), with `contacts` the
    /// live bindings that answer the liveness check and `unreachable` true
    /// when the agent has live bindings but none of them answers. An
    /// unreachable agent stays logged in (no AGENTLOGOFF: the phone is
    /// registered) and gets no offers; the flip is an event both ways.
    pub fn agent_reach(
        &mut self,
        agent: &str,
        contacts: Vec<(String, SocketAddr)>,
        unreachable: bool,
        now_ms: u64,
    ) -> Result<(), RouterError> {
        let a = self.agent_mut(agent)?;
        let unreachable = unreachable && contacts.is_empty();
        let was_online = a.online() || a.unreachable;
        let was_unreachable = a.unreachable;
        let first_contact = contacts.first().map(|(uri, _)| uri.clone());
        let last_contact = a.contacts.first().map(|(uri, _)| uri.clone());
        a.contacts = contacts;
        a.unreachable = unreachable;
        let now_online = a.online() || a.unreachable;
        let mut reach = None;
        if was_online && now_online && was_unreachable != unreachable {
            if !unreachable {
                // Idle time restarts: a dead phone did not wait for calls.
                a.idle_since = a.idle_since.max(now_ms);
            }
            reach = Some(RouterEvent::AgentReachability { agent: agent.to_string(), reachable: !unreachable, status: a.status() });
        }
        let event = match (was_online, now_online) {
            (false, true) => {
                a.idle_since = now_ms;
                let e = QueueLogEntry::agent(now_ms, agent, QueueEvent::AgentLogin).with(first_contact);
                self.qlog(e);
                Some(RouterEvent::AgentOnline {
                    agent: agent.to_string(),
                })
            }
            (true, false) => {
                let e = QueueLogEntry::agent(now_ms, agent, QueueEvent::AgentLogoff).with(last_contact);
                self.qlog(e);
                Some(RouterEvent::AgentOffline {
                    agent: agent.to_string(),
                })
            }
            _ => None,
        };
        for e in [reach, event].into_iter().flatten() {
            self.out.push_back(RouterOutput::Event(e));
        }
        self.dispatch(now_ms);
        Ok(())
    }

    /// Pauses `agent` (no new offers; calls in progress carry on). Pausing
    /// a paused agent updates the reason and keeps the original time.
    pub fn pause(
        &mut self,
        agent: &str,
        reason: Option<String>,
        now_ms: u64,
    ) -> Result<(), RouterError> {
        let a = self.agent_mut(agent)?;
        let since_ms = a.paused.as_ref().map_or(now_ms, |p| p.since_ms);
        a.paused = Some(Pause {
            reason: reason.clone(),
            since_ms,
            until_ms: None,
        });
        let state = a.persist();
        self.emit_persist(StoreOp::Agent {
            agent: agent.to_string(),
            state,
        });
        let e = QueueLogEntry::agent(now_ms, agent, QueueEvent::Pause).with([reason.clone().unwrap_or_default()]);
        self.qlog(e);
        self.out
            .push_back(RouterOutput::Event(RouterEvent::AgentPaused {
                agent: agent.to_string(),
                reason,
            }));
        self.track_status(now_ms);
        Ok(())
    }

    /// Unpauses `agent` and resets its no-answer count, so an agent paused
    /// for not answering gets `max_no_answer` fresh chances. Idempotent.
    pub fn unpause(&mut self, agent: &str, now_ms: u64) -> Result<(), RouterError> {
        let a = self.agent_mut(agent)?;
        if a.paused.is_none() && a.no_answer == 0 {
            return Ok(());
        }
        let ended = a.paused.take();
        let was_paused = ended.is_some();
        if let Some(p) = &ended {
            a.counters.pause_ms += now_ms.saturating_sub(p.since_ms);
        }
        a.no_answer = 0;
        let state = a.persist();
        self.emit_persist(StoreOp::Agent {
            agent: agent.to_string(),
            state,
        });
        if let Some(p) = ended {
            let e = QueueLogEntry::agent(now_ms, agent, QueueEvent::Unpause).with([p.reason.unwrap_or_default()]);
            self.qlog(e);
        }
        if was_paused {
            self.out
                .push_back(RouterOutput::Event(RouterEvent::AgentUnpaused {
                    agent: agent.to_string(),
                }));
        }
        self.dispatch(now_ms);
        Ok(())
    }

    /// The earliest time `handle_timeout` has work: a waiting call's max
    /// wait, an agent's wrap-up end, or a shard's `MEDIA_RETRY_MS` end.
    pub fn next_timeout(&self) -> Option<u64> {
        self.timer_hints.first().copied()
    }

    /// Remembers that something may be due at `at_ms`.
    pub(super) fn hint_timer(&mut self, at_ms: Option<u64>) {
        if let Some(t) = at_ms {
            self.timer_hints.insert(t);
        }
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        // Everything due by now is handled below; later hints stay.
        self.timer_hints = self.timer_hints.split_off(&now_ms.saturating_add(1));
        self.media_short.retain(|_, until| *until > now_ms);
        let mut expired: Vec<(u64, u64, CallId)> = self
            .calls
            .values()
            .filter(|c| c.state == CallState::Waiting && !c.hangup_requested)
            .filter_map(|c| {
                c.deadline_ms
                    .filter(|d| *d <= now_ms)
                    .map(|d| (d, c.seq, c.id))
            })
            .collect();
        expired.sort();
        for (_, _, id) in expired {
            self.max_wait_reached(id, now_ms);
        }
        // The call stays Talking until the shard's `Ended` arrives.
        let mut cut: Vec<(u64, CallId)> = Vec::new();
        for c in self.calls.values_mut() {
            if let Some(d) = c.talk_deadline_ms.filter(|d| *d <= now_ms) {
                c.talk_deadline_ms = None;
                cut.push((d, c.id));
            }
        }
        cut.sort();
        for (_, call) in cut {
            self.out
                .push_back(RouterOutput::Decision(Decision::MaxDuration { call }));
        }
        let mut ended = Vec::new();
        let mut unpause = Vec::new();
        for a in self.agents.values_mut() {
            if let Some(until) = a.wrap_up_until.filter(|u| *u <= now_ms) {
                a.wrap_up_until = None;
                a.idle_since = until;
                ended.push(a.id.clone());
            }
            if a.rest_until.is_some_and(|u| u <= now_ms) {
                a.rest_until = None;
            }
            if a.paused.as_ref().and_then(|p| p.until_ms).is_some_and(|u| u <= now_ms) {
                unpause.push(a.id.clone());
            }
        }
        for agent in ended {
            self.out
                .push_back(RouterOutput::Event(RouterEvent::WrapUpEnded { agent }));
        }
        for agent in unpause {
            // Known agent (taken from the table above): cannot fail.
            let _ = self.unpause(&agent, now_ms);
        }
        self.prune_reloaded(now_ms);
        self.dispatch(now_ms);
    }

    // ----- internals -------------------------------------------------------

    /// Logs `agent` out: no new offers; a call in progress ends normally
    /// and the agent shows as logged out then. `Ok(false)`: already out.
    pub fn logout(&mut self, agent: &str, now_ms: u64) -> Result<bool, RouterError> {
        self.set_logged_out(agent, true, now_ms)
    }

    /// Logs `agent` back in. `Ok(false)`: it was not logged out.
    pub fn login(&mut self, agent: &str, now_ms: u64) -> Result<bool, RouterError> {
        let changed = self.set_logged_out(agent, false, now_ms)?;
        if changed {
            self.dispatch(now_ms);
        }
        Ok(changed)
    }

    fn set_logged_out(&mut self, agent: &str, out: bool, now_ms: u64) -> Result<bool, RouterError> {
        let a = self.agent_mut(agent)?;
        if a.logged_out == out {
            return Ok(false);
        }
        a.logged_out = out;
        // With a call in progress the logout only stops new offers now;
        // it takes effect when the call ends (`settle_logouts`).
        let deferred = out && a.active() > 0;
        // A login before that cancels a logoff that never happened.
        let cancelled = !out && std::mem::take(&mut a.logout_pending);
        a.logout_pending = deferred;
        let state = a.persist();
        self.emit_persist(StoreOp::Agent { agent: agent.to_string(), state });
        let (event, ev) = if deferred {
            (None, RouterEvent::AgentLogoutRequested { agent: agent.to_string() })
        } else if out {
            (Some(QueueEvent::AgentLogoff), RouterEvent::AgentLoggedOut { agent: agent.to_string() })
        } else {
            let e = (!cancelled).then_some(QueueEvent::AgentLogin);
            (e, RouterEvent::AgentLoggedIn { agent: agent.to_string() })
        };
        if let Some(event) = event {
            self.qlog(QueueLogEntry::agent(now_ms, agent, event));
        }
        self.out.push_back(RouterOutput::Event(ev));
        Ok(true)
    }

    /// Logouts asked during a call take effect once the agent has none.
    pub(super) fn settle_logouts(&mut self, now_ms: u64) {
        let mut done = Vec::new();
        for a in self.agents.values_mut() {
            if a.logout_pending && a.active() == 0 {
                a.logout_pending = false;
                done.push(a.id.clone());
            }
        }
        for agent in done {
            self.persist_agent(&agent);
            self.qlog(QueueLogEntry::agent(now_ms, &agent, QueueEvent::AgentLogoff));
            self.out.push_back(RouterOutput::Event(RouterEvent::AgentLoggedOut { agent }));
        }
    }

    /// Whether `agent` is paused (by an operator or for missed offers).
    pub fn is_paused(&self, agent: &str) -> Result<bool, RouterError> {
        self.agents
            .get(agent)
            .map(|a| a.paused.is_some())
            .ok_or_else(|| RouterError::UnknownAgent(agent.to_string()))
    }

    fn agent_mut(&mut self, agent: &str) -> Result<&mut Agent, RouterError> {
        self.agents
            .get_mut(agent)
            .ok_or_else(|| RouterError::UnknownAgent(agent.to_string()))
    }

    fn emit_persist(&mut self, op: StoreOp) {
        self.out.push_back(RouterOutput::Persist(op));
    }

    fn ignored(&mut self, call: CallId, fact: &'static str) {
        self.out
            .push_back(RouterOutput::Event(RouterEvent::Ignored { call, fact }));
    }

    fn take_call(&mut self, call: CallId, fact: &'static str) -> Option<Call> {
        let c = self.calls.remove(&call);
        if c.is_none() {
            self.ignored(call, fact);
        }
        c
    }

    fn remember_finished(&mut self, call: CallId) {
        if self.finished.insert(call) {
            self.finished_order.push_back(call);
            if self.finished_order.len() > FINISHED_MEMORY {
                if let Some(old) = self.finished_order.pop_front() {
                    self.finished.remove(&old);
                }
            }
        }
    }
}

/// What `agent_contacts` wants, from the registrar's
/// `live_bindings(agent, now_ms)` (already best first): contact URI and
/// where to send.
pub fn contacts_of(bindings: &[&Binding]) -> Vec<(String, SocketAddr)> {
    bindings
        .iter()
        .map(|b| (b.contact_uri.clone(), b.target))
        .collect()
}
