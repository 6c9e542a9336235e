//! End-to-end: what an operator does to live calls and agents, on the
//! real binary with SIPp. A waiting caller and a bridged call hung up over
//! the API (both legs get their final response or BYE, the CDR and the
//! queue log say `operator-hangup`, the event stream says so too), queue
//! counter events after a call, and a logout during a call that takes
//! effect when the call ends.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One HTTP/1.1 exchange (Connection: close); the JSON body, if any.
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let b = body.unwrap_or("");
    req.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
        b.len()
    ));
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut chunk = [0u8; 16384];
    while Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, raw) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let raw = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(raw)
    } else {
        raw.to_string()
    };
    let v = serde_json::from_str(&raw).unwrap_or(serde_json::Value::Null);
    (code, v)
}

const ADMIN: Option<&str> = Some(DEMO_ADMIN_TOKEN);
const VIEWER: Option<&str> = Some(DEMO_VIEWER_TOKEN);

#[derive(Debug)]
struct Sse {
    id: Option<u64>,
    event: String,
    data: serde_json::Value,
}

/// An open `GET /v1/events`.
struct Stream {
    s: TcpStream,
    text: String,
}

impl Stream {
    fn open(addr: SocketAddr, token: &str, extra: &str, query: &str) -> Stream {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let req = format!(
            "GET /v1/events{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n{extra}\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut st = Stream { s, text: String::new() };
        // The greeting says the server has placed this reader.
        st.fill_until(|t| t.contains(": cc-engine events after"));
        assert!(st.text.starts_with("HTTP/1.1 200"), "{}", st.text);
        st
    }

    fn fill_until(&mut self, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut chunk = [0u8; 16384];
        while !done(&self.text) && Instant::now() < deadline {
            match self.s.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.text.push_str(&String::from_utf8_lossy(&chunk[..n])),
                Err(_) => {}
            }
        }
    }

}

/// The events in a raw chunked SSE response (chunk-size lines skipped:
/// every chunk the server writes holds whole events).
fn parse_sse(raw: &str) -> Vec<Sse> {
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let mut out = Vec::new();
    let (mut id, mut event, mut data) = (None, None::<String>, None::<String>);
    for line in body.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(v) = line.strip_prefix("id: ") {
            id = v.parse().ok();
        } else if let Some(v) = line.strip_prefix("event: ") {
            event = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("data: ") {
            data = Some(v.to_string());
        } else if line.is_empty() {
            if let (Some(e), Some(d)) = (event.take(), data.take()) {
                out.push(Sse { id: id.take(), event: e, data: serde_json::from_str(&d).unwrap() });
            }
            id = None;
        }
    }
    out
}


const QUEUES: &str = r#"
[[queue]]
name = "support"
answer = "immediate"
wrap_up_s = 0

[[queue]]
name = "hold"
answer = "on-agent"

[[agent]]
id = "alice"
password = "alice-pass"
queues = ["support"]
"#;

/// The one live call of `queue` in `state`, once it shows.
fn live_call(e: &Engine, queue: &str, state: &str) -> serde_json::Value {
    let m = e.mgmt_addr();
    poll(Duration::from_secs(10), || {
        let (code, body) = call(m, "GET", &format!("/v1/calls?queue={queue}&state={state}"), VIEWER, None);
        let list = body["calls"].as_array().cloned().unwrap_or_default();
        (code == 200 && list.len() == 1).then(|| list[0].clone())
    })
    .unwrap_or_else(|| panic!("no {state} call in {queue}\n{}", e.log_tail(4000)))
}

