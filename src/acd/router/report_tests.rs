//! Reporting: after a scripted mix of answered, abandoned, timed-out,
//! refused and moved calls, the queue counters equal a recount from the
//! queue log lines and the CDRs, and both survive a round trip through the
//! store (a restart).

use std::collections::BTreeMap;

use super::tests::{agent, cdrs, cid, queue, H, T0};
use super::*;
use crate::acd::facts::OfferResult;
use crate::acd::queue_log::{QueueEvent, QueueLogEntry};
use crate::acd::stats::QueueCounters;
use crate::acd::Store;

fn ops(h: &H) -> Vec<StoreOp> {
    h.log
        .iter()
        .filter_map(|o| match o {
            RouterOutput::Persist(op) => Some(op.clone()),
            _ => None,
        })
        .collect()
}

fn lines(h: &H) -> Vec<String> {
    ops(h)
        .iter()
        .filter_map(|op| match op {
            StoreOp::QueueLog(e) => Some(e.line()),
            _ => None,
        })
        .collect()
}

/// Counts per (queue, event) from queue log lines, as a reporting tool
/// that reads the file would.
fn recount(lines: &[String]) -> BTreeMap<(String, String), u64> {
    let mut m = BTreeMap::new();
    for l in lines {
        let f: Vec<&str> = l.split('|').collect();
        assert!(f.len() >= 8, "{l}");
        *m.entry((f[2].to_string(), f[4].to_string())).or_insert(0) += 1;
    }
    m
}

/// support: service level 10 s, max wait 60 s then on to `backup`.
/// Calls: 1 answered at 5 s, caller hangs up; 2 answered at 25 s (outside
/// the service level), agent hangs up; 3 abandons; 4 waits out its max
/// wait and moves to backup, where it times out; 5 is refused (full).
fn scripted() -> H {
    let support = queue(
        "name = \"support\"\nmax_waiting = 3\nservice_level_s = 10\nmax_wait_s = 60\nmax_wait_queue = \"backup\"\nwrap_up_s = 0\nretry_s = 0",
    );
    let backup = queue("name = \"backup\"\nmax_wait_s = 30");
    let mut h = H::new(&[support, backup], &[agent("alice", &["support"], "")]);
    h.arrive(1, "support", 0);
    h.arrive(2, "support", 0);
    h.arrive(3, "support", 0);
    h.arrive(5, "support", 0); // full: 3 unanswered already
    h.at(1_000);
    h.login("alice"); // offered call 1
    h.at(5_000);
    h.result(1, "alice", OfferResult::Answered);
    h.at(10_000);
    h.fact(CallFact::Abandoned { call: cid(3), at_ms: h.now });
    h.arrive(4, "support", 0);
    h.at(20_000);
    h.fact(CallFact::Abandoned { call: cid(1), at_ms: h.now }); // caller hangs up: answered
    h.at(21_000);
    h.result(2, "alice", OfferResult::NoAnswer); // rang 1 s
    h.at(24_000);
    h.tick(24_000);
    h.at(25_000);
    h.result(2, "alice", OfferResult::Answered);
    h.at(40_000);
    // Paused while talking, so call 4 is not offered when call 2 ends.
    h.r.pause("alice", Some("lunch".into()), h.now).unwrap();
    h.drain();
    h.end(2); // agent hangs up
    h.tick(70_000); // call 4 (arrived at 10 s) moves to backup
    h.tick(100_000); // and times out there
    h.r.unpause("alice", h.now).unwrap();
    h.drain();
    h
}

