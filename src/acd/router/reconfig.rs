//! Live reconfiguration: a reloaded config replaces queues and agents
//! without touching calls in progress.
//!
//! - Calls, agent state (contacts, calls, pause, wrap-up, counters),
//!   round-robin positions and reporting counters are kept.
//! - A removed queue stops taking calls at once (new callers get 404, and
//!   no overflow leads into it) but its callers keep being served by the
//!   agents that served it until none is left ("draining"); then it is gone.
//! - A removed agent is never offered a new call; one with a call (ringing
//!   or talking) keeps it to the end and is then gone ("retiring").
//! - Changed settings (strategy, tiers, skills, timers…) apply from the
//!   next decision; a waiting call keeps the max-wait deadline it got.
//! - Membership changes go to the queue log as ADDMEMBER / REMOVEMEMBER.

use std::collections::{BTreeMap, BTreeSet};

use super::agent_state::{Agent, AgentTable};
use super::{Router, RouterEvent, RouterOutput};
use crate::acd::queue_log::{QueueEvent, QueueLogEntry, NONE};
use crate::config::{AgentConfig, QueueConfig};

/// What a reload changed, for the log and the event stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub agents_added: Vec<String>,
    pub agents_removed: Vec<String>,
    pub queues_added: Vec<String>,
    pub queues_removed: Vec<String>,
    /// Removed queues that still hold calls.
    pub queues_draining: Vec<String>,
    /// Removed agents that still hold a call.
    pub agents_retiring: Vec<String>,
}

impl Router {
    /// Replaces the queue and agent configuration at `now_ms` (see the
    /// module docs for what is kept).
    pub fn reconfigure(&mut self, queues: &[QueueConfig], agents: &[AgentConfig], now_ms: u64) -> ReloadSummary {
        let before = self.membership();
        let old_agents: BTreeSet<String> = self.agent_cfgs.iter().map(|a| a.id.clone()).collect();
        let old_queues: BTreeSet<String> =
            self.queues.keys().filter(|q| !self.draining.contains_key(*q)).cloned().collect();
        let new_agents: BTreeSet<String> = agents.iter().map(|a| a.id.clone()).collect();
        let mut new_map: BTreeMap<String, QueueConfig> =
            queues.iter().map(|q| (q.name.clone(), q.clone())).collect();

        // Queues that go but hold calls keep their old config and servers.
        let mut draining = BTreeMap::new();
        for (name, cfg) in &self.queues {
            if new_map.contains_key(name) || !self.calls.values().any(|c| &c.queue == name) {
                continue;
            }
            let servers = self.draining.get(name).cloned().unwrap_or_else(|| {
                self.members
                    .get(name)
                    .into_iter()
                    .flatten()
                    .filter_map(|(i, level)| Some((self.agents.at(*i)?.id.clone(), *level)))
                    .collect()
            });
            draining.insert(name.clone(), servers);
            new_map.insert(name.clone(), cfg.clone());
        }
        self.queues = new_map;
        self.draining = draining;
        self.retiring = self
            .agents
            .values()
            .filter(|a| !new_agents.contains(&a.id) && a.active() > 0)
            .map(|a| a.id.clone())
            .collect();
        self.agent_cfgs = agents.to_vec();
        self.rebuild_agents(now_ms);
        self.rr_last.retain(|q, _| self.queues.contains_key(q));
        let after = self.membership();
        self.log_membership(&before, &after, now_ms);

        let summary = ReloadSummary {
            agents_added: new_agents.difference(&old_agents).cloned().collect(),
            agents_removed: old_agents.difference(&new_agents).cloned().collect(),
            queues_added: queues
                .iter()
                .filter(|q| !old_queues.contains(&q.name))
                .map(|q| q.name.clone())
                .collect(),
            queues_removed: old_queues
                .iter()
                .filter(|q| !queues.iter().any(|n| &n.name == *q))
                .cloned()
                .collect(),
            queues_draining: self.draining.keys().cloned().collect(),
            agents_retiring: self.retiring.iter().cloned().collect(),
        };
        self.out.push_back(RouterOutput::Event(RouterEvent::Reloaded(summary.clone())));
        // Waiting calls may have new tiers or steps to reach.
        let waiting: Vec<(String, u64)> = self
            .calls
            .values()
            .filter(|c| c.unanswered())
            .map(|c| (c.queue.clone(), c.arrived_ms))
            .collect();
        for (q, at) in waiting {
            self.hint_waiting_steps(&q, at, now_ms);
        }
        self.dispatch(now_ms);
        summary
    }

