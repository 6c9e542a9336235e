//! End-to-end calls through the real `cc-engine` with SIPp:
//! agents register with digest auth (sipp/register.xml) and run a UAS
//! scenario on the port they registered (sipp/agent_*.xml); customers call a
//! queue (sipp/customer_*.xml). Every test writes its own config (short
//! ring timeout and wrap-up), and reads the CDRs with `cc-engine cdrs` after
//! a clean stop.

mod common;
use common::*;
use serde_json::Value;
use std::time::Duration;

const CALL_TIMEOUT: Duration = Duration::from_secs(40);

const AGENTS: &str = ALICE_AND_BOB;

fn start(queues: &str, agents: &str) -> (Engine, TempDir) {
    start_calls_engine(&format!("{queues}\n{agents}"))
}

/// Registers the agent from `port`, then runs `scenario` there as its phone.
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

fn customer(e: &Engine, scenario: &str, queue: &str, extra: &[&str]) -> SippRun {
    let mut args = vec!["-s", queue];
    args.extend_from_slice(extra);
    sipp_on(e, scenario, free_udp_port(), &args, CALL_TIMEOUT)
}

fn assert_customer_ok(e: &Engine, run: &SippRun, uas: &[&SippUa], what: &str) {
    if !run.ok() {
        panic!("{}", explain(e, uas, &format!("customer SIPp failed: {what}\n{}", run.describe())));
    }
}

fn wait_idle(e: &Engine, uas: &[&SippUa]) {
    if let Err(q) = e.wait_no_calls(Duration::from_secs(10)) {
        panic!("{}", explain(e, uas, &format!("calls still live 10 s after the customers ended: {q}")));
    }
}

fn by_disposition<'a>(cdrs: &'a [Value], d: &str) -> Vec<&'a Value> {
    cdrs.iter().filter(|c| c["disposition"] == d).collect()
}

/// Waits until the customer's call shows up in `queue` as waiting.
fn wait_waiting(e: &Engine, queue: &str, n: u64) {
    let ok = poll(Duration::from_secs(10), || {
        (e.queue(queue)["waiting"].as_u64().unwrap_or(0) >= n).then_some(())
    });
    assert!(
        ok.is_some(),
        "queue {queue} never had {n} waiting call(s): {}\n{}",
        e.http_get("/queues").1,
        e.log_tail(4000)
    );
}

#[test]
fn five_customers_two_agents_all_bridged_split_3_2() {
    let (mut e, _cfg) = start(
        r#"
[[queue]]
name = "support"
strategy = "longest-idle"
ring_timeout_s = 2
wrap_up_s = 0
"#,
        AGENTS,
    );
    let p = free_udp_ports(2);
    // Agents talk 1 s then hang up; customers wait for the BYE.
    let alice = agent(&e, "alice", "agent_hangup.xml", p[0], &["-d", "1000"]);
    let bob = agent(&e, "bob", "agent_hangup.xml", p[1], &["-d", "1000"]);
    let run = customer(
        &e,
        "customer_wait_bye.xml",
        "support",
        &["-m", "5", "-l", "5", "-r", "10"],
    );
    assert_customer_ok(&e, &run, &[&alice, &bob], "5 customers, all must be answered and get the agent's BYE");
    wait_idle(&e, &[&alice, &bob]);
    let (na, nb) = (alice.count("INVITE"), bob.count("INVITE"));
    let mut split = [na, nb];
    split.sort();
    assert_eq!(
        split,
        [2, 3],
        "{}",
        explain(&e, &[&alice, &bob], &format!("INVITEs: alice {na}, bob {nb}; want 3/2"))
    );
    // Metrics agree, and every call and relay port is released.
    for (a, n) in [("alice", na), ("bob", nb)] {
        let (v, m) = e.wait_metric("cc_agent_answered_total", &[("agent", a)], n as f64);
        assert_eq!(v, Some(n as f64), "cc_agent_answered_total{{agent={a}}}\n{}", m.0);
    }
    let released = poll(Duration::from_secs(10), || {
        let m = e.metrics();
        (m.sum("cc_calls_active") == 0.0 && m.sum("cc_rtp_ports_in_use") == 0.0).then_some(())
    });
    assert!(
        released.is_some(),
        "{}",
        explain(&e, &[&alice, &bob], &format!("calls/ports not released:\n{}", e.metrics().0))
    );
    let cdrs = e.stop_and_cdrs();
    let ctx = || explain(&e, &[&alice, &bob], &show_cdrs(&cdrs));
    eprintln!("INVITEs: alice {na}, bob {nb}\n{}", show_cdrs(&cdrs));
    assert_eq!(cdrs.len(), 5, "{}", ctx());
    assert_eq!(by_disposition(&cdrs, "answered").len(), 5, "{}", ctx());
    let of = |a: &str| cdrs.iter().filter(|c| c["agent"] == a).count();
    assert_eq!((of("alice"), of("bob")), (na, nb), "CDR agents vs INVITEs each UAS got\n{}", ctx());
    for c in &cdrs {
        assert_eq!(c["queue"], "support", "{}", ctx());
        assert_eq!(c["hangup"], "agent", "{}", ctx());
        assert!(c["answered_ms"].is_u64(), "{}", ctx());
    }
}

