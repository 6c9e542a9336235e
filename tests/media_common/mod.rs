//! Helpers shared by the media loopback tests.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use cc_engine::media::{Event, RelayLegId, PortRange, RelayConfig, RelayCounters, RelayHandle, StreamStats};

pub fn relay(start: u16, pairs: u16) -> RelayHandle {
    let cfg = RelayConfig {
        range: PortRange { start, end: start + 2 * pairs },
        quarantine: Duration::from_millis(300),
        tick: Duration::from_millis(20),
        ..Default::default()
    };
    RelayHandle::spawn(cfg).expect("spawn relay")
}

pub fn relay_cfg(cfg: RelayConfig) -> RelayHandle {
    RelayHandle::spawn(cfg).expect("spawn relay")
}

pub fn client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    s
}

/// A client socket pair on an even port (RTP) and +1 (RTCP) is not needed:
/// tests give RTCP its own socket through RelayLegConfig::peer_rtcp.
pub fn addr(s: &UdpSocket) -> SocketAddr {
    s.local_addr().unwrap()
}

pub fn rtp(seq: u16, ts: u32, ssrc: u32, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len.max(12)];
    p[0] = 0x80;
    p[1] = 0; // PCMU
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    for (i, b) in p[12..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(7).wrapping_add(seq as u8);
    }
    p
}

pub fn rtcp_sr(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0u8; 28];
    p[0] = 0x80;
    p[1] = 200;
    p[2..4].copy_from_slice(&6u16.to_be_bytes());
    p[4..8].copy_from_slice(&ssrc.to_be_bytes());
    p
}

/// Receive one datagram or None after the socket's read timeout.
pub fn recv(s: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = [0u8; 2048];
    match s.recv_from(&mut buf) {
        Ok((n, from)) => Some((buf[..n].to_vec(), from)),
        Err(_) => None,
    }
}

/// Wait until every command sent so far has been processed by the relay.
pub fn barrier(h: &RelayHandle) -> RelayCounters {
    h.request_counters();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(Event::Counters(c)) = h.wait_event(Duration::from_millis(100)) {
            return c;
        }
    }
    panic!("relay did not answer");
}

pub fn stats(h: &RelayHandle, leg: RelayLegId) -> (StreamStats, StreamStats, Option<SocketAddr>) {
    h.request_stats(leg);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(Event::Stats { leg: l, rtp, rtcp, rtp_dest }) = h.wait_event(Duration::from_millis(100)) {
            if l == leg {
                return (rtp, rtcp, rtp_dest);
            }
        }
    }
    panic!("no stats for {leg:?}");
}

/// Poll the stats of `leg` until `pred` holds (or panic after 5 s).
pub fn stats_until(h: &RelayHandle, leg: RelayLegId, pred: impl Fn(&StreamStats, &StreamStats) -> bool) -> (StreamStats, StreamStats) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (a, b, _) = stats(h, leg);
        if pred(&a, &b) {
            return (a, b);
        }
        if Instant::now() > deadline {
            panic!("stats of {leg:?} never matched: rtp {a:?} rtcp {b:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
