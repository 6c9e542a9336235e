//! Loopback tests through the real io_uring relay (127.0.0.1 only).
//! Each test uses its own port range so they can run in parallel.

mod media_common;
use media_common::*;

use std::time::{Duration, Instant};

use cc_engine::media::{DropReason, Event, RelayLegConfig, OpenError, PortError, RecvMode, RelayConfig, PortRange};

fn both_directions_in(mode: RecvMode, zc: bool, start: u16) {
    let cfg = RelayConfig { range: PortRange { start, end: start + 8 }, recv_mode: mode, ..Default::default() };
    // SEND_ZC is one of the loop's benchmark-only variants
    #[cfg(feature = "relay-bench-modes")]
    let cfg = RelayConfig { send_zc: zc, register_buffers: zc, ..cfg };
    #[cfg(not(feature = "relay-bench-modes"))]
    assert!(!zc, "SEND_ZC is built only with the relay-bench-modes feature");
    let mut h = relay_cfg(cfg);
    let (a, b) = (client(), client());
    let (la, lb) = h.open_pair(RelayLegConfig::peer(addr(&a)), RelayLegConfig::peer(addr(&b)), Instant::now()).unwrap();
    assert_eq!(la.rtp.port() % 2, 0);
    assert_eq!(la.rtcp.port(), la.rtp.port() + 1);
    h.bridge(la.id, lb.id);
    barrier(&h);
    for i in 0..20u16 {
        let p = rtp(i, i as u32 * 160, 0xA, 172);
        a.send_to(&p, la.rtp).unwrap();
        let (got, from) = recv(&b).expect("a→b forwarded");
        assert_eq!(got, p, "payload intact");
        assert_eq!(from, lb.rtp, "leaves from the other leg's port");
        let q = rtp(i, i as u32 * 160, 0xB, 200);
        b.send_to(&q, lb.rtp).unwrap();
        let (got, from) = recv(&a).expect("b→a forwarded");
        assert_eq!(got, q);
        assert_eq!(from, la.rtp);
    }
    let (sa, _, _) = stats(&h, la.id);
    let (sb, _, _) = stats(&h, lb.id);
    assert_eq!(sa.rx_packets, 20);
    assert_eq!(sa.tx_packets, 20);
    assert_eq!(sb.rx_packets, 20);
    assert_eq!(sb.tx_packets, 20);
    assert_eq!(sa.drops_total() + sb.drops_total(), 0);
    assert!(sa.last_rx.is_some());
    h.shutdown();
}

#[cfg(feature = "relay-bench-modes")]
#[test]
fn both_directions_oneshot() {
    both_directions_in(RecvMode::OneShot, false, 28000);
}

#[test]
fn both_directions_multishot() {
    both_directions_in(RecvMode::Multishot, false, 28010);
}

#[test]
fn both_directions_own_buffers() {
    both_directions_in(RecvMode::OwnBuffer, false, 28140);
}

#[cfg(feature = "relay-bench-modes")]
#[test]
fn both_directions_send_zc() {
    both_directions_in(RecvMode::OneShot, true, 28020);
}

#[test]
fn latching_to_new_source_port() {
    let mut h = relay(28030, 4);
    let (sdp_a, real_a, b) = (client(), client(), client());
    let (la, lb) = h.open_pair(RelayLegConfig::peer(addr(&sdp_a)), RelayLegConfig::peer(addr(&b)), Instant::now()).unwrap();
    h.bridge(la.id, lb.id);
    barrier(&h);
    // before A sends anything, B's media goes to A's SDP address
    b.send_to(&rtp(1, 0, 0xB, 100), lb.rtp).unwrap();
    assert!(recv(&sdp_a).is_some(), "to the SDP address before latching");
    // A's media actually comes from another port (NAT)
    real_a.send_to(&rtp(1, 0, 0xA, 100), la.rtp).unwrap();
    assert!(recv(&b).is_some());
    b.send_to(&rtp(2, 160, 0xB, 100), lb.rtp).unwrap();
    let (_, from) = recv(&real_a).expect("latched to the packet's source");
    assert_eq!(from, lb.rtp.ip().to_string().parse::<std::net::IpAddr>().map(|ip| std::net::SocketAddr::new(ip, la.rtp.port())).unwrap());
    sdp_a.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    assert!(recv(&sdp_a).is_none(), "nothing more to the SDP address");
    let (_, _, dest) = stats(&h, la.id);
    assert_eq!(dest, Some(addr(&real_a)));
    h.shutdown();
}

