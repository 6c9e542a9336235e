//! The B2BUA: per-shard, sans-IO call layer (DESIGN.md, "One call, end to
//! end").
//!
//! A call is two SIP dialogs (customer leg, agent leg) and a relay leg for
//! each. The customer's relay leg opens with its INVITE (the SDP answer and
//! hold audio need it) with RTCP deferred to the bridge; the agent's opens
//! with each offer (its INVITE carries the agent-side SDP offer) and closes
//! when that offer fails, so a waiting call holds one relay socket.
//! [`CallTable`] sits between the shard's [`Endpoint`](crate::sip::Endpoint)
//! and the router: it consumes endpoint outputs, router
//! [`Decision`](crate::acd::facts::Decision)s and relay events, drives the
//! endpoint (`respond`, `send`, `cancel`, `send_out_of_transaction`) and a
//! [`MediaControl`], and emits [`CallFact`](crate::acd::facts::CallFact)s.
//! Time is passed in; nothing here does I/O.
//!
//! ```text
//! shell: while let Some(o) = ep.poll_output() {
//!            match calls.on_output(&mut ep, &mut media, o, now, wall_ms) {
//!                Handled::Done => {}
//!                Handled::NotMine(o) => /* Transmit, Forward, REGISTER… as before */
//!            }
//!        }
//!        calls.on_decision(..) / on_media_event(..) / handle_timeout(..),
//!        then drain ep again and forward calls.poll_fact() to the router;
//!        sleep until min(ep.poll_timeout(), calls.poll_timeout()).
//! relay: for ev in relay events: media.observe(&ev);
//!        calls.on_media_event(&mut ep, &mut media, &ev, now, wall_ms);
//!        every few seconds: media.request_stats for calls.bridged_legs().
//! ```
//!
//! `engine::signalling` is that shell's sans-IO half; it is generic over
//! the [`MediaControl`], which is [`RelayMedia`] in the shard and a fake in
//! the simulation.
//!
//! Choices worth knowing:
//! - An INVITE whose Request-URI user is not a configured queue is answered
//!   404 here, without relay ports or a fact: the router never hears of it.
//! - An INVITE without an SDP offer gets 488 (late offer is not supported).
//! - One audio codec end to end (the relay does not transcode): the first
//!   codec in common with the customer, plus telephone-event.
//! - No relay leg for an offer (ports or sockets exhausted): the offer
//!   fails at once with `OfferResult::MediaUnavailable`, no agent is rung
//!   and the call stays queued; the router does not hold it against the
//!   agent. Every relay leg is closed exactly once, through
//!   `CallTable::close_leg`.
//! - A `RingAll` decision is one offer over several agents' phones on one
//!   agent-side relay leg; each fork knows its agent. The first 2xx wins;
//!   the other agents are told `Cancelled` (before the winner's
//!   `Answered`) and their phones CANCELled; an agent whose phones have
//!   all failed is reported at once while the others ring on; at the ring
//!   timeout every agent still ringing gets `NoAnswer`.
//! - The 2xx retransmission of our answers (§13.3.1.4) lives in the
//!   endpoint's server transaction (RFC 6026 Accepted); we get `Ack` or
//!   `AckTimeout`. We ACK the agent's 2xx ourselves (§13.2.2.4) and re-send
//!   that ACK for every retransmitted 2xx for 64·T1.
//! - Re-INVITEs are answered at once from the relay (the direction mirrored)
//!   and passed on to the other leg as a re-INVITE with that direction; a
//!   re-INVITE arriving while ours on that leg is pending gets 491, and a
//!   direction change while ours on the other leg is pending waits for it.
//! - In-dialog requests go to the peer's source address (customer) or the
//!   router's target address (agent), with the Route set from Record-Route.

mod agent_leg;
#[allow(clippy::module_inception)]
mod call;
mod customer_leg;
mod dialog;
mod feature_leg;
mod msg;
mod relay;
mod sdp;
mod table;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::acd::facts::RtpCounts;
use crate::config::{AnswerMode, Cidr, Config};
use crate::media::sdp::Codec;
use crate::media::{Event, RelayLegConfig, RelayLegId, RelayLegPorts, OpenError};

pub use relay::{HoldLibrary, LegStats, RelayMedia};
pub use feature_leg::FEATURE_TONE;
pub use table::CallTable;

/// Customer INVITE arrived → first INVITE sent to an agent for it (the
/// queue wait included), for `/metrics`: a few atomic adds per call.
pub static INVITE_TO_AGENT: crate::mgmt::Histogram = crate::mgmt::Histogram::new(&[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
]);

