//! RTP port allocation (sans-IO: time is passed in).
//!
//! The configured range is split evenly across shards ([`split_range`]); each
//! shard owns a [`PortAllocator`] over its slice. A call leg takes an even RTP
//! port and the odd port above it for RTCP. A released pair goes into a
//! quarantine FIFO and is handed out again only after `quarantine` has passed,
//! so late packets of a finished call never reach the next one.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A shard's slice of the RTP range: even ports `start, start+2, … < end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port (even).
    pub start: u16,
    /// One past the last usable port.
    pub end: u16,
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.start, self.end.saturating_sub(1))
    }
}

impl PortRange {
    /// Number of RTP/RTCP pairs in the range.
    pub fn pairs(&self) -> usize {
        if self.end <= self.start {
            0
        } else {
            (self.end as usize - self.start as usize) / 2
        }
    }
}

/// Split `[start, end]` (inclusive) into `shards` disjoint ranges of whole
/// even/odd pairs, as even as possible (the first ranges get one extra pair
/// when it does not divide).
pub fn split_range(start: u16, end: u16, shards: usize) -> Vec<PortRange> {
    let shards = shards.max(1);
    let first = start.saturating_add(start & 1); // round up to even
    let total_pairs = if end < first { 0 } else { (end as usize - first as usize + 1) / 2 };
    let base = total_pairs / shards;
    let extra = total_pairs % shards;
    let mut out = Vec::with_capacity(shards);
    let mut p = first as usize;
    for i in 0..shards {
        let n = base + usize::from(i < extra);
        let s = p;
        p += 2 * n;
        out.push(PortRange { start: s as u16, end: p.min(u16::MAX as usize) as u16 });
    }
    out
}

/// Why a pair could not be allocated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// Every pair of the range is in use or in quarantine. The call is refused
    /// with `503 Service Unavailable`.
    #[error("RTP port range {range} exhausted ({in_use} pairs in use, {quarantined} in quarantine)")]
    Exhausted { range: PortRange, in_use: usize, quarantined: usize },
}

impl PortError {
    /// SIP status for the refusal.
    pub fn sip_status(&self) -> u16 {
        503
    }
}

/// Allocator of even/odd port pairs with quarantine on release.
#[derive(Debug)]
pub struct PortAllocator {
    range: PortRange,
    quarantine: Duration,
    free: VecDeque<u16>,
    /// (released at, port), oldest first.
    quarantined: VecDeque<(Instant, u16)>,
    in_use: Vec<bool>,
    in_use_count: usize,
    /// Number of refusals because the range was exhausted.
    pub exhausted_count: u64,
}

impl PortAllocator {
    /// New allocator over `range`; released pairs wait `quarantine` before reuse.
    pub fn new(range: PortRange, quarantine: Duration) -> Self {
        let n = range.pairs();
        let free = (0..n).map(|i| range.start + 2 * i as u16).collect();
        PortAllocator {
            range,
            quarantine,
            free,
            quarantined: VecDeque::new(),
            in_use: vec![false; n],
            in_use_count: 0,
            exhausted_count: 0,
        }
    }

    /// The range this allocator owns.
    pub fn range(&self) -> PortRange {
        self.range
    }

    fn idx(&self, port: u16) -> Option<usize> {
        if port < self.range.start || port >= self.range.end || !(port - self.range.start).is_multiple_of(2) {
            return None;
        }
        Some(((port - self.range.start) / 2) as usize)
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(t, p)) = self.quarantined.front() {
            if now.saturating_duration_since(t) >= self.quarantine {
                self.quarantined.pop_front();
                self.free.push_back(p);
            } else {
                break;
            }
        }
    }

    /// Take a free pair: returns the even (RTP) port; RTCP is `port + 1`.
    /// On exhaustion the error names the range; it is also counted and logged.
    pub fn allocate(&mut self, now: Instant) -> Result<u16, PortError> {
        self.expire(now);
        match self.free.pop_front() {
            Some(p) => {
                if let Some(i) = self.idx(p) {
                    self.in_use[i] = true;
                }
                self.in_use_count += 1;
                Ok(p)
            }
            None => {
                self.exhausted_count += 1;
                let e = PortError::Exhausted {
                    range: self.range,
                    in_use: self.in_use_count,
                    quarantined: self.quarantined.len(),
                };
                tracing::warn!(range = %self.range, "refusing call: {e}");
                Err(e)
            }
        }
    }

    /// Skip a pair that could not be bound (e.g. taken by another process):
    /// it goes to quarantine like a released one.
    pub fn release(&mut self, port: u16, now: Instant) {
        let Some(i) = self.idx(port) else { return };
        if !self.in_use[i] {
            return; // double release: ignore
        }
        self.in_use[i] = false;
        self.in_use_count -= 1;
        self.quarantined.push_back((now, port));
    }

    /// Pairs in use.
    pub fn in_use(&self) -> usize {
        self.in_use_count
    }

    /// Pairs waiting out their quarantine.
    pub fn quarantined(&self) -> usize {
        self.quarantined.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_even_and_disjoint() {
        let r = split_range(10000, 10999, 2);
        assert_eq!(r, vec![PortRange { start: 10000, end: 10500 }, PortRange { start: 10500, end: 11000 }]);
        let r = split_range(10001, 10010, 3); // pairs 10002..=10009 → 4 pairs
        assert_eq!(r.iter().map(|x| x.pairs()).sum::<usize>(), 4);
        assert!(r.windows(2).all(|w| w[0].end == w[1].start));
        assert!(r.iter().all(|x| x.start % 2 == 0));
    }

    #[test]
    fn exhaustion_and_quarantine() {
        let t0 = Instant::now();
        let mut a = PortAllocator::new(PortRange { start: 20000, end: 20004 }, Duration::from_secs(5));
        let p1 = a.allocate(t0).unwrap();
        let p2 = a.allocate(t0).unwrap();
        assert_eq!((p1, p2), (20000, 20002));
        let e = a.allocate(t0).unwrap_err();
        assert!(e.to_string().contains("20000-20003"), "{e}");
        assert_eq!(e.sip_status(), 503);
        assert_eq!(a.exhausted_count, 1);
        a.release(p1, t0);
        a.release(p1, t0); // double release ignored
        assert!(a.allocate(t0 + Duration::from_secs(4)).is_err());
        assert_eq!(a.allocate(t0 + Duration::from_secs(5)).unwrap(), p1);
        assert_eq!(a.exhausted_count, 2);
    }
}
