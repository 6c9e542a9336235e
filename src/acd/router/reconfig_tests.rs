//! `Router::reconfigure`: calls and agent state survive a reload.

use super::tests::{agent, cdrs, decisions, offers, queue, H};
use super::*;
use crate::acd::cdr::StoreOp;
use crate::acd::facts::{Decision, OfferResult};

fn qlog_events(out: &[RouterOutput]) -> Vec<(String, String, QueueEvent)> {
    out.iter()
        .filter_map(|o| match o {
            RouterOutput::Persist(StoreOp::QueueLog(e)) => Some((e.queue.clone(), e.agent.clone(), e.event)),
            _ => None,
        })
        .filter(|(_, _, e)| matches!(e, QueueEvent::AddMember | QueueEvent::RemoveMember))
        .collect()
}

fn agent_ids(h: &H) -> Vec<String> {
    h.r.snapshot(h.now).agents.into_iter().map(|a| a.id).collect()
}

fn queue_names(h: &H) -> Vec<String> {
    h.r.snapshot(h.now).queues.into_iter().map(|q| q.name).collect()
}

#[test]
fn an_added_agent_takes_the_next_call() {
    let q = [queue("name = \"q\"")];
    let mut h = H::new(&q, &[agent("a", &["q"], "")]);
    h.login("a");
    assert_eq!(offers(&h.arrive(1, "q", 0)), vec![(1, "a".into())]);
    h.result(1, "a", OfferResult::Answered);
    let s = h.r.reconfigure(&q, &[agent("a", &["q"], ""), agent("b", &["q"], "")], h.now);
    assert_eq!(s.agents_added, vec!["b".to_string()]);
    let out = h.drain();
    assert_eq!(qlog_events(&out), vec![("q".into(), "b".into(), QueueEvent::AddMember)]);
    h.login("b");
    assert_eq!(offers(&h.arrive(2, "q", 0)), vec![(2, "b".into())]);
}

#[test]
fn a_removed_agent_finishes_its_call_then_is_gone() {
    let q = [queue("name = \"q\"")];
    let mut h = H::new(&q, &[agent("a", &["q"], ""), agent("b", &["q"], "")]);
    h.login("a");
    h.arrive(1, "q", 0);
    h.result(1, "a", OfferResult::Answered);
    h.r.reconfigure(&q, &[agent("b", &["q"], "")], h.now);
    let out = h.drain();
    assert_eq!(qlog_events(&out), vec![("q".into(), "a".into(), QueueEvent::RemoveMember)]);
    // Still there while its call lasts, but never offered another.
    assert_eq!(agent_ids(&h), vec!["b".to_string(), "a".to_string()]);
    assert!(offers(&h.arrive(2, "q", 0)).is_empty());
    h.at(5_000);
    h.end(1);
    let c = cdrs(&h.log);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].agent.as_deref(), Some("a"));
    assert_eq!(c[0].disposition, Disposition::Answered);
    assert_eq!(agent_ids(&h), vec!["b".to_string()]);
    // Call 2 waits for b.
    assert_eq!(offers(&h.login("b")), vec![(2, "b".into())]);
}

#[test]
fn a_removed_queue_refuses_new_callers_and_drains() {
    let (q, old) = (queue("name = \"q\""), queue("name = \"old\""));
    let mut h = H::new(&[q.clone(), old.clone()], &[agent("a", &["q", "old"], "")]);
    h.arrive(1, "old", 0);
    h.r.reconfigure(&[q.clone()], &[agent("a", &["q"], "")], h.now);
    h.drain();
    assert_eq!(queue_names(&h), vec!["old".to_string(), "q".to_string()]);
    let out = h.arrive(2, "old", 0);
    assert!(matches!(decisions(&out)[..], [Decision::Rejected { status: 404, .. }]));
    // Its waiting caller is still served by the agent that served it.
    assert_eq!(offers(&h.login("a")), vec![(1, "a".into())]);
    h.result(1, "a", OfferResult::Answered);
    h.end(1);
    let out = h.drain();
    assert!(out.is_empty() || qlog_events(&out).is_empty());
    assert_eq!(queue_names(&h), vec!["q".to_string()]);
    let removed = qlog_events(&h.log);
    assert!(removed.contains(&("old".into(), "a".into(), QueueEvent::RemoveMember)), "{removed:?}");
}

#[test]
fn changed_settings_apply_to_the_next_decision_and_state_is_kept() {
    let q = queue("name = \"q\"\nstrategy = \"round-robin\"");
    let agents = [agent("a", &["q"], ""), agent("b", &["q"], "")];
    let mut h = H::new(&[q.clone()], &agents);
    h.login("a");
    h.login("b");
    h.r.pause("b", Some("lunch".into()), h.now).unwrap();
    h.drain();
    assert_eq!(offers(&h.arrive(1, "q", 0)), vec![(1, "a".into())]);
    h.result(1, "a", OfferResult::Answered);
    h.end(1);
    // max_waiting 0 now: the next caller overflows nowhere and is refused.
    let q2 = queue("name = \"q\"\nstrategy = \"round-robin\"\nmax_waiting = 0");
    h.r.reconfigure(&[q2], &agents, h.now);
    h.drain();
    let snap = h.r.snapshot(h.now);
    let b = snap.agents.iter().find(|a| a.id == "b").unwrap();
    assert_eq!(b.paused_reason.as_deref(), Some("lunch"));
    let a = snap.agents.iter().find(|a| a.id == "a").unwrap();
    assert_eq!(a.answered, 1);
    assert_eq!(snap.queues[0].total.answered, 1);
    assert!(matches!(decisions(&h.arrive(2, "q", 0))[..], [Decision::Rejected { .. }]));
}

#[test]
fn a_reload_is_an_event() {
    let q = [queue("name = \"q\"")];
    let mut h = H::new(&q, &[agent("a", &["q"], "")]);
    h.r.reconfigure(&[], &[], h.now);
    let out = h.drain();
    let ev = out.iter().find_map(|o| match o {
        RouterOutput::Event(RouterEvent::Reloaded(s)) => Some(s.clone()),
        _ => None,
    });
    let s = ev.expect("reload event");
    assert_eq!(s.agents_removed, vec!["a".to_string()]);
    assert_eq!(s.queues_removed, vec!["q".to_string()]);
    assert!(s.queues_draining.is_empty());
    assert!(agent_ids(&h).is_empty());
    assert!(queue_names(&h).is_empty());
}
