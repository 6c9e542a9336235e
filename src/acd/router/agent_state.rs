//! One agent as the router sees it: contacts, calls, pause, wrap-up.
//!
//! Status rules (`Agent::status`, first match wins):
//! ringing (an offer is out) > busy (talking) > logged-out > unreachable
//! (live bindings, none answering OPTIONS) > paused > wrap-up > offline
//! (no live binding) > available. Calls in progress show even when the
//! agent is paused or offline, because those calls still hold the agent.
//! Unreachable outranks paused so that a supervisor sees a dead phone; the
//! pause is kept and shows again once a contact answers.
//!
//! Capacity: an agent may be offered a call while `ringing + busy <
//! max_calls`, it has a live binding, is not paused and is not in wrap-up.
//! Wrap-up with `max_calls > 1`: any call that ends starts (or extends)
//! wrap-up, and wrap-up blocks *new* offers even if capacity is left, while
//! the agent's other calls carry on. After-call work is done by the human,
//! and the human is the bottleneck, not the phone.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::acd::cdr::{AgentPersist, Pause};
use crate::acd::facts::CallId;
use crate::acd::stats::AgentCounters;
use crate::config::{AgentConfig, SkillReq};

/// Failed offers by kind, since the router started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Misses {
    /// Rang out (our CANCEL after the ring timeout) or 408.
    pub no_answer: u64,
    /// 486 / 600: busy or do-not-disturb.
    pub busy: u64,
    /// 603 or any other final refusal (488 codec mismatch, 4xx-6xx).
    pub rejected: u64,
    /// Transport error or ICMP unreachable: the phone could not be reached.
    pub unreachable: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentStatus {
    Offline,
    Available,
    Ringing,
    Busy,
    WrapUp,
    Paused,
    /// Logged out by an operator (shown once its last call has ended).
    LoggedOut,
    /// Registered, but no contact answers the liveness OPTIONS.
    Unreachable,
}

#[derive(Debug, Clone)]
pub(super) struct Agent {
    pub id: String,
    /// Position in the config: the last tie-breaker, and round-robin order.
    pub order: usize,
    pub max_calls: u32,
    pub skills: BTreeMap<String, u8>,
    /// Live bindings, best first, as the registrar last reported them.
    pub contacts: Vec<(String, SocketAddr)>,
    /// It has live bindings, but every one failed the liveness check (so
    /// `contacts` is empty).
    pub unreachable: bool,
    pub ringing: BTreeSet<CallId>,
    pub busy: BTreeSet<CallId>,
    pub wrap_up_until: Option<u64>,
    pub paused: Option<Pause>,
    /// Logged out by an operator: takes no offers; calls in progress end
    /// normally.
    pub logged_out: bool,
    /// Logged out while a call was in progress: the logoff is written
    /// (queue log, event) when the last call ends.
    pub logout_pending: bool,
    /// Consecutive offers that rang out; reset by an answer or an unpause.
    pub no_answer: u32,
    /// Calls answered since the router started (`fewest-calls`).
    pub answered: u64,
    /// Talk time of finished calls since the router started
    /// (`least-talk-time`).
    pub talk_ms: u64,
    /// Reporting counters, persisted (`AgentPersist::counters`).
    pub counters: AgentCounters,
    /// No offers before this time: the rest after a busy, rejected or
    /// unanswered offer (`busy_delay_s`, `reject_delay_s`, ...).
    pub rest_until: Option<u64>,
    /// End of the last wrap-up, or login (`longest-idle`).
    pub idle_since: u64,
    /// The status last seen by [`Agent::track_status`], and since when:
    /// the wallboard's time in status.
    pub status_seen: AgentStatus,
    pub status_since: u64,
}

impl Agent {
    pub fn new(order: usize, cfg: &AgentConfig, now_ms: u64) -> Agent {
        Agent {
            id: cfg.id.clone(),
            order,
            max_calls: cfg.max_calls.max(1),
            skills: cfg.skills.clone(),
            contacts: Vec::new(),
            unreachable: false,
            ringing: BTreeSet::new(),
            busy: BTreeSet::new(),
            wrap_up_until: None,
            paused: None,
            logged_out: false,
            logout_pending: false,
            no_answer: 0,
            answered: 0,
            talk_ms: 0,
            counters: AgentCounters::default(),
            rest_until: None,
            idle_since: now_ms,
            status_seen: AgentStatus::Offline,
            status_since: now_ms,
        }
    }

