//! `ring-all`: every free member of the lowest tier reached rings at once;
//! the first answer wins, the others are freed without a miss; when every
//! agent fails, the call goes back to its place.

use super::tests::{agent, cid, queue, H};
use super::*;
use crate::acd::facts::{Decision, OfferResult};
use crate::acd::queue_log::QueueEvent;
use crate::config::SkillReq;

/// The agents of each `RingAll` decision in `out`, by call number.
fn rung(out: &[RouterOutput]) -> Vec<(u64, Vec<String>)> {
    out.iter()
        .filter_map(|o| match o {
            RouterOutput::Decision(Decision::RingAll { call, agents, .. }) => {
                Some((call.0 & 0xffff_ffff_ffff, agents.iter().map(|(a, _)| a.clone()).collect()))
            }
            _ => None,
        })
        .collect()
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}

fn ring_no_answers(h: &H, who: &str) -> usize {
    h.log
        .iter()
        .filter(|o| {
            matches!(o, RouterOutput::Persist(StoreOp::QueueLog(e))
                if e.event == QueueEvent::RingNoAnswer && e.agent == who)
        })
        .count()
}

fn ringing(h: &H, n: u64) -> Vec<String> {
    match h.r.calls.get(&cid(n)).map(|c| &c.state) {
        Some(CallState::Ringing { agents }) => agents.clone(),
        other => panic!("call {n} is {other:?}"),
    }
}

/// Queue `q` (ring-all, no rests, so freed agents are free at once) with
/// agents a, b, c.
fn three() -> H {
    let q = queue("name = \"q\"\nstrategy = \"ring-all\"\nwrap_up_s = 0\nretry_s = 0\nring_timeout_s = 20");
    let mut h = H::new(&[q], &[agent("a", &["q"], ""), agent("b", &["q"], ""), agent("c", &["q"], "")]);
    for a in ["a", "b", "c"] {
        h.login(a);
    }
    h
}

#[test]
fn every_free_member_rings_at_once() {
    let mut h = three();
    h.r.pause("c", None, h.now).unwrap();
    h.drain();
    let out = h.arrive(1, "q", 0);
    assert_eq!(rung(&out), vec![(1, names(&["a", "b"]))], "the paused agent is not rung");
    let targets = out.iter().find_map(|o| match o {
        RouterOutput::Decision(Decision::RingAll { agents, ring_timeout_ms, .. }) => Some((agents.clone(), *ring_timeout_ms)),
        _ => None,
    });
    let (agents, timeout) = targets.unwrap();
    assert_eq!(timeout, 20_000);
    assert!(agents.iter().all(|(a, t)| *t == super::tests::contact(a)), "{agents:?}");
    for a in ["a", "b"] {
        assert_eq!(h.r.agents[a].status(), AgentStatus::Ringing);
    }
    // A screen pop for each agent rung.
    let offered = out.iter().filter(|o| matches!(o, RouterOutput::Event(RouterEvent::Offered { .. }))).count();
    assert_eq!(offered, 2);
    // Nobody is free: the next caller waits.
    let out = h.arrive(2, "q", 0);
    assert!(rung(&out).is_empty());
    assert_eq!(h.r.calls[&cid(2)].state, CallState::Waiting);
}

