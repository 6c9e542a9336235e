//! What a `kill -9` can lose is bounded by the group-commit window
//! (README, "Persistence"): a registration answered longer ago than
//! `engine.group_commit_ms` (plus the commit's own time) survives.

mod common;
use common::*;
use std::time::Duration;

/// A window long enough that "after the window" and "inside it" are far
/// apart on a loaded machine.
const WINDOW_MS: u64 = 300;
/// Past the window: room for the commit itself (fdatasync) and scheduling.
const MARGIN: Duration = Duration::from_millis(700);

fn contacts_of(list: &[serde_json::Value], agent: &str) -> Vec<String> {
    let mut v: Vec<String> = bindings_of(list, agent)
        .iter()
        .filter_map(|b| b["contact"].as_str().map(String::from))
        .collect();
    v.sort();
    v
}

#[test]
fn kill9_after_the_window_loses_no_registration() {
    let dir = TempDir::new("window");
    let config = derived_config(dir.path(), "engine", "group_commit_ms", &WINDOW_MS.to_string());
    let mut e = Engine::start_with(EngineOpts { config, ..EngineOpts::default() });
    let mut want = Vec::new();
    // Registrations at different moments, each in its own group.
    for user in ["alice", "bob"] {
        let r = register(&e, user, &format!("{user}-pass"), Some(3600), "MD5");
        assert_eq!(r.last.as_ref().and_then(|m| m.status()), Some(200), "{:?}", r.last);
        want.push((user, r.contact));
        std::thread::sleep(Duration::from_millis(WINDOW_MS / 2));
    }
    std::thread::sleep(Duration::from_millis(WINDOW_MS) + MARGIN);
    e.kill9();

    let offline = e.offline_agents();
    for (user, contact) in &want {
        assert_eq!(contacts_of(&offline, user), vec![contact.clone()], "after kill -9: {offline:?}");
    }
    e.spawn();
    let agents = poll(Duration::from_secs(3), || {
        let a = e.agents();
        want.iter().all(|(u, c)| contacts_of(&a, u) == vec![c.clone()]).then_some(a)
    });
    assert!(agents.is_some(), "after restart: {:?}\n{}", e.agents(), e.log_tail(3000));
}
