//! End-to-end with SIPp: an agent registered from two phones is rung on
//! both (the one that answers wins, the other gets CANCEL); an agent with
//! `max_calls = 2` takes two calls at once; a queue's `max_talk_s` ends a
//! bridged call with a BYE to both legs and CDR reason `max-duration`.

mod common;
use common::*;
use serde_json::Value;
use std::time::Duration;

const CALL_TIMEOUT: Duration = Duration::from_secs(40);

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

fn customer(e: &Engine, scenario: &str, extra: &[&str]) -> SippRun {
    let mut args = vec!["-s", "support"];
    args.extend_from_slice(extra);
    sipp_on(e, scenario, free_udp_port(), &args, CALL_TIMEOUT)
}

fn finish(e: &mut Engine, uas: &[&SippUa], run: &SippRun, what: &str) -> (Vec<Value>, String) {
    if !run.ok() {
        panic!("{}", explain(e, uas, &format!("customer SIPp failed: {what}\n{}", run.describe())));
    }
    if let Err(q) = e.wait_no_calls(Duration::from_secs(10)) {
        panic!("{}", explain(e, uas, &format!("calls still live 10 s after the customers ended: {q}")));
    }
    let ctx0 = explain(e, uas, what);
    let cdrs = e.stop_and_cdrs();
    let ctx = format!("{}\n{ctx0}", show_cdrs(&cdrs));
    (cdrs, ctx)
}

#[test]
fn agent_on_two_phones_rings_both_the_answer_wins_the_other_is_cancelled() {
    let (mut e, _cfg) = start_calls_engine(&format!(
        "{}\n{ALICE_AND_BOB}",
        r#"
[[queue]]
name = "support"
ring_timeout_s = 10
wrap_up_s = 0
"#
    ));
    let p = free_udp_ports(2);
    // Both phones are alice's: the desk phone only rings, the softphone answers.
    let desk = agent(&e, "alice", "agent_noanswer.xml", p[0], &[]);
    let soft = agent(&e, "alice", "agent_answer.xml", p[1], &[]);
    let run = customer(&e, "customer_call.xml", &["-m", "1", "-d", "1000"]);
    let uas = [&desk, &soft];
    assert!(
        desk.wait_count("CANCEL", 1, Duration::from_secs(10)),
        "{}",
        explain(&e, &uas, "the phone that did not answer must get CANCEL")
    );
    let (cdrs, ctx) = finish(&mut e, &uas, &run, "alice on two phones");
    assert_eq!((desk.count("INVITE"), soft.count("INVITE")), (1, 1), "both phones ring\n{ctx}");
    assert_eq!(soft.count("CANCEL"), 0, "{ctx}");
    assert_eq!(desk.count("BYE"), 0, "the cancelled phone never joins the call\n{ctx}");
    assert_eq!(cdrs.len(), 1, "{ctx}");
    assert_eq!(cdrs[0]["disposition"], "answered", "{ctx}");
    assert_eq!(cdrs[0]["agent"], "alice", "{ctx}");
    assert!(
        cdrs[0]["wait_s"].as_u64().unwrap_or(99) < 10,
        "answered at once, not after the ring timeout\n{ctx}"
    );
}

#[test]
fn agent_with_max_calls_two_takes_two_calls_at_once() {
    let (mut e, _cfg) = start_calls_engine(
        r#"
[[queue]]
name = "support"
ring_timeout_s = 10
wrap_up_s = 0

[[agent]]
id = "alice"
password = "alice-pass"
queues = ["support"]
max_calls = 2
"#,
    );
    let p = free_udp_ports(1);
    // Alice talks 3 s on each call, then hangs up.
    let alice = agent(&e, "alice", "agent_hangup.xml", p[0], &["-d", "3000"]);
    let run = customer(&e, "customer_wait_bye.xml", &["-m", "2", "-l", "2", "-r", "10"]);
    let (cdrs, ctx) = finish(&mut e, &[&alice], &run, "two calls to alice at once");
    assert_eq!(cdrs.len(), 2, "{ctx}");
    for c in &cdrs {
        assert_eq!(c["disposition"], "answered", "{ctx}");
        assert_eq!(c["agent"], "alice", "{ctx}");
    }
    let ms = |c: &Value, k: &str| c[k].as_u64().unwrap_or(0);
    let (a, b) = (&cdrs[0], &cdrs[1]);
    let overlap = ms(a, "answered_ms") < ms(b, "ended_ms") && ms(b, "answered_ms") < ms(a, "ended_ms");
    assert!(overlap, "the two calls were up at the same time\n{ctx}");
}

#[test]
fn max_talk_s_ends_the_call_with_a_bye_to_both_legs() {
    let (mut e, _cfg) = start_calls_engine(&format!(
        "{}\n{ALICE_AND_BOB}",
        r#"
[[queue]]
name = "support"
ring_timeout_s = 10
wrap_up_s = 0
max_talk_s = 2
"#
    ));
    let p = free_udp_ports(1);
    // Neither side hangs up: both wait for the engine's BYE.
    let alice = agent(&e, "alice", "agent_answer.xml", p[0], &[]);
    let run = customer(&e, "customer_wait_bye.xml", &["-m", "1"]);
    assert!(
        alice.wait_count("BYE", 1, Duration::from_secs(10)),
        "{}",
        explain(&e, &[&alice], "the agent leg must get the engine's BYE")
    );
    let (cdrs, ctx) = finish(&mut e, &[&alice], &run, "call cut at max_talk_s");
    assert_eq!(cdrs.len(), 1, "{ctx}");
    assert_eq!(cdrs[0]["disposition"], "answered", "{ctx}");
    assert_eq!(cdrs[0]["reason"], "max-duration", "{ctx}");
    assert_eq!(cdrs[0]["hangup"], "engine", "{ctx}");
    assert!(cdrs[0]["talk_s"].as_u64().is_some_and(|t| (2..=4).contains(&t)), "{ctx}");
}