#[test]
fn first_answer_wins_and_the_others_are_free_without_a_miss() {
    let mut h = three();
    h.arrive(1, "q", 0);
    assert_eq!(ringing(&h, 1), names(&["a", "b", "c"]));
    h.now += 3_000;
    // The shard tells the losers first, then the winner.
    h.result(1, "a", OfferResult::Cancelled);
    h.result(1, "c", OfferResult::Cancelled);
    assert_eq!(ringing(&h, 1), names(&["b"]), "still ringing the winner-to-be");
    assert_eq!(h.r.agents["a"].status(), AgentStatus::Available);
    let out = h.result(1, "b", OfferResult::Answered);
    assert!(out.iter().any(|o| matches!(o, RouterOutput::Event(RouterEvent::Answered { agent, .. }) if agent == "b")));
    assert!(matches!(&h.r.calls[&cid(1)].state, CallState::Talking { agent, .. } if agent == "b"));
    for a in ["a", "c"] {
        let ag = &h.r.agents[a];
        assert_eq!(ag.counters.missed, Misses::default(), "{a}");
        assert_eq!((ag.no_answer, ag.rest_until, ag.status()), (0, None, AgentStatus::Available), "{a}");
        assert_eq!(ring_no_answers(&h, a), 0, "{a}");
    }
    // A freed loser takes the next caller at once.
    let out = h.arrive(2, "q", 0);
    assert_eq!(rung(&out), vec![(2, names(&["a", "c"]))]);
    // Without the shard's word on the losers, the answer frees them too.
    h.result(2, "c", OfferResult::Answered);
    assert_eq!(h.r.agents["a"].status(), AgentStatus::Available);
    assert_eq!(h.r.agents["a"].counters.missed, Misses::default());
    // A late word on a loser is ignored.
    let out = h.result(2, "a", OfferResult::Cancelled);
    assert!(out.iter().any(|o| matches!(o, RouterOutput::Event(RouterEvent::Ignored { .. }))));
    h.end(1);
    h.end(2);
    let cdrs = h.cdrs();
    assert_eq!(cdrs.len(), 2);
    assert_eq!(cdrs[0].agent.as_deref(), Some("b"));
    assert_eq!(cdrs[1].agent.as_deref(), Some("c"));
}

#[test]
fn when_every_agent_fails_the_call_goes_back_to_its_place() {
    let q = queue(
        "name = \"q\"\nstrategy = \"ring-all\"\nwrap_up_s = 0\nretry_s = 10\nbusy_delay_s = 5\nno_answer_delay_s = 5\nmax_no_answer = 3",
    );
    let mut h = H::new(&[q], &[agent("a", &["q"], ""), agent("b", &["q"], "")]);
    h.arrive(1, "q", 0);
    h.arrive(2, "q", 0);
    let out = h.login("a");
    assert_eq!(rung(&out), vec![(1, names(&["a"]))]);
    let out = h.login("b");
    // b is not added to call 1, which already rings: it takes call 2.
    assert_eq!(rung(&out), vec![(2, names(&["b"]))]);
    h.result(2, "b", OfferResult::Answered);
    h.end(2);
    h.arrive(3, "q", 0);
    assert_eq!(ringing(&h, 3), names(&["b"]));
    h.now += 1_000;
    h.result(1, "a", OfferResult::Busy);
    assert_eq!(h.r.calls[&cid(1)].state, CallState::Waiting);
    h.result(3, "b", OfferResult::NoAnswer);
    assert_eq!(h.r.calls[&cid(3)].state, CallState::Waiting);
    assert_eq!(h.r.agents["a"].counters.missed.busy, 1);
    assert_eq!(h.r.agents["b"].counters.missed.no_answer, 1);
    assert_eq!((ring_no_answers(&h, "a"), ring_no_answers(&h, "b")), (1, 1));
    // Once rested, each rings for the call the other failed: neither is
    // offered again a call it failed within the retry time.
    let out = h.tick(6_000);
    assert_eq!(rung(&out), vec![(1, names(&["b"])), (3, names(&["a"]))]);
    // Both fail again: each agent's miss is counted by kind.
    h.result(1, "b", OfferResult::Declined);
    h.result(3, "a", OfferResult::Failed { status: None });
    assert_eq!(h.r.agents["b"].counters.missed.rejected, 1);
    assert_eq!(h.r.agents["a"].counters.missed.unreachable, 1);
    assert_eq!(h.r.calls[&cid(1)].state, CallState::Waiting);
    assert_eq!(h.r.calls[&cid(1)].seq, 0, "its place in line is kept");
}

#[test]
fn all_fail_one_by_one_the_call_rings_on_until_the_last() {
    let mut h = three();
    h.arrive(1, "q", 0);
    h.result(1, "a", OfferResult::Busy);
    assert_eq!(ringing(&h, 1), names(&["b", "c"]));
    h.result(1, "c", OfferResult::Failed { status: Some(488) });
    assert_eq!(ringing(&h, 1), names(&["b"]));
    let out = h.result(1, "b", OfferResult::NoAnswer);
    let m = |h: &H, a: &str| h.r.agents[a].counters.missed;
    assert_eq!((m(&h, "a").busy, m(&h, "b").no_answer, m(&h, "c").rejected), (1, 1, 1));
    // Back in line, and with retry_s = 0 rung again at once, the agent
    // that failed it last left out while others can take it.
    assert_eq!(rung(&out), vec![(1, names(&["a", "c"]))]);
    // The ring timeout: each rang out.
    h.result(1, "a", OfferResult::NoAnswer);
    let out = h.result(1, "c", OfferResult::NoAnswer);
    assert_eq!((m(&h, "a").no_answer, m(&h, "c").no_answer), (1, 1));
    assert_eq!(h.r.agents["a"].no_answer, 1);
    assert_eq!(rung(&out), vec![(1, names(&["a", "b"]))]);
}