/// What the call layer needs from the configuration.
#[derive(Debug, Clone)]
pub struct CallConfig {
    /// Configured queues and their answer mode.
    pub queues: HashMap<String, AnswerMode>,
    /// Codecs we accept, in preference order.
    pub codecs: Vec<Codec>,
    /// Relay legs report `MediaTimeout` after this long without RTP.
    pub media_timeout: Option<Duration>,
    /// Sources whose priority and skills headers are believed.
    pub trusted_sources: Vec<Cidr>,
    /// How long a feature-code call hears its tone; `None`: feature codes
    /// are off and a star code is dialled like any queue name.
    pub feature_tone: Option<Duration>,
}

impl CallConfig {
    pub fn from_config(cfg: &Config) -> CallConfig {
        CallConfig {
            queues: cfg.queues.iter().map(|q| (q.name.clone(), q.answer)).collect(),
            codecs: cfg.media.codecs.iter().map(|c| Codec::new(c, 8000)).collect(),
            media_timeout: (cfg.media.media_timeout_s > 0)
                .then(|| Duration::from_secs(u64::from(cfg.media.media_timeout_s))),
            trusted_sources: cfg.sip.trusted_sources.clone(),
            feature_tone: cfg
                .features
                .enabled
                .then(|| Duration::from_millis(u64::from(cfg.features.tone_ms))),
        }
    }
}

/// The relay as the call layer drives it. The shard implements it over
/// `media::RelayHandle` ([`RelayMedia`]); tests and the simulation implement
/// it with a fake. Time is passed in, like everywhere in the call layer:
/// a port pair's quarantine starts when the caller says it is.
pub trait MediaControl {
    /// Reserve and open one relay leg. A new caller refused for it gets 503;
    /// an offer fails (see above). The error says why: the port range is
    /// exhausted, a socket could not be bound, or the relay is gone.
    fn open_leg(&mut self, cfg: RelayLegConfig, now: Instant) -> Result<RelayLegPorts, OpenError>;
    /// Where the leg's peer wants media (from its SDP).
    fn set_peer(&mut self, leg: RelayLegId, rtp: Option<SocketAddr>, rtcp: Option<SocketAddr>);
    /// Play `queue`'s hold audio to the leg, encoded for payload type `pt`
    /// (0 = PCMU, 8 = PCMA).
    fn start_hold(&mut self, leg: RelayLegId, queue: &str, pt: u8);
    fn stop_hold(&mut self, leg: RelayLegId);
    /// customer ⇄ agent (stops hold on both; binds deferred RTCP).
    fn bridge(&mut self, a: RelayLegId, b: RelayLegId);
    /// Close the leg; its port pair enters quarantine at `now`.
    fn close(&mut self, leg: RelayLegId, now: Instant);
    /// Best known RTP packets forwarded customer → agent and back (the
    /// shell may answer from the relay's last `Event::Stats`).
    fn rtp_counts(&mut self, customer: RelayLegId, agent: RelayLegId) -> RtpCounts;
    /// Sees every relay event before the call layer does (the real relay
    /// keeps the counters `rtp_counts` answers from).
    fn observe(&mut self, _ev: &Event) {}
    /// Ask for fresh counters of a leg, answered later by `Event::Stats`.
    fn request_stats(&mut self, _leg: RelayLegId) {}
    /// Port and socket figures for metrics.
    fn usage(&self) -> MediaUsage {
        MediaUsage::default()
    }
}

/// The relay's port and socket figures (`/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaUsage {
    pub ports_in_use: usize,
    pub ports_quarantined: usize,
    /// Legs refused because the range was exhausted.
    pub port_refusals: u64,
    /// Pairs handed out before their quarantine ended (the range was short).
    pub ports_reused_early: u64,
    /// Pairs skipped because another socket held a port.
    pub ports_bind_skipped: u64,
    /// Deferred RTCP sockets that could not be bound at bridge time.
    pub rtcp_bind_failures: u64,
    /// The relay's packets, bytes and drops (as of its last tick).
    pub traffic: crate::media::RelayTraffic,
}

/// What `CallTable::on_output` did with an endpoint output.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Handled {
    Done,
    /// Not the call layer's: the shell handles it as before (Transmit,
    /// Forward, REGISTER, out-of-dialog non-INVITE requests…).
    NotMine(crate::sip::Output),
}

/// Live state, for metrics and leak checks. All zero when idle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallCounts {
    pub calls: usize,
    /// Waiting for the router's first decision.
    pub arrived: usize,
    /// Queued, no agent leg.
    pub waiting: usize,
    /// Agent leg ringing.
    pub ringing: usize,
    pub bridged: usize,
    /// Index entries: dialogs, transactions, relay legs.
    pub dialogs: usize,
    pub transactions: usize,
    pub legs: usize,
    /// Transactions of ended calls still finishing (BYE, CANCEL, late 2xx).
    pub orphans: usize,
    /// ACKs kept to answer 2xx retransmissions.
    pub acks: usize,
    pub timers: usize,
}

impl CallCounts {
    /// No call and no index entry left (timers may be stale heap entries
    /// and are not counted).
    pub fn is_idle(&self) -> bool {
        CallCounts { timers: 0, ..*self } == CallCounts::default()
    }
}
