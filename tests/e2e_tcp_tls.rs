//! SIP over TCP and TLS against the real `cc-engine`.
//!
//! The agents here are small Rust user agents on one connection (REGISTER
//! with digest, then answer the engine's INVITE on that same connection):
//! SIPp cannot register and then take a call with another Call-ID on one
//! TCP connection, and Debian's SIPp has no TLS. Customers are SIPp, over
//! UDP and over TCP (`-t t1`). The framing tests write raw bytes on a
//! `TcpStream`.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_rustls::rustls;


const CALL_TIMEOUT: Duration = Duration::from_secs(40);
const AGENT: &str = r#"
[[queue]]
name = "support"
ring_timeout_s = 5
wrap_up_s = 0

[[agent]]
id = "alice"
password = "alice-pass"
queues = ["support"]
"#;

/// The calls config with extra `[sip]` keys.
fn config(dir: &Path, sip_extra: &str) -> std::path::PathBuf {
    let p = calls_config(dir, AGENT);
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains("[sip]\n"), "no [sip] section in the calls config");
    // The shipped config sets these keys too: ours replace them.
    let ours: Vec<&str> = sip_extra.lines().filter_map(|l| l.split_once('=')).map(|(k, _)| k.trim()).collect();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.split_once('=').is_some_and(|(k, _)| ours.contains(&k.trim())))
        .collect();
    let text = kept.join("\n") + "\n";
    std::fs::write(&p, text.replacen("[sip]\n", &format!("[sip]\n{sip_extra}\n"), 1)).unwrap();
    p
}

/// Two signalling shards: a connection belongs to one of them, and calls
/// that land on the other reach it over the mesh.
fn start(sip_extra: &str) -> (Engine, TempDir) {
    start_shards(sip_extra, 2)
}

fn start_shards(sip_extra: &str, shards: u32) -> (Engine, TempDir) {
    let dir = TempDir::new("tcp-cfg");
    let config = config(dir.path(), sip_extra);
    (Engine::start_with(EngineOpts { config, shards: Some(shards) }), dir)
}

/// One SIP connection (TCP or TLS) with a reader that frames messages by
/// Content-Length.
struct Conn<S: Read + Write> {
    s: S,
    buf: Vec<u8>,
    local: SocketAddr,
    transport: &'static str,
    log: Vec<String>,
}

impl<S: Read + Write> Conn<S> {
    fn send(&mut self, text: &str) {
        self.log.push(format!(">>> {text}"));
        self.s.write_all(text.as_bytes()).unwrap();
        self.s.flush().unwrap();
    }

