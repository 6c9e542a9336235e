//! Raw SIP over UDP: requests, responses and digest authentication.

#![allow(unused_imports)]
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::*;

// ---------------------------------------------------------------- SIP over UDP

pub(crate) static BRANCH: AtomicU64 = AtomicU64::new(1);

pub fn token() -> String {
    format!(
        "{}x{}",
        unique().replace('-', ""),
        BRANCH.fetch_add(1, Ordering::SeqCst)
    )
}

/// A request builder producing a well-formed request; tests then mutate it.
#[derive(Clone)]
pub struct Req {
    pub method: String,
    pub uri: String,
    pub from_user: String,
    pub to_user: Option<String>,
    pub to_tag: Option<String>,
    pub call_id: String,
    pub cseq: u32,
    pub extra: Vec<String>,
    pub body: String,
}

impl Req {
    pub fn new(method: &str, uri: &str) -> Req {
        Req {
            method: method.into(),
            uri: uri.into(),
            from_user: "e2e".into(),
            to_user: None,
            to_tag: None,
            call_id: format!("{}@e2e", token()),
            cseq: 1,
            extra: vec![],
            body: String::new(),
        }
    }
    pub fn header(mut self, h: &str) -> Req {
        self.extra.push(h.to_string());
        self
    }
    pub fn to(mut self, user: &str) -> Req {
        self.to_user = Some(user.into());
        self
    }
    pub fn from(mut self, user: &str) -> Req {
        self.from_user = user.into();
        self
    }
    pub fn with_to_tag(mut self, tag: &str) -> Req {
        self.to_tag = Some(tag.into());
        self
    }
    pub fn cseq(mut self, n: u32) -> Req {
        self.cseq = n;
        self
    }
    pub fn call_id(mut self, id: &str) -> Req {
        self.call_id = id.into();
        self
    }

    /// Renders with a Via/Contact naming `sock`'s local address.
    pub fn build(&self, sock: &UdpSocket) -> String {
        self.build_for(sock.local_addr().unwrap())
    }

    pub fn build_for(&self, local: SocketAddr) -> String {
        let to_uri = match &self.to_user {
            Some(u) => format!("sip:{u}@127.0.0.1"),
            None => self.uri.clone(),
        };
        let to_tag = self
            .to_tag
            .as_ref()
            .map(|t| format!(";tag={t}"))
            .unwrap_or_default();
        let mut m = format!(
            "{method} {uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};rport;branch=z9hG4bK{br}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{from}@127.0.0.1>;tag={ftag}\r\n\
             To: <{to_uri}>{to_tag}\r\n\
             Call-ID: {cid}\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: <sip:{from}@{local}>\r\n\
             User-Agent: cc-engine-e2e\r\n",
            method = self.method,
            uri = self.uri,
            br = token(),
            from = self.from_user,
            ftag = token(),
            cid = self.call_id,
            cseq = self.cseq,
        );
        for h in &self.extra {
            m.push_str(h);
            m.push_str("\r\n");
        }
        m.push_str(&format!(
            "Content-Length: {}\r\n\r\n{}",
            self.body.len(),
            self.body
        ));
        m
    }
}

/// Sends `bytes` and waits for the final (non-1xx) response; None on timeout.
pub fn exchange(sock: &UdpSocket, to: SocketAddr, bytes: &[u8], timeout: Duration) -> Option<Msg> {
    sock.send_to(bytes, to).expect("send");
    recv_final(sock, timeout)
}

pub fn recv_final(sock: &UdpSocket, timeout: Duration) -> Option<Msg> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        sock.set_read_timeout(Some(left)).unwrap();
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                if let Some(m) = Msg::parse(&buf[..n]) {
                    if m.status().map(|s| s >= 200).unwrap_or(false) {
                        return Some(m);
                    }
                }
            }
            Err(_) => return None,
        }
    }
}

/// Every datagram that arrives within `window` (raw).
pub fn recv_all(sock: &UdpSocket, window: Duration) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + window;
    let mut buf = vec![0u8; 65536];
    let mut out = vec![];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return out;
        }
        sock.set_read_timeout(Some(left)).unwrap();
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => out.push(buf[..n].to_vec()),
            Err(_) => return out,
        }
    }
}

/// A received SIP message, minimally parsed (text; header lookups are
/// case-insensitive and understand compact forms for the common headers).
#[derive(Clone, Debug)]
pub struct Msg {
    pub text: String,
}

impl Msg {
    pub fn parse(b: &[u8]) -> Option<Msg> {
        let text = String::from_utf8_lossy(b).into_owned();
        if text.trim().is_empty() {
            return None;
        }
        Some(Msg { text })
    }
    pub fn first_line(&self) -> &str {
        self.text.lines().next().unwrap_or("")
    }
    pub fn status(&self) -> Option<u16> {
        let l = self.first_line();
        if !l.starts_with("SIP/2.0 ") {
            return None;
        }
        l.split_whitespace().nth(1)?.parse().ok()
    }
    pub fn headers(&self, name: &str) -> Vec<String> {
        let compact = match name.to_ascii_lowercase().as_str() {
            "via" => Some("v"),
            "from" => Some("f"),
            "to" => Some("t"),
            "call-id" => Some("i"),
            "contact" => Some("m"),
            "content-length" => Some("l"),
            "supported" => Some("k"),
            _ => None,
        };
        let head = self.text.split("\r\n\r\n").next().unwrap_or("");
        head.lines()
            .skip(1)
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                let k = k.trim();
                if k.eq_ignore_ascii_case(name)
                    || compact.map(|c| k.eq_ignore_ascii_case(c)).unwrap_or(false)
                {
                    Some(v.trim().to_string())
                } else {
                    None
                }
            })
            .collect()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }
    pub fn call_id(&self) -> Option<String> {
        self.header("Call-ID")
    }
}

