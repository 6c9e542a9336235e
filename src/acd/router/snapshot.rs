//! A read-only picture of agents and queues for `/metrics` and `/queues`.

use serde::Serialize;

use super::agent_state::{Agent, AgentStatus};
use crate::acd::stats::{AgentCounters, QueueCounters};
use super::queue::CallState;
use super::Router;

#[derive(Debug, Clone, Serialize)]
pub struct RouterSnapshot {
    pub agents: Vec<AgentSnapshot>,
    pub queues: Vec<QueueSnapshot>,
    /// Live calls, in arrival order.
    pub calls: Vec<CallSnapshot>,
}

/// One live call as an operator sees it (`GET /v1/calls`).
#[derive(Debug, Clone, Serialize)]
pub struct CallSnapshot {
    pub id: String,
    pub sip_call_id: String,
    pub queue: String,
    pub overflowed_from: Option<String>,
    pub caller: String,
    /// `waiting`, `ringing` or `talking`.
    pub state: &'static str,
    /// The agent ringing or talking.
    pub agent: Option<String>,
    pub priority: i32,
    pub arrived_ms: u64,
    pub answered_ms: Option<u64>,
    /// How long since it arrived.
    pub wait_ms: u64,
    /// An operator asked to hang it up; its shard is ending both legs.
    pub ending: bool,
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
    /// Talk time since the engine started (`least-talk-time`).
    pub talk_ms: u64,
    /// Reporting counters since the database was created.
    pub counters: AgentCounters,
    pub idle_since_ms: u64,
    /// When the agent entered its current status (the router's clock).
    pub status_since_ms: u64,
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
    /// Reporting counters over the current UTC day and in total.
    pub today: QueueCounters,
    pub total: QueueCounters,
    pub service_level_s: u32,
}

impl Router {
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
                talk_ms: a.talk_ms,
                counters: a.counters,
                idle_since_ms: a.idle_since,
                status_since_ms: a.status_since,
                wrap_up_until_ms: a.wrap_up_until,
            })
            .collect();
        let queues = self
            .queues
            .keys()
            .map(|name| {
                let mine = || self.calls.values().filter(move |c| &c.queue == name);
                let count = |f: fn(&CallState) -> bool| mine().filter(|c| f(&c.state)).count();
                let serving = || self.members[name].iter().filter_map(|(m, _)| self.agents.at(*m));
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
                    today: self.qstats.get(name).map(|s| {
                        let mut s = *s;
                        s.roll(now_ms);
                        s.today
                    }).unwrap_or_default(),
                    total: self.qstats.get(name).map(|s| s.total).unwrap_or_default(),
                    service_level_s: self.queues.get(name).map_or(0, |q| q.service_level_s),
                }
            })
            .collect();
        let mut calls: Vec<(u64, CallSnapshot)> = self
            .calls
            .values()
            .map(|c| {
                let (state, agent, answered_ms) = match &c.state {
                    CallState::Waiting => ("waiting", None, None),
                    CallState::Ringing { agents } => ("ringing", agents.first().cloned(), None),
                    CallState::Talking { agent, answered_ms } => ("talking", Some(agent.clone()), Some(*answered_ms)),
                };
                let snap = CallSnapshot {
                    id: c.id.to_string(),
                    sip_call_id: c.sip_call_id.clone(),
                    queue: c.queue.clone(),
                    overflowed_from: c.overflowed_from.clone(),
                    caller: c.caller.clone(),
                    state,
                    agent,
                    priority: c.priority,
                    arrived_ms: c.arrived_ms,
                    answered_ms,
                    wait_ms: now_ms.saturating_sub(c.arrived_ms),
                    ending: c.hangup_requested,
                };
                (c.seq, snap)
            })
            .collect();
        calls.sort_by_key(|(seq, _)| *seq);
        RouterSnapshot { agents, queues, calls: calls.into_iter().map(|(_, c)| c).collect() }
    }

    fn agents_in_config_order(&self) -> impl Iterator<Item = &Agent> {
        let mut v: Vec<&Agent> = self.agents.values().collect();
        v.sort_by_key(|a| a.order);
        v.into_iter()
    }
}
