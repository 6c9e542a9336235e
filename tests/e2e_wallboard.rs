//! The wallboard in a real headless Chromium (chromedriver over WebDriver):
//! the page loads from the engine, takes the demo admin token, shows both
//! demo agents, and its pause button pauses an agent, seen on the page and
//! in the API. A screenshot is kept under `target/test-artifacts/`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// Rows of the agents table as `[id, status, reason]`.
const AGENT_ROWS: &str = "return Array.from(document.querySelectorAll('#agents tbody tr')).map(tr => \
    [tr.dataset.agent, (tr.querySelector('.status') || {}).textContent || '', \
     (tr.querySelector('.reason') || {}).textContent || '']);";

fn rows(b: &Browser) -> Vec<(String, String, String)> {
    let v = b.script(AGENT_ROWS).unwrap_or(Value::Null);
    v.as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    let s = |i: usize| r[i].as_str().unwrap_or("").to_string();
                    (s(0), s(1), s(2))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn artifacts() -> std::path::PathBuf {
    let dir = repo().join("target").join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn wallboard_pauses_an_agent_from_the_browser() {
    let e = Engine::start();
    let b = Browser::start(&artifacts().join("chromedriver.log"));
    let base = format!("http://{}", e.mgmt_addr());

    // `/` leads to the wallboard, which asks for a token first.
    b.goto(&format!("{base}/"));
    assert!(b.url().ends_with("/wallboard"), "redirected to {}", b.url());
    let asked = poll(Duration::from_secs(10), || b.find("#token").ok());
    assert!(asked.is_some(), "no token field: {:?} in {:?}", b.find("#token").err(), b.script("return document.documentElement.outerHTML"));
    b.type_into("#token", DEMO_ADMIN_TOKEN).unwrap();
    b.click("#login-button").unwrap();

    let both = poll(Duration::from_secs(15), || {
        let r = rows(&b);
        let ids: Vec<&str> = r.iter().map(|r| r.0.as_str()).collect();
        (ids.contains(&"alice") && ids.contains(&"bob")).then_some(r)
    });
    assert!(both.is_some(), "the page did not show both demo agents: {:?}", rows(&b));
    let role = b.script("return document.getElementById('role').textContent").unwrap();
    assert_eq!(role, "admin");
    // The event stream opens with `?token=` (EventSource sends no headers).
    let live = poll(Duration::from_secs(10), || {
        let v = b.script("return document.getElementById('live').textContent").ok()?;
        (v == "live").then_some(())
    });
    assert!(live.is_some(), "the page did not open the event stream");

    // The table is redrawn on every refresh: an element found may be gone
    // by the time it is used, so each step is retried (bounded).
    let step = |what: &str, f: &dyn Fn() -> Result<(), WdError>| {
        let ok = poll(Duration::from_secs(10), || f().ok());
        assert!(ok.is_some(), "{what} failed; agents shown: {:?}", rows(&b));
    };
    step("click pause", &|| b.click("tr[data-agent='alice'] button.pause"));
    step("type a reason", &|| b.type_into("tr[data-agent='alice'] input.pause-reason", "lunch"));
    step("confirm", &|| b.click("tr[data-agent='alice'] button.pause-ok"));

    let shown = poll(Duration::from_secs(15), || {
        rows(&b).into_iter().find(|r| r.0 == "alice" && r.1 == "paused" && r.2 == "lunch")
    });
    let png = b.screenshot();
    std::fs::write(artifacts().join("wallboard.png"), &png).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
    assert!(shown.is_some(), "the page did not show alice paused: {:?}", rows(&b));

    let agents = e.http_get("/v1/agents/alice");
    assert_eq!(agents.0, 200, "{}", agents.1);
    let a: Value = serde_json::from_str(&agents.1).unwrap();
    assert_eq!(a["status"], "paused", "{a}");
    assert_eq!(a["paused_reason"], "lunch", "{a}");
    assert!(a["time_in_status_ms"].as_u64().is_some(), "{a}");
    let bob = rows(&b).into_iter().find(|r| r.0 == "bob").unwrap();
    assert_ne!(bob.1, "paused", "only alice was paused");

    // Unpause from the page as well.
    step("click unpause", &|| b.click("tr[data-agent='alice'] button.unpause"));
    let back = poll(Duration::from_secs(15), || rows(&b).into_iter().find(|r| r.0 == "alice" && r.1 != "paused"));
    assert!(back.is_some(), "alice stayed paused on the page: {:?}", rows(&b));
}

/// The page itself is open, and nothing but the page: the API behind it
/// still needs a token, and the event stream takes one as `?token=`.
#[test]
fn the_page_is_open_the_data_is_not() {
    let e = Engine::start();
    let a = e.mgmt_addr();
    let get = |path: &str, auth: bool| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let h = if auth { format!("Authorization: Bearer {DEMO_VIEWER_TOKEN}\r\n") } else { String::new() };
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n{h}Connection: close\r\n\r\n").unwrap();
        // The event stream never ends: its head is enough.
        let mut raw = Vec::new();
        let mut chunk = [0u8; 4096];
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&chunk[..n]),
            }
            if path.starts_with("/v1/events") && raw.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        let buf = String::from_utf8_lossy(&raw).into_owned();
        let code: u16 = buf.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (code, buf)
    };
    let (code, page) = get("/wallboard", false);
    assert_eq!(code, 200);
    assert!(page.contains("content-security-policy: default-src 'self'"), "{page}");
    assert!(page.contains("<title>cc-engine wallboard</title>"));
    assert_eq!(get("/wallboard/app.js", false).0, 200);
    assert_eq!(get("/wallboard/style.css", false).0, 200);
    let (code, r) = get("/", false);
    assert!(code == 303 || code == 307 || code == 308, "{r}");
    assert!(r.to_ascii_lowercase().contains("location: /wallboard"), "{r}");
    assert_eq!(get("/v1/agents", false).0, 401);
    assert_eq!(get("/v1/whoami", false).0, 401);
    let (code, r) = get("/v1/whoami", true);
    assert_eq!(code, 200);
    assert!(r.contains("\"role\":\"viewer\""), "{r}");
    // `?token=` is for the event stream only.
    assert_eq!(get(&format!("/v1/agents?token={DEMO_VIEWER_TOKEN}"), false).0, 401);
    assert_eq!(get("/v1/events?token=not-a-token", false).0, 401);
    let (code, r) = get(&format!("/v1/events?token={DEMO_VIEWER_TOKEN}&since=0"), false);
    assert_eq!(code, 200, "{r}");
    assert!(r.to_ascii_lowercase().contains("content-type: text/event-stream"), "{r}");
}
