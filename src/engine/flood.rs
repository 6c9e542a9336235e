//! Per-source rate limiting, applied to raw datagrams before any parsing
//! (DESIGN.md, "Bad input and faults"): a flood from one host costs a hash
//! and a compare, not a SIP parse.
//!
//! A fixed table of token buckets indexed by a hash of the source IP: no
//! allocation after start, constant memory whatever the number of sources.
//! Two sources that share a slot reset each other's bucket to full, which
//! can only let more through, never block a well-behaved source.

use std::net::IpAddr;
use std::time::Instant;

const SLOTS: usize = 4096;

#[derive(Clone, Copy)]
struct Bucket {
    ip: Option<IpAddr>,
    tokens: f64,
    last: Option<Instant>,
}

pub struct FloodGuard {
    /// Tokens per second; 0 disables the guard.
    rate: f64,
    burst: f64,
    slots: Box<[Bucket]>,
}

impl FloodGuard {
    /// `per_second` datagrams per source IP, bursts up to twice that.
    pub fn new(per_second: u32) -> FloodGuard {
        let rate = f64::from(per_second);
        FloodGuard {
            rate,
            burst: rate * 2.0,
            slots: vec![Bucket { ip: None, tokens: 0.0, last: None }; if per_second == 0 { 0 } else { SLOTS }]
                .into_boxed_slice(),
        }
    }

    /// Whether a datagram from `ip` at `now` may be processed.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let i = slot_of(ip);
        let Some(b) = self.slots.get_mut(i) else {
            return true;
        };
        if b.ip != Some(ip) {
            *b = Bucket { ip: Some(ip), tokens: self.burst, last: Some(now) };
        }
        let elapsed = b.last.map(|l| now.saturating_duration_since(l).as_secs_f64()).unwrap_or(0.0);
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.last = Some(now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// FNV-1a over the address bytes: cheap, and good enough to spread
/// neighbouring addresses over the table.
fn slot_of(ip: IpAddr) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    match ip {
        IpAddr::V4(v) => eat(&v.octets()),
        IpAddr::V6(v) => eat(&v.octets()),
    }
    (h as usize) % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn off_when_zero() {
        let mut g = FloodGuard::new(0);
        let now = Instant::now();
        assert!((0..100_000).all(|_| g.allow(ip("10.0.0.1"), now)));
    }

    #[test]
    fn burst_then_rate() {
        let mut g = FloodGuard::new(100);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        let passed = (0..1000).filter(|_| g.allow(a, t0)).count();
        assert_eq!(passed, 200, "burst is twice the rate");
        assert!(!g.allow(a, t0));
        // 100 ms later, 10 more tokens.
        let t1 = t0 + Duration::from_millis(100);
        let passed = (0..1000).filter(|_| g.allow(a, t1)).count();
        assert_eq!(passed, 10);
    }

    #[test]
    fn one_flooder_does_not_block_another_source() {
        let mut g = FloodGuard::new(50);
        let now = Instant::now();
        for _ in 0..10_000 {
            g.allow(ip("198.51.100.7"), now);
        }
        assert!(!g.allow(ip("198.51.100.7"), now));
        assert!(g.allow(ip("198.51.100.8"), now));
        assert!(g.allow(ip("2001:db8::1"), now));
    }
}
