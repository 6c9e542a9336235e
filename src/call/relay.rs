//! `MediaControl` over the shard's real relay (`media::RelayHandle`).
//!
//! The shell keeps a [`HoldLibrary`] (built once from the queues' WAV files)
//! and a [`LegStats`] it refreshes from the relay's `Event::Stats` (ask with
//! `RelayHandle::request_stats` for bridged legs now and then, and before
//! ending a call if exact counts matter), and wraps them per input:
//!
//! ```ignore
//! let mut media = RelayMedia { relay: &mut relay, hold: &hold, stats: &stats };
//! calls.on_output(&mut ep, &mut media, out, now, wall_ms);
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;

use super::MediaControl;
use crate::acd::facts::RtpCounts;
use crate::media::g711::Law;
use crate::media::{HoldAudio, LegConfig, LegId, LegPorts, RelayHandle};

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
pub struct LegStats(pub HashMap<LegId, u64>);

impl LegStats {
    /// Feed every relay event; returns true when it was a stats answer.
    pub fn on_event(&mut self, ev: &crate::media::Event) -> bool {
        match ev {
            crate::media::Event::Stats { leg, rtp, .. } => {
                self.0.insert(*leg, rtp.rx_packets);
                true
            }
            crate::media::Event::Closed { leg } => {
                self.0.remove(leg);
                false
            }
            _ => false,
        }
    }
}

pub struct RelayMedia<'a> {
    pub relay: &'a mut RelayHandle,
    pub hold: &'a HoldLibrary,
    pub stats: &'a LegStats,
}

impl MediaControl for RelayMedia<'_> {
    fn open_leg(&mut self, cfg: LegConfig) -> Result<LegPorts, String> {
        self.relay.open_leg(cfg).map_err(|e| e.to_string())
    }
    fn set_peer(&mut self, leg: LegId, rtp: Option<SocketAddr>, rtcp: Option<SocketAddr>) {
        self.relay.set_peer(leg, rtp, rtcp, false);
    }
    fn start_hold(&mut self, leg: LegId, queue: &str, pt: u8) {
        match self.hold.get(queue, pt) {
            Some(a) => self.relay.start_hold(leg, a.clone(), pt),
            None => tracing::debug!(queue, pt, "no hold audio for this queue and codec"),
        }
    }
    fn stop_hold(&mut self, leg: LegId) {
        self.relay.stop_hold(leg);
    }
    fn bridge(&mut self, a: LegId, b: LegId) {
        self.relay.bridge(a, b);
    }
    fn close(&mut self, leg: LegId) {
        self.relay.close(leg);
    }
    fn rtp_counts(&mut self, customer: LegId, agent: LegId) -> RtpCounts {
        RtpCounts {
            caller_to_agent: self.stats.0.get(&customer).copied().unwrap_or(0),
            agent_to_caller: self.stats.0.get(&agent).copied().unwrap_or(0),
        }
    }
}
