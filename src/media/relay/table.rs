//! The relay's leg table, sans-IO: relay legs, bridges, symmetric-RTP
//! latching and strict mode (through [`StreamState`]), media timeout, the
//! hold-audio schedule and the per-stream counters.
//!
//! Packets and time come in, decisions go out: [`Table::on_packet`] says
//! which socket sends a received datagram on and to where,
//! [`Table::poll_hold`] writes the hold frames that are due into the
//! buffers a [`HoldTx`] lends and asks it to send them, and notifications
//! queue up as [`Event`]s for [`Table::poll_event`]. No socket and no clock
//! here: the ring owns the sockets and passes `now`.
//!
//! A *relay leg* is one side of a call as the relay sees it: an RTP socket
//! and an RTCP socket (port + 1) on the relay, and the peer's addresses.
//! Sockets are the ring's: the table knows them by an opaque index, one per
//! stream kind ([`RTP`], [`RTCP`]), [`NO_SOCKET`] while absent.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::stats::DropReason;
use super::stream::{Kind, StreamState, Verdict};
use crate::media::playout::{HoldAudio, Playout, HEADER, SAMPLES};
use crate::media::{Event, RelayLegConfig, RelayLegId};

/// Stream index of a relay leg's RTP socket.
pub(crate) const RTP: usize = 0;
/// Stream index of a relay leg's RTCP socket.
pub(crate) const RTCP: usize = 1;
/// "No socket" / "no relay leg" (a deferred RTCP socket, a closed leg).
pub(crate) const NO_SOCKET: u32 = u32::MAX;
/// Bytes of one hold-audio frame (RTP header + 20 ms of G.711).
pub(crate) const HOLD_FRAME: usize = HEADER + SAMPLES;

/// Lends the table the frame buffer of a socket and sends what the table
/// wrote into it (the ring's side of hold audio).
pub(crate) trait HoldTx {
    /// The hold frame buffer of `sock`, if it has one and no frame of it is
    /// still being sent.
    fn frame(&mut self, sock: u32) -> Option<&mut [u8; HOLD_FRAME]>;
    /// Send the first `len` bytes just written into `sock`'s frame to `dest`.
    fn send(&mut self, sock: u32, dest: SocketAddr, len: usize);
}

/// One side of a call in the relay.
pub(crate) struct RelayLeg {
    id: RelayLegId,
    /// Ring socket per stream ([`RTP`], [`RTCP`]).
    socks: [u32; 2],
    streams: [StreamState; 2],
    /// Index of the relay leg this one forwards to.
    bridged: Option<u32>,
    playout: Option<Playout>,
    media_timeout: Option<Duration>,
    timeout_reported: bool,
    opened: Instant,
    /// Continuity of generated audio across successive holds.
    hold_ssrc: u32,
    hold_seq: u16,
    hold_ts: u32,
}

pub(crate) struct Table {
    legs: Vec<Option<RelayLeg>>,
    free: Vec<u32>,
    by_id: HashMap<RelayLegId, u32>,
    /// Relay legs that had hold audio started (pruned by `poll_hold`).
    holding: Vec<u32>,
    next_hold: Option<Instant>,
    tick: Duration,
    next_tick: Instant,
    events: VecDeque<Event>,
    /// The counters of closed legs, so relay-wide totals never run back.
    closed: super::stats::RelayTraffic,
}

impl Table {
    /// `tick`: period of the media-timeout check, first due at `now + tick`.
    /// `max_legs` only sizes the preallocation.
    pub(crate) fn new(tick: Duration, max_legs: usize, now: Instant) -> Table {
        Table {
            legs: Vec::with_capacity(max_legs),
            free: Vec::with_capacity(max_legs),
            by_id: HashMap::with_capacity(max_legs),
            holding: Vec::with_capacity(max_legs),
            next_hold: None,
            tick,
            next_tick: now + tick,
            events: VecDeque::new(),
            closed: Default::default(),
        }
    }

    /// Add a relay leg without sockets (attach them with
    /// [`set_socket`](Self::set_socket)); returns its index.
    pub(crate) fn open(&mut self, id: RelayLegId, cfg: &RelayLegConfig, now: Instant) -> u32 {
        let li = match self.free.pop() {
            Some(i) => i,
            None => {
                self.legs.push(None);
                (self.legs.len() - 1) as u32
            }
        };
        let ssrc: u32 = rand::random();
        let leg = RelayLeg {
            id,
            socks: [NO_SOCKET, NO_SOCKET],
            streams: [StreamState::new(Kind::Rtp, cfg.peer_rtp, cfg.strict), StreamState::new(Kind::Rtcp, cfg.peer_rtcp, cfg.strict)],
            bridged: None,
            playout: None,
            media_timeout: cfg.media_timeout,
            timeout_reported: false,
            opened: now,
            hold_ssrc: ssrc,
            hold_seq: rand::random(),
            hold_ts: rand::random(),
        };
        if let Some(slot) = self.legs.get_mut(li as usize) {
            *slot = Some(leg);
        }
        self.by_id.insert(id, li);
        li
    }

