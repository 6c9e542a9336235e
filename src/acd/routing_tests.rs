//! The routing integrator with time passed in: answers at once, commits in
//! groups, one commit in flight, retries in order, restart CDRs first,
//! shutdown flushes.

use std::path::{Path, PathBuf};

use super::*;
use crate::acd::binding::{ContactParam, ContactSet};
use crate::acd::cdr::{Disposition, LiveCall};
use crate::acd::facts::{CallFact, CallId};
use crate::acd::registrar::{RegisterReply, RegisterRequest};
use crate::sip::auth::{compute_response, format_authorization, DigestResponse};

const T0: u64 = 1_700_000_000_000;
/// `engine.group_commit_ms` in these tests.
const WINDOW: u64 = 5;

fn config() -> Config {
    let text = format!(
        r#"
[engine]
group_commit_ms = {WINDOW}

[sip]
listen = "127.0.0.1:5060"
domain = "cc.test"
realm = "cc.test"

[[agent]]
id = "a"
password = "pw"
queues = ["q"]

[[queue]]
name = "q"
"#
    );
    Config::parse(&text, Path::new("test.toml")).unwrap()
}

fn loaded() -> Loaded {
    Loaded { nonce_secret: [7; 32], ..Loaded::default() }
}

fn routing() -> Routing {
    let mut r = Routing::new(&config(), loaded(), T0);
    assert!(r.startup_committed());
    assert!(effects(&mut r).is_empty());
    r
}

fn effects(r: &mut Routing) -> Vec<Effect> {
    std::iter::from_fn(|| r.poll_effect()).collect()
}

fn commits(effects: &[Effect]) -> Vec<(u64, &[StoreOp])> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Commit { seq, ops } => Some((*seq, ops.as_slice())),
            _ => None,
        })
        .collect()
}

/// Takes the one commit in `effects` out, by value.
fn take_commit(effects: Vec<Effect>) -> (u64, Vec<StoreOp>) {
    let mut c: Vec<_> = effects
        .into_iter()
        .filter_map(|e| match e {
            Effect::Commit { seq, ops } => Some((seq, ops)),
            _ => None,
        })
        .collect();
    assert_eq!(c.len(), 1, "exactly one commit expected");
    c.remove(0)
}

fn arrived(n: u64, at_ms: u64) -> Input {
    Input::Shard(ToRouting::Call(CallFact::Arrived {
        call: CallId::new(0, n),
        queue: "q".into(),
        caller: format!("sip:c{n}@x"),
        priority_bonus: 0,
        skills: Vec::new(),
        sip_call_id: format!("s{n}"),
        at_ms,
    }))
}

fn live_of(ops: &[StoreOp]) -> Vec<u64> {
    ops.iter()
        .filter_map(|o| match o {
            StoreOp::CallLive(l) => Some(l.call.0),
            _ => None,
        })
        .collect()
}

fn ok(seq: u64, ops: Vec<StoreOp>) -> Input {
    Input::Committed(CommitOutcome { seq, ops, result: Ok(()) })
}

fn failed(seq: u64, ops: Vec<StoreOp>) -> Input {
    Input::Committed(CommitOutcome { seq, ops, result: Err(StoreError::ThreadGone) })
}

fn register_request(auth: Option<String>) -> RegisterRequest {
    RegisterRequest {
        user: "a".into(),
        contacts: ContactSet::List(vec![ContactParam {
            uri: "sip:a@127.0.0.1:5070".into(),
            expires: None,
            q: None,
            ob: false,
        }]),
        expires: Some(600),
        authorizations: auth.into_iter().collect(),
        method_uri: "sip:cc.test".into(),
        call_id: "reg-1".into(),
        cseq: 1,
        source: "127.0.0.1:5070".parse().unwrap(),
        user_agent: None,
    }
}

fn register(shard: u16, tx: u64, req: RegisterRequest) -> Input {
    Input::Shard(ToRouting::Register { shard, tx, req })
}

/// The Authorization answering `challenge` with the right password.
fn answer(challenge: &str, req: &RegisterRequest) -> String {
    let i = challenge.find("nonce=\"").unwrap() + 7;
    let nonce = &challenge[i..i + challenge[i..].find('"').unwrap()];
    let alg = if challenge.contains("SHA-256") { Algorithm::Sha256 } else { Algorithm::Md5 };
    let mut d = DigestResponse {
        username: "a".into(),
        realm: "cc.test".into(),
        nonce: nonce.into(),
        uri: req.method_uri.clone(),
        response: String::new(),
        algorithm: alg,
        cnonce: Some("c0ffee".into()),
        nc: Some("00000001".into()),
        qop: Some("auth".into()),
        opaque: None,
    };
    d.response = compute_response(&d, "REGISTER", "pw");
    format_authorization(&d)
}