    /// The next whole message, or None at the deadline / on close.
    fn recv(&mut self, timeout: Duration) -> Option<Msg> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(m) = self.take() {
                self.log.push(format!("<<< {}", m.text));
                return Some(m);
            }
            if Instant::now() >= end {
                return None;
            }
            let mut b = [0u8; 8192];
            match self.s.read(&mut b) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => return None,
            }
        }
    }

    fn take(&mut self) -> Option<Msg> {
        while self.buf.starts_with(b"\r\n") {
            self.buf.drain(..2);
        }
        let text = String::from_utf8_lossy(&self.buf).into_owned();
        let head_end = text.find("\r\n\r\n")? + 4;
        let m = Msg { text: text[..head_end].to_string() };
        let len: usize = m.header("Content-Length")?.parse().ok()?;
        if self.buf.len() < head_end + len {
            return None;
        }
        let all: Vec<u8> = self.buf.drain(..head_end + len).collect();
        Msg::parse(&all)
    }

    /// The next request with this method (responses and others skipped).
    fn recv_request(&mut self, method: &str, timeout: Duration) -> Option<Msg> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            let m = self.recv(end.saturating_duration_since(Instant::now()))?;
            if m.first_line().starts_with(&format!("{method} ")) {
                return Some(m);
            }
        }
        None
    }

    fn history(&self) -> String {
        self.log.join("\n")
    }

    /// REGISTER with digest; panics unless the engine says 200.
    fn register(&mut self, engine: SocketAddr, user: &str, pass: &str) {
        let (t, local) = (self.transport, self.local);
        let uri = format!("sip:{}", engine);
        let call_id = format!("reg-{}", token());
        let req = |cseq: u32, auth: &str| {
            format!(
                "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/{t} {local};branch=z9hG4bK{}\r\nMax-Forwards: 70\r\n\
                 From: <sip:{user}@{engine}>;tag={}\r\nTo: <sip:{user}@{engine}>\r\nCall-ID: {call_id}\r\n\
                 CSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{local};transport={}>\r\nExpires: 600\r\n{auth}\
                 Content-Length: 0\r\n\r\n",
                token(),
                token(),
                t.to_lowercase()
            )
        };
        self.send(&req(1, ""));
        let r = self.recv(Duration::from_secs(5)).unwrap_or_else(|| panic!("no answer to REGISTER\n{}", self.history()));
        assert_eq!(r.status(), Some(401), "{}", self.history());
        let ch = pick_challenge(&r, "MD5").expect("an MD5 challenge");
        let auth = authorization(&ch, user, pass, "REGISTER", &uri);
        self.send(&req(2, &format!("{auth}\r\n")));
        let r = self.recv(Duration::from_secs(5)).unwrap_or_else(|| panic!("no answer to REGISTER\n{}", self.history()));
        assert_eq!(r.status(), Some(200), "{}", self.history());
    }

    /// Answers the engine's next INVITE (180, 200 with SDP, waits for the
    /// ACK). Returns the INVITE.
    fn answer(&mut self, media: SocketAddr) -> Msg {
        let inv = self
            .recv_request("INVITE", CALL_TIMEOUT)
            .unwrap_or_else(|| panic!("no INVITE to the agent\n{}", self.history()));
        let local = self.local;
        let t = self.transport.to_lowercase();
        let hdr = |n: &str| inv.header(n).unwrap_or_default();
        let vias: String = inv.headers("Via").iter().map(|v| format!("Via: {v}\r\n")).collect();
        let to = format!("{};tag=agent{}", hdr("To"), token());
        let base = format!(
            "{vias}From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:alice@{local};transport={t}>\r\n",
            hdr("From"),
            hdr("Call-ID"),
            hdr("CSeq")
        );
        self.send(&format!("SIP/2.0 180 Ringing\r\n{base}Content-Length: 0\r\n\r\n"));
        let sdp = format!(
            "v=0\r\no=agent 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0 8\r\n\
             a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n",
            media.port()
        );
        self.send(&format!(
            "SIP/2.0 200 OK\r\n{base}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        ));
        self.recv_request("ACK", Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no ACK over the connection\n{}", self.history()));
        // Remember the dialog for a BYE of our own.
        self.log.push(format!("dialog-to: {to}"));
        inv
    }

    /// Answers a BYE with 200.
    fn accept_bye(&mut self, timeout: Duration) -> Msg {
        let bye = self
            .recv_request("BYE", timeout)
            .unwrap_or_else(|| panic!("no BYE to the agent\n{}", self.history()));
        let vias: String = bye.headers("Via").iter().map(|v| format!("Via: {v}\r\n")).collect();
        let h = |n: &str| bye.header(n).unwrap_or_default();
        self.send(&format!(
            "SIP/2.0 200 OK\r\n{vias}From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
            h("From"),
            h("To"),
            h("Call-ID"),
            h("CSeq")
        ));
        bye
    }

    /// Hangs up the call of `invite` (which we answered with `to`).
    fn hang_up(&mut self, invite: &Msg, to: &str) {
        let h = |n: &str| invite.header(n).unwrap_or_default();
        let target = h("Contact").trim_start_matches('<').split('>').next().unwrap_or("").to_string();
        let (t, local) = (self.transport, self.local);
        self.send(&format!(
            "BYE {target} SIP/2.0\r\nVia: SIP/2.0/{t} {local};branch=z9hG4bK{}\r\nMax-Forwards: 70\r\n\
             From: {to}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
            token(),
            h("From"),
            h("Call-ID")
        ));
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            let r = self.recv(Duration::from_secs(10)).unwrap_or_else(|| panic!("no answer to BYE\n{}", self.history()));
            if r.status() == Some(200) && r.header("CSeq").is_some_and(|c| c.contains("BYE")) {
                return;
            }
        }
        panic!("no 200 to the agent's BYE\n{}", self.history());
    }

    /// Calls `queue` as a customer: INVITE, final 200 (immediate answer
    /// plays hold audio), ACK. Returns the 200.
    fn call(&mut self, engine: SocketAddr, queue: &str, media: SocketAddr) -> Msg {
        let (t, local) = (self.transport, self.local);
        let lt = t.to_lowercase();
        let (call_id, tag) = (format!("cust-{}", token()), format!("c{}", token()));
        let sdp = format!(
            "v=0\r\no=cust 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0 8\r\n\
             a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n",
            media.port()
        );
        let from = format!("<sip:cust@{local}>;tag={tag}");
        self.send(&format!(
            "INVITE sip:{queue}@{engine} SIP/2.0\r\nVia: SIP/2.0/{t} {local};branch=z9hG4bK{}\r\nMax-Forwards: 70\r\n\
             From: {from}\r\nTo: <sip:{queue}@{engine}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:cust@{local};transport={lt}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            token(),
            sdp.len()
        ));
        let end = Instant::now() + Duration::from_secs(10);
        let ok = loop {
            let r = self.recv(Duration::from_secs(10)).unwrap_or_else(|| panic!("no answer to INVITE\n{}", self.history()));
            match r.status() {
                Some(200) => break r,
                Some(s) if s < 200 && Instant::now() < end => continue,
                _ => panic!("INVITE not answered 200\n{}", self.history()),
            }
        };
        let target = ok.header("Contact").unwrap_or_default();
        let target = target.trim_start_matches('<').split('>').next().unwrap_or("").to_string();
        self.send(&format!(
            "ACK {target} SIP/2.0\r\nVia: SIP/2.0/{t} {local};branch=z9hG4bK{}\r\nMax-Forwards: 70\r\n\
             From: {from}\r\nTo: {}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
            token(),
            ok.header("To").unwrap_or_default()
        ));
        ok
    }

    fn dialog_to(&self) -> String {
        self.log.iter().rev().find_map(|l| l.strip_prefix("dialog-to: ")).unwrap_or("").to_string()
    }
}

fn tcp(engine: SocketAddr) -> Conn<TcpStream> {
    let s = TcpStream::connect(engine).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    s.set_nodelay(true).unwrap();
    let local = s.local_addr().unwrap();
    Conn { s, buf: Vec::new(), local, transport: "TCP", log: Vec::new() }
}

/// A UDP socket the agent names as its media address (the relay sends its
/// RTP there; nothing reads it).
fn media_sink() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").unwrap()
}

