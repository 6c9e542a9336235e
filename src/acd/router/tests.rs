//! Router unit tests: time passed in, outputs drained and inspected.

use super::*;
use crate::acd::cdr::AgentPersist;
use crate::acd::cdr::{Cdr, LiveCall};
use crate::acd::facts::EndReason;
use crate::acd::facts::{Decision, OfferResult};
use crate::config::{AgentConfig, QueueConfig};

pub(super) const T0: u64 = 1_700_000_000_000;

pub(super) fn queue(toml_text: &str) -> QueueConfig {
    toml::from_str(toml_text).expect("queue toml")
}

pub(super) fn agent(id: &str, queues: &[&str], extra: &str) -> AgentConfig {
    let qs: Vec<String> = queues.iter().map(|q| format!("\"{q}\"")).collect();
    toml::from_str(&format!(
        "id = \"{id}\"\npassword = \"pw\"\nqueues = [{}]\n{extra}",
        qs.join(", ")
    ))
    .expect("agent toml")
}

pub(super) fn contact(agent: &str) -> Vec<(String, SocketAddr)> {
    vec![(
        format!("sip:{agent}@127.0.0.1:5070"),
        "127.0.0.1:5070".parse().unwrap(),
    )]
}

pub(super) fn cid(n: u64) -> CallId {
    CallId::new(1, n)
}

pub(super) struct H {
    pub r: Router,
    pub now: u64,
    /// Everything ever output, for CDR counting.
    pub log: Vec<RouterOutput>,
}

impl H {
    pub fn new(queues: &[QueueConfig], agents: &[AgentConfig]) -> H {
        Self::restored(queues, agents, RouterRestore::default()).0
    }

    pub fn restored(
        queues: &[QueueConfig],
        agents: &[AgentConfig],
        restore: RouterRestore,
    ) -> (H, Vec<RouterOutput>) {
        let (r, init) = Router::new(queues, agents, restore, T0);
        (
            H {
                r,
                now: T0,
                log: init.clone(),
            },
            init,
        )
    }

    pub fn drain(&mut self) -> Vec<RouterOutput> {
        let mut v = Vec::new();
        while let Some(o) = self.r.poll_output() {
            v.push(o);
        }
        self.r.check_invariants();
        self.log.extend(v.iter().cloned());
        v
    }

    pub fn at(&mut self, ms: u64) {
        self.now = T0 + ms;
    }

    pub fn login(&mut self, a: &str) -> Vec<RouterOutput> {
        self.r.agent_contacts(a, contact(a), self.now).unwrap();
        self.drain()
    }

    pub fn fact(&mut self, f: CallFact) -> Vec<RouterOutput> {
        self.r.call_fact(f, self.now);
        self.drain()
    }

    pub fn arrive(&mut self, n: u64, q: &str, bonus: i32) -> Vec<RouterOutput> {
        self.fact(CallFact::Arrived {
            call: cid(n),
            queue: q.into(),
            caller: format!("sip:caller{n}@example.com"),
            priority_bonus: bonus,
            skills: Vec::new(),
            sip_call_id: format!("sip-{n}"),
            at_ms: self.now,
        })
    }

    pub fn result(&mut self, n: u64, a: &str, result: OfferResult) -> Vec<RouterOutput> {
        self.fact(CallFact::OfferResult {
            call: cid(n),
            agent: a.into(),
            result,
            at_ms: self.now,
        })
    }

    pub fn end(&mut self, n: u64) -> Vec<RouterOutput> {
        self.fact(CallFact::Ended {
            call: cid(n),
            at_ms: self.now,
            hangup: Party::Agent,
            reason: EndReason::Normal,
            rtp: RtpCounts {
                caller_to_agent: 10,
                agent_to_caller: 12,
            },
        })
    }

    pub fn tick(&mut self, ms: u64) -> Vec<RouterOutput> {
        self.at(ms);
        self.r.handle_timeout(self.now);
        self.drain()
    }

    pub fn cdrs(&self) -> Vec<Cdr> {
        cdrs(&self.log)
    }
}

pub(super) fn offers(out: &[RouterOutput]) -> Vec<(u64, String)> {
    out.iter()
        .filter_map(|o| match o {
            RouterOutput::Decision(Decision::Offer { call, agent, .. }) => {
                Some((call.0 & 0xffff_ffff_ffff, agent.clone()))
            }
            _ => None,
        })
        .collect()
}