fn queue_log(m: SocketAddr) -> Vec<String> {
    let (code, v) = call(m, "GET", "/v1/queue-log?since=0", VIEWER, None);
    assert_eq!(code, 200, "{v}");
    v["lines"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect()
}

#[test]
fn an_operator_hangs_up_a_waiting_caller_and_a_bridged_call() {
    let (mut e, _cfg) = start_calls_engine(QUEUES);
    let m = e.mgmt_addr();
    let mut live = Stream::open(m, DEMO_VIEWER_TOKEN, "", "");

    // Refused before anything reaches the routing shard, or by it.
    let path = "/v1/calls/0-999999/hangup";
    assert_eq!(call(m, "POST", path, None, None).0, 401);
    assert_eq!(call(m, "POST", path, VIEWER, None).0, 403);
    let (code, v) = call(m, "POST", path, ADMIN, Some(r#"{"status": 200}"#));
    assert_eq!((code, v["field"].as_str()), (400, Some("status")), "{v}");
    let (code, v) = call(m, "POST", path, ADMIN, Some(r#"{"cause": 1}"#));
    assert_eq!((code, v["field"].as_str()), (400, Some("cause")), "{v}");
    assert_eq!(call(m, "POST", path, ADMIN, None).0, 404);
    assert_eq!(call(m, "POST", "/v1/calls/not-a-call/hangup", ADMIN, None).0, 404);

    // A caller waiting unanswered (nobody serves "hold"): the final
    // response to its INVITE is the operator's 480.
    let port = free_udp_port();
    let (waiting, run) = std::thread::scope(|s| {
        let h = s.spawn(|| sipp_on(&e, "customer_wait_refused.xml", port, &["-s", "hold", "-m", "1"], Duration::from_secs(30)));
        let c = live_call(&e, "hold", "waiting");
        let id = c["id"].as_str().unwrap().to_string();
        let (code, v) = call(m, "POST", &format!("/v1/calls/{id}/hangup"), ADMIN, Some(r#"{"status": 480}"#));
        assert_eq!((code, v["state"].as_str()), (200, Some("waiting")), "{v}");
        (id, h.join().unwrap())
    });
    assert!(run.ok(), "the caller must get 480\n{}\n{}", run.describe(), e.log_tail(3000));
    assert_eq!(count_sip(&run.messages, "480"), 1, "{}", run.messages);
    assert_eq!(count_sip(&run.messages, "200"), 0, "{}", run.messages);
    // It has ended: asking again is a conflict.
    let (code, v) = call(m, "POST", &format!("/v1/calls/{waiting}/hangup"), ADMIN, None);
    assert_eq!(code, 409, "{v}");

    // A bridged call: both the caller and the agent get a BYE.
    let agent_port = free_udp_port();
    sipp_register_agent(&e, "alice", "alice-pass", agent_port);
    let alice = SippUa::spawn(&e, "alice", "agent_answer.xml", agent_port, &[]);
    let port = free_udp_port();
    let (bridged, run) = std::thread::scope(|s| {
        let h = s.spawn(|| sipp_on(&e, "customer_wait_bye.xml", port, &["-s", "support", "-m", "1"], Duration::from_secs(30)));
        let c = live_call(&e, "support", "talking");
        assert_eq!(c["agent"], "alice", "{c}");
        let id = c["id"].as_str().unwrap().to_string();
        let (code, v) = call(m, "POST", &format!("/v1/calls/{id}/hangup"), ADMIN, None);
        assert_eq!((code, v["state"].as_str()), (200, Some("talking")), "{v}");
        (id, h.join().unwrap())
    });
    assert!(run.ok(), "the caller must get the engine's BYE\n{}\n{}", run.describe(), e.log_tail(3000));
    assert!(
        alice.wait_count("BYE", 1, Duration::from_secs(5)),
        "the agent must get the engine's BYE\n{}\n{}",
        alice.describe(),
        e.log_tail(3000)
    );
    assert!(e.wait_no_calls(Duration::from_secs(10)).is_ok(), "{}", e.log_tail(3000));
    // The bridged call's set-up is in the INVITE → agent INVITE histogram
    // (the caller refused while waiting never reached an agent).
    let m_text = e.metrics();
    assert_eq!(m_text.get("cc_call_invite_to_agent_seconds_count", &[]), Some(1.0), "{}", m_text.0);
    assert!(m_text.get("cc_queue_counter_events_total", &[]).unwrap_or(0.0) >= 1.0, "{}", m_text.0);

    // The CDRs, while the engine runs.
    let cdrs = poll(Duration::from_secs(5), || {
        let (_, v) = call(m, "GET", "/v1/cdrs?since=0", VIEWER, None);
        let c = v["cdrs"].as_array().cloned().unwrap_or_default();
        (c.len() == 2).then_some(c)
    })
    .expect("two CDRs");
    let of = |id: &str| cdrs.iter().find(|c| c["call_id"] == id).unwrap_or_else(|| panic!("{id}: {cdrs:?}")).clone();
    let (w, b) = (of(&waiting), of(&bridged));
    assert_eq!((w["disposition"].as_str(), w["reason"].as_str()), (Some("failed"), Some("operator-hangup")), "{w}");
    assert_eq!((b["disposition"].as_str(), b["reason"].as_str()), (Some("answered"), Some("operator-hangup")), "{b}");
    assert_eq!(b["agent"], "alice", "{b}");

    // The queue log: our own event, never an abandon or a completion.
    let lines = queue_log(m);
    let ops: Vec<&String> = lines.iter().filter(|l| l.contains("|OPERATORHANGUP|")).collect();
    assert_eq!(ops.len(), 2, "{lines:?}");
    assert!(ops.iter().any(|l| l.contains("|hold|NONE|OPERATORHANGUP|") && l.ends_with("|waiting")), "{ops:?}");
    assert!(ops.iter().any(|l| l.contains("|support|alice|OPERATORHANGUP|") && l.ends_with("|talking")), "{ops:?}");
    assert!(!lines.iter().any(|l| l.contains("|ABANDON|") || l.contains("|COMPLETE")), "{lines:?}");

    // The event stream: each call ended with that reason, and the queue's
    // counters (coalesced, so the last one may come a second later).
    live.fill_until(|t| {
        let ev = parse_sse(t);
        ev.iter().filter(|e| e.event == "call-ended" && e.data["reason"] == "operator-hangup").count() >= 2
            && ev.iter().any(|e| e.event == "queue-counters" && e.data["queue"] == "support" && e.data["total"]["answered"] == 1)
    });
    let ev = parse_sse(&live.text);
    let ended: Vec<_> = ev.iter().filter(|e| e.event == "call-ended").map(|e| e.data.clone()).collect();
    for id in [&waiting, &bridged] {
        assert!(ended.iter().any(|d| d["call"] == id.as_str() && d["reason"] == "operator-hangup"), "{id}: {ended:?}");
    }
    let counters: Vec<_> = ev.iter().filter(|e| e.event == "queue-counters" && e.data["queue"] == "support").collect();
    let last = counters.last().unwrap_or_else(|| panic!("no queue-counters event: {ev:?}"));
    assert_eq!((last.data["total"]["offered"].as_u64(), last.data["total"]["answered"].as_u64()), (Some(1), Some(1)), "{:?}", last.data);
    assert!(last.data["service_level_s"].as_u64().is_some(), "{:?}", last.data);
    // Coalesced: far fewer events than counter changes (offered,
    // answered, talk time, per call).
    assert!(counters.len() <= 3, "{counters:?}");
    drop(alice);
    let _ = e.terminate(Duration::from_secs(10));
}

#[test]
fn a_logout_during_a_call_takes_effect_when_the_call_ends() {
    let (mut e, _cfg) = start_calls_engine(QUEUES);
    let m = e.mgmt_addr();
    let mut live = Stream::open(m, DEMO_VIEWER_TOKEN, "", "");
    let agent_port = free_udp_port();
    sipp_register_agent(&e, "alice", "alice-pass", agent_port);
    // The agent hangs up 3 s after answering.
    let alice = SippUa::spawn(&e, "alice", "agent_hangup.xml", agent_port, &["-d", "3000"]);
    let port = free_udp_port();
    let run = std::thread::scope(|s| {
        let h = s.spawn(|| sipp_on(&e, "customer_wait_bye.xml", port, &["-s", "support", "-m", "1"], Duration::from_secs(30)));
        live_call(&e, "support", "talking");
        let (code, v) = call(m, "POST", "/v1/agents/alice/logout", ADMIN, None);
        assert_eq!(code, 200, "{v}");
        // Asked, not yet effective: no AGENTLOGOFF while the call lasts.
        std::thread::sleep(Duration::from_millis(500));
        assert!(!queue_log(m).iter().any(|l| l.contains("|alice|AGENTLOGOFF|")), "{:?}", queue_log(m));
        let (_, a) = call(m, "GET", "/v1/agents/alice", VIEWER, None);
        assert_eq!(a["status"], "busy", "{a}");
        h.join().unwrap()
    });
    assert!(run.ok(), "{}\n{}", run.describe(), e.log_tail(3000));
    let cdr = poll(Duration::from_secs(5), || {
        let (_, v) = call(m, "GET", "/v1/cdrs?since=0", VIEWER, None);
        v["cdrs"].as_array().and_then(|c| c.first().cloned())
    })
    .expect("the call's CDR");
    let logoff = poll(Duration::from_secs(5), || queue_log(m).into_iter().find(|l| l.contains("|alice|AGENTLOGOFF|")))
        .unwrap_or_else(|| panic!("no AGENTLOGOFF after the call\n{:?}", queue_log(m)));
    let at: u64 = logoff.split('|').next().unwrap().parse().unwrap();
    let ended_s = cdr["ended_ms"].as_u64().unwrap() / 1000;
    assert!(at >= ended_s, "AGENTLOGOFF at {at}, before the call ended at {ended_s}: {logoff}");
    let (_, a) = call(m, "GET", "/v1/agents/alice", VIEWER, None);
    assert_eq!(a["status"], "logged-out", "{a}");
    // The event stream says both, in order.
    live.fill_until(|t| parse_sse(t).iter().any(|e| e.data["status"] == "logged-out"));
    let statuses: Vec<(u64, String)> = parse_sse(&live.text)
        .iter()
        .filter(|e| e.event == "agent-status" && e.data["agent"] == "alice")
        .filter_map(|e| Some((e.id?, e.data["status"].as_str()?.to_string())))
        .filter(|(_, s)| s.starts_with("log"))
        .collect();
    let names: Vec<&str> = statuses.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(names, ["logout-requested", "logged-out"], "{}", live.text);
    assert!(statuses[0].0 < statuses[1].0, "{statuses:?}");
    drop(alice);
    let _ = e.terminate(Duration::from_secs(10));
}