    /// The socket of stream `kind` of relay leg `leg`.
    pub(crate) fn set_socket(&mut self, leg: u32, kind: usize, sock: u32) {
        if let Some(s) = self.leg_at(leg).and_then(|l| l.socks.get_mut(kind)) {
            *s = sock;
        }
    }

    /// Index of relay leg `id`, if it is open and still waits for its
    /// deferred RTCP socket.
    pub(crate) fn rtcp_pending(&self, id: RelayLegId) -> Option<u32> {
        let li = *self.by_id.get(&id)?;
        matches!(self.legs.get(li as usize), Some(Some(l)) if l.socks[RTCP] == NO_SOCKET).then_some(li)
    }

    /// New peer addresses (re-INVITE): both latches are forgotten.
    pub(crate) fn set_peer(&mut self, id: RelayLegId, rtp: Option<SocketAddr>, rtcp: Option<SocketAddr>, strict: bool) {
        if let Some(leg) = self.leg_mut(id) {
            leg.streams[RTP].set_peer(rtp, strict);
            leg.streams[RTCP].set_peer(rtcp, strict);
        }
    }

    /// Forward `a` ⇄ `b`; stops hold audio on both and unbridges their
    /// previous partners.
    pub(crate) fn bridge(&mut self, a: RelayLegId, b: RelayLegId) {
        let (Some(&ia), Some(&ib)) = (self.by_id.get(&a), self.by_id.get(&b)) else { return };
        for (x, y) in [(ia, ib), (ib, ia)] {
            let prev = self.legs.get(x as usize).and_then(|l| l.as_ref()).and_then(|l| l.bridged);
            if let Some(p) = prev.filter(|p| *p != y) {
                if let Some(pl) = self.leg_at(p) {
                    pl.bridged = None;
                }
            }
            if let Some(l) = self.leg_at(x) {
                l.bridged = Some(y);
                l.playout = None;
            }
        }
    }

    /// Stop forwarding between `id` and its partner, both ways.
    pub(crate) fn unbridge(&mut self, id: RelayLegId) {
        let Some(&i) = self.by_id.get(&id) else { return };
        let other = self.leg_at(i).and_then(|l| l.bridged.take());
        if let Some(ol) = other.and_then(|o| self.leg_at(o)) {
            ol.bridged = None;
        }
    }

    /// Play `audio` to the relay leg's RTP peer, a frame every 20 ms from
    /// `now`. Forwarding *from* its partner stops (the partner's own bridge
    /// is left as it is). Returns the socket that will send the frames: it
    /// needs a frame buffer.
    pub(crate) fn start_hold(&mut self, id: RelayLegId, audio: HoldAudio, pt: u8, now: Instant) -> Option<u32> {
        let li = *self.by_id.get(&id)?;
        let leg = self.leg_at(li)?;
        leg.playout = Some(Playout::new(audio, pt, leg.hold_ssrc, leg.hold_seq, leg.hold_ts, now));
        leg.bridged = None;
        let sock = leg.socks[RTP];
        if !self.holding.contains(&li) {
            self.holding.push(li);
        }
        self.next_hold = Some(now);
        Some(sock)
    }

    pub(crate) fn stop_hold(&mut self, id: RelayLegId) {
        if let Some(leg) = self.leg_mut(id) {
            leg.playout = None;
        }
    }

    /// Remove relay leg `id` and unbridge its partner; queues
    /// [`Event::Closed`]. Returns the sockets the ring must close (entries
    /// may be [`NO_SOCKET`]), `None` for an unknown leg.
    pub(crate) fn close(&mut self, id: RelayLegId) -> Option<[u32; 2]> {
        let li = self.by_id.remove(&id)?;
        let leg = self.legs.get_mut(li as usize).and_then(|l| l.take())?;
        for st in &leg.streams {
            self.closed.add(&st.stats);
        }
        if let Some(ol) = leg.bridged.and_then(|o| self.leg_at(o)) {
            ol.bridged = None;
        }
        self.free.push(li);
        self.events.push_back(Event::Closed { leg: id });
        Some(leg.socks)
    }

