//! End-to-end caller priority through the real `cc-engine` with SIPp: a
//! `Priority: emergency` caller jumps the queue only when its source is in
//! `sip.trusted_sources`; from anyone else the header is ignored and
//! counted (`cc_sip_untrusted_priority_total`).

mod common;
use common::*;
use std::fs;
use std::time::Duration;

const CALL_TIMEOUT: Duration = Duration::from_secs(40);

const QUEUE_AND_AGENT: &str = r#"
[[queue]]
name = "support"
strategy = "priority"
ring_timeout_s = 2
wrap_up_s = 0

[[agent]]
id = "alice"
password = "alice-pass"
queues = ["support"]
"#;

fn start(trusted: &str) -> (Engine, TempDir) {
    let dir = TempDir::new("prio-cfg");
    let config = calls_config(dir.path(), QUEUE_AND_AGENT);
    let text = fs::read_to_string(&config).unwrap();
    assert!(text.contains("trusted_sources = []"), "the shipped config lists sip.trusted_sources");
    fs::write(&config, text.replace("trusted_sources = []", &format!("trusted_sources = [{trusted}]"))).unwrap();
    let e = Engine::start_with(EngineOpts {
        config,
        ..Default::default()
    });
    (e, dir)
}

fn wait_waiting(e: &Engine, n: u64) {
    let ok = poll(Duration::from_secs(10), || {
        (e.queue("support")["waiting"].as_u64().unwrap_or(0) >= n).then_some(())
    });
    assert!(ok.is_some(), "never {n} waiting: {}\n{}", e.http_get("/queues").1, e.log_tail(4000));
}

/// A normal caller, then an emergency one, wait; then alice registers.
/// Returns the port of the caller alice was offered first, the ports of
/// (normal, emergency), and the untrusted-header counter.
fn who_goes_first(trusted: &str) -> (u16, (u16, u16), f64) {
    let (mut e, _cfg) = start(trusted);
    let ports = free_udp_ports(3);
    let (normal, emergency, alice_port) = (ports[0], ports[1], ports[2]);
    let alice = std::thread::scope(|s| {
        let a = s.spawn(|| {
            sipp_on(&e, "customer_call.xml", normal, &["-s", "support", "-m", "1", "-d", "9000"], CALL_TIMEOUT)
        });
        wait_waiting(&e, 1);
        let b = s.spawn(|| {
            sipp_on(
                &e,
                "customer_call_priority.xml",
                emergency,
                &["-s", "support", "-m", "1", "-d", "9000", "-key", "priority", "emergency"],
                CALL_TIMEOUT,
            )
        });
        wait_waiting(&e, 2);
        sipp_register_agent(&e, "alice", "alice-pass", alice_port);
        let alice = SippUa::spawn(&e, "alice", "agent_answer.xml", alice_port, &[]);
        for (what, run) in [("normal", a.join().unwrap()), ("emergency", b.join().unwrap())] {
            assert!(run.ok(), "{what} caller: {}\n{}", run.describe(), e.log_tail(4000));
        }
        alice
    });
    let untrusted = e.metrics().sum("cc_sip_untrusted_priority_total");
    let cdrs = e.stop_and_cdrs();
    let first = cdrs
        .iter()
        .filter(|c| c["answered_ms"].as_u64().is_some())
        .min_by_key(|c| c["answered_ms"].as_u64())
        .unwrap_or_else(|| panic!("no call answered: {}\n{}", show_cdrs(&cdrs), alice.describe()));
    let caller = first["caller"].as_str().unwrap_or_default();
    let port = caller.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (port, (normal, emergency), untrusted)
}

#[test]
fn untrusted_emergency_priority_does_not_jump_the_queue() {
    let (first, (normal, _), untrusted) = who_goes_first("");
    assert_eq!(first, normal, "the caller who came first is served first");
    assert_eq!(untrusted, 1.0, "the ignored Priority header is counted");
}

#[test]
fn trusted_emergency_priority_jumps_the_queue() {
    let (first, (_, emergency), untrusted) = who_goes_first("\"127.0.0.1/32\"");
    assert_eq!(first, emergency, "the emergency caller from a trusted source goes first");
    assert_eq!(untrusted, 0.0);
}