#[test]
fn strict_mode_drops_other_sources() {
    let mut h = relay(28040, 4);
    let (sdp_a, other, b) = (client(), client(), client());
    let mut ca = RelayLegConfig::peer(addr(&sdp_a));
    ca.strict = true;
    let (la, lb) = h.open_pair(ca, RelayLegConfig::peer(addr(&b)), Instant::now()).unwrap();
    h.bridge(la.id, lb.id);
    barrier(&h);
    other.send_to(&rtp(1, 0, 0xA, 100), la.rtp).unwrap();
    b.set_read_timeout(Some(Duration::from_millis(150))).unwrap();
    assert!(recv(&b).is_none(), "strict: other source dropped");
    sdp_a.send_to(&rtp(2, 160, 0xA, 100), la.rtp).unwrap();
    b.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let (got, _) = recv(&b).expect("SDP source forwarded");
    assert_eq!(&got[2..4], &2u16.to_be_bytes());
    other.send_to(&rtp(3, 320, 0xA, 100), la.rtp).unwrap();
    b.set_read_timeout(Some(Duration::from_millis(150))).unwrap();
    assert!(recv(&b).is_none(), "strict after latching: other source dropped");
    let (sa, _) = stats_until(&h, la.id, |s, _| s.dropped(DropReason::WrongSource) == 2);
    assert_eq!(sa.rx_packets, 1);
    h.shutdown();
}

#[test]
fn rtcp_relayed_on_port_plus_one() {
    let mut h = relay(28050, 4);
    let (a, a_rtcp, b, b_rtcp) = (client(), client(), client(), client());
    let ca = RelayLegConfig { peer_rtp: Some(addr(&a)), peer_rtcp: Some(addr(&a_rtcp)), ..Default::default() };
    let cb = RelayLegConfig { peer_rtp: Some(addr(&b)), peer_rtcp: Some(addr(&b_rtcp)), ..Default::default() };
    let (la, lb) = h.open_pair(ca, cb, Instant::now()).unwrap();
    h.bridge(la.id, lb.id);
    barrier(&h);
    let sr = rtcp_sr(0xA);
    a_rtcp.send_to(&sr, la.rtcp).unwrap();
    let (got, from) = recv(&b_rtcp).expect("RTCP forwarded");
    assert_eq!(got, sr);
    assert_eq!(from, lb.rtcp);
    let rr = rtcp_sr(0xB);
    b_rtcp.send_to(&rr, lb.rtcp).unwrap();
    let (got, from) = recv(&a_rtcp).expect("RTCP back");
    assert_eq!(got, rr);
    assert_eq!(from, la.rtcp);
    // RTP sent to the RTCP port is junk there
    a_rtcp.send_to(&rtp(1, 0, 1, 100), la.rtcp).unwrap();
    b_rtcp.set_read_timeout(Some(Duration::from_millis(150))).unwrap();
    assert!(recv(&b_rtcp).is_none());
    let (_, ra) = stats_until(&h, la.id, |_, r| r.dropped(DropReason::NotRtp) == 1);
    assert_eq!(ra.rx_packets, 1);
    assert_eq!(ra.dropped(DropReason::NotRtp), 1);
    h.shutdown();
}

#[test]
fn ssrc_change_and_gaps_counted() {
    let mut h = relay(28060, 4);
    let (a, b) = (client(), client());
    let (la, lb) = h.open_pair(RelayLegConfig::peer(addr(&a)), RelayLegConfig::peer(addr(&b)), Instant::now()).unwrap();
    h.bridge(la.id, lb.id);
    barrier(&h);
    for (seq, ssrc) in [(1u16, 1u32), (2, 1), (5, 1), (900, 2), (901, 2)] {
        a.send_to(&rtp(seq, 0, ssrc, 60), la.rtp).unwrap();
        assert!(recv(&b).is_some(), "forwarded across SSRC change / gaps");
    }
    let (sa, _, _) = stats(&h, la.id);
    assert_eq!(sa.ssrc_changes, 1);
    assert_eq!(sa.seq_gaps, 1);
    assert_eq!(sa.rx_packets, 5);
    h.shutdown();
}