    /// Queue the relay leg's counters ([`Event::Stats`], or
    /// [`Event::UnknownLeg`]).
    pub(crate) fn request_stats(&mut self, id: RelayLegId) {
        let ev = match self.leg_mut(id) {
            Some(leg) => Event::Stats {
                leg: id,
                rtp: leg.streams[RTP].stats.clone(),
                rtcp: leg.streams[RTCP].stats.clone(),
                rtp_dest: leg.streams[RTP].destination(),
            },
            None => Event::UnknownLeg { leg: id },
        };
        self.events.push_back(ev);
    }

    /// Every open relay leg (for shutdown).
    pub(crate) fn ids(&self) -> Vec<RelayLegId> {
        self.by_id.keys().copied().collect()
    }

    /// A datagram of `data.len()` bytes from `src` arrived on stream `kind`
    /// of relay leg `leg` (`src` is `None` for an unusable source address,
    /// `truncated` when it did not fit the buffer). Returns the socket to
    /// send it from and the destination, or `None` when it is dropped (and
    /// counted).
    #[inline]
    pub(crate) fn on_packet(&mut self, leg: u32, kind: usize, src: Option<SocketAddr>, truncated: bool, data: &[u8], now: Instant) -> Option<(u32, SocketAddr)> {
        let l = self.legs.get_mut(leg as usize)?.as_mut()?;
        let stream = l.streams.get_mut(kind)?;
        let Some(src) = src else {
            stream.stats.drop(DropReason::NotRtp);
            return None;
        };
        if truncated {
            stream.stats.drop(DropReason::Truncated);
            return None;
        }
        let verdict = stream.on_receive(src, data, now);
        if l.timeout_reported && verdict == Verdict::Accept && kind == RTP {
            l.timeout_reported = false;
        }
        if verdict != Verdict::Accept {
            return None;
        }
        let Some(other) = l.bridged else {
            l.streams[kind].stats.drop(DropReason::NotBridged);
            return None;
        };
        let (dest, out_sock) = match self.legs.get(other as usize) {
            Some(Some(o)) => (o.streams[kind].destination(), o.socks[kind]),
            _ => (None, NO_SOCKET),
        };
        let Some(dest) = dest else {
            if let Some(l) = self.leg_at(leg) {
                l.streams[kind].stats.drop(DropReason::NoDestination);
            }
            return None;
        };
        Some((out_sock, dest))
    }

    /// Count a datagram on stream `kind` of `leg` dropped before it reached
    /// [`on_packet`](Self::on_packet) (e.g. an empty one).
    pub(crate) fn dropped(&mut self, leg: u32, kind: usize, reason: DropReason) {
        if let Some(s) = self.stream_at(leg, kind) {
            s.stats.drop(reason);
        }
    }

    /// A send from stream `kind` of `leg` completed with `bytes`. A closed
    /// relay leg is passed as [`NO_SOCKET`] and counts nowhere.
    #[inline]
    pub(crate) fn sent(&mut self, leg: u32, kind: usize, bytes: u64) {
        if let Some(s) = self.stream_at(leg, kind) {
            s.stats.tx_packets += 1;
            s.stats.tx_bytes += bytes;
        }
    }

    /// A send from stream `kind` of `leg` failed.
    pub(crate) fn send_failed(&mut self, leg: u32, kind: usize) {
        self.dropped(leg, kind, DropReason::SendError);
    }

    /// When the next hold frame is due (`None`: no hold audio playing).
    pub(crate) fn next_hold(&self) -> Option<Instant> {
        self.next_hold
    }

    /// Write and send every hold frame due at `now`. A frame whose socket
    /// has no free buffer stays due (sent on a later call); a frame for a
    /// relay leg without a destination is consumed unsent.
    pub(crate) fn poll_hold(&mut self, now: Instant, tx: &mut impl HoldTx) {
        let mut next: Option<Instant> = None;
        let mut i = 0;
        while let Some(&li) = self.holding.get(i) {
            let Some(Some(leg)) = self.legs.get_mut(li as usize) else {
                self.holding.swap_remove(i);
                continue;
            };
            let Some(p) = leg.playout.as_mut() else {
                self.holding.swap_remove(i);
                continue;
            };
            let s = leg.socks[RTP];
            if now >= p.next_due() {
                if let Some(buf) = tx.frame(s) {
                    if let Some(n) = p.poll(now, buf) {
                        if let Some(d) = leg.streams[RTP].destination() {
                            tx.send(s, d, n);
                        }
                    }
                }
            }
            let due = p.next_due();
            leg.hold_seq = p.seq;
            leg.hold_ts = p.ts;
            next = Some(next.map_or(due, |x: Instant| x.min(due)));
            i += 1;
        }
        self.next_hold = next;
    }

