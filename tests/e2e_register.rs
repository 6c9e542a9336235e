//! End-to-end: the registrar of the real `cc-engine` binary over loopback,
//! driven by SIPp (sipp/register*.xml) and by raw UDP where exact headers
//! matter (423/Min-Expires, 404, Expires 0, SHA-256).

mod common;
use common::*;
use std::time::Duration;

const SIPP_TIMEOUT: Duration = Duration::from_secs(20);

/// /agents is a snapshot from the routing shard and may trail the 200 by a
/// few ms: poll (bounded) until `agent` has exactly `want` contacts.
fn wait_contacts(e: &Engine, agent: &str, want: &[String]) -> Vec<serde_json::Value> {
    let mut last = vec![];
    let got = poll(Duration::from_secs(3), || {
        last = e.agents();
        let mut c = contacts_of(&last, agent);
        c.sort();
        let mut w = want.to_vec();
        w.sort();
        (c == w).then(|| last.clone())
    });
    got.unwrap_or_else(|| {
        let reg = e.metrics().get("cc_registered_contacts", &[]);
        panic!(
            "/agents: {agent} should have contacts {want:?}, has: {last:?} \
             (while /metrics says cc_registered_contacts={reg:?})"
        )
    })
}

fn contacts_of(list: &[serde_json::Value], agent: &str) -> Vec<String> {
    bindings_of(list, agent)
        .iter()
        .map(|v| v["contact"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn sipp_registers_both_demo_agents_with_digest() {
    let e = Engine::start();
    let run = sipp(
        &e,
        "register.xml",
        &[
            "-inf",
            sipp_file("agents.csv").to_str().unwrap(),
            "-m",
            "2",
            "-l",
            "1",
        ],
        SIPP_TIMEOUT,
    );
    assert!(
        run.ok(),
        "sipp register.xml failed\n{}\n{}",
        run.describe(),
        e.log_tail(4000)
    );

    let agents = poll(Duration::from_secs(3), || {
        let a = e.agents();
        (!bindings_of(&a, "alice").is_empty() && !bindings_of(&a, "bob").is_empty()).then_some(a)
    })
    .unwrap_or_else(|| panic!("alice and bob not both in /agents: {:?}", e.agents()));
    for who in ["alice", "bob"] {
        let b = bindings_of(&agents, who);
        assert_eq!(b.len(), 1, "{who}: one binding expected: {b:?}");
        let b = b[0];
        let contact = b["contact"].as_str().expect("contact string");
        assert!(
            contact.starts_with(&format!("sip:{who}@127.0.0.1:")),
            "{who} contact {contact}"
        );
        let exp = b["expires_in"].as_i64().expect("expires_in number");
        assert!((3000..=3600).contains(&exp), "{who} expires_in {exp}");
        assert!(
            b["target"].as_str().unwrap_or("").starts_with("127.0.0.1:"),
            "{who} target {b}"
        );
    }
    for code in ["200", "401"] {
        let (v, m) = e.wait_metric("cc_sip_responses_total", &[("code", code)], 2.0);
        assert!(
            v.unwrap_or(0.0) >= 2.0,
            "cc_sip_responses_total{{code={code}}}:\n{}",
            m.0
        );
    }
}

#[test]
fn sipp_wrong_password_gets_403() {
    let e = Engine::start();
    let run = sipp(
        &e,
        "register_wrong_password.xml",
        &[
            "-inf",
            sipp_file("agents.csv").to_str().unwrap(),
            "-m",
            "2",
            "-l",
            "1",
        ],
        SIPP_TIMEOUT,
    );
    assert!(
        run.ok(),
        "sipp register_wrong_password.xml failed\n{}",
        run.describe()
    );
    let a = e.agents();
    assert!(
        a.is_empty(),
        "no binding may come from a wrong password: {a:?}"
    );
}

/// The engine offering both algorithms (the default offers MD5 only, for
/// older phones).
fn engine_with_sha256() -> (TempDir, Engine) {
    let dir = TempDir::new("sha256");
    let config = derived_config(dir.path(), "registrar", "algorithms", r#"["MD5", "SHA-256"]"#);
    let e = Engine::start_with(EngineOpts { config, ..EngineOpts::default() });
    (dir, e)
}

#[test]
fn default_offers_md5_only() {
    let e = Engine::start();
    let r = register(&e, "alice", "alice-pass", Some(600), "MD5");
    let first = r.first.expect("no answer to REGISTER");
    let chs = first.headers("WWW-Authenticate");
    assert_eq!(chs.len(), 1, "{chs:?}");
    assert!(chs[0].contains("algorithm=MD5"), "{chs:?}");
    let last = r.last.expect("no answer to the authenticated REGISTER");
    assert_eq!(last.status(), Some(200), "{}", last.text);
}

#[test]
fn wrong_password_gets_403_with_either_algorithm() {
    let (_dir, e) = engine_with_sha256();
    for alg in ["MD5", "SHA-256"] {
        let r = register(&e, "alice", "not-alice-pass", Some(3600), alg);
        assert_eq!(
            r.first.as_ref().and_then(|m| m.status()),
            Some(401),
            "{alg}: {:?}",
            r.first
        );
        let last = r
            .last
            .unwrap_or_else(|| panic!("{alg}: no answer to the authenticated REGISTER"));
        assert_eq!(last.status(), Some(403), "{alg}:\n{}", last.text);
    }
    let (v, m) = e.wait_metric("cc_sip_responses_total", &[("code", "403")], 2.0);
    assert!(v.unwrap_or(0.0) >= 2.0, "{}", m.0);
    assert!(e.agents().is_empty(), "{:?}", e.agents());
}

#[test]
fn unknown_user_gets_404() {
    let e = Engine::start();
    let r = register(&e, "mallory", "mallory-pass", Some(3600), "MD5");
    let last = r.last.expect("no answer to REGISTER of an unknown user");
    assert_eq!(last.status(), Some(404), "{}", last.text);
    assert!(e.agents().is_empty());
    let (v, m) = e.wait_metric("cc_sip_responses_total", &[("code", "404")], 1.0);
    assert!(v.unwrap_or(0.0) >= 1.0, "{}", m.0);
}

#[test]
fn expires_below_minimum_gets_423_with_min_expires() {
    let e = Engine::start();
    let r = register(&e, "alice", "alice-pass", Some(10), "MD5");
    let last = r.last.expect("no answer to REGISTER Expires: 10");
    assert_eq!(last.status(), Some(423), "{}", last.text);
    let min = last
        .header("Min-Expires")
        .unwrap_or_else(|| panic!("423 without Min-Expires:\n{}", last.text));
    assert_eq!(min.trim(), "60", "{}", last.text);
    assert!(e.agents().is_empty(), "{:?}", e.agents());
}

#[test]
fn sha256_digest_registers() {
    let (_dir, e) = engine_with_sha256();
    let r = register(&e, "bob", "bob-pass", Some(600), "SHA-256");
    let first = r.first.expect("no answer to REGISTER");
    assert_eq!(first.status(), Some(401), "{}", first.text);
    let chs = first.headers("WWW-Authenticate");
    assert!(
        chs.iter().any(|c| c.contains("SHA-256")),
        "no SHA-256 challenge: {chs:?}"
    );
    assert!(
        chs.iter().any(|c| c.contains("MD5")),
        "no MD5 challenge: {chs:?}"
    );
    assert!(
        chs.iter()
            .all(|c| c.contains("qop=\"auth\"") || c.contains("qop=auth")),
        "{chs:?}"
    );
    assert!(
        chs.iter().all(|c| c.contains("realm=\"cc-engine\"")),
        "{chs:?}"
    );
    let last = r.last.expect("no answer to authenticated REGISTER");
    assert_eq!(last.status(), Some(200), "{}", last.text);
    let a = wait_contacts(&e, "bob", std::slice::from_ref(&r.contact));
    let b = bindings_of(&a, "bob")[0];
    assert_eq!(
        b["target"].as_str(),
        Some(r.local.to_string().as_str()),
        "{b}"
    );
    // optional field beyond the contract: if listed, it is the REGISTER's User-Agent
    if let Some(ua) = b.get("user_agent").filter(|v| !v.is_null()) {
        assert_eq!(ua.as_str(), Some("cc-engine-e2e"), "{b}");
    }
}

#[test]
fn unregister_with_expires_zero_removes_binding() {
    let e = Engine::start();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let r = register_on(&e, &sock, "alice", "alice-pass", Some(3600), "MD5");
    assert_eq!(
        r.last.as_ref().and_then(|m| m.status()),
        Some(200),
        "{:?}",
        r.last
    );
    let a = wait_contacts(&e, "alice", std::slice::from_ref(&r.contact));
    let exp = bindings_of(&a, "alice")[0]["expires_in"].as_i64().unwrap();
    assert!((3500..=3600).contains(&exp), "expires_in {exp}");

    let r0 = register_on(&e, &sock, "alice", "alice-pass", Some(0), "MD5");
    assert_eq!(
        r0.last.as_ref().and_then(|m| m.status()),
        Some(200),
        "{:?}",
        r0.last
    );
    let gone = poll(Duration::from_secs(2), || {
        contacts_of(&e.agents(), "alice").is_empty().then_some(())
    });
    assert!(
        gone.is_some(),
        "binding still listed after Expires: 0: {:?}",
        e.agents()
    );
}

#[test]
fn at_most_three_contacts_per_agent() {
    let e = Engine::start();
    let mut ok = 0;
    for _ in 0..4 {
        let r = register(&e, "alice", "alice-pass", Some(3600), "MD5");
        let st = r.last.as_ref().and_then(|m| m.status());
        assert!(st.is_some(), "no answer to REGISTER");
        if st == Some(200) {
            ok += 1;
        }
    }
    assert!(ok >= 3, "the first three contacts must register");
    std::thread::sleep(Duration::from_millis(300)); // /agents trails the 200s
    let n = bindings_of(&e.agents(), "alice").len();
    assert!(
        n <= 3,
        "max 3 contacts per agent, /agents lists {n}: {:?}",
        e.agents()
    );
    assert_eq!(n, 3, "{:?}", e.agents());
}

/// Registers alice, waits past the group-commit interval, returns the contact.
fn register_alice_durably(e: &Engine) -> String {
    let r = register(e, "alice", "alice-pass", Some(3600), "MD5");
    assert_eq!(
        r.last.as_ref().and_then(|m| m.status()),
        Some(200),
        "{:?}",
        r.last
    );
    wait_contacts(e, "alice", std::slice::from_ref(&r.contact));
    // group_commit_ms is a few ms: 500 ms is far past it.
    std::thread::sleep(Duration::from_millis(500));
    let m = e.metrics();
    eprintln!(
        "before kill -9: cc_store_commits_total={:?} cc_store_pending_changes={:?} cc_store_commit_errors_total={:?}",
        m.get("cc_store_commits_total", &[]),
        m.get("cc_store_pending_changes", &[]),
        m.get("cc_store_commit_errors_total", &[])
    );
    r.contact
}

#[test]
fn binding_survives_kill9_and_restart() {
    let mut e = Engine::start();
    let contact = register_alice_durably(&e);
    e.kill9();

    e.spawn();
    let a = wait_contacts(&e, "alice", std::slice::from_ref(&contact));
    let exp = bindings_of(&a, "alice")[0]["expires_in"].as_i64().unwrap();
    assert!(
        (3000..=3600).contains(&exp),
        "expires_in after restart {exp}"
    );
    assert!(e.options_ok());
}

/// Once the engine is stopped cleanly (SIGTERM), `cc-engine agents` reads the
/// binding from the database.
#[test]
fn offline_agents_after_clean_stop() {
    let mut e = Engine::start();
    let contact = register_alice_durably(&e);
    let st = e
        .terminate(Duration::from_secs(2))
        .expect("exit within 2 s of SIGTERM");
    assert_eq!(st.code(), Some(0), "{st}");
    let offline = e.offline_agents();
    assert_eq!(
        contacts_of(&offline, "alice"),
        vec![contact],
        "`cc-engine agents` after clean stop: {offline:?}"
    );
    let b = &bindings_of(&offline, "alice")[0];
    assert!(
        b["target"].as_str().unwrap_or("").starts_with("127.0.0.1:"),
        "{b}"
    );
    assert!(b["expires_in"].as_i64().unwrap_or(0) > 3000, "{b}");
}

/// The operator's first move after a crash: read the database with the
/// engine still down. redb needs a repair after kill -9, which a read-only
/// open cannot do: the offline tool must still manage.
#[test]
fn offline_agents_readable_right_after_kill9() {
    let mut e = Engine::start();
    let contact = register_alice_durably(&e);
    e.kill9();
    let offline = e.offline_agents();
    assert_eq!(
        contacts_of(&offline, "alice"),
        vec![contact.clone()],
        "after kill -9, `cc-engine agents`: {offline:?}"
    );
    // and the engine still starts on that database afterwards
    e.spawn();
    wait_contacts(&e, "alice", &[contact]);
}

#[test]
fn sigterm_exits_zero_within_two_seconds() {
    let mut e = Engine::start();
    let st = e.terminate(Duration::from_secs(2));
    let st = st.unwrap_or_else(|| panic!("no exit within 2 s of SIGTERM\n{}", e.log_tail(3000)));
    assert_eq!(st.code(), Some(0), "exit status {st}\n{}", e.log_tail(3000));
}

/// Keeps sipp/register_load.xml and sipp/agents_load.csv honest: a gentle
/// run (100 registrations/s, 500 calls) against an engine whose config is
/// the shipped one plus the 1000 generated agents of sipp/gen_agents_load.sh.
/// No timing is asserted: every call must succeed, nothing more.
#[test]
fn sipp_register_load_scenario_smoke() {
    let csv = std::fs::read_to_string(sipp_file("agents_load.csv")).expect("sipp/agents_load.csv");
    let users: Vec<(String, String)> = csv
        .lines()
        .filter(|l| !l.starts_with("SEQUENTIAL") && !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split(';');
            (f.next().unwrap().to_string(), f.next().unwrap().to_string())
        })
        .collect();
    assert!(
        users.len() >= 500,
        "agents_load.csv has {} agents",
        users.len()
    );
    let dir = TempDir::new("cfg");
    let mut cfg = std::fs::read_to_string(shipped_config()).unwrap();
    for (u, p) in &users {
        cfg.push_str(&format!(
            "\n[[agent]]\nid = \"{u}\"\npassword = \"{p}\"\nqueues = [\"support\"]\n"
        ));
    }
    let path = dir.path().join("bench.toml");
    std::fs::write(&path, cfg).unwrap();
    let e = Engine::start_with(EngineOpts {
        config: path,
        ..Default::default()
    });

    let run = sipp(
        &e,
        "register_load.xml",
        &[
            "-inf",
            sipp_file("agents_load.csv").to_str().unwrap(),
            "-r",
            "100",
            "-m",
            "500",
        ],
        Duration::from_secs(40),
    );
    assert!(
        run.ok(),
        "sipp register_load.xml failed\n{}",
        run.describe()
    );
    let (v, m) = e.wait_metric("cc_sip_responses_total", &[("code", "200")], 500.0);
    assert!(v.unwrap_or(0.0) >= 500.0, "{}", m.0);
    let n = poll(Duration::from_secs(3), || {
        let n = e.agents().len();
        (n >= 500).then_some(n)
    });
    assert!(
        n.is_some(),
        "500 distinct agents registered, /agents lists {}",
        e.agents().len()
    );
}
