//! Matching waiting calls with free agents.

use super::agent_state::Agent;
use super::queue::CallState;
use super::tally::Kind;
use super::{strategy, Router, RouterEvent, RouterOutput};
use crate::acd::cdr::StoreOp;
use crate::acd::facts::{CallId, Decision};
use crate::config::{skills_in_force, Strategy};

impl Router {
    /// Offers waiting calls, best first, to the agents their strategies
    /// pick, until no waiting call has a free agent. Every input ends
    /// here, so this is also where agents' time in status restarts.
    pub(super) fn dispatch(&mut self, now_ms: u64) {
        self.offer_waiting(now_ms);
        self.settle_logouts(now_ms);
        self.track_status(now_ms);
    }

    pub(super) fn track_status(&mut self, now_ms: u64) {
        for a in self.agents.values_mut() {
            a.track_status(now_ms);
        }
    }

    fn offer_waiting(&mut self, now_ms: u64) {
        self.leave_empty_queues(now_ms);
        if !self.agents.values().any(Agent::free) {
            return;
        }
        // Queue weight first (the heavier queue gets a shared agent), then
        // effective priority, then arrival: the longest waiter.
        let mut order: Vec<((i64, (i128, u64)), CallId)> = self
            .calls
            .values()
            .filter(|c| c.state == CallState::Waiting && !c.hangup_requested)
            .filter(|c| !self.media_short_at(c.id.shard(), now_ms))
            .map(|c| {
                let weight = self.queues.get(&c.queue).map_or(0, |q| q.weight);
                ((-i64::from(weight), c.order_key(self.ageing(&c.queue), now_ms)), c.id)
            })
            .collect();
        order.sort();
        for (_, id) in order {
            let ring_all = self
                .calls
                .get(&id)
                .and_then(|c| self.queues.get(&c.queue))
                .is_some_and(|q| q.strategy == Strategy::RingAll);
            if ring_all {
                let agents = self.choose_all(id, now_ms);
                if !agents.is_empty() {
                    self.offer_all(id, agents, now_ms);
                }
                if !self.agents.values().any(Agent::free) {
                    return;
                }
            } else if let Some(agent) = self.choose_agent(id, now_ms) {
                self.offer(id, agent, now_ms);
                if !self.agents.values().any(Agent::free) {
                    return;
                }
            }
        }
    }

    /// The shard's relay could not open an agent leg less than
    /// `MEDIA_RETRY_MS` ago: its calls wait (`offer_result`).
    fn media_short_at(&self, shard: u16, now_ms: u64) -> bool {
        self.media_short.get(&shard).is_some_and(|until| *until > now_ms)
    }

    /// The agent for waiting call `id` now, if any: among free members of
    /// the tiers the call has reached whose skills meet the requirement in
    /// force, the lowest tier level (all of them for `weighted-random`),
    /// then the queue's strategy. The agent
    /// that just failed this call is skipped when anyone else can take it,
    /// and offered again only after the queue's `retry_s`.
    pub(super) fn choose_agent(&self, id: CallId, now_ms: u64) -> Option<String> {
        self.choose(id, now_ms, false).into_iter().next()
    }

    /// For a `ring-all` queue: every agent `choose_agent` would choose
    /// among, rather than one of them (the lowest tier level present, the
    /// same skipping of agents that failed the call).
    pub(super) fn choose_all(&self, id: CallId, now_ms: u64) -> Vec<String> {
        self.choose(id, now_ms, true)
    }

