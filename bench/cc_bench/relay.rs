//! RTP as both ends of a call send it: 20 ms G.711 µ-law (PT 0, 160 bytes)
//! by default, or --pps packets per second. The payload starts with a bench
//! header so the receiver can check what it got:
//!
//! ```text
//! 0..4  "CCB1"      4  direction (0 customer→agent, 1 agent→customer)
//! 8..16 customer call token   16..24 agent leg key
//! 24..28 sequence (ours, in case the relay rewrites RTP's)   28..36 send time ns
//! ```
//! the rest is µ-law silence (0xFF). One-way latency = kernel receive
//! timestamp − send time. Loss and reordering per stream are counted the
//! RTCP way (highest seq − first seq + 1 − received), so packets in flight
//! when a call is torn down are not counted as lost. Packets without the
//! header are the engine's hold audio. A packet for a call this side does
//! not hold is cross-talk, a packet arriving on the wrong side's socket is
//! misrouted; both are failures.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use crate::net::now_ns;
use crate::worker::{Event, Timer, Worker};

pub const PAYLOAD: usize = 160;
pub const MAGIC: &[u8; 4] = b"CCB1";

pub struct Stream {
    pub dst: SocketAddr,
    pub from_agent: bool,
    pub ssrc: u32,
    pub seq: u32,
    pub token: u64,
    pub akey: u64,
    pub active: bool,
}

#[derive(Default)]
pub struct RxStream {
    pub first: u32,
    pub max: u32,
    pub count: u64,
    pub reordered: u64,
}

impl RxStream {
    pub fn lost(&self) -> u64 {
        (self.max as u64 - self.first as u64 + 1).saturating_sub(self.count)
    }
}

pub fn packet(buf: &mut Vec<u8>, s: &Stream, t: u64) {
    buf.clear();
    let seq16 = (s.seq & 0xffff) as u16;
    let ts = s.seq.wrapping_mul(160);
    buf.extend_from_slice(&[0x80, 0x00]);
    buf.extend_from_slice(&seq16.to_be_bytes());
    buf.extend_from_slice(&ts.to_be_bytes());
    buf.extend_from_slice(&s.ssrc.to_be_bytes());
    let mut p = [0xFFu8; PAYLOAD];
    p[0..4].copy_from_slice(MAGIC);
    p[4] = s.from_agent as u8;
    p[5..8].fill(0);
    p[8..16].copy_from_slice(&s.token.to_be_bytes());
    p[16..24].copy_from_slice(&s.akey.to_be_bytes());
    p[24..28].copy_from_slice(&s.seq.to_be_bytes());
    p[28..36].copy_from_slice(&t.to_be_bytes());
    buf.extend_from_slice(&p);
}

/// (direction, token, akey, seq, send ns) of a bench packet.
pub fn parse(d: &[u8]) -> Option<(u8, u64, u64, u32, u64)> {
    if d.len() != 12 + PAYLOAD || d[0] >> 6 != 2 || d[1] & 0x7f != 0 {
        return None;
    }
    let p = &d[12..];
    if &p[0..4] != MAGIC {
        return None;
    }
    let u64at = |i: usize| u64::from_be_bytes(p[i..i + 8].try_into().unwrap());
    Some((
        p[4],
        u64at(8),
        u64at(16),
        u32::from_be_bytes(p[24..28].try_into().unwrap()),
        u64at(28),
    ))
}

impl Worker {
    /// Starts a stream: its first packet leaves now (so "agent 200 →
    /// customer hears agent" starts at the 200), the next ones on the 1 ms
    /// tick of its wheel slot, every round(1000 / pps) ms.
    pub fn start_stream(
        &mut self,
        dst: SocketAddr,
        from_agent: bool,
        token: u64,
        akey: u64,
    ) -> usize {
        let i = self.streams.len();
        let ssrc = (token as u32) ^ (akey as u32).rotate_left(16) ^ (from_agent as u32) << 31;
        let interval = 1_000_000_000 / self.p.pps.max(1) as u64;
        self.streams.push(Stream {
            dst,
            from_agent,
            ssrc,
            seq: 0,
            token,
            akey,
            active: true,
        });
        if self.wheel.is_empty() {
            let len = ((interval as f64 / 1e6).round() as usize).max(1);
            self.wheel = vec![Vec::new(); len];
        }
        let now = now_ns();
        self.send_one(i, now);
        // Same phase as now: the next packet is one interval later.
        let slot = (now / 1_000_000) as usize % self.wheel.len();
        self.wheel[slot].push(i);
        if !self.wheel_armed {
            self.wheel_armed = true;
            self.arm((now / 1_000_000 + 1) * 1_000_000, Timer::RtpTick);
        }
        i
    }

    fn send_one(&mut self, i: usize, t: u64) {
        let s = &mut self.streams[i];
        packet(&mut self.tx_buf, s, t);
        s.seq += 1;
        let sock = if s.from_agent {
            &self.rtp_agent
        } else {
            &self.rtp_cust
        };
        if sock.send_to(&self.tx_buf, s.dst).is_err() {
            self.stats.inc("rtp send errors", 1);
        }
        self.stats.inc("rtp sent", 1);
    }