#[test]
fn register_is_answered_at_once_and_committed_when_the_window_ends() {
    let mut r = routing();
    r.handle(register(1, 10, register_request(None)), T0);
    let e = effects(&mut r);
    let challenge = match e.as_slice() {
        [Effect::ToShard(1, FromRouting::RegisterReply { tx: 10, reply: RegisterReply::Challenge { www_authenticate } })] => {
            www_authenticate[0].clone()
        }
        other => panic!("expected a 401 to shard 1: {other:?}"),
    };
    assert_eq!(r.poll_timeout(), None, "a challenge changes nothing");

    let req = register_request(None);
    let auth = answer(&challenge, &req);
    r.handle(register(1, 11, register_request(Some(auth))), T0 + 1);
    let e = effects(&mut r);
    assert!(
        matches!(e.as_slice(), [Effect::ToShard(1, FromRouting::RegisterReply { tx: 11, reply: RegisterReply::Ok { .. } })]),
        "200 at once, no commit yet: {e:?}"
    );
    // The binding, and the queue log's AGENTLOGIN.
    assert_eq!(r.pending_len(), 2);
    assert_eq!(r.poll_timeout(), Some(T0 + 1 + WINDOW));
    r.handle(Input::Timer, T0 + WINDOW);
    assert!(effects(&mut r).is_empty(), "not before the window ends");
    r.handle(Input::Timer, T0 + 1 + WINDOW);
    let (seq, ops) = take_commit(effects(&mut r));
    assert!(
        matches!(ops.as_slice(), [StoreOp::Binding(Change::Upsert(b)), StoreOp::QueueLog(l)]
            if b.agent == "a" && l.event == crate::acd::queue_log::QueueEvent::AgentLogin),
        "{ops:?}"
    );
    r.handle(ok(seq, ops), T0 + 2 + WINDOW);
    assert!(effects(&mut r).is_empty());
    let (samples, _) = r.samples(T0 + 2 + WINDOW);
    let commits = samples.iter().find(|s| s.name == "cc_store_commits_total").map(|s| s.value);
    assert_eq!(commits, Some(1));
}

#[test]
fn ops_wait_for_the_group_window() {
    let mut r = routing();
    r.handle(arrived(1, T0), T0);
    r.handle(arrived(2, T0 + 2), T0 + 2);
    let e = effects(&mut r);
    assert!(commits(&e).is_empty(), "{e:?}");
    assert!(e.iter().all(|e| matches!(e, Effect::ToShard(0, FromRouting::Decision(_)))), "{e:?}");
    // The window counts from the oldest pending change.
    assert!(r.poll_timeout().is_some_and(|t| t <= T0 + WINDOW));
    r.handle(Input::Timer, T0 + WINDOW - 1);
    assert!(commits(&effects(&mut r)).is_empty());
    r.handle(Input::Timer, T0 + WINDOW);
    let (_, ops) = take_commit(effects(&mut r));
    assert_eq!(live_of(&ops), [CallId::new(0, 1).0, CallId::new(0, 2).0]);
    assert_eq!(r.pending_len(), 0);
}

#[test]
fn a_second_commit_waits_for_the_first() {
    let mut r = routing();
    r.handle(arrived(1, T0), T0);
    r.handle(Input::Timer, T0 + WINDOW);
    let (seq1, ops1) = take_commit(effects(&mut r));
    r.handle(arrived(2, T0 + WINDOW), T0 + WINDOW);
    // Long past the second change's window: still nothing while one is in
    // flight, and no timer for it (the outcome is the next input).
    for t in [T0 + 2 * WINDOW, T0 + 1000] {
        r.handle(Input::Timer, t);
        assert!(commits(&effects(&mut r)).is_empty());
    }
    assert!(r.poll_timeout().is_none_or(|t| t > T0 + 1000), "{:?}", r.poll_timeout());
    r.handle(ok(seq1, ops1), T0 + 1001);
    let (seq2, ops2) = take_commit(effects(&mut r));
    assert!(seq2 > seq1);
    assert_eq!(live_of(&ops2), [CallId::new(0, 2).0]);
}

