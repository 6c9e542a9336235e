//! RTP port allocation (sans-IO: time is passed in).
//!
//! The configured range is split evenly across shards ([`split_range`]); each
//! shard owns a [`PortAllocator`] over its slice. A call leg takes an even RTP
//! port and the odd port above it for RTCP.
//!
//! Order of hand-out, and why:
//! - Pairs never used yet come first, starting at an offset into the range
//!   (random in the relay): two engines sharing one range on one host would
//!   otherwise both start at the lowest port and collide on every call.
//! - A released pair goes to the back of a FIFO, so the oldest released pair
//!   is reused first: the quarantine (late packets of a finished call never
//!   reaching the next one) lasts as long as the range allows.
//! - When every pair not in use is still in quarantine, the oldest one is
//!   reused early and counted (`reused_early`) rather than refusing the
//!   call: a caller prefers a call with, at worst, a stray late packet to a
//!   503. Only a range with every pair in use refuses (`Exhausted`).

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
    /// Every pair of the range is in use (quarantined pairs are reused
    /// early, so they never cause this). The call is refused with `503`.
    #[error("RTP port range {range} exhausted ({in_use} pairs in use)")]
    Exhausted { range: PortRange, in_use: usize },
}

impl PortError {
    /// SIP status for the refusal.
    pub fn sip_status(&self) -> u16 {
        503
    }
}

/// Allocator of even/odd port pairs: FIFO reuse with quarantine, early
/// reuse when nothing else is left (see the module docs).
#[derive(Debug)]
pub struct PortAllocator {
    range: PortRange,
    quarantine: Duration,
    /// Ready pairs: never used ones first, then released ones whose
    /// quarantine is over, in release order.
    free: VecDeque<u16>,
    /// (released at, port), oldest first; all released after those in `free`.
    quarantined: VecDeque<(Instant, u16)>,
    in_use: Vec<bool>,
    in_use_count: usize,
    /// Refusals because every pair was in use.
    pub exhausted_count: u64,
    /// Pairs handed out before their quarantine was over.
    pub reused_early_count: u64,
    /// Pairs skipped because a port of theirs was bound by another socket
    /// (EADDRINUSE: another process, or our own socket of a just-closed leg
    /// that the relay thread has not closed yet).
    pub bind_skipped_count: u64,
}

impl PortAllocator {
    /// New allocator over `range` handing out pairs from the start of the
    /// range; released pairs wait `quarantine` before normal reuse.
    pub fn new(range: PortRange, quarantine: Duration) -> Self {
        Self::starting_at(range, quarantine, 0)
    }

    /// As [`new`](Self::new), but the never-used pairs are handed out from
    /// pair number `first_pair` (modulo the number of pairs) on, wrapping
    /// around to the start of the range.
    pub fn starting_at(range: PortRange, quarantine: Duration, first_pair: usize) -> Self {
        let n = range.pairs();
        let first = if n == 0 { 0 } else { first_pair % n };
        let free = (0..n).map(|i| range.start + 2 * ((first + i) % n) as u16).collect();
        PortAllocator {
            range,
            quarantine,
            free,
            quarantined: VecDeque::new(),
            in_use: vec![false; n],
            in_use_count: 0,
            exhausted_count: 0,
            reused_early_count: 0,
            bind_skipped_count: 0,
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

    fn take(&mut self, port: u16) -> u16 {
        if let Some(i) = self.idx(port) {
            self.in_use[i] = true;
        }
        self.in_use_count += 1;
        port
    }

    /// Take a pair: returns the even (RTP) port; RTCP is `port + 1`. Errs
    /// only when every pair is in use; the refusal is counted and logged.
    pub fn allocate(&mut self, now: Instant) -> Result<u16, PortError> {
        self.expire(now);
        if let Some(p) = self.free.pop_front() {
            return Ok(self.take(p));
        }
        if let Some((_, p)) = self.quarantined.pop_front() {
            self.reused_early_count += 1;
            // Logged at powers of two: a range that is too small shows up in
            // the log without one line per call.
            if self.reused_early_count.is_power_of_two() {
                tracing::warn!(
                    range = %self.range,
                    reused_early = self.reused_early_count,
                    "RTP port pair reused before its quarantine ended: the range is small for this load"
                );
            }
            return Ok(self.take(p));
        }
        self.exhausted_count += 1;
        let e = PortError::Exhausted { range: self.range, in_use: self.in_use_count };
        tracing::warn!(range = %self.range, "refusing call: {e}");
        Err(e)
    }

    /// The pair's leg is closed: it goes to the back of the quarantine FIFO.
    pub fn release(&mut self, port: u16, now: Instant) {
        if self.mark_free(port) {
            self.quarantined.push_back((now, port));
        }
    }

    /// A port of the pair was bound by another socket (EADDRINUSE): released
    /// like a closed leg's pair, so it is retried last, and counted.
    pub fn skip_taken(&mut self, port: u16, now: Instant) {
        if self.mark_free(port) {
            self.bind_skipped_count += 1;
            self.quarantined.push_back((now, port));
        }
    }

    /// Undo an allocation that never reached the network (e.g. the socket
    /// could not be created: EMFILE): the pair needs no quarantine and is
    /// next in line again.
    pub fn unreserve(&mut self, port: u16) {
        if self.mark_free(port) {
            self.free.push_front(port);
        }
    }

    /// In use → not in use; false for a foreign port or a double release.
    fn mark_free(&mut self, port: u16) -> bool {
        let Some(i) = self.idx(port) else { return false };
        if !self.in_use[i] {
            return false;
        }
        self.in_use[i] = false;
        self.in_use_count -= 1;
        true
    }

    /// Pairs in use.
    pub fn in_use(&self) -> usize {
        self.in_use_count
    }

    /// Released pairs not yet past their quarantine (as of the last
    /// `allocate`).
    pub fn quarantined(&self) -> usize {
        self.quarantined.len()
    }
}

#[cfg(test)]
mod tests;