    pub(crate) fn on_rtp_tick(&mut self, at: u64) {
        let now = now_ns();
        let mut at = at;
        if now > at + 100_000_000 {
            // Fell behind by more than 100 ms: say so, skip to now instead
            // of bursting.
            self.stats.inc(
                "rtp ticks skipped (bench overloaded)",
                (now - at) / 1_000_000,
            );
            at = now / 1_000_000 * 1_000_000;
        }
        let slot = (at / 1_000_000) as usize % self.wheel.len();
        let mut ids = std::mem::take(&mut self.wheel[slot]);
        ids.retain(|&i| self.streams[i].active);
        let mut pk: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
        let mut dst: [Vec<SocketAddr>; 2] = [Vec::new(), Vec::new()];
        let t = now_ns();
        for &i in &ids {
            let s = &mut self.streams[i];
            let mut b = Vec::with_capacity(12 + PAYLOAD);
            packet(&mut b, s, t);
            s.seq += 1;
            let k = s.from_agent as usize;
            pk[k].push(b);
            dst[k].push(s.dst);
        }
        let n = (pk[0].len() + pk[1].len()) as u64;
        let sent =
            self.rtp_cust.send_batch(&pk[0], &dst[0]) + self.rtp_agent.send_batch(&pk[1], &dst[1]);
        self.stats.inc("rtp sent", n);
        if (sent as u64) < n {
            self.stats.inc("rtp send errors", n - sent as u64);
        }
        self.wheel[slot] = ids;
        if self.wheel.iter().any(|w| !w.is_empty()) {
            self.arm(at + 1_000_000, Timer::RtpTick);
        } else {
            self.wheel_armed = false;
        }
    }

    pub(crate) fn poll_rtp(&mut self) {
        for agent_side in [false, true] {
            loop {
                let sock = if agent_side {
                    &self.rtp_agent
                } else {
                    &self.rtp_cust
                };
                let n = sock.recv_batch(&mut self.batch).unwrap_or(0);
                if n == 0 {
                    break;
                }
                let mut bench = 0;
                for k in 0..n {
                    let d = self.batch.get(k);
                    let ts = d.ts;
                    let Some((dir, token, akey, seq, sent)) = parse(d.data) else {
                        if agent_side {
                            self.stats.inc("non-bench RTP at agent", 1);
                            if std::env::var_os("CC_BENCH_TRACE").is_some() {
                                eprintln!(
                                    "non-bench RTP at agent from {}: {} bytes {:02x?}",
                                    d.from,
                                    d.data.len(),
                                    &d.data[..d.data.len().min(20)]
                                );
                            }
                        } else {
                            self.stats.inc("hold audio packets", 1);
                            self.sh.hold_rx.fetch_add(1, Ordering::Relaxed);
                        }
                        continue;
                    };
                    bench += 1;
                    // Sent by the agent must arrive at a customer, and back.
                    if (dir == 1) == agent_side {
                        self.stats
                            .fail("rtp misrouted (arrived at the sending side)");
                        continue;
                    }
                    let mine = if agent_side {
                        self.agent_tokens.contains(&token)
                    } else {
                        self.live_tokens.contains_key(&token)
                    };
                    if !mine && token != 0 {
                        self.stats
                            .inc("rtp for a call this side no longer holds", 1);
                        continue;
                    }
                    self.stats.record("relay", ts.saturating_sub(sent));
                    if dir == 1 && self.heard_agent.insert(akey) {
                        self.events.push(Event::FirstAgentRtp { akey, t: ts });
                        // The customer talks for --talk from when it hears
                        // the agent (with answer = "immediate" the 200 came
                        // long before, while it was on hold).
                        if let Some(cid) = self.live_tokens.get(&token).cloned() {
                            if self.cust.get(&cid).is_some_and(|c| {
                                c.customer_hangs_up && c.state == crate::calls::CState::Up
                            }) {
                                self.arm(ts + self.p.talk_ns, Timer::CustHangup(cid));
                            }
                        }
                    }
                    let key = (dir, if dir == 1 { akey } else { token });
                    let r = self.rx.entry(key).or_insert_with(|| RxStream {
                        first: seq,
                        max: seq,
                        ..Default::default()
                    });
                    if seq < r.first {
                        r.first = seq;
                    }
                    if seq < r.max {
                        r.reordered += 1;
                    } else {
                        r.max = seq;
                    }
                    r.count += 1;
                }
                self.stats.inc("rtp received", bench);
                self.sh.rtp_rx.fetch_add(bench, Ordering::Relaxed);
            }
        }
    }

    /// Folds per-stream loss/reordering into the counters.
    pub fn count_rtp(&mut self) {
        let (mut lost, mut reord) = (0, 0);
        for r in self.rx.values() {
            lost += r.lost();
            reord += r.reordered;
        }
        self.stats.inc("rtp lost (gaps)", lost);
        self.stats.inc("rtp reordered", reord);
        self.stats.inc("rtp streams received", self.rx.len() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_round_trip() {
        let s = Stream {
            dst: "127.0.0.1:1".parse().unwrap(),
            from_agent: true,
            ssrc: 7,
            seq: 42,
            token: 9,
            akey: 11,
            active: true,
        };
        let mut b = Vec::new();
        packet(&mut b, &s, 123456789);
        assert_eq!(b.len(), 172);
        assert_eq!(parse(&b), Some((1, 9, 11, 42, 123456789)));
        b[12] = b'X';
        assert_eq!(parse(&b), None);
    }

    #[test]
    fn loss_is_counted_between_first_and_highest() {
        let r = RxStream {
            first: 10,
            max: 19,
            count: 8,
            reordered: 1,
        };
        assert_eq!(r.lost(), 2);
    }
}