    fn choose(&self, id: CallId, now_ms: u64, all: bool) -> Vec<String> {
        let Some(c) = self.calls.get(&id) else { return Vec::new() };
        let Some(q) = self.queues.get(&c.queue) else { return Vec::new() };
        let Some(members) = self.members.get(&c.queue) else { return Vec::new() };
        let waited = now_ms.saturating_sub(c.arrived_ms);
        // A call with its own requirement is held to it whatever the
        // strategy, and relaxes on the queue's steps like the queue's would.
        let own = !c.skills.is_empty();
        let needed = skills_in_force(if own { &c.skills } else { &q.skills }, &q.relax, waited);
        let max_level = match q.tier_wait_s {
            0 => u32::MAX,
            t => u32::try_from(waited / (u64::from(t) * 1000)).unwrap_or(u32::MAX).saturating_add(1),
        };
        let skilled = |a: &Agent| (q.strategy != Strategy::Skills && !own) || a.skill_score(needed).is_some();
        let retry_ms = u64::from(q.retry_s) * 1000;
        let retry_pending =
            |a: &Agent| c.failed.iter().any(|(id, t)| *id == a.id && t.saturating_add(retry_ms) > now_ms);
        let candidates = || {
            members
                .iter()
                .filter(move |(_, level)| *level <= max_level)
                .filter_map(|(m, level)| self.agents.at(*m).map(|a| (a, *level)))
                .filter(|(a, _)| a.free() && skilled(a) && !retry_pending(a))
        };
        let rr = self
            .rr_last
            .get(&c.queue)
            .and_then(|l| self.agents.position(l))
            .filter(|l| members.binary_search_by_key(l, |(p, _)| *p).is_ok());
        let last = c.last_agent.as_deref();
        let pick_from = |skip_last: bool| -> Vec<String> {
            let pool = || candidates().filter(move |(a, _)| !skip_last || Some(a.id.as_str()) != last);
            // Weighted-random weighs the levels against each other instead
            // of serving them in order.
            let lowest = match q.strategy {
                Strategy::WeightedRandom => u32::MAX,
                _ => match pool().map(|(_, level)| level).min() {
                    Some(l) => l,
                    None => return Vec::new(),
                },
            };
            let tier = pool().filter(move |(_, l)| *l <= lowest);
            if all {
                return tier.map(|(a, _)| a.id.clone()).collect();
            }
            strategy::pick(q, needed, tier, rr, &self.rng).map(|a| vec![a.id.clone()]).unwrap_or_default()
        };
        let retry_due = c.last_failed_ms.saturating_add(u64::from(q.retry_s) * 1000) <= now_ms;
        let chosen = pick_from(true);
        if chosen.is_empty() && last.is_some() && retry_due {
            return pick_from(false);
        }
        chosen
    }

    pub(super) fn offer(&mut self, id: CallId, agent: String, now_ms: u64) {
        let c = self
            .calls
            .get_mut(&id)
            .expect("dispatch offers known calls");
        self.tally.moved(&c.queue, c.priority, Some(Kind::of(&c.state)), Some(Kind::Ringing));
        c.state = CallState::Ringing {
            agents: vec![agent.clone()],
        };
        c.ring_started_ms = now_ms;
        let q = &self.queues[&c.queue];
        let (queue, round_robin) = (c.queue.clone(), q.strategy == Strategy::RoundRobin);
        let (caller, sip_call_id) = (c.caller.clone(), c.sip_call_id.clone());
        let ring_timeout_ms = u64::from(q.ring_timeout_s) * 1000;
        let a = self.agents.get_mut(&agent).expect("chosen among agents");
        a.ringing.insert(id);
        let targets = a.contacts.clone();
        if round_robin {
            self.rr_last.insert(queue.clone(), agent.clone());
            self.emit_persist(StoreOp::RoundRobin {
                queue: queue.clone(),
                last_agent: agent.clone(),
            });
        }
        self.out
            .push_back(RouterOutput::Event(RouterEvent::Offered {
                call: id,
                agent: agent.clone(),
                queue,
                caller,
                sip_call_id,
            }));
        self.out.push_back(RouterOutput::Decision(Decision::Offer {
            call: id,
            agent,
            targets,
            ring_timeout_ms,
        }));
    }
}

impl Router {
    /// Rings every agent in `agents` at once for call `id` (`ring-all`):
    /// each agent holds the call as ringing, using one of its slots, until
    /// the shard reports on it.
    pub(super) fn offer_all(&mut self, id: CallId, agents: Vec<String>, now_ms: u64) {
        let Some(c) = self.calls.get_mut(&id) else { return };
        let Some(q) = self.queues.get(&c.queue) else { return };
        self.tally.moved(&c.queue, c.priority, Some(Kind::of(&c.state)), Some(Kind::Ringing));
        c.state = CallState::Ringing { agents: agents.clone() };
        c.ring_started_ms = now_ms;
        let (queue, caller, sip_call_id) = (c.queue.clone(), c.caller.clone(), c.sip_call_id.clone());
        let ring_timeout_ms = u64::from(q.ring_timeout_s) * 1000;
        let mut targets = Vec::with_capacity(agents.len());
        for agent in agents {
            let Some(a) = self.agents.get_mut(&agent) else { continue };
            a.ringing.insert(id);
            targets.push((agent.clone(), a.contacts.clone()));
            self.out.push_back(RouterOutput::Event(RouterEvent::Offered {
                call: id,
                agent,
                queue: queue.clone(),
                caller: caller.clone(),
                sip_call_id: sip_call_id.clone(),
            }));
        }
        self.out.push_back(RouterOutput::Decision(Decision::RingAll {
            call: id,
            agents: targets,
            ring_timeout_ms,
        }));
    }
}