pub(super) fn decisions(out: &[RouterOutput]) -> Vec<Decision> {
    out.iter()
        .filter_map(|o| match o {
            RouterOutput::Decision(d) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn cdrs(out: &[RouterOutput]) -> Vec<Cdr> {
    out.iter()
        .filter_map(|o| match o {
            RouterOutput::Persist(StoreOp::Cdr(c)) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

impl Router {
    /// Debug check of the invariants the proptest relies on.
    pub(super) fn check_invariants(&self) {
        let mut recount = super::tally::Tally::default();
        for c in self.calls.values() {
            recount.moved(&c.queue, c.priority, None, Some(super::tally::Kind::of(&c.state)));
        }
        for (q, t) in &self.tally.0 {
            let fresh = recount.0.get(q).cloned().unwrap_or_default();
            assert_eq!((t.unanswered, &t.waiting), (fresh.unanswered, &fresh.waiting), "tally of queue {q}");
        }
        for (q, t) in &recount.0 {
            assert_eq!(self.tally.0.get(q), Some(t), "tally of queue {q}");
        }
        for a in self.agents.values() {
            for id in &a.ringing {
                let c = self.calls.get(id).expect("ringing agent has a call");
                assert!(
                    matches!(&c.state, CallState::Ringing { agents } if agents.contains(&a.id)),
                    "{:?} rings {} but is {:?}",
                    id,
                    a.id,
                    c.state
                );
            }
            for id in &a.busy {
                let c = self.calls.get(id).expect("busy agent has a call");
                assert!(matches!(&c.state, CallState::Talking { agent, .. } if *agent == a.id));
            }
            assert!(
                a.active() <= a.max_calls as usize,
                "agent {} over capacity",
                a.id
            );
        }
        for c in self.calls.values() {
            match &c.state {
                CallState::Waiting => {
                    assert!(self
                        .agents
                        .values()
                        .all(|a| !a.ringing.contains(&c.id) && !a.busy.contains(&c.id)))
                }
                CallState::Ringing { agents } => {
                    assert!(!agents.is_empty(), "{:?} rings nobody", c.id);
                    let mut distinct = agents.clone();
                    distinct.sort();
                    distinct.dedup();
                    assert_eq!(distinct.len(), agents.len(), "{:?} rings an agent twice", c.id);
                    for agent in agents {
                        assert!(self.agents[agent].ringing.contains(&c.id));
                    }
                }
                CallState::Talking { agent, .. } => {
                    assert!(self.agents[agent].busy.contains(&c.id))
                }
            }
        }
    }
}

fn o(n: u64, a: &str) -> (u64, String) {
    (n, a.to_string())
}

#[test]
fn unknown_queue_is_404_with_a_rejected_cdr() {
    let mut h = H::new(&[queue("name = \"support\"")], &[]);
    let out = h.arrive(1, "nope", 0);
    assert_eq!(
        decisions(&out),
        vec![Decision::Rejected {
            call: cid(1),
            status: 404,
            retry_after_s: None
        }]
    );
    let c = h.cdrs();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].disposition, Disposition::Rejected);
    assert_eq!(c[0].reason.as_deref(), Some("404"));
    // A duplicate arrival of a finished call is ignored: still one CDR.
    h.arrive(1, "nope", 0);
    assert_eq!(h.cdrs().len(), 1);
}

#[test]
fn priority_first_then_fifo() {
    let q = queue("name = \"q\"");
    let mut h = H::new(&[q], &[agent("a", &["q"], "max_calls = 4")]);
    let pos = |out: &[RouterOutput]| match decisions(out).as_slice() {
        [Decision::Queued { position, .. }] => *position,
        d => panic!("{d:?}"),
    };
    assert_eq!(pos(&h.arrive(1, "q", 0)), 1);
    assert_eq!(pos(&h.arrive(2, "q", 2)), 1);
    assert_eq!(pos(&h.arrive(3, "q", 0)), 3);
    assert_eq!(pos(&h.arrive(4, "q", 2)), 2);
    let out = h.login("a");
    assert_eq!(
        offers(&out),
        vec![o(2, "a"), o(4, "a"), o(1, "a"), o(3, "a")]
    );
}

#[test]
fn full_queue_overflows_then_rejects_486() {
    let main = queue("name = \"main\"\nmax_waiting = 1\noverflow = \"spill\"");
    let spill = queue("name = \"spill\"\nmax_waiting = 1");
    let mut h = H::new(&[main, spill], &[agent("a", &["spill"], "")]);
    assert!(
        matches!(decisions(&h.arrive(1, "main", 0))[..], [Decision::Queued { ref queue, .. }] if queue == "main")
    );
    let out = h.arrive(2, "main", 0);
    assert!(
        matches!(decisions(&out)[..], [Decision::Queued { ref queue, .. }] if queue == "spill")
    );
    assert!(out
        .iter()
        .any(|o| matches!(o, RouterOutput::Event(RouterEvent::Overflowed { .. }))));
    assert_eq!(
        decisions(&h.arrive(3, "main", 0)),
        vec![Decision::Rejected {
            call: cid(3),
            status: 486,
            retry_after_s: None
        }]
    );
    // The overflowed call is answered in spill: one `answered` CDR naming main.
    assert_eq!(offers(&h.login("a")), vec![o(2, "a")]);
    h.result(2, "a", OfferResult::Answered);
    h.at(5_000);
    h.end(2);
    let c: Vec<Cdr> = h
        .cdrs()
        .into_iter()
        .filter(|c| c.call_id == cid(2).to_string())
        .collect();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].disposition, Disposition::Answered);
    assert_eq!(
        (c[0].queue.as_str(), c[0].overflowed_from.as_deref()),
        ("spill", Some("main"))
    );
}

#[test]
fn full_queue_503_carries_retry_after() {
    let q = queue("name = \"q\"\nmax_waiting = 1\nfull_status = 503\nretry_after_s = 42");
    let mut h = H::new(&[q], &[]);
    h.arrive(1, "q", 0);
    assert_eq!(
        decisions(&h.arrive(2, "q", 0)),
        vec![Decision::Rejected {
            call: cid(2),
            status: 503,
            retry_after_s: Some(42)
        }]
    );
}

#[test]
fn overflow_cycle_is_guarded() {
    let a = queue("name = \"a\"\nmax_waiting = 1\noverflow = \"b\"");
    let b = queue("name = \"b\"\nmax_waiting = 1\noverflow = \"a\"");
    let mut h = H::new(&[a, b], &[]);
    h.arrive(1, "a", 0);
    h.arrive(2, "a", 0);
    assert!(matches!(
        decisions(&h.arrive(3, "b", 0))[..],
        [Decision::Rejected { status: 486, .. }]
    ));
}

#[test]
fn no_agents_wait_or_reject_480() {
    let w = queue("name = \"w\"");
    let r = queue("name = \"r\"\nno_agents = \"reject\"");
    let mut h = H::new(&[w, r], &[agent("a", &["w", "r"], "")]);
    assert!(matches!(
        decisions(&h.arrive(1, "w", 0))[..],
        [Decision::Queued { .. }]
    ));
    assert_eq!(
        decisions(&h.arrive(2, "r", 0)),
        vec![Decision::Rejected {
            call: cid(2),
            status: 480,
            retry_after_s: None
        }]
    );
    // Logged in but busy still counts as logged in: the call waits.
    h.login("a");
    assert!(matches!(
        decisions(&h.arrive(3, "r", 0))[..],
        [Decision::Queued { .. }]
    ));
}

#[test]
fn skills_queue_without_a_qualified_agent_rejects_480() {
    let q = queue("name = \"q\"\nstrategy = \"skills\"\nskills = [\"de\"]\nno_agents = \"reject\"");
    let mut h = H::new(
        &[q],
        &[
            agent("a", &["q"], "[skills]\nfr = 10"),
            agent("b", &["q"], "[skills]\nde = 10"),
        ],
    );
    h.login("a");
    assert!(matches!(
        decisions(&h.arrive(1, "q", 0))[..],
        [Decision::Rejected { status: 480, .. }]
    ));
    h.login("b");
    assert_eq!(offers(&h.arrive(2, "q", 0)), vec![o(2, "b")]);
}

#[test]
fn longest_idle_picks_the_agent_idle_longest() {
    let q = queue("name = \"q\"\nwrap_up_s = 0");
    let mut h = H::new(&[q], &[agent("a", &["q"], ""), agent("b", &["q"], "")]);
    h.at(1_000);
    h.login("b");
    h.at(2_000);
    h.login("a");
    assert_eq!(offers(&h.arrive(1, "q", 0)), vec![o(1, "b")]);
    assert_eq!(offers(&h.arrive(2, "q", 0)), vec![o(2, "a")]);
    h.result(1, "b", OfferResult::Answered);
    h.result(2, "a", OfferResult::Answered);
    h.at(3_000);
    h.end(2); // a idle since 3000
    h.at(4_000);
    h.end(1); // b idle since 4000
    assert_eq!(offers(&h.arrive(3, "q", 0)), vec![o(3, "a")]);
}

#[test]
fn round_robin_rotates_and_survives_restore() {
    let q = queue("name = \"q\"\nstrategy = \"round-robin\"\nwrap_up_s = 0");
    let agents = [
        agent("a", &["q"], ""),
        agent("b", &["q"], ""),
        agent("c", &["q"], ""),
    ];
    let mut h = H::new(std::slice::from_ref(&q), &agents);
    for a in ["a", "b", "c"] {
        h.login(a);
    }
    let out = h.arrive(1, "q", 0);
    assert_eq!(offers(&out), vec![o(1, "a")]);
    assert!(out.contains(&RouterOutput::Persist(StoreOp::RoundRobin {
        queue: "q".into(),
        last_agent: "a".into()
    })));
    h.result(1, "a", OfferResult::Answered);
    h.end(1);
    assert_eq!(offers(&h.arrive(2, "q", 0)), vec![o(2, "b")]);
    // Restart: the store kept "b" as the last one; c is next, then a.
    let restore = RouterRestore {
        rr_last: [("q".to_string(), "b".to_string())].into(),
        ..Default::default()
    };
    let (mut h2, _) = H::restored(&[q], &agents, restore);
    for a in ["a", "b", "c"] {
        h2.login(a);
    }
    assert_eq!(offers(&h2.arrive(10, "q", 0)), vec![o(10, "c")]);
    assert_eq!(offers(&h2.arrive(11, "q", 0)), vec![o(11, "a")]);
}

#[test]
fn fewest_calls_prefers_the_least_used_agent() {
    let q = queue("name = \"q\"\nstrategy = \"fewest-calls\"\nwrap_up_s = 0");
    let mut h = H::new(&[q], &[agent("a", &["q"], ""), agent("b", &["q"], "")]);
    h.login("a");
    h.at(10);
    // a answers two calls while b is still away.
    for n in [1, 2] {
        assert_eq!(offers(&h.arrive(n, "q", 0)), vec![o(n, "a")]);
        h.result(n, "a", OfferResult::Answered);
        h.end(n);
    }
    // b logs in later, so a is idle longest; fewest-calls still picks b.
    h.at(100);
    h.login("b");
    assert_eq!(offers(&h.arrive(3, "q", 0)), vec![o(3, "b")]);
    h.result(3, "b", OfferResult::Answered);
    h.end(3);
    // b: 1, a: 2.
    assert_eq!(offers(&h.arrive(4, "q", 0)), vec![o(4, "b")]);
}

#[test]
fn skills_need_every_skill_and_pick_highest_proficiency() {
    let q = queue("name = \"q\"\nstrategy = \"skills\"\nskills = [\"fr\", \"billing\"]");
    let agents = [
        agent("none", &["q"], "[skills]\nfr = 100"),
        agent("mid", &["q"], "[skills]\nfr = 50\nbilling = 50"),
        agent("top", &["q"], "[skills]\nfr = 60\nbilling = 70"),
        agent("top2", &["q"], "[skills]\nfr = 70\nbilling = 60"),
    ];
    let mut h = H::new(&[q], &agents);
    h.login("none");
    h.login("mid");
    h.at(1);
    h.login("top");
    h.at(2);
    h.login("top2");
    // top and top2 tie at 130; top has been idle longer.
    assert_eq!(offers(&h.arrive(1, "q", 0)), vec![o(1, "top")]);
    assert_eq!(offers(&h.arrive(2, "q", 0)), vec![o(2, "top2")]);
    assert_eq!(offers(&h.arrive(3, "q", 0)), vec![o(3, "mid")]);
    // "none" lacks billing: the call waits.
    assert_eq!(offers(&h.arrive(4, "q", 0)), vec![]);
}

#[test]
fn priority_ageing_lets_old_low_calls_pass_new_high_ones() {
    let low = queue("name = \"low\"\nstrategy = \"priority\"");
    let high = queue("name = \"high\"\nstrategy = \"priority\"\npriority = 1");
    let agents = [agent("a", &["low", "high"], "")];
    // 70 s of waiting is worth 2.33 levels > 1.
    let mut h = H::new(&[low.clone(), high.clone()], &agents);
    h.arrive(1, "low", 0);
    h.at(70_000);
    h.arrive(2, "high", 0);
    assert_eq!(offers(&h.login("a")), vec![o(1, "a")]);
    // After 20 s the low call is worth 0.67 < 1: the high call goes first.
    let mut h = H::new(&[low, high], &agents);
    h.arrive(1, "low", 0);
    h.at(20_000);
    h.arrive(2, "high", 0);
    assert_eq!(offers(&h.login("a")), vec![o(2, "a")]);
}

fn split_five_calls(strategy: &str) -> BTreeMap<String, usize> {
    let q = queue(&format!(
        "name = \"q\"\nstrategy = \"{strategy}\"\nwrap_up_s = 5"
    ));
    let mut h = H::new(&[q], &[agent("a", &["q"], ""), agent("b", &["q"], "")]);
    h.login("a");
    h.login("b");
    let mut t = 0;
    let mut ringing: Vec<(u64, String)> = Vec::new();
    for n in 1..=5 {
        ringing.extend(offers(&h.arrive(n, "q", 0)));
    }
    let mut count = BTreeMap::new();
    while let Some((n, a)) = ringing.first().cloned() {
        ringing.remove(0);
        *count.entry(a.clone()).or_insert(0) += 1;
        t += 1_000;
        h.at(t);
        h.result(n, &a, OfferResult::Answered);
        t += 30_000;
        h.at(t);
        h.end(n);
        t += 5_000;
        ringing.extend(offers(&h.tick(t)));
    }
    assert_eq!(h.cdrs().len(), 5);
    assert!(h
        .cdrs()
        .iter()
        .all(|c| c.disposition == Disposition::Answered));
    count
}

#[test]
fn five_calls_two_agents_split_three_two() {
    for s in ["longest-idle", "round-robin", "fewest-calls", "priority", "linear", "least-talk-time"] {
        let c = split_five_calls(s);
        let mut v: Vec<usize> = c.values().copied().collect();
        v.sort();
        assert_eq!(v, vec![2, 3], "{s}: {c:?}");
    }
}

#[test]
fn no_answer_requeues_at_old_position_and_pauses_after_max() {
    // No retry delay: this is about the call's place and the pause.
    let q = queue("name = \"q\"\nmax_no_answer = 2\nretry_s = 0");
    let mut h = H::new(&[q], &[agent("a", &["q"], ""), agent("b", &["q"], "")]);
    h.login("a");
    assert_eq!(offers(&h.arrive(1, "q", 0)), vec![o(1, "a")]);
    h.arrive(2, "q", 0);
    h.at(15_000);
    // Only a is online: it gets call 1 again (call 1 is still first in line).
    assert_eq!(
        offers(&h.result(1, "a", OfferResult::NoAnswer)),
        vec![o(1, "a")]
    );
    h.at(30_000);
    let out = h.result(1, "a", OfferResult::NoAnswer);
    assert_eq!(offers(&out), vec![]);
    assert!(out.contains(&RouterOutput::Event(RouterEvent::AgentPaused {
        agent: "a".into(),
        reason: Some(NO_ANSWER_REASON.into())
    })));
    let snap = h.r.snapshot(h.now);
    assert_eq!(snap.agents[0].status, AgentStatus::Paused);
    assert_eq!(snap.agents[0].paused_reason.as_deref(), Some("no-answer"));
    // b logs in: call 1 (old position) before call 2.
    assert_eq!(offers(&h.login("b")), vec![o(1, "b")]);
    // Unpause a: it takes call 2 and its count restarts.
    assert_eq!(
        offers(&{
            h.r.unpause("a", h.now).unwrap();
            h.drain()
        }),
        vec![o(2, "a")]
    );
    assert_eq!(h.r.agents["a"].no_answer, 0);
}

#[test]
fn failed_offer_goes_to_another_free_agent_first() {
    let q = queue("name = \"q\"");
    let mut h = H::new(&[q], &[agent("a", &["q"], ""), agent("b", &["q"], "")]);
    h.login("a");
    assert_eq!(offers(&h.arrive(1, "q", 0)), vec![o(1, "a")]);
    h.at(5);
    h.login("b");
    // b is idle for less time than a, but a just failed this call.
    assert_eq!(
        offers(&h.result(1, "a", OfferResult::Declined)),
        vec![o(1, "b")]
    );
    // A refusal is counted as such, not toward the no-answer pause.
    assert_eq!(h.r.agents["a"].no_answer, 0);
    assert_eq!(h.r.agents["a"].counters.missed.rejected, 1);
}

#[test]
fn abandoned_while_waiting_or_ringing_frees_agent() {
    let q = queue("name = \"q\"");
    let mut h = H::new(&[q], &[agent("a", &["q"], "")]);
    h.arrive(1, "q", 0);
    h.fact(CallFact::Abandoned {
        call: cid(1),
        at_ms: h.now,
    });
    h.login("a");
    assert_eq!(offers(&h.arrive(2, "q", 0)), vec![o(2, "a")]);
    assert_eq!(h.r.snapshot(h.now).agents[0].status, AgentStatus::Ringing);
    h.arrive(3, "q", 0);
    h.at(4_000);
    // Abandon the ringing call: a is free at once (no wrap-up) and takes 3.
    let out = h.fact(CallFact::Abandoned {
        call: cid(2),
        at_ms: h.now,
    });
    assert_eq!(offers(&out), vec![o(3, "a")]);
    // A late offer result for 2 is ignored.
    let out = h.result(2, "a", OfferResult::NoAnswer);
    assert!(matches!(
        out[..],
        [RouterOutput::Event(RouterEvent::Ignored { .. })]
    ));
    assert_eq!(h.r.agents["a"].no_answer, 0);
    let c = h.cdrs();
    assert_eq!(c.len(), 2);
    assert!(c
        .iter()
        .all(|c| c.disposition == Disposition::Abandoned && c.agent.is_none()));
    assert_eq!(c[1].wait_s, 4);
}

#[test]
fn wrap_up_timer_then_next_call_at_once() {
    let q = queue("name = \"q\"\nwrap_up_s = 10");
    let mut h = H::new(&[q], &[agent("a", &["q"], "")]);
    h.login("a");
    h.arrive(1, "q", 0);
    h.at(2_000);
    h.result(1, "a", OfferResult::Answered);
    h.arrive(2, "q", 0);
    h.at(62_000);
    let out = h.end(1);
    assert_eq!(offers(&out), vec![]);
    assert_eq!(h.r.snapshot(h.now).agents[0].status, AgentStatus::WrapUp);
    assert_eq!(h.r.next_timeout(), Some(T0 + 72_000));
    assert_eq!(offers(&h.tick(71_999)), vec![]);
    assert_eq!(offers(&h.tick(72_000)), vec![o(2, "a")]);
    assert_eq!(h.r.agents["a"].idle_since, T0 + 72_000);
    let c = &h.cdrs()[0];
    assert_eq!(
        (c.disposition, c.wait_s, c.talk_s),
        (Disposition::Answered, 2, 60)
    );
    assert_eq!(
        (c.agent.as_deref(), c.hangup),
        (Some("a"), Some(Party::Agent))
    );
    assert_eq!(
        c.rtp,
        RtpCounts {
            caller_to_agent: 10,
            agent_to_caller: 12
        }
    );
}

#[test]
fn max_wait_times_out_with_cdr() {
    let q = queue("name = \"q\"\nmax_wait_s = 60");
    let mut h = H::new(&[q], &[agent("a", &["q"], "")]);
    h.arrive(1, "q", 0);
    h.at(10_000);
    h.arrive(2, "q", 0);
    assert_eq!(h.r.next_timeout(), Some(T0 + 60_000));
    assert_eq!(decisions(&h.tick(59_999)), vec![]);
    assert_eq!(
        decisions(&h.tick(60_000)),
        vec![Decision::TimedOut { call: cid(1) }]
    );
    assert_eq!(h.r.next_timeout(), Some(T0 + 70_000));
    let c = h.cdrs();
    assert_eq!(
        (c.len(), c[0].disposition, c[0].wait_s),
        (1, Disposition::TimedOut, 60)
    );
    // A ringing call past its deadline times out when the offer fails.
    h.login("a");
    h.at(75_000);
    let out = h.result(2, "a", OfferResult::NoAnswer);
    assert_eq!(decisions(&out), vec![Decision::TimedOut { call: cid(2) }]);
    assert_eq!(h.cdrs().len(), 2);
}

#[test]
fn restart_turns_live_calls_into_engine_restart_cdrs() {
    let live = LiveCall {
        call: cid(9),
        sip_call_id: "s9".into(),
        queue: "q".into(),
        overflowed_from: None,
        caller: "c".into(),
        arrived_ms: T0 - 10_000,
        agent: None,
        answered_ms: None,
    };
    let restore = RouterRestore {
        live_calls: vec![live],
        ..Default::default()
    };
    let (h, init) = H::restored(&[queue("name = \"q\"")], &[], restore);
    let c = cdrs(&init);
    assert_eq!(c.len(), 1);
    assert_eq!(
        (c[0].disposition, c[0].reason.as_deref()),
        (Disposition::Failed, Some("engine-restart"))
    );
    assert_eq!(c[0].wait_s, 10);
    assert!(init.contains(&RouterOutput::Persist(StoreOp::CallDone(cid(9)))));
    assert!(h.r.calls.is_empty());
}

#[test]
fn restored_pause_and_no_answer_count_apply() {
    let q = queue("name = \"q\"");
    let mut agents_state = BTreeMap::new();
    agents_state.insert(
        "a".to_string(),
        AgentPersist {
            paused: Some(Pause {
                reason: Some("lunch".into()),
                since_ms: 1,
                until_ms: None,
            }),
            no_answer: 2,
            counters: Default::default(),
            logged_out: false,
            logout_pending: false,
        },
    );
    let restore = RouterRestore {
        agents: agents_state,
        ..Default::default()
    };
    let (mut h, _) = H::restored(&[q], &[agent("a", &["q"], "")], restore);
    h.login("a");
    assert_eq!(offers(&h.arrive(1, "q", 0)), vec![]);
    assert_eq!(
        h.r.snapshot(h.now).agents[0].paused_reason.as_deref(),
        Some("lunch")
    );
}

#[test]
fn every_path_writes_exactly_one_cdr_and_live_rows_are_closed() {
    let q = queue("name = \"q\"\nwrap_up_s = 0");
    let mut h = H::new(&[q], &[agent("a", &["q"], "")]);
    h.login("a");
    h.arrive(1, "q", 0); // ringing a
    h.arrive(2, "q", 0);
    h.fact(CallFact::Failed {
        call: cid(2),
        at_ms: h.now,
        reason: "relay".into(),
    });
    h.result(1, "a", OfferResult::Answered);
    h.fact(CallFact::Abandoned {
        call: cid(1),
        at_ms: h.now,
    }); // caller BYE after answer
    h.end(1); // duplicate end: ignored
    h.fact(CallFact::Failed {
        call: cid(1),
        at_ms: h.now,
        reason: "late".into(),
    });
    let c = h.cdrs();
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].disposition, Disposition::Failed);
    assert_eq!(
        (c[1].disposition, c[1].hangup),
        (Disposition::Answered, Some(Party::Caller))
    );
    let live: BTreeSet<CallId> = h
        .log
        .iter()
        .filter_map(|o| match o {
            RouterOutput::Persist(StoreOp::CallLive(l)) => Some(l.call),
            _ => None,
        })
        .collect();
    let done: BTreeSet<CallId> = h
        .log
        .iter()
        .filter_map(|o| match o {
            RouterOutput::Persist(StoreOp::CallDone(c)) => Some(*c),
            _ => None,
        })
        .collect();
    assert_eq!(live, done);
}

