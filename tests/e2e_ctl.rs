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
