//! A headless Chromium driven over WebDriver (W3C JSON over HTTP) by a
//! chromedriver the test starts on a free port. The few commands the
//! wallboard test needs are plain HTTP requests; no client crate.

#![allow(dead_code)]
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver and one browser session; both ended on Drop.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: TempDir,
}

/// A WebDriver error answer (`error` and `message`), or a transport failure.
#[derive(Debug)]
pub struct WdError(pub String);

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile.
    pub fn start(log: &Path) -> Browser {
        let chromedriver = require_tool("chromedriver");
        let chromium = require_tool("chromium");
        let port = free_tcp_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let profile = TempDir::new("chromium-profile");
        let mut b = Browser { driver, addr, session: String::new(), _profile: profile };
        let ready = poll(Duration::from_secs(20), || {
            let v = b.call("GET", "/status", None).ok()?;
            v["ready"].as_bool().filter(|r| *r)
        });
        assert!(ready.is_some(), "chromedriver did not become ready on {addr}");
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("--user-data-dir={}", b._profile.path().display())])
        .collect::<Vec<_>>();
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium.display().to_string(), "args": args },
            "timeouts": { "pageLoad": 20000, "script": 10000, "implicit": 0 },
        }}});
        let v = b.call("POST", "/session", Some(caps)).unwrap_or_else(|e| panic!("new session: {e:?}"));
        b.session = v["sessionId"].as_str().expect("a session id").to_string();
        b
    }

    /// One WebDriver command; its `value`.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, WdError> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)).map_err(|e| WdError(e.to_string()))?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        s.set_write_timeout(Some(Duration::from_secs(5))).ok();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        s.write_all(req.as_bytes()).map_err(|e| WdError(e.to_string()))?;
        let mut buf = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut chunk = [0u8; 65536];
        loop {
            match s.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(WdError(format!("read: {e}"))),
            }
            if http_complete(&buf) == Some(true) || Instant::now() >= deadline {
                break;
            }
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| WdError(format!("no answer: {text:?}")))?;
        let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
        let v: Value = serde_json::from_str(&body).map_err(|e| WdError(format!("{e}: {body}")))?;
        let value = v.get("value").cloned().unwrap_or(Value::Null);
        if let Some(err) = value.get("error").and_then(Value::as_str) {
            return Err(WdError(format!("{err}: {}", value["message"].as_str().unwrap_or(""))));
        }
        Ok(value)
    }

    fn at(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", &self.at("/url"), Some(json!({ "url": url }))).unwrap_or_else(|e| panic!("goto {url}: {e:?}"));
    }

    pub fn url(&self) -> String {
        self.call("GET", &self.at("/url"), None).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
    }

    /// The first element matching a CSS selector.
    pub fn find(&self, css: &str) -> Result<String, WdError> {
        let v = self.call("POST", &self.at("/element"), Some(json!({ "using": "css selector", "value": css })))?;
        v[ELEMENT].as_str().map(String::from).ok_or_else(|| WdError(format!("no element id for {css}: {v}")))
    }

    pub fn click(&self, css: &str) -> Result<(), WdError> {
        let e = self.find(css)?;
        self.call("POST", &self.at(&format!("/element/{e}/click")), Some(json!({}))).map(|_| ())
    }

    pub fn type_into(&self, css: &str, text: &str) -> Result<(), WdError> {
        let e = self.find(css)?;
        self.call("POST", &self.at(&format!("/element/{e}/value")), Some(json!({ "text": text }))).map(|_| ())
    }

    /// Runs `script` (a function body) in the page; its return value.
    pub fn script(&self, script: &str) -> Result<Value, WdError> {
        self.call("POST", &self.at("/execute/sync"), Some(json!({ "script": script, "args": [] })))
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Vec<u8> {
        let v = self.call("GET", &self.at("/screenshot"), None).unwrap_or_else(|e| panic!("screenshot: {e:?}"));
        base64_decode(v.as_str().unwrap_or(""))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &self.at(""), None);
        }
        let _ = self.driver.kill();
        let _ = wait_timeout(&mut self.driver, Duration::from_secs(5));
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
