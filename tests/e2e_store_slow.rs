//! A store that blocks must not delay SIP: with every commit made to sleep
//! (the engine's test hook `CC_ENGINE_TEST_COMMIT_DELAY_MS`), REGISTERs and
//! OPTIONS are still answered while a commit is running, and the commits
//! still land, at shutdown too.
//!
//! One test in this file: it sets an environment variable for the engines
//! it starts, which is process-wide.

mod common;
use common::*;
use std::time::{Duration, Instant};

/// Each commit sleeps this long before it writes.
const COMMIT_DELAY: Duration = Duration::from_secs(3);

fn answered_200(r: &RegOutcome) -> bool {
    r.last.as_ref().and_then(|m| m.status()) == Some(200)
}

#[test]
fn a_slow_commit_does_not_delay_sip_answers() {
    std::env::set_var("CC_ENGINE_TEST_COMMIT_DELAY_MS", COMMIT_DELAY.as_millis().to_string());
    let mut e = Engine::start();

    let alice = register(&e, "alice", "alice-pass", Some(3600), "MD5");
    assert!(answered_200(&alice), "{:?}", alice.last);
    // Past the group window (a few ms): alice's commit is now on the store
    // thread, asleep for COMMIT_DELAY.
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    for _ in 0..5 {
        assert!(e.options_ok(), "{}", e.log_tail(3000));
    }
    let options_took = t.elapsed();
    let t = Instant::now();
    let bob = register(&e, "bob", "bob-pass", Some(3600), "MD5");
    let register_took = t.elapsed();
    assert!(answered_200(&bob), "{:?}", bob.last);
    let commits = e.metrics().get("cc_store_commits_total", &[]);
    eprintln!("REGISTER (401 + 200) {register_took:?}, 5 OPTIONS {options_took:?}, commits so far {commits:?}");
    // Half the delay: an executor blocked by the commit would answer only
    // after the rest of it (the commit started ~100 ms ago).
    assert!(
        register_took < COMMIT_DELAY / 2 && options_took < COMMIT_DELAY / 2,
        "answers waited for the commit: REGISTER {register_took:?}, OPTIONS {options_took:?}\n{}",
        e.log_tail(3000)
    );
    assert_eq!(commits, Some(0.0), "the first commit should still be running");

    // Durability is delayed, not lost: both commits land.
    let landed = poll(COMMIT_DELAY * 4, || {
        let n = e.metrics().get("cc_store_commits_total", &[]).unwrap_or(0.0);
        (n >= 2.0).then_some(n)
    });
    assert!(landed.is_some(), "commits did not land\n{}", e.log_tail(3000));

    // A change made just before SIGTERM is committed (through the slow
    // store) before the engine exits.
    let third = register(&e, "alice", "alice-pass", Some(3600), "MD5");
    assert!(answered_200(&third), "{:?}", third.last);
    let st = e.terminate(COMMIT_DELAY * 4).expect("exits after its final commit");
    assert_eq!(st.code(), Some(0), "{st}\n{}", e.log_tail(3000));
    let offline = e.offline_agents();
    let mut contacts: Vec<String> = bindings_of(&offline, "alice")
        .iter()
        .filter_map(|b| b["contact"].as_str().map(String::from))
        .collect();
    contacts.sort();
    let mut want = vec![alice.contact.clone(), third.contact.clone()];
    want.sort();
    assert_eq!(contacts, want, "{offline:?}");
    assert_eq!(bindings_of(&offline, "bob").len(), 1, "{offline:?}");
}
