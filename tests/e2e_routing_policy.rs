//! End-to-end routing policy through the real `cc-engine` with SIPp: a
//! skills queue picks the skilled agent and relaxes its requirement after
//! the configured wait; a caller moved to another queue at `max_wait_s`
//! keeps its place by arrival time there.

mod common;
use common::*;
use serde_json::Value;
use std::time::Duration;

const CALL_TIMEOUT: Duration = Duration::from_secs(40);

fn caller(e: &Engine, port: u16, queue: &str, talk_ms: &str) -> SippRun {
    sipp_on(e, "customer_call.xml", port, &["-s", queue, "-m", "1", "-d", talk_ms], CALL_TIMEOUT)
}

fn phone(e: &Engine, user: &str, port: u16) -> SippUa {
    sipp_register_agent(e, user, &format!("{user}-pass"), port);
    SippUa::spawn(e, user, "agent_answer.xml", port, &[])
}

fn wait_waiting(e: &Engine, queue: &str, n: u64) {
    let ok = poll(Duration::from_secs(10), || {
        (e.queue(queue)["waiting"].as_u64().unwrap_or(0) >= n).then_some(())
    });
    assert!(ok.is_some(), "{queue} never had {n} waiting: {}\n{}", e.http_get("/queues").1, e.log_tail(4000));
}

/// The CDR of the caller that called from `port`.
fn cdr_of(cdrs: &[Value], port: u16) -> &Value {
    let suffix = format!(":{port}");
    cdrs.iter()
        .find(|c| c["caller"].as_str().is_some_and(|s| s.ends_with(&suffix)))
        .unwrap_or_else(|| panic!("no CDR from port {port}: {}", show_cdrs(cdrs)))
}

#[test]
fn skills_queue_picks_the_skilled_agent_then_relaxes_after_the_wait() {
    let (mut e, _cfg) = start_calls_engine(
        r#"
[[queue]]
name = "support"
strategy = "skills"
skills = ["english>=50"]
relax = [{ after_s = 3 }]
ring_timeout_s = 2
wrap_up_s = 0

[[agent]]
id = "alice"
password = "alice-pass"
queues = ["support"]
skills = { english = 80 }

[[agent]]
id = "bob"
password = "bob-pass"
queues = ["support"]
"#,
    );
    let ports = free_udp_ports(4);
    // bob registers first: longest idle, but without the skill.
    let bob = phone(&e, "bob", ports[0]);
    let alice = phone(&e, "alice", ports[1]);
    let (first, second) = (ports[2], ports[3]);
    std::thread::scope(|s| {
        let a = s.spawn(|| caller(&e, first, "support", "9000"));
        let offered = poll(Duration::from_secs(10), || (alice.count("INVITE") >= 1).then_some(()));
        assert!(offered.is_some(), "alice was never offered the first call\n{}", e.log_tail(4000));
        // alice is busy now; bob lacks english and gets the second caller
        // only once the requirement relaxes.
        let b = s.spawn(|| caller(&e, second, "support", "9000"));
        for (what, run) in [("first", a.join().unwrap()), ("second", b.join().unwrap())] {
            assert!(run.ok(), "{what} caller: {}\n{}", run.describe(), e.log_tail(4000));
        }
    });
    let cdrs = e.stop_and_cdrs();
    let ctx = || format!("{}\n{}\n{}", show_cdrs(&cdrs), alice.describe(), bob.describe());
    let (c1, c2) = (cdr_of(&cdrs, first), cdr_of(&cdrs, second));
    assert_eq!(c1["agent"], "alice", "{}", ctx());
    assert_eq!(c2["agent"], "bob", "{}", ctx());
    let waited = c2["answered_ms"].as_u64().unwrap_or(0).saturating_sub(c2["arrived_ms"].as_u64().unwrap_or(0));
    assert!(waited >= 3000, "bob got the second caller after {waited} ms, before the 3 s relaxation\n{}", ctx());
}

