//! Router policies a contact center configures per queue: the strategies
//! beyond the basic ones, tiers and their escalation, queue weights, skill
//! requirements relaxed over time, ageing rate, what a failed offer costs
//! the agent and the call, auto-unpause, and max-wait overflow.

use std::collections::BTreeMap;

use super::tests::{agent, cdrs, cid, contact, offers, queue, H, T0};
use super::*;
use crate::acd::cdr::AgentPersist;
use crate::acd::facts::{Decision, OfferResult};

fn o(n: u64, a: &str) -> (u64, String) {
    (n, a.to_string())
}

/// Answers call `n` on `a` and ends it at once (queues here have no
/// wrap-up), so `a` is free again.
fn answer_and_end(h: &mut H, n: u64, a: &str) -> Vec<RouterOutput> {
    h.result(n, a, OfferResult::Answered);
    h.end(n)
}

#[test]
fn linear_always_starts_from_the_top() {
    let q = queue("name = \"q\"\nstrategy = \"linear\"\nwrap_up_s = 0");
    let mut h = H::new(&[q], &[agent("a", &["q"], ""), agent("b", &["q"], ""), agent("c", &["q"], "")]);
    for a in ["c", "b", "a"] {
        h.login(a);
    }
    assert_eq!(offers(&h.arrive(1, "q", 0)), vec![o(1, "a")]);
    h.result(1, "a", OfferResult::Answered);
    assert_eq!(offers(&h.arrive(2, "q", 0)), vec![o(2, "b")]);
    h.at(1_000);
    h.end(1);
    // c has been idle longest, but linear asks a first again.
    assert_eq!(offers(&h.arrive(3, "q", 0)), vec![o(3, "a")]);
}

#[test]
fn least_talk_time_prefers_the_agent_who_talked_least() {
    let q = queue("name = \"q\"\nstrategy = \"least-talk-time\"\nwrap_up_s = 0");
    let mut h = H::new(&[q], &[agent("a", &["q"], ""), agent("b", &["q"], "")]);
    h.login("a");
    h.login("b");
    assert_eq!(offers(&h.arrive(1, "q", 0)), vec![o(1, "a")]);
    h.result(1, "a", OfferResult::Answered);
    assert_eq!(offers(&h.arrive(2, "q", 0)), vec![o(2, "b")]);
    h.result(2, "b", OfferResult::Answered);
    h.at(10_000);
    h.end(2); // b talked 10 s
    h.at(60_000);
    h.end(1); // a talked 60 s, and is idle for less time than b
    assert_eq!(offers(&h.arrive(3, "q", 0)), vec![o(3, "b")]);
    assert_eq!(h.r.snapshot(h.now).agents[0].talk_ms, 60_000);
}

fn random_counts(strategy: &str, b_tier: &str) -> BTreeMap<String, u32> {
    let q = queue(&format!("name = \"q\"\nstrategy = \"{strategy}\"\nwrap_up_s = 0"));
    let b = if b_tier.is_empty() { agent("b", &["q"], "") } else { agent("b", &[], b_tier) };
    let mut h = H::new(&[q], &[agent("a", &["q"], ""), b, agent("c", &["q"], "")]);
    for a in ["a", "b", "c"] {
        h.login(a);
    }
    let mut counts = BTreeMap::new();
    for n in 1..=600 {
        h.at(n * 10);
        let offered = offers(&h.arrive(n, "q", 0));
        assert_eq!(offered.len(), 1, "call {n}: {offered:?}");
        let who = offered[0].1.clone();
        answer_and_end(&mut h, n, &who);
        *counts.entry(who).or_insert(0) += 1;
    }
    counts
}

#[test]
fn random_spreads_evenly_and_replays_the_same() {
    let counts = random_counts("random", "");
    // 600 draws of 1 in 3: 200 each; ±60 is beyond 5 standard deviations.
    assert!(counts.values().all(|&n| (140..=260).contains(&n)), "{counts:?}");
    assert_eq!(random_counts("random", ""), counts, "same inputs, same picks");
}

