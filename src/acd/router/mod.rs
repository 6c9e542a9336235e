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
//! - Offer results: every non-answer (NoAnswer, Busy, Declined, Failed)
//!   counts as a no-answer. A phone that keeps refusing is as useless to
//!   callers as one that never rings, and counting it stops an endless
//!   offer/decline churn. `max_no_answer` consecutive ones (of the queue of
//!   the call that failed) pause the agent with reason `no-answer`; an answer
//!   or an unpause resets the count. The call goes back at its original
//!   position and is offered elsewhere first if anyone else is free.
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

mod agent_state;
mod queue;
mod strategy;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

use serde::Serialize;

pub use agent_state::AgentStatus;
pub use queue::AGEING_MS_PER_LEVEL;

use agent_state::Agent;
use queue::{Call, CallState};

use super::binding::Binding;
use super::cdr::{secs, Cdr, Disposition, LiveCall, Pause, RouterRestore, StoreOp};
use super::facts::{CallFact, CallId, Decision, EndReason, OfferResult, Party, RtpCounts};
use crate::config::{AgentConfig, NoAgents, QueueConfig, Strategy};

/// Finished call ids remembered to drop late duplicate facts.
pub const FINISHED_MEMORY: usize = 65_536;

/// Reason recorded when the router pauses an agent for not answering.
pub const NO_ANSWER_REASON: &str = "no-answer";

#[derive(Debug, Clone, PartialEq)]
pub enum RouterOutput {
    Decision(Decision),
    Persist(StoreOp),
    Event(RouterEvent),
}

