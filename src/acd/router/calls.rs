//! A call's life in the router: arrival (placement, overflow, rejection),
//! offer results, time-outs, and the end that writes its one CDR.

use std::collections::BTreeSet;

use super::agent_state::{Agent, Misses};
use super::queue::{Call, CallState};
use super::{Router, RouterError, RouterEvent, RouterOutput, NO_ANSWER_REASON};
use crate::acd::cdr::{secs, Cdr, Disposition, LiveCall, Pause, StoreOp};
use crate::acd::facts::{CallId, Decision, EndReason, OfferResult, Party, RtpCounts};
use crate::acd::queue_log::{QueueEvent, QueueLogEntry};
use crate::config::{EmptyWhen, NoAgents, SkillReq, Strategy};

/// CDR reason of a caller who left a queue that `leave_when_empty` found
/// empty (queue_log's EXITEMPTY).
pub const LEAVE_EMPTY_REASON: &str = "leave-empty";

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
    /// `no_agents = "reject"` and nobody who could serve it is logged in,
    /// or `join_empty` found every member away: 480.
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
        // Any requirement the call may come to (relaxation) will do.
        let qualified = |a: &Agent| {
            q.strategy != Strategy::Skills
                || a.skill_score(&q.skills).is_some()
                || q.relax.iter().any(|r| a.skill_score(&r.skills).is_some())
        };
        self.members.get(queue).is_some_and(|m| {
            m.iter()
                .filter_map(|(i, _)| self.agents.at(*i))
                .any(|a| a.online() && qualified(a))
        })
    }

    /// Where an arriving call goes, or why it is refused.
    pub(super) fn place(&self, asked: &str) -> Result<Placement, Rejection> {
        // A queue removed by a reload and draining takes no new caller.
        let Some(first) = self.open_queue(asked) else {
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
                Some(o) if self.open_queue(o).is_some() && !visited.contains(o) => name = o,
                _ => {
                    let retry_after_s = (first.full_status == 503).then_some(first.retry_after_s);
                    return Err(Rejection::Full { status: first.full_status, retry_after_s });
                }
            }
        }
        if self.queues[name].no_agents == NoAgents::Reject && !self.logged_in(name) {
            return Err(Rejection::NoAgents);
        }
        let q = &self.queues[name];
        if !q.join_empty.is_empty() && self.queue_empty(name, &q.join_empty) {
            match q.join_empty_queue.as_deref() {
                Some(o) if self.open_queue(o).is_some() && !visited.contains(o) => name = o,
                _ => return Err(Rejection::NoAgents),
            }
        }
        Ok(Placement { queue: name.to_string(), overflowed_from: (name != asked).then(|| asked.to_string()) })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn arrived(
        &mut self,
        call: CallId,
        queue: &str,
        caller: String,
        (bonus, skills): (i32, Vec<SkillReq>),
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
                let full = matches!(rejection, Rejection::Full { .. });
                self.report_refused(queue, &sip_call_id, &caller, full, now_ms);
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
                        reason: Some(status.to_string()),
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
                    skills,
                    state: CallState::Waiting,
                    hangup_requested: false,
                    last_agent: None,
                    last_failed_ms: 0,
                    failed: Vec::new(),
                    deadline_ms: (q.max_wait_s > 0)
                        .then(|| at_ms.saturating_add(u64::from(q.max_wait_s) * 1000)),
                    orig_position: 0,
                    ring_started_ms: 0,
                    talk_deadline_ms: None,
                };
                let live = live_call(&c);
                self.hint_timer(c.deadline_ms);
                self.hint_waiting_steps(&name, at_ms, now_ms);
                self.tally.moved(&c.queue, c.priority, None, Some(Kind::Waiting));
                self.calls.insert(call, c);
                let position = self.position(call, now_ms);
                let entered = self.calls.get_mut(&call).map(|c| {
                    c.orig_position = position;
                    c.clone()
                });
                if let Some(c) = entered {
                    if let Some(from) = &overflowed_from {
                        self.report_passed_on(from, &c.sip_call_id, &c.caller, now_ms);
                    }
                    self.report_entered(&c, position, now_ms);
                }
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
        let Some(c) = self.calls.get(&call) else {
            return 0;
        };
        let ageing = self.ageing(&c.queue);
        if ageing.is_none() && c.seq + 1 == self.next_seq && c.state == CallState::Waiting {
            // The newest call: behind every waiting call of its priority
            // or higher (itself included in that count), ahead of the rest.
            let ahead = self.tally.waiting_at_least(&c.queue, c.priority).saturating_sub(1);
            return u32::try_from(ahead + 1).unwrap_or(u32::MAX);
        }
        self.place_of(c, now_ms)
    }

    /// Where `c` stands (or stood) among the calls waiting in its queue:
    /// 1 + those ahead of it. `c` need not be in `calls` any more.
    pub(super) fn place_of(&self, c: &Call, now_ms: u64) -> u32 {
        let ageing = self.ageing(&c.queue);
        let key = c.order_key(ageing, now_ms);
        let ahead = self
            .calls
            .values()
            .filter(|o| o.queue == c.queue && o.state == CallState::Waiting && o.id != c.id)
            .filter(|o| o.order_key(ageing, now_ms) < key)
            .count();
        u32::try_from(ahead + 1).unwrap_or(u32::MAX)
    }

    /// The queue's time per priority level gained by waiting, if it ages
    /// its callers (`priority` strategy).
    pub(super) fn ageing(&self, queue: &str) -> Option<u64> {
        self.queues
            .get(queue)
            .filter(|q| q.strategy == Strategy::Priority && q.ageing_s > 0)
            .map(|q| u64::from(q.ageing_s) * 1000)
    }

    /// A call that arrived at `at_ms` in `queue` may become offerable to
    /// more agents as it waits (tier escalation, skill relaxation): the
    /// router must look again at those times even if nothing else happens.
    /// Steps already reached need no timer: the dispatch that follows
    /// sees them.
    pub(super) fn hint_waiting_steps(&mut self, queue: &str, at_ms: u64, now_ms: u64) {
        let Some(q) = self.queues.get(queue) else {
            return;
        };
        let mut times: Vec<u64> = q.relax.iter().map(|r| at_ms.saturating_add(u64::from(r.after_s) * 1000)).collect();
        if q.tier_wait_s > 0 {
            let top = self.members.get(queue).and_then(|m| m.iter().map(|(_, l)| *l).max()).unwrap_or(1);
            for level in 2..=top {
                times.push(at_ms.saturating_add(u64::from(level - 1) * u64::from(q.tier_wait_s) * 1000));
            }
        }
        for t in times.into_iter().filter(|t| *t > now_ms) {
            self.hint_timer(Some(t));
        }
    }

    /// Every member of `queue` is in one of the `when` states (a queue
    /// with no members is empty too).
    pub(super) fn queue_empty(&self, queue: &str, when: &[EmptyWhen]) -> bool {
        let away = |a: &Agent| {
            a.active() == 0
                && when.iter().any(|w| match w {
                    EmptyWhen::Offline => !a.online() || a.logged_out,
                    EmptyWhen::Paused => a.paused.is_some(),
                    EmptyWhen::WrapUp => a.wrap_up_until.is_some(),
                    EmptyWhen::Unreachable => a.unreachable && !a.online(),
                })
        };
        self.members
            .get(queue)
            .is_none_or(|m| m.iter().filter_map(|(i, _)| self.agents.at(*i)).all(away))
    }

    /// `leave_when_empty`: waiting callers of queues that have become
    /// empty leave, oldest first, to the queue's `leave_empty_queue` or out.
    pub(super) fn leave_empty_queues(&mut self, now_ms: u64) {
        let empty: Vec<(String, Option<String>)> = self
            .queues
            .values()
            .filter(|q| !q.leave_when_empty.is_empty() && self.tally.waiting_at_least(&q.name, i32::MIN) > 0)
            .filter(|q| self.queue_empty(&q.name, &q.leave_when_empty))
            .map(|q| (q.name.clone(), q.leave_empty_queue.clone()))
            .collect();
        for (queue, target) in empty {
            let mut leaving: Vec<(u64, CallId)> = self
                .calls
                .values()
                .filter(|c| c.queue == queue && c.state == CallState::Waiting && !c.hangup_requested)
                .map(|c| (c.seq, c.id))
                .collect();
            leaving.sort();
            for (_, call) in leaving {
                match target.as_deref().filter(|t| self.open_queue(t).is_some()) {
                    Some(t) => self.move_to_queue(call, t, true, now_ms),
                    None => self.time_out_because(call, now_ms, Some(LEAVE_EMPTY_REASON.into())),
                }
            }
        }
    }

    /// Max wait is over for a waiting call: it moves to the queue's
    /// `max_wait_queue`, keeping its arrival time (so its place among
    /// that queue's callers), or it is timed out.
    pub(super) fn max_wait_reached(&mut self, call: CallId, now_ms: u64) {
        let target = self
            .calls
            .get(&call)
            .and_then(|c| self.queues.get(&c.queue))
            .and_then(|q| q.max_wait_queue.clone())
            .filter(|t| self.open_queue(t).is_some());
        match target {
            Some(t) => self.move_to_queue(call, &t, false, now_ms),
            None => self.time_out(call, now_ms),
        }
    }

    /// Moves a waiting call to queue `target`, keeping its arrival time and
    /// its caller's priority bonus; the shard hears `Queued` again.
    fn move_to_queue(&mut self, call: CallId, target: &str, empty: bool, now_ms: u64) {
        let left_at = self.position(call, now_ms);
        let (Some(c), Some(to)) = (self.calls.get_mut(&call), self.queues.get(target)) else {
            return;
        };
        let from = std::mem::replace(&mut c.queue, target.to_string());
        let old_base = self.queues.get(&from).map_or(0, |q| q.priority);
        let new_priority = c.priority.saturating_sub(old_base).saturating_add(to.priority);
        self.tally.moved(&from, c.priority, Some(Kind::Waiting), None);
        self.tally.moved(target, new_priority, None, Some(Kind::Waiting));
        c.priority = new_priority;
        c.overflowed_from = Some(from.clone());
        c.deadline_ms = (to.max_wait_s > 0).then(|| now_ms.saturating_add(u64::from(to.max_wait_s) * 1000));
        let (deadline, arrived, live) = (c.deadline_ms, c.arrived_ms, live_call(c));
        self.hint_timer(deadline);
        self.hint_waiting_steps(target, arrived, now_ms);
        let position = self.position(call, now_ms);
        if let Some(c) = self.calls.get_mut(&call) {
            c.orig_position = position;
            let moved = c.clone();
            self.report_moved(&moved, &from, left_at, empty, now_ms);
            self.report_entered(&moved, position, now_ms);
        }
        let to = target.to_string();
        self.out.push_back(RouterOutput::Event(RouterEvent::Overflowed { call, from, to: to.clone() }));
        self.out.push_back(RouterOutput::Decision(Decision::Queued { call, queue: to, position }));
        self.emit_persist(StoreOp::CallLive(live));
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
            .is_some_and(|c| matches!(&c.state, CallState::Ringing { agents } if agents.contains(&agent)));
        if !ringing_this || !self.agents.contains_key(&agent) {
            self.ignored(call, "offer-result");
            return;
        }
        let c = self.calls.get_mut(&call).expect("checked above");
        let q = &self.queues[&c.queue];
        let max_no_answer = q.max_no_answer;
        let max_talk_ms = u64::from(q.max_talk_s) * 1000;
        let a = self.agents.get_mut(&agent).expect("checked above");
        a.ringing.remove(&call);
        // The agents of a ring-all offer still ringing besides this one.
        let others: Vec<String> = match &mut c.state {
            CallState::Ringing { agents } => {
                agents.retain(|x| *x != agent);
                agents.clone()
            }
            _ => Vec::new(),
        };
        if result == OfferResult::Answered {
            let answered_ms = at_ms.max(c.arrived_ms);
            self.tally.moved(&c.queue, c.priority, Some(Kind::Ringing), Some(Kind::Talking));
            c.state = CallState::Talking {
                agent: agent.clone(),
                answered_ms,
            };
            // Counted from the router's clock: the limit is the engine's
            // promise, whatever the shard's wall clock said.
            c.talk_deadline_ms = (max_talk_ms > 0).then(|| now_ms.saturating_add(max_talk_ms));
            let talk_deadline = c.talk_deadline_ms;
            a.busy.insert(call);
            a.answered += 1;
            a.no_answer = 0;
            let live = live_call(c);
            let snapshot = c.clone();
            // The shard cancels the losers of a ring-all race as it bridges
            // the winner (and says so first); should its word be missing,
            // they are free anyway, since the call is taken.
            for o in &others {
                if let Some(oa) = self.agents.get_mut(o) {
                    oa.ringing.remove(&call);
                }
            }
            self.emit_persist(StoreOp::CallLive(live));
            // Persists the agent too (counters, the reset no-answer count).
            self.report_answered(&snapshot, &agent, answered_ms, now_ms);
            self.hint_timer(talk_deadline);
            self.out
                .push_back(RouterOutput::Event(RouterEvent::Answered { call, agent }));
            return;
        }
        // The call goes back to waiting only once no agent rings for it.
        let back = others.is_empty();
        if back {
            self.tally.moved(&c.queue, c.priority, Some(Kind::Ringing), Some(Kind::Waiting));
            c.state = CallState::Waiting;
        }
        // A call being hung up is left to the shard's fact that ends it.
        let expired = back && c.deadline_ms.is_some_and(|d| d <= now_ms) && !c.hangup_requested;
        if matches!(result, OfferResult::MediaUnavailable | OfferResult::Cancelled) {
            if result == OfferResult::MediaUnavailable {
                // The shard's relay is out of legs; the agent was never rung.
                // Not the agent's fault, and every call of that shard would
                // fail the same way: hold its calls back for a moment instead.
                let until = now_ms.saturating_add(super::MEDIA_RETRY_MS);
                self.media_short.insert(call.shard(), until);
                self.hint_timer(Some(until));
            }
            // A cancelled ring-all loser is simply free again: no miss, no
            // rest, no queue log line.
            self.out
                .push_back(RouterOutput::Event(RouterEvent::OfferFailed {
                    call,
                    agent,
                    result,
                }));
            if expired {
                self.max_wait_reached(call, now_ms);
            }
            return;
        }
        c.last_agent = Some(agent.clone());
        c.last_failed_ms = now_ms;
        match c.failed.iter_mut().find(|(a, _)| *a == agent) {
            Some(f) => f.1 = now_ms,
            None => c.failed.push((agent.clone(), now_ms)),
        }
        let snapshot = c.clone();
        let retry_ms = u64::from(q.retry_s) * 1000;
        // How long the agent rests before any new offer. An unreachable
        // phone rests the retry time: offering it the next call within the
        // same millisecond only fails again.
        let rest_s = match result {
            OfferResult::NoAnswer => q.no_answer_delay_s,
            OfferResult::Busy => q.busy_delay_s,
            OfferResult::Declined | OfferResult::Failed { status: Some(_) } => q.reject_delay_s,
            _ => q.retry_s,
        };
        let auto_unpause_ms = u64::from(q.auto_unpause_s) * 1000;
        count_miss(&mut a.counters.missed, &result);
        // Only ringing out counts toward the auto-pause: busy, DND and a
        // refused codec are answers from a person or a phone that works.
        let pause = result == OfferResult::NoAnswer && {
            a.no_answer = a.no_answer.saturating_add(1);
            a.no_answer >= max_no_answer && a.paused.is_none()
        };
        if pause {
            a.paused = Some(Pause {
                reason: Some(NO_ANSWER_REASON.into()),
                since_ms: now_ms,
                until_ms: (auto_unpause_ms > 0).then(|| now_ms.saturating_add(auto_unpause_ms)),
            });
        }
        let rest_until = (rest_s > 0).then(|| now_ms.saturating_add(u64::from(rest_s) * 1000));
        if let Some(until) = rest_until {
            a.rest_until = Some(a.rest_until.map_or(until, |u| u.max(until)));
        }
        let unpause_at = a.paused.as_ref().and_then(|p| p.until_ms);
        let state = a.persist();
        self.report_offer_failed(&snapshot, &agent, &result, now_ms);
        if pause {
            let e = QueueLogEntry::agent(now_ms, &agent, QueueEvent::Pause).with([NO_ANSWER_REASON]);
            self.qlog(e);
        }
        self.hint_timer(rest_until);
        self.hint_timer(unpause_at);
        if retry_ms > 0 {
            self.hint_timer(Some(now_ms.saturating_add(retry_ms)));
        }
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
            self.max_wait_reached(call, now_ms);
        }
    }

    /// An operator hangs up `call` in whatever state it is: the shard that
    /// owns it ends both legs (`Decision::Hangup`) and its fact, with
    /// reason `operator-hangup`, ends the call here as any end does.
    /// Returns the call's state when asked.
    pub fn hangup(&mut self, call: CallId, status: u16) -> Result<&'static str, RouterError> {
        let Some(c) = self.calls.get_mut(&call) else {
            return Err(if self.finished.contains(&call) {
                RouterError::CallEnding(call.to_string())
            } else {
                RouterError::UnknownCall(call.to_string())
            });
        };
        if c.hangup_requested {
            return Err(RouterError::CallEnding(call.to_string()));
        }
        c.hangup_requested = true;
        let state = match c.state {
            CallState::Waiting => "waiting",
            CallState::Ringing { .. } => "ringing",
            CallState::Talking { .. } => "talking",
        };
        self.out.push_back(RouterOutput::Decision(Decision::Hangup { call, status }));
        Ok(state)
    }

    pub(super) fn time_out(&mut self, call: CallId, now_ms: u64) {
        self.time_out_because(call, now_ms, None);
    }

    fn time_out_because(&mut self, call: CallId, now_ms: u64, reason: Option<String>) {
        let Some(c) = self.calls.remove(&call) else {
            return;
        };
        self.out
            .push_back(RouterOutput::Decision(Decision::TimedOut { call }));
        let end = End {
            at_ms: now_ms,
            disposition: Disposition::TimedOut,
            reason,
            hangup: Some(Party::Engine),
            rtp: RtpCounts::default(),
        };
        self.finish(c, end, now_ms);
    }

    /// Writes the call's one CDR and releases its agent. The call has
    /// already been removed from `calls`.
    pub(super) fn finish(&mut self, c: Call, end: End, now_ms: u64) {
        let position = if c.state == CallState::Waiting { self.place_of(&c, now_ms) } else { 0 };
        self.tally.moved(&c.queue, c.priority, Some(Kind::of(&c.state)), None);
        let (agent, answered_ms) = match &c.state {
            CallState::Talking { agent, answered_ms } => (Some(agent.clone()), Some(*answered_ms)),
            _ => (None, None),
        };
        match &c.state {
            CallState::Waiting => {}
            CallState::Ringing { agents } => {
                for agent in agents {
                    if let Some(a) = self.agents.get_mut(agent) {
                        a.ringing.remove(&c.id);
                    }
                }
            }
            CallState::Talking { agent, .. } => {
                let wrap_up_s = self.queues.get(&c.queue).map_or(0, |q| q.wrap_up_s);
                let talked = answered_ms.map_or(0, |t| end.at_ms.saturating_sub(t));
                let until = self.agents.get_mut(agent).and_then(|a| {
                    a.busy.remove(&c.id);
                    a.talk_ms = a.talk_ms.saturating_add(talked);
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
        self.report_finished(&c, &End { at_ms: ended_ms, ..end.clone() }, agent.as_deref(), answered_ms, position);
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
        let reason = cdr.reason.clone();
        self.emit_persist(StoreOp::Cdr(cdr));
        self.emit_persist(StoreOp::CallDone(c.id));
        self.out
            .push_back(RouterOutput::Event(RouterEvent::CallFinished {
                call: c.id,
                disposition: end.disposition,
                reason,
            }));
        self.remember_finished(c.id);
    }
}

fn count_miss(m: &mut Misses, result: &OfferResult) {
    let counter = match result {
        OfferResult::NoAnswer => &mut m.no_answer,
        OfferResult::Busy => &mut m.busy,
        OfferResult::Declined | OfferResult::Failed { status: Some(_) } => &mut m.rejected,
        OfferResult::Failed { status: None } => &mut m.unreachable,
        OfferResult::Answered | OfferResult::MediaUnavailable | OfferResult::Cancelled => return,
    };
    *counter += 1;
}

#[derive(Clone)]
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
        EndReason::MaxDuration => Some("max-duration".into()),
        EndReason::OperatorHangup => Some(crate::acd::facts::OPERATOR_HANGUP.into()),
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
