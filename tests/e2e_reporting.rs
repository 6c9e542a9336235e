//! Reporting through the real engine: after a scripted mix of answered,
//! abandoned and timed-out SIPp calls, the API's queue counters and service
//! level equal a recount from the queue log and from the CDRs; after
//! `kill -9` and a restart the API still shows the same counters.

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

const CALL_TIMEOUT: Duration = Duration::from_secs(40);

fn customer(e: &Engine, scenario: &str, queue: &str, extra: &[&str]) -> SippRun {
    let mut args = vec!["-s", queue];
    args.extend_from_slice(extra);
    let run = sipp_on(e, scenario, free_udp_port(), &args, CALL_TIMEOUT);
    assert!(run.ok(), "customer {scenario} to {queue}: {}\n{}", run.describe(), e.log_tail(4000));
    run
}

/// (queue, event) → count, from queue log lines as a reporting tool that
/// reads Asterisk's file would count them.
fn recount(lines: &[String]) -> BTreeMap<(String, String), u64> {
    let mut m = BTreeMap::new();
    for l in lines {
        let f: Vec<&str> = l.split('|').collect();
        assert!(f.len() >= 8, "short queue log line {l:?}");
        *m.entry((f[2].to_string(), f[4].to_string())).or_insert(0) += 1;
    }
    m
}

fn total(e: &Engine, queue: &str) -> Value {
    e.queue(queue)["total"].clone()
}

#[test]
fn counters_equal_the_queue_log_and_cdrs_and_survive_kill_9() {
    let (mut e, _cfg) = start_calls_engine(
        r#"
[[queue]]
name = "support"
ring_timeout_s = 5
wrap_up_s = 0
service_level_s = 20

[[queue]]
name = "lonely"
max_wait_s = 2
wrap_up_s = 0

[[agent]]
id = "alice"
password = "alice-pass"
queues = ["support"]

[[agent]]
id = "bob"
password = "bob-pass"
queues = ["lonely"]
"#,
    );
    let port = free_udp_port();
    sipp_register_agent(&e, "alice", "alice-pass", port);
    let alice = SippUa::spawn(&e, "alice", "agent_answer.xml", port, &[]);
    // Two answered calls (talk 1 s each, one after the other).
    customer(&e, "customer_call.xml", "support", &["-m", "2", "-d", "1000", "-l", "1"]);
    // bob is not registered: a caller of `lonely` waits. One hangs up after
    // 1 s (abandoned), one is timed out by the engine after max_wait_s.
    customer(&e, "customer_call.xml", "lonely", &["-m", "1", "-d", "1000"]);
    customer(&e, "customer_wait_bye.xml", "lonely", &["-m", "1"]);
    if let Err(q) = e.wait_no_calls(Duration::from_secs(10)) {
        panic!("calls still live: {q}\n{}", alice.describe());
    }
    let support = total(&e, "support");
    let lonely = total(&e, "lonely");
    let ctx = format!("support {support}\nlonely {lonely}\n{}", e.log_tail(3000));
    assert_eq!(support["offered"], 2, "{ctx}");
    assert_eq!(support["answered"], 2, "{ctx}");
    assert_eq!(support["answered_in_sl"], 2, "{ctx}");
    assert!(support["talk_ms"].as_u64().unwrap_or(0) >= 1_500, "{ctx}");
    assert_eq!((lonely["offered"].as_u64(), lonely["abandoned"].as_u64(), lonely["timed_out"].as_u64()), (Some(2), Some(1), Some(1)), "{ctx}");
    assert!(lonely["longest_wait_ms"].as_u64().unwrap_or(0) >= 1_900, "{ctx}");

    // Past the group-commit window, then the hardest stop.
    std::thread::sleep(Duration::from_millis(500));
    e.kill9();

    // The queue log in the database, read as a reporting tool would.
    let lines = {
        let store = cc_engine::acd::Store::open(&e.state_dir()).expect("open the engine's database");
        store.queue_log(None, usize::MAX).expect("read the queue log")
    };
    let n = recount(&lines);
    let at = |q: &str, ev: &str| n.get(&(q.to_string(), ev.to_string())).copied().unwrap_or(0);
    let lctx = format!("{ctx}\nqueue log:\n{}", lines.join("\n"));
    assert_eq!(at("support", "ENTERQUEUE"), 2, "{lctx}");
    assert_eq!(at("support", "CONNECT"), 2, "{lctx}");
    assert_eq!(at("support", "COMPLETECALLER") + at("support", "COMPLETEAGENT"), 2, "{lctx}");
    assert_eq!(at("lonely", "ENTERQUEUE"), 2, "{lctx}");
    assert_eq!(at("lonely", "ABANDON"), 1, "{lctx}");
    assert_eq!(at("lonely", "EXITWITHTIMEOUT"), 1, "{lctx}");
    assert_eq!(at("NONE", "AGENTLOGIN"), 1, "alice logged in once\n{lctx}");
    // Service level from the queue log: CONNECT's hold time (data1, s)
    // within the queue's threshold.
    let in_sl = lines
        .iter()
        .filter(|l| l.contains("|support|") && l.contains("|CONNECT|"))
        .filter(|l| l.split('|').nth(5).and_then(|h| h.parse::<u64>().ok()).is_some_and(|h| h <= 20))
        .count() as u64;
    assert_eq!(Some(in_sl), support["answered_in_sl"].as_u64(), "{lctx}");

    // The CDRs say the same.
    let cdrs = e.offline_cdrs();
    let count = |q: &str, d: &str| cdrs.iter().filter(|c| c["queue"] == q && c["disposition"] == d).count() as u64;
    let cctx = format!("{lctx}\n{}", show_cdrs(&cdrs));
    assert_eq!(Some(count("support", "answered")), support["answered"].as_u64(), "{cctx}");
    assert_eq!(Some(count("lonely", "abandoned")), lonely["abandoned"].as_u64(), "{cctx}");
    assert_eq!(Some(count("lonely", "timed-out")), lonely["timed_out"].as_u64(), "{cctx}");

    // Restarted, the counters are what they were.
    e.spawn();
    assert_eq!(total(&e, "support"), support, "{cctx}");
    assert_eq!(total(&e, "lonely"), lonely, "{cctx}");
    let today = e.queue("support")["today"].clone();
    assert_eq!(today["answered"], 2, "today's counters survive too (same UTC day)\n{cctx}");
    let agent = e.agent_state("alice");
    assert_eq!(agent["counters"]["answered"], 2, "{agent}");
}
