//! The live event stream's buffer: a bounded ring of numbered events that
//! the routing shard publishes into and `GET /v1/events` (SSE) reads.
//!
//! A reader remembers the last number it saw; [`EventRing::after`] gives
//! what followed, or says that the ring no longer holds it (a gap). The
//! lock is held for a push or a copy, never across I/O; the routing shard
//! takes it once per step that produced events.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::acd::router::RouterEvent;

/// Events kept for readers that reconnect.
pub const RING_CAPACITY: usize = 4096;

/// One numbered event: `kind` is the SSE `event:` name, `data` its JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub seq: u64,
    pub kind: &'static str,
    pub data: Value,
}

/// What a reader gets after its last number.
#[derive(Debug, PartialEq)]
pub enum After {
    /// Every event after it, in order (maybe none).
    Events(Vec<Event>),
    /// Some after it are gone; `first` is the oldest still held, and the
    /// events from there follow.
    Gap { first: u64, events: Vec<Event> },
}

struct Ring {
    /// The number the next event gets; numbers start at 1.
    next: u64,
    buf: VecDeque<Event>,
    cap: usize,
}

pub struct EventRing {
    ring: Mutex<Ring>,
    /// Readers waiting for the next event.
    pub notify: Notify,
}

impl Default for EventRing {
    fn default() -> Self {
        EventRing::new(RING_CAPACITY)
    }
}

impl EventRing {
    pub fn new(cap: usize) -> EventRing {
        EventRing {
            ring: Mutex::new(Ring { next: 1, buf: VecDeque::with_capacity(cap.min(1024)), cap: cap.max(1) }),
            notify: Notify::new(),
        }
    }