#[test]
fn max_calls_two_and_wrap_up_blocks_new_offers() {
    let q = queue("name = \"q\"\nwrap_up_s = 10");
    let mut h = H::new(&[q], &[agent("a", &["q"], "max_calls = 2")]);
    h.login("a");
    assert_eq!(offers(&h.arrive(1, "q", 0)), vec![o(1, "a")]);
    assert_eq!(offers(&h.arrive(2, "q", 0)), vec![o(2, "a")]);
    assert_eq!(offers(&h.arrive(3, "q", 0)), vec![]);
    h.result(1, "a", OfferResult::Answered);
    h.result(2, "a", OfferResult::Answered);
    h.end(1);
    // One call still up, capacity left, but wrap-up blocks new offers.
    assert_eq!(h.r.snapshot(h.now).agents[0].status, AgentStatus::Busy);
    assert_eq!(offers(&h.tick(9_999)), vec![]);
    assert_eq!(offers(&h.tick(10_000)), vec![o(3, "a")]);
}

#[test]
fn snapshot_counts_queues_and_agents() {
    let q = queue("name = \"q\"");
    let mut h = H::new(&[q], &[agent("a", &["q"], ""), agent("b", &["q"], "")]);
    h.login("a");
    h.arrive(1, "q", 0);
    h.arrive(2, "q", 0);
    let s = h.r.snapshot(h.now + 3_000);
    let qs = &s.queues[0];
    assert_eq!(
        (qs.waiting, qs.ringing, qs.talking, qs.longest_wait_ms),
        (1, 1, 0, 3_000)
    );
    assert_eq!((qs.agents_online, qs.agents_available), (1, 0));
    assert_eq!(s.agents[1].status, AgentStatus::Offline);
    let j = serde_json::to_value(&s).unwrap();
    assert_eq!(j["agents"][0]["status"], "ringing");
    assert!(h.r.pause("zed", None, h.now).is_err());
}