#[test]
fn caller_abandons_while_waiting_bye_and_cancel() {
    let (mut e, _cfg) = start(
        r#"
[[queue]]
name = "support"
answer = "immediate"
ring_timeout_s = 2
wrap_up_s = 0

[[queue]]
name = "ringback"
answer = "on-agent"
ring_timeout_s = 2
wrap_up_s = 0
"#,
        r#"
[[agent]]
id = "alice"
password = "alice-pass"
queues = ["support", "ringback"]
"#,
    );
    // No agent logged in (no_agents = "wait"): both callers wait, then give up.
    let bye = customer(&e, "customer_call.xml", "support", &["-m", "1", "-d", "1500"]);
    assert_customer_ok(&e, &bye, &[], "immediate answer, BYE while waiting");
    let cancel = customer(&e, "customer_cancel.xml", "ringback", &["-m", "1", "-d", "1500"]);
    assert_customer_ok(&e, &cancel, &[], "on-agent answer: 180, CANCEL while waiting -> 200 + 487");
    wait_idle(&e, &[]);
    let cdrs = e.stop_and_cdrs();
    let ctx = || explain(&e, &[], &show_cdrs(&cdrs));
    assert_eq!(cdrs.len(), 2, "{}", ctx());
    for q in ["support", "ringback"] {
        let c = cdrs.iter().find(|c| c["queue"] == q).unwrap_or_else(|| panic!("no CDR for {q}\n{}", ctx()));
        assert_eq!(c["disposition"], "abandoned", "{}", ctx());
        assert_eq!(c["hangup"], "caller", "{}", ctx());
        assert!(c["agent"].is_null(), "{}", ctx());
        assert!(c["wait_s"].as_u64().unwrap_or(0) >= 1, "waited ~1.5 s\n{}", ctx());
    }
}

/// alice is offered first (round-robin from a fresh state starts at the
/// first member) and misbehaves as `alice_scenario`; bob must take the call.
fn first_agent_fails_then_other_answers(alice_scenario: &str) -> (Vec<Value>, usize, usize, usize, String) {
    let (mut e, _cfg) = start(
        r#"
[[queue]]
name = "support"
strategy = "round-robin"
ring_timeout_s = 2
wrap_up_s = 0
max_no_answer = 3
"#,
        AGENTS,
    );
    let p = free_udp_ports(2);
    let alice = agent(&e, "alice", alice_scenario, p[0], &[]);
    let bob = agent(&e, "bob", "agent_answer.xml", p[1], &[]);
    let run = customer(&e, "customer_call.xml", "support", &["-m", "1", "-d", "5000"]);
    assert_customer_ok(&e, &run, &[&alice, &bob], "one customer, answered by bob after alice failed");
    wait_idle(&e, &[&alice, &bob]);
    let (ai, bi, ac) = (alice.count("INVITE"), bob.count("INVITE"), alice.count("CANCEL"));
    let ctx0 = explain(&e, &[&alice, &bob], &format!("INVITEs: alice {ai}, bob {bi}; CANCELs to alice {ac}"));
    assert!(
        bob.wait_count("BYE", 1, Duration::from_secs(5)),
        "bob's leg must get the engine's BYE when the customer hangs up\n{ctx0}"
    );
    let cdrs = e.stop_and_cdrs();
    let ctx = format!("{}\n{ctx0}", show_cdrs(&cdrs));
    (cdrs, ai, bi, ac, ctx)
}