/// For logs and metrics; nothing depends on them.
#[derive(Debug, Clone, PartialEq)]
pub enum RouterEvent {
    Overflowed {
        call: CallId,
        from: String,
        to: String,
    },
    Offered {
        call: CallId,
        agent: String,
    },
    Answered {
        call: CallId,
        agent: String,
    },
    OfferFailed {
        call: CallId,
        agent: String,
        result: OfferResult,
    },
    AgentPaused {
        agent: String,
        reason: Option<String>,
    },
    AgentUnpaused {
        agent: String,
    },
    AgentOnline {
        agent: String,
    },
    AgentOffline {
        agent: String,
    },
    WrapUpEnded {
        agent: String,
    },
    CallFinished {
        call: CallId,
        disposition: Disposition,
    },
    /// A fact for an unknown or finished call, or one that no longer fits
    /// the call's state (e.g. an offer result from an agent not ringing).
    Ignored {
        call: CallId,
        fact: &'static str,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouterError {
    #[error("no agent \"{0}\" is configured")]
    UnknownAgent(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct RouterSnapshot {
    pub agents: Vec<AgentSnapshot>,
    pub queues: Vec<QueueSnapshot>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentSnapshot {
    pub id: String,
    pub status: AgentStatus,
    pub paused_reason: Option<String>,
    pub contacts: usize,
    pub ringing: usize,
    pub busy: usize,
    pub max_calls: u32,
    pub no_answer: u32,
    pub answered: u64,
    pub idle_since_ms: u64,
    pub wrap_up_until_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueSnapshot {
    pub name: String,
    pub waiting: usize,
    pub ringing: usize,
    pub talking: usize,
    /// Longest current wait among unanswered calls.
    pub longest_wait_ms: u64,
    pub agents_online: usize,
    pub agents_available: usize,
}

pub struct Router {
    queues: BTreeMap<String, QueueConfig>,
    /// Queue → ids of the agents serving it, config order.
    members: BTreeMap<String, Vec<String>>,
    agents: BTreeMap<String, Agent>,
    calls: BTreeMap<CallId, Call>,
    rr_last: BTreeMap<String, String>,
    next_seq: u64,
    finished: BTreeSet<CallId>,
    finished_order: VecDeque<CallId>,
    out: VecDeque<RouterOutput>,
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
        let mut members: BTreeMap<String, Vec<String>> =
            queue_map.keys().map(|k| (k.clone(), Vec::new())).collect();
        let mut agent_map = BTreeMap::new();
        for (i, cfg) in agents.iter().enumerate() {
            let mut a = Agent::new(i, cfg, now_ms);
            if let Some(p) = restored.agents.get(&cfg.id) {
                a.paused = p.paused.clone();
                a.no_answer = p.no_answer;
            }
            for q in &cfg.queues {
                if let Some(m) = members.get_mut(q) {
                    if !m.contains(&cfg.id) {
                        m.push(cfg.id.clone());
                    }
                }
            }
            agent_map.insert(cfg.id.clone(), a);
        }
        let rr_last = restored
            .rr_last
            .into_iter()
            .filter(|(q, _)| queue_map.contains_key(q))
            .collect();
        let mut live = restored.live_calls;
        live.sort_by_key(|l| l.call);
        let mut outputs = Vec::new();
        for l in live {
            let cdr = l.restart_cdr(now_ms);
            outputs.push(RouterOutput::Persist(StoreOp::Cdr(cdr)));
            outputs.push(RouterOutput::Persist(StoreOp::CallDone(l.call)));
            outputs.push(RouterOutput::Event(RouterEvent::CallFinished {
                call: l.call,
                disposition: Disposition::Failed,
            }));
        }
        let router = Router {
            queues: queue_map,
            members,
            agents: agent_map,
            calls: BTreeMap::new(),
            rr_last,
            next_seq: 0,
            finished: BTreeSet::new(),
            finished_order: VecDeque::new(),
            out: VecDeque::new(),
        };
        (router, outputs)
    }

    pub fn poll_output(&mut self) -> Option<RouterOutput> {
        self.out.pop_front()
    }

    pub fn call_fact(&mut self, fact: CallFact, now_ms: u64) {
        match fact {
            CallFact::Arrived {
                call,
                queue,
                caller,
                priority_bonus,
                sip_call_id,
                at_ms,
            } => self.arrived(
                call,
                &queue,
                caller,
                priority_bonus,
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
        let a = self.agent_mut(agent)?;
        let was_online = a.online();
        a.contacts = contacts;
        let event = match (was_online, a.online()) {
            (false, true) => {
                a.idle_since = now_ms;
                Some(RouterEvent::AgentOnline {
                    agent: agent.to_string(),
                })
            }
            (true, false) => Some(RouterEvent::AgentOffline {
                agent: agent.to_string(),
            }),
            _ => None,
        };
        if let Some(e) = event {
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
        });
        let state = a.persist();
        self.emit_persist(StoreOp::Agent {
            agent: agent.to_string(),
            state,
        });
        self.out
            .push_back(RouterOutput::Event(RouterEvent::AgentPaused {
                agent: agent.to_string(),
                reason,
            }));
        Ok(())
    }

    /// Unpauses `agent` and resets its no-answer count, so an agent paused
    /// for not answering gets `max_no_answer` fresh chances. Idempotent.
    pub fn unpause(&mut self, agent: &str, now_ms: u64) -> Result<(), RouterError> {
        let a = self.agent_mut(agent)?;
        if a.paused.is_none() && a.no_answer == 0 {
            return Ok(());
        }
        let was_paused = a.paused.take().is_some();
        a.no_answer = 0;
        let state = a.persist();
        self.emit_persist(StoreOp::Agent {
            agent: agent.to_string(),
            state,
        });
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
    /// wait, or an agent's wrap-up end.
    pub fn next_timeout(&self) -> Option<u64> {
        let calls = self
            .calls
            .values()
            .filter(|c| c.state == CallState::Waiting)
            .filter_map(|c| c.deadline_ms);
        let agents = self.agents.values().filter_map(|a| a.wrap_up_until);
        calls.chain(agents).min()
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        let mut expired: Vec<(u64, u64, CallId)> = self
            .calls
            .values()
            .filter(|c| c.state == CallState::Waiting)
            .filter_map(|c| {
                c.deadline_ms
                    .filter(|d| *d <= now_ms)
                    .map(|d| (d, c.seq, c.id))
            })
            .collect();
        expired.sort();
        for (_, _, id) in expired {
            self.time_out(id, now_ms);
        }
        let mut ended = Vec::new();
        for a in self.agents.values_mut() {
            if let Some(until) = a.wrap_up_until.filter(|u| *u <= now_ms) {
                a.wrap_up_until = None;
                a.idle_since = until;
                ended.push(a.id.clone());
            }
        }
        for agent in ended {
            self.out
                .push_back(RouterOutput::Event(RouterEvent::WrapUpEnded { agent }));
        }
        self.dispatch(now_ms);
    }

    pub fn snapshot(&self, now_ms: u64) -> RouterSnapshot {
        let agents = self
            .agents_in_config_order()
            .map(|a| AgentSnapshot {
                id: a.id.clone(),
                status: a.status(),
                paused_reason: a.paused.as_ref().and_then(|p| p.reason.clone()),
                contacts: a.contacts.len(),
                ringing: a.ringing.len(),
                busy: a.busy.len(),
                max_calls: a.max_calls,
                no_answer: a.no_answer,
                answered: a.answered,
                idle_since_ms: a.idle_since,
                wrap_up_until_ms: a.wrap_up_until,
            })
            .collect();
        let queues = self
            .queues
            .keys()
            .map(|name| {
                let mine = || self.calls.values().filter(move |c| &c.queue == name);
                let count = |f: fn(&CallState) -> bool| mine().filter(|c| f(&c.state)).count();
                let serving = || self.members[name].iter().filter_map(|m| self.agents.get(m));
                QueueSnapshot {
                    name: name.clone(),
                    waiting: count(|s| matches!(s, CallState::Waiting)),
                    ringing: count(|s| matches!(s, CallState::Ringing { .. })),
                    talking: count(|s| matches!(s, CallState::Talking { .. })),
                    longest_wait_ms: mine()
                        .filter(|c| c.unanswered())
                        .map(|c| now_ms.saturating_sub(c.arrived_ms))
                        .max()
                        .unwrap_or(0),
                    agents_online: serving().filter(|a| a.online()).count(),
                    agents_available: serving().filter(|a| a.free()).count(),
                }
            })
            .collect();
        RouterSnapshot { agents, queues }
    }

    // ----- internals -------------------------------------------------------

    fn agents_in_config_order(&self) -> impl Iterator<Item = &Agent> {
        let mut v: Vec<&Agent> = self.agents.values().collect();
        v.sort_by_key(|a| a.order);
        v.into_iter()
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

    /// Unanswered calls (waiting + ringing) in `queue`: what `max_waiting` limits.
    fn unanswered_in(&self, queue: &str) -> usize {
        self.calls
            .values()
            .filter(|c| c.queue == queue && c.unanswered())
            .count()
    }

    /// Some agent who could ever take this queue's calls has a live
    /// binding (for `skills` queues: one with every skill).
    fn logged_in(&self, queue: &str) -> bool {
        let Some(q) = self.queues.get(queue) else {
            return false;
        };
        let qualified =
            |a: &Agent| q.strategy != Strategy::Skills || a.skill_score(&q.skills).is_some();
        self.members.get(queue).is_some_and(|m| {
            m.iter()
                .filter_map(|id| self.agents.get(id))
                .any(|a| a.online() && qualified(a))
        })
    }

    /// Where an arriving call goes: `(queue, overflowed_from)` or the
    /// rejection `(status, retry_after_s)`.
    fn place(&self, asked: &str) -> Result<(String, Option<String>), (u16, Option<u32>)> {
        let Some(first) = self.queues.get(asked) else {
            return Err((404, None));
        };
        let mut name = asked;
        let mut visited = BTreeSet::new();
        loop {
            visited.insert(name);
            let q = &self.queues[name];
            if self.unanswered_in(name) < q.max_waiting as usize {
                break;
            }
            match q.overflow.as_deref() {
                Some(o) if self.queues.contains_key(o) && !visited.contains(o) => name = o,
                _ => {
                    let retry = (first.full_status == 503).then_some(first.retry_after_s);
                    return Err((first.full_status, retry));
                }
            }
        }
        if self.queues[name].no_agents == NoAgents::Reject && !self.logged_in(name) {
            return Err((480, None));
        }
        Ok((name.to_string(), (name != asked).then(|| asked.to_string())))
    }

    #[allow(clippy::too_many_arguments)]
    fn arrived(
        &mut self,
        call: CallId,
        queue: &str,
        caller: String,
        bonus: i32,
        sip_call_id: String,
        at_ms: u64,
        now_ms: u64,
    ) {
        if self.calls.contains_key(&call) || self.finished.contains(&call) {
            self.ignored(call, "arrived");
            return;
        }
        match self.place(queue) {
            Err((status, retry_after_s)) => {
                self.out
                    .push_back(RouterOutput::Decision(Decision::Rejected {
                        call,
                        status,
                        retry_after_s,
                    }));
                let cdr = Cdr {
                    call_id: call.to_string(),
                    sip_call_id,
                    queue: queue.to_string(),
                    overflowed_from: None,
                    caller,
                    agent: None,
                    arrived_ms: at_ms,
                    answered_ms: None,
                    ended_ms: at_ms,
                    wait_s: 0,
                    talk_s: 0,
                    disposition: Disposition::Rejected,
                    reason: Some(status.to_string()),
                    hangup: Some(Party::Engine),
                    rtp: RtpCounts::default(),
                };
                self.emit_persist(StoreOp::Cdr(cdr));
                self.out
                    .push_back(RouterOutput::Event(RouterEvent::CallFinished {
                        call,
                        disposition: Disposition::Rejected,
                    }));
                self.remember_finished(call);
            }
            Ok((name, overflowed_from)) => {
                let q = &self.queues[&name];
                let seq = self.next_seq;
                self.next_seq += 1;
                let c = Call {
                    id: call,
                    seq,
                    sip_call_id,
                    caller,
                    queue: name.clone(),
                    overflowed_from: overflowed_from.clone(),
                    arrived_ms: at_ms,
                    priority: q.priority.saturating_add(bonus),
                    state: CallState::Waiting,
                    last_agent: None,
                    deadline_ms: (q.max_wait_s > 0)
                        .then(|| at_ms.saturating_add(u64::from(q.max_wait_s) * 1000)),
                };
                let live = live_call(&c);
                self.calls.insert(call, c);
                let position = self.position(call, now_ms);
                if let Some(from) = overflowed_from {
                    self.out
                        .push_back(RouterOutput::Event(RouterEvent::Overflowed {
                            call,
                            from,
                            to: name.clone(),
                        }));
                }
                self.out.push_back(RouterOutput::Decision(Decision::Queued {
                    call,
                    queue: name,
                    position,
                }));
                self.emit_persist(StoreOp::CallLive(live));
            }
        }
    }

    /// 1-based place among the calls waiting in the same queue.
    fn position(&self, call: CallId, now_ms: u64) -> u32 {
        let c = &self.calls[&call];
        let ageing = self.ageing(&c.queue);
        let key = c.order_key(ageing, now_ms);
        let ahead = self
            .calls
            .values()
            .filter(|o| o.queue == c.queue && o.state == CallState::Waiting && o.id != call)
            .filter(|o| o.order_key(ageing, now_ms) < key)
            .count();
        u32::try_from(ahead + 1).unwrap_or(u32::MAX)
    }

    fn ageing(&self, queue: &str) -> bool {
        self.queues
            .get(queue)
            .is_some_and(|q| q.strategy == Strategy::Priority)
    }

    fn offer_result(
        &mut self,
        call: CallId,
        agent: String,
        result: OfferResult,
        at_ms: u64,
        now_ms: u64,
    ) {
        let ringing_this = self
            .calls
            .get(&call)
            .is_some_and(|c| matches!(&c.state, CallState::Ringing { agent: a } if *a == agent));
        if !ringing_this || !self.agents.contains_key(&agent) {
            self.ignored(call, "offer-result");
            return;
        }
        let c = self.calls.get_mut(&call).expect("checked above");
        let q = &self.queues[&c.queue];
        let max_no_answer = q.max_no_answer;
        let a = self.agents.get_mut(&agent).expect("checked above");
        a.ringing.remove(&call);
        if result == OfferResult::Answered {
            let answered_ms = at_ms.max(c.arrived_ms);
            c.state = CallState::Talking {
                agent: agent.clone(),
                answered_ms,
            };
            a.busy.insert(call);
            a.answered += 1;
            let reset = a.no_answer != 0;
            a.no_answer = 0;
            let state = a.persist();
            let live = live_call(c);
            if reset {
                self.emit_persist(StoreOp::Agent {
                    agent: agent.clone(),
                    state,
                });
            }
            self.emit_persist(StoreOp::CallLive(live));
            self.out
                .push_back(RouterOutput::Event(RouterEvent::Answered { call, agent }));
            return;
        }
        c.state = CallState::Waiting;
        c.last_agent = Some(agent.clone());
        let expired = c.deadline_ms.is_some_and(|d| d <= now_ms);
        a.no_answer = a.no_answer.saturating_add(1);
        let pause = a.no_answer >= max_no_answer && a.paused.is_none();
        if pause {
            a.paused = Some(Pause {
                reason: Some(NO_ANSWER_REASON.into()),
                since_ms: now_ms,
            });
        }
        let state = a.persist();
        self.out
            .push_back(RouterOutput::Event(RouterEvent::OfferFailed {
                call,
                agent: agent.clone(),
                result,
            }));
        self.emit_persist(StoreOp::Agent {
            agent: agent.clone(),
            state,
        });
        if pause {
            self.out
                .push_back(RouterOutput::Event(RouterEvent::AgentPaused {
                    agent,
                    reason: Some(NO_ANSWER_REASON.into()),
                }));
        }
        if expired {
            self.time_out(call, now_ms);
        }
    }

    fn time_out(&mut self, call: CallId, now_ms: u64) {
        let Some(c) = self.calls.remove(&call) else {
            return;
        };
        self.out
            .push_back(RouterOutput::Decision(Decision::TimedOut { call }));
        let end = End {
            at_ms: now_ms,
            disposition: Disposition::TimedOut,
            reason: None,
            hangup: Some(Party::Engine),
            rtp: RtpCounts::default(),
        };
        self.finish(c, end, now_ms);
    }

    /// Writes the call's one CDR and releases its agent. The call has
    /// already been removed from `calls`.
    fn finish(&mut self, c: Call, end: End, now_ms: u64) {
        let (agent, answered_ms) = match &c.state {
            CallState::Talking { agent, answered_ms } => (Some(agent.clone()), Some(*answered_ms)),
            _ => (None, None),
        };
        match &c.state {
            CallState::Waiting => {}
            CallState::Ringing { agent } => {
                if let Some(a) = self.agents.get_mut(agent) {
                    a.ringing.remove(&c.id);
                }
            }
            CallState::Talking { agent, .. } => {
                let wrap_up_s = self.queues.get(&c.queue).map_or(0, |q| q.wrap_up_s);
                if let Some(a) = self.agents.get_mut(agent) {
                    a.busy.remove(&c.id);
                    a.start_wrap_up(wrap_up_s, now_ms);
                }
            }
        }
        let ended_ms = end
            .at_ms
            .max(answered_ms.unwrap_or(c.arrived_ms))
            .max(c.arrived_ms);
        let cdr = Cdr {
            call_id: c.id.to_string(),
            sip_call_id: c.sip_call_id,
            queue: c.queue,
            overflowed_from: c.overflowed_from,
            caller: c.caller,
            agent,
            arrived_ms: c.arrived_ms,
            answered_ms,
            ended_ms,
            wait_s: secs(answered_ms.unwrap_or(ended_ms) - c.arrived_ms),
            talk_s: answered_ms.map_or(0, |a| secs(ended_ms - a)),
            disposition: end.disposition,
            reason: end.reason,
            hangup: end.hangup,
            rtp: end.rtp,
        };
        self.emit_persist(StoreOp::Cdr(cdr));
        self.emit_persist(StoreOp::CallDone(c.id));
        self.out
            .push_back(RouterOutput::Event(RouterEvent::CallFinished {
                call: c.id,
                disposition: end.disposition,
            }));
        self.remember_finished(c.id);
    }

    /// Offers waiting calls, best first, to the agents their strategies
    /// pick, until no waiting call has a free agent.
    fn dispatch(&mut self, now_ms: u64) {
        if !self.agents.values().any(Agent::free) {
            return;
        }
        let mut order: Vec<((i128, u64), CallId)> = self
            .calls
            .values()
            .filter(|c| c.state == CallState::Waiting)
            .map(|c| (c.order_key(self.ageing(&c.queue), now_ms), c.id))
            .collect();
        order.sort();
        for (_, id) in order {
            if let Some(agent) = self.choose_agent(id) {
                self.offer(id, agent);
                if !self.agents.values().any(Agent::free) {
                    return;
                }
            }
        }
    }

    fn choose_agent(&self, id: CallId) -> Option<String> {
        let c = &self.calls[&id];
        let q = self.queues.get(&c.queue)?;
        let members = self.members.get(&c.queue)?;
        let mut cands: Vec<&Agent> = members
            .iter()
            .filter_map(|m| self.agents.get(m))
            .filter(|a| a.free())
            .filter(|a| q.strategy != Strategy::Skills || a.skill_score(&q.skills).is_some())
            .collect();
        if cands.len() > 1 {
            if let Some(last) = &c.last_agent {
                cands.retain(|a| &a.id != last);
            }
        }
        let rr = self.rr_last.get(&c.queue).map(String::as_str);
        strategy::pick(q, &cands, members, rr).map(|i| cands[i].id.clone())
    }

    fn offer(&mut self, id: CallId, agent: String) {
        let c = self
            .calls
            .get_mut(&id)
            .expect("dispatch offers known calls");
        c.state = CallState::Ringing {
            agent: agent.clone(),
        };
        let q = &self.queues[&c.queue];
        let (queue, round_robin) = (c.queue.clone(), q.strategy == Strategy::RoundRobin);
        let ring_timeout_ms = u64::from(q.ring_timeout_s) * 1000;
        let a = self.agents.get_mut(&agent).expect("chosen among agents");
        a.ringing.insert(id);
        let targets = a.contacts.clone();
        if round_robin {
            self.rr_last.insert(queue.clone(), agent.clone());
            self.emit_persist(StoreOp::RoundRobin {
                queue,
                last_agent: agent.clone(),
            });
        }
        self.out
            .push_back(RouterOutput::Event(RouterEvent::Offered {
                call: id,
                agent: agent.clone(),
            }));
        self.out.push_back(RouterOutput::Decision(Decision::Offer {
            call: id,
            agent,
            targets,
            ring_timeout_ms,
        }));
    }

    /// Debug check of the invariants the proptest relies on.
    #[cfg(test)]
    fn check_invariants(&self) {
        for a in self.agents.values() {
            for id in &a.ringing {
                let c = self.calls.get(id).expect("ringing agent has a call");
                assert_eq!(
                    c.state,
                    CallState::Ringing {
                        agent: a.id.clone()
                    }
                );
            }
            for id in &a.busy {
                let c = self.calls.get(id).expect("busy agent has a call");
                assert!(matches!(&c.state, CallState::Talking { agent, .. } if *agent == a.id));
            }
            assert!(
                a.active() <= a.max_calls as usize,
                "agent {} over capacity",
                a.id
            );
        }
        for c in self.calls.values() {
            match &c.state {
                CallState::Waiting => {
                    assert!(self
                        .agents
                        .values()
                        .all(|a| !a.ringing.contains(&c.id) && !a.busy.contains(&c.id)))
                }
                CallState::Ringing { agent } => assert!(self.agents[agent].ringing.contains(&c.id)),
                CallState::Talking { agent, .. } => {
                    assert!(self.agents[agent].busy.contains(&c.id))
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

struct End {
    at_ms: u64,
    disposition: Disposition,
    reason: Option<String>,
    hangup: Option<Party>,
    rtp: RtpCounts,
}

fn end_reason_text(r: EndReason) -> Option<String> {
    match r {
        EndReason::Normal => None,
        EndReason::MediaTimeout => Some("media-timeout".into()),
        EndReason::Failed => Some("failed".into()),
        EndReason::TimedOut => Some("timed-out".into()),
    }
}

fn live_call(c: &Call) -> LiveCall {
    let (agent, answered_ms) = match &c.state {
        CallState::Talking { agent, answered_ms } => (Some(agent.clone()), Some(*answered_ms)),
        _ => (None, None),
    };
    LiveCall {
        call: c.id,
        sip_call_id: c.sip_call_id.clone(),
        queue: c.queue.clone(),
        overflowed_from: c.overflowed_from.clone(),
        caller: c.caller.clone(),
        arrived_ms: c.arrived_ms,
        agent,
        answered_ms,
    }
}
