//! A signalling shard's protocol state, wired together: the SIP endpoint,
//! the B2BUA call table, the shard's relay, and the REGISTERs waiting for
//! the routing shard. No sockets or awaits here: the shell in
//! `signalling.rs` feeds inputs and carries out the `Effect`s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::flood::FloodGuard;
use super::messages::{Forwarded, FromRouting, ToRouting};
use crate::sip::register;
use crate::sip::{Message, View};
use crate::call::{CallTable, Handled, HoldLibrary, LegStats, RelayMedia};
use crate::media::RelayHandle;
use crate::mgmt::Sample;
use crate::sip::endpoint::{Endpoint, Output, ResponseSpec, ServerTxId};
use crate::sip::DropReason;

/// What the core asks the shell to do after an input.
pub enum Effect {
    Send(SocketAddr, Bytes),
    Forward(u16, Forwarded),
    Route(ToRouting),
}

/// Wall-clock ms for CDR times, read at the edge like `Instant::now()`.
pub fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub struct Core {
    pub id: u16,
    /// Signalling shards in the engine (ICMP news is told to all).
    shards: u16,
    flood: FloodGuard,
    flood_exempt_loopback: bool,
    rate_limited: u64,
    pub ep: Endpoint,
    pub calls: CallTable,
    pub relay: RelayHandle,
    hold: HoldLibrary,
    stats: LegStats,
    next_ticket: u64,
    awaiting_routing: HashMap<u64, ServerTxId>,
    /// Responses put on the wire, by status code (100..=699), for /metrics.
    statuses: Box<[u64; 700]>,
    pub send_errors: u64,
    routing_lost: u64,
    facts_sent: u64,
    media_timeouts: u64,
    /// Destinations the kernel reported unreachable (ICMP), not yet fed to
    /// the endpoint; `drain` feeds them.
    unreachable: Vec<SocketAddr>,
    icmp_reports: u64,
}