#[test]
fn weighted_random_weighs_by_tier_level() {
    // b is level 3 for the queue: weight 1/3 against 1 for a and c, so
    // it should get 1/7 of the calls (≈ 86 of 600).
    let counts = random_counts("weighted-random", "tiers = { q = 3 }");
    let b = counts.get("b").copied().unwrap_or(0);
    assert!((40..=140).contains(&b), "{counts:?}");
    assert!(counts["a"] > 2 * b && counts["c"] > 2 * b, "{counts:?}");
}

#[test]
fn tiers_offer_lower_levels_first_and_escalate_with_the_wait() {
    let q = queue("name = \"q\"\ntier_wait_s = 30\nwrap_up_s = 0");
    let agents = [agent("a", &["q"], ""), agent("b", &[], "tiers = { q = 2 }"), agent("c", &[], "tiers = { q = 3 }")];
    let mut h = H::new(&[q], &agents);
    for a in ["c", "b", "a"] {
        h.login(a);
    }
    // All free: level 1 first although the others have been idle longer.
    assert_eq!(offers(&h.arrive(1, "q", 0)), vec![o(1, "a")]);
    h.result(1, "a", OfferResult::Answered);
    // a is busy: call 2 waits for level 2 until it has waited 30 s.
    assert_eq!(offers(&h.arrive(2, "q", 0)), vec![]);
    assert!(h.r.next_timeout().is_some_and(|t| t <= T0 + 30_000));
    assert_eq!(offers(&h.tick(29_999)), vec![]);
    assert_eq!(offers(&h.tick(30_000)), vec![o(2, "b")]);
    h.result(2, "b", OfferResult::Answered);
    // Call 3 arrives at 30 s: level 3 only after 60 s of its own wait.
    assert_eq!(offers(&h.arrive(3, "q", 0)), vec![]);
    assert_eq!(offers(&h.tick(89_999)), vec![]);
    assert_eq!(offers(&h.tick(90_000)), vec![o(3, "c")]);
}

#[test]
fn queue_weight_decides_which_queue_gets_a_shared_agent() {
    let light = queue("name = \"light\"");
    let heavy = queue("name = \"heavy\"\nweight = 10");
    let mut h = H::new(&[light, heavy], &[agent("a", &["light", "heavy"], "")]);
    h.arrive(1, "light", 0);
    h.at(1_000);
    h.arrive(2, "heavy", 0);
    assert_eq!(offers(&h.login("a")), vec![o(2, "a")]);
    // Equal weights: the caller who waited longest.
    let (l1, l2) = (queue("name = \"l1\""), queue("name = \"l2\""));
    let mut h = H::new(&[l1, l2], &[agent("a", &["l1", "l2"], "")]);
    h.arrive(1, "l2", 0);
    h.at(1_000);
    h.arrive(2, "l1", 0);
    assert_eq!(offers(&h.login("a")), vec![o(1, "a")]);
}

#[test]
fn skills_need_a_minimum_proficiency_relaxed_as_the_caller_waits() {
    let q = queue(
        "name = \"q\"\nstrategy = \"skills\"\nwrap_up_s = 0\nskills = [\"english>=50\"]\n\
         relax = [{ after_s = 60 }, { after_s = 30, skills = [\"english>=20\"] }]",
    );
    let agents = [
        agent("low", &["q"], "skills = { english = 30 }"),
        agent("none", &["q"], ""),
        agent("good", &["q"], "skills = { english = 60 }"),
        agent("best", &["q"], "skills = { english = 90 }"),
    ];
    let mut h = H::new(&[q], &agents);
    for a in ["low", "none", "good", "best"] {
        h.login(a);
    }
    // Best proficiency first, then the next best.
    assert_eq!(offers(&h.arrive(1, "q", 0)), vec![o(1, "best")]);
    h.result(1, "best", OfferResult::Answered);
    assert_eq!(offers(&h.arrive(2, "q", 0)), vec![o(2, "good")]);
    h.result(2, "good", OfferResult::Answered);
    // Nobody left with english>=50: call 3 waits, then relaxes to >=20 at
    // 30 s (low) and to anyone at 60 s (none).
    assert_eq!(offers(&h.arrive(3, "q", 0)), vec![]);
    h.arrive(4, "q", 0);
    assert_eq!(offers(&h.tick(29_999)), vec![]);
    assert_eq!(offers(&h.tick(30_000)), vec![o(3, "low")]);
    assert_eq!(offers(&h.tick(59_999)), vec![]);
    assert_eq!(offers(&h.tick(60_000)), vec![o(4, "none")]);
}