#[test]
fn agent_never_answers_ring_timeout_cancel_other_agent_answers() {
    let (cdrs, ai, bi, ac, ctx) = first_agent_fails_then_other_answers("agent_noanswer.xml");
    assert_eq!(ai, 1, "alice rings once, then CANCEL after ring_timeout_s\n{ctx}");
    assert_eq!(ac, 1, "alice must receive CANCEL\n{ctx}");
    assert_eq!(bi, 1, "{ctx}");
    assert_eq!(cdrs.len(), 1, "{ctx}");
    assert_eq!(cdrs[0]["disposition"], "answered", "{ctx}");
    assert_eq!(cdrs[0]["agent"], "bob", "{ctx}");
    assert!(cdrs[0]["wait_s"].as_u64().unwrap_or(0) >= 2, "waited the 2 s ring timeout\n{ctx}");
}

/// Alice's phone is gone (her binding points at a closed port): the
/// kernel's ICMP port unreachable for our INVITE ends the offer at once
/// (IP_RECVERR), and bob gets the call long before alice's 30 s ring
/// timeout would have passed.
#[test]
fn dead_agent_port_is_detected_by_icmp_and_the_call_goes_to_another() {
    let (mut e, _cfg) = start(
        r#"
[[queue]]
name = "support"
strategy = "round-robin"
ring_timeout_s = 30
wrap_up_s = 0
"#,
        AGENTS,
    );
    let p = free_udp_ports(2);
    // Alice registers from p[0] and nothing listens there afterwards.
    sipp_register_agent(&e, "alice", "alice-pass", p[0]);
    let bob = agent(&e, "bob", "agent_answer.xml", p[1], &[]);
    let run = customer(&e, "customer_call.xml", "support", &["-m", "1", "-d", "2000"]);
    assert_customer_ok(&e, &run, &[&bob], "one customer, alice unreachable, bob answers");
    wait_idle(&e, &[&bob]);
    let m = e.metrics();
    let ctx0 = explain(&e, &[&bob], &format!("metrics: icmp {:?}, transport errors {:?}",
        m.get("cc_sip_icmp_unreachable_total", &[]), m.get("cc_sip_client_transport_errors_total", &[])));
    assert!(m.get("cc_sip_client_transport_errors_total", &[]).unwrap_or(0.0) >= 1.0, "{ctx0}");
    let cdrs = e.stop_and_cdrs();
    let ctx = format!("{}\n{ctx0}", show_cdrs(&cdrs));
    assert_eq!(cdrs.len(), 1, "{ctx}");
    assert_eq!(cdrs[0]["disposition"], "answered", "{ctx}");
    assert_eq!(cdrs[0]["agent"], "bob", "{ctx}");
    assert!(cdrs[0]["wait_s"].as_u64().unwrap_or(99) < 10, "not the 30 s ring timeout\n{ctx}");
}

#[test]
fn agent_answers_486_other_agent_answers() {
    let (cdrs, ai, bi, ac, ctx) = first_agent_fails_then_other_answers("agent_busy.xml");
    assert_eq!(ac, 0, "{ctx}");
    assert_eq!(ai, 1, "alice refuses once; the call goes to bob (free) first\n{ctx}");
    assert_eq!(bi, 1, "{ctx}");
    assert_eq!(cdrs.len(), 1, "{ctx}");
    assert_eq!(cdrs[0]["disposition"], "answered", "{ctx}");
    assert_eq!(cdrs[0]["agent"], "bob", "{ctx}");
}

#[test]
fn customer_hangs_up_first_agent_gets_bye() {
    let (mut e, _cfg) = start(
        r#"
[[queue]]
name = "support"
ring_timeout_s = 2
wrap_up_s = 0
"#,
        AGENTS,
    );
    let alice = agent(&e, "alice", "agent_answer.xml", free_udp_port(), &[]);
    let run = customer(&e, "customer_call.xml", "support", &["-m", "1", "-d", "2500"]);
    assert_customer_ok(&e, &run, &[&alice], "customer talks 2.5 s then BYE");
    let got_bye = alice.wait_count("BYE", 1, Duration::from_secs(5)) && alice.wait_count("200", 2, Duration::from_secs(2));
    assert!(got_bye, "{}", explain(&e, &[&alice], "agent leg must get BYE (and answer 200)"));
    wait_idle(&e, &[&alice]);
    let cdrs = e.stop_and_cdrs();
    let ctx = || explain(&e, &[&alice], &show_cdrs(&cdrs));
    assert_eq!(cdrs.len(), 1, "{}", ctx());
    let c = &cdrs[0];
    assert_eq!(c["disposition"], "answered", "{}", ctx());
    assert_eq!(c["agent"], "alice", "{}", ctx());
    assert_eq!(c["hangup"], "caller", "{}", ctx());
    assert!(c["talk_s"].as_u64().unwrap_or(0) >= 2, "{}", ctx());
}

