//! What the router records for reporting: the queue log lines and the
//! per-queue and per-agent counters, both persisted with the router's
//! other ops (one group commit), so a report after a restart still adds
//! up. Called from `calls.rs` at each step of a call's life.

use super::calls::{End, LEAVE_EMPTY_REASON};
use super::queue::Call;
use super::{Router, RouterEvent, RouterOutput};
use crate::acd::cdr::{secs, Cdr, Disposition, StoreOp};
use crate::acd::facts::{OfferResult, Party, OPERATOR_HANGUP};
use crate::acd::queue_log::{QueueEvent, QueueLogEntry, NONE};
use crate::acd::stats::QueueCounters;


impl Router {
    /// A call that was live when the engine died: its restart CDR's line.
    pub(super) fn report_restart(&mut self, cdr: &Cdr) {
        let agent = cdr.agent.as_deref();
        let mut e = QueueLogEntry::new(cdr.ended_ms, &cdr.sip_call_id, &cdr.queue, agent.or(Some(NONE)), QueueEvent::Failed)
            .with([String::new(), String::new(), cdr.wait_s.to_string()]);
        e.data.push(cdr.reason.clone().unwrap_or_default());
        if let (Some(agent), Some(answered)) = (agent, cdr.answered_ms) {
            e.event = QueueEvent::CompleteAgent;
            e.data = vec![cdr.wait_s.to_string(), cdr.talk_s.to_string(), String::new()];
            let talk = cdr.ended_ms.saturating_sub(answered);
            self.count_queue(&cdr.queue, cdr.ended_ms, |q| q.talk_ms += talk);
            if let Some(a) = self.agents.get_mut(agent) {
                a.counters.talk_ms += talk;
            }
            self.persist_agent(agent);
        } else {
            let waited = cdr.ended_ms.saturating_sub(cdr.arrived_ms);
            self.count_queue(&cdr.queue, cdr.ended_ms, |q| {
                q.failed += 1;
                q.longest_wait_ms = q.longest_wait_ms.max(waited);
            });
        }
        self.qlog(e);
    }

    pub(super) fn qlog(&mut self, e: QueueLogEntry) {
        self.emit_persist(StoreOp::QueueLog(e));
    }

    /// Updates `queue`'s counters (both windows) and persists them.
    pub(super) fn count_queue(&mut self, queue: &str, now_ms: u64, f: impl Fn(&mut QueueCounters)) {
        if !self.queues.contains_key(queue) {
            return;
        }
        let s = self.qstats.entry(queue.to_string()).or_default();
        s.update(now_ms, f);
        let stats = *s;
        self.emit_persist(StoreOp::QueueStats { queue: queue.to_string(), stats });
        let service_level_s = self.queues.get(queue).map_or(0, |q| q.service_level_s);
        self.out.push_back(RouterOutput::Event(RouterEvent::QueueCounters {
            queue: queue.to_string(),
            stats,
            service_level_s,
        }));
    }

    /// Persists an agent's state (pause, no-answer count, counters).
    pub(super) fn persist_agent(&mut self, agent: &str) {
        if let Some(a) = self.agents.get(agent) {
            let state = a.persist();
            self.emit_persist(StoreOp::Agent { agent: agent.to_string(), state });
        }
    }

    /// A caller refused at the door of `queue` (full or empty).
    pub(super) fn report_refused(&mut self, queue: &str, sip_call_id: &str, caller: &str, full: bool, now_ms: u64) {
        if !self.queues.contains_key(queue) {
            return; // unknown queue: nothing to report against
        }
        let event = if full { QueueEvent::Full } else { QueueEvent::JoinEmpty };
        self.qlog(QueueLogEntry::new(now_ms, sip_call_id, queue, None, event).with([caller]));
        self.count_queue(queue, now_ms, |c| c.rejected += 1);
    }

    /// A caller dialled `from`, found it full (or empty) and was sent on.
    pub(super) fn report_passed_on(&mut self, from: &str, sip_call_id: &str, caller: &str, now_ms: u64) {
        self.qlog(QueueLogEntry::new(now_ms, sip_call_id, from, None, QueueEvent::Full).with([caller]));
        self.count_queue(from, now_ms, |c| c.overflowed += 1);
    }

    pub(super) fn report_entered(&mut self, c: &Call, position: u32, now_ms: u64) {
        let e = QueueLogEntry::new(now_ms, &c.sip_call_id, &c.queue, None, QueueEvent::EnterQueue)
            .with([String::new(), c.caller.clone(), position.to_string()]);
        self.qlog(e);
        self.count_queue(&c.queue, now_ms, |q| q.offered += 1);
    }