#[test]
fn contacts_from_registrar_bindings() {
    let b = crate::acd::Binding {
        agent: "a".into(),
        contact_uri: "sip:a@192.0.2.1:5062".into(),
        target: "198.51.100.1:40000".parse().unwrap(),
        received: None,
        expires_at_ms: T0 + 1,
        call_id: "c".into(),
        cseq: 1,
        user_agent: None,
        registered_at_ms: T0,
        q: None,
    };
    assert_eq!(
        contacts_of(&[&b]),
        vec![(
            "sip:a@192.0.2.1:5062".to_string(),
            "198.51.100.1:40000".parse().unwrap()
        )]
    );
}

#[test]
fn media_unavailable_requeues_without_blame_and_holds_that_shard_back() {
    // max_no_answer = 1: one counted failure would pause the agent.
    let q = queue("name = \"q\"\nmax_no_answer = 1");
    let mut h = H::new(&[q], &[agent("a", &["q"], "")]);
    h.login("a");
    assert_eq!(offers(&h.arrive(1, "q", 0)), vec![o(1, "a")]);
    h.at(10);
    let out = h.result(1, "a", OfferResult::MediaUnavailable);
    assert!(out.contains(&RouterOutput::Event(RouterEvent::OfferFailed {
        call: cid(1),
        agent: "a".into(),
        result: OfferResult::MediaUnavailable,
    })));
    // Not offered again at once (the shard is out of relay legs: that
    // would loop), and the agent is neither blamed nor paused.
    assert_eq!(offers(&out), vec![]);
    assert_eq!(h.r.agents["a"].no_answer, 0);
    assert_eq!(h.r.snapshot(h.now).agents[0].status, AgentStatus::Available);
    assert_eq!(h.r.next_timeout(), Some(T0 + 10 + MEDIA_RETRY_MS));
    // A call on another shard takes the free agent meanwhile.
    let other = CallId::new(2, 7);
    let out = h.fact(CallFact::Arrived {
        call: other,
        queue: "q".into(),
        caller: "sip:x@example.com".into(),
        priority_bonus: 0,
        skills: Vec::new(),
        sip_call_id: "sip-x".into(),
        at_ms: h.now,
    });
    assert_eq!(offers(&out), vec![o(7, "a")]);
    h.at(20);
    let out = h.fact(CallFact::Abandoned { call: other, at_ms: h.now });
    assert_eq!(offers(&out), vec![], "shard 1 still held back");
    // Retry time: call 1 is offered again, still first in line.
    assert_eq!(offers(&h.tick(10 + MEDIA_RETRY_MS)), vec![o(1, "a")]);
    h.at(20 + MEDIA_RETRY_MS);
    assert!(offers(&h.result(1, "a", OfferResult::Answered)).is_empty());
    let c = h.r.snapshot(h.now);
    assert_eq!(c.agents[0].status, AgentStatus::Busy);
}

