//! Per-stream state, sans-IO: latching, validation, stats.
//!
//! One [`StreamState`] per socket (a leg's RTP socket, or its RTCP socket).
//! The ring feeds every received datagram as `(source, bytes, now)` to
//! [`StreamState::on_receive`], which returns a [`Verdict`]; the egress
//! stream's [`StreamState::destination`] says where a forwarded packet goes.
//! Nothing here reads past what the packet holds, nothing panics.

use std::net::SocketAddr;
use std::time::Instant;

use super::stats::{DropReason, StreamStats};

/// What the stream carries: validation differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Rtp,
    Rtcp,
}

/// Result of feeding one received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: forward it (to the bridged stream's destination).
    Accept,
    /// Drop it; counted under this reason.
    Drop(DropReason),
}

/// Latching / validation state of one socket.
#[derive(Debug, Clone)]
pub struct StreamState {
    pub kind: Kind,
    /// Address the peer announced in SDP (`None`: on hold or unknown).
    pub sdp_peer: Option<SocketAddr>,
    /// Source of the first accepted packet (symmetric RTP).
    pub latched: Option<SocketAddr>,
    /// Strict mode: drop packets from any source other than the latched one
    /// (and, before latching, other than the SDP address when known).
    pub strict: bool,
    last_ssrc: Option<u32>,
    last_seq: u16,
    pub stats: StreamStats,
}

impl StreamState {
    pub fn new(kind: Kind, sdp_peer: Option<SocketAddr>, strict: bool) -> Self {
        StreamState { kind, sdp_peer, latched: None, strict, last_ssrc: None, last_seq: 0, stats: StreamStats::default() }
    }

    /// New SDP address (re-INVITE): forget the latch.
    pub fn set_peer(&mut self, peer: Option<SocketAddr>, strict: bool) {
        self.sdp_peer = peer;
        self.strict = strict;
        self.latched = None;
    }

    /// Where packets for this leg go: the latched source, else the SDP address.
    #[inline]
    pub fn destination(&self) -> Option<SocketAddr> {
        self.latched.or(self.sdp_peer)
    }

    /// Validate and latch one datagram received on this stream's socket.
    #[inline]
    pub fn on_receive(&mut self, src: SocketAddr, pkt: &[u8], now: Instant) -> Verdict {
        let v = self.check(src, pkt);
        match v {
            Verdict::Accept => {
                self.stats.rx_packets += 1;
                self.stats.rx_bytes += pkt.len() as u64;
                self.stats.last_rx = Some(now);
            }
            Verdict::Drop(r) => self.stats.drop(r),
        }
        v
    }

    fn check(&mut self, src: SocketAddr, pkt: &[u8]) -> Verdict {
        // validation first: junk never latches
        match self.kind {
            Kind::Rtp => {
                if pkt.len() < 12 {
                    return Verdict::Drop(DropReason::Short);
                }
                let b0 = pkt[0];
                let b1 = pkt[1];
                if b0 >> 6 != 2 {
                    return Verdict::Drop(DropReason::NotRtp);
                }
                let cc = (b0 & 0x0f) as usize;
                if pkt.len() < 12 + 4 * cc {
                    return Verdict::Drop(DropReason::Short);
                }
                let pt = b1 & 0x7f;
                if (72..=76).contains(&pt) {
                    // RTCP (SR/RR/SDES/BYE/APP) arriving on the RTP port
                    return Verdict::Drop(DropReason::NotRtp);
                }
            }
            Kind::Rtcp => {
                if pkt.len() < 8 {
                    return Verdict::Drop(DropReason::Short);
                }
                if pkt[0] >> 6 != 2 || !(192..=223).contains(&pkt[1]) {
                    return Verdict::Drop(DropReason::NotRtp);
                }
            }
        }
        // source check / latching
        match self.latched {
            Some(l) if l == src => {}
            Some(_) if self.strict => return Verdict::Drop(DropReason::WrongSource),
            Some(_) => {} // not strict: accept, keep the latch
            None => {
                if self.strict {
                    if let Some(p) = self.sdp_peer {
                        if p != src {
                            return Verdict::Drop(DropReason::WrongSource);
                        }
                    }
                }
                self.latched = Some(src);
                self.stats.latched = true;
            }
        }
        if self.kind == Kind::Rtp {
            let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
            let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
            match self.last_ssrc {
                Some(s) if s != ssrc => self.stats.ssrc_changes += 1,
                Some(_) => {
                    let expected = self.last_seq.wrapping_add(1);
                    if seq != expected {
                        self.stats.seq_gaps += 1;
                    }
                }
                None => {}
            }
            self.last_ssrc = Some(ssrc);
            self.last_seq = seq;
        }
        Verdict::Accept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xff; 160]);
        p
    }

    #[test]
    fn latch_gap_ssrc_junk() {
        let now = Instant::now();
        let sdp: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let real: SocketAddr = "127.0.0.1:4002".parse().unwrap();
        let mut s = StreamState::new(Kind::Rtp, Some(sdp), false);
        assert_eq!(s.destination(), Some(sdp));
        assert_eq!(s.on_receive(real, &[1, 2, 3], now), Verdict::Drop(DropReason::Short));
        assert_eq!(s.destination(), Some(sdp), "junk must not latch");
        assert_eq!(s.on_receive(real, &[0u8; 20], now), Verdict::Drop(DropReason::NotRtp));
        assert_eq!(s.on_receive(real, &rtp(1, 7), now), Verdict::Accept);
        assert_eq!(s.destination(), Some(real));
        assert_eq!(s.on_receive(real, &rtp(2, 7), now), Verdict::Accept);
        assert_eq!(s.on_receive(real, &rtp(5, 7), now), Verdict::Accept);
        assert_eq!(s.stats.seq_gaps, 1);
        assert_eq!(s.on_receive(real, &rtp(100, 8), now), Verdict::Accept);
        assert_eq!(s.stats.ssrc_changes, 1);
        assert_eq!(s.stats.drops_total(), 2);
        // non-strict: other source accepted, latch kept
        assert_eq!(s.on_receive(sdp, &rtp(101, 8), now), Verdict::Accept);
        assert_eq!(s.destination(), Some(real));
    }

    #[test]
    fn strict() {
        let now = Instant::now();
        let sdp: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let other: SocketAddr = "127.0.0.1:4002".parse().unwrap();
        let mut s = StreamState::new(Kind::Rtp, Some(sdp), true);
        assert_eq!(s.on_receive(other, &rtp(1, 1), now), Verdict::Drop(DropReason::WrongSource));
        assert_eq!(s.on_receive(sdp, &rtp(1, 1), now), Verdict::Accept);
        assert_eq!(s.on_receive(other, &rtp(2, 1), now), Verdict::Drop(DropReason::WrongSource));
        assert_eq!(s.stats.drops[DropReason::WrongSource as usize], 2);
    }

    #[test]
    fn rtcp_validation() {
        let now = Instant::now();
        let src: SocketAddr = "127.0.0.1:4001".parse().unwrap();
        let mut s = StreamState::new(Kind::Rtcp, None, false);
        assert_eq!(s.on_receive(src, &[0x80, 200, 0, 6, 0, 0, 0, 1], now), Verdict::Accept);
        assert_eq!(s.on_receive(src, &[0x80, 0, 0, 6, 0, 0, 0, 1], now), Verdict::Drop(DropReason::NotRtp));
        assert_eq!(s.on_receive(src, &[0x80, 200], now), Verdict::Drop(DropReason::Short));
    }
}
