//! End-to-end: the management plane of the real binary. Every route with
//! and without a token, roles, bad input, unknown ids, `/metrics` through a
//! real Prometheus text parser, the open-metrics switch, HTTPS with a
//! self-signed certificate made here, many clients at once, and config
//! errors about tokens naming the key.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One HTTP/1.1 exchange (Connection: close) over any stream.
struct Reply {
    code: u16,
    head: String,
    body: String,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.code, self.body))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

fn exchange<S: Read + Write>(s: &mut S, method: &str, path: &str, token: Option<&str>, body: Option<&[u8]>) -> Reply {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    if let Some(b) = body {
        // A refused body may be cut off by the server: that is its answer.
        let _ = s.write_all(b);
    }
    let _ = s.flush();
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut chunk = [0u8; 16384];
    while Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => break,
            // A reset after the answer (the server closed with unread body).
            Err(_) if !buf.is_empty() => break,
            Err(e) => panic!("read {method} {path}: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, raw) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let body = if chunked { dechunk(raw) } else { raw.to_string() };
    Reply { code, head: head.to_string(), body }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: Option<&[u8]>) -> Reply {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    exchange(&mut s, method, path, token, body)
}

const ADMIN: Option<&str> = Some(DEMO_ADMIN_TOKEN);
const VIEWER: Option<&str> = Some(DEMO_VIEWER_TOKEN);

/// Every read route: 401 without a token or with a wrong one (with the
/// Bearer challenge), 200 for a viewer.
const READ_ROUTES: [&str; 10] = [
    "/metrics",
    "/health",
    "/agents",
    "/queues",
    "/v1/agents",
    "/v1/agents/alice",
    "/v1/queues",
    "/v1/queues/support",
    "/v1/log-level",
    "/v1/openapi.json",
];

#[test]
fn every_route_needs_a_token_and_a_viewer_may_only_read() {
    let e = Engine::start();
    let a = e.mgmt_addr();
    for path in READ_ROUTES {
        let r = http(a, "GET", path, None, None);
        assert_eq!(r.code, 401, "GET {path} without a token: {} {}", r.head, r.body);
        assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")), "{path}: {}", r.head);
        assert!(r.json()["error"].is_string(), "{path}: {}", r.body);
        let r = http(a, "GET", path, Some("not-a-configured-token-at-all"), None);
        assert_eq!(r.code, 401, "GET {path} with a wrong token: {}", r.body);
        assert!(r.header("www-authenticate").is_some_and(|v| v.contains("invalid_token")), "{}", r.head);
        let r = http(a, "GET", path, VIEWER, None);
        assert_eq!(r.code, 200, "GET {path} as viewer: {}", r.body);
        let r = http(a, "GET", path, ADMIN, None);
        assert_eq!(r.code, 200, "GET {path} as admin: {}", r.body);
    }
    // Unknown routes are not revealed without a token.
    assert_eq!(http(a, "GET", "/v1/nothing-here", None, None).code, 401);

    // A viewer acting: 403; the admin may.
    let body = br#"{"level":"info"}"#;
    let r = http(a, "PUT", "/v1/log-level", VIEWER, Some(body));
    assert_eq!(r.code, 403, "{}", r.body);
    assert!(r.json()["error"].as_str().unwrap().contains("viewer"), "{}", r.body);
    assert_eq!(http(a, "PUT", "/v1/log-level", None, Some(body)).code, 401);
    let r = http(a, "PUT", "/v1/log-level", ADMIN, Some(br#"{"level":"info,cc_engine=debug"}"#));
    assert_eq!(r.code, 200, "{}", r.body);
    let r = http(a, "GET", "/v1/log-level", VIEWER, None);
    assert_eq!(r.json()["level"], "info,cc_engine=debug", "{}", r.body);
    let r = http(a, "PUT", "/v1/log-level", ADMIN, Some(br#"{"level":"info"}"#));
    assert_eq!(r.code, 200, "{}", r.body);

    // Failures are counted by reason and logged without the token.
    let m = e.metrics();
    assert!(m.get("cc_mgmt_auth_failures_total", &[("reason", "missing")]).unwrap_or(0.0) >= 11.0, "{}", m.0);
    assert!(m.get("cc_mgmt_auth_failures_total", &[("reason", "invalid")]).unwrap_or(0.0) >= 10.0, "{}", m.0);
    assert!(m.get("cc_mgmt_auth_failures_total", &[("reason", "forbidden")]).unwrap_or(0.0) >= 1.0, "{}", m.0);
    let log = e.log_text();
    assert!(log.contains("authentication failed"), "{}", e.log_tail(3000));
    assert!(!log.contains("not-a-configured-token-at-all"), "a token must never be logged");
    assert!(log.contains("log filter changed"), "{}", e.log_tail(3000));
}

#[test]
fn read_routes_answer_json_and_unknown_ids_404_and_bad_input_400() {
    let e = Engine::start();
    let a = e.mgmt_addr();

    let r = http(a, "GET", "/v1/agents", VIEWER, None);
    let ids: Vec<String> =
        r.json()["agents"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, ["alice", "bob"], "{}", r.body);
    let r = http(a, "GET", "/v1/agents/bob", VIEWER, None);
    let bob = r.json();
    assert_eq!(bob["id"], "bob");
    assert_eq!(bob["status"], "offline", "{}", r.body);
    assert!(bob["registrations"].as_array().unwrap().is_empty(), "{}", r.body);
    let r = http(a, "GET", "/v1/agents?status=offline", VIEWER, None);
    assert_eq!(r.json()["agents"].as_array().unwrap().len(), 2, "{}", r.body);
    let r = http(a, "GET", "/v1/agents?status=available", VIEWER, None);
    assert_eq!(r.json()["agents"].as_array().unwrap().len(), 0, "{}", r.body);

    let r = http(a, "GET", "/v1/queues", VIEWER, None);
    assert_eq!(r.json()["queues"][0]["name"], "support", "{}", r.body);
    let r = http(a, "GET", "/v1/queues/support", VIEWER, None);
    assert_eq!(r.json()["waiting"], 0, "{}", r.body);

    // Unknown ids: 404 with a JSON error naming the input.
    for (path, field) in [("/v1/agents/nobody", "id"), ("/v1/queues/nowhere", "name")] {
        let r = http(a, "GET", path, VIEWER, None);
        assert_eq!(r.code, 404, "{path}: {}", r.body);
        assert_eq!(r.json()["field"], field, "{path}: {}", r.body);
        assert!(r.json()["error"].as_str().unwrap().contains(path.rsplit('/').next().unwrap()), "{}", r.body);
    }
    let r = http(a, "GET", "/v1/nothing-here", VIEWER, None);
    assert_eq!(r.code, 404, "{}", r.body);
    assert!(r.json()["error"].is_string());

    // Bad input: 400 naming the field.
    let bad: [(&str, &str, Option<&[u8]>, &str); 6] = [
        ("GET", "/v1/agents?status=sleeping", None, "status"),
        ("GET", "/v1/agents?colour=red", None, "status"),
        ("PUT", "/v1/log-level", Some(b"{not json"), "level"),
        ("PUT", "/v1/log-level", Some(br#"{"level": 3}"#), "level"),
        ("PUT", "/v1/log-level", Some(br#"{"level": "cc_engine=loudest"}"#), "level"),
        ("PUT", "/v1/log-level", Some(br#"{"level": "info", "extra": 1}"#), "extra"),
    ];
    for (method, path, body, field) in bad {
        let r = http(a, method, path, ADMIN, body);
        assert_eq!(r.code, 400, "{method} {path} {body:?}: {}", r.body);
        assert_eq!(r.json()["field"], field, "{method} {path}: {}", r.body);
    }
    // The filter did not change on refusals.
    assert_eq!(http(a, "GET", "/v1/log-level", VIEWER, None).json()["level"], "info");

    // Bodies are bounded.
    let big = format!(r#"{{"level":"{}"}}"#, "x".repeat(100 * 1024));
    let r = http(a, "PUT", "/v1/log-level", ADMIN, Some(big.as_bytes()));
    assert_eq!(r.code, 413, "{}", r.head);
    assert!(r.json()["error"].is_string(), "{}", r.body);
    // A method a route does not have: 405, JSON too.
    let r = http(a, "POST", "/v1/agents", ADMIN, Some(b"{}"));
    assert_eq!(r.code, 405, "{}", r.head);
    assert!(r.json()["error"].is_string(), "{}", r.body);

    // /health: ok while every executor ticks.
    let r = http(a, "GET", "/health", VIEWER, None);
    assert_eq!(r.json()["status"], "ok", "{}", r.body);

    // The OpenAPI document lists every route served.
    let doc = http(a, "GET", "/v1/openapi.json", VIEWER, None).json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    for path in READ_ROUTES {
        let templ = path.replace("/alice", "/{id}").replace("/support", "/{name}");
        assert!(doc["paths"][&templ]["get"].is_object(), "openapi.json lacks GET {templ}");
    }
    assert!(doc["paths"]["/v1/log-level"]["put"].is_object());
}

#[test]
fn metrics_parse_with_help_and_type_for_every_family() {
    let e = Engine::start();
    // A registration is committed to the store: the commit histogram moves.
    let reg = register(&e, "alice", "alice-pass", Some(600), "MD5");
    assert_eq!(reg.last.as_ref().and_then(|m| m.status()), Some(200));
    let (commits, _) = e.wait_metric("cc_store_commit_seconds_count", &[], 1.0);
    assert!(commits.unwrap_or(0.0) >= 1.0, "no store commit timed");
    let body = http(e.mgmt_addr(), "GET", "/metrics", VIEWER, None);
    assert_eq!(body.code, 200);
    assert!(body.header("content-type").unwrap().starts_with("text/plain"), "{}", body.head);
    let scrape = prometheus_parse::Scrape::parse(body.body.lines().map(|l| Ok(l.to_string()))).unwrap();
    assert!(scrape.samples.len() > 10, "{}", body.body);
    let histograms: Vec<&str> = scrape
        .samples
        .iter()
        .filter(|s| matches!(s.value, prometheus_parse::Value::Histogram(_)))
        .map(|s| s.metric.as_str())
        .collect();
    assert!(histograms.contains(&"cc_store_commit_seconds"), "{}", body.body);
    for s in &scrape.samples {
        // prometheus-parse leaves a histogram's _sum and _count untyped.
        let base = s.metric.strip_suffix("_sum").or(s.metric.strip_suffix("_count"));
        if base.is_some_and(|b| histograms.contains(&b)) {
            continue;
        }
        assert!(
            !matches!(s.value, prometheus_parse::Value::Untyped(_)),
            "{} has no # TYPE:\n{}",
            s.metric,
            body.body
        );
        assert!(scrape.docs.get(&s.metric).is_some_and(|h| !h.is_empty()), "{} has no # HELP", s.metric);
    }
    // Names the tests and bench scripts read are unchanged.
    for name in ["cc_registered_contacts", "cc_store_commits_total", "cc_queue_calls", "cc_sip_requests_total"] {
        assert!(scrape.samples.iter().any(|s| s.metric == name), "{name} missing:\n{}", body.body);
    }
    // The relay's traffic, the store's running commit, and the call set-up
    // histogram (customer INVITE → agent INVITE) are families too.
    for name in ["cc_relay_packets_total", "cc_relay_bytes_total", "cc_relay_drops_total", "cc_store_commit_running_ms"] {
        assert!(scrape.samples.iter().any(|s| s.metric == name), "{name} missing:\n{}", body.body);
    }
    assert!(histograms.contains(&"cc_call_invite_to_agent_seconds"), "{}", body.body);
    let counter = scrape.samples.iter().find(|s| s.metric == "cc_store_commits_total").unwrap();
    assert!(matches!(counter.value, prometheus_parse::Value::Counter(_)), "{:?}", counter.value);
    let gauge = scrape.samples.iter().find(|s| s.metric == "cc_registered_contacts").unwrap();
    assert!(matches!(gauge.value, prometheus_parse::Value::Gauge(_)), "{:?}", gauge.value);
}

#[test]
fn open_metrics_leaves_only_metrics_and_health_open() {
    let dir = TempDir::new("open-metrics");
    let config = derived_config(dir.path(), "mgmt", "open_metrics", "true");
    let e = Engine::start_with(EngineOpts { config, ..Default::default() });
    let a = e.mgmt_addr();
    assert_eq!(http(a, "GET", "/metrics", None, None).code, 200);
    assert_eq!(http(a, "GET", "/health", None, None).code, 200);
    for path in ["/agents", "/queues", "/v1/agents", "/v1/queues", "/v1/openapi.json"] {
        assert_eq!(http(a, "GET", path, None, None).code, 401, "{path} must stay closed");
    }
}

#[test]
fn many_clients_at_once_and_a_stalled_one_blocks_nobody() {
    let e = Engine::start();
    let a = e.mgmt_addr();
    // A client that sends half a request head and waits.
    let mut stalled = TcpStream::connect(a).unwrap();
    stalled.write_all(b"GET /v1/queues HTTP/1.1\r\nHost: x\r\n").unwrap();
    let ok = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let threads: Vec<_> = (0..32)
        .map(|i| {
            let ok = ok.clone();
            std::thread::spawn(move || {
                for _ in 0..5 {
                    let path = if i % 2 == 0 { "/v1/queues" } else { "/metrics" };
                    let r = http(a, "GET", path, VIEWER, None);
                    if r.code == 200 {
                        ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(ok.load(std::sync::atomic::Ordering::Relaxed), 160);
    // Keep-alive: several requests on one connection.
    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for _ in 0..3 {
        write!(s, "GET /v1/agents/alice HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {DEMO_VIEWER_TOKEN}\r\n\r\n").unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    }
    drop(stalled);

    // The server's thread is not pinned to a shard's CPU: it may run
    // wherever the process may.
    let task = format!("/proc/{}/task", e.pid());
    let allowed = |tid: &str| {
        let st = std::fs::read_to_string(format!("{task}/{tid}/status")).unwrap_or_default();
        st.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).map(|v| v.trim().to_string())
    };
    let mgmt_tid = std::fs::read_dir(&task)
        .unwrap()
        .filter_map(|d| d.ok())
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .find(|t| std::fs::read_to_string(format!("{task}/{t}/comm")).is_ok_and(|c| c.trim() == "cc-mgmt"))
        .expect("a thread named cc-mgmt");
    assert_eq!(allowed(&mgmt_tid), allowed(&e.pid().to_string()), "cc-mgmt is pinned");
}

#[test]
fn https_with_a_self_signed_certificate() {
    let dir = TempDir::new("mgmt-tls");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), ck.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
    let text = std::fs::read_to_string(shipped_config()).unwrap().replace(
        "# tls_cert = \"mgmt-cert.pem\"",
        "tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"",
    );
    assert!(text.contains("tls_key = \"key.pem\""), "the shipped config lost its tls_cert example");
    let config = dir.path().join("tls.toml");
    std::fs::write(&config, text).unwrap();
    let e = Engine::start_with(EngineOpts { config, ..Default::default() });

    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = |path: &str, token: Option<&str>| {
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(client.clone()), name).unwrap();
        let tcp = TcpStream::connect(e.mgmt_addr()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        exchange(&mut tls, "GET", path, token, None)
    };
    let r = https("/v1/agents/alice", VIEWER);
    assert_eq!(r.code, 200, "{} {}", r.head, r.body);
    assert_eq!(r.json()["id"], "alice");
    assert_eq!(https("/v1/agents", None).code, 401);
    // Plain HTTP on the HTTPS port gets no answer.
    let mut s = TcpStream::connect(e.mgmt_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let r = exchange(&mut s, "GET", "/v1/agents", VIEWER, None);
    assert_ne!(r.code, 200, "plain HTTP must not be served on the HTTPS port");
}

fn check_config(text: &str, dir: &TempDir) -> Output {
    let p = dir.path().join("mgmt.toml");
    std::fs::write(&p, text).unwrap();
    let mut cmd = Command::new(engine_bin());
    cmd.arg("check-config").arg(&p);
    run_with_timeout(cmd, Duration::from_secs(10))
}

#[test]
fn token_config_errors_name_the_file_and_key() {
    let dir = TempDir::new("mgmt-cfg");
    let shipped = std::fs::read_to_string(shipped_config()).unwrap();
    let cases = [
        (shipped.replace("\"demo-viewer-token-change-me\"", "\"short\""), "mgmt.tokens[1].token"),
        (shipped.replace("role = \"admin\"", "role = \"root\""), "mgmt.tokens"),
        (
            shipped.replace("token = \"demo-admin-token-change-me\"", "token_file = \"no-such.token\""),
            "mgmt.tokens[0].token_file",
        ),
        (shipped.replace("\"demo-viewer-token-change-me\"", "\"demo-admin-token-change-me\""), "mgmt.tokens[1]"),
        (shipped.replace("# tls_cert = \"mgmt-cert.pem\"", "tls_cert = \"mgmt-cert.pem\""), "mgmt.tls_key"),
        (
            shipped.replace("# tls_cert = \"mgmt-cert.pem\"", "tls_cert = \"none.pem\"\ntls_key = \"none.pem\""),
            "mgmt.tls_cert",
        ),
    ];
    for (text, key) in cases {
        let out = check_config(&text, &dir);
        assert_ne!(out.code(), Some(0), "accepted; want an error about {key}");
        let msg = format!("{}{}", out.stdout, out.stderr);
        assert!(msg.contains(key) && msg.contains("mgmt.toml"), "want {key} and the file named: {msg}");
        assert!(!msg.contains("demo-admin-token-change-me"), "a token must not be printed: {msg}");
    }
    // A token from a file works.
    std::fs::write(dir.path().join("admin.token"), "a-token-from-a-file-0123\n").unwrap();
    let text = shipped.replace("token = \"demo-admin-token-change-me\"", "token_file = \"admin.token\"");
    let out = check_config(&text, &dir);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
}

/// `--help` on both binaries and every subcommand: exit 0, usage on stdout
/// naming the subcommand and its options.
#[test]
fn help_on_every_subcommand_of_both_binaries() {
    let bench = std::path::PathBuf::from(env!("CARGO_BIN_EXE_cc-bench"));
    let cases: [(&std::path::Path, &[&str], &[&str]); 12] = [
        (&engine_bin(), &["--help"], &["check-config", "agents", "cdrs", "--mgmt"]),
        (&engine_bin(), &["run", "--help"], &["--config", "--listen", "--state-dir", "--mgmt", "--shards"]),
        (&engine_bin(), &["check-config", "--help"], &["FILE"]),
        (&engine_bin(), &["agents", "--help"], &["--state-dir", "--config"]),
        (&engine_bin(), &["cdrs", "--help"], &["--state-dir", "--since"]),
        (&engine_bin(), &["help", "cdrs"], &["--since"]),
        (&bench, &["--help"], &["register", "calls", "relay", "hold"]),
        (&bench, &["register", "--help"], &["--agents", "--rate", "--duration", "--engine"]),
        (&bench, &["calls", "--help"], &["--find-max", "--p99-bound-ms", "--talk", "--rtp"]),
        (&bench, &["relay", "--help"], &["--streams", "--setup-rate", "--pps"]),
        (&bench, &["hold", "--help"], &["--calls", "--rate"]),
        (&bench, &["help", "register"], &["--agents"]),
    ];
    for (bin, args, want) in cases {
        let mut cmd = Command::new(bin);
        cmd.args(args);
        let out = run_with_timeout(cmd, Duration::from_secs(10));
        assert_eq!(out.code(), Some(0), "{} {args:?}: {}", bin.display(), out.describe());
        assert!(out.stdout.contains("Usage:"), "{args:?}: {}", out.describe());
        for w in want {
            assert!(out.stdout.contains(w), "{} {args:?} lacks {w}: {}", bin.display(), out.stdout);
        }
    }
    // A usage error exits 2 and says what was wrong.
    let mut cmd = Command::new(engine_bin());
    cmd.args(["agents"]);
    let out = run_with_timeout(cmd, Duration::from_secs(10));
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert!(out.stderr.contains("--state-dir"), "{}", out.describe());
    let mut cmd = Command::new(&bench);
    cmd.args(["register", "--rate"]);
    let out = run_with_timeout(cmd, Duration::from_secs(10));
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert!(out.stderr.contains("--rate"), "{}", out.describe());
}
