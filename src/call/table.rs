//! The shard's calls and the indexes that route endpoint outputs, router
//! decisions and relay events to them.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::call::{Agent, Call, Fork, Side};
use super::dialog::Dialog;
use super::msg;
use crate::sip::{Transport, View};
use super::sdp;
use super::{CallConfig, CallCounts, Handled, MediaControl};
use crate::acd::facts::{CallFact, CallId, EndReason, OfferResult, Party};
use crate::media::sdp::SdpError;
use crate::media::Event;
use crate::sip::ids::IdGen;
use crate::sip::{ClientTxId, Endpoint, Output, ResponseSpec, ServerTxId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SrvRole {
    CustomerInvite,
    ReInvite(Side),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Srv {
    pub(super) call: CallId,
    pub(super) role: SrvRole,
    /// A 2xx was sent: the endpoint will report `Ack` or `AckTimeout`.
    pub(super) awaiting_ack: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CliRole {
    AgentInvite,
    ReInvite(Side),
}

/// A transaction of ours that outlives its purpose (BYE, CANCEL, a
/// cancelled INVITE): kept until its final response or timeout.
#[derive(Debug)]
pub(super) enum Orphan {
    Plain,
    /// An INVITE we gave up on: a 2xx for it is ACKed (and BYE'd when `bye`).
    Invite {
        dialog: Box<Dialog>,
        cseq: u32,
        bye: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    Ring(CallId, u64),
    AckExpiry(ClientTxId),
    /// Re-send the 180 to a caller still waiting unanswered (§13.3.1.1).
    Provisional(CallId),
    /// A feature call's tone has played: BYE.
    FeatureEnd(u64),
}

/// §13.3.1.1: a UAS that cannot answer at once sends a provisional at least
/// every minute; else the caller's INVITE transaction gives up (Timer C,
/// > 3 min) while the call is still queued here.
pub(super) const PROVISIONAL_REFRESH: std::time::Duration = std::time::Duration::from_secs(60);

pub struct CallTable {
    pub(super) cfg: CallConfig,
    pub(super) shard: u16,
    pub(super) ids: IdGen,
    pub(super) next_seq: u64,
    pub(super) calls: HashMap<CallId, Call>,
    pub(super) srv: HashMap<ServerTxId, Srv>,
    pub(super) cli: HashMap<ClientTxId, (CallId, CliRole)>,
    pub(super) dialogs: HashMap<(String, String), (CallId, Side)>,
    pub(super) legs: HashMap<crate::media::RelayLegId, CallId>,
    pub(super) orphan_cli: HashMap<ClientTxId, Orphan>,
    pub(super) orphan_srv: HashSet<ServerTxId>,
    /// ACKs of 2xx responses we received: re-sent on retransmission.
    pub(super) acks: HashMap<ClientTxId, (Bytes, SocketAddr, Instant)>,
    pub(super) timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    pub(super) facts: VecDeque<CallFact>,
    /// Callers whose priority or skills headers were ignored because
    /// their source is not trusted (`/metrics`).
    pub(super) untrusted_priority: u64,
    /// Answered feature-code calls by id, and their dialogs.
    pub(super) feature_calls: HashMap<u64, super::feature_leg::FeatureCall>,
    pub(super) feature_dialogs: HashMap<(String, String), u64>,
}

pub(super) fn spec(status: u16, reason: Option<&str>) -> ResponseSpec {
    ResponseSpec {
        reason: reason.map(str::to_owned),
        ..ResponseSpec::new(status)
    }
}

pub(super) fn sdp_error_spec(e: &SdpError, host: &str) -> ResponseSpec {
    let status = e.sip_status();
    let s = match e {
        SdpError::Malformed { line_no, line, reason } => {
            let r = format!("Bad SDP line {line_no}: {}: {reason}", msg::quote(line));
            spec(status, Some(&r))
        }
        _ => spec(status, None),
    };
    s.header("Warning", e.warning(host))
}

pub(super) fn offer_result(status: u16) -> OfferResult {
    match status {
        408 => OfferResult::NoAnswer,
        486 | 600 => OfferResult::Busy,
        603 => OfferResult::Declined,
        s => OfferResult::Failed { status: Some(s) },
    }
}

impl CallTable {
    /// `seed` seeds the ids (tags, Call-IDs) of agent legs; they carry
    /// `shard` so replies find this shard.
    /// New settings after a config reload; calls already set up keep what
    /// they were set up with.
    pub fn set_config(&mut self, cfg: CallConfig) {
        self.cfg = cfg;
    }

    pub fn new(cfg: CallConfig, shard: u16, seed: u64) -> CallTable {
        CallTable {
            cfg,
            shard,
            ids: IdGen::new(shard, seed ^ 0xCA11_0000_0000_0000),
            next_seq: 1,
            calls: HashMap::new(),
            srv: HashMap::new(),
            cli: HashMap::new(),
            dialogs: HashMap::new(),
            legs: HashMap::new(),
            orphan_cli: HashMap::new(),
            orphan_srv: HashSet::new(),
            acks: HashMap::new(),
            timers: BinaryHeap::new(),
            facts: VecDeque::new(),
            untrusted_priority: 0,
            feature_calls: HashMap::new(),
            feature_dialogs: HashMap::new(),
        }
    }

    /// Callers whose priority or skills headers were ignored (untrusted).
    pub fn untrusted_priority(&self) -> u64 {
        self.untrusted_priority
    }

    pub fn poll_fact(&mut self) -> Option<CallFact> {
        self.facts.pop_front()
    }

    /// Earliest timer (ring timeouts, ACK cache expiry); may be a stale
    /// entry, which costs one spurious wake-up.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Calls on this shard (O(1), unlike `counts`).
    pub fn active(&self) -> usize {
        self.calls.len()
    }

    /// Whether the call is still on this shard.
    pub fn contains(&self, call: CallId) -> bool {
        self.calls.contains_key(&call)
    }

    /// (customer, agent) relay legs of every bridged call: the shell asks
    /// the relay for their stats now and then (`RelayHandle::request_stats`)
    /// so `Ended` carries recent RTP counts.
    pub fn bridged_legs(&self) -> Vec<(crate::media::RelayLegId, crate::media::RelayLegId)> {
        self.calls
            .values()
            .filter(|c| c.bridged())
            .filter_map(|c| c.agent.as_ref().map(|a| (c.leg.id, a.leg.id)))
            .collect()
    }

    pub fn counts(&self) -> CallCounts {
        let mut c = CallCounts {
            calls: self.calls.len(),
            dialogs: self.dialogs.len() + self.feature_dialogs.len(),
            transactions: self.srv.len() + self.cli.len(),
            legs: self.legs.len(),
            orphans: self.orphan_cli.len() + self.orphan_srv.len(),
            acks: self.acks.len(),
            timers: self.timers.len(),
            ..CallCounts::default()
        };
        for call in self.calls.values() {
            if call.bridged() {
                c.bridged += 1;
            } else if call.ringing() {
                c.ringing += 1;
            } else if call.queued {
                c.waiting += 1;
            } else {
                c.arrived += 1;
            }
        }
        c
    }

    /// Our Contact in a dialog on `t`. On TCP/TLS it asks the peer to come
    /// back on that transport (a connection it holds is reused), on TLS at
    /// our TLS port, and as `sips:` when the peer's own URI is (RFC 5630).
    pub(super) fn contact(ep: &Endpoint, user: &str, t: Transport, peer_sips: bool) -> String {
        let addr = ep.config().local_addr;
        match t {
            Transport::Udp => format!("sip:{user}@{addr}"),
            Transport::Tcp => format!("sip:{user}@{addr};transport=tcp"),
            Transport::Tls => {
                let tls = std::net::SocketAddr::new(addr.ip(), ep.config().tls_port);
                if peer_sips {
                    format!("sips:{user}@{tls}")
                } else {
                    format!("sip:{user}@{tls};transport=tls")
                }
            }
        }
    }

    pub(super) fn fact(&mut self, f: CallFact) {
        self.facts.push_back(f);
    }

    // ------------------------------------------------------------ outputs

    /// Feed one endpoint output. Everything about calls is handled here;
    /// anything else comes back as `NotMine`.
    pub fn on_output(
        &mut self,
        ep: &mut Endpoint,
        media: &mut dyn MediaControl,
        out: Output,
        now: Instant,
        wall_ms: u64,
    ) -> Handled {
        match out {
            Output::Request { tx, request, src } => {
                if request.method() == Some("REGISTER") {
                    // The registrar's, and hot: no header work here.
                    return Handled::NotMine(Output::Request { tx, request, src });
                }
                let h = &request;
                let in_dialog = h.to_tag().is_some();
                match request.method() {
                    Some("INVITE") if !in_dialog && self.is_feature_invite(msg::user_of(request.request_uri().unwrap_or(""))) => {
                        // The routing shard authenticates and applies it.
                        Handled::NotMine(Output::Request { tx, request, src })
                    }
                    Some("INVITE") if !in_dialog => {
                        self.new_invite(ep, media, tx, &request, h, src, now, wall_ms);
                        Handled::Done
                    }
                    _ if in_dialog => {
                        self.in_dialog(ep, media, tx, &request, h, now, wall_ms);
                        Handled::Done
                    }
                    Some("BYE") => {
                        ep.respond(tx, spec(481, None), now);
                        Handled::Done
                    }
                    _ => Handled::NotMine(Output::Request { tx, request, src }),
                }
            }
            Output::Cancelled { tx } => match self.srv.get(&tx).copied() {
                Some(s) if s.role == SrvRole::CustomerInvite => {
                    self.caller_gone(ep, media, s.call, now, wall_ms);
                    Handled::Done
                }
                Some(_) => {
                    ep.respond(tx, spec(487, None), now);
                    Handled::Done
                }
                None => Handled::NotMine(Output::Cancelled { tx }),
            },
            Output::Ack { tx, request, src } => {
                if self.orphan_srv.remove(&tx) {
                    return Handled::Done;
                }
                let Some(s) = self.srv.remove(&tx) else {
                    return Handled::NotMine(Output::Ack { tx, request, src });
                };
                if let SrvRole::ReInvite(side) = s.role {
                    // A late answer (our 200 carried the offer).
                    if !request.body().is_empty() {
                        if let Some(call) = self.calls.get(&s.call) {
                            if let Ok(a) = sdp::read_answer(request.body(), &call.chosen) {
                                if let (Some(leg), true) = (call.leg(side), a.rtp.is_some()) {
                                    media.set_peer(leg.id, a.rtp, a.rtcp);
                                }
                            }
                        }
                    }
                }
                Handled::Done
            }
            Output::AckTimeout { tx } => {
                if self.orphan_srv.remove(&tx) {
                    return Handled::Done;
                }
                let Some(s) = self.srv.remove(&tx) else {
                    return Handled::NotMine(Output::AckTimeout { tx });
                };
                self.engine_hangup(ep, media, s.call, EndReason::Failed, "no ACK for our 200", now, wall_ms);
                Handled::Done
            }
            Output::Response { tx, response } => {
                if let Some((call, role)) = self.cli.get(&tx).copied() {
                    self.on_response(ep, media, call, role, tx, &response, now, wall_ms);
                    return Handled::Done;
                }
                if self.orphan_cli.contains_key(&tx) {
                    self.orphan_response(ep, tx, &response, now);
                    return Handled::Done;
                }
                if let Some((ack, dest, _)) = self.acks.get(&tx) {
                    if response.status().unwrap_or(0) / 100 == 2 {
                        ep.transmit(*dest, ack.clone());
                    }
                    return Handled::Done;
                }
                Handled::NotMine(Output::Response { tx, response })
            }
            Output::ClientTimeout { tx } => {
                if self.orphan_cli.remove(&tx).is_some() {
                    return Handled::Done;
                }
                let Some((call, role)) = self.cli.remove(&tx) else {
                    return Handled::NotMine(Output::ClientTimeout { tx });
                };
                match role {
                    CliRole::AgentInvite => self.offer_failed(media, call, tx, OfferResult::NoAnswer, now, wall_ms),
                    CliRole::ReInvite(side) => {
                        if let Some(dir) = self.reinvite_done(call, side) {
                            self.send_reinvite(ep, call, side, dir, now);
                        }
                    }
                }
                Handled::Done
            }
            other => Handled::NotMine(other),
        }
    }

    // ------------------------------------------------------- media

    /// A relay event. Returns false when it is not about one of our legs.
    pub fn on_media_event(
        &mut self,
        ep: &mut Endpoint,
        media: &mut dyn MediaControl,
        ev: &Event,
        now: Instant,
        wall_ms: u64,
    ) -> bool {
        let Event::MediaTimeout { leg, .. } = ev else {
            return false;
        };
        let Some(id) = self.legs.get(leg).copied() else {
            return false;
        };
        let Some(call) = self.calls.get(&id) else { return false };
        let is_customer = call.leg.id == *leg;
        // The agent leg is idle until bridged, and a caller may send nothing
        // before our 200: only a silence that matters ends the call.
        let relevant = call.bridged() || (is_customer && call.cust.final_sent == Some(200));
        if relevant {
            self.engine_hangup(ep, media, id, EndReason::MediaTimeout, "media timeout", now, wall_ms);
        }
        true
    }

    // ------------------------------------------------------- timers

    pub fn handle_timeout(&mut self, ep: &mut Endpoint, media: &mut dyn MediaControl, now: Instant, wall_ms: u64) {
        while let Some(Reverse((at, t))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match t {
                Timer::FeatureEnd(id) => self.end_feature(ep, media, id, true, now),
                Timer::AckExpiry(tx) => {
                    if self.acks.get(&tx).is_some_and(|(_, _, until)| *until <= now) {
                        self.acks.remove(&tx);
                    }
                }
                Timer::Provisional(id) => {
                    let Some(call) = self.calls.get(&id) else { continue };
                    if call.cust.final_sent.is_some() {
                        continue;
                    }
                    let mut s = ResponseSpec::new(180).header("Contact", format!("<{}>", call.cust.dialog.contact));
                    for r in &call.cust.dialog.routes {
                        s = s.header("Record-Route", r.clone());
                    }
                    ep.respond(call.cust.invite_tx, s, now);
                    self.timers.push(Reverse((now + PROVISIONAL_REFRESH, Timer::Provisional(id))));
                }
                Timer::Ring(id, seq) => {
                    let Some(call) = self.calls.get_mut(&id) else { continue };
                    let Some(a) = call.agent.as_ref().filter(|a| a.seq == seq && !a.answered) else {
                        continue;
                    };
                    // Every agent still ringing rang out (one, or several
                    // for a ring-all offer).
                    let names = a.ringing_agents();
                    if self.drop_agent(ep, media, id, now).is_some() {
                        for name in names {
                            self.fact(CallFact::OfferResult {
                                call: id,
                                agent: name,
                                result: OfferResult::NoAnswer,
                                at_ms: wall_ms,
                            });
                        }
                    }
                }
            }
        }
    }

    // ------------------------------------------------------- endings

    /// Graceful stop: every call is hung up (503 / BYE / CANCEL) and told
    /// to the router as `Failed` or `Ended { hangup: Engine, reason: Failed }`.
    /// Keep driving the endpoint afterwards until its transactions drain.
    pub fn hangup_all(&mut self, ep: &mut Endpoint, media: &mut dyn MediaControl, now: Instant, wall_ms: u64) {
        let mut features: Vec<u64> = self.feature_calls.keys().copied().collect();
        features.sort();
        for id in features {
            self.end_feature(ep, media, id, true, now);
        }
        let mut ids: Vec<CallId> = self.calls.keys().copied().collect();
        ids.sort();
        for id in ids {
            if let Some(c) = self.calls.get_mut(&id) {
                if c.cust.final_sent.is_none() {
                    c.cust.final_sent = Some(503);
                    let tx = c.cust.invite_tx;
                    ep.respond(tx, spec(503, Some("Shutting Down")), now);
                    self.srv.remove(&tx);
                }
            }
            self.engine_hangup(ep, media, id, EndReason::Failed, "engine shutting down", now, wall_ms);
        }
    }

    /// Our re-INVITE on `side` ended: clears it and returns the direction
    /// that waited for it, if any.
    pub(super) fn reinvite_done(&mut self, id: CallId, side: Side) -> Option<crate::media::sdp::Direction> {
        let call = self.calls.get_mut(&id)?;
        match side {
            Side::Customer => {
                call.cust.reinvite = None;
                call.cust.queued_dir.take()
            }
            Side::Agent => {
                let a = call.agent.as_mut()?;
                a.reinvite = None;
                a.queued_dir.take()
            }
        }
    }

    /// Close a relay leg and forget it. Every leg is closed through here,
    /// and only while the index has it: so exactly once.
    pub(super) fn close_leg(&mut self, media: &mut dyn MediaControl, leg: crate::media::RelayLegId, now: Instant) {
        if self.legs.remove(&leg).is_some() {
            media.close(leg, now);
        }
    }

    /// Detach the call's agent (offer or bridged) and close its relay leg;
    /// the SIP side of it is the caller's business.
    pub(super) fn take_agent(&mut self, media: &mut dyn MediaControl, id: CallId, now: Instant) -> Option<Agent> {
        let a = self.calls.get_mut(&id)?.agent.take()?;
        self.close_leg(media, a.leg.id, now);
        Some(a)
    }

    /// Cancel a ringing agent leg (its INVITE becomes an orphan that ACKs
    /// and BYEs a late 2xx) or BYE an answered one.
    pub(super) fn drop_agent(
        &mut self,
        ep: &mut Endpoint,
        media: &mut dyn MediaControl,
        id: CallId,
        now: Instant,
    ) -> Option<String> {
        let mut a = self.take_agent(media, id, now)?;
        let name = a.name.clone();
        if a.answered {
            if let Some(req) = a.dialog.request("BYE", None) {
                let t = ep.send(req, now);
                self.orphan_cli.insert(t, Orphan::Plain);
            }
            return Some(name);
        }
        for f in std::mem::take(&mut a.forks) {
            self.cancel_fork(ep, f, now);
        }
        let main = Fork {
            agent: a.name,
            tx: a.tx,
            invite_cseq: a.invite_cseq,
            dialog: a.dialog,
        };
        self.cancel_fork(ep, main, now);
        Some(name)
    }

    /// CANCEL one ringing contact; its INVITE becomes an orphan that ACKs
    /// and BYEs a 2xx crossing the CANCEL.
    pub(super) fn cancel_fork(&mut self, ep: &mut Endpoint, f: Fork, now: Instant) {
        self.cli.remove(&f.tx);
        if let Some(c) = ep.cancel(f.tx, now) {
            self.orphan_cli.insert(c, Orphan::Plain);
        }
        self.orphan_cli.insert(
            f.tx,
            Orphan::Invite {
                dialog: Box::new(f.dialog),
                cseq: f.invite_cseq,
                bye: true,
            },
        );
    }

    /// BYE one confirmed leg.
    pub(super) fn bye(&mut self, ep: &mut Endpoint, id: CallId, side: Side, now: Instant) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        if side == Side::Customer && call.cust.final_sent != Some(200) {
            return;
        }
        let Some(d) = call.dialog_mut(side) else { return };
        if let Some(req) = d.request("BYE", None) {
            let t = ep.send(req, now);
            self.orphan_cli.insert(t, Orphan::Plain);
        }
    }

    /// The caller hung up (CANCEL, or BYE before the bridge): 487 to a
    /// pending INVITE, cancel the agent, `Abandoned`.
    pub(super) fn caller_gone(
        &mut self,
        ep: &mut Endpoint,
        media: &mut dyn MediaControl,
        id: CallId,
        now: Instant,
        wall_ms: u64,
    ) {
        self.reject_customer(ep, id, spec(487, None), now);
        self.drop_agent(ep, media, id, now);
        self.fact(CallFact::Abandoned {
            call: id,
            at_ms: wall_ms,
        });
        self.finish(ep, media, id, now);
    }

    /// We end the call: BYE/408 the caller, BYE or cancel the agent, and
    /// tell the router `Ended` (bridged) or `Failed`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn engine_hangup(
        &mut self,
        ep: &mut Endpoint,
        media: &mut dyn MediaControl,
        id: CallId,
        reason: EndReason,
        why: &str,
        now: Instant,
        wall_ms: u64,
    ) {
        let Some(call) = self.calls.get(&id) else { return };
        let bridged = call.bridged();
        if bridged {
            // Before the agent's relay leg closes: its counts go in `Ended`.
            self.ended(media, id, Party::Engine, reason, wall_ms);
        }
        if !self.reject_customer(ep, id, spec(500, Some(why)), now) {
            self.bye(ep, id, Side::Customer, now);
        }
        self.drop_agent(ep, media, id, now);
        if !bridged {
            self.fact(CallFact::Failed {
                call: id,
                at_ms: wall_ms,
                reason: why.to_owned(),
            });
        }
        self.finish(ep, media, id, now);
    }

    pub(super) fn ended(
        &mut self,
        media: &mut dyn MediaControl,
        id: CallId,
        hangup: Party,
        reason: EndReason,
        wall_ms: u64,
    ) {
        let Some(call) = self.calls.get(&id) else { return };
        let rtp = match call.agent.as_ref() {
            Some(a) => media.rtp_counts(call.leg.id, a.leg.id),
            None => crate::acd::facts::RtpCounts::default(),
        };
        self.fact(CallFact::Ended {
            call: id,
            at_ms: wall_ms,
            hangup,
            reason,
            rtp,
        });
    }

    /// Remove the call and every index entry; close its relay legs.
    /// Transactions still running become orphans so their ends are absorbed.
    pub(super) fn finish(&mut self, ep: &mut Endpoint, media: &mut dyn MediaControl, id: CallId, now: Instant) {
        if let Some(a) = self.take_agent(media, id, now) {
            // Callers drop the agent first; this is the safety net.
            self.cli.remove(&a.tx);
            if !a.answered {
                for f in a.forks {
                    self.cancel_fork(ep, f, now);
                }
                let main = Fork {
                    agent: a.name,
                    tx: a.tx,
                    invite_cseq: a.invite_cseq,
                    dialog: a.dialog,
                };
                self.cancel_fork(ep, main, now);
            }
        }
        let Some(call) = self.calls.remove(&id) else { return };
        self.close_leg(media, call.leg.id, now);
        for k in &call.dialog_keys {
            self.dialogs.remove(k);
        }
        for tx in &call.srv {
            if let Some(s) = self.srv.remove(tx) {
                if s.awaiting_ack {
                    self.orphan_srv.insert(*tx);
                } else {
                    // Unanswered: never leave a transaction hanging.
                    ep.respond(*tx, spec(500, None), now);
                }
            }
        }
        for tx in &call.cli {
            if self.cli.remove(tx).is_some() {
                // A pending re-INVITE: both legs got a BYE; absorb its end.
                self.orphan_cli.insert(*tx, Orphan::Plain);
            }
        }
    }
}