#[test]
fn agent_hangs_up_first_customer_gets_bye() {
    let (mut e, _cfg) = start(
        r#"
[[queue]]
name = "support"
ring_timeout_s = 2
wrap_up_s = 0
"#,
        AGENTS,
    );
    let mut alice = agent(&e, "alice", "agent_hangup.xml", free_udp_port(), &["-d", "2000", "-m", "1"]);
    // customer_wait_bye.xml succeeds only if the engine sends it a BYE.
    let run = customer(&e, "customer_wait_bye.xml", "support", &["-m", "1"]);
    assert_customer_ok(&e, &run, &[&alice], "the customer must get BYE after the agent hangs up");
    let st = alice.wait_exit(Duration::from_secs(5));
    assert!(
        st.map_or(false, |s| s.success()),
        "{}",
        explain(&e, &[&alice], &format!("agent SIPp (BYE -> 200) must end with 0, got {st:?}"))
    );
    wait_idle(&e, &[&alice]);
    let cdrs = e.stop_and_cdrs();
    let ctx = || explain(&e, &[&alice], &show_cdrs(&cdrs));
    assert_eq!(cdrs.len(), 1, "{}", ctx());
    let c = &cdrs[0];
    assert_eq!(c["disposition"], "answered", "{}", ctx());
    assert_eq!(c["agent"], "alice", "{}", ctx());
    assert_eq!(c["hangup"], "agent", "{}", ctx());
}

#[test]
fn unknown_queue_gets_404() {
    let (e, _cfg) = start(
        r#"
[[queue]]
name = "support"
"#,
        AGENTS,
    );
    let run = customer(&e, "customer_reject.xml", "nosuchqueue", &["-m", "1"]);
    assert_customer_ok(&e, &run, &[], "INVITE to an unknown queue");
    assert_eq!(count_sip(&run.messages, "404"), 1, "want 404\n{}", run.describe());
}

#[test]
fn full_queue_overflows_and_overflow_queue_answers() {
    let (mut e, _cfg) = start(
        r#"
[[queue]]
name = "small"
max_waiting = 1
overflow = "spill"
ring_timeout_s = 2
wrap_up_s = 0

[[queue]]
name = "spill"
ring_timeout_s = 2
wrap_up_s = 0
"#,
        // Nobody serves `small`: its first caller waits there and fills it.
        r#"
[[agent]]
id = "alice"
password = "alice-pass"
queues = ["spill"]
"#,
    );
    let alice = agent(&e, "alice", "agent_answer.xml", free_udp_port(), &[]);
    let first = std::thread::scope(|s| {
        let first = s.spawn(|| customer(&e, "customer_call.xml", "small", &["-m", "1", "-d", "5000"]));
        wait_waiting(&e, "small", 1);
        let second = customer(&e, "customer_call.xml", "small", &["-m", "1", "-d", "2000"]);
        assert_customer_ok(&e, &second, &[&alice], "second caller: small is full -> spill -> alice");
        first.join().unwrap()
    });
    assert_customer_ok(&e, &first, &[&alice], "first caller waits in small, then hangs up");
    wait_idle(&e, &[&alice]);
    assert_eq!(alice.count("INVITE"), 1, "{}", explain(&e, &[&alice], "alice answers the overflowed call only"));
    let cdrs = e.stop_and_cdrs();
    let ctx = || explain(&e, &[&alice], &show_cdrs(&cdrs));
    assert_eq!(cdrs.len(), 2, "{}", ctx());
    let ans = by_disposition(&cdrs, "answered");
    assert_eq!(ans.len(), 1, "{}", ctx());
    assert_eq!(ans[0]["queue"], "spill", "{}", ctx());
    assert_eq!(ans[0]["overflowed_from"], "small", "{}", ctx());
    assert_eq!(ans[0]["agent"], "alice", "{}", ctx());
    let ab = by_disposition(&cdrs, "abandoned");
    assert_eq!(ab.len(), 1, "{}", ctx());
    assert_eq!(ab[0]["queue"], "small", "{}", ctx());
    assert!(ab[0]["overflowed_from"].is_null(), "{}", ctx());
}