#[test]
fn a_call_with_its_own_skills_needs_them_until_the_queue_relaxes() {
    // A longest-idle queue with no skills of its own: the call's trusted
    // `X-CC-Skills` still picks the agent, and its first relaxation step
    // (any agent at 30 s) frees it.
    let q = queue("name = \"q\"\nwrap_up_s = 0\nrelax = [{ after_s = 30 }]");
    let agents = [agent("plain", &["q"], ""), agent("french", &["q"], "skills = { french = 70 }")];
    let mut h = H::new(&[q], &agents);
    h.login("plain");
    h.login("french");
    let own = |n: u64, h: &mut H, skill: &str| {
        h.fact(CallFact::Arrived {
            call: cid(n),
            queue: "q".into(),
            caller: format!("sip:c{n}@example.com"),
            priority_bonus: 0,
            skills: vec![crate::config::SkillReq::parse(skill).unwrap()],
            sip_call_id: format!("sip-{n}"),
            at_ms: h.now,
        })
    };
    // plain has been idle longest, yet only french speaks French.
    assert_eq!(offers(&own(1, &mut h, "french>=50")), vec![o(1, "french")]);
    h.result(1, "french", OfferResult::Answered);
    // Nobody has german: call 2 waits for the relaxation step.
    assert_eq!(offers(&own(2, &mut h, "german")), vec![]);
    assert_eq!(offers(&h.tick(29_999)), vec![]);
    assert_eq!(offers(&h.tick(30_000)), vec![o(2, "plain")]);
}

#[test]
fn ageing_rate_is_set_per_queue() {
    // Call 1 (priority 0) arrives at 0 s, call 2 (priority 2) at 25 s; the
    // agent logs in at 30 s. Ageing 10 s/level: call 1 is at 3.0, call 2
    // at 2.5. The default 30 s/level: 1.0 against 2.17.
    for (ageing, first) in [("ageing_s = 10", 1), ("", 2)] {
        let q = queue(&format!("name = \"q\"\nstrategy = \"priority\"\n{ageing}"));
        let mut h = H::new(&[q], &[agent("a", &["q"], "")]);
        h.arrive(1, "q", 0);
        h.at(25_000);
        h.arrive(2, "q", 2);
        h.at(30_000);
        assert_eq!(offers(&h.login("a")), vec![o(first, "a")], "{ageing}");
    }
}

#[test]
fn a_failed_offer_is_retried_on_the_same_agent_only_after_retry_s() {
    let q = queue("name = \"q\"\nretry_s = 5");
    let mut h = H::new(&[q], &[agent("a", &["q"], "")]);
    h.login("a");
    assert_eq!(offers(&h.arrive(1, "q", 0)), vec![o(1, "a")]);
    h.at(15_000);
    assert_eq!(offers(&h.result(1, "a", OfferResult::NoAnswer)), vec![]);
    assert_eq!(h.r.next_timeout(), Some(T0 + 20_000));
    assert_eq!(offers(&h.tick(19_999)), vec![]);
    assert_eq!(offers(&h.tick(20_000)), vec![o(1, "a")]);
}

