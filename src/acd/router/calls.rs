//! A call's life in the router: arrival (placement, overflow, rejection),
//! offer results, time-outs, and the end that writes its one CDR.

use std::collections::BTreeSet;

use super::agent_state::Agent;
use super::queue::{Call, CallState};
use super::{Router, RouterEvent, RouterOutput, NO_ANSWER_REASON};
use crate::acd::cdr::{secs, Cdr, Disposition, LiveCall, Pause, StoreOp};
use crate::acd::facts::{CallId, Decision, EndReason, OfferResult, Party, RtpCounts};
use crate::config::{NoAgents, Strategy};

use super::tally::Kind;

/// Where `place` puts an arriving call: the queue that takes it, and the
/// queue it was dialled for when that one was full.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Placement {
    pub queue: String,
    pub overflowed_from: Option<String>,
}

/// Why `place` refused an arriving call; each maps to the SIP answer the
/// caller gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rejection {
    /// No queue of that name: 404.
    UnknownQueue,
    /// The queue and every overflow target are full: the queue's
    /// `full_status` (486, or 503 with Retry-After).
    Full { status: u16, retry_after_s: Option<u32> },
    /// `no_agents = "reject"` and nobody who could serve it is logged in: 480.
    NoAgents,
}

impl Rejection {
    pub(super) fn status(self) -> u16 {
        match self {
            Rejection::UnknownQueue => 404,
            Rejection::Full { status, .. } => status,
            Rejection::NoAgents => 480,
        }
    }

    pub(super) fn retry_after_s(self) -> Option<u32> {
        match self {
            Rejection::Full { retry_after_s, .. } => retry_after_s,
            Rejection::UnknownQueue | Rejection::NoAgents => None,
        }
    }
}

impl Router {
    /// Unanswered calls (waiting + ringing) in `queue`: what `max_waiting` limits.
    pub(super) fn unanswered_in(&self, queue: &str) -> usize {
        self.tally.unanswered(queue)
    }

    /// Some agent who could ever take this queue's calls has a live
    /// binding (for `skills` queues: one with every skill).
    pub(super) fn logged_in(&self, queue: &str) -> bool {
        let Some(q) = self.queues.get(queue) else {
            return false;
        };
        let qualified =
            |a: &Agent| q.strategy != Strategy::Skills || a.skill_score(&q.skills).is_some();
        self.members.get(queue).is_some_and(|m| {
            m.iter()
                .filter_map(|i| self.agents.at(*i))
                .any(|a| a.online() && qualified(a))
        })
    }

    /// Where an arriving call goes, or why it is refused.
    pub(super) fn place(&self, asked: &str) -> Result<Placement, Rejection> {
        let Some(first) = self.queues.get(asked) else {
            return Err(Rejection::UnknownQueue);
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
                    let retry_after_s = (first.full_status == 503).then_some(first.retry_after_s);
                    return Err(Rejection::Full { status: first.full_status, retry_after_s });
                }
            }
        }
        if self.queues[name].no_agents == NoAgents::Reject && !self.logged_in(name) {
            return Err(Rejection::NoAgents);
        }
        Ok(Placement { queue: name.to_string(), overflowed_from: (name != asked).then(|| asked.to_string()) })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn arrived(
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
            Err(rejection) => {
                let (status, retry_after_s) = (rejection.status(), rejection.retry_after_s());
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
            Ok(Placement { queue: name, overflowed_from }) => {
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
                self.hint_timer(c.deadline_ms);
                self.tally.moved(&c.queue, c.priority, None, Some(Kind::Waiting));
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
    pub(super) fn position(&self, call: CallId, now_ms: u64) -> u32 {
        let c = &self.calls[&call];
        let ageing = self.ageing(&c.queue);
        if !ageing && c.seq + 1 == self.next_seq && c.state == CallState::Waiting {
            // The newest call: behind every waiting call of its priority
            // or higher (itself included in that count), ahead of the rest.
            let ahead = self.tally.waiting_at_least(&c.queue, c.priority).saturating_sub(1);
            return u32::try_from(ahead + 1).unwrap_or(u32::MAX);
        }
        let key = c.order_key(ageing, now_ms);
        let ahead = self
            .calls
            .values()
            .filter(|o| o.queue == c.queue && o.state == CallState::Waiting && o.id != call)
            .filter(|o| o.order_key(ageing, now_ms) < key)
            .count();
        u32::try_from(ahead + 1).unwrap_or(u32::MAX)
    }

    pub(super) fn ageing(&self, queue: &str) -> bool {
        self.queues
            .get(queue)
            .is_some_and(|q| q.strategy == Strategy::Priority)
    }

    pub(super) fn offer_result(
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
            self.tally.moved(&c.queue, c.priority, Some(Kind::Ringing), Some(Kind::Talking));
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
        self.tally.moved(&c.queue, c.priority, Some(Kind::Ringing), Some(Kind::Waiting));
        c.state = CallState::Waiting;
        let expired = c.deadline_ms.is_some_and(|d| d <= now_ms);
        if result == OfferResult::MediaUnavailable {
            // The shard's relay is out of legs; the agent was never rung.
            // Not the agent's fault, and every call of that shard would fail
            // the same way: hold its calls back for a moment instead.
            let until = now_ms.saturating_add(super::MEDIA_RETRY_MS);
            self.media_short.insert(call.shard(), until);
            self.hint_timer(Some(until));
            self.out
                .push_back(RouterOutput::Event(RouterEvent::OfferFailed {
                    call,
                    agent,
                    result,
                }));
            if expired {
                self.time_out(call, now_ms);
            }
            return;
        }
        c.last_agent = Some(agent.clone());
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

    pub(super) fn time_out(&mut self, call: CallId, now_ms: u64) {
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
    pub(super) fn finish(&mut self, c: Call, end: End, now_ms: u64) {
        self.tally.moved(&c.queue, c.priority, Some(Kind::of(&c.state)), None);
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
                let until = self.agents.get_mut(agent).and_then(|a| {
                    a.busy.remove(&c.id);
                    a.start_wrap_up(wrap_up_s, now_ms);
                    a.wrap_up_until
                });
                self.hint_timer(until);
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
}

pub(super) struct End {
    pub at_ms: u64,
    pub disposition: Disposition,
    pub reason: Option<String>,
    pub hangup: Option<Party>,
    pub rtp: RtpCounts,
}

pub(super) fn end_reason_text(r: EndReason) -> Option<String> {
    match r {
        EndReason::Normal => None,
        EndReason::MediaTimeout => Some("media-timeout".into()),
        EndReason::Failed => Some("failed".into()),
        EndReason::TimedOut => Some("timed-out".into()),
    }
}

pub(super) fn live_call(c: &Call) -> LiveCall {
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
