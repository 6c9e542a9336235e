//! The signalling integrator: one shard's protocol state wired together —
//! the SIP endpoint, the B2BUA call table, its media control, the flood
//! guard, and the REGISTERs waiting for the routing shard.
//!
//! Shaped like quinn-proto's `Connection` or str0m's `Rtc`: one input method,
//! [`Signalling::handle`], with the time passed in; what it wants done comes
//! out of [`Signalling::poll_effect`]; [`Signalling::poll_timeout`] says when
//! to feed it [`Input::Timer`]. No socket, clock, channel or executor here:
//! `shard/signalling.rs` is the glommio shell that feeds it, and
//! `tests/sim_calls.rs` drives this very code in virtual time with a fake
//! relay as its [`MediaControl`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::flood::FloodGuard;
use super::messages::{Forwarded, FromRouting, ToRouting};
use crate::acd::RegisterRequest;
use crate::call::{CallTable, Handled, MediaControl};
use crate::media::Event;
use crate::mgmt::Sample;
use crate::sip::{feature, register};
use crate::sip::{Message, Transport, View};
use crate::sip::endpoint::{Endpoint, Output, ResponseSpec, ServerTxId};
use crate::sip::{ClientTxId, DropReason, OutRequest};

/// How often bridged legs' RTP counters are refreshed, so that a call's CDR
/// carries counts at most this old.
pub const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// What the integrator needs besides its endpoint, call table and media.
#[derive(Debug, Clone)]
pub struct SignallingConfig {
    /// This shard's id (written into what it generates, see DESIGN.md
    /// "Affinity").
    pub shard: u16,
    /// Signalling shards in the engine: ICMP news is told to all of them.
    pub shards: u16,
    /// Datagrams per second per source IP before parsing; 0 = no limit.
    pub rate_limit_per_ip: u32,
    /// Loopback sources skip the rate limit (tests, local tools).
    pub rate_limit_exempt_loopback: bool,
    /// Refresh period of bridged legs' counters (`None`: never).
    pub stats_interval: Option<Duration>,
}

impl SignallingConfig {
    pub fn new(shard: u16, shards: u16) -> SignallingConfig {
        SignallingConfig {
            shard,
            shards,
            rate_limit_per_ip: 0,
            rate_limit_exempt_loopback: true,
            stats_interval: Some(STATS_INTERVAL),
        }
    }
}