    /// When [`on_tick`](Self::on_tick) is due.
    pub(crate) fn next_tick(&self) -> Instant {
        self.next_tick
    }

    /// The media-timeout check: a relay leg that received no RTP for its
    /// `media_timeout` (counted from its opening) gets one
    /// [`Event::MediaTimeout`] per silence. Hold audio does not exempt it.
    pub(crate) fn on_tick(&mut self, now: Instant) {
        self.next_tick = now + self.tick;
        for leg in self.legs.iter_mut().flatten() {
            let Some(t) = leg.media_timeout else { continue };
            if leg.timeout_reported {
                continue;
            }
            let last = leg.streams[RTP].stats.last_rx.unwrap_or(leg.opened).max(leg.opened);
            let idle = now.saturating_duration_since(last);
            if idle >= t {
                leg.timeout_reported = true;
                self.events.push_back(Event::MediaTimeout { leg: leg.id, idle });
            }
        }
    }

    /// Every stream's counters summed, closed legs included: O(legs), for
    /// the tick, never per packet. A send completing after its leg closed
    /// counts nowhere (as for the leg's own counters).
    pub(crate) fn traffic(&self) -> super::stats::RelayTraffic {
        let mut t = self.closed;
        for leg in self.legs.iter().flatten() {
            for st in &leg.streams {
                t.add(&st.stats);
            }
        }
        t
    }

    /// The next queued notification.
    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn leg_at(&mut self, li: u32) -> Option<&mut RelayLeg> {
        self.legs.get_mut(li as usize)?.as_mut()
    }

    fn leg_mut(&mut self, id: RelayLegId) -> Option<&mut RelayLeg> {
        let i = *self.by_id.get(&id)?;
        self.leg_at(i)
    }

