//! 1,000 concurrent streams through the real relay, and overload recovery.
//! Loss is asserted only at gentle per-stream rates (50 packets/s).

mod media_common;
use media_common::*;

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cc_engine::media::{RelayLegConfig, PortRange, RecvMode, RelayConfig, RelayHandle};

struct Calls {
    h: RelayHandle,
    /// (client a, client b, relay a rtp, relay b rtp)
    calls: Vec<(UdpSocket, UdpSocket, std::net::SocketAddr, std::net::SocketAddr)>,
}

fn setup(start: u16, calls: usize) -> Calls {
    setup_with(start, calls, RelayConfig::default())
}

fn setup_with(start: u16, calls: usize, base: RelayConfig) -> Calls {
    let mut h = relay_cfg(RelayConfig {
        range: PortRange { start, end: start + 4 * calls as u16 + 64 },
        max_legs: 2 * calls,
        ..base
    });
    let mut v = Vec::with_capacity(calls);
    for _ in 0..calls {
        let (a, b) = (client(), client());
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        let (la, lb) = h.open_pair(RelayLegConfig::peer(addr(&a)), RelayLegConfig::peer(addr(&b)), Instant::now()).unwrap();
        h.bridge(la.id, lb.id);
        v.push((a, b, la.rtp, lb.rtp));
    }
    barrier(&h);
    Calls { h, calls: v }
}

/// Stream index s: s = 2*call + dir; dir 0 = a→b, 1 = b→a. The packet's
/// SSRC is s, seq counts per stream.
fn send_round(c: &Calls, seq: u16) -> u64 {
    let mut sent = 0;
    for (i, (a, b, ra, rb)) in c.calls.iter().enumerate() {
        if a.send_to(&rtp(seq, seq as u32 * 160, 2 * i as u32, 200), *ra).is_ok() {
            sent += 1;
        }
        if b.send_to(&rtp(seq, seq as u32 * 160, 2 * i as u32 + 1, 200), *rb).is_ok() {
            sent += 1;
        }
    }
    sent
}

/// Receiver: drains every client socket with poll(2) until `stop`, counting
/// per stream. Returns per-stream (count, max seq).
fn receiver(fds: Vec<(i32, usize)>, streams: usize, stop: Arc<AtomicBool>, min_seq: u16) -> Vec<u64> {
    let mut counts = vec![0u64; streams];
    let mut pfds: Vec<libc::pollfd> = fds.iter().map(|&(fd, _)| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    let mut buf = [0u8; 2048];
    let mut idle_since: Option<Instant> = None;
    loop {
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 20) };
        if n <= 0 {
            if stop.load(Ordering::Relaxed) {
                let t = *idle_since.get_or_insert_with(Instant::now);
                if t.elapsed() > Duration::from_millis(300) {
                    break;
                }
            }
            continue;
        }
        idle_since = None;
        for p in pfds.iter_mut() {
            if p.revents & libc::POLLIN == 0 {
                continue;
            }
            loop {
                let r = unsafe { libc::recv(p.fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), libc::MSG_DONTWAIT) };
                if r < 12 {
                    break;
                }
                let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize;
                let seq = u16::from_be_bytes([buf[2], buf[3]]);
                if seq >= min_seq {
                    if let Some(c) = counts.get_mut(ssrc) {
                        *c += 1;
                    }
                }
            }
        }
    }
    counts
}

fn spawn_receiver(c: &Calls, stop: Arc<AtomicBool>, min_seq: u16) -> std::thread::JoinHandle<Vec<u64>> {
    let mut fds = Vec::new();
    for (i, (a, b, _, _)) in c.calls.iter().enumerate() {
        fds.push((b.as_raw_fd(), 2 * i)); // a→b arrives at b
        fds.push((a.as_raw_fd(), 2 * i + 1));
    }
    let streams = 2 * c.calls.len();
    std::thread::spawn(move || receiver(fds, streams, stop, min_seq))
}

