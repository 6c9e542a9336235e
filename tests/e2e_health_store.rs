//! `/health` follows the store: while a commit cannot finish (the engine's
//! test hook `CC_ENGINE_TEST_COMMIT_HOLD_FILE` holds every commit while the
//! file it names exists) it answers 503 with a JSON body naming the store;
//! once the commit lands, 200 again.
//!
//! One test in this file: it sets an environment variable for the engine
//! it starts, which is process-wide.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn health_is_503_naming_the_store_while_it_cannot_commit_and_200_after() {
    let dir = TempDir::new("hold");
    let hold = dir.path().join("hold-commits");
    std::env::set_var("CC_ENGINE_TEST_COMMIT_HOLD_FILE", &hold);
    let mut e = Engine::start();
    let m = e.mgmt_addr();
    let (code, body) = http_get(m, "/health");
    assert_eq!(code, 200, "{body}");

    // Hold commits, then change something that must be committed.
    std::fs::write(&hold, b"").unwrap();
    let alice = register(&e, "alice", "alice-pass", Some(3600), "MD5");
    assert_eq!(alice.last.as_ref().and_then(|r| r.status()), Some(200), "{:?}", alice.last);
    let failing = poll(Duration::from_secs(10), || {
        let (code, body) = http_get(m, "/health");
        (code == 503).then_some(body)
    })
    .unwrap_or_else(|| panic!("/health stayed 200 while the store could not commit\n{}", e.log_tail(3000)));
    let v: serde_json::Value = serde_json::from_str(&failing).expect("a JSON body");
    let reasons = v["reasons"].as_array().cloned().unwrap_or_default();
    assert!(reasons.iter().any(|r| r.as_str().is_some_and(|r| r.starts_with("store:"))), "{v}");
    assert_eq!(v["status"], "unavailable", "{v}");

    // The disk is back: the commit lands and the engine is healthy again.
    std::fs::remove_file(&hold).unwrap();
    let healthy = poll(Duration::from_secs(10), || (http_get(m, "/health").0 == 200).then_some(()));
    assert!(healthy.is_some(), "/health stayed 503 after the store recovered\n{}", e.log_tail(3000));
    assert!(e.metrics().get("cc_store_commits_total", &[]).unwrap_or(0.0) >= 1.0);
    let st = e.terminate(Duration::from_secs(10)).expect("exits");
    assert_eq!(st.code(), Some(0), "{}", e.log_tail(3000));
}