    /// A queue that takes new calls: configured, and not draining.
    pub(super) fn open_queue(&self, name: &str) -> Option<&QueueConfig> {
        if self.draining.contains_key(name) {
            return None;
        }
        self.queues.get(name)
    }

    /// Drops draining queues that hold no call and retiring agents that
    /// hold none; cheap when neither exists.
    pub(super) fn prune_reloaded(&mut self, now_ms: u64) {
        if self.draining.is_empty() && self.retiring.is_empty() {
            return;
        }
        let empty: Vec<String> = self
            .draining
            .keys()
            .filter(|q| !self.calls.values().any(|c| &c.queue == *q))
            .cloned()
            .collect();
        let done: Vec<String> = self
            .retiring
            .iter()
            .filter(|id| self.agents.get(id).is_none_or(|a| a.active() == 0))
            .cloned()
            .collect();
        if empty.is_empty() && done.is_empty() {
            return;
        }
        let before = self.membership();
        for q in &empty {
            self.draining.remove(q);
            self.queues.remove(q);
            self.members.remove(q);
            self.tally.0.remove(q);
            self.rr_last.remove(q);
        }
        for id in &done {
            self.retiring.remove(id);
        }
        self.rebuild_agents(now_ms);
        let after = self.membership();
        self.log_membership(&before, &after, now_ms);
    }

    /// Rebuilds the agent table and the members lists from `agent_cfgs`,
    /// `retiring` and `draining`, keeping every known agent's state.
    fn rebuild_agents(&mut self, now_ms: u64) {
        let mut old: BTreeMap<String, Agent> = self.agents.values().map(|a| (a.id.clone(), a.clone())).collect();
        let mut list = Vec::with_capacity(self.agent_cfgs.len() + self.retiring.len());
        let mut members: BTreeMap<String, Vec<(usize, u32)>> =
            self.queues.keys().map(|k| (k.clone(), Vec::new())).collect();
        for (i, cfg) in self.agent_cfgs.iter().enumerate() {
            let mut a = old.remove(&cfg.id).unwrap_or_else(|| Agent::new(i, cfg, now_ms));
            a.order = i;
            a.max_calls = cfg.max_calls.max(1);
            a.skills = cfg.skills.clone();
            for (q, level) in cfg.queue_levels() {
                if self.draining.contains_key(q) {
                    continue;
                }
                if let Some(m) = members.get_mut(q) {
                    m.push((i, level));
                }
            }
            list.push(a);
        }
        for id in &self.retiring {
            if let Some(mut a) = old.remove(id) {
                a.order = list.len();
                list.push(a);
            }
        }
        self.agents = AgentTable::new(list);
        for (q, servers) in &self.draining {
            let m: Vec<(usize, u32)> = servers
                .iter()
                .filter(|(id, _)| !self.retiring.contains(id))
                .filter_map(|(id, level)| Some((self.agents.position(id)?, *level)))
                .collect();
            members.insert(q.clone(), m);
        }
        for m in members.values_mut() {
            m.sort();
        }
        self.members = members;
    }

    /// (queue, agent) pairs an agent serves, draining queues included.
    fn membership(&self) -> BTreeSet<(String, String)> {
        self.members
            .iter()
            .flat_map(|(q, m)| {
                m.iter()
                    .filter_map(|(i, _)| Some((q.clone(), self.agents.at(*i)?.id.clone())))
            })
            .collect()
    }

    fn log_membership(&mut self, before: &BTreeSet<(String, String)>, after: &BTreeSet<(String, String)>, now_ms: u64) {
        for (q, a) in before.difference(after) {
            self.qlog(QueueLogEntry::new(now_ms, NONE, q, Some(a), QueueEvent::RemoveMember));
        }
        for (q, a) in after.difference(before) {
            self.qlog(QueueLogEntry::new(now_ms, NONE, q, Some(a), QueueEvent::AddMember));
        }
    }
}
