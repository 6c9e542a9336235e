//! End-to-end: reloading the config (SIGHUP and `POST /v1/reload`) during
//! live SIPp calls. An agent added by a reload registers and takes the next
//! call; an agent removed while talking finishes its call with its CDR; no
//! call is dropped; a broken file is refused (400 naming the key) and the
//! old config keeps serving.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const CALL_TIMEOUT: Duration = Duration::from_secs(40);

const QUEUE: &str = r#"
[[queue]]
name = "support"
ring_timeout_s = 3
wrap_up_s = 0
"#;

const ALICE: &str = r#"
[[agent]]
id = "alice"
password = "alice-pass"
queues = ["support"]
"#;

const BOB: &str = r#"
[[agent]]
id = "bob"
password = "bob-pass"
queues = ["support"]
"#;

/// `POST path` with the demo admin token and no body: status and body.
fn post(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Authorization: Bearer {DEMO_ADMIN_TOKEN}\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut chunk = [0u8; 8192];
    while Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, text)
}

fn sighup(e: &Engine) {
    let ok = std::process::Command::new("kill").args(["-HUP", &e.pid().to_string()]).status().unwrap();
    assert!(ok.success());
}

fn customer(e: &Engine) -> SippRun {
    sipp_on(e, "customer_wait_bye.xml", free_udp_port(), &["-s", "support", "-m", "1"], CALL_TIMEOUT)
}

#[test]
fn reload_during_live_calls_adds_and_removes_agents_without_dropping_a_call() {
    let (mut e, dir) = start_calls_engine(&format!("{QUEUE}\n{ALICE}"));
    let file = dir.path().join("cc-engine.toml");
    let original = std::fs::read_to_string(&file).unwrap();
    let with = |agents: &str| original.replace(ALICE, agents);
    let p = free_udp_ports(2);

    // Alice talks 6 s; while she does, a SIGHUP removes her and adds bob.
    sipp_register_agent(&e, "alice", "alice-pass", p[0]);
    let alice = SippUa::spawn(&e, "alice", "agent_hangup.xml", p[0], &["-d", "6000"]);
    std::thread::scope(|s| {
        let first = s.spawn(|| customer(&e));
        assert!(alice.wait_count("INVITE", 1, Duration::from_secs(10)), "alice never rang\n{}", e.log_tail(3000));
        std::fs::write(&file, with(BOB)).unwrap();
        sighup(&e);
        // Bob exists once the reload is applied: his REGISTER is accepted.
        let registered = poll(Duration::from_secs(10), || {
            let agents = e.http_get("/v1/agents").1;
            agents.contains("\"bob\"").then_some(())
        });
        assert!(registered.is_some(), "bob not added by SIGHUP\n{}", e.log_tail(3000));
        sipp_register_agent(&e, "bob", "bob-pass", p[1]);
        let bob = SippUa::spawn(&e, "bob", "agent_hangup.xml", p[1], &["-d", "500"]);
        // The next caller goes to bob, while alice's call goes on.
        let second = customer(&e);
        assert!(second.ok(), "second customer: {}\n{}", second.describe(), e.log_tail(4000));
        assert_eq!(bob.count("INVITE"), 1, "{}", bob.describe());
        let first = first.join().unwrap();
        assert!(first.ok(), "alice's call was dropped: {}\n{}", first.describe(), e.log_tail(4000));

        // A broken file is refused whole, naming the key; bob still serves.
        std::fs::write(&file, with(BOB).replace("name = \"support\"", "name = 7")).unwrap();
        let (code, body) = post(e.mgmt_addr(), "/v1/reload");
        assert_eq!(code, 400, "{body}");
        assert!(body.contains("queue") && body.contains("name"), "{body}");
        let third = customer(&e);
        assert!(third.ok(), "after a refused reload: {}\n{}", third.describe(), e.log_tail(4000));
        assert_eq!(bob.count("INVITE"), 2, "{}", bob.describe());

        // The API applies a good file and says what changed.
        std::fs::write(&file, with(&format!("{ALICE}\n{BOB}"))).unwrap();
        let (code, body) = post(e.mgmt_addr(), "/v1/reload");
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("\"agents_added\":[\"alice\"]"), "{body}");
    });
    let cdrs = e.stop_and_cdrs();
    assert_eq!(cdrs.len(), 3, "{}", show_cdrs(&cdrs));
    for c in &cdrs {
        assert_eq!(c["disposition"], "answered", "{}", show_cdrs(&cdrs));
    }
    let of = |a: &str| cdrs.iter().filter(|c| c["agent"] == a).count();
    assert_eq!((of("alice"), of("bob")), (1, 2), "{}", show_cdrs(&cdrs));
}
