//! Matching waiting calls with free agents.

use super::agent_state::Agent;
use super::queue::CallState;
use super::tally::Kind;
use super::{strategy, Router, RouterEvent, RouterOutput};
use crate::acd::cdr::StoreOp;
use crate::acd::facts::{CallId, Decision};
use crate::config::Strategy;

impl Router {
    /// Offers waiting calls, best first, to the agents their strategies
    /// pick, until no waiting call has a free agent.
    pub(super) fn dispatch(&mut self, now_ms: u64) {
        if !self.agents.values().any(Agent::free) {
            return;
        }
        let mut order: Vec<((i128, u64), CallId)> = self
            .calls
            .values()
            .filter(|c| c.state == CallState::Waiting)
            .filter(|c| !self.media_short_at(c.id.shard(), now_ms))
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

    /// The shard's relay could not open an agent leg less than
    /// `MEDIA_RETRY_MS` ago: its calls wait (`offer_result`).
    fn media_short_at(&self, shard: u16, now_ms: u64) -> bool {
        self.media_short.get(&shard).is_some_and(|until| *until > now_ms)
    }

    pub(super) fn choose_agent(&self, id: CallId) -> Option<String> {
        let c = &self.calls[&id];
        let q = self.queues.get(&c.queue)?;
        let members = self.members.get(&c.queue)?;
        let candidates = || {
            members
                .iter()
                .filter_map(|m| self.agents.at(*m))
                .filter(|a| a.free())
                .filter(|a| q.strategy != Strategy::Skills || a.skill_score(&q.skills).is_some())
        };
        let rr = self
            .rr_last
            .get(&c.queue)
            .and_then(|l| self.agents.position(l))
            .filter(|l| members.binary_search(l).is_ok());
        // The agent that just failed this call is skipped when anyone else
        // can take it.
        let others = c
            .last_agent
            .as_ref()
            .and_then(|last| strategy::pick(q, candidates().filter(|a| &a.id != last), rr));
        others.or_else(|| strategy::pick(q, candidates(), rr)).map(|a| a.id.clone())
    }

    pub(super) fn offer(&mut self, id: CallId, agent: String) {
        let c = self
            .calls
            .get_mut(&id)
            .expect("dispatch offers known calls");
        self.tally.moved(&c.queue, c.priority, Some(Kind::of(&c.state)), Some(Kind::Ringing));
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
}