// ---------------------------------------------------------------- digest

/// Parses one `Digest k=v, k="v"` challenge into (lowercase key, value).
pub fn parse_challenge(h: &str) -> Vec<(String, String)> {
    let h = h.trim();
    let h = h
        .strip_prefix("Digest")
        .or_else(|| h.strip_prefix("digest"))
        .unwrap_or(h);
    let mut out = vec![];
    let mut rest = h.trim();
    while !rest.is_empty() {
        let (k, after) = match rest.split_once('=') {
            Some(x) => x,
            None => break,
        };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (v, r) = if let Some(s) = after.strip_prefix('"') {
            let end = s.find('"').unwrap_or(s.len());
            (s[..end].to_string(), s.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.push((k, v));
        rest = r.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

pub fn param<'a>(c: &'a [(String, String)], k: &str) -> Option<&'a str> {
    c.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str())
}

pub fn hex_md5(s: &str) -> String {
    use md5::{Digest, Md5};
    let d = Md5::digest(s.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn hex_sha256(s: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(s.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds an Authorization header answering the challenge (MD5 or SHA-256,
/// qop=auth or none).
pub fn authorization(challenge: &str, user: &str, pass: &str, method: &str, uri: &str) -> String {
    let c = parse_challenge(challenge);
    let realm = param(&c, "realm").unwrap_or("");
    let nonce = param(&c, "nonce").unwrap_or("");
    let alg = param(&c, "algorithm").unwrap_or("MD5");
    let h: fn(&str) -> String = if alg.eq_ignore_ascii_case("SHA-256") {
        hex_sha256
    } else {
        hex_md5
    };
    let ha1 = h(&format!("{user}:{realm}:{pass}"));
    let ha2 = h(&format!("{method}:{uri}"));
    let qop_auth = param(&c, "qop")
        .map(|q| q.split(',').any(|x| x.trim() == "auth"))
        .unwrap_or(false);
    let opaque = param(&c, "opaque")
        .map(|o| format!(", opaque=\"{o}\""))
        .unwrap_or_default();
    if qop_auth {
        let cnonce = token();
        let nc = "00000001";
        let resp = h(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
        format!(
            "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{resp}\", algorithm={alg}, qop=auth, nc={nc}, cnonce=\"{cnonce}\"{opaque}"
        )
    } else {
        let resp = h(&format!("{ha1}:{nonce}:{ha2}"));
        format!(
            "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{resp}\", algorithm={alg}{opaque}"
        )
    }
}

/// Picks the challenge with the wanted algorithm ("MD5" also matches a
/// challenge with no algorithm parameter).
pub fn pick_challenge(resp: &Msg, alg: &str) -> Option<String> {
    resp.headers("WWW-Authenticate").into_iter().find(|h| {
        let c = parse_challenge(h);
        match param(&c, "algorithm") {
            Some(a) => a.eq_ignore_ascii_case(alg),
            None => alg.eq_ignore_ascii_case("MD5"),
        }
    })
}

/// Outcome of a raw-UDP REGISTER with digest.
pub struct RegOutcome {
    pub first: Option<Msg>,
    pub last: Option<Msg>,
    pub local: SocketAddr,
    pub contact: String,
}

/// REGISTER `user` (from one socket, one Call-ID), answering one 401 with
/// `alg` digest. `expires` None = no Expires header. Returns both responses.
pub fn register(
    engine: &Engine,
    user: &str,
    pass: &str,
    expires: Option<u32>,
    alg: &str,
) -> RegOutcome {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    register_on(engine, &sock, user, pass, expires, alg)
}

pub fn register_on(
    engine: &Engine,
    sock: &UdpSocket,
    user: &str,
    pass: &str,
    expires: Option<u32>,
    alg: &str,
) -> RegOutcome {
    let local = sock.local_addr().unwrap();
    let contact = format!("sip:{user}@{local}");
    let call_id = format!("{}@e2e", token());
    let uri = "sip:127.0.0.1".to_string();
    let mk = |cseq: u32, auth: Option<String>| {
        let mut r = Req::new("REGISTER", &uri)
            .from(user)
            .to(user)
            .call_id(&call_id)
            .cseq(cseq);
        if let Some(e) = expires {
            r = r.header(&format!("Expires: {e}"));
        }
        if let Some(a) = auth {
            r = r.header(&a);
        }
        r.build_for(local)
    };
    let first = exchange(sock, engine.sip_addr(), mk(1, None).as_bytes(), SIP_TIMEOUT);
    let mut last = first.clone();
    if let Some(r) = &first {
        if r.status() == Some(401) {
            let ch = pick_challenge(r, alg)
                .unwrap_or_else(|| panic!("no {alg} challenge in 401:\n{}", r.text));
            let auth = authorization(&ch, user, pass, "REGISTER", &uri);
            last = exchange(
                sock,
                engine.sip_addr(),
                mk(2, Some(auth)).as_bytes(),
                SIP_TIMEOUT,
            );
        }
    }
    RegOutcome {
        first,
        last,
        local,
        contact,
    }
}