fn customer(e: &Engine, scenario: &str, extra: &[&str]) -> SippRun {
    let mut args = vec!["-s", "support", "-m", "1"];
    args.extend_from_slice(extra);
    sipp_on(e, scenario, free_udp_port(), &args, CALL_TIMEOUT)
}

#[test]
fn agent_on_tcp_takes_calls_from_udp_and_tcp_customers() {
    let (mut e, _cfg) = start("");
    let mut agent = tcp(e.sip_addr());
    agent.register(e.sip_addr(), "alice", "alice-pass");
    let sink = media_sink();
    let media = sink.local_addr().unwrap();

    // 1: a UDP customer talks 1 s and hangs up; the agent gets the
    // engine's INVITE and BYE over its TCP connection.
    const UDP_CALLS: usize = 3;
    let agent_side = std::thread::spawn(move || {
        let mut inv = agent.answer(media);
        let mut bye = agent.accept_bye(CALL_TIMEOUT);
        for _ in 1..UDP_CALLS {
            inv = agent.answer(media);
            bye = agent.accept_bye(CALL_TIMEOUT);
        }
        // 2: a TCP customer waits; the agent hangs up.
        let inv2 = agent.answer(media);
        std::thread::sleep(Duration::from_millis(500));
        let to = agent.dialog_to();
        agent.hang_up(&inv2, &to);
        (inv, bye, inv2, agent)
    });
    // Calls from several source ports, so that some land on the shard
    // that does not hold the agent's connection.
    for _ in 0..UDP_CALLS {
        let udp = customer(&e, "customer_call.xml", &["-d", "300"]);
        assert!(udp.ok(), "UDP customer failed\n{}\n{}", udp.describe(), e.log_tail(4000));
    }
    let tcp_run = customer(&e, "customer_wait_bye.xml", &["-t", "t1"]);
    let (inv, bye, inv2, agent) = agent_side.join().unwrap();
    assert!(tcp_run.ok(), "TCP customer failed\n{}\n{}\n{}", tcp_run.describe(), agent.history(), e.log_tail(4000));

    // The engine's requests to the agent say TCP in their Via and ask to
    // be reached on TCP (Contact transport).
    for m in [&inv, &bye, &inv2] {
        let via = m.header("Via").unwrap();
        assert!(via.starts_with("SIP/2.0/TCP "), "{via}\n{}", agent.history());
    }
    let contact = inv.header("Contact").unwrap();
    assert!(contact.contains("transport=tcp"), "{contact}");
    // The TCP customer got its BYE over TCP: SIPp logged it as received.
    assert!(tcp_run.messages.contains("BYE sip:"), "{}", tcp_run.describe());
    assert!(tcp_run.messages.contains("SIP/2.0/TCP"), "the TCP customer's messages:\n{}", tcp_run.describe());

    e.wait_no_calls(Duration::from_secs(10)).expect("calls ended");
    let m = e.metrics();
    assert!(m.sum("cc_sip_stream_messages_total") >= 8.0, "{}", m.0);
    eprintln!("sends relayed to the connection's shard: {}", m.sum("cc_sip_stream_relayed_total"));
    let cdrs = e.stop_and_cdrs();
    let answered = cdrs.iter().filter(|c| c["disposition"] == "answered").count();
    assert_eq!(answered, UDP_CALLS + 1, "{}", show_cdrs(&cdrs));
    drop(sink);
}