#[test]
fn max_talk_cuts_a_bridged_call_once_with_a_max_duration_cdr() {
    let q = queue("name = \"q\"\nmax_talk_s = 30");
    let mut h = H::new(&[q], &[agent("a", &["q"], "")]);
    h.login("a");
    assert_eq!(offers(&h.arrive(1, "q", 0)), vec![o(1, "a")]);
    h.at(2_000);
    h.result(1, "a", OfferResult::Answered);
    assert_eq!(h.r.next_timeout(), Some(T0 + 32_000));
    assert_eq!(decisions(&h.tick(31_999)), vec![]);
    assert_eq!(decisions(&h.tick(32_000)), vec![Decision::MaxDuration { call: cid(1) }]);
    // Told once: the call stays up until the shard says it ended.
    assert_eq!(decisions(&h.tick(40_000)), vec![]);
    assert!(h.cdrs().is_empty());
    h.at(32_010);
    h.fact(CallFact::Ended {
        call: cid(1),
        at_ms: h.now,
        hangup: Party::Engine,
        reason: EndReason::MaxDuration,
        rtp: RtpCounts::default(),
    });
    let c = h.cdrs();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].reason.as_deref(), Some("max-duration"));
    assert_eq!(c[0].hangup, Some(Party::Engine));
    assert_eq!(c[0].talk_s, 30);
}

#[test]
fn max_talk_zero_never_cuts() {
    let q = queue("name = \"q\"");
    let mut h = H::new(&[q], &[agent("a", &["q"], "")]);
    h.login("a");
    h.arrive(1, "q", 0);
    h.result(1, "a", OfferResult::Answered);
    assert_eq!(decisions(&h.tick(86_400_000)), vec![]);
}
