//! Random fact sequences (unknown, finished and duplicated calls included)
//! against the router's invariants: exactly one CDR per call, no agent
//! ringing or busy without its call, no call both waiting and offered
//! (`Router::check_invariants`, run after every step), no timer left in
//! the past.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::tests::{agent, cdrs, cid, queue, H};
use super::{CallFact, CallId, CallState, Party, RouterOutput, RtpCounts};
use crate::acd::facts::EndReason;
use crate::acd::facts::{Decision, OfferResult};

#[derive(Debug, Clone)]
enum Op {
    Arrive { n: u64, q: usize, bonus: i32 },
    Abandon(u64),
    Answer(u64),
    Refuse(u64, u8),
    WrongAgent(u64, usize),
    End(u64, u8),
    Fail(u64),
    Login(usize),
    Logout(usize),
    Pause(usize),
    Unpause(usize),
    Advance(u64),
}

const QUEUES: [&str; 5] = ["a", "b", "c", "d", "unknown"];
const AGENTS: [&str; 3] = ["x", "y", "z"];

fn op() -> impl Strategy<Value = Op> {
    let n = 0u64..12;
    prop_oneof![
        4 => (n.clone(), 0usize..5, -1i32..4).prop_map(|(n, q, bonus)| Op::Arrive { n, q, bonus }),
        1 => n.clone().prop_map(Op::Abandon),
        3 => n.clone().prop_map(Op::Answer),
        2 => (n.clone(), 0u8..6).prop_map(|(n, k)| Op::Refuse(n, k)),
        1 => (n.clone(), 0usize..3).prop_map(|(n, a)| Op::WrongAgent(n, a)),
        2 => (n.clone(), 0u8..3).prop_map(|(n, k)| Op::End(n, k)),
        1 => n.prop_map(Op::Fail),
        2 => (0usize..3).prop_map(Op::Login),
        1 => (0usize..3).prop_map(Op::Logout),
        1 => (0usize..3).prop_map(Op::Pause),
        1 => (0usize..3).prop_map(Op::Unpause),
        2 => (0u64..40_000).prop_map(Op::Advance),
    ]
}

fn harness() -> H {
    let qs = [
        queue("name = \"a\"\nmax_waiting = 3\noverflow = \"b\"\nmax_wait_s = 60\nmax_no_answer = 2\nmax_wait_queue = \"c\"\nbusy_delay_s = 3\nauto_unpause_s = 30"),
        queue("name = \"b\"\nmax_waiting = 2\noverflow = \"a\"\nno_agents = \"reject\"\nstrategy = \"round-robin\"\nfull_status = 503"),
        queue("name = \"d\"\nstrategy = \"ring-all\"\nmax_waiting = 4\nmax_wait_s = 90\nwrap_up_s = 0\ntier_wait_s = 10\nretry_s = 0"),
        queue("name = \"c\"\nstrategy = \"skills\"\nskills = [\"fr>=80\"]\nrelax = [{ after_s = 20, skills = [\"fr\"] }]\nwrap_up_s = 0\npriority = 1\nweight = 5\ntier_wait_s = 15"),
    ];
    let agents = [
        agent("x", &["a", "d"], "tiers = { b = 2 }"),
        agent("y", &["b", "c", "d"], "max_calls = 2\n[skills]\nfr = 40"),
        agent("z", &["a"], "tiers = { c = 2, d = 2 }\n[skills]\nfr = 90"),
    ];
    H::new(&qs, &agents)
}

fn ringing_agent(h: &H, n: u64) -> Option<String> {
    match h.r.calls.get(&cid(n)).map(|c| &c.state) {
        Some(CallState::Ringing { agents }) => agents.first().cloned(),
        _ => None,
    }
}