/// Two agents that both let a call ring out do not take turns on it: each
/// waits its own `retry_s` from its own failure, not just the last one.
#[test]
fn two_failing_agents_each_wait_retry_s_for_the_call() {
    let q = queue("name = \"q\"\nretry_s = 10\nwrap_up_s = 0\nno_answer_delay_s = 0");
    let mut h = H::new(&[q], &[agent("a", &["q"], ""), agent("b", &["q"], "")]);
    h.login("a");
    h.login("b");
    let first = offers(&h.arrive(1, "q", 0));
    assert_eq!(first.len(), 1);
    let (x, y) = if first[0].1 == "a" { ("a", "b") } else { ("b", "a") };
    h.at(6_000);
    assert_eq!(offers(&h.result(1, x, OfferResult::NoAnswer)), vec![o(1, y)]);
    h.at(12_000);
    // x failed at 6 s: not before 16 s, though it is no longer the last.
    assert_eq!(offers(&h.result(1, y, OfferResult::NoAnswer)), vec![]);
    assert_eq!(offers(&h.tick(15_999)), vec![]);
    assert_eq!(offers(&h.tick(16_000)), vec![o(1, x)]);
}

#[test]
fn an_unreachable_phone_rests_instead_of_failing_every_call_at_once() {
    let q = queue("name = \"q\"\nretry_s = 5");
    let mut h = H::new(&[q], &[agent("a", &["q"], "")]);
    h.login("a");
    h.arrive(1, "q", 0);
    h.arrive(2, "q", 0);
    // The transport error comes back within the same millisecond: call 2
    // is not thrown at the same dead phone.
    let out = h.result(1, "a", OfferResult::Failed { status: None });
    assert_eq!(offers(&out), vec![]);
    assert_eq!(h.r.agents["a"].counters.missed.unreachable, 1);
    assert_eq!(h.r.agents["a"].no_answer, 0);
    assert_eq!(offers(&h.tick(4_999)), vec![]);
    assert_eq!(offers(&h.tick(5_000)).len(), 1);
}

#[test]
fn busy_and_reject_delays_rest_the_agent_and_count_apart() {
    let q = queue("name = \"q\"\nretry_s = 0\nbusy_delay_s = 10\nreject_delay_s = 20\nmax_no_answer = 1");
    let mut h = H::new(&[q], &[agent("a", &["q"], "")]);
    h.login("a");
    h.arrive(1, "q", 0);
    assert_eq!(offers(&h.result(1, "a", OfferResult::Busy)), vec![]);
    assert_eq!(offers(&h.tick(9_999)), vec![]);
    assert_eq!(offers(&h.tick(10_000)), vec![o(1, "a")]);
    assert_eq!(offers(&h.result(1, "a", OfferResult::Declined)), vec![]);
    assert_eq!(offers(&h.tick(29_999)), vec![]);
    assert_eq!(offers(&h.tick(30_000)), vec![o(1, "a")]);
    h.result(1, "a", OfferResult::Failed { status: Some(488) });
    let m = h.r.agents["a"].counters.missed;
    assert_eq!((m.no_answer, m.busy, m.rejected, m.unreachable), (0, 1, 2, 0));
    // None of these paused the agent, even with max_no_answer = 1.
    assert!(h.r.agents["a"].paused.is_none());
    let snap = h.r.snapshot(h.now);
    assert_eq!(snap.agents[0].counters.missed.rejected, 2);
}

