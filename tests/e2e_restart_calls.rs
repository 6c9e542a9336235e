//! `kill -9` with calls live: two customers talking to
//! the two agents and one waiting; the engine is killed and restarted on the
//! same state dir. The three calls get `failed` / `engine-restart` CDRs,
//! the agents are still registered (/agents), and a new call is answered.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn kill9_with_calls_waiting_and_talking_gives_engine_restart_cdrs() {
    let (mut e, _cfgdir) = start_calls_engine(&format!(
        "{}\n{ALICE_AND_BOB}",
        r#"
[[queue]]
name = "support"
ring_timeout_s = 2
wrap_up_s = 0
"#
    ));
    let p = free_udp_ports(2);
    sipp_register_agent(&e, "alice", "alice-pass", p[0]);
    let alice = SippUa::spawn(&e, "alice", "agent_answer.xml", p[0], &[]);
    sipp_register_agent(&e, "bob", "bob-pass", p[1]);
    let bob = SippUa::spawn(&e, "bob", "agent_answer.xml", p[1], &[]);
    // Three customers that would talk for a minute: two bridged, one waits.
    let customers = SippUa::spawn(
        &e,
        "customers",
        "customer_call.xml",
        free_udp_port(),
        &["-s", "support", "-m", "3", "-l", "3", "-r", "10", "-d", "60000"],
    );
    let uas = [&alice, &bob, &customers];
    let explain = |e: &Engine, what: &str| {
        let mut s = format!("{what}\n");
        for u in uas {
            s.push_str(&u.describe());
        }
        s + &e.log_tail(5000)
    };
    let live = poll(Duration::from_secs(15), || {
        let q = e.queue("support");
        (q["talking"] == 2 && q["waiting"] == 1).then_some(())
    });
    assert!(
        live.is_some(),
        "{}",
        explain(&e, &format!("want 2 talking + 1 waiting; /queues: {}", e.http_get("/queues").1))
    );
    // Let the group commit (group_commit_ms = 5) put the answers on disk.
    std::thread::sleep(Duration::from_millis(300));

    e.kill9();
    e.spawn();

    // /agents is a snapshot the management plane refreshes: poll (bounded).
    let mut agents = vec![];
    poll(Duration::from_secs(3), || {
        agents = e.agents();
        ["alice", "bob"].iter().all(|a| !bindings_of(&agents, a).is_empty()).then_some(())
    });
    for a in ["alice", "bob"] {
        assert!(
            !bindings_of(&agents, a).is_empty(),
            "{}",
            explain(&e, &format!("{a} must still be registered after kill -9 + restart; /agents: {agents:?}"))
        );
    }
    // The restarted engine routes a new call to a registered agent.
    let run = sipp_on(
        &e,
        "customer_call.xml",
        free_udp_port(),
        &["-s", "support", "-m", "1", "-d", "1000"],
        Duration::from_secs(30),
    );
    assert!(run.ok(), "{}", explain(&e, &format!("new call after restart\n{}", run.describe())));
    if let Err(q) = e.wait_no_calls(Duration::from_secs(10)) {
        panic!("{}", explain(&e, &format!("new call still live: {q}")));
    }

    let cdrs = e.stop_and_cdrs();
    let ctx = || explain(&e, &show_cdrs(&cdrs));
    assert_eq!(cdrs.len(), 4, "3 calls cut by the crash + 1 after\n{}", ctx());
    let failed: Vec<_> = cdrs.iter().filter(|c| c["disposition"] == "failed").collect();
    assert_eq!(failed.len(), 3, "{}", ctx());
    for c in &failed {
        assert_eq!(c["reason"], "engine-restart", "{}", ctx());
        assert_eq!(c["queue"], "support", "{}", ctx());
    }
    let talked: Vec<_> = failed.iter().filter(|c| !c["agent"].is_null()).collect();
    assert_eq!(talked.len(), 2, "two of the cut calls were bridged (agent kept)\n{}", ctx());
    let mut names: Vec<_> = talked.iter().map(|c| c["agent"].as_str().unwrap_or("").to_string()).collect();
    names.sort();
    assert_eq!(names, ["alice", "bob"], "{}", ctx());
    for c in &talked {
        assert!(c["answered_ms"].is_u64(), "{}", ctx());
    }
    let waited: Vec<_> = failed.iter().filter(|c| c["agent"].is_null()).collect();
    assert_eq!(waited.len(), 1, "{}", ctx());
    assert!(waited[0]["answered_ms"].is_null(), "{}", ctx());
    let ok: Vec<_> = cdrs.iter().filter(|c| c["disposition"] == "answered").collect();
    assert_eq!(ok.len(), 1, "{}", ctx());
}
