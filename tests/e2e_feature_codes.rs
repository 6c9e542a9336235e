//! End to end through the real `cc-engine` with SIPp: an agent changes its
//! own status from the phone (feature codes, digest-authenticated INVITEs
//! to `*55*3`, `*56`…), and an agent whose only contact stops answering the
//! liveness OPTIONS shows `unreachable` until it answers again.

mod common;
use common::*;
use serde_json::Value;
use std::time::Duration;

const CALL_TIMEOUT: Duration = Duration::from_secs(40);

const CONFIG: &str = r#"
[[queue]]
name = "support"
ring_timeout_s = 3
wrap_up_s = 0

[[agent]]
id = "alice"
password = "alice-pass"
queues = ["support"]

[features.pause_reasons]
3 = "lunch"
"#;

/// Dials `code` as `user` with `pass` from `port`; returns the run and the
/// final status the engine gave the authenticated INVITE.
fn dial(e: &Engine, user: &str, pass: &str, code: &str, port: u16) -> (SippRun, u16) {
    let dir = TempDir::new("feat");
    let csv = dir.path().join("agent.csv");
    std::fs::write(&csv, format!("SEQUENTIAL\n{user};{pass};[authentication username={user} password={pass}];x\n"))
        .unwrap();
    let csv = csv.to_string_lossy().into_owned();
    // SIPp digests `sip:REMOTE` unless told; the engine wants the Request-URI.
    let auth_uri = format!("{code}@{}", e.sip_addr());
    let args = ["-s", code, "-inf", &csv, "-m", "1", "-auth_uri", &auth_uri];
    let run = sipp_on(e, "agent_feature_code.xml", port, &args, Duration::from_secs(20));
    let status = [200, 403, 404, 480]
        .into_iter()
        .find(|s| count_sip(&run.messages, &s.to_string()) > 0)
        .unwrap_or(0);
    (run, status)
}