/// Everything that can happen to a signalling shard.
// A relay event is the large variant; an input is moved in once and never
// stored, so boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Input<'a> {
    /// A datagram from the shard's own socket; rate limited per source
    /// before any parsing.
    Datagram { data: &'a [u8], src: SocketAddr },
    /// One whole message framed off a TCP/TLS connection this shard
    /// accepted (`sip::stream`); rate limited like a datagram.
    Stream { data: &'a [u8], src: SocketAddr, transport: Transport },
    /// From another shard over the mesh: a datagram we own, or ICMP news.
    Forwarded(Forwarded),
    /// From the routing shard: a REGISTER's reply or a call decision.
    Routing(FromRouting),
    /// A relay event (stats answers, media timeouts, closes).
    Media(Event),
    /// Destinations the kernel reported unreachable on this shard's socket
    /// (ICMP). With SO_REUSEPORT that news may concern another shard's
    /// request, so every other shard is told too.
    Unreachable(Vec<SocketAddr>),
    /// Graceful stop: every call is hung up (BYE/CANCEL/5xx) so no leg is
    /// left ringing or talking into a dead engine. Keep feeding inputs
    /// afterwards while the transactions drain.
    Shutdown,
    /// [`Signalling::poll_timeout`] was reached: SIP and call timers, and
    /// the refresh of bridged legs' counters.
    Timer,
}

/// What the integrator asks its shell to do.
#[derive(Debug)]
pub enum Effect {
    /// Put a datagram on the wire from the shard's socket.
    Send(SocketAddr, Bytes),
    /// Hand a message to another shard over the mesh.
    Forward(u16, Forwarded),
    /// Tell the routing shard.
    Route(ToRouting),
}

/// One signalling shard's sans-IO state, generic over its media control.
pub struct Signalling<M: MediaControl> {
    cfg: SignallingConfig,
    flood: FloodGuard,
    ep: Endpoint,
    calls: CallTable,
    media: M,
    effects: VecDeque<Effect>,
    next_ticket: u64,
    awaiting_routing: HashMap<u64, ServerTxId>,
    /// Feature-code INVITEs waiting for the routing shard's verdict, by
    /// ticket: the request is kept to answer it with SDP.
    awaiting_feature: HashMap<u64, (ServerTxId, Message, SocketAddr)>,
    /// Liveness OPTIONS in flight → the routing shard's probe id.
    probes: HashMap<ClientTxId, u64>,
    /// When bridged legs' counters are next refreshed; armed while calls exist.
    next_stats: Option<Instant>,
    /// Responses put on the wire, by status code (100..=699), for /metrics.
    statuses: Box<[u64; 700]>,
    rate_limited: u64,
    send_errors: u64,
    routing_lost: u64,
    facts_sent: u64,
    media_timeouts: u64,
    icmp_reports: u64,
    /// Messages framed off connections: [TCP, TLS].
    stream_messages: [u64; 2],
}

/// The status code of an outgoing response (`SIP/2.0 NNN ...`), if it is one.
fn status_of(data: &[u8]) -> Option<u16> {
    let code = data.strip_prefix(b"SIP/2.0 ")?.get(..3)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

fn reply(status: u16, reason: &str) -> ResponseSpec {
    ResponseSpec { reason: Some(reason.to_string()), ..ResponseSpec::new(status) }
}

/// The REGISTER → registrar glue, in one place: the registrar reads plain
/// data, and how it is read off the SIP message may change under it.
/// `Err` carries the reason phrase of a 400.
fn register_request(req: &Message, src: SocketAddr) -> Result<RegisterRequest, register::RegisterError> {
    let mut rr = register::to_registrar(req, src)?;
    // Over TCP/TLS the agent is reached back over the connection it
    // registered on (RFC 5626 flow), so its target is the connection's
    // far end, whatever its Contact says.
    if req.top_via().is_some_and(|v| Transport::of_via(v.protocol).is_stream()) {
        if let crate::acd::ContactSet::List(list) = &mut rr.contacts {
            for c in list {
                c.ob = true;
            }
        }
    }
    Ok(rr)
}

impl<M: MediaControl> Signalling<M> {
    pub fn new(cfg: SignallingConfig, ep: Endpoint, calls: CallTable, media: M) -> Signalling<M> {
        Signalling {
            flood: FloodGuard::new(cfg.rate_limit_per_ip),
            cfg,
            ep,
            calls,
            media,
            effects: VecDeque::new(),
            next_ticket: 0,
            awaiting_routing: HashMap::new(),
            awaiting_feature: HashMap::new(),
            probes: HashMap::new(),
            next_stats: None,
            statuses: Box::new([0; 700]),
            rate_limited: 0,
            send_errors: 0,
            routing_lost: 0,
            facts_sent: 0,
            media_timeouts: 0,
            icmp_reports: 0,
            stream_messages: [0; 2],
        }
    }

    pub fn id(&self) -> u16 {
        self.cfg.shard
    }

    /// Feeds one input. `now` drives every timer; `wall_ms` (unix ms) is
    /// the clock of CDR times in the facts told to the router.
    pub fn handle(&mut self, input: Input<'_>, now: Instant, wall_ms: u64) {
        match input {
            Input::Datagram { data, src } => {
                let exempt = self.cfg.rate_limit_exempt_loopback && src.ip().is_loopback();
                if !exempt && !self.flood.allow(src.ip(), now) {
                    self.rate_limited += 1;
                    return;
                }
                self.ep.handle_datagram(data, src, now);
            }
            Input::Stream { data, src, transport } => {
                let exempt = self.cfg.rate_limit_exempt_loopback && src.ip().is_loopback();
                if !exempt && !self.flood.allow(src.ip(), now) {
                    self.rate_limited += 1;
                    return;
                }
                if let Some(n) = self.stream_messages.get_mut(usize::from(transport == Transport::Tls)) {
                    *n += 1;
                }
                self.ep.handle_stream(data, src, now);
            }
            Input::Forwarded(Forwarded::Datagram { data, src }) => self.ep.handle_forwarded(&data, src, now),
            Input::Forwarded(Forwarded::Unreachable { dest }) => self.ep.handle_transport_error(dest),
            // The shell's business (connections are not the core's).
            Input::Forwarded(Forwarded::StreamSend { .. }) => {}
            Input::Routing(msg) => self.on_routing(msg, now, wall_ms),
            Input::Media(ev) => {
                self.media.observe(&ev);
                if matches!(ev, Event::MediaTimeout { .. }) {
                    self.media_timeouts += 1;
                }
                self.calls.on_media_event(&mut self.ep, &mut self.media, &ev, now, wall_ms);
            }
            Input::Unreachable(dests) => {
                self.icmp_reports += dests.len() as u64;
                for dest in dests {
                    self.ep.handle_transport_error(dest);
                    for shard in (0..self.cfg.shards).filter(|s| *s != self.cfg.shard) {
                        self.effects.push_back(Effect::Forward(shard, Forwarded::Unreachable { dest }));
                    }
                }
            }
            Input::Shutdown => self.calls.hangup_all(&mut self.ep, &mut self.media, now, wall_ms),
            Input::Timer => {
                self.ep.handle_timeout(now);
                self.calls.handle_timeout(&mut self.ep, &mut self.media, now, wall_ms);
                if self.next_stats.is_some_and(|t| t <= now) {
                    self.next_stats = None;
                    for (a, b) in self.calls.bridged_legs() {
                        self.media.request_stats(a);
                        self.media.request_stats(b);
                    }
                }
            }
        }
        self.drain(now, wall_ms);
        if self.next_stats.is_none() && self.calls.active() > 0 {
            self.next_stats = self.cfg.stats_interval.map(|d| now + d);
        }
    }

    /// The next thing for the shell to do, in order.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// Moves every pending effect into `out` (one borrow for a whole step).
    pub fn drain_effects(&mut self, out: &mut Vec<Effect>) {
        out.extend(self.effects.drain(..));
    }

    /// When to feed [`Input::Timer`] next. May be early (a stale timer costs
    /// one spurious wake-up), never late.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.ep.poll_timeout(), self.calls.poll_timeout(), self.next_stats].into_iter().flatten().min()
    }

    /// A datagram the shell could not send (counted for /metrics).
    pub fn note_send_error(&mut self) {
        self.send_errors += 1;
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.ep
    }

    pub fn calls(&self) -> &CallTable {
        &self.calls
    }

    pub fn media(&self) -> &M {
        &self.media
    }

    /// The media control, for the shell's I/O around inputs (draining relay
    /// events, batching its wake-ups) and for tests.
    pub fn media_mut(&mut self) -> &mut M {
        &mut self.media
    }

    /// Endpoint outputs go through the call table first; what it leaves is
    /// ours (transmit, forward, REGISTER, stray requests); then the call
    /// facts for the router.
    fn drain(&mut self, now: Instant, wall_ms: u64) {
        while let Some(o) = self.ep.poll_output() {
            let o = match self.calls.on_output(&mut self.ep, &mut self.media, o, now, wall_ms) {
                Handled::Done => continue,
                Handled::NotMine(o) => o,
            };
            match o {
                Output::Transmit { dest, data } => {
                    if let Some(c) = status_of(&data).and_then(|code| self.statuses.get_mut(usize::from(code))) {
                        *c += 1;
                    }
                    self.effects.push_back(Effect::Send(dest, data))
                }
                Output::Forward { shard, data, src } => {
                    self.effects.push_back(Effect::Forward(shard, Forwarded::Datagram { data, src }))
                }
                Output::Request { tx, request, src } => self.on_request(tx, request, src, now),
                Output::Cancelled { tx } => {
                    // A feature code cancelled while routing decides: its
                    // verdict, when it comes, has no call left to answer.
                    self.awaiting_feature.retain(|_, (t, _, _)| *t != tx);
                    self.ep.respond(tx, ResponseSpec::new(487), now)
                }
                Output::Response { tx, response } if response.status().is_some_and(|s| s >= 200) => {
                    if let Some(probe) = self.probes.remove(&tx) {
                        self.effects.push_back(Effect::Route(ToRouting::ProbeResult { probe, ok: true }));
                    }
                }
                Output::ClientTimeout { tx } => {
                    if let Some(probe) = self.probes.remove(&tx) {
                        self.effects.push_back(Effect::Route(ToRouting::ProbeResult { probe, ok: false }));
                    }
                }
                other => {
                    tracing::trace!(shard = self.cfg.shard, output = ?other, "endpoint output ignored");
                }
            }
        }
        while let Some(f) = self.calls.poll_fact() {
            tracing::debug!(shard = self.cfg.shard, fact = ?f, "call fact");
            self.facts_sent += 1;
            self.effects.push_back(Effect::Route(ToRouting::Call(f)));
        }
    }

    /// Requests the call table did not take: REGISTER, and out-of-dialog
    /// requests for no call.
    fn on_request(&mut self, tx: ServerTxId, req: Message, src: SocketAddr, now: Instant) {
        tracing::debug!(shard = self.cfg.shard, method = req.method(), uri = req.request_uri(), %src, "request");
        match req.method() {
            Some("REGISTER") => match register_request(&req, src) {
                Ok(rr) => {
                    let ticket = self.next_ticket;
                    self.next_ticket += 1;
                    self.awaiting_routing.insert(ticket, tx);
                    self.effects.push_back(Effect::Route(ToRouting::Register { shard: self.cfg.shard, tx: ticket, req: rr }));
                }
                Err(e) => self.ep.respond(tx, reply(400, e.reason()), now),
            },
            // The call table passes on only feature-code INVITEs.
            Some("INVITE") => self.feature_request(tx, req, src, now),
            _ => self.ep.respond(tx, reply(481, "Call/Transaction Does Not Exist"), now),
        }
    }

    /// A feature-code INVITE: its SDP is checked here (nothing is applied
    /// for a call we could not answer), the rest on the routing shard.
    fn feature_request(&mut self, tx: ServerTxId, req: Message, src: SocketAddr, now: Instant) {
        if let Some(refusal) = self.calls.feature_offer_error(&self.ep, &req) {
            return self.ep.respond(tx, refusal, now);
        }
        match feature::to_request(&req, src) {
            Ok(fr) => {
                let ticket = self.next_ticket;
                self.next_ticket += 1;
                self.awaiting_feature.insert(ticket, (tx, req, src));
                self.effects.push_back(Effect::Route(ToRouting::Feature { shard: self.cfg.shard, tx: ticket, req: fr }));
            }
            Err(e) => self.ep.respond(tx, reply(400, &e.to_string()), now),
        }
    }

    fn on_routing(&mut self, msg: FromRouting, now: Instant, wall_ms: u64) {
        match msg {
            FromRouting::RegisterReply { tx, reply } => match self.awaiting_routing.remove(&tx) {
                Some(stx) => self.ep.respond(stx, register::to_response(&reply, wall_ms), now),
                None => self.routing_lost += 1,
            },
            // No entry: the phone cancelled meanwhile (the change stands).
            FromRouting::FeatureReply { tx, reply } => match self.awaiting_feature.remove(&tx) {
                Some((stx, req, src)) if reply.status() == 200 => {
                    self.calls.answer_feature(&mut self.ep, &mut self.media, stx, &req, src, now)
                }
                Some((stx, _, _)) => self.ep.respond(stx, feature::to_response(&reply), now),
                None => tracing::debug!(tx, "feature code verdict for a cancelled INVITE"),
            },
            FromRouting::Decision(d) => self.calls.on_decision(&mut self.ep, &mut self.media, d, now, wall_ms),
            FromRouting::Probe { probe, uri, dest } => self.send_probe(probe, &uri, dest, now),
            FromRouting::CallConfig(c) => self.calls.set_config(c),
        }
    }

    /// OPTIONS to a registered contact for the routing shard's liveness
    /// check; any response counts as alive.
    fn send_probe(&mut self, probe: u64, uri: &str, dest: SocketAddr, now: Instant) {
        let from = format!("<sip:cc-engine@{}>", self.ep.config().domain);
        let to = format!("<{uri}>");
        let call_id = format!("probe-{}-{probe}", self.cfg.shard);
        let req = OutRequest {
            method: "OPTIONS",
            uri,
            dest,
            transport: crate::sip::Transport::of_uri(uri),
            routes: &[],
            from: &from,
            to: &to,
            call_id: &call_id,
            cseq: 1,
            contact: None,
            body: None,
        };
        let tx = self.ep.send(req, now);
        self.probes.insert(tx, probe);
    }

    /// The shard's figures for /metrics.
    pub fn samples(&self) -> Vec<Sample> {
        let c = self.ep.counters();
        let mut v = Vec::with_capacity(48);
        for r in DropReason::ALL {
            v.push(Sample::new("cc_sip_dropped_total", format!("reason=\"{}\"", r.as_str()), c.dropped(r)));
        }
        for (class, n) in c.responses_sent.iter().enumerate().skip(1) {
            v.push(Sample::new("cc_sip_responses_sent_total", format!("class=\"{class}xx\""), *n));
        }
        for (code, n) in self.statuses.iter().enumerate().filter(|(_, n)| **n > 0) {
            v.push(Sample::new("cc_sip_responses_total", format!("code=\"{code}\""), *n));
        }
        v.push(Sample::new("cc_sip_dropped_total", "reason=\"rate_limited\"", self.rate_limited));
        v.push(Sample::new("cc_sip_keepalives_total", "", c.keepalives));
        v.push(Sample::new("cc_sip_stream_messages_total", "transport=\"tcp\"", self.stream_messages[0]));
        v.push(Sample::new("cc_sip_stream_messages_total", "transport=\"tls\"", self.stream_messages[1]));
        v.push(Sample::new("cc_sip_forwarded_total", "", c.forwarded));
        v.push(Sample::new("cc_sip_requests_total", "", c.requests_in));
        v.push(Sample::new("cc_sip_responses_received_total", "", c.responses_in));
        v.push(Sample::new("cc_sip_retransmissions_absorbed_total", "", c.retransmissions_absorbed));
        v.push(Sample::new("cc_sip_retransmissions_sent_total", "", c.retransmissions_sent));
        v.push(Sample::new("cc_sip_client_timeouts_total", "", c.client_timeouts));
        v.push(Sample::new("cc_sip_icmp_unreachable_total", "", self.icmp_reports));
        v.push(Sample::new("cc_sip_client_transport_errors_total", "", c.client_transport_errors));
        v.push(Sample::new("cc_sip_server_timeouts_total", "", c.server_timeouts));
        let (server, client) = self.ep.transactions();
        v.push(Sample::new("cc_sip_transactions", "kind=\"server\"", server as u64));
        v.push(Sample::new("cc_sip_transactions", "kind=\"client\"", client as u64));
        v.push(Sample::new("cc_sip_transactions", "kind=\"completed\"", self.ep.completed_transactions() as u64));
        v.push(Sample::new("cc_sip_send_errors_total", "", self.send_errors));
        v.push(Sample::new("cc_routing_replies_unmatched_total", "", self.routing_lost));
        v.push(Sample::new("cc_routing_pending", "", (self.awaiting_routing.len() + self.awaiting_feature.len()) as u64));
        v.push(Sample::new("cc_feature_calls_active", "", self.calls.feature_calls() as u64));
        v.push(Sample::new("cc_call_facts_total", "", self.facts_sent));
        v.push(Sample::new("cc_media_timeouts_total", "", self.media_timeouts));
        v.push(Sample::new("cc_sip_untrusted_priority_total", "", self.calls.untrusted_priority()));
        v.push(Sample::new("cc_calls_active", "", self.calls.active() as u64));
        let u = self.media.usage();
        v.push(Sample::new("cc_rtp_ports_in_use", "", u.ports_in_use as u64));
        v.push(Sample::new("cc_rtp_ports_quarantined", "", u.ports_quarantined as u64));
        v.push(Sample::new("cc_rtp_port_refusals_total", "", u.port_refusals));
        // Pairs handed out before their quarantine ended (the range was
        // short), and pairs skipped because another socket held a port.
        v.push(Sample::new("cc_rtp_ports_reused_early_total", "", u.ports_reused_early));
        v.push(Sample::new("cc_rtp_ports_bind_skipped_total", "", u.ports_bind_skipped));
        v.push(Sample::new("cc_rtp_rtcp_bind_failures_total", "", u.rtcp_bind_failures));
        let t = &u.traffic;
        v.push(Sample::new("cc_relay_packets_total", "direction=\"received\"", t.rx_packets));
        v.push(Sample::new("cc_relay_packets_total", "direction=\"sent\"", t.tx_packets));
        v.push(Sample::new("cc_relay_bytes_total", "direction=\"received\"", t.rx_bytes));
        v.push(Sample::new("cc_relay_bytes_total", "direction=\"sent\"", t.tx_bytes));
        for r in crate::media::DropReason::ALL {
            let n = t.drops.get(r as usize).copied().unwrap_or(0);
            v.push(Sample::new("cc_relay_drops_total", format!("reason=\"{}\"", r.name()), n));
        }
        v
    }
}

#[cfg(test)]
mod tests;
