//! `MediaControl` over the shard's real relay (`media::RelayHandle`).
//!
//! [`RelayMedia`] owns the handle, a [`HoldLibrary`] (built once from the
//! queues' WAV files) and a [`LegStats`] refreshed from the relay's
//! `Event::Stats` (`observe`; the signalling integrator asks for bridged
//! legs' stats now and then with `request_stats`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use super::{MediaControl, MediaUsage};
use crate::acd::facts::RtpCounts;
use crate::media::g711::Law;
use crate::media::{Event, HoldAudio, RelayLegConfig, RelayLegId, RelayLegPorts, OpenError, RelayHandle};

/// Hold audio per queue, encoded in both G.711 laws.
#[derive(Debug, Clone, Default)]
pub struct HoldLibrary {
    audio: HashMap<(String, u8), HoldAudio>,
}

impl HoldLibrary {
    /// `pcm`: 8 kHz mono samples (e.g. `media::wav::parse`).
    pub fn insert(&mut self, queue: &str, pcm: &[i16]) {
        for law in [Law::Ulaw, Law::Alaw] {
            self.audio
                .insert((queue.to_owned(), law.payload_type()), HoldAudio::new(law, pcm));
        }
    }

    /// The queue's audio for `pt`, else the default (queue `""`).
    pub fn get(&self, queue: &str, pt: u8) -> Option<&HoldAudio> {
        self.audio
            .get(&(queue.to_owned(), pt))
            .or_else(|| self.audio.get(&(String::new(), pt)))
    }
}

/// RTP packets received per leg, from the relay's `Event::Stats`.
#[derive(Debug, Clone, Default)]
pub struct LegStats(pub HashMap<RelayLegId, u64>);

impl LegStats {
    /// Feed every relay event; returns true when it was a stats answer.
    pub fn on_event(&mut self, ev: &Event) -> bool {
        match ev {
            Event::Stats { leg, rtp, .. } => {
                self.0.insert(*leg, rtp.rx_packets);
                true
            }
            Event::Closed { leg } => {
                self.0.remove(leg);
                false
            }
            _ => false,
        }
    }
}

/// The shard's relay as the call layer's [`MediaControl`]: the handle,
/// the hold audio it plays, and the last counters it reported.
pub struct RelayMedia {
    pub relay: RelayHandle,
    pub hold: HoldLibrary,
    pub stats: LegStats,
}

impl RelayMedia {
    pub fn new(relay: RelayHandle, hold: HoldLibrary) -> RelayMedia {
        RelayMedia { relay, hold, stats: LegStats::default() }
    }
}

impl MediaControl for RelayMedia {
    fn open_leg(&mut self, cfg: RelayLegConfig, now: Instant) -> Result<RelayLegPorts, OpenError> {
        self.relay.open_leg(cfg, now)
    }
    fn set_peer(&mut self, leg: RelayLegId, rtp: Option<SocketAddr>, rtcp: Option<SocketAddr>) {
        self.relay.set_peer(leg, rtp, rtcp, false);
    }
    fn start_hold(&mut self, leg: RelayLegId, queue: &str, pt: u8) {
        match self.hold.get(queue, pt) {
            Some(a) => self.relay.start_hold(leg, a.clone(), pt),
            None => tracing::debug!(queue, pt, "no hold audio for this queue and codec"),
        }
    }
    fn stop_hold(&mut self, leg: RelayLegId) {
        self.relay.stop_hold(leg);
    }
    fn bridge(&mut self, a: RelayLegId, b: RelayLegId) {
        self.relay.bridge(a, b);
    }
    fn close(&mut self, leg: RelayLegId, now: Instant) {
        self.relay.close(leg, now);
    }
    fn rtp_counts(&mut self, customer: RelayLegId, agent: RelayLegId) -> RtpCounts {
        RtpCounts {
            caller_to_agent: self.stats.0.get(&customer).copied().unwrap_or(0),
            agent_to_caller: self.stats.0.get(&agent).copied().unwrap_or(0),
        }
    }
    fn observe(&mut self, ev: &Event) {
        self.stats.on_event(ev);
    }
    fn request_stats(&mut self, leg: RelayLegId) {
        self.relay.request_stats(leg);
    }
    fn usage(&self) -> MediaUsage {
        let p = self.relay.ports();
        MediaUsage {
            ports_in_use: p.in_use(),
            ports_quarantined: p.quarantined(),
            port_refusals: p.exhausted_count,
            ports_reused_early: p.reused_early_count,
            ports_bind_skipped: p.bind_skipped_count,
            rtcp_bind_failures: self.relay.rtcp_bind_failures(),
            traffic: self.relay.traffic(),
        }
    }
}