/// The status code of an outgoing response (`SIP/2.0 NNN ...`), if it is one.
fn status_of(data: &[u8]) -> Option<u16> {
    let code = data.strip_prefix(b"SIP/2.0 ")?.get(..3)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

fn reply(status: u16, reason: &str) -> ResponseSpec {
    ResponseSpec { reason: Some(reason.to_string()), ..ResponseSpec::new(status) }
}

impl Core {
    pub fn new(
        id: u16,
        shards: u16,
        ep: Endpoint,
        calls: CallTable,
        relay: RelayHandle,
        hold: HoldLibrary,
        flood: (FloodGuard, bool),
    ) -> Core {
        Core {
            id,
            shards,
            flood: flood.0,
            flood_exempt_loopback: flood.1,
            rate_limited: 0,
            ep,
            calls,
            relay,
            hold,
            stats: LegStats::default(),
            next_ticket: 0,
            awaiting_routing: HashMap::new(),
            statuses: Box::new([0; 700]),
            send_errors: 0,
            routing_lost: 0,
            facts_sent: 0,
            media_timeouts: 0,
            unreachable: Vec::new(),
            icmp_reports: 0,
        }
    }

    /// Moves every pending output into `out`: endpoint outputs go through
    /// the call table first; what it leaves is ours (transmit, forward,
    /// REGISTER, stray requests); then the call facts for the router.
    pub fn drain(&mut self, now: Instant, wall: u64, out: &mut Vec<Effect>) {
        for dest in std::mem::take(&mut self.unreachable) {
            self.ep.handle_transport_error(dest);
            for shard in (0..self.shards).filter(|s| *s != self.id) {
                out.push(Effect::Forward(shard, Forwarded::Unreachable { dest }));
            }
        }
        while let Some(o) = self.ep.poll_output() {
            let mut media = RelayMedia { relay: &mut self.relay, hold: &self.hold, stats: &self.stats };
            let o = match self.calls.on_output(&mut self.ep, &mut media, o, now, wall) {
                Handled::Done => continue,
                Handled::NotMine(o) => o,
            };
            match o {
                Output::Transmit { dest, data } => {
                    if let Some(code) = status_of(&data) {
                        if let Some(c) = self.statuses.get_mut(usize::from(code)) {
                            *c += 1;
                        }
                    }
                    out.push(Effect::Send(dest, data))
                }
                Output::Forward { shard, data, src } => {
                    out.push(Effect::Forward(shard, Forwarded::Datagram { data, src }))
                }
                Output::Request { tx, request, src } => self.on_request(tx, request, src, now, out),
                Output::Cancelled { tx } => self.ep.respond(tx, ResponseSpec::new(487), now),
                other => {
                    tracing::trace!(shard = self.id, output = ?other, "endpoint output ignored");
                }
            }
        }
        while let Some(f) = self.calls.poll_fact() {
            tracing::debug!(shard = self.id, fact = ?f, "call fact");
            self.facts_sent += 1;
            out.push(Effect::Route(ToRouting::Call(f)));
        }
    }

    /// From another shard: a datagram we own, or ICMP news its socket got
    /// for `dest` (maybe about one of our requests).
    pub fn on_forwarded(&mut self, f: Forwarded, now: Instant) {
        match f {
            Forwarded::Datagram { data, src } => self.ep.handle_forwarded(&data, src, now),
            Forwarded::Unreachable { dest } => self.ep.handle_transport_error(dest),
        }
    }

    /// Destinations the kernel reported unreachable; handled at the next
    /// `drain` (the shell calls this from a step or between steps).
    pub fn note_unreachable(&mut self, dests: Vec<SocketAddr>) {
        self.icmp_reports += dests.len() as u64;
        self.unreachable.extend(dests);
    }

    /// A datagram from the socket: rate limited per source before parsing.
    pub fn on_datagram(&mut self, data: &[u8], src: SocketAddr, now: Instant) {
        let exempt = self.flood_exempt_loopback && src.ip().is_loopback();
        if !exempt && !self.flood.allow(src.ip(), now) {
            self.rate_limited += 1;
            return;
        }
        self.ep.handle_datagram(data, src, now);
    }

    /// Requests the call table did not take: REGISTER, and out-of-dialog
    /// requests for no call.
    fn on_request(&mut self, tx: ServerTxId, req: Message, src: SocketAddr, now: Instant, out: &mut Vec<Effect>) {
        tracing::debug!(shard = self.id, method = req.method(), uri = req.request_uri(), %src, "request");
        match req.method() {
            Some("REGISTER") => match register::to_registrar(&req, src) {
                Ok(rr) => {
                    let ticket = self.next_ticket;
                    self.next_ticket += 1;
                    self.awaiting_routing.insert(ticket, tx);
                    out.push(Effect::Route(ToRouting::Register { shard: self.id, tx: ticket, req: rr }));
                }
                Err(e) => self.ep.respond(tx, reply(400, e.reason()), now),
            },
            _ => self.ep.respond(tx, reply(481, "Call/Transaction Does Not Exist"), now),
        }
    }

    pub fn on_routing(&mut self, msg: FromRouting, now: Instant, wall: u64) {
        match msg {
            FromRouting::RegisterReply { tx, reply } => match self.awaiting_routing.remove(&tx) {
                Some(stx) => self.ep.respond(stx, register::to_response(&reply), now),
                None => self.routing_lost += 1,
            },
            FromRouting::Decision(d) => {
                let mut media = RelayMedia { relay: &mut self.relay, hold: &self.hold, stats: &self.stats };
                self.calls.on_decision(&mut self.ep, &mut media, d, now, wall);
            }
        }
    }

    pub fn on_timeout(&mut self, now: Instant, wall: u64) {
        self.ep.handle_timeout(now);
        let mut media = RelayMedia { relay: &mut self.relay, hold: &self.hold, stats: &self.stats };
        self.calls.handle_timeout(&mut self.ep, &mut media, now, wall);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.ep.poll_timeout(), self.calls.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Drains the relay's events (stats answers, media timeouts, closes).
    /// Returns how many there were.
    pub fn on_media_events(&mut self, now: Instant, wall: u64) -> usize {
        let mut n = 0;
        while let Some(ev) = self.relay.try_event() {
            n += 1;
            self.stats.on_event(&ev);
            if matches!(ev, crate::media::Event::MediaTimeout { .. }) {
                self.media_timeouts += 1;
            }
            let mut media = RelayMedia { relay: &mut self.relay, hold: &self.hold, stats: &self.stats };
            self.calls.on_media_event(&mut self.ep, &mut media, &ev, now, wall);
        }
        n
    }

    /// Asks the relay for fresh counters of every bridged leg, so that a
    /// call's CDR carries RTP counts at most one poll interval old.
    pub fn request_stats(&self) {
        self.relay.begin_batch();
        for (a, b) in self.calls.bridged_legs() {
            self.relay.request_stats(a);
            self.relay.request_stats(b);
        }
        self.relay.end_batch();
    }

    /// Graceful stop: every call is hung up (BYE/CANCEL/5xx) so no leg is
    /// left ringing or talking into a dead engine.
    pub fn hangup_all(&mut self, now: Instant, wall: u64) {
        let mut media = RelayMedia { relay: &mut self.relay, hold: &self.hold, stats: &self.stats };
        self.calls.hangup_all(&mut self.ep, &mut media, now, wall);
    }

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
        v.push(Sample::new("cc_routing_pending", "", self.awaiting_routing.len() as u64));
        v.push(Sample::new("cc_call_facts_total", "", self.facts_sent));
        v.push(Sample::new("cc_media_timeouts_total", "", self.media_timeouts));
        let counts = self.calls.counts();
        v.push(Sample::new("cc_calls_active", "", counts.calls as u64));
        let ports = self.relay.ports();
        v.push(Sample::new("cc_rtp_ports_in_use", "", ports.in_use() as u64));
        v.push(Sample::new("cc_rtp_ports_quarantined", "", ports.quarantined() as u64));
        v.push(Sample::new("cc_rtp_port_refusals_total", "", ports.exhausted_count));
        // Pairs handed out before their quarantine ended (the range was
        // short), and pairs skipped because another socket held a port.
        v.push(Sample::new("cc_rtp_ports_reused_early_total", "", ports.reused_early_count));
        v.push(Sample::new("cc_rtp_ports_bind_skipped_total", "", ports.bind_skipped_count));
        v.push(Sample::new("cc_rtp_rtcp_bind_failures_total", "", self.relay.rtcp_bind_failures()));
        v
    }
}