#[test]
fn a_stale_outcome_is_ignored() {
    let mut r = routing();
    r.handle(arrived(1, T0), T0);
    r.handle(Input::Timer, T0 + WINDOW);
    let (seq, ops) = take_commit(effects(&mut r));
    r.handle(ok(seq + 7, Vec::new()), T0 + WINDOW);
    r.handle(arrived(2, T0 + WINDOW), T0 + 3 * WINDOW);
    r.handle(Input::Timer, T0 + 3 * WINDOW);
    assert!(commits(&effects(&mut r)).is_empty(), "the real one is still in flight");
    r.handle(ok(seq, ops), T0 + 3 * WINDOW);
    assert!(commits(&effects(&mut r)).is_empty(), "the second change's window runs");
    r.handle(Input::Timer, T0 + 4 * WINDOW);
    assert_eq!(commits(&effects(&mut r)).len(), 1);
}

#[test]
fn a_failed_commit_is_retried_ahead_of_newer_ops() {
    let mut r = routing();
    r.handle(arrived(1, T0), T0);
    r.handle(Input::Timer, T0 + WINDOW);
    let (seq1, ops1) = take_commit(effects(&mut r));
    r.handle(arrived(2, T0 + WINDOW), T0 + WINDOW);
    let t = T0 + WINDOW + 1;
    r.handle(failed(seq1, ops1), t);
    assert!(commits(&effects(&mut r)).is_empty(), "not retried in a loop");
    assert_eq!(r.poll_timeout(), Some(t + RETRY_MS));
    r.handle(Input::Timer, t + RETRY_MS - 1);
    assert!(commits(&effects(&mut r)).is_empty());
    r.handle(Input::Timer, t + RETRY_MS);
    let (seq2, ops2) = take_commit(effects(&mut r));
    assert_ne!(seq2, seq1);
    assert_eq!(live_of(&ops2), [CallId::new(0, 1).0, CallId::new(0, 2).0], "failed ops first");
    let (samples, _) = r.samples(t + RETRY_MS);
    let errors = samples.iter().find(|s| s.name == "cc_store_commit_errors_total").map(|s| s.value);
    assert_eq!(errors, Some(1));
    r.handle(ok(seq2, ops2), t + RETRY_MS + 1);
    assert_eq!(r.pending_len(), 0);
}

fn live_call(n: u64) -> LiveCall {
    LiveCall {
        call: CallId::new(1, n),
        sip_call_id: format!("s{n}"),
        queue: "q".into(),
        overflowed_from: None,
        caller: "sip:c@x".into(),
        arrived_ms: T0 - 60_000,
        agent: None,
        answered_ms: None,
    }
}

