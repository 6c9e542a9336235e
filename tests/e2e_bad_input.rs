//! End-to-end: malformed and odd datagrams sent raw over UDP to the real
//! `cc-engine`. For every case either the expected status comes back (where a
//! response can be addressed) or nothing comes back and
//! `cc_sip_dropped_total` rises; in every case a valid OPTIONS sent right
//! after from the same socket gets its 200, and the engine never dies.
//!
//! Expected codes (RFC 3261 unless noted). Where more than one answer is
//! reasonable, the table accepts a small set; the reason is on the case:
//! - missing From/To/Call-ID/CSeq, bad CSeq, bad Content-Length, truncated,
//!   NUL bytes: 400, or dropped (a parser may give up before it can
//!   address a response; §18.3 allows discarding a UDP message whose body is
//!   shorter than its Content-Length).
//! - missing Via, garbage, binary, HTTP, stray responses: dropped (no one to
//!   answer; §18.1.2 stray responses are discarded).
//! - empty datagram, CRLF keep-alive, ACK without transaction: no answer (a
//!   CRLF pong is tolerated); counting them as drops is optional.
//! - 10 KiB request: 200 (UDP allows it), 400 or 513; ~65 KiB: 400 or 513
//!   or dropped.
//! - no blank line at the end of a datagram, duplicate Call-ID: 200 accepted
//!   (lenient), 400 also fine. Content-Length smaller than the body: the
//!   excess is discarded, and the remaining text/plain body may earn 415.
//! - SIP/3.0 → 505; Max-Forwards 0 → 483 (OPTIONS: 200 allowed, §16.3); unknown Require → 420 with
//!   Unsupported; unknown method → 405 with Allow (501 also per §8.2.1);
//!   BYE/CANCEL without dialog/transaction → 481; non-SIP URI → 416 (or 400).

