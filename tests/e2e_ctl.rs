//! End-to-end: the operator's routes that act, on the real binary. Each
//! goes from the HTTP thread to the routing shard and back; success, 401,
//! 403, 400 naming the field, 404 and 409, and a pause / unpause round
//! trip seen in `/v1/agents`.

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

fn agent(addr: SocketAddr, id: &str) -> serde_json::Value {
    let (code, v) = call(addr, "GET", &format!("/v1/agents/{id}"), VIEWER, None);
    assert_eq!(code, 200, "{v}");
    v
}

#[test]
fn pause_and_unpause_through_the_routing_shard() {
    let e = Engine::start();
    let m = e.mgmt_addr();

    // Refused before any command reaches the shard.
    for path in ["/v1/agents/alice/pause", "/v1/agents/alice/unpause"] {
        assert_eq!(call(m, "POST", path, None, Some("{}")).0, 401, "{path}");
        assert_eq!(
            call(m, "POST", path, Some("wrong"), Some("{}")).0,
            401,
            "{path}"
        );
        let (code, v) = call(m, "POST", path, VIEWER, Some("{}"));
        assert_eq!(code, 403, "{path}: {v}");
        assert!(v["error"].is_string(), "{v}");
    }
    let (code, v) = call(
        m,
        "POST",
        "/v1/agents/alice/pause",
        ADMIN,
        Some(r#"{"reason": 5}"#),
    );
    assert_eq!((code, v["field"].as_str()), (400, Some("reason")), "{v}");
    let (code, v) = call(
        m,
        "POST",
        "/v1/agents/alice/pause",
        ADMIN,
        Some(r#"{"why": "x"}"#),
    );
    assert_eq!((code, v["field"].as_str()), (400, Some("why")), "{v}");
    let (code, v) = call(m, "POST", "/v1/agents/alice/pause", ADMIN, Some("not json"));
    assert_eq!((code, v["field"].as_str()), (400, Some("reason")), "{v}");
    let (code, v) = call(m, "POST", "/v1/agents/nobody/pause", ADMIN, Some("{}"));
    assert_eq!((code, v["field"].as_str()), (404, Some("id")), "{v}");
    let (code, v) = call(m, "POST", "/v1/agents/nobody/unpause", ADMIN, None);
    assert_eq!(code, 404, "{v}");

    // Not paused: unpause is impossible, and says why.
    let (code, v) = call(m, "POST", "/v1/agents/alice/unpause", ADMIN, None);
    assert_eq!(code, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("not paused"), "{v}");

    let (code, v) = call(
        m,
        "POST",
        "/v1/agents/alice/pause",
        ADMIN,
        Some(r#"{"reason": "lunch break"}"#),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "paused", "{v}");
    assert_eq!(v["paused_reason"], "lunch break", "{v}");
    // The snapshot the viewers read shows it too (published within a tick).
    let a = agent(m, "alice");
    assert_eq!(
        (a["status"].as_str(), a["paused_reason"].as_str()),
        (Some("paused"), Some("lunch break")),
        "{a}"
    );
    assert_ne!(agent(m, "bob")["status"], "paused");

    let (code, v) = call(m, "POST", "/v1/agents/alice/unpause", ADMIN, Some(""));
    assert_eq!(code, 200, "{v}");
    assert_ne!(v["status"], "paused", "{v}");
    let a = agent(m, "alice");
    assert_ne!(a["status"], "paused", "{a}");
    assert!(a["paused_reason"].is_null(), "{a}");
}

/// One SSE event as read off the wire.
#[derive(Debug, Clone)]
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

    /// Reads until `n` events (not counting comments) have arrived.
    fn events(&mut self, n: usize) -> Vec<Sse> {
        self.fill_until(|t| parse_sse(t).len() >= n);
        parse_sse(&self.text)
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

fn act(m: SocketAddr, path: &str, body: &str) {
    let (code, v) = call(m, "POST", path, ADMIN, Some(body));
    assert_eq!(code, 200, "{path}: {v}");
}

#[test]
fn the_event_stream_numbers_events_and_replays_what_a_reconnecting_client_missed() {
    let dir = TempDir::new("ctl-events");
    let cfg = derived_config(dir.path(), "mgmt", "event_buffer", "8");
    let e = Engine::start_with(EngineOpts { config: cfg, ..EngineOpts::default() });
    let m = e.mgmt_addr();

    assert_eq!(call(m, "GET", "/v1/events", None, None).0, 401);
    let (code, v) = call(m, "GET", "/v1/events?since=abc", VIEWER, None);
    assert_eq!((code, v["field"].as_str()), (400, Some("since")), "{v}");
    let (code, v) = call(m, "GET", "/v1/events?from=1", VIEWER, None);
    assert_eq!(code, 400, "{v}");

    let mut live = Stream::open(m, DEMO_VIEWER_TOKEN, "", "");
    act(m, "/v1/agents/alice/pause", r#"{"reason": "coffee"}"#);
    act(m, "/v1/agents/alice/unpause", "");
    let got = live.events(2);
    let status: Vec<_> = got.iter().filter(|e| e.event == "agent-status").collect();
    assert_eq!(status.len(), 2, "{got:?}");
    assert_eq!(status[0].data["agent"], "alice");
    assert_eq!(status[0].data["status"], "paused");
    assert_eq!(status[0].data["reason"], "coffee");
    assert_eq!(status[1].data["status"], "unpaused");
    let last = got.last().unwrap().id.unwrap();
    assert_eq!(status[0].data["seq"].as_u64(), status[0].id);
    drop(live);

    // Missed while away: replayed once, in order, after the last id.
    act(m, "/v1/agents/bob/pause", r#"{"reason": "meeting"}"#);
    act(m, "/v1/agents/bob/unpause", "");
    act(m, "/v1/agents/alice/pause", r#"{"reason": "training"}"#);
    let mut back = Stream::open(m, DEMO_VIEWER_TOKEN, &format!("Last-Event-ID: {last}\r\n"), "");
    let got = back.events(3);
    let ids: Vec<u64> = got.iter().map(|e| e.id.unwrap()).collect();
    assert_eq!(ids, [last + 1, last + 2, last + 3], "{got:?}");
    assert_eq!((got[0].data["agent"].as_str(), got[0].data["reason"].as_str()), (Some("bob"), Some("meeting")));
    assert_eq!(got[1].data["status"], "unpaused");
    assert_eq!((got[2].data["agent"].as_str(), got[2].data["reason"].as_str()), (Some("alice"), Some("training")));
    // Nothing is sent twice: a new event follows directly.
    act(m, "/v1/agents/alice/unpause", "");
    let got = back.events(4);
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[3].id, Some(last + 4));
    drop(back);
    // ?since= does the same as the header.
    let mut q = Stream::open(m, DEMO_VIEWER_TOKEN, "", &format!("?since={}", last + 2));
    let got = q.events(2);
    assert_eq!(got.iter().map(|e| e.id.unwrap()).collect::<Vec<_>>(), [last + 3, last + 4]);
    drop(q);

    // More than the ring holds (8) since `last`: an explicit gap first.
    for _ in 0..5 {
        act(m, "/v1/agents/bob/pause", r#"{"reason": "x"}"#);
        act(m, "/v1/agents/bob/unpause", "");
    }
    let mut old = Stream::open(m, DEMO_VIEWER_TOKEN, &format!("Last-Event-ID: {last}\r\n"), "");
    let got = old.events(9);
    assert_eq!(got[0].event, "gap", "{got:?}");
    assert!(got[0].id.is_none());
    let first = got[0].data["first"].as_u64().unwrap();
    assert!(first > last + 1, "{got:?}");
    let ids: Vec<u64> = got[1..].iter().map(|e| e.id.unwrap()).collect();
    assert_eq!(ids, (first..first + 8).collect::<Vec<_>>(), "{got:?}");
}

#[test]
fn logout_and_login_show_in_the_agents_list_and_the_event_stream_and_survive_a_restart() {
    let mut e = Engine::start();
    let m = e.mgmt_addr();
    for path in ["/v1/agents/bob/logout", "/v1/agents/bob/login"] {
        assert_eq!(call(m, "POST", path, None, None).0, 401, "{path}");
        assert_eq!(call(m, "POST", path, VIEWER, None).0, 403, "{path}");
        let (code, v) = call(m, "POST", path, ADMIN, Some(r#"{"now": true}"#));
        assert_eq!((code, v["field"].as_str()), (400, Some("now")), "{path}: {v}");
        assert_eq!(call(m, "POST", &path.replace("bob", "nobody"), ADMIN, None).0, 404, "{path}");
    }
    let (code, v) = call(m, "POST", "/v1/agents/bob/login", ADMIN, None);
    assert_eq!(code, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("not logged out"), "{v}");

    let mut live = Stream::open(m, DEMO_VIEWER_TOKEN, "", "");
    act(m, "/v1/agents/bob/logout", "");
    let (code, v) = call(m, "POST", "/v1/agents/bob/logout", ADMIN, None);
    assert_eq!(code, 409, "{v}");
    assert_eq!(agent(m, "bob")["status"], "logged-out");
    let (code, v) = call(m, "GET", "/v1/agents?status=logged-out", VIEWER, None);
    assert_eq!(code, 200);
    let ids: Vec<_> = v["agents"].as_array().unwrap().iter().map(|a| a["id"].clone()).collect();
    assert_eq!(ids, [serde_json::json!("bob")], "{v}");
    let got = live.events(1);
    assert_eq!((got[0].data["agent"].as_str(), got[0].data["status"].as_str()), (Some("bob"), Some("logged-out")));
    drop(live);

    // Persisted: still logged out after a restart.
    e.terminate(Duration::from_secs(10)).expect("engine stops on SIGTERM");
    e.spawn();
    let m = e.mgmt_addr();
    assert_eq!(agent(m, "bob")["status"], "logged-out");
    act(m, "/v1/agents/bob/login", "");
    assert_ne!(agent(m, "bob")["status"], "logged-out");
}

#[test]
fn the_queue_log_is_readable_over_the_api_while_the_engine_runs() {
    let e = Engine::start();
    let m = e.mgmt_addr();
    assert_eq!(call(m, "GET", "/v1/queue-log", None, None).0, 401);
    let (code, v) = call(m, "GET", "/v1/queue-log?since=yesterday", VIEWER, None);
    assert_eq!((code, v["field"].as_str()), (400, Some("since")), "{v}");
    let (code, v) = call(m, "GET", "/v1/queue-log?limit=0", VIEWER, None);
    assert_eq!((code, v["field"].as_str()), (400, Some("limit")), "{v}");

    act(m, "/v1/agents/alice/pause", r#"{"reason": "lunch break"}"#);
    act(m, "/v1/agents/alice/unpause", "");
    act(m, "/v1/agents/bob/logout", "");
    // Written by the next group commit (a few ms later).
    let entries = poll(Duration::from_secs(5), || {
        let (code, v) = call(m, "GET", "/v1/queue-log?since=0", VIEWER, None);
        assert_eq!(code, 200, "{v}");
        let e = v["entries"].as_array().unwrap().clone();
        (e.iter().filter(|x| x["queue"] == "NONE").count() >= 3).then_some((e, v))
    })
    .expect("the three agent lines in the queue log");
    let (entries, v) = entries;
    let agent_lines: Vec<_> = entries.iter().filter(|x| x["queue"] == "NONE").collect();
    let got: Vec<(&str, &str, &str)> = agent_lines
        .iter()
        .map(|x| (x["agent"].as_str().unwrap(), x["event"].as_str().unwrap(), x["data"][0].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        got,
        [("alice", "PAUSE", "lunch break"), ("alice", "UNPAUSE", "lunch break"), ("bob", "AGENTLOGOFF", "")],
        "{v}"
    );
    let line = v["lines"].as_array().unwrap().iter().find(|l| l.as_str().unwrap().contains("|PAUSE|")).unwrap();
    let f: Vec<&str> = line.as_str().unwrap().split('|').collect();
    assert!(f[0].parse::<u64>().unwrap() > 1_700_000_000, "{line}");
    assert_eq!(&f[1..6], ["NONE", "NONE", "alice", "PAUSE", "lunch break"], "{line}");
    let (code, v) = call(m, "GET", "/v1/queue-log?since=0&limit=1", VIEWER, None);
    assert_eq!((code, v["lines"].as_array().unwrap().len()), (200, 1), "{v}");
}

#[test]
fn cdrs_are_paged_over_the_api_while_the_engine_runs() {
    let (e, _cfg) = start_calls_engine(
        r#"
[[queue]]
name = "support"
answer = "immediate"
wrap_up_s = 0

[[queue]]
name = "sales"
answer = "immediate"
wrap_up_s = 0

[[agent]]
id = "alice"
password = "alice-pass"
queues = ["support", "sales"]
"#,
    );
    let m = e.mgmt_addr();
    assert_eq!(call(m, "GET", "/v1/cdrs", None, None).0, 401);
    for (q, field) in [("since=soon", "since"), ("until=x", "until"), ("limit=0", "limit"), ("cursor=abc", "cursor")] {
        let (code, v) = call(m, "GET", &format!("/v1/cdrs?{q}"), VIEWER, None);
        assert_eq!((code, v["field"].as_str()), (400, Some(field)), "{q}: {v}");
    }
    // No agent logged in: three callers wait and hang up (abandoned).
    for q in ["support", "support", "sales"] {
        let run = sipp_on(&e, "customer_call.xml", free_udp_port(), &["-s", q, "-m", "1", "-d", "500"], Duration::from_secs(30));
        assert!(run.ok(), "{}", run.describe());
    }
    let all = poll(Duration::from_secs(5), || {
        let (code, v) = call(m, "GET", "/v1/cdrs?since=0", VIEWER, None);
        assert_eq!(code, 200, "{v}");
        (v["cdrs"].as_array().unwrap().len() == 3).then_some(v)
    })
    .expect("three CDRs while the engine runs");
    assert!(all.get("next_cursor").is_none(), "{all}");
    assert!(all["cdrs"].as_array().unwrap().iter().all(|c| c["disposition"] == "abandoned"), "{all}");

    let (_, v) = call(m, "GET", "/v1/cdrs?queue=support", VIEWER, None);
    assert_eq!(v["cdrs"].as_array().unwrap().len(), 2, "{v}");
    let (_, v) = call(m, "GET", "/v1/cdrs?agent=alice", VIEWER, None);
    assert_eq!(v["cdrs"].as_array().unwrap().len(), 0, "{v}");
    let (_, v) = call(m, "GET", "/v1/cdrs?until=1000000000", VIEWER, None);
    assert_eq!(v["cdrs"].as_array().unwrap().len(), 0, "{v}");

    // Pages of two: every CDR once, in order.
    let (_, p1) = call(m, "GET", "/v1/cdrs?limit=2", VIEWER, None);
    let cursor = p1["next_cursor"].as_str().expect("a second page").to_string();
    let (_, p2) = call(m, "GET", &format!("/v1/cdrs?limit=2&cursor={cursor}"), VIEWER, None);
    assert!(p2.get("next_cursor").is_none(), "{p2}");
    let ids: Vec<_> = p1["cdrs"].as_array().unwrap().iter().chain(p2["cdrs"].as_array().unwrap()).map(|c| c["call_id"].clone()).collect();
    let want: Vec<_> = all["cdrs"].as_array().unwrap().iter().map(|c| c["call_id"].clone()).collect();
    assert_eq!(ids, want);

    // The command line reads the same through the API while the engine runs.
    let url = format!("http://{m}");
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(engine_bin()).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let json = cli(&["cdrs", "--mgmt", &url, "--token", DEMO_VIEWER_TOKEN]);
    let got: Vec<serde_json::Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(got.iter().map(|c| c["call_id"].clone()).collect::<Vec<_>>(), want, "{json}");
    let csv = cli(&["cdrs", "--mgmt", &url, "--token", DEMO_VIEWER_TOKEN, "--csv"]);
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("call_id,sip_call_id,queue,"), "{csv}");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 3, "{csv}");
    assert!(rows.iter().all(|r| r.contains(",abandoned,")), "{csv}");
    let qlog = cli(&["queue-log", "--mgmt", &url, "--token", DEMO_VIEWER_TOKEN]);
    let enter: Vec<&str> = qlog.lines().filter(|l| l.split('|').nth(4) == Some("ENTERQUEUE")).collect();
    assert_eq!(enter.len(), 3, "{qlog}");
    assert!(qlog.lines().all(|l| l.split('|').count() >= 5 && l.split('|').next().unwrap().parse::<u64>().is_ok()), "{qlog}");
    // A wrong token is an error naming the status.
    let out = std::process::Command::new(engine_bin()).args(["queue-log", "--mgmt", &url, "--token", "nope"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn live_calls_are_listed_with_their_queue_caller_and_state() {
    let (e, _cfg) = start_calls_engine(
        r#"
[[queue]]
name = "support"
answer = "immediate"
wrap_up_s = 0

[[agent]]
id = "alice"
password = "alice-pass"
queues = ["support"]
"#,
    );
    let m = e.mgmt_addr();
    assert_eq!(call(m, "GET", "/v1/calls", None, None).0, 401);
    let (code, body) = call(m, "GET", "/v1/calls", VIEWER, None);
    assert_eq!((code, body["calls"].as_array().map(Vec::len)), (200, Some(0)), "{body}");
    let (code, body) = call(m, "GET", "/v1/calls?state=dancing", VIEWER, None);
    assert_eq!((code, body["field"].as_str()), (400, Some("state")), "{body}");
    let (code, body) = call(m, "GET", "/v1/calls?colour=red", VIEWER, None);
    assert_eq!(code, 400, "{body}");
    // Nobody is logged in: the caller waits (answered, hold audio) for 3 s.
    let port = free_udp_port();
    let caller = std::thread::scope(|s| {
        let h = s.spawn(|| sipp_on(&e, "customer_call.xml", port, &["-s", "support", "-m", "1", "-d", "3000"], Duration::from_secs(30)));
        let seen = poll(Duration::from_secs(10), || {
            let (code, body) = call(m, "GET", "/v1/calls?queue=support&state=waiting", VIEWER, None);
            let list = body["calls"].as_array().cloned().unwrap_or_default();
            (code == 200 && list.len() == 1).then(|| list[0].clone())
        });
        let run = h.join().unwrap();
        (seen, run)
    });
    let (seen, run) = caller;
    assert!(run.ok(), "{}", run.describe());
    let c = seen.unwrap_or_else(|| panic!("the waiting call never showed in /v1/calls\n{}", e.log_tail(3000)));
    assert_eq!(c["queue"], "support", "{c}");
    assert_eq!(c["state"], "waiting", "{c}");
    assert!(c["agent"].is_null(), "{c}");
    assert!(c["caller"].as_str().is_some_and(|s| s.starts_with("sip:")), "{c}");
    assert!(c["sip_call_id"].as_str().is_some_and(|s| !s.is_empty()), "{c}");
    // Filters that match nothing.
    let (_, body) = call(m, "GET", "/v1/calls?agent=alice", VIEWER, None);
    assert!(body["calls"].as_array().is_some_and(|a| a.is_empty()), "{body}");
    assert!(e.wait_no_calls(Duration::from_secs(10)).is_ok());
    let (_, body) = call(m, "GET", "/v1/calls", VIEWER, None);
    assert!(body["calls"].as_array().is_some_and(|a| a.is_empty()), "{body}");
}