#[test]
fn full_queue_without_overflow_486_or_503_retry_after() {
    let (mut e, _cfg) = start(
        r#"
[[queue]]
name = "tiny"
max_waiting = 1

[[queue]]
name = "tiny503"
max_waiting = 1
full_status = 503
retry_after_s = 7

[[queue]]
name = "support"
"#,
        r#"
[[agent]]
id = "alice"
password = "alice-pass"
queues = ["support"]
"#,
    );
    for (q, code) in [("tiny", "486"), ("tiny503", "503")] {
        std::thread::scope(|s| {
            let first = s.spawn(|| customer(&e, "customer_call.xml", q, &["-m", "1", "-d", "4000"]));
            wait_waiting(&e, q, 1);
            let second = customer(&e, "customer_reject.xml", q, &["-m", "1"]);
            assert_customer_ok(&e, &second, &[], &format!("{q} full: second caller refused"));
            assert_eq!(count_sip(&second.messages, code), 1, "{q}: want {code}\n{}", second.describe());
            if code == "503" {
                assert!(
                    second.messages.lines().any(|l| l.trim().eq_ignore_ascii_case("Retry-After: 7")),
                    "503 must carry Retry-After: 7 (retry_after_s)\n{}",
                    second.describe()
                );
            }
            let first = first.join().unwrap();
            assert_customer_ok(&e, &first, &[], &format!("{q}: first caller waits then hangs up"));
        });
    }
    wait_idle(&e, &[]);
    let cdrs = e.stop_and_cdrs();
    let ctx = || explain(&e, &[], &show_cdrs(&cdrs));
    assert_eq!(by_disposition(&cdrs, "abandoned").len(), 2, "{}", ctx());
    let rej = by_disposition(&cdrs, "rejected");
    assert_eq!(rej.len(), 2, "{}", ctx());
    for (q, code) in [("tiny", "486"), ("tiny503", "503")] {
        let r = rej.iter().find(|c| c["queue"] == q).unwrap_or_else(|| panic!("no rejected CDR in {q}\n{}", ctx()));
        assert!(r["reason"].to_string().contains(code), "{}", ctx());
    }
}

#[test]
fn on_agent_answer_mode_rings_the_caller_until_the_agent_answers() {
    let (mut e, _cfg) = start(
        r#"
[[queue]]
name = "support"
answer = "on-agent"
ring_timeout_s = 2
wrap_up_s = 0
"#,
        AGENTS,
    );
    let alice = agent(&e, "alice", "agent_answer.xml", free_udp_port(), &[]);
    let run = customer(&e, "customer_call.xml", "support", &["-m", "1", "-d", "2000"]);
    assert_customer_ok(&e, &run, &[&alice], "on-agent: 180, then 200 when alice answers");
    // The customer's 200 comes after alice's 200: 180 first, one 200 to the INVITE.
    let trace = &run.messages;
    let first_180 = trace.find("SIP/2.0 180 ");
    let first_200 = trace.find("SIP/2.0 200 ");
    assert!(
        matches!((first_180, first_200), (Some(a), Some(b)) if a < b),
        "want 180 before 200\n{}",
        run.describe()
    );
    wait_idle(&e, &[&alice]);
    let cdrs = e.stop_and_cdrs();
    let ctx = || explain(&e, &[&alice], &show_cdrs(&cdrs));
    assert_eq!(cdrs.len(), 1, "{}", ctx());
    assert_eq!(cdrs[0]["disposition"], "answered", "{}", ctx());
    assert_eq!(cdrs[0]["agent"], "alice", "{}", ctx());
    assert_eq!(cdrs[0]["hangup"], "caller", "{}", ctx());
}

#[test]
fn max_wait_expires_engine_hangs_up_cdr_timed_out() {
    let (mut e, _cfg) = start(
        r#"
[[queue]]
name = "support"
max_wait_s = 2
ring_timeout_s = 2
wrap_up_s = 0
"#,
        AGENTS,
    );
    // Nobody logged in: the caller waits (answered, hold audio) until the
    // engine gives up after max_wait_s and sends BYE.
    let run = customer(&e, "customer_wait_bye.xml", "support", &["-m", "1"]);
    assert_customer_ok(&e, &run, &[], "the engine must BYE the caller after max_wait_s = 2");
    wait_idle(&e, &[]);
    let cdrs = e.stop_and_cdrs();
    let ctx = || explain(&e, &[], &show_cdrs(&cdrs));
    assert_eq!(cdrs.len(), 1, "{}", ctx());
    let c = &cdrs[0];
    assert_eq!(c["disposition"], "timed-out", "{}", ctx());
    assert_eq!(c["hangup"], "engine", "{}", ctx());
    assert!(c["agent"].is_null(), "{}", ctx());
    let w = c["wait_s"].as_u64().unwrap_or(0);
    assert!((2..=4).contains(&w), "wait_s {w} for max_wait_s = 2\n{}", ctx());
}