const OPTIONS: &str = "OPTIONS sip:{E} SIP/2.0\r\nVia: SIP/2.0/TCP {L};branch=z9hG4bK{B}\r\nMax-Forwards: 70\r\n\
     From: <sip:probe@{L}>;tag=t{B}\r\nTo: <sip:{E}>\r\nCall-ID: c{B}\r\nCSeq: {N} OPTIONS\r\nContent-Length: 0\r\n\r\n";

fn options<S: Read + Write>(c: &Conn<S>, e: SocketAddr, n: u32) -> String {
    OPTIONS
        .replace("SIP/2.0/TCP", &format!("SIP/2.0/{}", c.transport))
        .replace("{E}", &e.to_string())
        .replace("{L}", &c.local.to_string())
        .replace("{B}", &format!("{}{n}", token()))
        .replace("{N}", &n.to_string())
}

#[test]
fn framing_split_segments_two_in_one_and_keepalive() {
    let (e, _cfg) = start("");
    let mut c = tcp(e.sip_addr());
    // One message in three segments, with pauses between them.
    let m = options(&c, e.sip_addr(), 1);
    let bytes = m.as_bytes();
    for part in [&bytes[..7], &bytes[7..60], &bytes[60..]] {
        c.s.write_all(part).unwrap();
        c.s.flush().unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }
    let r = c.recv(Duration::from_secs(5)).expect("an answer to a split OPTIONS");
    assert_eq!(r.status(), Some(200), "{}", r.text);
    assert!(r.header("Via").unwrap().starts_with("SIP/2.0/TCP"), "{}", r.text);
    // Two messages in one segment: two answers, in order.
    let two = format!("{}{}", options(&c, e.sip_addr(), 2), options(&c, e.sip_addr(), 3));
    c.s.write_all(two.as_bytes()).unwrap();
    let a = c.recv(Duration::from_secs(5)).expect("first of two");
    let b = c.recv(Duration::from_secs(5)).expect("second of two");
    assert_eq!(a.header("CSeq").as_deref(), Some("2 OPTIONS"));
    assert_eq!(b.header("CSeq").as_deref(), Some("3 OPTIONS"));
    // RFC 5626 ping: CRLFCRLF is answered with CRLF.
    c.s.write_all(b"\r\n\r\n").unwrap();
    let mut pong = [0u8; 2];
    c.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.s.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"\r\n");
    let m = e.metrics();
    assert_eq!(m.sum("cc_sip_stream_pongs_total"), 1.0, "{}", m.0);
}