fn apply(h: &mut H, op: &Op, arrived: &mut BTreeMap<CallId, ()>) {
    let at = h.now;
    match *op {
        Op::Arrive { n, q, bonus } => {
            arrived.insert(cid(n), ());
            h.arrive(n, QUEUES[q], bonus);
        }
        Op::Abandon(n) => {
            h.fact(CallFact::Abandoned {
                call: cid(n),
                at_ms: at,
            });
        }
        Op::Answer(n) => {
            let a = ringing_agent(h, n).unwrap_or_else(|| "x".into());
            h.result(n, &a, OfferResult::Answered);
        }
        Op::Refuse(n, k) => {
            let a = ringing_agent(h, n).unwrap_or_else(|| "y".into());
            let r = match k {
                0 => OfferResult::NoAnswer,
                1 => OfferResult::Busy,
                2 => OfferResult::Declined,
                3 => OfferResult::Failed { status: None },
                4 => OfferResult::Cancelled,
                _ => OfferResult::MediaUnavailable,
            };
            h.result(n, &a, r);
        }
        Op::WrongAgent(n, a) => {
            h.result(n, AGENTS[a], OfferResult::Answered);
        }
        Op::End(n, k) => {
            let hangup = [Party::Caller, Party::Agent, Party::Engine][k as usize];
            h.fact(CallFact::Ended {
                call: cid(n),
                at_ms: at,
                hangup,
                reason: EndReason::Normal,
                rtp: RtpCounts::default(),
            });
        }
        Op::Fail(n) => {
            h.fact(CallFact::Failed {
                call: cid(n),
                at_ms: at,
                reason: "x".into(),
            });
        }
        Op::Login(a) => {
            h.login(AGENTS[a]);
        }
        Op::Logout(a) => {
            h.r.agent_contacts(AGENTS[a], Vec::new(), at).unwrap();
            h.drain();
        }
        Op::Pause(a) => {
            h.r.pause(AGENTS[a], Some("break".into()), at).unwrap();
            h.drain();
        }
        Op::Unpause(a) => {
            h.r.unpause(AGENTS[a], at).unwrap();
            h.drain();
        }
        Op::Advance(ms) => {
            h.now += ms;
            if h.r.next_timeout().is_some_and(|t| t <= h.now) {
                h.r.handle_timeout(h.now);
                h.drain();
            }
            assert!(
                h.r.next_timeout().is_none_or(|t| t > h.now),
                "timer left in the past"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_facts_keep_invariants(ops in proptest::collection::vec(op(), 1..120)) {
        let mut h = harness();
        let mut arrived = BTreeMap::new();
        for op in &ops {
            apply(&mut h, op, &mut arrived);
        }
        // End whatever is still live, whatever its state.
        for n in 0..12 {
            h.fact(CallFact::Abandoned { call: cid(n), at_ms: h.now });
            h.fact(CallFact::Abandoned { call: cid(n), at_ms: h.now });
        }
        prop_assert!(h.r.calls.is_empty());
        prop_assert!(h.r.agents.values().all(|a| a.active() == 0));
        let mut per_call: BTreeMap<String, usize> = BTreeMap::new();
        for c in cdrs(&h.log) {
            prop_assert!(c.ended_ms >= c.arrived_ms);
            prop_assert!(c.answered_ms.is_none_or(|a| a >= c.arrived_ms && a <= c.ended_ms));
            prop_assert_eq!(c.agent.is_some(), c.answered_ms.is_some());
            *per_call.entry(c.call_id.clone()).or_default() += 1;
        }
        let expected: BTreeMap<String, usize> = arrived.keys().map(|c| (c.to_string(), 1)).collect();
        prop_assert_eq!(per_call, expected);
        // Exactly one Queued-or-Rejected per call on arrival; a later
        // Queued only right after the call moved at its max wait.
        let mut first: BTreeMap<CallId, usize> = BTreeMap::new();
        let mut moved: Option<CallId> = None;
        for o in &h.log {
            if let RouterOutput::Decision(d @ (Decision::Queued { .. } | Decision::Rejected { .. })) = o {
                let n = first.entry(d.call()).or_default();
                if *n > 0 {
                    prop_assert!(matches!(d, Decision::Queued { .. }) && moved == Some(d.call()), "{d:?}");
                }
                *n += 1;
            }
            moved = match o {
                RouterOutput::Event(super::RouterEvent::Overflowed { call, .. }) => Some(*call),
                _ => None,
            };
        }
        prop_assert_eq!(first.len(), arrived.len());
        // Deterministic: the same inputs give the same outputs.
        let mut again = harness();
        for op in &ops {
            apply(&mut again, op, &mut BTreeMap::new());
        }
        for n in 0..12 {
            again.fact(CallFact::Abandoned { call: cid(n), at_ms: again.now });
            again.fact(CallFact::Abandoned { call: cid(n), at_ms: again.now });
        }
        prop_assert!(again.log == h.log, "outputs differ between identical runs");
    }
}
