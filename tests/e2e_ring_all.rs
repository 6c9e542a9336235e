//! End-to-end with SIPp: a `ring-all` queue rings every free agent at
//! once. Two agents answering at once: exactly one is bridged, the other
//! gets CANCEL (and, its 200 having crossed it, ACK + BYE), one CDR answered
//! by the winner, and the loser counts no miss. One agent refusing (486)
//! while the other answers: the call goes to the one who answers, and the
//! refusal counts as that agent's busy miss.

mod common;
use common::*;
use serde_json::Value;
use std::time::Duration;

const CALL_TIMEOUT: Duration = Duration::from_secs(40);

const RING_ALL: &str = r#"
[[queue]]
name = "support"
strategy = "ring-all"
ring_timeout_s = 10
wrap_up_s = 0
"#;

fn agent(e: &Engine, user: &str, scenario: &str, port: u16, extra: &[&str]) -> SippUa {
    sipp_register_agent(e, user, &format!("{user}-pass"), port);
    SippUa::spawn(e, user, scenario, port, extra)
}

fn explain(e: &Engine, uas: &[&SippUa], what: &str) -> String {
    let mut s = format!("{what}\n");
    for u in uas {
        s.push_str(&u.describe());
        s.push('\n');
    }
    if e.running() {
        s.push_str(&format!("/queues: {}\n", e.http_get("/queues").1));
    }
    s.push_str(&e.log_tail(5000));
    s
}

/// One caller who talks `talk_ms` and hangs up; then the agents' miss
/// counters (read while the engine runs) and the CDRs.
fn one_call(e: &mut Engine, uas: &[&SippUa], talk_ms: &str, what: &str) -> (Vec<(String, Value)>, Vec<Value>, String) {
    let run = sipp_on(e, "customer_call.xml", free_udp_port(), &["-s", "support", "-m", "1", "-d", talk_ms], CALL_TIMEOUT);
    if !run.ok() {
        panic!("{}", explain(e, uas, &format!("customer SIPp failed: {what}\n{}", run.describe())));
    }
    if let Err(q) = e.wait_no_calls(Duration::from_secs(10)) {
        panic!("{}", explain(e, uas, &format!("calls still live 10 s after the customer ended: {q}")));
    }
    let missed = uas.iter().map(|u| (u.name.clone(), e.agent_state(&u.name)["counters"]["missed"].clone())).collect();
    let ctx0 = explain(e, uas, what);
    let cdrs = e.stop_and_cdrs();
    let ctx = format!("{}\n{ctx0}", show_cdrs(&cdrs));
    (missed, cdrs, ctx)
}

fn no_miss(m: &Value) -> bool {
    ["no_answer", "busy", "rejected", "unreachable"].iter().all(|k| m[k].as_u64() == Some(0))
}

#[test]
fn two_agents_answer_at_once_exactly_one_is_bridged_the_other_is_cancelled() {
    let (mut e, _cfg) = start_calls_engine(&format!("{RING_ALL}\n{ALICE_AND_BOB}"));
    let p = free_udp_ports(2);
    // Both phones answer the moment they ring.
    let alice = agent(&e, "alice", "agent_answer_race.xml", p[0], &["-d", "0"]);
    let bob = agent(&e, "bob", "agent_answer_race.xml", p[1], &["-d", "0"]);
    let uas = [&alice, &bob];
    let (missed, cdrs, ctx) = one_call(&mut e, &uas, "1000", "alice and bob answer at once");
    assert_eq!((alice.count("INVITE"), bob.count("INVITE")), (1, 1), "both ring\n{ctx}");
    assert_eq!(cdrs.len(), 1, "{ctx}");
    assert_eq!(cdrs[0]["disposition"], "answered", "{ctx}");
    let winner = cdrs[0]["agent"].as_str().unwrap_or_default().to_owned();
    let (won, lost) = match winner.as_str() {
        "alice" => (&alice, &bob),
        "bob" => (&bob, &alice),
        other => panic!("answered by {other:?}\n{ctx}"),
    };
    assert_eq!(won.count("CANCEL"), 0, "the winner is not cancelled\n{ctx}");
    assert_eq!(won.count("BYE"), 1, "the winner's call ends with one BYE\n{ctx}");
    assert!(
        lost.count("CANCEL") == 1 || (lost.count("ACK") == 1 && lost.count("BYE") == 1),
        "the loser gets CANCEL, or ACK + BYE for a 200 that crossed it\n{ctx}"
    );
    assert_eq!(lost.count("BYE"), lost.count("ACK"), "a late 200 is ACKed and BYEd at once\n{ctx}");
    for u in uas {
        assert!(u.errors().trim().is_empty(), "{}'s phone saw nothing unexpected\n{ctx}", u.name);
    }
    assert!(cdrs[0]["wait_s"].as_u64().unwrap_or(99) < 10, "answered at once\n{ctx}");
    for (name, m) in &missed {
        assert!(no_miss(m), "{name} missed nothing: {m}\n{ctx}");
    }
}

#[test]
fn one_agent_refuses_the_other_answers() {
    let (mut e, _cfg) = start_calls_engine(&format!("{RING_ALL}\n{ALICE_AND_BOB}"));
    let p = free_udp_ports(2);
    // Alice is busy at once; bob answers half a second later.
    let alice = agent(&e, "alice", "agent_busy.xml", p[0], &[]);
    let bob = agent(&e, "bob", "agent_answer_race.xml", p[1], &["-d", "500"]);
    let uas = [&alice, &bob];
    let (missed, cdrs, ctx) = one_call(&mut e, &uas, "1000", "alice refuses, bob answers");
    assert_eq!((alice.count("INVITE"), bob.count("INVITE")), (1, 1), "both ring once\n{ctx}");
    assert_eq!(alice.count("486"), 1, "{ctx}");
    assert_eq!((alice.count("CANCEL"), bob.count("CANCEL")), (0, 0), "{ctx}");
    assert_eq!(cdrs.len(), 1, "{ctx}");
    assert_eq!(cdrs[0]["disposition"], "answered", "{ctx}");
    assert_eq!(cdrs[0]["agent"], "bob", "{ctx}");
    assert!(cdrs[0]["wait_s"].as_u64().unwrap_or(99) < 10, "not after the ring timeout\n{ctx}");
    let m: std::collections::BTreeMap<_, _> = missed.into_iter().collect();
    assert_eq!(m["alice"]["busy"], 1, "alice's 486 is her busy miss\n{ctx}");
    assert!(no_miss(&m["bob"]), "{ctx}");
}
