//! Store tests for the router's tables: CDRs (`since` range), live calls
//! across a restart, router state, and the shared group commit.

use super::*;
use crate::acd::cdr::{Disposition, Pause};
use crate::acd::facts::{CallFact, Party, RtpCounts};
use crate::acd::router::{Router, RouterOutput};
use crate::config::{AgentConfig, QueueConfig};

const T0: u64 = 1_700_000_000_000;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p =
            std::env::temp_dir().join(format!("cc-engine-rstore-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cdr(n: u64, ended_ms: u64) -> Cdr {
    Cdr {
        call_id: CallId::new(2, n).to_string(),
        sip_call_id: format!("s{n}"),
        queue: "q".into(),
        overflowed_from: None,
        caller: "sip:c@x".into(),
        agent: Some("a".into()),
        arrived_ms: ended_ms - 10_000,
        answered_ms: Some(ended_ms - 5_000),
        ended_ms,
        wait_s: 5,
        talk_s: 5,
        disposition: Disposition::Answered,
        reason: None,
        hangup: Some(Party::Caller),
        rtp: RtpCounts {
            caller_to_agent: 250,
            agent_to_caller: 249,
        },
    }
}

fn persist_ops(out: impl IntoIterator<Item = RouterOutput>) -> Vec<StoreOp> {
    out.into_iter()
        .filter_map(|o| match o {
            RouterOutput::Persist(op) => Some(op),
            _ => None,
        })
        .collect()
}

#[test]
fn cdr_round_trip_and_since_range() {
    let dir = TempDir::new("cdrs");
    // Same end time for 1 and 2: the call id keeps both.
    let all = [
        cdr(1, T0),
        cdr(2, T0),
        cdr(3, T0 + 1_000),
        cdr(4, T0 + 60_000),
    ];
    {
        let s = Store::open(&dir.0).unwrap();
        s.apply_ops(
            &all.iter()
                .rev()
                .cloned()
                .map(StoreOp::Cdr)
                .collect::<Vec<_>>(),
        )
        .unwrap();
        assert_eq!(s.cdrs(None).unwrap(), all.to_vec());
        assert_eq!(s.cdrs(Some(T0 + 1)).unwrap(), all[2..].to_vec());
        assert_eq!(s.cdrs(Some(T0 + 60_001)).unwrap(), vec![]);
    }
    // Read-only report while the engine is stopped, as JSON.
    let r = cdrs_report(&dir.0, Some(T0 + 1_000)).unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0]["call_id"], "2-3");
    assert_eq!(r[0]["disposition"], "answered");
    assert_eq!(r[0]["hangup"], "caller");
    assert_eq!(r[0]["rtp"]["caller_to_agent"], 250);
    assert!(cdrs_report(&dir.0.join("missing"), None)
        .unwrap()
        .is_empty());
}

#[test]
fn router_state_round_trip() {
    let dir = TempDir::new("rstate");
    let s = Store::open(&dir.0).unwrap();
    let paused = AgentPersist {
        paused: Some(Pause {
            reason: Some("no-answer".into()),
            since_ms: T0,
            until_ms: None,
        }),
        no_answer: 3,
            counters: Default::default(),
            logged_out: false,
            logout_pending: false,
    };
    s.apply_ops(&[
        StoreOp::RoundRobin {
            queue: "q".into(),
            last_agent: "a".into(),
        },
        StoreOp::RoundRobin {
            queue: "q".into(),
            last_agent: "b".into(),
        },
        StoreOp::Agent {
            agent: "a".into(),
            state: paused.clone(),
        },
        StoreOp::Agent {
            agent: "b".into(),
            state: paused.clone(),
        },
        StoreOp::Agent {
            agent: "b".into(),
            state: AgentPersist::default(),
        }, // cleared
    ])
    .unwrap();
    let r = s.load_router_state().unwrap();
    assert_eq!(r.rr_last.get("q").map(String::as_str), Some("b"));
    assert_eq!(r.agents.len(), 1);
    assert_eq!(r.agents["a"], paused);
    assert!(r.live_calls.is_empty());
}