#[test]
fn restart_cdrs_are_the_first_commit() {
    let mut l = loaded();
    l.restore.live_calls = vec![live_call(1), live_call(2)];
    let mut r = Routing::new(&config(), l, T0);
    assert!(!r.startup_committed());
    let (seq, ops) = take_commit(effects(&mut r));
    let cdrs: Vec<_> = ops
        .iter()
        .filter_map(|o| match o {
            StoreOp::Cdr(c) => Some((c.disposition, c.reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(cdrs, vec![(Disposition::Failed, Some("engine-restart".to_string())); 2]);
    assert!(ops.iter().any(|o| matches!(o, StoreOp::CallDone(_))));
    // A fact that came in anyway waits for the next commit.
    r.handle(arrived(3, T0), T0);
    r.handle(Input::Timer, T0 + WINDOW);
    assert!(commits(&effects(&mut r)).is_empty());
    // A failed start-up commit is retried, and still first.
    r.handle(failed(seq, ops), T0 + WINDOW);
    assert!(!r.startup_committed());
    r.handle(Input::Timer, T0 + WINDOW + RETRY_MS);
    let (seq, ops) = take_commit(effects(&mut r));
    assert!(matches!(ops.first(), Some(StoreOp::Cdr(_))), "{ops:?}");
    r.handle(ok(seq, ops), T0 + WINDOW + RETRY_MS);
    assert!(r.startup_committed());
}

#[test]
fn shutdown_commits_everything_at_once_then_stops() {
    let mut r = routing();
    r.handle(arrived(1, T0), T0);
    r.handle(Input::Timer, T0 + WINDOW);
    let (seq1, ops1) = take_commit(effects(&mut r));
    r.handle(arrived(2, T0 + WINDOW), T0 + WINDOW);
    effects(&mut r);
    r.handle(Input::Shutdown, T0 + WINDOW);
    assert!(effects(&mut r).is_empty(), "one in flight: wait for it");
    r.handle(ok(seq1, ops1), T0 + WINDOW + 1);
    let (seq2, ops2) = take_commit(effects(&mut r));
    assert_eq!(live_of(&ops2), [CallId::new(0, 2).0], "without waiting for the window");
    assert!(!r.is_stopped());
    r.handle(ok(seq2, ops2), T0 + WINDOW + 2);
    assert!(matches!(effects(&mut r).as_slice(), [Effect::Stopped]));
    assert!(r.is_stopped());
}

#[test]
fn shutdown_with_nothing_pending_stops_at_once() {
    let mut r = routing();
    r.handle(Input::Shutdown, T0);
    assert!(matches!(effects(&mut r).as_slice(), [Effect::Stopped]));
}

#[test]
fn shutdown_gives_up_after_a_few_failed_commits() {
    let mut r = routing();
    r.handle(arrived(1, T0), T0);
    r.handle(Input::Shutdown, T0);
    let mut t = T0;
    for _ in 0..SHUTDOWN_ATTEMPTS {
        let (seq, ops) = take_commit(effects(&mut r));
        r.handle(failed(seq, ops), t);
        t += RETRY_MS;
        r.handle(Input::Timer, t);
    }
    let e = effects(&mut r);
    assert!(matches!(e.as_slice(), [Effect::Stopped]), "{e:?}");
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("cc-engine-routing-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The effects applied to a real database, then a restart from it.
#[test]
fn commits_applied_to_a_store_survive_a_restart() {
    let dir = TempDir::new("apply");
    {
        let store = Store::open(&dir.0).unwrap();
        let mut r = Routing::new(&config(), Loaded::from_store(&store).unwrap(), T0);
        r.handle(arrived(1, T0), T0);
        r.handle(Input::Timer, T0 + WINDOW);
        let (seq, ops) = take_commit(effects(&mut r));
        let outcome = apply_commit(&store, seq, ops);
        assert!(outcome.result.is_ok());
        r.handle(Input::Committed(outcome), T0 + WINDOW);
        // A second call decided but never committed: lost by the "crash".
        r.handle(arrived(2, T0 + WINDOW), T0 + WINDOW);
    }
    let store = Store::open(&dir.0).unwrap();
    let l = Loaded::from_store(&store).unwrap();
    assert_eq!(l.restore.live_calls.iter().map(|c| c.call.0).collect::<Vec<_>>(), [CallId::new(0, 1).0]);
    let mut r = Routing::new(&config(), l, T0 + 60_000);
    let (seq, ops) = take_commit(effects(&mut r));
    r.handle(Input::Committed(apply_commit(&store, seq, ops)), T0 + 60_000);
    assert!(r.startup_committed());
    let cdrs = store.cdrs(None).unwrap();
    assert_eq!(cdrs.len(), 1);
    assert_eq!(cdrs[0].reason.as_deref(), Some("engine-restart"));
}

fn counter_events(r: &mut Routing) -> Vec<(String, u64)> {
    std::iter::from_fn(|| r.poll_event())
        .filter_map(|e| match e {
            RouterEvent::QueueCounters { queue, stats, .. } => Some((queue, stats.total.offered)),
            _ => None,
        })
        .collect()
}

#[test]
fn queue_counter_events_are_coalesced_to_one_per_queue_per_interval() {
    let mut r = routing();
    r.keep_events();
    // A burst: the first change goes out at once, the rest wait.
    r.handle(arrived(1, T0), T0);
    assert_eq!(counter_events(&mut r), [("q".to_string(), 1)]);
    for n in 2..=5 {
        r.handle(arrived(n, T0 + n), T0 + n);
    }
    assert!(counter_events(&mut r).is_empty());
    let due = r.poll_timeout().expect("a wake-up for the held counters");
    assert!(due <= T0 + COUNTERS_EVERY_MS, "{due}");
    // One event with the latest counters once the interval is over.
    r.handle(Input::Timer, T0 + COUNTERS_EVERY_MS);
    assert_eq!(counter_events(&mut r), [("q".to_string(), 5)]);
    r.handle(Input::Timer, T0 + 3 * COUNTERS_EVERY_MS);
    assert!(counter_events(&mut r).is_empty());
}