    /// Restarts the time in status when the status differs from the one
    /// last seen. Status is derived from several fields that many paths
    /// change, so it is compared after each input rather than set on each
    /// path.
    pub fn track_status(&mut self, now_ms: u64) {
        let s = self.status();
        if s != self.status_seen {
            self.status_seen = s;
            self.status_since = now_ms;
        }
    }

    pub fn active(&self) -> usize {
        self.ringing.len() + self.busy.len()
    }

    pub fn online(&self) -> bool {
        !self.contacts.is_empty()
    }

    /// May be offered a new call now.
    pub fn free(&self) -> bool {
        self.online()
            && !self.logged_out
            && self.paused.is_none()
            && self.wrap_up_until.is_none()
            && self.rest_until.is_none()
            && self.active() < self.max_calls as usize
    }

    pub fn status(&self) -> AgentStatus {
        if !self.ringing.is_empty() {
            AgentStatus::Ringing
        } else if !self.busy.is_empty() {
            AgentStatus::Busy
        } else if self.logged_out {
            AgentStatus::LoggedOut
        } else if self.unreachable && !self.online() {
            AgentStatus::Unreachable
        } else if self.paused.is_some() {
            AgentStatus::Paused
        } else if self.wrap_up_until.is_some() {
            AgentStatus::WrapUp
        } else if !self.online() {
            AgentStatus::Offline
        } else {
            AgentStatus::Available
        }
    }

    /// Proficiency sum over `needed`, or `None` if a skill is missing or
    /// below its minimum.
    pub fn skill_score(&self, needed: &[SkillReq]) -> Option<u32> {
        needed
            .iter()
            .map(|r| {
                self.skills
                    .get(&r.skill)
                    .filter(|&&p| p >= r.min)
                    .map(|&p| u32::from(p))
            })
            .sum()
    }

    pub fn persist(&self) -> AgentPersist {
        AgentPersist {
            paused: self.paused.clone(),
            no_answer: self.no_answer,
            counters: self.counters,
            logged_out: self.logged_out,
            logout_pending: self.logout_pending,
        }
    }

    /// Starts or extends wrap-up after a call ends.
    pub fn start_wrap_up(&mut self, wrap_up_s: u32, now_ms: u64) {
        if wrap_up_s == 0 {
            if self.wrap_up_until.is_none() && self.active() == 0 {
                self.idle_since = now_ms;
            }
            return;
        }
        let until = now_ms.saturating_add(u64::from(wrap_up_s) * 1000);
        self.wrap_up_until = Some(self.wrap_up_until.map_or(until, |u| u.max(until)));
    }
}

/// The agents, indexed by config position (`Agent::order`) and by id.
///
/// Strategies walk a queue's members for every offer; with thousands of
/// agents a lookup by id string per member (tree walk + memcmp) was most
/// of the router's CPU (perf, 2026-11-24), so members are positions here.
#[derive(Debug, Default)]
pub(super) struct AgentTable {
    list: Vec<Agent>,
    by_id: std::collections::HashMap<String, usize>,
}

impl AgentTable {
    /// `agents` in config order (ids unique: the config refuses duplicates;
    /// a repeated id would keep the first).
    pub fn new(agents: Vec<Agent>) -> AgentTable {
        let mut t = AgentTable::default();
        for a in agents {
            if !t.by_id.contains_key(&a.id) {
                t.by_id.insert(a.id.clone(), t.list.len());
                t.list.push(a);
            }
        }
        t
    }
    pub fn position(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }
    pub fn get(&self, id: &str) -> Option<&Agent> {
        self.list.get(self.position(id)?)
    }
    pub fn get_mut(&mut self, id: &str) -> Option<&mut Agent> {
        let i = self.position(id)?;
        self.list.get_mut(i)
    }
    pub fn contains_key(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }
    /// The agent at config position `i`.
    pub fn at(&self, i: usize) -> Option<&Agent> {
        self.list.get(i)
    }
    /// Config order.
    pub fn values(&self) -> std::slice::Iter<'_, Agent> {
        self.list.iter()
    }
    pub fn values_mut(&mut self) -> std::slice::IterMut<'_, Agent> {
        self.list.iter_mut()
    }
}

impl std::ops::Index<&str> for AgentTable {
    type Output = Agent;
    fn index(&self, id: &str) -> &Agent {
        self.get(id).expect("indexing a known agent")
    }
}

impl std::ops::Index<&String> for AgentTable {
    type Output = Agent;
    fn index(&self, id: &String) -> &Agent {
        &self[id.as_str()]
    }
}