#[test]
fn live_call_becomes_engine_restart_cdr() {
    let dir = TempDir::new("restart");
    let q: QueueConfig = toml::from_str("name = \"q\"").unwrap();
    let a: AgentConfig = toml::from_str("id = \"a\"\npassword = \"p\"\nqueues = [\"q\"]").unwrap();
    let addr = "127.0.0.1:5070".parse().unwrap();
    {
        let s = Store::open(&dir.0).unwrap();
        let (mut r, init) = Router::new(
            std::slice::from_ref(&q),
            std::slice::from_ref(&a),
            s.load_router_state().unwrap(),
            T0,
        );
        assert!(init.is_empty());
        r.agent_contacts("a", vec![("sip:a@127.0.0.1:5070".into(), addr)], T0)
            .unwrap();
        for n in 1..=2 {
            r.call_fact(
                CallFact::Arrived {
                    call: CallId::new(0, n),
                    queue: "q".into(),
                    caller: "c".into(),
                    priority_bonus: 0,
                    skills: Vec::new(),
                    sip_call_id: format!("s{n}"),
                    at_ms: T0,
                },
                T0,
            );
        }
        r.call_fact(
            CallFact::OfferResult {
                call: CallId::new(0, 1),
                agent: "a".into(),
                result: crate::acd::facts::OfferResult::Answered,
                at_ms: T0 + 1_000,
            },
            T0 + 1_000,
        );
        // Commit through the shared group commit, then "crash" (drop without
        // any shutdown step).
        let mut g: GroupCommit<StoreOp> = GroupCommit::new(5, 1000);
        g.extend(
            persist_ops(std::iter::from_fn(|| r.poll_output())),
            T0 + 1_000,
        );
        assert!(g.due(T0 + 1_005));
        g.flush(&s).unwrap();
    }
    let s = Store::open(&dir.0).unwrap();
    let restore = s.load_router_state().unwrap();
    assert_eq!(restore.live_calls.len(), 2);
    let (_r, init) = Router::new(&[q], &[a], restore, T0 + 61_000);
    s.apply_ops(&persist_ops(init)).unwrap();
    let cdrs = s.cdrs(None).unwrap();
    assert_eq!(cdrs.len(), 2);
    for c in &cdrs {
        assert_eq!(
            (c.disposition, c.reason.as_deref()),
            (Disposition::Failed, Some("engine-restart"))
        );
        assert_eq!(c.ended_ms, T0 + 61_000);
    }
    assert_eq!((cdrs[0].agent.as_deref(), cdrs[0].talk_s), (Some("a"), 60));
    assert_eq!((cdrs[1].agent.as_deref(), cdrs[1].wait_s), (None, 61));
    assert!(s.load_router_state().unwrap().live_calls.is_empty());
}

#[test]
fn binding_ops_share_the_transaction() {
    let dir = TempDir::new("binding-ops");
    let s = Store::open(&dir.0).unwrap();
    let b = Binding {
        agent: "a".into(),
        contact_uri: "sip:a@192.0.2.1".into(),
        target: "192.0.2.1:5060".parse().unwrap(),
        received: None,
        expires_at_ms: T0 + 60_000,
        call_id: "c".into(),
        cseq: 1,
        user_agent: None,
        registered_at_ms: T0,
        q: None,
    };
    s.apply_ops(&[
        StoreOp::Binding(Change::Upsert(b.clone())),
        StoreOp::Cdr(cdr(1, T0)),
    ])
    .unwrap();
    assert_eq!(s.load_bindings().unwrap(), vec![b.clone()]);
    s.apply_ops(&[StoreOp::Binding(Change::Remove {
        agent: "a".into(),
        contact: b.contact_uri.clone(),
    })])
    .unwrap();
    assert!(s.load_bindings().unwrap().is_empty());
    assert_eq!(s.cdrs(None).unwrap().len(), 1);
}