/// Reads until the engine closes the connection; how long that took.
fn wait_closed(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut b = [0u8; 1024];
    while start.elapsed() < limit {
        match s.read(&mut b) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

#[test]
fn slow_loris_and_missing_content_length_are_cut_off() {
    let (e, _cfg) = start("tcp_partial_timeout_ms = 1000");
    // A message trickled byte by byte never completes within 1 s.
    let mut c = tcp(e.sip_addr());
    let m = options(&c, e.sip_addr(), 1);
    let start = Instant::now();
    let mut closed = false;
    for b in m.as_bytes().iter().take(200) {
        if c.s.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        if start.elapsed() > Duration::from_secs(8) {
            break;
        }
    }
    let took = if closed { Some(start.elapsed()) } else { wait_closed(&mut c.s, Duration::from_secs(8)) };
    assert!(took.is_some(), "a trickled message was not cut off\n{}", e.log_tail(3000));
    let (v, m) = e.wait_metric("cc_sip_connections_closed_total", &[("reason", "partial_timeout")], 1.0);
    assert_eq!(v, Some(1.0), "{}", m.0);

    // A stream message without Content-Length cannot be framed: closed.
    let mut c = tcp(e.sip_addr());
    let bad = options(&c, e.sip_addr(), 2).replace("Content-Length: 0\r\n", "");
    c.s.write_all(bad.as_bytes()).unwrap();
    assert!(wait_closed(&mut c.s, Duration::from_secs(5)).is_some(), "no close after a message without Content-Length");
    let (v, m) = e.wait_metric("cc_sip_connections_closed_total", &[("reason", "missing_content_length")], 1.0);
    assert_eq!(v, Some(1.0), "{}", m.0);
    // The engine still serves others.
    let mut ok = tcp(e.sip_addr());
    let o = options(&ok, e.sip_addr(), 3);
    ok.send(&o);
    assert_eq!(ok.recv(Duration::from_secs(5)).and_then(|r| r.status()), Some(200));
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A self-signed certificate for "localhost", written as cert.pem/key.pem.
fn write_cert(dir: &Path) -> rcgen::CertifiedKey<rcgen::KeyPair> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.join("cert.pem"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
    ck
}

/// A TLS connection to `addr` trusting only `ck`; the handshake is done
/// (or failed: `None`) before it returns.
fn tls(addr: SocketAddr, ck: &rcgen::CertifiedKey<rcgen::KeyPair>) -> Option<Conn<TlsStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_nodelay(true).unwrap();
    while conn.is_handshaking() {
        if conn.complete_io(&mut s).is_err() {
            return None;
        }
    }
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let local = s.local_addr().unwrap();
    Some(Conn { s: rustls::StreamOwned::new(conn, s), buf: Vec::new(), local, transport: "TLS", log: Vec::new() })
}

#[test]
fn agent_on_tls_takes_a_call_and_the_certificate_reloads() {
    let dir = TempDir::new("tls-cfg");
    let first = write_cert(dir.path());
    let tls_port = free_tcp_port();
    let config = config(
        dir.path(),
        &format!("tls = true\ntls_port = {tls_port}\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\""),
    );
    let mut e = Engine::start_with(EngineOpts { config, shards: Some(2) });
    let tls_addr = SocketAddr::from(([127, 0, 0, 1], tls_port));
    let mut agent = tls(tls_addr, &first).unwrap_or_else(|| panic!("TLS handshake failed\n{}", e.log_tail(3000)));
    agent.register(e.sip_addr(), "alice", "alice-pass");
    let sink = media_sink();
    let media = sink.local_addr().unwrap();
    let agent_side = std::thread::spawn(move || {
        let inv = agent.answer(media);
        let bye = agent.accept_bye(CALL_TIMEOUT);
        (inv, bye, agent)
    });
    let udp = customer(&e, "customer_call.xml", &["-d", "1000"]);
    let (inv, bye, agent) = agent_side.join().unwrap();
    assert!(udp.ok(), "UDP customer failed\n{}\n{}\n{}", udp.describe(), agent.history(), e.log_tail(4000));
    for m in [&inv, &bye] {
        let via = m.header("Via").unwrap();
        assert!(via.starts_with("SIP/2.0/TLS "), "{via}\n{}", agent.history());
    }
    // Our Contact on TLS names the TLS port, so a phone that opens a new
    // connection for the dialog finds TLS there.
    let tls_contact = format!("127.0.0.1:{tls_port};transport=tls");
    assert!(inv.header("Contact").unwrap().contains(&tls_contact), "{}", inv.text);
    // A customer over TLS too; this time the agent hangs up, and the
    // engine's BYE reaches the customer over its TLS connection.
    let mut agent = agent;
    let agent_side = std::thread::spawn(move || {
        let inv = agent.answer(media);
        std::thread::sleep(Duration::from_millis(300));
        let to = agent.dialog_to();
        agent.hang_up(&inv, &to);
        agent
    });
    let mut cust = tls(tls_addr, &first).expect("customer's TLS handshake");
    let ok = cust.call(e.sip_addr(), "support", media);
    assert!(ok.header("Contact").unwrap().contains(&tls_contact), "{}", ok.text);
    let bye = cust.accept_bye(CALL_TIMEOUT);
    assert!(bye.header("Via").unwrap().starts_with("SIP/2.0/TLS "), "{}", cust.history());
    let agent = agent_side.join().unwrap();
    e.wait_no_calls(Duration::from_secs(10)).expect("calls ended");
    let m = e.metrics();
    assert!(m.get("cc_sip_stream_messages_total", &[("transport", "tls")]).unwrap_or(0.0) >= 8.0, "{}", m.0);
    drop((agent, cust));

    // A new certificate and a SIGHUP: the next handshakes use it.
    let second = write_cert(dir.path());
    let st = std::process::Command::new("kill").args(["-HUP", &e.pid().to_string()]).status().unwrap();
    assert!(st.success());
    let reloaded = poll(Duration::from_secs(10), || {
        let mut c = tls(tls_addr, &second)?;
        let o = options(&c, e.sip_addr(), 1);
        c.send(&o);
        (c.recv(Duration::from_secs(2))?.status() == Some(200)).then_some(())
    });
    assert!(reloaded.is_some(), "the reloaded certificate is not served\n{}", e.log_tail(3000));
    assert!(tls(tls_addr, &first).is_none(), "the old certificate is still served");
    let cdrs = e.stop_and_cdrs();
    assert_eq!(cdrs.iter().filter(|c| c["disposition"] == "answered").count(), 2, "{}", show_cdrs(&cdrs));
    drop(sink);
}

#[test]
fn agent_whose_connection_is_gone_is_unreachable_for_the_offer() {
    let (e, _cfg) = start("");
    let mut agent = tcp(e.sip_addr());
    agent.register(e.sip_addr(), "alice", "alice-pass");
    drop(agent);
    let (v, m) = e.wait_metric("cc_sip_connections_closed_total", &[("reason", "peer")], 1.0);
    assert_eq!(v, Some(1.0), "{}", m.0);
    // The caller waits 3 s, less than the 5 s ring timeout: the offer to
    // alice fails at once as a transport error (like an ICMP error on UDP),
    // not by ringing into the void, and the caller hangs up unharmed.
    let run = customer(&e, "customer_call.xml", &["-d", "3000"]);
    assert!(run.ok(), "customer failed\n{}\n{}", run.describe(), e.log_tail(4000));
    let (v, m) = e.wait_metric("cc_sip_client_transport_errors_total", &[], 1.0);
    assert!(v.unwrap_or(0.0) >= 1.0, "the offer over a closed connection was no transport error\n{}\n{}", m.0, e.log_tail(4000));
    assert!(m.get("cc_agent_missed_total", &[("agent", "alice")]).unwrap_or(0.0) >= 1.0, "{}", m.0);
}

#[test]
fn connections_per_source_ip_are_limited() {
    let (e, _cfg) = start_shards("tcp_max_connections_per_ip = 2", 1);
    let mut a = tcp(e.sip_addr());
    let mut b = tcp(e.sip_addr());
    for (c, n) in [(&mut a, 1), (&mut b, 2)] {
        let o = options(c, e.sip_addr(), n);
        c.send(&o);
        assert_eq!(c.recv(Duration::from_secs(5)).and_then(|r| r.status()), Some(200));
    }
    let mut third = tcp(e.sip_addr());
    assert!(wait_closed(&mut third.s, Duration::from_secs(5)).is_some(), "a third connection from one IP was kept");
    let (v, m) = e.wait_metric("cc_sip_connections_refused_total", &[("reason", "per_ip_limit")], 1.0);
    assert_eq!(v, Some(1.0), "{}", m.0);
    // Once one closes, a new one is taken.
    drop(a);
    let ok = poll(Duration::from_secs(5), || {
        let mut c = tcp(e.sip_addr());
        let o = options(&c, e.sip_addr(), 4);
        c.send(&o);
        (c.recv(Duration::from_secs(1))?.status() == Some(200)).then_some(())
    });
    assert!(ok.is_some(), "no connection accepted after one closed\n{}", e.log_tail(3000));
    drop(b);
}