#[test]
fn only_consecutive_no_answers_pause_and_the_pause_lifts_itself() {
    let q = queue("name = \"q\"\nretry_s = 0\nmax_no_answer = 2\nauto_unpause_s = 60");
    let mut h = H::new(&[q], &[agent("a", &["q"], "")]);
    h.login("a");
    h.arrive(1, "q", 0);
    h.at(15_000);
    assert_eq!(offers(&h.result(1, "a", OfferResult::NoAnswer)), vec![o(1, "a")]);
    h.at(30_000);
    let out = h.result(1, "a", OfferResult::NoAnswer);
    assert!(out.contains(&RouterOutput::Event(RouterEvent::AgentPaused {
        agent: "a".into(),
        reason: Some(NO_ANSWER_REASON.into()),
    })));
    assert_eq!(h.r.agents["a"].paused.as_ref().and_then(|p| p.until_ms), Some(T0 + 90_000));
    assert_eq!(offers(&h.tick(89_999)), vec![]);
    let out = h.tick(90_000);
    assert!(out.contains(&RouterOutput::Event(RouterEvent::AgentUnpaused { agent: "a".into() })));
    assert_eq!(offers(&out), vec![o(1, "a")]);
    assert_eq!(h.r.agents["a"].no_answer, 0);
}

#[test]
fn an_auto_unpause_survives_a_restart() {
    let q = queue("name = \"q\"\nmax_no_answer = 1\nauto_unpause_s = 60");
    let mut restore = RouterRestore::default();
    restore.agents.insert(
        "a".into(),
        AgentPersist {
            paused: Some(Pause {
                reason: Some(NO_ANSWER_REASON.into()),
                since_ms: T0 - 30_000,
                until_ms: Some(T0 + 30_000),
            }),
            no_answer: 1,
            counters: Default::default(),
            logged_out: false,
            logout_pending: false,
        },
    );
    let (mut h, _) = H::restored(&[q], &[agent("a", &["q"], "")], restore);
    h.login("a");
    h.arrive(1, "q", 0);
    assert_eq!(h.r.next_timeout(), Some(T0 + 30_000));
    assert_eq!(offers(&h.tick(30_000)), vec![o(1, "a")]);
}

#[test]
fn max_wait_moves_the_caller_to_another_queue_keeping_its_arrival() {
    let first = queue("name = \"first\"\nmax_wait_s = 10");
    let first = QueueConfig { max_wait_queue: Some("second".into()), ..first };
    let second = queue("name = \"second\"");
    let mut h = H::new(&[first, second], &[agent("a", &["second"], "")]);
    h.arrive(1, "first", 0);
    h.at(5_000);
    h.arrive(2, "second", 0);
    let out = h.tick(10_000);
    assert!(out.contains(&RouterOutput::Event(RouterEvent::Overflowed {
        call: cid(1),
        from: "first".into(),
        to: "second".into(),
    })));
    assert!(out.iter().any(|d| matches!(d,
        RouterOutput::Decision(Decision::Queued { call, queue, position: 1 }) if *call == cid(1) && queue == "second")));
    // Call 1 arrived first, so it is ahead of call 2 in the new queue.
    assert_eq!(offers(&h.login("a")), vec![o(1, "a")]);
    answer_and_end(&mut h, 1, "a");
    let cdr = cdrs(&h.log).into_iter().find(|c| c.call_id == cid(1).to_string()).expect("cdr");
    assert_eq!((cdr.queue.as_str(), cdr.overflowed_from.as_deref()), ("second", Some("first")));
    assert_eq!(cdr.arrived_ms, T0);
    assert_eq!(cdr.disposition, Disposition::Answered);
}

