//! cc-bench against the real engine (debug builds, loopback, a few seconds).
//!
//! Smoke, not speed: the JSON must show zero failures and non-empty
//! histograms for every figure the mode produces. Timing decides nothing.
//!
//! Counting: cc-bench must report exactly the failures the engine (and a
//! lossy link in front of it) causes: calls to an unknown queue are
//! rejected `404` by the engine, and a proxy between cc-bench and the
//! engine drops every 4th INVITE, which cc-bench must count as exactly that
//! many `INVITE timeout`s — no more, no fewer, nothing else.
//!
//! Queued calls (customer → queue → agent → bridge, RTP both ways) run
//! through the real engine in `calls_smoke_full_path`. The call and RTP code
//! is also driven through a minimal fake B2BUA (module `fake`) that injects
//! faults the engine would not (503s, hang-ups not passed on), so counting
//! is checked exactly, by reason.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BENCH: &str = env!("CARGO_BIN_EXE_cc-bench");
const ENGINE: &str = env!("CARGO_BIN_EXE_cc-engine");

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Engine {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The bench config: `n` agents agent0001… (pw-agent0001…) in queue
/// `support`, no wrap-up, room for every waiting call.
fn bench_config(n: usize, answer: &str) -> String {
    let mut s = String::from(
        "[engine]\nshards = 1\nstate_dir = \"state\"\nlog_level = \"warn\"\nio_memory_kib = 256\ngroup_commit_ms = 5\n\n\
         [sip]\nlisten = \"127.0.0.1:5060\"\ndomain = \"127.0.0.1\"\nrealm = \"cc-engine\"\n\n\
         [registrar]\nmin_expires = 60\nmax_expires = 3600\ndefault_expires = 3600\nmax_contacts = 3\nnonce_lifetime_s = 300\nalgorithms = [\"MD5\", \"SHA-256\"]\n\n\
         [media]\naddress = \"127.0.0.1\"\nrtp_port_min = 12000\nrtp_port_max = 19999\ncodecs = [\"PCMU\", \"PCMA\", \"telephone-event\"]\nmedia_timeout_s = 60\n\n",
    );
    s.push_str(&format!(
        "[[queue]]\nname = \"support\"\nstrategy = \"longest-idle\"\nanswer = \"{answer}\"\nmax_waiting = 10000\nring_timeout_s = 15\nwrap_up_s = 0\n\n"
    ));
    s.push_str("[[queue]]\nname = \"waiting\"\nanswer = \"on-agent\"\nmax_waiting = 10000\n\n");
    for i in 1..=n {
        s.push_str(&format!("[[agent]]\nid = \"agent{i:04}\"\npassword = \"pw-agent{i:04}\"\nqueues = [\"support\"]\n\n"));
    }
    s
}

fn start_engine(agents: usize, answer: &str) -> Engine {
    let dir = std::env::temp_dir().join(format!(
        "cc-bench-smoke-{}-{}",
        std::process::id(),
        free_udp_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("bench.toml");
    std::fs::write(&cfg, bench_config(agents, answer)).unwrap();
    let port = free_udp_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = Command::new(ENGINE)
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            &addr.to_string(),
        ])
        .args(["--state-dir", dir.join("state").to_str().unwrap()])
        .args([
            "--mgmt",
            &format!("127.0.0.1:{}", free_tcp_port()),
            "--shards",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start cc-engine");
    wait_options(addr);
    Engine { child, addr, dir }
}

/// Waits until the engine answers OPTIONS (bounded).
fn wait_options(addr: SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let local = s.local_addr().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let req = format!(
            "OPTIONS sip:{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKsmoke{}\r\nFrom: <sip:probe@{addr}>;tag=p\r\nTo: <sip:{addr}>\r\nCall-ID: probe-{}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            Instant::now().elapsed().as_nanos(),
            local.port()
        );
        let _ = s.send_to(req.as_bytes(), addr);
        let mut b = [0u8; 2048];
        if let Ok((n, _)) = s.recv_from(&mut b) {
            if b[..n].starts_with(b"SIP/2.0 200") {
                return;
            }
        }
    }
    panic!("engine did not answer OPTIONS on {addr}");
}

/// Runs cc-bench (bounded in time) and returns its JSON and exit code.
fn bench(
    args: &[&str],
    engine: &Engine,
    target: SocketAddr,
    json: &Path,
) -> (serde_json::Value, i32) {
    bench_pid(args, Some(engine.child.id()), target, json)
}

fn bench_pid(
    args: &[&str],
    pid: Option<u32>,
    target: SocketAddr,
    json: &Path,
) -> (serde_json::Value, i32) {
    let pid_args: Vec<String> = pid
        .map(|p| vec!["--engine-pid".to_string(), p.to_string()])
        .unwrap_or_default();
    let mut child = Command::new(BENCH)
        .args(args)
        .args(["--engine", &target.to_string()])
        .args(&pid_args)
        .args(["--json", json.to_str().unwrap(), "--quiet"])
        .stdout(Stdio::null())
        .spawn()
        .expect("start cc-bench");
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("cc-bench {args:?} did not finish in 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(json).expect("cc-bench wrote its JSON");
    (
        serde_json::from_str(&text).unwrap(),
        status.code().unwrap_or(-1),
    )
}

fn hist_count(j: &serde_json::Value, k: &str) -> u64 {
    j["histograms"][k]["count"].as_u64().unwrap_or(0)
}

#[test]
fn register_smoke() {
    let e = start_engine(20, "immediate");
    let json = e.dir.join("register.json");
    let (j, code) = bench(
        &[
            "register",
            "--agents",
            "20",
            "--rate",
            "40",
            "--duration",
            "2",
            "--workers",
            "2",
        ],
        &e,
        e.addr,
        &json,
    );
    assert_eq!(j["failures_total"], 0, "{j:#}");
    assert_eq!(code, 0);
    assert_eq!(
        j["counts"]["registrations"], 80,
        "open loop: 40/s for 2 s, {j:#}"
    );
    for k in ["register_rtt", "registration"] {
        assert!(hist_count(&j, k) > 0, "histogram {k} empty: {j:#}");
        assert!(j["histograms"][k]["p50_us"].as_f64().unwrap() > 0.0);
    }
    // 401 + 200 per registration.
    assert_eq!(hist_count(&j, "register_rtt"), 160);
    assert!(
        j["engine"]["cpu_us_per_registration"].as_f64().unwrap() > 0.0,
        "{j:#}"
    );
    assert!(j["engine"]["rss_base_kib"].as_u64().unwrap() > 0);
    assert_eq!(j["engine"]["shards"], "1");
}

#[test]
fn unknown_agent_registrations_are_counted_exactly() {
    // agent0003 does not exist in a 2-agent config: its REGISTERs get 404.
    let e = start_engine(2, "immediate");
    let json = e.dir.join("reg404.json");
    let (j, code) = bench(
        &[
            "register",
            "--agents",
            "3",
            "--rate",
            "30",
            "--duration",
            "1",
            "--workers",
            "1",
        ],
        &e,
        e.addr,
        &json,
    );
    assert_eq!(code, 1);
    // 30 operations round-robin over 3 agents: exactly 10 for agent0003.
    assert_eq!(
        j["failures"],
        serde_json::json!({"REGISTER 404": 10}),
        "{j:#}"
    );
    assert_eq!(j["counts"]["registrations"], 20);
}

/// A UDP relay in front of the engine that drops every `nth` initial INVITE
/// (bench → engine). One bench socket: replies go back to its address.
struct LossyLink {
    addr: SocketAddr,
    dropped: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Drop for LossyLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn lossy_link(engine: SocketAddr, nth: u64) -> LossyLink {
    let front = UdpSocket::bind("127.0.0.1:0").unwrap();
    let back = UdpSocket::bind("127.0.0.1:0").unwrap();
    front
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    back.set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let addr = front.local_addr().unwrap();
    let dropped = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (d, st) = (dropped.clone(), stop.clone());
    std::thread::spawn(move || {
        let mut client: Option<SocketAddr> = None;
        let mut invites = 0u64;
        let mut b = [0u8; 8192];
        while !st.load(Ordering::SeqCst) {
            if let Ok((n, from)) = front.recv_from(&mut b) {
                client = Some(from);
                if b[..n].starts_with(b"INVITE ") {
                    invites += 1;
                    if invites.is_multiple_of(nth) {
                        d.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                }
                let _ = back.send_to(&b[..n], engine);
            }
            if let Ok((n, _)) = back.recv_from(&mut b) {
                if let Some(c) = client {
                    let _ = front.send_to(&b[..n], c);
                }
            }
        }
    });
    LossyLink {
        addr,
        dropped,
        stop,
    }
}

#[test]
fn rejected_and_dropped_calls_are_counted_exactly() {
    let e = start_engine(2, "immediate");
    let link = lossy_link(e.addr, 4);
    let json = e.dir.join("reject.json");
    // 20 calls/s for 2 s to a queue that does not exist: the engine answers
    // 404; the link drops calls 4, 8, 12… before the engine sees them.
    let (j, code) = bench(
        &[
            "calls",
            "--agents",
            "2",
            "--rate",
            "20",
            "--duration",
            "2",
            "--queue",
            "nosuchqueue",
            "--workers",
            "1",
            "--sockets",
            "1",
            "--timeout-ms",
            "1500",
        ],
        &e,
        link.addr,
        &json,
    );
    assert_eq!(code, 1);
    let attempted = j["counts"]["calls attempted"].as_u64().unwrap();
    assert_eq!(attempted, 40, "{j:#}");
    let dropped = link.dropped.load(Ordering::SeqCst);
    assert_eq!(dropped, 10);
    let mut want = serde_json::Map::new();
    want.insert("INVITE 404".into(), (attempted - dropped).into());
    want.insert("INVITE timeout".into(), dropped.into());
    assert_eq!(j["failures"], serde_json::Value::Object(want), "{j:#}");
    assert_eq!(j["failures_total"].as_u64().unwrap(), attempted);
    // Rejected calls never reach an agent and are not counted twice.
    assert_eq!(j["counts"]["calls offered to an agent"], 0);
}

/// Queued calls end to end through the real engine, with RTP both ways:
/// zero failures, every figure non-empty, one sample per call.
#[test]
fn calls_smoke_full_path() {
    let e = start_engine(4, "immediate");
    let json = e.dir.join("calls.json");
    let (j, _code) = bench(
        &[
            "calls",
            "--agents",
            "4",
            "--rate",
            "4",
            "--duration",
            "2",
            "--talk",
            "1",
            "--rtp",
            "--workers",
            "2",
            "--timeout-ms",
            "3000",
        ],
        &e,
        e.addr,
        &json,
    );
    let attempted = j["counts"]["calls attempted"].as_u64().unwrap();
    assert_eq!(attempted, 8, "{j:#}");
    assert_eq!(j["failures_total"], 0, "{j:#}");
    for k in [
        "invite_200",
        "invite_agent_invite",
        "answer_to_media",
        "relay",
    ] {
        assert!(hist_count(&j, k) > 0, "histogram {k} empty: {j:#}");
    }
    assert_eq!(hist_count(&j, "invite_200"), attempted);
    assert_eq!(hist_count(&j, "invite_agent_invite"), attempted);
    assert_eq!(j["counts"]["agent answers (200)"].as_u64(), Some(attempted));
    assert_eq!(j["counts"]["rtp lost (gaps)"], 0, "{j:#}");
    assert!(j["engine"]["cpu_us_per_call"].as_f64().unwrap() > 0.0);
}

/// A minimal B2BUA with the engine's queued-call wire behaviour,
/// to test cc-bench's call and RTP code before the engine has it, and to
/// inject faults the engine would not: every `reject_nth` customer INVITE
/// is answered 503, every `lose_bye_nth` hang-up is not passed on to the
/// other leg. Digest is not verified (the real engine tests that).
mod fake {
    use std::collections::HashMap;
    use std::net::{SocketAddr, UdpSocket};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    pub struct Faults {
        pub reject_nth: u64,
        pub lose_bye_nth: u64,
    }

    fn hdr<'a>(m: &'a str, name: &str) -> Option<&'a str> {
        m.split("\r\n")
            .skip(1)
            .take_while(|l| !l.is_empty())
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
            })
    }
    fn vias(m: &str) -> String {
        m.split("\r\n")
            .skip(1)
            .take_while(|l| !l.is_empty())
            .filter(|l| l.to_ascii_lowercase().starts_with("via:"))
            .map(|l| format!("{l}\r\n"))
            .collect()
    }
    fn uri_addr(v: &str) -> Option<SocketAddr> {
        let u = v
            .split('<')
            .nth(1)
            .and_then(|r| r.split('>').next())
            .unwrap_or(v);
        u.strip_prefix("sip:")?
            .rsplit('@')
            .next()?
            .split(';')
            .next()?
            .parse()
            .ok()
    }
    fn body(m: &str) -> &str {
        m.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("")
    }
    fn sdp_addr(b: &str) -> Option<SocketAddr> {
        let port = b
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))?
            .split(' ')
            .next()?;
        format!("127.0.0.1:{port}").parse().ok()
    }
    fn sdp(port: u16) -> String {
        format!("v=0\r\no=fake 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
    }
    fn resp(req: &str, code: &str, tag: &str, extra: &str, body: &str) -> String {
        let to = hdr(req, "to").unwrap_or("");
        let to = if to.contains("tag=") {
            to.to_string()
        } else {
            format!("{to};tag={tag}")
        };
        format!(
            "SIP/2.0 {code}\r\n{}From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            vias(req),
            hdr(req, "from").unwrap_or(""),
            hdr(req, "call-id").unwrap_or(""),
            hdr(req, "cseq").unwrap_or(""),
            body.len()
        )
    }

    struct Call {
        cust: SocketAddr,
        cust_contact: SocketAddr,
        cust_from: String, // customer's From (with tag): To of our BYE
        cust_to: String,   // our side toward the customer (with tag)
        cust_cid: String,
        agent: SocketAddr,
        agent_cid: String,
        agent_to: Option<String>, // agent's To (with its tag)
        agent_from: String,
        rc: UdpSocket,
        ra: UdpSocket,
        cust_media: Option<SocketAddr>,
        agent_media: Option<SocketAddr>,
        done: bool,
    }

    pub fn start(f: Faults) -> (SocketAddr, Arc<AtomicBool>) {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        let me = s.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        std::thread::spawn(move || {
            let mut contacts: Vec<(SocketAddr, String)> = Vec::new();
            let mut calls: Vec<Call> = Vec::new();
            let mut by_cid: HashMap<String, usize> = HashMap::new();
            let (mut invites, mut byes, mut rr, mut n) = (0u64, 0u64, 0usize, 0u64);
            let mut b = [0u8; 8192];
            while !st.load(Ordering::SeqCst) {
                for c in calls.iter().filter(|c| !c.done) {
                    while let Ok(k) = c.rc.recv(&mut b) {
                        if let Some(a) = c.agent_media {
                            let _ = c.ra.send_to(&b[..k], a);
                        }
                    }
                    while let Ok(k) = c.ra.recv(&mut b) {
                        if let Some(a) = c.cust_media {
                            let _ = c.rc.send_to(&b[..k], a);
                        }
                    }
                }
                let Ok((k, from)) = s.recv_from(&mut b) else {
                    continue;
                };
                let m = String::from_utf8_lossy(&b[..k]).to_string();
                let cid = hdr(&m, "call-id").unwrap_or("").to_string();
                n += 1;
                if m.starts_with("REGISTER ") {
                    if hdr(&m, "authorization").is_none() {
                        let r = resp(&m, "401 Unauthorized", "r", "WWW-Authenticate: Digest realm=\"fake\", nonce=\"n0nce\", algorithm=MD5, qop=\"auth\"\r\n", "");
                        let _ = s.send_to(r.as_bytes(), from);
                    } else {
                        let uri = hdr(&m, "contact").map(|v| {
                            v.trim_start_matches('<')
                                .split('>')
                                .next()
                                .unwrap_or("")
                                .to_string()
                        });
                        if let (Some(c), Some(uri)) = (hdr(&m, "contact").and_then(uri_addr), uri) {
                            contacts.retain(|x| x.1 != uri);
                            if hdr(&m, "expires") != Some("0") {
                                contacts.push((c, uri));
                            }
                        }
                        let _ = s.send_to(resp(&m, "200 OK", "r", "", "").as_bytes(), from);
                    }
                } else if m.starts_with("INVITE ") && !by_cid.contains_key(&cid) {
                    invites += 1;
                    if f.reject_nth > 0 && invites % f.reject_nth == 0 {
                        let _ = s.send_to(
                            resp(&m, "503 Service Unavailable", "x", "", "").as_bytes(),
                            from,
                        );
                        continue;
                    }
                    let rc = UdpSocket::bind("127.0.0.1:0").unwrap();
                    let ra = UdpSocket::bind("127.0.0.1:0").unwrap();
                    rc.set_nonblocking(true).unwrap();
                    ra.set_nonblocking(true).unwrap();
                    let tag = format!("f{n}");
                    let extra =
                        format!("Contact: <sip:fake@{me}>\r\nContent-Type: application/sdp\r\n");
                    let r = resp(
                        &m,
                        "200 OK",
                        &tag,
                        &extra,
                        &sdp(rc.local_addr().unwrap().port()),
                    );
                    let _ = s.send_to(r.as_bytes(), from);
                    let (agent, agent_uri) = contacts[rr % contacts.len()].clone();
                    rr += 1;
                    let from_hdr = hdr(&m, "from").unwrap_or("").to_string();
                    let caller = from_hdr
                        .split(';')
                        .next()
                        .unwrap_or("")
                        .replace("@127.0.0.1", &format!("@{me}"));
                    let agent_cid = format!("fa{n}@fake");
                    let agent_from = format!("{caller};tag=fa{n}");
                    let body = sdp(ra.local_addr().unwrap().port());
                    let inv = format!(
                        "INVITE {agent_uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKfa{n}\r\nFrom: {agent_from}\r\nTo: <sip:agent@{agent}>\r\nCall-ID: {agent_cid}\r\nCSeq: 1 INVITE\r\nContact: <sip:fake@{me}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.send_to(inv.as_bytes(), agent);
                    let i = calls.len();
                    calls.push(Call {
                        cust: from,
                        cust_contact: hdr(&m, "contact").and_then(uri_addr).unwrap_or(from),
                        cust_from: from_hdr,
                        cust_to: format!("{};tag={tag}", hdr(&m, "to").unwrap_or("")),
                        cust_cid: cid.clone(),
                        agent,
                        agent_cid: agent_cid.clone(),
                        agent_to: None,
                        agent_from,
                        rc,
                        ra,
                        cust_media: sdp_addr(body_of(&m)),
                        agent_media: None,
                        done: false,
                    });
                    by_cid.insert(cid, i);
                    by_cid.insert(agent_cid, i);
                } else if m.starts_with("SIP/2.0 200")
                    && hdr(&m, "cseq").is_some_and(|c| c.ends_with("INVITE"))
                {
                    let Some(&i) = by_cid.get(&cid) else { continue };
                    let c = &mut calls[i];
                    c.agent_to = hdr(&m, "to").map(str::to_string);
                    c.agent_media = sdp_addr(body(&m));
                    let target = hdr(&m, "contact").and_then(uri_addr).unwrap_or(c.agent);
                    let ack = format!(
                        "ACK sip:a@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKack{n}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                        c.agent_from,
                        c.agent_to.as_deref().unwrap_or(""),
                        c.agent_cid
                    );
                    let _ = s.send_to(ack.as_bytes(), target);
                } else if m.starts_with("BYE ") {
                    let _ = s.send_to(resp(&m, "200 OK", "b", "", "").as_bytes(), from);
                    let Some(&i) = by_cid.get(&cid) else { continue };
                    let c = &mut calls[i];
                    if c.done {
                        continue;
                    }
                    c.done = true;
                    byes += 1;
                    if f.lose_bye_nth > 0 && byes % f.lose_bye_nth == 0 {
                        continue;
                    }
                    let bye = if cid == c.cust_cid {
                        format!(
                            "BYE sip:a@{} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKbye{n}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
                            c.agent, c.agent_from, c.agent_to.as_deref().unwrap_or(""), c.agent_cid
                        )
                    } else {
                        format!(
                            "BYE sip:c@{} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKbye{n}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
                            c.cust_contact, c.cust_to, c.cust_from, c.cust_cid
                        )
                    };
                    let dst = if cid == c.cust_cid { c.agent } else { c.cust };
                    let _ = s.send_to(bye.as_bytes(), dst);
                }
            }
        });
        (me, stop)
    }

    fn body_of(m: &str) -> &str {
        body(m)
    }
}

fn tmp_json(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("cc-bench-{}-{name}.json", std::process::id()))
}

