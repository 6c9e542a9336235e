//! Plain HTTP to the management plane, and /metrics parsing.

#![allow(unused_imports)]
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::*;

// ---------------------------------------------------------------- HTTP

/// The bearer tokens of the shipped config (`[[mgmt.tokens]]`).
pub const DEMO_ADMIN_TOKEN: &str = "demo-admin-token-change-me";
#[allow(dead_code)]
pub const DEMO_VIEWER_TOKEN: &str = "demo-viewer-token-change-me";

/// Minimal HTTP/1.0 GET (Connection: close), bounded by timeouts, with the
/// shipped admin token (the management API needs one).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {DEMO_ADMIN_TOKEN}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut chunk = [0u8; 16384];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                break
            }
            Err(e) => panic!("read {addr}{path}: {e}"),
        }
        // stop early once a Content-Length body is complete
        if let Some(done) = http_complete(&buf) {
            if done {
                break;
            }
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad HTTP response from {addr}{path}: {text:?}"));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (code, body)
}

pub(crate) fn http_complete(buf: &[u8]) -> Option<bool> {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let cl = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if k.trim().eq_ignore_ascii_case("content-length") {
            v.trim().parse::<usize>().ok()
        } else {
            None
        }
    })?;
    Some(body.len() >= cl)
}

pub(crate) fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((len, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// Prometheus text exposition.
pub struct Metrics(pub String);

impl Metrics {
    /// Sum of every series of `name` whose label set contains all `labels`
    /// (`[("code","200")]`); None if no such series is present.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for line in self.0.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // `name{labels} value [timestamp]`
            let (n, lbl, rest) = match line.find('{') {
                Some(i) if line[..i].find(char::is_whitespace).is_none() => {
                    let close = match line[i..].find('}') {
                        Some(c) => i + c,
                        None => continue,
                    };
                    (&line[..i], &line[i + 1..close], &line[close + 1..])
                }
                _ => match line.split_once(char::is_whitespace) {
                    Some((n, r)) => (n, "", r),
                    None => continue,
                },
            };
            let value = rest.split_whitespace().next().unwrap_or("");
            if n != name {
                continue;
            }
            let ok = labels
                .iter()
                .all(|(k, v)| lbl.split(',').any(|kv| kv.trim() == format!("{k}=\"{v}\"")));
            if !ok {
                continue;
            }
            if let Ok(v) = value.parse::<f64>() {
                *found.get_or_insert(0.0) += v;
            }
        }
        found
    }

    pub fn sum(&self, name: &str) -> f64 {
        self.get(name, &[]).unwrap_or(0.0)
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name, &[]).is_some()
    }
}