    /// Numbers and keeps `events` (the oldest fall out), then wakes readers.
    pub fn publish(&self, events: impl IntoIterator<Item = (&'static str, Value)>) {
        let mut any = false;
        if let Ok(mut r) = self.ring.lock() {
            for (kind, data) in events {
                let seq = r.next;
                r.next += 1;
                if r.buf.len() >= r.cap {
                    r.buf.pop_front();
                }
                r.buf.push_back(Event { seq, kind, data });
                any = true;
            }
        }
        if any {
            self.notify.notify_waiters();
        }
    }

    /// The number of the newest event (0 before any).
    pub fn last(&self) -> u64 {
        self.ring.lock().map(|r| r.next - 1).unwrap_or(0)
    }

    /// Events after number `last`, at most `limit` of them.
    pub fn after(&self, last: u64, limit: usize) -> After {
        let Ok(r) = self.ring.lock() else {
            return After::Events(Vec::new());
        };
        let first = r.buf.front().map_or(r.next, |e| e.seq);
        let take = |from: u64| -> Vec<Event> {
            r.buf.iter().filter(|e| e.seq >= from).take(limit).cloned().collect()
        };
        // `last` + 1 is the first one the reader lacks.
        if last.saturating_add(1) < first {
            After::Gap { first, events: take(first) }
        } else {
            After::Events(take(last.saturating_add(1)))
        }
    }
}

/// The stream's name and JSON for a router event; `None` for those no
/// operator watches (stale facts).
pub fn router_event(e: &RouterEvent, now_ms: u64) -> Option<(&'static str, Value)> {
    let (kind, data) = match e {
        RouterEvent::Overflowed { call, from, to } => {
            ("call-overflowed", json!({ "call": call.to_string(), "queue": from, "to": to }))
        }
        RouterEvent::Offered { call, agent, queue, caller, sip_call_id } => (
            "call-offered",
            json!({ "call": call.to_string(), "agent": agent, "queue": queue, "caller": caller, "sip_call_id": sip_call_id }),
        ),
        RouterEvent::Answered { call, agent } => ("call-answered", json!({ "call": call.to_string(), "agent": agent })),
        RouterEvent::OfferFailed { call, agent, result } => (
            "offer-failed",
            json!({ "call": call.to_string(), "agent": agent, "result": format!("{result:?}") }),
        ),
        RouterEvent::AgentPaused { agent, reason } => {
            ("agent-status", json!({ "agent": agent, "status": "paused", "reason": reason }))
        }
        RouterEvent::AgentUnpaused { agent } => ("agent-status", json!({ "agent": agent, "status": "unpaused" })),
        RouterEvent::AgentLoggedOut { agent } => {
            ("agent-status", json!({ "agent": agent, "status": "logged-out" }))
        }
        RouterEvent::AgentLoggedIn { agent } => ("agent-status", json!({ "agent": agent, "status": "logged-in" })),
        RouterEvent::AgentLogoutRequested { agent } => {
            ("agent-status", json!({ "agent": agent, "status": "logout-requested" }))
        }
        RouterEvent::QueueCounters { queue, stats, service_level_s } => {
            let pct = |v: Option<f64>| v.map(|p| (p * 10.0).round() / 10.0);
            (
                "queue-counters",
                json!({
                    "queue": queue,
                    "today": stats.today,
                    "total": stats.total,
                    "service_level_s": service_level_s,
                    "service_level_today": pct(stats.today.service_level_answered()),
                    "service_level_total": pct(stats.total.service_level_answered()),
                }),
            )
        }
        RouterEvent::AgentOnline { agent } => ("agent-status", json!({ "agent": agent, "status": "online" })),
        RouterEvent::AgentOffline { agent } => ("agent-status", json!({ "agent": agent, "status": "offline" })),
        RouterEvent::AgentReachability { agent, reachable, status } => {
            ("agent-status", json!({ "agent": agent, "status": status, "reachable": reachable }))
        }
        RouterEvent::WrapUpEnded { agent } => ("agent-status", json!({ "agent": agent, "status": "wrap-up-ended" })),
        RouterEvent::CallFinished { call, disposition, reason } => {
            let kind = match disposition {
                crate::acd::Disposition::Abandoned => "call-abandoned",
                _ => "call-ended",
            };
            (kind, json!({ "call": call.to_string(), "disposition": disposition, "reason": reason }))
        }
        RouterEvent::Reloaded(r) => (
            "reload",
            json!({
                "agents_added": r.agents_added, "agents_removed": r.agents_removed,
                "queues_added": r.queues_added, "queues_removed": r.queues_removed,
                "queues_draining": r.queues_draining, "agents_retiring": r.agents_retiring,
            }),
        ),
        RouterEvent::Ignored { .. } => return None,
    };
    let mut data = data;
    if let Some(o) = data.as_object_mut() {
        o.insert("at_ms".into(), now_ms.into());
    }
    Some((kind, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: u64) -> (&'static str, Value) {
        ("test", json!({ "n": n }))
    }

    fn seqs(v: &[Event]) -> Vec<u64> {
        v.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn a_reader_gets_what_followed_its_last_number_once_in_order() {
        let ring = EventRing::new(4);
        ring.publish((1..=3).map(ev));
        let After::Events(e) = ring.after(1, 100) else { panic!() };
        assert_eq!(seqs(&e), [2, 3]);
        let After::Events(e) = ring.after(3, 100) else { panic!() };
        assert!(e.is_empty());
        assert_eq!(ring.last(), 3);
    }

    #[test]
    fn a_number_older_than_the_ring_is_a_gap() {
        let ring = EventRing::new(4);
        ring.publish((1..=10).map(ev));
        match ring.after(2, 100) {
            After::Gap { first, events } => {
                assert_eq!(first, 7);
                assert_eq!(seqs(&events), [7, 8, 9, 10]);
            }
            other => panic!("{other:?}"),
        }
        // The last one dropped is still contiguous: no gap.
        let After::Events(e) = ring.after(6, 100) else { panic!() };
        assert_eq!(seqs(&e), [7, 8, 9, 10]);
    }

    #[test]
    fn an_offer_event_names_the_caller_and_queue_for_a_screen_pop() {
        let e = RouterEvent::Offered {
            call: crate::acd::facts::CallId::new(0, 7),
            agent: "alice".into(),
            queue: "support".into(),
            caller: "sip:+15551234@carrier".into(),
            sip_call_id: "abc@carrier".into(),
        };
        let (kind, data) = router_event(&e, 5).expect("watched");
        assert_eq!(kind, "call-offered");
        assert_eq!(data["agent"], "alice");
        assert_eq!(data["queue"], "support");
        assert_eq!(data["caller"], "sip:+15551234@carrier");
        assert_eq!(data["sip_call_id"], "abc@carrier");
    }

    #[test]
    fn reachability_flips_are_agent_status_events_both_ways() {
        use crate::acd::router::AgentStatus;
        let down = RouterEvent::AgentReachability { agent: "alice".into(), reachable: false, status: AgentStatus::Unreachable };
        let (kind, data) = router_event(&down, 5).expect("watched");
        assert_eq!((kind, &data["status"], &data["reachable"]), ("agent-status", &json!("unreachable"), &json!(false)));
        let up = RouterEvent::AgentReachability { agent: "alice".into(), reachable: true, status: AgentStatus::Paused };
        let (_, data) = router_event(&up, 6).expect("watched");
        assert_eq!((&data["status"], &data["reachable"]), (&json!("paused"), &json!(true)));
    }
}