#[test]
fn max_wait_overflow_keeps_the_callers_place_by_arrival_time() {
    let (mut e, _cfg) = start_calls_engine(
        r#"
[[queue]]
name = "first"
max_wait_s = 2
max_wait_queue = "second"
ring_timeout_s = 2
wrap_up_s = 0

[[queue]]
name = "second"
ring_timeout_s = 2
wrap_up_s = 0

[[agent]]
id = "alice"
password = "alice-pass"
queues = ["second"]
"#,
    );
    let ports = free_udp_ports(3);
    let (early, late, alice_port) = (ports[0], ports[1], ports[2]);
    let alice = std::thread::scope(|s| {
        // `early` waits in `first` (nobody serves it); `late` joins
        // `second` afterwards; at 2 s `early` moves to `second`, ahead.
        let a = s.spawn(|| caller(&e, early, "first", "9000"));
        wait_waiting(&e, "first", 1);
        let b = s.spawn(|| caller(&e, late, "second", "9000"));
        wait_waiting(&e, "second", 2);
        let alice = phone(&e, "alice", alice_port);
        for (what, run) in [("early", a.join().unwrap()), ("late", b.join().unwrap())] {
            assert!(run.ok(), "{what} caller: {}\n{}", run.describe(), e.log_tail(4000));
        }
        alice
    });
    let cdrs = e.stop_and_cdrs();
    let ctx = || format!("{}\n{}", show_cdrs(&cdrs), alice.describe());
    let c = cdr_of(&cdrs, early);
    assert_eq!(c["queue"], "second", "{}", ctx());
    assert_eq!(c["overflowed_from"], "first", "{}", ctx());
    assert_eq!(c["agent"], "alice", "the overflowed caller, who came first, is served first\n{}", ctx());
    // `late` may get alice after `early` hangs up, never before.
    if let Some(t) = cdr_of(&cdrs, late)["answered_ms"].as_u64() {
        assert!(t > c["answered_ms"].as_u64().unwrap_or(u64::MAX), "{}", ctx());
    }
}

#[test]
fn a_contact_that_stops_answering_options_gets_no_offer() {
    let dir = TempDir::new("live-cfg");
    let config = calls_config(
        dir.path(),
        r#"
[[queue]]
name = "support"
ring_timeout_s = 2
wrap_up_s = 0

[[agent]]
id = "alice"
password = "alice-pass"
queues = ["support"]

[[agent]]
id = "bob"
password = "bob-pass"
queues = ["support"]
"#,
    );
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("keepalive_s = 30") && text.contains("keepalive_failures = 2"));
    let text = text.replace("keepalive_s = 30", "keepalive_s = 1").replace("keepalive_failures = 2", "keepalive_failures = 1");
    std::fs::write(&config, text).unwrap();
    let mut e = Engine::start_with(EngineOpts { config, ..Default::default() });
    let ports = free_udp_ports(3);
    // bob registers first (longest idle) from a port nobody listens on
    // afterwards: his OPTIONS meet ICMP port unreachable.
    sipp_register_agent(&e, "bob", "bob-pass", ports[0]);
    let alice = phone(&e, "alice", ports[1]);
    let bob_contacts = || -> Option<u64> {
        let (code, body) = e.http_get("/v1/agents/bob");
        (code == 200).then(|| serde_json::from_str::<Value>(&body).ok()?["contacts"].as_u64()).flatten()
    };
    assert_eq!(bob_contacts(), Some(1), "{}", e.log_tail(4000));
    let gone = poll(Duration::from_secs(10), || (bob_contacts() == Some(0)).then_some(()));
    assert!(gone.is_some(), "bob's dead contact was never taken out: {:?}\n{}", bob_contacts(), e.log_tail(4000));
    let run = caller(&e, ports[2], "support", "2000");
    assert!(run.ok(), "caller: {}\n{}", run.describe(), e.log_tail(4000));
    let (_, bob) = e.http_get("/v1/agents/bob");
    let cdrs = e.stop_and_cdrs();
    let ctx = || format!("{}\n{}\nbob: {bob}", show_cdrs(&cdrs), alice.describe());
    assert_eq!(cdr_of(&cdrs, ports[2])["agent"], "alice", "{}", ctx());
    let bob: Value = serde_json::from_str(&bob).unwrap();
    let missed = &bob["counters"]["missed"];
    let total: u64 = missed.as_object().map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
    assert_eq!(total, 0, "bob was offered the call: {}", ctx());
}