    /// A waiting caller moved on from `from` (max wait, or its queue
    /// emptied) into `c.queue`.
    pub(super) fn report_moved(&mut self, c: &Call, from: &str, left_at: u32, empty: bool, now_ms: u64) {
        let event = if empty { QueueEvent::ExitEmpty } else { QueueEvent::ExitWithTimeout };
        let waited = now_ms.saturating_sub(c.arrived_ms);
        let e = QueueLogEntry::new(now_ms, &c.sip_call_id, from, None, event)
            .with([left_at.to_string(), c.orig_position.to_string(), secs(waited).to_string()]);
        self.qlog(e);
        self.count_queue(from, now_ms, |q| {
            q.overflowed += 1;
            q.longest_wait_ms = q.longest_wait_ms.max(waited);
        });
    }

    pub(super) fn report_answered(&mut self, c: &Call, agent: &str, answered_ms: u64, now_ms: u64) {
        let wait = answered_ms.saturating_sub(c.arrived_ms);
        let ring = answered_ms.saturating_sub(c.ring_started_ms);
        // Bounded: the integrator takes them after every input.
        if self.answered_waits.len() < 4096 {
            self.answered_waits.push(wait);
        }
        let e = QueueLogEntry::new(now_ms, &c.sip_call_id, &c.queue, Some(agent), QueueEvent::Connect)
            .with([secs(wait).to_string(), c.id.to_string(), secs(ring).to_string()]);
        self.qlog(e);
        let sl_ms = self.queues.get(&c.queue).map_or(0, |q| u64::from(q.service_level_s) * 1000);
        self.count_queue(&c.queue, now_ms, |q| {
            q.answered += 1;
            q.wait_ms_answered += wait;
            q.longest_wait_ms = q.longest_wait_ms.max(wait);
            if wait <= sl_ms {
                q.answered_in_sl += 1;
            }
        });
        if let Some(a) = self.agents.get_mut(agent) {
            a.counters.answered += 1;
        }
        self.persist_agent(agent);
    }

    pub(super) fn report_offer_failed(&mut self, c: &Call, agent: &str, result: &OfferResult, now_ms: u64) {
        if matches!(result, OfferResult::MediaUnavailable | OfferResult::Answered | OfferResult::Cancelled) {
            return; // the agent was never rung, or lost a ring-all race
        }
        let ring_ms = now_ms.saturating_sub(c.ring_started_ms);
        let e = QueueLogEntry::new(now_ms, &c.sip_call_id, &c.queue, Some(agent), QueueEvent::RingNoAnswer)
            .with([ring_ms]);
        self.qlog(e);
    }

    /// The call's last step: one queue log line and its counters. `c` has
    /// left `calls`; `position` is where it stood when it left.
    pub(super) fn report_finished(&mut self, c: &Call, end: &End, agent: Option<&str>, answered_ms: Option<u64>, position: u32) {
        let at = end.at_ms.max(c.arrived_ms);
        let waited = answered_ms.unwrap_or(at).saturating_sub(c.arrived_ms);
        let line = |event, data: [String; 3]| {
            QueueLogEntry::new(at, &c.sip_call_id, &c.queue, agent.or(Some(NONE)), event).with(data)
        };
        let (pos, orig) = (position.to_string(), c.orig_position.to_string());
        let by_operator = end.reason.as_deref() == Some(OPERATOR_HANGUP);
        if let (Some(agent), Some(answered_ms)) = (agent, answered_ms) {
            let talk = at.saturating_sub(answered_ms);
            let event = if by_operator {
                QueueEvent::OperatorHangup
            } else if end.hangup == Some(Party::Caller) {
                QueueEvent::CompleteCaller
            } else {
                QueueEvent::CompleteAgent
            };
            let mut e = line(event, [secs(waited).to_string(), secs(talk).to_string(), orig]);
            if by_operator {
                e.data.push("talking".into());
            }
            self.qlog(e);
            self.count_queue(&c.queue, at, |q| q.talk_ms += talk);
            if let Some(a) = self.agents.get_mut(agent) {
                a.counters.talk_ms += talk;
            }
            self.persist_agent(agent);
            return;
        }
        let leave_empty = end.reason.as_deref() == Some(LEAVE_EMPTY_REASON);
        let event = match end.disposition {
            _ if by_operator => QueueEvent::OperatorHangup,
            Disposition::Abandoned => QueueEvent::Abandon,
            Disposition::TimedOut if leave_empty => QueueEvent::ExitEmpty,
            Disposition::TimedOut => QueueEvent::ExitWithTimeout,
            _ => QueueEvent::Failed,
        };
        let mut e = line(event, [pos, orig, secs(waited).to_string()]);
        if event == QueueEvent::Failed {
            e.data.push(end.reason.clone().unwrap_or_default());
        }
        if by_operator {
            let state = if matches!(c.state, super::queue::CallState::Ringing { .. }) { "ringing" } else { "waiting" };
            e.data.push(state.into());
        }
        e.agent = NONE.to_string();
        self.qlog(e);
        let disposition = end.disposition;
        self.count_queue(&c.queue, at, |q| {
            match disposition {
                Disposition::Abandoned => q.abandoned += 1,
                Disposition::TimedOut => q.timed_out += 1,
                _ => q.failed += 1,
            }
            q.longest_wait_ms = q.longest_wait_ms.max(waited);
        });
    }
}
