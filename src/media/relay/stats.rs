//! Per-stream counters.

use std::time::Instant;

/// Why a datagram was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum DropReason {
    /// Shorter than an RTP (12 + CSRCs) / RTCP (8) header.
    Short = 0,
    /// Not RTP/RTCP version 2 (or RTCP on the RTP port).
    NotRtp = 1,
    /// Strict mode: source is not the latched/SDP address.
    WrongSource = 2,
    /// Valid, but the stream is not bridged (and not on hold playback).
    NotBridged = 3,
    /// Bridged, but the other leg has no destination yet (hold / 0.0.0.0).
    NoDestination = 4,
    /// The kernel refused the send (e.g. ENOBUFS), or truncated receive.
    SendError = 5,
    /// Datagram larger than a pool buffer (truncated).
    Truncated = 6,
}

/// Number of drop reasons.
pub const DROP_REASONS: usize = 7;

impl DropReason {
    pub const ALL: [DropReason; DROP_REASONS] = [
        DropReason::Short,
        DropReason::NotRtp,
        DropReason::WrongSource,
        DropReason::NotBridged,
        DropReason::NoDestination,
        DropReason::SendError,
        DropReason::Truncated,
    ];
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Short => "short",
            DropReason::NotRtp => "not_rtp",
            DropReason::WrongSource => "wrong_source",
            DropReason::NotBridged => "not_bridged",
            DropReason::NoDestination => "no_destination",
            DropReason::SendError => "send_error",
            DropReason::Truncated => "truncated",
        }
    }
}

/// Counters of one stream (one socket).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Valid packets received.
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Packets sent from this socket (forwarded or hold audio).
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Drops by [`DropReason`] (index = reason as usize).
    pub drops: [u64; DROP_REASONS],
    pub ssrc_changes: u64,
    /// Sequence discontinuities (loss, reorder, duplicates).
    pub seq_gaps: u64,
    /// Time of the last valid packet received.
    pub last_rx: Option<Instant>,
    /// True once the source has been latched.
    pub latched: bool,
}

impl StreamStats {
    #[inline]
    pub fn drop(&mut self, r: DropReason) {
        if let Some(c) = self.drops.get_mut(r as usize) {
            *c += 1;
        }
    }
    pub fn drops_total(&self) -> u64 {
        self.drops.iter().sum()
    }
    pub fn dropped(&self, r: DropReason) -> u64 {
        self.drops.get(r as usize).copied().unwrap_or(0)
    }
}

/// Relay-wide traffic of one relay: every stream's counters, closed legs
/// included. Summed by the relay thread at its tick, never per packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayTraffic {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: [u64; DROP_REASONS],
}

impl RelayTraffic {
    pub fn add(&mut self, s: &StreamStats) {
        self.rx_packets += s.rx_packets;
        self.rx_bytes += s.rx_bytes;
        self.tx_packets += s.tx_packets;
        self.tx_bytes += s.tx_bytes;
        for (t, d) in self.drops.iter_mut().zip(s.drops) {
            *t += d;
        }
    }
}

/// Where the relay thread leaves its [`RelayTraffic`] for `/metrics`: the
/// relay stores (one writer, relaxed) at its tick; the shard loads when a
/// scrape asks. No lock, and nothing on the per-packet path.
#[derive(Debug, Default)]
pub struct RelayTotals {
    rx_packets: std::sync::atomic::AtomicU64,
    rx_bytes: std::sync::atomic::AtomicU64,
    tx_packets: std::sync::atomic::AtomicU64,
    tx_bytes: std::sync::atomic::AtomicU64,
    drops: [std::sync::atomic::AtomicU64; DROP_REASONS],
}

impl RelayTotals {
    pub fn store(&self, t: &RelayTraffic) {
        use std::sync::atomic::Ordering::Relaxed;
        self.rx_packets.store(t.rx_packets, Relaxed);
        self.rx_bytes.store(t.rx_bytes, Relaxed);
        self.tx_packets.store(t.tx_packets, Relaxed);
        self.tx_bytes.store(t.tx_bytes, Relaxed);
        for (a, v) in self.drops.iter().zip(t.drops) {
            a.store(v, Relaxed);
        }
    }

    pub fn load(&self) -> RelayTraffic {
        use std::sync::atomic::Ordering::Relaxed;
        let mut t = RelayTraffic {
            rx_packets: self.rx_packets.load(Relaxed),
            rx_bytes: self.rx_bytes.load(Relaxed),
            tx_packets: self.tx_packets.load(Relaxed),
            tx_bytes: self.tx_bytes.load(Relaxed),
            ..RelayTraffic::default()
        };
        for (v, a) in t.drops.iter_mut().zip(&self.drops) {
            *v = a.load(Relaxed);
        }
        t
    }
}