#[test]
fn junk_dropped_and_counted() {
    let mut h = relay(28070, 4);
    let (a, b) = (client(), client());
    let (la, lb) = h.open_pair(RelayLegConfig::peer(addr(&a)), RelayLegConfig::peer(addr(&b)), Instant::now()).unwrap();
    h.bridge(la.id, lb.id);
    barrier(&h);
    a.send_to(&[1, 2, 3], la.rtp).unwrap(); // short
    a.send_to(&[], la.rtp).unwrap(); // empty
    a.send_to(&[0u8; 40], la.rtp).unwrap(); // version 0
    a.send_to(b"INVITE sip:x SIP/2.0\r\n\r\n", la.rtp).unwrap(); // text
    let mut sr = rtcp_sr(1);
    sr[1] = 200;
    a.send_to(&sr, la.rtp).unwrap(); // RTCP on the RTP port
    let mut cc = rtp(1, 0, 1, 12);
    cc[0] = 0x8F; // 15 CSRCs announced, none present
    a.send_to(&cc, la.rtp).unwrap();
    let good = rtp(7, 0, 1, 100);
    a.send_to(&good, la.rtp).unwrap();
    let (got, _) = recv(&b).expect("the valid packet");
    assert_eq!(got, good, "first forwarded packet is the valid one: junk never forwarded");
    let (sa, _, _) = stats(&h, la.id);
    assert_eq!(sa.dropped(DropReason::Short), 3);
    assert_eq!(sa.dropped(DropReason::NotRtp), 3);
    assert_eq!(sa.rx_packets, 1);
    // junk did not latch: B's media still goes to A
    let (_, _, dest) = stats(&h, la.id);
    assert_eq!(dest, Some(addr(&a)));
    h.shutdown();
}

#[test]
fn unbridged_leg_drops_and_counts() {
    let mut h = relay(28080, 4);
    let a = client();
    let la = h.open_leg(RelayLegConfig::peer(addr(&a)), Instant::now()).unwrap();
    barrier(&h);
    a.send_to(&rtp(1, 0, 1, 100), la.rtp).unwrap();
    let (sa, _) = stats_until(&h, la.id, |s, _| s.rx_packets > 0);
    assert_eq!(sa.rx_packets, 1, "valid, counted as received");
    assert_eq!(sa.dropped(DropReason::NotBridged), 1, "and as not forwarded");
    h.shutdown();
}

#[test]
fn port_exhaustion_refuses_with_503() {
    let mut h = relay(28090, 2);
    let a = h.open_leg(RelayLegConfig::default(), Instant::now()).unwrap();
    let b = h.open_leg(RelayLegConfig::default(), Instant::now()).unwrap();
    assert_ne!(a.rtp, b.rtp);
    let e = h.open_leg(RelayLegConfig::default(), Instant::now()).unwrap_err();
    assert_eq!(e.sip_status(), 503);
    let msg = e.to_string();
    assert!(msg.contains("28090-28093"), "names the range: {msg}");
    assert!(matches!(e, OpenError::Ports(PortError::Exhausted { .. })));
    assert_eq!(h.ports().exhausted_count, 1);
    assert!(h.open_pair(RelayLegConfig::default(), RelayLegConfig::default(), Instant::now()).is_err());
    assert_eq!(h.ports().exhausted_count, 2);
    h.shutdown();
}