mod common;
use common::*;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
enum Expect {
    /// One of these statuses must arrive.
    Status(&'static [u16]),
    /// Nothing may arrive, and cc_sip_dropped_total must rise.
    Drop,
    /// One of these statuses, or nothing and cc_sip_dropped_total rises.
    StatusOrDrop(&'static [u16]),
    /// Nothing may arrive (a bare CRLF pong is fine); counter optional.
    Silent,
}

type Check = fn(&Msg) -> Result<(), String>;

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    expect: Expect,
    /// Extra check on the response, if one arrived.
    check: Option<Check>,
}

fn base(local: SocketAddr, port: u16, method: &str) -> String {
    Req::new(method, &format!("sip:127.0.0.1:{port}")).build_for(local)
}

fn without(msg: &str, header: &str) -> String {
    msg.split("\r\n")
        .filter(|l| {
            !l.to_ascii_lowercase()
                .starts_with(&format!("{}:", header.to_ascii_lowercase()))
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn replace_header(msg: &str, header: &str, new_line: &str) -> String {
    msg.split("\r\n")
        .map(|l| {
            if l.to_ascii_lowercase()
                .starts_with(&format!("{}:", header.to_ascii_lowercase()))
            {
                new_line.to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// Inserts `line` just before Content-Length.
fn with(msg: &str, line: &str) -> String {
    msg.replacen("Content-Length:", &format!("{line}\r\nContent-Length:"), 1)
}

fn with_body(msg: &str, body: &str, content_length: &str) -> String {
    let head = msg.split("\r\n\r\n").next().unwrap();
    let head = replace_header(
        head,
        "Content-Length",
        &format!("Content-Length: {content_length}"),
    );
    format!("{head}\r\nContent-Type: text/plain\r\n\r\n{body}")
}

fn junk(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn padded(msg: &str, total: usize) -> String {
    let pad = total.saturating_sub(msg.len() + 10);
    with(msg, &format!("X-Pad: {}", "a".repeat(pad)))
}

fn has_allow(m: &Msg) -> Result<(), String> {
    if m.status() == Some(405) && m.header("Allow").is_none() {
        return Err("405 without Allow".into());
    }
    Ok(())
}

fn has_unsupported(m: &Msg) -> Result<(), String> {
    match m.header("Unsupported") {
        Some(u) if u.contains("x-cc-e2e-nonexistent") => Ok(()),
        other => Err(format!(
            "420 must list the option in Unsupported, got {other:?}"
        )),
    }
}

fn cases(local: SocketAddr, port: u16) -> Vec<Case> {
    use Expect::*;
    let opt = base(local, port, "OPTIONS");
    let c = |name, s: String, expect| Case {
        name,
        bytes: s.into_bytes(),
        expect,
        check: None,
    };
    let b = |name, bytes: Vec<u8>, expect| Case {
        name,
        bytes,
        expect,
        check: None,
    };
    let mut v = vec![
        c("garbage text", "hello, this is not SIP at all\r\n\r\n".into(), Drop),
        b("binary junk 512 B", junk(512, 0x9e3779b97f4a7c15), Drop),
        b("binary junk 1400 B", junk(1400, 42), Drop),
        b("only NUL bytes", vec![0u8; 1024], Drop),
        b("empty datagram", vec![], Silent),
        c("CRLF keep-alive", "\r\n\r\n".into(), Silent),
        c("truncated mid-header", opt[..opt.len() / 2].to_string(), StatusOrDrop(&[400])),
        // over UDP the datagram ends the message: accepting it as header-only is a fair reading
        c("no blank line after headers", opt.trim_end().to_string(), StatusOrDrop(&[200, 400])),
        c("10 KiB OPTIONS (UDP allows it)", padded(&opt, 10 * 1024), StatusOrDrop(&[200, 400, 513])),
        c("~65 KiB OPTIONS", padded(&opt, 65_000), StatusOrDrop(&[400, 513])),
        c("8 KiB single header line", with(&opt, &format!("Subject: {}", "s".repeat(8000))), StatusOrDrop(&[200, 400, 513])),
        c("missing Via", without(&opt, "Via"), Drop),
        c("missing From", without(&opt, "From"), StatusOrDrop(&[400])),
        c("missing To", without(&opt, "To"), StatusOrDrop(&[400])),
        c("missing Call-ID", without(&opt, "Call-ID"), StatusOrDrop(&[400])),
        c("missing CSeq", without(&opt, "CSeq"), StatusOrDrop(&[400])),
        c("Content-Length larger than body", with_body(&opt, "hello", "500"), StatusOrDrop(&[400])),
        c("Content-Length non-numeric", with_body(&opt, "hello", "five"), StatusOrDrop(&[400])),
        c("Content-Length negative", with_body(&opt, "hello", "-5"), StatusOrDrop(&[400])),
        c("Content-Length overflow", with_body(&opt, "hello", "99999999999999999999999"), StatusOrDrop(&[400])),
        // §18.3: the extra bytes are discarded; the 5-byte text/plain body then earns 415 (OPTIONS has no use for it)
        c("Content-Length smaller than body (extra bytes discarded)", with_body(&opt, "hello, extra bytes", "5"), Status(&[200, 415])),
        c("CSeq non-numeric", replace_header(&opt, "CSeq", "CSeq: abc OPTIONS"), StatusOrDrop(&[400])),
        c("CSeq method mismatch", replace_header(&opt, "CSeq", "CSeq: 1 INVITE"), StatusOrDrop(&[400])),
        c("CSeq above 2^31", replace_header(&opt, "CSeq", "CSeq: 4294967296 OPTIONS"), StatusOrDrop(&[400])),
        c("Max-Forwards non-numeric", replace_header(&opt, "Max-Forwards", "Max-Forwards: lots"), StatusOrDrop(&[400])),
        c("NUL bytes inside a header", opt.replacen("User-Agent: cc-engine-e2e", "User-Agent: cc\0\0engine", 1), StatusOrDrop(&[400])),
        c("header line without colon", with(&opt, "ThisLineHasNoColon"), StatusOrDrop(&[400])),
        c("request line without version", opt.replacen(" SIP/2.0\r\n", "\r\n", 1), StatusOrDrop(&[400])),
        c("UTF-8 BOM before request line", format!("\u{feff}{opt}"), StatusOrDrop(&[400])),
        // §7.3.1 forbids it; taking the first Call-ID is the lenient choice the engine makes
        c("duplicate Call-ID headers", with(&opt, "Call-ID: another-one@e2e"), StatusOrDrop(&[200, 400])),
        c("HTTP request", format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"), Drop),
        c("SIP/3.0 version", opt.replacen(" SIP/2.0\r\n", " SIP/3.0\r\n", 1), Status(&[505])),
        // §16.3 step 3: an element MAY answer an OPTIONS with Max-Forwards 0 itself
        c("OPTIONS Max-Forwards 0", replace_header(&opt, "Max-Forwards", "Max-Forwards: 0"), Status(&[200, 483])),
        c(
            "INVITE Max-Forwards 0",
            replace_header(&Req::new("INVITE", "sip:support@127.0.0.1").build_for(local), "Max-Forwards", "Max-Forwards: 0"),
            Status(&[483]),
        ),
        c(
            "BYE Max-Forwards 0",
            replace_header(&Req::new("BYE", "sip:alice@127.0.0.1").to("alice").with_to_tag("cc0-abc").build_for(local), "Max-Forwards", "Max-Forwards: 0"),
            Status(&[483]),
        ),
        c("non-SIP Request-URI scheme", opt.replacen(&format!("OPTIONS sip:127.0.0.1:{port}"), &format!("OPTIONS http://127.0.0.1:{port}/"), 1), Status(&[416, 400])),
        c("BYE for no dialog", base(local, port, "BYE"), Status(&[481])),
        c("CANCEL for no transaction", base(local, port, "CANCEL"), Status(&[481])),
        c("ACK for no transaction", base(local, port, "ACK"), Silent),
        c(
            "response with no matching transaction",
            format!(
                "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKcc0-nosuchtxn\r\n\
                 From: <sip:e2e@127.0.0.1>;tag=1\r\nTo: <sip:e2e@127.0.0.1>;tag=2\r\n\
                 Call-ID: stray-{}@e2e\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
                token()
            ),
            Drop,
        ),
        c(
            "response with a non-numeric status",
            format!(
                "SIP/2.0 2x0 Weird\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKcc0-weird\r\n\
                 From: <sip:e2e@127.0.0.1>;tag=1\r\nTo: <sip:e2e@127.0.0.1>;tag=2\r\n\
                 Call-ID: weird-{}@e2e\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
                token()
            ),
            Drop,
        ),
        // odd but legal, or leniently accepted
        c(
            "compact header forms",
            format!(
                "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nv: SIP/2.0/UDP {local};rport;branch=z9hG4bK{}\r\n\
                 Max-Forwards: 70\r\nf: <sip:e2e@127.0.0.1>;tag=c1\r\nt: <sip:127.0.0.1:{port}>\r\n\
                 i: {}@e2e\r\nCSeq: 7 OPTIONS\r\nl: 0\r\n\r\n",
                token(),
                token()
            ),
            Status(&[200]),
        ),
        c("non-UTF-8 display name", String::new(), StatusOrDrop(&[200, 400])), // bytes set below
        c("LF-only line endings", opt.replace("\r\n", "\n"), StatusOrDrop(&[200, 400])),
        c("leading CRLFs before request line (§7.5: SHOULD ignore)", format!("\r\n\r\n{opt}"), StatusOrDrop(&[200, 400])),
        c(
            "100 Via headers",
            with(&opt, &(0..99).map(|i| format!("Via: SIP/2.0/UDP 10.0.0.{}:5060;branch=z9hG4bKv{i}", i % 250)).collect::<Vec<_>>().join("\r\n")),
            StatusOrDrop(&[200, 400, 513]),
        ),
        c("Via without branch (RFC 2543)", replace_header(&opt, "Via", &format!("Via: SIP/2.0/UDP {local}")), StatusOrDrop(&[200, 400])),
        c("unknown Via transport", replace_header(&opt, "Via", &format!("Via: SIP/2.0/FOO {local};branch=z9hG4bK{}", token())), StatusOrDrop(&[200, 400])),
    ];
    // non-UTF-8 bytes in the From display name
    let i = v
        .iter()
        .position(|c| c.name == "non-UTF-8 display name")
        .unwrap();
    let mut nb =
        replace_header(&opt, "From", "From: \"XX\" <sip:e2e@127.0.0.1>;tag=nu8").into_bytes();
    let pos = nb.windows(4).position(|w| w == b"\"XX\"").unwrap();
    nb[pos + 1] = 0xff;
    nb[pos + 2] = 0xc3;
    v[i].bytes = nb;

    v.push(Case {
        name: "unknown Require",
        bytes: with(&opt, "Require: x-cc-e2e-nonexistent").into_bytes(),
        expect: Status(&[420]),
        check: Some(has_unsupported),
    });
    v.push(Case {
        name: "unknown method",
        bytes: base(local, port, "FROBNICATE").into_bytes(),
        expect: Status(&[405, 501]),
        check: Some(has_allow),
    });
    v.push(Case {
        name: "lowercase method (methods are case-sensitive)",
        bytes: base(local, port, "options").into_bytes(),
        expect: Status(&[405, 501]),
        check: Some(has_allow),
    });
    v
}

/// Sends `bad`, then a valid OPTIONS, from `sock`. Returns (final responses
/// to anything but the OPTIONS, whether the OPTIONS got 200).
fn probe(e: &Engine, sock: &UdpSocket, bad: &[u8]) -> (Vec<Msg>, bool) {
    let local = sock.local_addr().unwrap();
    sock.send_to(bad, e.sip_addr()).expect("send bad datagram");
    // the engine answers in order per source; a short gap keeps the two apart
    std::thread::sleep(Duration::from_millis(20));
    let ok_req = Req::new("OPTIONS", &format!("sip:127.0.0.1:{}", e.sip_port));
    let ok_id = ok_req.call_id.clone();
    sock.send_to(ok_req.build_for(local).as_bytes(), e.sip_addr())
        .unwrap();
    let mut others = vec![];
    let mut ok = false;
    let deadline = Instant::now() + SIP_TIMEOUT;
    let mut grace_until: Option<Instant> = None;
    let mut buf = vec![0u8; 65536];
    loop {
        let end = grace_until.unwrap_or(deadline);
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        sock.set_read_timeout(Some(left)).unwrap();
        let n = match sock.recv_from(&mut buf) {
            Ok((n, _)) => n,
            Err(_) => break,
        };
        let m = match Msg::parse(&buf[..n]) {
            Some(m) => m,
            None => continue, // CRLF pong
        };
        match m.status() {
            Some(s) if s < 200 => continue,
            _ => {}
        }
        if m.call_id().as_deref() == Some(ok_id.as_str()) {
            ok = m.status() == Some(200);
            grace_until.get_or_insert(Instant::now() + Duration::from_millis(150));
        } else {
            others.push(m);
        }
    }
    (others, ok)
}

#[test]
fn malformed_datagrams_get_rfc_answer_or_counted_drop() {
    let e = Engine::start();
    // the shards publish their first counters ~100 ms after start
    let (_, m0) = e.wait_metric("cc_sip_dropped_total", &[], 0.0);
    assert!(
        m0.0.contains("cc_sip_dropped_total"),
        "/metrics must expose cc_sip_dropped_total{{reason=...}} (possibly only after a drop); got:\n{}",
        m0.0
    );
    let probe_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let all = cases(probe_sock.local_addr().unwrap(), e.sip_port);
    drop(probe_sock);
    assert!(
        all.len() >= 30,
        "need at least 30 cases, have {}",
        all.len()
    );

    let mut failures = vec![];
    let mut table = vec![];
    for case in cases_for_each_socket(&e) {
        let (sock, case) = case;
        // shards publish their counters every 100 ms: let the previous case's
        // counts land before taking the baseline
        std::thread::sleep(Duration::from_millis(150));
        let before = e.metrics().sum("cc_sip_dropped_total");
        let (answers, options_ok) = probe(&e, &sock, &case.bytes);
        let got: Vec<u16> = answers.iter().filter_map(|m| m.status()).collect();
        let non_sip = answers.iter().filter(|m| m.status().is_none()).count();
        let mut verdict: Result<String, String>;
        let dropped_rose = || {
            poll(Duration::from_secs(2), || {
                (e.metrics().sum("cc_sip_dropped_total") > before).then_some(())
            })
            .is_some()
        };
        if non_sip > 0 {
            verdict = Err(format!("non-SIP reply: {:?}", answers[0].text));
        } else if got.len() > 1 {
            verdict = Err(format!("{} answers to one datagram: {got:?}", got.len()));
        } else {
            match (case.expect, got.first()) {
                (Expect::Status(ok), Some(s)) | (Expect::StatusOrDrop(ok), Some(s)) => {
                    if ok.contains(s) {
                        verdict = Ok(format!("{s}"));
                        if let Some(chk) = case.check {
                            if let Err(why) = chk(&answers[0]) {
                                verdict = Err(why);
                            }
                        }
                    } else {
                        verdict = Err(format!(
                            "got {s}, expected one of {ok:?}\n{}",
                            answers[0].text
                        ));
                    }
                }
                (Expect::Status(ok), None) => {
                    verdict = Err(format!("no answer, expected one of {ok:?}"))
                }
                (Expect::Drop, Some(s)) | (Expect::Silent, Some(s)) => {
                    verdict = Err(format!("got {s}, expected no answer\n{}", answers[0].text))
                }
                (Expect::Drop, None) | (Expect::StatusOrDrop(_), None) => {
                    verdict = if dropped_rose() {
                        Ok("dropped+counted".into())
                    } else {
                        Err("no answer and cc_sip_dropped_total did not rise".into())
                    }
                }
                (Expect::Silent, None) => verdict = Ok("silent".into()),
            }
        }
        if !options_ok {
            verdict = Err(format!(
                "{} / and the OPTIONS sent right after got no 200",
                verdict.clone().unwrap_or_else(|e| e)
            ));
        }
        match &verdict {
            Ok(v) => table.push(format!("  ok   {:<58} {v}", case.name)),
            Err(why) => {
                table.push(format!(
                    "  FAIL {:<58} {}",
                    case.name,
                    why.lines().next().unwrap_or("")
                ));
                failures.push(format!("[{}] {why}", case.name));
            }
        }
    }
    eprintln!(
        "bad-input table ({} cases):\n{}",
        table.len(),
        table.join("\n")
    );
    assert!(
        e.options_ok(),
        "engine stopped answering after the bad-input run"
    );
    let m = e.metrics();
    eprintln!(
        "drops by reason:\n{}",
        m.0.lines()
            .filter(|l| l.starts_with("cc_sip_dropped_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n\n")
    );
}

/// Each case on a fresh socket (fresh source port), with its Via naming it.
fn cases_for_each_socket(e: &Engine) -> Vec<(UdpSocket, Case)> {
    let n = cases(SocketAddr::from(([127, 0, 0, 1], 9)), e.sip_port).len();
    (0..n)
        .map(|i| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut cs = cases(s.local_addr().unwrap(), e.sip_port);
            (s, cs.swap_remove(i))
        })
        .collect()
}

#[test]
fn a_burst_of_junk_does_not_stop_the_engine() {
    let e = Engine::start();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let before = e.metrics().sum("cc_sip_dropped_total");
    for i in 0..500u64 {
        let _ = sock.send_to(&junk(64 + (i as usize * 7) % 1300, i + 1), e.sip_addr());
    }
    let rose = poll(Duration::from_secs(3), || {
        (e.metrics().sum("cc_sip_dropped_total") > before).then_some(())
    });
    assert!(
        rose.is_some(),
        "500 junk datagrams, cc_sip_dropped_total did not rise"
    );
    assert!(e.options_ok(), "no OPTIONS 200 after 500 junk datagrams");
}