#[test]
fn lower_tiers_ring_first_skills_and_capacity_respected() {
    let q = queue("name = \"q\"\nstrategy = \"ring-all\"\nwrap_up_s = 0\ntier_wait_s = 10");
    let mut h = H::new(
        &[q],
        &[
            agent("a", &["q"], "[skills]\nfr = 60"),
            agent("b", &["q"], "max_calls = 2\n[skills]\nfr = 90"),
            agent("c", &["q"], "[skills]\nfr = 10"),
            agent("d", &[], "tiers = { q = 2 }\n[skills]\nfr = 80"),
        ],
    );
    for a in ["a", "b", "c", "d"] {
        h.login(a);
    }
    // A caller with its own requirement (a trusted X-CC-Skills).
    let out = h.fact(CallFact::Arrived {
        call: cid(1),
        queue: "q".into(),
        caller: "sip:caller1@example.com".into(),
        priority_bonus: 0,
        skills: vec![SkillReq { skill: "fr".into(), min: 50 }],
        sip_call_id: "sip-1".into(),
        at_ms: h.now,
    });
    assert_eq!(rung(&out), vec![(1, names(&["a", "b"]))], "level 1, skilled");
    // b has room for a second call; a has not.
    let out = h.arrive(2, "q", 0);
    assert_eq!(rung(&out), vec![(2, names(&["b", "c"]))]);
    // Level 2 joins only calls that have waited the tier time.
    let out = h.arrive(3, "q", 0);
    assert!(rung(&out).is_empty());
    let out = h.tick(10_000);
    assert_eq!(rung(&out), vec![(3, names(&["d"]))]);
    assert_eq!(ringing(&h, 1), names(&["a", "b"]), "a ringing call is not widened");
    assert!(h.r.agents.values().all(|a| a.active() <= a.max_calls as usize));
}

#[test]
fn an_agent_freed_while_a_call_rings_is_not_added_to_it() {
    let mut h = three();
    h.r.pause("c", None, h.now).unwrap();
    h.drain();
    h.arrive(1, "q", 0);
    assert_eq!(ringing(&h, 1), names(&["a", "b"]));
    let out = {
        h.r.unpause("c", h.now).unwrap();
        h.drain()
    };
    assert!(rung(&out).is_empty());
    assert_eq!(ringing(&h, 1), names(&["a", "b"]));
    assert_eq!(h.r.agents["c"].status(), AgentStatus::Available);
    // c takes the next caller.
    let out = h.arrive(2, "q", 0);
    assert_eq!(rung(&out), vec![(2, names(&["c"]))]);
}

#[test]
fn caller_hanging_up_frees_every_agent_rung() {
    let mut h = three();
    h.arrive(1, "q", 0);
    h.fact(CallFact::Abandoned { call: cid(1), at_ms: h.now });
    for a in ["a", "b", "c"] {
        assert_eq!(h.r.agents[a].status(), AgentStatus::Available, "{a}");
        assert_eq!(h.r.agents[a].counters.missed, Misses::default(), "{a}");
    }
    let cdrs = h.cdrs();
    assert_eq!(cdrs.len(), 1);
    assert_eq!(cdrs[0].disposition, Disposition::Abandoned);
}

#[test]
fn media_shortage_on_a_ring_all_offer_keeps_the_call_queued() {
    let mut h = three();
    h.arrive(1, "q", 0);
    for a in ["a", "b", "c"] {
        h.result(1, a, OfferResult::MediaUnavailable);
    }
    assert_eq!(h.r.calls[&cid(1)].state, CallState::Waiting);
    for a in ["a", "b", "c"] {
        assert_eq!(h.r.agents[a].counters.missed, Misses::default(), "{a}");
        assert!(h.r.agents[a].free(), "{a}");
    }
}
