//! A minimal client of the management API for the command line
//! (`cc-engine cdrs --mgmt URL --token T`, `cc-engine queue-log ...`):
//! plain HTTP/1.0 GETs over a TCP stream, bounded by timeouts.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read.
const MAX_ANSWER: u64 = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("--mgmt {0}: only http://HOST:PORT is supported")]
    Url(String),
    #[error("{url}: {source}")]
    Io { url: String, source: std::io::Error },
    #[error("{url}: HTTP {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("{url}: the answer is not the JSON expected: {reason}")]
    Body { url: String, reason: String },
}

/// `GET base + path_query` with the bearer token; the JSON body.
pub fn get_json(base: &str, token: &str, path_query: &str) -> Result<Value, ClientError> {
    let hostport = base
        .trim_end_matches('/')
        .strip_prefix("http://")
        .filter(|h| !h.is_empty() && !h.contains('/'))
        .ok_or_else(|| ClientError::Url(base.to_string()))?;
    let url = format!("http://{hostport}{path_query}");
    let io = |source| ClientError::Io { url: url.clone(), source };
    let addr = hostport
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or_else(|| ClientError::Url(base.to_string()))?;
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(io)?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    s.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    write!(s, "GET {path_query} HTTP/1.0\r\nHost: {hostport}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n")
        .map_err(io)?;
    let mut buf = Vec::new();
    s.take(MAX_ANSWER).read_to_end(&mut buf).map_err(io)?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    if status != 200 {
        return Err(ClientError::Status { url, status, body: body.trim().to_string() });
    }
    serde_json::from_str(body).map_err(|e| ClientError::Body { url, reason: e.to_string() })
}

fn since_param(since_ms: Option<u64>) -> String {
    since_ms.map(|ms| format!("since={}", ms / 1000)).unwrap_or_default()
}

/// Every CDR ended at or after `since_ms`, page by page.
pub fn all_cdrs(base: &str, token: &str, since_ms: Option<u64>) -> Result<Vec<Value>, ClientError> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = format!("/v1/cdrs?limit=1000&{}", since_param(since_ms));
        if let Some(c) = &cursor {
            q.push_str(&format!("&cursor={c}"));
        }
        let v = get_json(base, token, &q)?;
        let page = v.get("cdrs").and_then(Value::as_array).cloned().unwrap_or_default();
        out.extend(page);
        match v.get("next_cursor").and_then(Value::as_str) {
            Some(c) => cursor = Some(c.to_string()),
            None => return Ok(out),
        }
    }
}

/// The queue log lines at or after `since_ms`.
pub fn queue_log(base: &str, token: &str, since_ms: Option<u64>) -> Result<Vec<String>, ClientError> {
    let mut out: Vec<String> = Vec::new();
    let mut since = since_ms.map(|ms| ms / 1000);
    // Pages by time: a page of 10,000 that ends within one second is
    // re-read from that second, dropping the lines already printed.
    loop {
        let q = format!("/v1/queue-log?limit=10000&{}", since.map(|s| format!("since={s}")).unwrap_or_default());
        let v = get_json(base, token, &q)?;
        let lines: Vec<String> = v
            .get("lines")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|l| l.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let full = lines.len() >= 10_000;
        let last_epoch = lines.last().and_then(|l| l.split('|').next()).and_then(|e| e.parse::<u64>().ok());
        let fresh: Vec<String> = lines.into_iter().filter(|l| !out.contains(l)).collect();
        let stalled = fresh.is_empty();
        out.extend(fresh);
        match (full, last_epoch) {
            (true, Some(e)) if !stalled => since = Some(e),
            _ => return Ok(out),
        }
    }
}

/// CDRs as CSV with a header line (RFC 4180 quoting).
pub fn cdrs_csv(rows: &[Value]) -> String {
    const COLS: [&str; 14] = [
        "call_id",
        "sip_call_id",
        "queue",
        "overflowed_from",
        "caller",
        "agent",
        "arrived_ms",
        "answered_ms",
        "ended_ms",
        "wait_s",
        "talk_s",
        "disposition",
        "reason",
        "hangup",
    ];
    let mut s = COLS.join(",");
    s.push('\n');
    for r in rows {
        let cells: Vec<String> = COLS
            .iter()
            .map(|c| match r.get(*c) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(v)) => csv_cell(v),
                Some(v) => csv_cell(&v.to_string()),
            })
            .collect();
        s.push_str(&cells.join(","));
        s.push('\n');
    }
    s
}

fn csv_cell(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it() {
        let rows = [serde_json::json!({"call_id": "0-1", "caller": "\"Bob, Jr\" <sip:b@x>", "wait_s": 3, "agent": null})];
        let csv = cdrs_csv(&rows);
        let line = csv.lines().nth(1).unwrap();
        assert!(line.starts_with("0-1,,,,\"\"\"Bob, Jr\"\" <sip:b@x>\",,,"), "{line}");
    }
}