/// Send `rounds` rounds at 50 rounds/s, each round spread over the 20 ms.
fn paced(c: &Calls, first_seq: u16, rounds: u16) -> u64 {
    let start = Instant::now();
    let mut sent = 0;
    for r in 0..rounds {
        let due = start + Duration::from_millis(20) * r as u32;
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        sent += send_round(c, first_seq + r);
    }
    sent
}

#[test]
fn thousand_streams_no_loss_at_50pps() {
    // 500 calls × 2 directions = 1,000 streams, 50 packets/s each, ~2 s.
    let c = setup(29200, 500);
    let stop = Arc::new(AtomicBool::new(false));
    let rx = spawn_receiver(&c, stop.clone(), 0);
    let sent = paced(&c, 0, 100);
    stop.store(true, Ordering::Relaxed);
    let counts = rx.join().unwrap();
    let received: u64 = counts.iter().sum();
    assert_eq!(sent, 100_000);
    let short: Vec<(usize, u64)> = counts.iter().copied().enumerate().filter(|&(_, n)| n != 100).take(10).collect();
    assert_eq!(received, sent, "loss/duplication on streams (first 10: {short:?})");
    let ctr = barrier(&c.h);
    assert_eq!(ctr.send_errors, 0);
    c.h.shutdown();
}

#[test]
fn overload_then_every_stream_recovers() {
    overload_case(28240, RelayConfig::default(), false);
}

/// One-shot receives and a pool of only 8 buffers for 200 streams: buffer
/// exhaustion (ENOBUFS) is certain, and the starved-socket FIFO must re-arm
/// every socket (none left unread).
#[cfg(feature = "relay-bench-modes")]
#[test]
fn overload_with_tiny_pool_starves_no_socket() {
    let cfg = RelayConfig { recv_mode: RecvMode::OneShot, pool_buffers: 8, ..Default::default() };
    overload_case(28720, cfg, true);
}

/// The same with the product's multishot receives: an empty pool ends a
/// socket's multishot receive with ENOBUFS, and the FIFO re-arms it.
#[test]
fn overload_with_tiny_pool_multishot_starves_no_socket() {
    let cfg = RelayConfig { recv_mode: RecvMode::Multishot, pool_buffers: 8, ..Default::default() };
    overload_case(31300, cfg, true);
}

fn overload_case(start: u16, cfg: RelayConfig, expect_starvation: bool) {
    // 100 calls = 200 streams; blast as fast as one thread can for 0.5 s
    // (more than the relay can take on a shared core), then 50 packets/s.
    let c = setup_with(start, 100, cfg);
    let stop = Arc::new(AtomicBool::new(false));
    // count only the gentle phase (seq ≥ 10000)
    let rx = spawn_receiver(&c, stop.clone(), 10000);
    let t = Instant::now();
    let mut seq = 0u16;
    let mut blasted = 0;
    while t.elapsed() < Duration::from_millis(500) {
        blasted += send_round(&c, seq);
        seq = (seq + 1) % 9000;
    }
    assert!(blasted > 0);
    std::thread::sleep(Duration::from_millis(200));
    let sent = paced(&c, 10000, 50);
    stop.store(true, Ordering::Relaxed);
    let counts = rx.join().unwrap();
    let silent: Vec<usize> = counts.iter().enumerate().filter(|(_, &n)| n == 0).map(|(i, _)| i).collect();
    assert!(silent.is_empty(), "streams that never recovered: {silent:?}");
    let received: u64 = counts.iter().sum();
    assert!(received * 100 >= sent * 95, "gentle phase: {received} of {sent}");
    let ctr = barrier(&c.h);
    assert_eq!(ctr.starved_now, 0, "no socket left without a receive");
    if expect_starvation {
        assert!(ctr.enobufs > 0 && ctr.starved_rearms > 0, "pool exhaustion exercised: {ctr:?}");
    }
    c.h.shutdown();
}
