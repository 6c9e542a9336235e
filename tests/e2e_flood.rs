//! Per-source rate limiting before parsing: a flood from one IP is dropped
//! and counted, the engine keeps answering, and the source is served again
//! once it slows down. Loopback is exempt by default, so this test turns
//! the exemption off and the limit down.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn flood_from_one_source_is_dropped_and_counted() {
    let dir = TempDir::new("flood");
    let base = derived_config(dir.path(), "sip", "rate_limit_per_ip", "50");
    let text = std::fs::read_to_string(&base).unwrap().replace(
        "rate_limit_exempt_loopback = true",
        "rate_limit_exempt_loopback = false",
    );
    let cfg = dir.path().join("flood.toml");
    std::fs::write(&cfg, text).unwrap();
    let e = Engine::start_with(EngineOpts { shards: Some(1), config: cfg });

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    // 500 OPTIONS at once: the bucket holds 100 (twice the rate).
    for _ in 0..500 {
        let m = Req::new("OPTIONS", &format!("sip:127.0.0.1:{}", e.sip_port)).build(&sock);
        sock.send_to(m.as_bytes(), e.sip_addr()).unwrap();
    }
    let mut answered = 0;
    let until = Instant::now() + Duration::from_secs(2);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < until {
        if sock.recv_from(&mut buf).is_ok() {
            answered += 1;
        }
    }
    assert!(answered >= 50 && answered <= 250, "between the burst and the burst + 2 s of rate: {answered}");
    let dropped = poll(Duration::from_secs(3), || {
        let d = e.metrics().get("cc_sip_dropped_total", &[("reason", "rate_limited")]).unwrap_or(0.0);
        (d >= 200.0).then_some(d)
    });
    assert!(dropped.is_some(), "rate_limited drops counted: {:?}", e.metrics().get("cc_sip_dropped_total", &[("reason", "rate_limited")]));
    // A polite client from the same IP is served again.
    std::thread::sleep(Duration::from_millis(500));
    assert!(e.options_ok(), "served again after the flood");
}