#[test]
fn counters_equal_a_recount_from_the_queue_log_and_the_cdrs() {
    let h = scripted();
    let snap = h.r.snapshot(h.now);
    let support = snap.queues.iter().find(|q| q.name == "support").expect("support").total;
    let backup = snap.queues.iter().find(|q| q.name == "backup").expect("backup").total;
    let expect = QueueCounters {
        offered: 4,
        answered: 2,
        abandoned: 1,
        timed_out: 0,
        overflowed: 1,
        failed: 0,
        rejected: 1,
        wait_ms_answered: 5_000 + 25_000,
        longest_wait_ms: 60_000,
        talk_ms: 15_000 + 15_000,
        answered_in_sl: 1,
    };
    assert_eq!(support, expect);
    assert_eq!((backup.offered, backup.timed_out, backup.longest_wait_ms), (1, 1, 90_000));
    assert_eq!(support.service_level_answered(), Some(50.0));
    assert!((support.service_level_offered().unwrap() - 100.0 / 3.0).abs() < 1e-9);

    let ls = lines(&h);
    let n = recount(&ls);
    let at = |q: &str, e: &str| n.get(&(q.to_string(), e.to_string())).copied().unwrap_or(0);
    assert_eq!(at("support", "ENTERQUEUE"), support.offered);
    assert_eq!(at("support", "CONNECT"), support.answered);
    assert_eq!(at("support", "COMPLETECALLER") + at("support", "COMPLETEAGENT"), support.answered);
    assert_eq!((at("support", "COMPLETECALLER"), at("support", "COMPLETEAGENT")), (1, 1));
    assert_eq!(at("support", "ABANDON"), support.abandoned);
    assert_eq!(at("support", "EXITWITHTIMEOUT"), support.overflowed);
    assert_eq!(at("support", "FULL"), support.rejected);
    assert_eq!(at("support", "RINGNOANSWER"), 1);
    assert_eq!((at("backup", "ENTERQUEUE"), at("backup", "EXITWITHTIMEOUT")), (1, 1));
    assert_eq!((at("NONE", "PAUSE"), at("NONE", "UNPAUSE"), at("NONE", "AGENTLOGIN")), (1, 1, 1));
    // Field values as app_queue writes them.
    let connect2 = ls.iter().find(|l| l.contains("|CONNECT|") && l.contains("|sip-2|")).expect("connect 2");
    assert!(connect2.ends_with("|CONNECT|25|1-2|4"), "{connect2}");
    let ring = ls.iter().find(|l| l.contains("|RINGNOANSWER|")).expect("ringnoanswer");
    assert!(ring.contains("|alice|RINGNOANSWER|1000|"), "{ring}");
    let abandon = ls.iter().find(|l| l.contains("|ABANDON|")).expect("abandon");
    assert!(abandon.ends_with("|sip-3|support|NONE|ABANDON|2|3|10"), "{abandon}");

    // The CDRs say the same.
    let c = cdrs(&h.log);
    let answered = c.iter().filter(|c| c.disposition == Disposition::Answered && c.queue == "support").count();
    assert_eq!(answered as u64, support.answered);
    assert_eq!(c.iter().filter(|c| c.disposition == Disposition::TimedOut && c.queue == "backup").count(), 1);

    // Agent counters.
    let a = &snap.agents[0].counters;
    assert_eq!((a.answered, a.talk_ms, a.missed.no_answer), (2, 30_000, 1));
    assert_eq!(a.pause_ms, 60_000);
}

#[test]
fn counters_and_queue_log_survive_a_restart() {
    let h = scripted();
    let dir = std::env::temp_dir().join(format!("cc-engine-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let store = Store::open(&dir).expect("open");
        store.apply_ops(&ops(&h)).expect("apply");
        assert_eq!(store.queue_log(None, usize::MAX).expect("read"), lines(&h));
        assert_eq!(store.queue_log(Some(T0 + 60_000), 3).expect("read").len(), 3);
        let restore = store.load_router_state().expect("load");
        let support = queue("name = \"support\"\nservice_level_s = 10");
        let backup = queue("name = \"backup\"");
        let (r, _) = Router::new(&[support, backup], &[agent("alice", &["support"], "")], restore, h.now + 1);
        let before = h.r.snapshot(h.now);
        let after = r.snapshot(h.now + 1);
        for (b, a) in before.queues.iter().zip(&after.queues) {
            assert_eq!((&b.name, b.total, b.today), (&a.name, a.total, a.today));
        }
        assert_eq!(before.agents[0].counters, after.agents[0].counters);
    }
    // New lines after a reopen sort after the old ones, even in the same
    // millisecond.
    {
        let store = Store::open(&dir).expect("reopen");
        let late = QueueLogEntry::agent(T0, "alice", QueueEvent::Pause).with(["x"]);
        store.apply_ops(&[StoreOp::QueueLog(late.clone())]).expect("apply");
        let all = store.queue_log(None, usize::MAX).expect("read");
        assert_eq!(all.len(), lines(&h).len() + 1);
        let t0_lines: Vec<&String> = all.iter().filter(|l| l.starts_with(&format!("{}|", T0 / 1000))).collect();
        assert_eq!(t0_lines.last().map(|l| l.as_str()), Some(late.line().as_str()));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_restart_writes_the_lost_calls_into_the_queue_log() {
    let q = queue("name = \"q\"");
    let restore = RouterRestore {
        live_calls: vec![crate::acd::LiveCall {
            call: cid(9),
            sip_call_id: "lost".into(),
            queue: "q".into(),
            overflowed_from: None,
            caller: "sip:c@x".into(),
            arrived_ms: T0 - 5_000,
            agent: None,
            answered_ms: None,
        }],
        ..RouterRestore::default()
    };
    let (h, init) = H::restored(&[q], &[], restore);
    let logged: Vec<String> = init
        .iter()
        .filter_map(|o| match o {
            RouterOutput::Persist(StoreOp::QueueLog(e)) => Some(e.line()),
            _ => None,
        })
        .collect();
    assert_eq!(logged.len(), 1);
    assert!(logged[0].contains("|lost|q|NONE|FAILED|||5|engine-restart"), "{logged:?}");
    assert_eq!(h.r.snapshot(h.now).queues[0].total.failed, 1);
}