/// Both sides of queued calls with RTP, through the fake B2BUA: every
/// figure non-empty, nothing failed, nothing lost.
#[test]
fn calls_and_rtp_through_fake_b2bua() {
    let (addr, stop) = fake::start(fake::Faults {
        reject_nth: 0,
        lose_bye_nth: 0,
    });
    let json = tmp_json("fake-ok");
    let (j, code) = bench_pid(
        &[
            "calls",
            "--agents",
            "4",
            "--rate",
            "10",
            "--duration",
            "2",
            "--talk",
            "1",
            "--rtp",
            "--workers",
            "2",
            "--timeout-ms",
            "1000",
        ],
        None,
        addr,
        &json,
    );
    stop.store(true, Ordering::SeqCst);
    eprintln!("{:#}\n{:#}", j["histograms"], j["counts"]);
    assert_eq!(j["failures_total"], 0, "{j:#}");
    assert_eq!(code, 0);
    assert_eq!(j["counts"]["calls attempted"], 20);
    for k in [
        "invite_200",
        "invite_agent_invite",
        "answer_to_media",
        "relay",
    ] {
        assert!(hist_count(&j, k) > 0, "histogram {k} empty: {j:#}");
    }
    assert_eq!(hist_count(&j, "invite_200"), 20);
    assert_eq!(hist_count(&j, "invite_agent_invite"), 20);
    assert_eq!(hist_count(&j, "answer_to_media"), 20);
    assert_eq!(j["counts"]["agent answers (200)"], 20);
    assert_eq!(j["counts"]["calls ended by customer"], 10, "{j:#}");
    assert_eq!(j["counts"]["calls ended by agent"], 10, "{j:#}");
    assert_eq!(j["counts"]["rtp lost (gaps)"], 0);
    // Every customer heard its agent (answer_to_media has 20 samples); the
    // other direction depends on the fake's relay keeping up on a loaded
    // machine, so it is not counted here. Every received packet was timed.
    assert!(
        j["counts"]["rtp streams received"].as_u64().unwrap() >= 20,
        "{j:#}"
    );
    // (Packets arriving after their call ended on this side are counted
    // apart, not timed.)
    let late = j["counts"]["rtp for a call this side no longer holds"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(
        j["histograms"]["relay"]["count"].as_u64().unwrap() + late,
        j["counts"]["rtp received"].as_u64().unwrap(),
        "{j:#}"
    );
    let _ = std::fs::remove_file(json);
}

/// Rejections and hang-ups that never reach the other leg are counted
/// exactly, by reason: every 5th INVITE → 503, every 4th BYE not passed on.
#[test]
fn fake_faults_are_counted_exactly() {
    let (addr, stop) = fake::start(fake::Faults {
        reject_nth: 5,
        lose_bye_nth: 4,
    });
    let json = tmp_json("fake-faults");
    let (j, code) = bench_pid(
        &[
            "calls",
            "--agents",
            "4",
            "--rate",
            "10",
            "--duration",
            "2",
            "--talk",
            "1",
            "--workers",
            "1",
            "--sockets",
            "1",
            "--timeout-ms",
            "1000",
        ],
        None,
        addr,
        &json,
    );
    stop.store(true, Ordering::SeqCst);
    assert_eq!(code, 1);
    assert_eq!(j["counts"]["calls attempted"], 20);
    let f = j["failures"].as_object().unwrap();
    assert_eq!(
        f.get("INVITE 503").and_then(|v| v.as_u64()),
        Some(4),
        "{j:#}"
    );
    let lost: u64 = f
        .iter()
        .filter(|(k, _)| k.starts_with("lost BYE"))
        .map(|(_, v)| v.as_u64().unwrap())
        .sum();
    // 16 calls connected, 16 hang-ups, every 4th not passed on.
    assert_eq!(lost, 4, "{j:#}");
    assert_eq!(j["failures_total"], 8, "nothing else counted: {j:#}");
    let _ = std::fs::remove_file(json);
}

/// Calls waiting in an on-agent queue with no agents (180), cancelled by
/// the customers after --talk: all 20 are cancelled cleanly (CANCEL → 200,
/// INVITE → 487), none counted as failed; RSS per waiting call reported.
#[test]
fn waiting_calls_smoke() {
    let e = start_engine(2, "immediate");
    let json = e.dir.join("hold.json");
    let (j, code) = bench(
        &[
            "hold",
            "--calls",
            "20",
            "--rate",
            "20",
            "--talk",
            "1",
            "--queue",
            "waiting",
            "--workers",
            "1",
            "--timeout-ms",
            "3000",
        ],
        &e,
        e.addr,
        &json,
    );
    assert_eq!(j["failures_total"], 0, "{j:#}");
    assert_eq!(code, 0);
    assert_eq!(j["counts"]["calls attempted"], 20);
    assert_eq!(j["counts"]["calls ringing (18x)"], 20, "{j:#}");
    assert_eq!(j["counts"]["calls cancelled while waiting"], 20, "{j:#}");
    assert!(j["engine"]["peak_concurrent_calls"].as_i64().unwrap() > 0);
    assert!(j["engine"]["rss_kib_per_concurrent_call"].is_number());
}