#[test]
fn quarantine_respected_while_a_pair_is_free_then_early_reuse() {
    let mut h = relay(28100, 2); // quarantine 300 ms
    let a = client();
    let l1 = h.open_leg(RelayLegConfig::peer(addr(&a)), Instant::now()).unwrap();
    h.close(l1.id, Instant::now());
    // Another pair is free: l1's waits out its quarantine.
    let l2 = h.open_leg(RelayLegConfig::default(), Instant::now()).unwrap();
    assert_ne!(l2.rtp, l1.rtp, "pair reused during quarantine");
    assert_eq!(h.ports().reused_early_count, 0);
    // A late packet of the old call is not delivered anywhere.
    a.send_to(&rtp(1, 0, 1, 100), l1.rtp).unwrap();
    barrier(&h);
    // Nothing else left: l1's pair is reused early rather than refused. The
    // relay closes l1's socket asynchronously; until it has, the bind fails
    // with EADDRINUSE and the open is retried (bounded: 100 × 20 ms).
    let mut l3 = None;
    for _ in 0..100 {
        match h.open_leg(RelayLegConfig::default(), Instant::now()) {
            Ok(l) => {
                l3 = Some(l);
                break;
            }
            Err(e) => {
                assert!(matches!(e, OpenError::Bind(_)), "{e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    let l3 = l3.expect("quarantined pair reused early");
    assert_eq!(l3.rtp, l1.rtp);
    assert!(h.ports().reused_early_count >= 1);
    assert_eq!(h.ports().exhausted_count, 0);
    barrier(&h);
    let (s3, _, _) = stats(&h, l3.id);
    assert_eq!(s3.rx_packets + s3.drops_total(), 0, "new leg saw nothing of the old call");
    // Both pairs in use: now it is refused.
    assert!(matches!(h.open_leg(RelayLegConfig::default(), Instant::now()), Err(OpenError::Ports(PortError::Exhausted { .. }))));
    h.shutdown();
}

#[test]
fn deferred_rtcp_is_bound_at_bridge_time() {
    let mut h = relay(28150, 4);
    let (a, a_rtcp, b, b_rtcp) = (client(), client(), client(), client());
    let ca = RelayLegConfig { peer_rtp: Some(addr(&a)), peer_rtcp: Some(addr(&a_rtcp)), defer_rtcp: true, ..Default::default() };
    let cb = RelayLegConfig { peer_rtp: Some(addr(&b)), peer_rtcp: Some(addr(&b_rtcp)), ..Default::default() };
    let la = h.open_leg(ca, Instant::now()).unwrap();
    let lb = h.open_leg(cb, Instant::now()).unwrap();
    assert_eq!(la.rtcp.port(), la.rtp.port() + 1, "announced as usual");
    // While waiting, only the RTP port is bound.
    drop(std::net::UdpSocket::bind(la.rtcp).expect("RTCP port unbound before the bridge"));
    assert!(std::net::UdpSocket::bind(lb.rtcp).is_err(), "an ordinary leg binds RTCP at once");
    h.bridge(la.id, lb.id);
    barrier(&h);
    assert!(std::net::UdpSocket::bind(la.rtcp).is_err(), "bound by the bridge");
    let sr = rtcp_sr(0xA);
    a_rtcp.send_to(&sr, la.rtcp).unwrap();
    let (got, from) = recv(&b_rtcp).expect("RTCP forwarded");
    assert_eq!((got, from), (sr, lb.rtcp));
    let rr = rtcp_sr(0xB);
    b_rtcp.send_to(&rr, lb.rtcp).unwrap();
    let (got, from) = recv(&a_rtcp).expect("RTCP forwarded back from the late socket");
    assert_eq!((got, from), (rr, la.rtcp));
    assert_eq!(h.rtcp_bind_failures(), 0);
    h.shutdown();
}

#[test]
fn deferred_rtcp_taken_meanwhile_bridges_without_rtcp() {
    let mut h = relay(28160, 4);
    let (a, b) = (client(), client());
    let la = h.open_leg(RelayLegConfig { defer_rtcp: true, ..RelayLegConfig::peer(addr(&a)) }, Instant::now()).unwrap();
    let lb = h.open_leg(RelayLegConfig::peer(addr(&b)), Instant::now()).unwrap();
    let _squatter = std::net::UdpSocket::bind(la.rtcp).unwrap();
    h.bridge(la.id, lb.id);
    barrier(&h);
    assert_eq!(h.rtcp_bind_failures(), 1, "counted");
    let p = rtp(1, 0, 0xA, 172);
    a.send_to(&p, la.rtp).unwrap();
    assert_eq!(recv(&b).expect("audio flows without RTCP").0, p);
    h.close(la.id, Instant::now());
    h.close(lb.id, Instant::now());
    barrier(&h);
    h.shutdown();
}

#[test]
fn ports_bound_by_others_are_skipped_bounded_and_counted() {
    let cfg = |start: u16, pairs: u16| RelayConfig {
        range: PortRange { start, end: start + 2 * pairs },
        first_pair: Some(0),
        quarantine: Duration::from_millis(300),
        ..Default::default()
    };
    // Pair 0's RTP port and pair 1's RTCP port belong to someone else.
    let mut h = relay_cfg(cfg(28170, 4));
    let _s0 = std::net::UdpSocket::bind("127.0.0.1:28170").unwrap();
    let _s1 = std::net::UdpSocket::bind("127.0.0.1:28173").unwrap();
    let l = h.open_leg(RelayLegConfig::default(), Instant::now()).unwrap();
    assert_eq!(l.rtp.port(), 28174);
    assert_eq!(h.ports().bind_skipped_count, 2);
    h.shutdown();
    // Every pair taken: the open gives up after BIND_ATTEMPTS tries.
    let mut h = relay_cfg(cfg(28180, 2));
    let _t: Vec<_> = [28180, 28182].iter().map(|p| std::net::UdpSocket::bind(("127.0.0.1", *p)).unwrap()).collect();
    let e = h.open_leg(RelayLegConfig::default(), Instant::now()).unwrap_err();
    assert!(matches!(&e, OpenError::Bind(io) if io.kind() == std::io::ErrorKind::AddrInUse), "{e}");
    assert_eq!(h.ports().bind_skipped_count, cc_engine::media::BIND_ATTEMPTS as u64);
    assert_eq!(h.ports().in_use(), 0);
    h.shutdown();
}

#[test]
fn close_bridged_leg_then_traffic_is_safe() {
    let mut h = relay(28110, 4);
    let (a, b) = (client(), client());
    let (la, lb) = h.open_pair(RelayLegConfig::peer(addr(&a)), RelayLegConfig::peer(addr(&b)), Instant::now()).unwrap();
    h.bridge(la.id, lb.id);
    barrier(&h);
    h.close(lb.id, Instant::now());
    barrier(&h);
    a.send_to(&rtp(1, 0, 1, 100), la.rtp).unwrap();
    stats_until(&h, la.id, |s, _| s.dropped(DropReason::NotBridged) == 1);
    h.shutdown();
}

#[test]
fn media_timeout_reported() {
    let mut h = relay(28120, 4);
    let a = client();
    let cfg = RelayLegConfig { media_timeout: Some(Duration::from_millis(100)), ..RelayLegConfig::peer(addr(&a)) };
    let la = h.open_leg(cfg, Instant::now()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = false;
    while Instant::now() < deadline {
        if let Some(Event::MediaTimeout { leg, idle }) = h.wait_event(Duration::from_millis(100)) {
            assert_eq!(leg, la.id);
            assert!(idle >= Duration::from_millis(100));
            got = true;
            break;
        }
    }
    assert!(got, "media timeout event");
    h.shutdown();
}

#[test]
fn hold_address_means_no_destination_then_resume() {
    // the agent put the call on hold with c=0.0.0.0: its leg has no destination
    let mut h = relay(28130, 4);
    let (a, b) = (client(), client());
    let (la, lb) = h.open_pair(RelayLegConfig::peer(addr(&a)), RelayLegConfig::default(), Instant::now()).unwrap();
    h.bridge(la.id, lb.id);
    barrier(&h);
    a.send_to(&rtp(1, 0, 1, 100), la.rtp).unwrap();
    stats_until(&h, la.id, |s, _| s.dropped(DropReason::NoDestination) == 1);
    // re-INVITE off hold: the SDP address is known again
    h.set_peer(lb.id, Some(addr(&b)), None, false);
    barrier(&h);
    a.send_to(&rtp(2, 160, 1, 100), la.rtp).unwrap();
    let (got, from) = recv(&b).expect("flows after resume");
    assert_eq!(&got[2..4], &2u16.to_be_bytes());
    assert_eq!(from, lb.rtp);
    h.shutdown();
}

/// The wait variants of the relay loop (RelayConfig::wait_past_sends,
/// spin_us, batch_wait_us) forward everything, in order, both one packet at
/// a time and in bursts (bursts make the recent gap short enough to engage
/// the spin and the batch window). No timing is asserted.
fn wait_variant(cfg: RelayConfig) {
    let mut h = relay_cfg(cfg);
    let (a, b) = (client(), client());
    let (la, lb) = h.open_pair(RelayLegConfig::peer(addr(&a)), RelayLegConfig::peer(addr(&b)), Instant::now()).unwrap();
    h.bridge(la.id, lb.id);
    barrier(&h);
    for i in 0..20u16 {
        let p = rtp(i, i as u32 * 160, 0xA, 172);
        a.send_to(&p, la.rtp).unwrap();
        assert_eq!(recv(&b).expect("a→b forwarded").0, p);
        let q = rtp(i, i as u32 * 160, 0xB, 200);
        b.send_to(&q, lb.rtp).unwrap();
        assert_eq!(recv(&a).expect("b→a forwarded").0, q);
    }
    for burst in 0..5u16 {
        let sent: Vec<Vec<u8>> = (0..40u16).map(|i| rtp(100 + burst * 40 + i, 0, 0xA, 172)).collect();
        for p in &sent {
            a.send_to(p, la.rtp).unwrap();
        }
        for p in &sent {
            assert_eq!(&recv(&b).expect("burst forwarded").0, p);
        }
    }
    let (sa, _, _) = stats(&h, la.id);
    assert_eq!(sa.rx_packets, 220);
    assert_eq!(sa.drops_total(), 0);
    h.shutdown();
}

#[test]
fn wait_for_send_completions_too() {
    wait_variant(RelayConfig { range: PortRange { start: 28300, end: 28308 }, wait_past_sends: false, ..Default::default() });
}

#[cfg(feature = "relay-bench-modes")]
#[test]
fn adaptive_spin_forwards_everything() {
    wait_variant(RelayConfig { range: PortRange { start: 28310, end: 28318 }, spin_us: 50, ..Default::default() });
}

#[cfg(feature = "relay-bench-modes")]
#[test]
fn adaptive_batch_window_forwards_everything() {
    wait_variant(RelayConfig { range: PortRange { start: 28320, end: 28328 }, batch_wait_us: 50, batch: 8, ..Default::default() });
}

#[test]
fn relay_wide_traffic_for_metrics_counts_every_leg_and_survives_their_close() {
    let mut h = relay(28400, 4);
    let (a, b) = (client(), client());
    let (la, lb) = h.open_pair(RelayLegConfig::peer(addr(&a)), RelayLegConfig::peer(addr(&b)), Instant::now()).unwrap();
    h.bridge(la.id, lb.id);
    barrier(&h);
    for i in 0..5u16 {
        let p = rtp(i, u32::from(i) * 160, 0xA, 172);
        a.send_to(&p, la.rtp).unwrap();
        recv(&b).expect("a→b forwarded");
    }
    a.send_to(&[1, 2, 3], la.rtp).unwrap(); // short: dropped
    // Totals are summed at the relay's tick (100 ms), not per packet.
    let want = |t: &cc_engine::media::RelayTraffic| {
        t.rx_packets == 5 && t.tx_packets == 5 && t.drops[DropReason::Short as usize] == 1
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !want(&h.traffic()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = h.traffic();
    assert!(want(&t), "{t:?}");
    assert_eq!(t.rx_bytes, 5 * 172);
    assert_eq!(t.tx_bytes, 5 * 172);
    h.close(la.id, Instant::now());
    h.close(lb.id, Instant::now());
    barrier(&h);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(h.traffic(), t, "closing the legs must not take their counts away");
    h.shutdown();
}
