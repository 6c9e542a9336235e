//! What operators do to live calls and agents: hang a call up in any
//! state, and log an agent out during a call (effective when it ends).

use super::tests::{agent, cdrs, cid, queue, H};
use super::*;
use crate::acd::facts::{Decision, EndReason, OfferResult, OPERATOR_HANGUP};

fn lines(h: &H) -> Vec<String> {
    h.log
        .iter()
        .filter_map(|o| match o {
            RouterOutput::Persist(StoreOp::QueueLog(e)) => Some(e.line()),
            _ => None,
        })
        .collect()
}

fn hangups(out: &[RouterOutput]) -> Vec<Decision> {
    out.iter()
        .filter_map(|o| match o {
            RouterOutput::Decision(d @ Decision::Hangup { .. }) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

fn events(out: &[RouterOutput]) -> Vec<RouterEvent> {
    out.iter()
        .filter_map(|o| match o {
            RouterOutput::Event(e) if !matches!(e, RouterEvent::QueueCounters { .. }) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn two_agents() -> H {
    let mut h = H::new(&[queue("name = \"q\"\nwrap_up_s = 0")], &[agent("a", &["q"], ""), agent("b", &["q"], "")]);
    h.login("a");
    h
}

#[test]
fn a_waiting_call_hung_up_by_an_operator_is_never_offered_and_ends_with_its_own_line() {
    let mut h = H::new(&[queue("name = \"q\"\nwrap_up_s = 0")], &[agent("a", &["q"], "")]);
    h.arrive(1, "q", 0);
    assert!(!h.r.snapshot(h.now).calls[0].ending);
    assert_eq!(h.r.hangup(cid(1), 480), Ok("waiting"));
    assert!(h.r.snapshot(h.now).calls[0].ending, "GET /v1/calls shows it ending");
    let out = h.drain();
    assert_eq!(hangups(&out), [Decision::Hangup { call: cid(1), status: 480 }]);
    // Asked twice: already ending. Unknown: not found.
    assert_eq!(h.r.hangup(cid(1), 480), Err(RouterError::CallEnding(cid(1).to_string())));
    assert_eq!(h.r.hangup(cid(9), 480), Err(RouterError::UnknownCall(cid(9).to_string())));
    // An agent logging in meanwhile is not offered the call being hung up.
    let out = h.login("a");
    assert!(super::tests::offers(&out).is_empty(), "{out:?}");
    let out = h.fact(CallFact::Failed { call: cid(1), at_ms: h.now, reason: OPERATOR_HANGUP.into() });
    assert!(events(&out).iter().any(|e| matches!(e,
        RouterEvent::CallFinished { disposition: Disposition::Failed, reason: Some(r), .. } if r == OPERATOR_HANGUP)));
    let c = cdrs(&h.log);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].reason.as_deref(), Some(OPERATOR_HANGUP));
    let l = lines(&h);
    let last = l.last().unwrap();
    assert!(last.ends_with("|q|NONE|OPERATORHANGUP|1|1|0|waiting"), "{l:?}");
    assert!(!l.iter().any(|x| x.contains("|ABANDON|") || x.contains("|COMPLETE")), "{l:?}");
    // Ended: a late second ask is a conflict, not a 404.
    assert_eq!(h.r.hangup(cid(1), 480), Err(RouterError::CallEnding(cid(1).to_string())));
}

#[test]
fn a_bridged_call_hung_up_by_an_operator_keeps_its_answer_and_is_no_normal_completion() {
    let mut h = two_agents();
    h.arrive(1, "q", 0);
    h.result(1, "a", OfferResult::Answered);
    assert_eq!(h.r.hangup(cid(1), 480), Ok("talking"));
    assert_eq!(hangups(&h.drain()).len(), 1);
    h.at(5_000);
    h.fact(CallFact::Ended {
        call: cid(1),
        at_ms: h.now,
        hangup: Party::Engine,
        reason: EndReason::OperatorHangup,
        rtp: RtpCounts::default(),
    });
    let c = cdrs(&h.log);
    assert_eq!((c[0].disposition, c[0].reason.as_deref()), (Disposition::Answered, Some(OPERATOR_HANGUP)));
    assert_eq!(c[0].agent.as_deref(), Some("a"));
    let l = lines(&h);
    assert!(l.last().unwrap().ends_with("|q|a|OPERATORHANGUP|0|5|1|talking"), "{l:?}");
    assert!(!l.iter().any(|x| x.contains("|COMPLETE")), "{l:?}");
}

#[test]
fn a_ringing_call_being_hung_up_does_not_go_back_to_the_queue_when_the_offer_fails() {
    let mut h = two_agents();
    h.arrive(1, "q", 0);
    assert_eq!(h.r.hangup(cid(1), 486), Ok("ringing"));
    h.drain();
    // The shard cancelled the agent; b logs in: nobody is offered the call.
    let out = h.result(1, "a", OfferResult::NoAnswer);
    assert!(super::tests::offers(&out).is_empty(), "{out:?}");
    let out = h.login("b");
    assert!(super::tests::offers(&out).is_empty(), "{out:?}");
    h.fact(CallFact::Failed { call: cid(1), at_ms: h.now, reason: OPERATOR_HANGUP.into() });
    assert_eq!(cdrs(&h.log)[0].reason.as_deref(), Some(OPERATOR_HANGUP));
}

#[test]
fn a_logout_during_a_call_takes_effect_when_the_call_ends() {
    let mut h = two_agents();
    h.arrive(1, "q", 0);
    h.result(1, "a", OfferResult::Answered);
    assert_eq!(h.r.logout("a", h.now), Ok(true));
    let out = h.drain();
    assert_eq!(events(&out), [RouterEvent::AgentLogoutRequested { agent: "a".into() }]);
    assert!(!lines(&h).iter().any(|l| l.contains("AGENTLOGOFF")), "{:?}", lines(&h));
    // No new offer to a meanwhile.
    let out = h.arrive(2, "q", 0);
    assert!(super::tests::offers(&out).is_empty(), "{out:?}");
    h.at(3_000);
    let out = h.end(1);
    assert!(events(&out).contains(&RouterEvent::AgentLoggedOut { agent: "a".into() }), "{out:?}");
    let l = lines(&h);
    let off: Vec<_> = l.iter().filter(|l| l.contains("|a|AGENTLOGOFF|")).collect();
    assert_eq!(off.len(), 1, "{l:?}");
    assert!(off[0].starts_with(&format!("{}|", h.now / 1000)), "written when it took effect: {off:?}");
    assert_eq!(h.r.snapshot(h.now).agents[0].status, AgentStatus::LoggedOut);
}

#[test]
fn a_login_before_the_call_ends_cancels_a_pending_logout() {
    let mut h = two_agents();
    h.arrive(1, "q", 0);
    h.result(1, "a", OfferResult::Answered);
    h.r.logout("a", h.now).unwrap();
    h.r.login("a", h.now).unwrap();
    h.drain();
    h.end(1);
    let l = lines(&h);
    // Only the registration's AGENTLOGIN: the logoff never happened.
    assert!(!l.iter().any(|l| l.contains("AGENTLOGOFF")), "{l:?}");
    assert_eq!(l.iter().filter(|l| l.contains("|a|AGENTLOGIN|")).count(), 1, "{l:?}");
}

#[test]
fn every_counter_change_is_an_event_for_the_integrator_to_coalesce() {
    let mut h = two_agents();
    let out = h.arrive(1, "q", 0);
    let n = out.iter().filter(|o| matches!(o, RouterOutput::Event(RouterEvent::QueueCounters { queue, .. }) if queue == "q")).count();
    assert!(n >= 1, "{out:?}");
}

#[test]
fn a_logout_pending_when_the_engine_died_takes_effect_at_the_next_start() {
    let mut h = two_agents();
    h.arrive(1, "q", 0);
    h.result(1, "a", OfferResult::Answered);
    h.r.logout("a", h.now).unwrap();
    h.drain();
    let state = h.r.agents["a"].persist();
    assert!(state.logged_out && state.logout_pending, "{state:?}");
    // The engine dies with the call; the next start sees the saved state.
    let restore = crate::acd::cdr::RouterRestore {
        agents: [("a".to_string(), state)].into_iter().collect(),
        ..Default::default()
    };
    let (mut h2, _) = H::restored(&[queue("name = \"q\"")], &[agent("a", &["q"], ""), agent("b", &["q"], "")], restore);
    let out = h2.login("a");
    assert!(events(&out).contains(&RouterEvent::AgentLoggedOut { agent: "a".into() }), "{out:?}");
    assert_eq!(lines(&h2).iter().filter(|l| l.contains("|a|AGENTLOGOFF|")).count(), 1, "{:?}", lines(&h2));
    assert!(!h2.r.agents["a"].persist().logout_pending);
}
