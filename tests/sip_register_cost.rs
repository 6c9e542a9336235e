//! What one REGISTER costs the SIP endpoint alone (parse, transaction,
//! response, Timer J), in process, with time passed in: no sockets, no
//! routing shard, so the figure is not buried in the noise of a shared VM.
//! Prints figures and decides nothing (timing never decides a test):
//!
//!   cargo test --release --test sip_register_cost -- --ignored --nocapture
//!
//! Traffic as cc-bench's: every registration is a REGISTER answered 401
//! with two challenges, then one with credentials answered 200; one request
//! in ten is retransmitted while its transaction is Completed. Only the
//! endpoint's public API is used, so the file runs against older versions.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cc_engine::sip::{Endpoint, EndpointConfig, Output, ResponseSpec};

const RATE: u64 = 6_000; // requests per second of simulated time
const REQUESTS: u64 = 200_000;

fn register(i: u64) -> Vec<u8> {
    let agent = i / 2 % 2000;
    let auth = if i % 2 == 1 {
        "Authorization: Digest username=\"agent\", realm=\"cc-engine\", nonce=\"0123456789abcdef0123456789abcdef\", uri=\"sip:127.0.0.1\", response=\"0123456789abcdef0123456789abcdef\", algorithm=MD5\r\n"
    } else {
        ""
    };
    format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKr{i:08x}-{agent};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:agent{agent:04}@127.0.0.1>;tag=t{i:08x}\r\nTo: <sip:agent{agent:04}@127.0.0.1>\r\n\
         Call-ID: reg-{agent}-0123456789@127.0.0.1\r\nCSeq: {i} REGISTER\r\nContact: <sip:agent{agent:04}@127.0.0.1:{port}>\r\n\
         Expires: 3600\r\nUser-Agent: cc-bench\r\n{auth}Content-Length: 0\r\n\r\n",
        port = 61_000 + agent,
    )
    .into_bytes()
}

fn answer(i: u64) -> ResponseSpec {
    if i % 2 == 0 {
        ResponseSpec::new(401)
            .header("WWW-Authenticate", "Digest realm=\"cc-engine\", nonce=\"0123456789abcdef0123456789abcdef\", algorithm=MD5, qop=\"auth\"")
            .header("WWW-Authenticate", "Digest realm=\"cc-engine\", nonce=\"0123456789abcdef0123456789abcdef\", algorithm=SHA-256, qop=\"auth\"")
    } else {
        ResponseSpec::new(200)
            .header("Contact", "<sip:agent0001@127.0.0.1:61001>;expires=3600")
            .header("Date", "Mon, 24 Nov 2025 09:00:00 GMT")
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
#[ignore = "prints a cost figure; run in release by hand"]
fn register_cost() {
    let local: SocketAddr = "127.0.0.1:5060".parse().unwrap();
    let mut ep = Endpoint::new(EndpointConfig::new(local));
    let datagrams: Vec<Vec<u8>> = (0..REQUESTS).map(register).collect();
    let step = Duration::from_nanos(1_000_000_000 / RATE);
    let t0 = Instant::now();
    let rss0 = rss_kib();
    let (mut sent, mut requests, mut peak_rss) = (0u64, 0u64, rss0);
    let wall = Instant::now();
    for (i, d) in datagrams.iter().enumerate() {
        let i = i as u64;
        let now = t0 + step * i as u32;
        if ep.poll_timeout().is_some_and(|t| t <= now) {
            ep.handle_timeout(now);
        }
        let src: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 61_000 + (i / 2 % 2000) as u16));
        ep.handle_datagram(d, src, now);
        while let Some(o) = ep.poll_output() {
            match o {
                Output::Request { tx, .. } => {
                    requests += 1;
                    ep.respond(tx, answer(i), now);
                }
                Output::Transmit { .. } => sent += 1,
                _ => {}
            }
        }
        if i % 10 == 9 {
            // A retransmission of an answered request (lost response).
            ep.handle_datagram(&datagrams[(i - 5) as usize], src, now);
        }
        while let Some(o) = ep.poll_output() {
            if matches!(o, Output::Transmit { .. }) {
                sent += 1;
            }
        }
        if i % 4096 == 0 {
            peak_rss = peak_rss.max(rss_kib());
        }
    }
    let busy = wall.elapsed();
    // Let Timer J run out, as the engine would while idle.
    let end = t0 + step * REQUESTS as u32 + Duration::from_secs(40);
    let wall = Instant::now();
    let mut wakeups = 0u64;
    while let Some(t) = ep.poll_timeout() {
        if t > end || wakeups > 1_000_000 {
            break;
        }
        ep.handle_timeout(t);
        while ep.poll_output().is_some() {}
        wakeups += 1;
    }
    let drain = wall.elapsed();
    assert_eq!(requests, REQUESTS);
    assert_eq!(sent, REQUESTS + REQUESTS / 10);
    assert_eq!(ep.counters().retransmissions_absorbed, REQUESTS / 10);
    assert_eq!(ep.transactions(), (0, 0));
    println!(
        "endpoint: {REQUESTS} REGISTERs at {RATE}/s simulated: {:.2} µs per request busy, \
         Timer J drain {:.2} µs per request in {wakeups} wake-ups; RSS {rss0} KiB → peak {peak_rss} KiB \
         ({:.0} bytes per request alive at the peak, {} alive)",
        busy.as_nanos() as f64 / 1000.0 / REQUESTS as f64,
        drain.as_nanos() as f64 / 1000.0 / REQUESTS as f64,
        (peak_rss - rss0) as f64 * 1024.0 / (RATE * 32).min(REQUESTS) as f64,
        (RATE * 32).min(REQUESTS),
    );
}