#[test]
fn config_refuses_bad_routing_policy_naming_the_key() {
    let base = "[sip]\nlisten = \"127.0.0.1:5060\"\ndomain = \"127.0.0.1\"\n";
    let cases = [
        ("[[queue]]\nname = \"q\"\nskills = [\"english>=0\"]\n", "queue[0].skills[0]"),
        ("[[queue]]\nname = \"q\"\nmax_wait_s = 5\nmax_wait_queue = \"nope\"\n", "queue[0].max_wait_queue"),
        ("[[queue]]\nname = \"q\"\nmax_wait_queue = \"r\"\n[[queue]]\nname = \"r\"\n", "queue[0].max_wait_queue"),
        ("[[queue]]\nname = \"q\"\n[[agent]]\nid = \"a\"\npassword = \"p\"\ntiers = { nope = 2 }\n", "agent[0].tiers.nope"),
        ("[[queue]]\nname = \"q\"\n[[agent]]\nid = \"a\"\npassword = \"p\"\ntiers = { q = 0 }\n", "agent[0].tiers.q"),
        ("[[queue]]\nname = \"q\"\nrelax = [{ after_s = 0 }]\n", "queue[0].relax[0].after_s"),
    ];
    for (text, key) in cases {
        let e = crate::config::Config::parse(&format!("{base}{text}"), std::path::Path::new("cc.toml"))
            .expect_err(text)
            .to_string();
        assert!(e.contains(&format!("key `{key}`")), "{text}: {e}");
    }
}

#[test]
fn join_empty_refuses_or_redirects_when_every_member_is_away() {
    let q = queue("name = \"q\"\njoin_empty = [\"paused\", \"offline\"]");
    let redirect = queue("name = \"r\"\njoin_empty = [\"paused\"]\njoin_empty_queue = \"other\"");
    let other = queue("name = \"other\"");
    let agents = [agent("a", &["q", "r"], ""), agent("b", &["other"], "")];
    let mut h = H::new(&[q, redirect, other], &agents);
    h.login("a");
    h.r.pause("a", Some("lunch".into()), h.now).unwrap();
    h.drain();
    let out = h.arrive(1, "q", 0);
    assert!(out.contains(&RouterOutput::Decision(Decision::Rejected { call: cid(1), status: 480, retry_after_s: None })));
    let out = h.arrive(2, "r", 0);
    assert!(out.iter().any(|d| matches!(d,
        RouterOutput::Decision(Decision::Queued { call, queue, .. }) if *call == cid(2) && queue == "other")));
    // A busy member is not away: the queue is not empty.
    h.r.unpause("a", h.now).unwrap();
    h.drain();
    assert_eq!(offers(&h.arrive(3, "q", 0)), vec![o(3, "a")]);
    h.result(3, "a", OfferResult::Answered);
    let out = h.arrive(4, "q", 0);
    assert!(out.iter().any(|d| matches!(d, RouterOutput::Decision(Decision::Queued { call, .. }) if *call == cid(4))));
}

#[test]
fn leave_when_empty_sends_waiting_callers_out_or_on() {
    let q = queue("name = \"q\"\nwrap_up_s = 0\nleave_when_empty = [\"paused\", \"offline\"]");
    let on = queue("name = \"on\"\nwrap_up_s = 0\nleave_when_empty = [\"paused\"]\nleave_empty_queue = \"q\"");
    let agents = [agent("a", &["q"], ""), agent("b", &["on"], "")];
    let mut h = H::new(&[q, on], &agents);
    h.login("a");
    h.login("b");
    assert_eq!(offers(&h.arrive(1, "q", 0)), vec![o(1, "a")]);
    h.result(1, "a", OfferResult::Answered);
    h.arrive(2, "q", 0);
    // a is busy: q is not empty, call 2 waits.
    assert!(h.r.calls.contains_key(&cid(2)));
    h.r.pause("a", Some("break".into()), h.now).unwrap();
    h.drain();
    assert!(h.r.calls.contains_key(&cid(2)), "busy while paused still serves");
    h.at(10_000);
    let out = h.end(1);
    assert!(out.contains(&RouterOutput::Decision(Decision::TimedOut { call: cid(2) })), "{out:?}");
    let cdr = cdrs(&h.log).into_iter().find(|c| c.call_id == cid(2).to_string()).expect("cdr");
    assert_eq!((cdr.disposition, cdr.reason.as_deref()), (Disposition::TimedOut, Some("leave-empty")));
    // From `on` the callers go on to q instead, where a is back.
    h.r.unpause("a", h.now).unwrap();
    h.drain();
    assert_eq!(offers(&h.arrive(3, "on", 0)), vec![o(3, "b")]);
    h.result(3, "b", OfferResult::Answered);
    h.arrive(4, "on", 0);
    h.r.pause("b", None, h.now).unwrap();
    h.drain();
    h.at(20_000);
    let out = h.end(3);
    assert!(out.contains(&RouterOutput::Event(RouterEvent::Overflowed {
        call: cid(4),
        from: "on".into(),
        to: "q".into(),
    })));
    assert_eq!(offers(&out), vec![o(4, "a")]);
}