fn agent(e: &Engine, id: &str) -> Value {
    let (code, body) = e.http_get(&format!("/v1/agents/{id}"));
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn wait_status(e: &Engine, id: &str, status: &str, timeout: Duration) -> Value {
    let got = poll(timeout, || {
        let a = agent(e, id);
        (a["status"] == status).then_some(a)
    });
    got.unwrap_or_else(|| panic!("{id} never became {status}: {}\n{}", agent(e, id), e.log_tail(4000)))
}

#[test]
fn an_agent_pauses_and_unpauses_from_the_phone_and_calls_wait_meanwhile() {
    let (mut e, _cfg) = start_calls_engine(CONFIG);
    let ports = free_udp_ports(5);
    sipp_register_agent(&e, "alice", "alice-pass", ports[0]);
    let phone = SippUa::spawn(&e, "alice", "agent_answer.xml", ports[0], &[]);
    wait_status(&e, "alice", "available", Duration::from_secs(5));

    let (run, status) = dial(&e, "alice", "alice-pass", "*55*3", ports[1]);
    assert!(run.ok() && status == 200, "*55*3: {status}\n{}\n{}", run.describe(), e.log_tail(4000));
    assert_eq!(count_sip(&run.messages, "BYE"), 1, "the engine hangs up after the tone\n{}", run.describe());
    let a = wait_status(&e, "alice", "paused", Duration::from_secs(5));
    assert_eq!(a["paused_reason"], "lunch", "{a}");

    // A wrong password changes nothing.
    let (run, status) = dial(&e, "alice", "not-her-pass", "*56", ports[2]);
    assert_eq!(status, 403, "{}", run.describe());
    assert_eq!(agent(&e, "alice")["status"], "paused");

    std::thread::scope(|s| {
        let caller = s.spawn(|| sipp_on(&e, "customer_call.xml", ports[3], &["-s", "support", "-m", "1", "-d", "2000"], CALL_TIMEOUT));
        let waiting = poll(Duration::from_secs(10), || (e.queue("support")["waiting"].as_u64() == Some(1)).then_some(()));
        assert!(waiting.is_some(), "the caller never queued\n{}", e.log_tail(4000));
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(phone.count("INVITE"), 0, "a paused agent was offered the call\n{}", phone.describe());

        let (run, status) = dial(&e, "alice", "alice-pass", "*56", ports[4]);
        assert!(run.ok() && status == 200, "*56: {status}\n{}", run.describe());
        let run = caller.join().unwrap();
        assert!(run.ok(), "caller: {}\n{}", run.describe(), e.log_tail(4000));
    });
    assert!(phone.count("INVITE") >= 1, "alice never got the call after *56\n{}", phone.describe());

    let logged = poll(Duration::from_secs(5), || {
        let (_, body) = e.http_get("/v1/queue-log");
        (body.contains("|alice|PAUSE|lunch") && body.contains("|alice|UNPAUSE|lunch")).then_some(())
    });
    assert!(logged.is_some(), "queue log: {}", e.http_get("/v1/queue-log").1);
    for (action, result) in [("pause", "done"), ("unpause", "done"), ("unknown", "forbidden")] {
        let (v, m) = e.wait_metric("cc_feature_codes_total", &[("action", action), ("result", result)], 1.0);
        assert_eq!(v, Some(1.0), "{action} {result}: {}", m.0);
    }
    let cdrs = e.stop_and_cdrs();
    assert!(cdrs.iter().any(|c| c["agent"] == "alice" && c["disposition"] == "answered"), "{}", show_cdrs(&cdrs));
}

#[test]
fn logout_and_login_by_code_and_an_unknown_code_is_404() {
    let (e, _cfg) = start_calls_engine(CONFIG);
    let ports = free_udp_ports(4);
    sipp_register_agent(&e, "alice", "alice-pass", ports[0]);
    let (run, status) = dial(&e, "alice", "alice-pass", "*58", ports[1]);
    assert!(run.ok() && status == 200, "*58: {status}\n{}", run.describe());
    wait_status(&e, "alice", "logged-out", Duration::from_secs(5));
    let (run, status) = dial(&e, "alice", "alice-pass", "*99", ports[2]);
    assert_eq!(status, 404, "{}", run.describe());
    let (run, status) = dial(&e, "alice", "alice-pass", "*57", ports[3]);
    assert!(run.ok() && status == 200, "*57: {status}\n{}", run.describe());
    wait_status(&e, "alice", "available", Duration::from_secs(5));
}

#[test]
fn a_contact_that_stops_answering_options_shows_unreachable_until_it_answers() {
    let dir = TempDir::new("unreach-cfg");
    let config = calls_config(dir.path(), CONFIG);
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("keepalive_s = 30") && text.contains("keepalive_failures = 2"));
    let text = text.replace("keepalive_s = 30", "keepalive_s = 1").replace("keepalive_failures = 2", "keepalive_failures = 1");
    std::fs::write(&config, text).unwrap();
    let e = Engine::start_with(EngineOpts { config, ..Default::default() });
    let port = free_udp_ports(1)[0];
    // Registered from a port nobody listens on afterwards: its OPTIONS
    // meet ICMP port unreachable.
    sipp_register_agent(&e, "alice", "alice-pass", port);
    let a = wait_status(&e, "alice", "unreachable", Duration::from_secs(10));
    assert_eq!(a["registrations"][0]["reachable"], false, "{a}");
    let (_, listed) = e.http_get("/v1/agents?status=unreachable");
    assert!(listed.contains("\"alice\""), "{listed}");
    // Something answers OPTIONS on that contact again: back to available.
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| answer_options(port, &stop));
        let a = wait_status(&e, "alice", "available", Duration::from_secs(10));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(a["registrations"][0]["reachable"], true, "{a}");
    });
}

/// A phone that answers every OPTIONS with 200 on 127.0.0.1:`port`, until
/// `stop` (or 20 s at most).
fn answer_options(port: u16, stop: &std::sync::atomic::AtomicBool) {
    let sock = std::net::UdpSocket::bind(("127.0.0.1", port)).expect("bind the phone's port");
    sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) && std::time::Instant::now() < deadline {
        let Ok((n, from)) = sock.recv_from(&mut buf) else { continue };
        let Some(m) = Msg::parse(&buf[..n]) else { continue };
        if !m.first_line().starts_with("OPTIONS ") {
            continue;
        }
        let mut resp = String::from("SIP/2.0 200 OK\r\n");
        for h in ["Via", "From", "To", "Call-ID", "CSeq"] {
            for v in m.headers(h) {
                resp.push_str(&format!("{h}: {v}\r\n"));
            }
        }
        resp.push_str("Content-Length: 0\r\n\r\n");
        let _ = sock.send_to(resp.as_bytes(), from);
    }
}