    fn stream_at(&mut self, leg: u32, kind: usize) -> Option<&mut StreamState> {
        self.leg_at(leg)?.streams.get_mut(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::g711::Law;

    const MS: Duration = Duration::from_millis(1);

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xd5; 160]);
        p
    }

    fn rtcp_sr() -> Vec<u8> {
        vec![0x80, 200, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    }

    /// A relay leg whose sockets are `2n` (RTP) and `2n + 1` (RTCP).
    fn open(t: &mut Table, n: u32, cfg: RelayLegConfig, now: Instant) -> u32 {
        let li = t.open(RelayLegId(n as u64), &cfg, now);
        t.set_socket(li, RTP, 2 * n);
        t.set_socket(li, RTCP, 2 * n + 1);
        li
    }

    fn stats(t: &mut Table, id: u64) -> (crate::media::StreamStats, crate::media::StreamStats, Option<SocketAddr>) {
        t.request_stats(RelayLegId(id));
        match t.poll_event() {
            Some(Event::Stats { rtp, rtcp, rtp_dest, .. }) => (rtp, rtcp, rtp_dest),
            e => panic!("expected stats, got {e:?}"),
        }
    }

    /// Two relay legs bridged: 1 (peer A) ⇄ 2 (peer B).
    fn bridged(now: Instant) -> (Table, u32, u32) {
        let mut t = Table::new(Duration::from_millis(100), 4, now);
        let a = open(&mut t, 1, RelayLegConfig::peer(addr("127.0.0.1:4000")), now);
        let b = open(&mut t, 2, RelayLegConfig::peer(addr("127.0.0.1:5000")), now);
        t.bridge(RelayLegId(1), RelayLegId(2));
        (t, a, b)
    }

    #[derive(Default)]
    struct FakeTx {
        bufs: HashMap<u32, [u8; HOLD_FRAME]>,
        busy: Vec<u32>,
        sent: Vec<(u32, SocketAddr, Vec<u8>)>,
    }

    impl HoldTx for FakeTx {
        fn frame(&mut self, sock: u32) -> Option<&mut [u8; HOLD_FRAME]> {
            if self.busy.contains(&sock) {
                return None;
            }
            self.bufs.get_mut(&sock)
        }
        fn send(&mut self, sock: u32, dest: SocketAddr, len: usize) {
            let b = self.bufs.get(&sock).unwrap();
            self.sent.push((sock, dest, b[..len].to_vec()));
        }
    }

    fn hold_audio() -> HoldAudio {
        HoldAudio::new(Law::Ulaw, &[0i16; 800])
    }

    #[test]
    fn relay_wide_traffic_keeps_the_counts_of_closed_legs() {
        let now = Instant::now();
        let (mut t, a, b) = bridged(now);
        let p = rtp(1, 7);
        t.on_packet(a, RTP, Some(addr("127.0.0.1:4000")), false, &p, now);
        t.sent(b, RTP, p.len() as u64);
        t.on_packet(a, RTP, Some(addr("127.0.0.1:4000")), false, &[1, 2], now);
        let before = t.traffic();
        assert_eq!((before.rx_packets, before.rx_bytes), (1, p.len() as u64));
        assert_eq!((before.tx_packets, before.tx_bytes), (1, p.len() as u64));
        assert_eq!(before.drops.iter().sum::<u64>(), 1, "{before:?}");
        t.close(RelayLegId(1));
        t.close(RelayLegId(2));
        assert_eq!(t.traffic(), before, "closing a leg must not take its counts away");
    }

    #[test]
    fn bridged_legs_forward_both_ways_to_the_peer_from_the_other_socket() {
        let now = Instant::now();
        let (mut t, a, b) = bridged(now);
        let p = rtp(1, 7);
        assert_eq!(t.on_packet(a, RTP, Some(addr("127.0.0.1:4000")), false, &p, now), Some((4, addr("127.0.0.1:5000"))));
        assert_eq!(t.on_packet(b, RTP, Some(addr("127.0.0.1:5000")), false, &p, now), Some((2, addr("127.0.0.1:4000"))));
        let (ra, _, dest) = stats(&mut t, 1);
        assert_eq!((ra.rx_packets, ra.rx_bytes), (1, p.len() as u64));
        assert_eq!(dest, Some(addr("127.0.0.1:4000")));
        assert!(t.poll_event().is_none());
    }

    #[test]
    fn rtcp_goes_from_port_plus_one_to_the_peers_rtcp_address() {
        let now = Instant::now();
        let (mut t, a, b) = bridged(now);
        let sr = rtcp_sr();
        assert_eq!(t.on_packet(a, RTCP, Some(addr("127.0.0.1:4001")), false, &sr, now), Some((5, addr("127.0.0.1:5001"))));
        assert_eq!(t.on_packet(b, RTCP, Some(addr("127.0.0.1:5001")), false, &sr, now), Some((3, addr("127.0.0.1:4001"))));
        // RTP on the RTCP socket and RTCP on the RTP socket are not forwarded
        assert_eq!(t.on_packet(a, RTCP, Some(addr("127.0.0.1:4001")), false, &rtp(1, 1), now), None);
        assert_eq!(t.on_packet(a, RTP, Some(addr("127.0.0.1:4000")), false, &sr, now), None);
        let (ra, rc, _) = stats(&mut t, 1);
        assert_eq!((ra.dropped(DropReason::NotRtp), rc.dropped(DropReason::NotRtp)), (1, 1));
        assert_eq!(rc.rx_packets, 1);
    }

    #[test]
    fn latching_sends_to_the_source_seen_not_the_sdp_address() {
        let now = Instant::now();
        let (mut t, a, b) = bridged(now);
        // B's media comes from another port than its SDP said (NAT)
        let natted = addr("127.0.0.1:5002");
        assert_eq!(t.on_packet(b, RTP, Some(natted), false, &rtp(1, 9), now), Some((2, addr("127.0.0.1:4000"))));
        assert_eq!(t.on_packet(a, RTP, Some(addr("127.0.0.1:4000")), false, &rtp(1, 7), now), Some((4, natted)));
        // not strict: a third source is forwarded, the latch is kept
        assert_eq!(t.on_packet(b, RTP, Some(addr("127.0.0.1:6000")), false, &rtp(2, 9), now), Some((2, addr("127.0.0.1:4000"))));
        assert_eq!(stats(&mut t, 2).2, Some(natted));
        // a new SDP address (re-INVITE) forgets the latch
        t.set_peer(RelayLegId(2), Some(addr("127.0.0.1:7000")), Some(addr("127.0.0.1:7001")), false);
        assert_eq!(t.on_packet(a, RTP, Some(addr("127.0.0.1:4000")), false, &rtp(2, 7), now), Some((4, addr("127.0.0.1:7000"))));
        assert_eq!(t.on_packet(a, RTCP, Some(addr("127.0.0.1:4001")), false, &rtcp_sr(), now), Some((5, addr("127.0.0.1:7001"))));
    }

    #[test]
    fn strict_mode_drops_a_foreign_source() {
        let now = Instant::now();
        let mut t = Table::new(Duration::from_millis(100), 4, now);
        let a = open(&mut t, 1, RelayLegConfig { strict: true, ..RelayLegConfig::peer(addr("127.0.0.1:4000")) }, now);
        open(&mut t, 2, RelayLegConfig::peer(addr("127.0.0.1:5000")), now);
        t.bridge(RelayLegId(1), RelayLegId(2));
        assert_eq!(t.on_packet(a, RTP, Some(addr("127.0.0.1:4444")), false, &rtp(1, 7), now), None);
        assert_eq!(t.on_packet(a, RTP, Some(addr("127.0.0.1:4000")), false, &rtp(2, 7), now), Some((4, addr("127.0.0.1:5000"))));
        assert_eq!(t.on_packet(a, RTP, Some(addr("127.0.0.1:4444")), false, &rtp(3, 7), now), None);
        let (ra, _, _) = stats(&mut t, 1);
        assert_eq!(ra.dropped(DropReason::WrongSource), 2);
        assert_eq!(ra.rx_packets, 1);
    }

    #[test]
    fn unusable_source_truncation_and_junk_are_counted_not_forwarded() {
        let now = Instant::now();
        let (mut t, a, _) = bridged(now);
        let src = Some(addr("127.0.0.1:4000"));
        assert_eq!(t.on_packet(a, RTP, None, false, &rtp(1, 7), now), None);
        assert_eq!(t.on_packet(a, RTP, src, true, &rtp(1, 7), now), None);
        assert_eq!(t.on_packet(a, RTP, src, false, &[0x80, 0, 1], now), None);
        t.dropped(a, RTP, DropReason::Short);
        // unknown relay leg or stream: nothing to do
        assert_eq!(t.on_packet(9, RTP, src, false, &rtp(1, 7), now), None);
        assert_eq!(t.on_packet(a, 2, src, false, &rtp(1, 7), now), None);
        let (ra, _, _) = stats(&mut t, 1);
        assert_eq!(ra.dropped(DropReason::NotRtp), 1);
        assert_eq!(ra.dropped(DropReason::Truncated), 1);
        assert_eq!(ra.dropped(DropReason::Short), 2);
        assert_eq!(ra.rx_packets, 0);
        assert_eq!(stats(&mut t, 1).2, Some(addr("127.0.0.1:4000")), "junk does not latch");
    }

    #[test]
    fn unbridge_stops_both_directions_and_a_new_bridge_drops_the_old_partner() {
        let now = Instant::now();
        let (mut t, a, b) = bridged(now);
        let c = open(&mut t, 3, RelayLegConfig::peer(addr("127.0.0.1:6000")), now);
        t.unbridge(RelayLegId(2));
        assert_eq!(t.on_packet(a, RTP, Some(addr("127.0.0.1:4000")), false, &rtp(1, 7), now), None);
        assert_eq!(t.on_packet(b, RTP, Some(addr("127.0.0.1:5000")), false, &rtp(1, 8), now), None);
        assert_eq!(stats(&mut t, 1).0.dropped(DropReason::NotBridged), 1);
        assert_eq!(stats(&mut t, 2).0.dropped(DropReason::NotBridged), 1);
        t.bridge(RelayLegId(1), RelayLegId(2));
        t.bridge(RelayLegId(1), RelayLegId(3));
        assert_eq!(t.on_packet(a, RTP, Some(addr("127.0.0.1:4000")), false, &rtp(2, 7), now), Some((6, addr("127.0.0.1:6000"))));
        assert_eq!(t.on_packet(c, RTP, Some(addr("127.0.0.1:6000")), false, &rtp(1, 9), now), Some((2, addr("127.0.0.1:4000"))));
        assert_eq!(t.on_packet(b, RTP, Some(addr("127.0.0.1:5000")), false, &rtp(2, 8), now), None, "old partner unbridged");
    }

    #[test]
    fn a_partner_without_destination_counts_no_destination() {
        let now = Instant::now();
        let mut t = Table::new(Duration::from_millis(100), 4, now);
        let a = open(&mut t, 1, RelayLegConfig::peer(addr("127.0.0.1:4000")), now);
        open(&mut t, 2, RelayLegConfig::default(), now); // on hold: no address yet
        t.bridge(RelayLegId(1), RelayLegId(2));
        assert_eq!(t.on_packet(a, RTP, Some(addr("127.0.0.1:4000")), false, &rtp(1, 7), now), None);
        assert_eq!(stats(&mut t, 1).0.dropped(DropReason::NoDestination), 1);
    }

    #[test]
    fn close_while_a_send_is_outstanding() {
        let now = Instant::now();
        let (mut t, a, b) = bridged(now);
        // a packet from A is on its way out of B's socket (4)...
        assert_eq!(t.on_packet(a, RTP, Some(addr("127.0.0.1:4000")), false, &rtp(1, 7), now), Some((4, addr("127.0.0.1:5000"))));
        // ...when B closes: the ring gets B's sockets to cancel and free
        assert_eq!(t.close(RelayLegId(2)), Some([4, 5]));
        assert!(matches!(t.poll_event(), Some(Event::Closed { leg: RelayLegId(2) })));
        assert_eq!(t.close(RelayLegId(2)), None, "closed once");
        assert!(t.poll_event().is_none());
        // the send completes: its socket no longer belongs to a relay leg
        t.sent(NO_SOCKET, RTP, 172);
        t.send_failed(NO_SOCKET, RTP);
        // A is unbridged, B is unknown
        assert_eq!(t.on_packet(a, RTP, Some(addr("127.0.0.1:4000")), false, &rtp(2, 7), now), None);
        assert_eq!(stats(&mut t, 1).0.dropped(DropReason::NotBridged), 1);
        t.request_stats(RelayLegId(2));
        assert!(matches!(t.poll_event(), Some(Event::UnknownLeg { leg: RelayLegId(2) })));
        // the index is reused by the next relay leg, which starts clean
        let c = open(&mut t, 3, RelayLegConfig::peer(addr("127.0.0.1:6000")), now);
        assert_eq!(c, b);
        t.sent(c, RTP, 100);
        let (rc, _, _) = stats(&mut t, 3);
        assert_eq!((rc.tx_packets, rc.tx_bytes, rc.rx_packets), (1, 100, 0));
        let mut ids = t.ids();
        ids.sort();
        assert_eq!(ids, vec![RelayLegId(1), RelayLegId(3)]);
    }

    #[test]
    fn deferred_rtcp_socket_is_pending_until_attached() {
        let now = Instant::now();
        let mut t = Table::new(Duration::from_millis(100), 4, now);
        let li = t.open(RelayLegId(1), &RelayLegConfig { defer_rtcp: true, ..RelayLegConfig::peer(addr("127.0.0.1:4000")) }, now);
        t.set_socket(li, RTP, 0);
        assert_eq!(t.rtcp_pending(RelayLegId(1)), Some(li));
        assert_eq!(t.rtcp_pending(RelayLegId(2)), None);
        t.set_socket(li, RTCP, 1);
        assert_eq!(t.rtcp_pending(RelayLegId(1)), None);
    }

    #[test]
    fn media_timeout_fires_once_per_silence() {
        let t0 = Instant::now();
        let tick = Duration::from_millis(100);
        let mut t = Table::new(tick, 4, t0);
        assert_eq!(t.next_tick(), t0 + tick);
        let cfg = RelayLegConfig { media_timeout: Some(Duration::from_secs(1)), ..RelayLegConfig::peer(addr("127.0.0.1:4000")) };
        let a = open(&mut t, 1, cfg, t0);
        open(&mut t, 2, RelayLegConfig::peer(addr("127.0.0.1:5000")), t0); // no timeout
        // counted from the opening
        t.on_tick(t0 + 999 * MS);
        assert!(t.poll_event().is_none());
        assert_eq!(t.next_tick(), t0 + 999 * MS + tick);
        t.on_tick(t0 + 1000 * MS);
        match t.poll_event() {
            Some(Event::MediaTimeout { leg, idle }) => assert_eq!((leg, idle), (RelayLegId(1), Duration::from_secs(1))),
            e => panic!("expected a media timeout, got {e:?}"),
        }
        assert!(t.poll_event().is_none(), "one leg, one event");
        for k in 1..=20 {
            t.on_tick(t0 + 1000 * MS + k * tick);
        }
        assert!(t.poll_event().is_none(), "reported once per silence");
        // RTCP does not re-arm it, RTP does
        let at = t0 + 3 * Duration::from_secs(1);
        t.on_packet(a, RTCP, Some(addr("127.0.0.1:4001")), false, &rtcp_sr(), at);
        t.on_tick(at + Duration::from_secs(2));
        assert!(t.poll_event().is_none());
        t.on_packet(a, RTP, Some(addr("127.0.0.1:4000")), false, &rtp(1, 7), at);
        t.on_tick(at + 999 * MS);
        assert!(t.poll_event().is_none(), "idle counts from the last RTP");
        t.on_tick(at + 1000 * MS);
        assert!(matches!(t.poll_event(), Some(Event::MediaTimeout { leg: RelayLegId(1), .. })));
    }

    #[test]
    fn media_timeout_fires_for_a_leg_on_hold_audio_too() {
        let t0 = Instant::now();
        let mut t = Table::new(Duration::from_millis(100), 4, t0);
        let cfg = RelayLegConfig { media_timeout: Some(Duration::from_secs(1)), ..RelayLegConfig::peer(addr("127.0.0.1:4000")) };
        open(&mut t, 1, cfg, t0);
        t.start_hold(RelayLegId(1), hold_audio(), 0, t0);
        t.on_tick(t0 + Duration::from_secs(1));
        assert!(matches!(t.poll_event(), Some(Event::MediaTimeout { leg: RelayLegId(1), .. })));
    }

    #[test]
    fn hold_frames_are_paced_every_20ms_from_the_start() {
        let t0 = Instant::now();
        let (mut t, a, _) = bridged(t0);
        assert_eq!(t.next_hold(), None);
        let mut tx = FakeTx::default();
        tx.bufs.insert(2, [0; HOLD_FRAME]);
        assert_eq!(t.start_hold(RelayLegId(1), hold_audio(), 0, t0), Some(2));
        assert_eq!(t.start_hold(RelayLegId(9), hold_audio(), 0, t0), None);
        assert_eq!(t.next_hold(), Some(t0));
        t.poll_hold(t0, &mut tx);
        assert_eq!(tx.sent.len(), 1);
        let (sock, dest, f) = &tx.sent[0];
        assert_eq!((*sock, *dest, f.len()), (2, addr("127.0.0.1:4000"), HOLD_FRAME));
        assert_eq!(f[1], 0x80, "marker bit on the first frame, PT 0");
        assert_eq!(t.next_hold(), Some(t0 + 20 * MS));
        t.poll_hold(t0 + 19 * MS, &mut tx);
        assert_eq!(tx.sent.len(), 1, "not due yet");
        // a late call sends the frame due; the schedule keeps to the start
        t.poll_hold(t0 + 27 * MS, &mut tx);
        assert_eq!(tx.sent.len(), 2);
        assert_eq!(t.next_hold(), Some(t0 + 40 * MS));
        // the socket's previous frame is still being sent: the frame stays due
        tx.busy.push(2);
        t.poll_hold(t0 + 40 * MS, &mut tx);
        assert_eq!(tx.sent.len(), 2);
        assert_eq!(t.next_hold(), Some(t0 + 40 * MS));
        tx.busy.clear();
        t.poll_hold(t0 + 41 * MS, &mut tx);
        assert_eq!(tx.sent.len(), 3);
        let seqs: Vec<u16> = tx.sent.iter().map(|(_, _, f)| u16::from_be_bytes([f[2], f[3]])).collect();
        assert_eq!(seqs, vec![seqs[0], seqs[0].wrapping_add(1), seqs[0].wrapping_add(2)]);
        // on hold the relay leg forwards nothing from its old partner...
        assert_eq!(t.on_packet(a, RTP, Some(addr("127.0.0.1:4000")), false, &rtp(1, 7), t0), None);
        // ...and a bridge stops the audio
        t.bridge(RelayLegId(1), RelayLegId(2));
        t.poll_hold(t0 + 60 * MS, &mut tx);
        assert_eq!(tx.sent.len(), 3);
        assert_eq!(t.next_hold(), None);
    }

    #[test]
    fn hold_resumes_the_sequence_and_skips_a_leg_without_destination() {
        let t0 = Instant::now();
        let mut t = Table::new(Duration::from_millis(100), 4, t0);
        open(&mut t, 1, RelayLegConfig::peer(addr("127.0.0.1:4000")), t0);
        open(&mut t, 2, RelayLegConfig::default(), t0);
        let mut tx = FakeTx::default();
        tx.bufs.insert(2, [0; HOLD_FRAME]);
        tx.bufs.insert(4, [0; HOLD_FRAME]);
        t.start_hold(RelayLegId(1), hold_audio(), 8, t0);
        t.start_hold(RelayLegId(2), hold_audio(), 8, t0);
        t.poll_hold(t0, &mut tx);
        assert_eq!(tx.sent.len(), 1, "the leg without an address sends nothing");
        assert_eq!(t.next_hold(), Some(t0 + 20 * MS), "but its frame is consumed");
        let first = u16::from_be_bytes([tx.sent[0].2[2], tx.sent[0].2[3]]);
        t.stop_hold(RelayLegId(1));
        t.stop_hold(RelayLegId(2));
        t.poll_hold(t0 + 20 * MS, &mut tx);
        assert_eq!(t.next_hold(), None);
        let t1 = t0 + Duration::from_secs(5);
        t.start_hold(RelayLegId(1), hold_audio(), 8, t1);
        t.poll_hold(t1, &mut tx);
        let f = &tx.sent[1].2;
        assert_eq!(u16::from_be_bytes([f[2], f[3]]), first.wrapping_add(1), "sequence continues across holds");
        assert_eq!(f[1], 0x80 | 8, "new talkspurt: marker");
    }
}