#[test]
fn an_unreachable_agent_shows_it_gets_no_offers_and_comes_back_to_its_status() {
    let q = queue("name = \"q\"\nwrap_up_s = 0");
    let agents = [agent("a", &["q"], ""), agent("b", &["q"], "")];
    let mut h = H::new(&[q], &agents);
    h.login("a");
    h.login("b");
    let status = |h: &H, id: &str| h.r.snapshot(h.now).agents.iter().find(|a| a.id == id).map(|a| a.status);
    h.r.agent_reach("a", Vec::new(), true, h.now).unwrap();
    let out = h.drain();
    assert!(out.contains(&RouterOutput::Event(RouterEvent::AgentReachability {
        agent: "a".into(),
        reachable: false,
        status: AgentStatus::Unreachable,
    })), "{out:?}");
    assert!(!out.iter().any(|o| matches!(o, RouterOutput::Event(RouterEvent::AgentOffline { .. }))), "still registered");
    assert_eq!(status(&h, "a"), Some(AgentStatus::Unreachable));
    // Linear would pick a first: b gets it.
    assert_eq!(offers(&h.arrive(1, "q", 0)), vec![o(1, "b")]);
    h.result(1, "b", OfferResult::Answered);
    // A paused agent that becomes unreachable shows unreachable, then paused.
    h.r.pause("a", Some("lunch".into()), h.now).unwrap();
    h.drain();
    assert_eq!(status(&h, "a"), Some(AgentStatus::Unreachable));
    h.r.agent_reach("a", contact("a"), false, h.now).unwrap();
    let out = h.drain();
    assert!(out.contains(&RouterOutput::Event(RouterEvent::AgentReachability {
        agent: "a".into(),
        reachable: true,
        status: AgentStatus::Paused,
    })), "{out:?}");
    h.r.unpause("a", h.now).unwrap();
    h.drain();
    assert_eq!(status(&h, "a"), Some(AgentStatus::Available));
    assert_eq!(offers(&h.arrive(2, "q", 0)), vec![o(2, "a")]);
}

#[test]
fn join_empty_unreachable_counts_only_unreachable_members() {
    let q = queue("name = \"q\"\njoin_empty = [\"unreachable\"]");
    let off = queue("name = \"off\"\njoin_empty = [\"offline\"]");
    let agents = [agent("a", &["q", "off"], ""), agent("b", &["q", "off"], "")];
    let mut h = H::new(&[q, off], &agents);
    h.login("a");
    h.login("b");
    h.r.agent_reach("a", Vec::new(), true, h.now).unwrap();
    h.r.agent_reach("b", Vec::new(), true, h.now).unwrap();
    h.drain();
    let rejected = |out: &[RouterOutput], n: u64| {
        out.contains(&RouterOutput::Decision(Decision::Rejected { call: cid(n), status: 480, retry_after_s: None }))
    };
    assert!(rejected(&h.arrive(1, "q", 0), 1), "all unreachable");
    assert!(rejected(&h.arrive(2, "off", 0), 2), "offline covers unreachable");
    // b unregisters for good: q has an offline member, not an unreachable one.
    h.r.agent_contacts("b", Vec::new(), h.now).unwrap();
    h.drain();
    assert!(!rejected(&h.arrive(3, "q", 0), 3));
}
