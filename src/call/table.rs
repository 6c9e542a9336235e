//! The shard's calls and the indexes that route endpoint outputs, router
//! decisions and relay events to them.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::call::{Agent, Call, Customer, Side};
use super::dialog::Dialog;
use super::msg::{self, Hdrs};
use super::sdp;
use super::{CallConfig, CallCounts, Handled, MediaControl};
use crate::acd::facts::{CallFact, CallId, Decision, EndReason, OfferResult, Party};
use crate::config::AnswerMode;
use crate::media::sdp::{Direction, SdpError};
use crate::media::{Event, LegConfig};
use crate::sip::ids::IdGen;
use crate::sip::message::ALLOWED_METHODS;
use crate::sip::{ClientTxId, Endpoint, Output, ResponseSpec, ServerTxId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SrvRole {
    CustomerInvite,
    ReInvite(Side),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Srv {
    call: CallId,
    role: SrvRole,
    /// A 2xx was sent: the endpoint will report `Ack` or `AckTimeout`.
    awaiting_ack: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CliRole {
    AgentInvite,
    ReInvite(Side),
}

/// A transaction of ours that outlives its purpose (BYE, CANCEL, a
/// cancelled INVITE): kept until its final response or timeout.
#[derive(Debug)]
enum Orphan {
    Plain,
    /// An INVITE we gave up on: a 2xx for it is ACKed (and BYE'd when `bye`).
    Invite { dialog: Box<Dialog>, cseq: u32, bye: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Ring(CallId, u64),
    AckExpiry(ClientTxId),
}

pub struct CallTable {
    cfg: CallConfig,
    shard: u16,
    ids: IdGen,
    next_seq: u64,
    calls: HashMap<CallId, Call>,
    srv: HashMap<ServerTxId, Srv>,
    cli: HashMap<ClientTxId, (CallId, CliRole)>,
    dialogs: HashMap<(String, String), (CallId, Side)>,
    legs: HashMap<crate::media::LegId, CallId>,
    orphan_cli: HashMap<ClientTxId, Orphan>,
    orphan_srv: HashSet<ServerTxId>,
    /// ACKs of 2xx responses we received: re-sent on retransmission.
    acks: HashMap<ClientTxId, (rsip::Request, SocketAddr, Instant)>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    facts: VecDeque<CallFact>,
}

fn spec(status: u16, reason: Option<&str>) -> ResponseSpec {
    ResponseSpec { reason: reason.map(str::to_owned), ..ResponseSpec::new(status) }
}

fn sdp_error_spec(e: &SdpError, host: &str) -> ResponseSpec {
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

fn offer_result(status: u16) -> OfferResult {
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
        }
    }

    pub fn poll_fact(&mut self) -> Option<CallFact> {
        self.facts.pop_front()
    }

    /// Earliest timer (ring timeouts, ACK cache expiry); may be a stale
    /// entry, which costs one spurious wake-up.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Whether the call is still on this shard.
    pub fn contains(&self, call: CallId) -> bool {
        self.calls.contains_key(&call)
    }

    pub fn counts(&self) -> CallCounts {
        let mut c = CallCounts {
            calls: self.calls.len(),
            dialogs: self.dialogs.len(),
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

    fn contact(ep: &Endpoint, user: &str) -> String {
        format!("sip:{user}@{}", ep.config().local_addr)
    }

    fn fact(&mut self, f: CallFact) {
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
                let h = Hdrs::of(&request.headers);
                let in_dialog = h.tag("to").is_some();
                match request.method {
                    rsip::Method::Register => Handled::NotMine(Output::Request { tx, request, src }),
                    rsip::Method::Invite if !in_dialog => {
                        self.new_invite(ep, media, tx, &request, &h, src, now, wall_ms);
                        Handled::Done
                    }
                    _ if in_dialog => {
                        self.in_dialog(ep, media, tx, &request, &h, now, wall_ms);
                        Handled::Done
                    }
                    rsip::Method::Bye => {
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
                    if !request.body.is_empty() {
                        if let Some(call) = self.calls.get(&s.call) {
                            if let Ok(a) = sdp::read_answer(&request.body, &call.chosen) {
                                if a.rtp.is_some() {
                                    media.set_peer(call.leg(side).id, a.rtp, a.rtcp);
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
                let Some(s) = self.srv.remove(&tx) else { return Handled::NotMine(Output::AckTimeout { tx }) };
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
                    if response.status_code.code() / 100 == 2 {
                        ep.send_stateless(ack.clone(), *dest);
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
                    CliRole::AgentInvite => self.offer_failed(call, tx, OfferResult::NoAnswer, wall_ms),
                    CliRole::ReInvite(side) => {
                        if let Some(c) = self.calls.get_mut(&call) {
                            match side {
                                Side::Customer => c.cust.reinvite = None,
                                Side::Agent => {
                                    if let Some(a) = c.agent.as_mut() {
                                        a.reinvite = None;
                                    }
                                }
                            }
                        }
                    }
                }
                Handled::Done
            }
            other => Handled::NotMine(other),
        }
    }

    // ------------------------------------------------------- new INVITE

    #[allow(clippy::too_many_arguments)]
    fn new_invite(
        &mut self,
        ep: &mut Endpoint,
        media: &mut dyn MediaControl,
        tx: ServerTxId,
        req: &rsip::Request,
        h: &Hdrs,
        src: SocketAddr,
        now: Instant,
        wall_ms: u64,
    ) {
        let host = ep.config().domain.clone();
        let queue = req.uri.user().unwrap_or("").to_owned();
        let Some(mode) = self.cfg.queues.get(&queue).copied() else {
            ep.respond(tx, spec(404, Some("No Such Queue")), now);
            return;
        };
        if req.body.is_empty() {
            let s = spec(488, None).header("Warning", format!("399 {host} \"an SDP offer is required\""));
            ep.respond(tx, s, now);
            return;
        }
        // Validate before reserving ports.
        let ip = ep.config().local_addr.ip();
        if let Err(e) = sdp::answer(&req.body, &self.cfg.codecs, ip, 0, 1, 1) {
            ep.respond(tx, sdp_error_spec(&e, &host), now);
            return;
        }
        let (Some(local_tag), Some(from)) = (ep.local_tag(tx).map(str::to_owned), h.get("from")) else {
            ep.respond(tx, spec(400, Some("Missing From or To")), now);
            return;
        };
        let seq = self.next_seq;
        let session_id = seq.wrapping_mul(2).wrapping_add(1);
        // Peer from the offer (validated above).
        let offer = match sdp::answer(&req.body, &self.cfg.codecs, ip, 0, session_id, 1) {
            Ok(n) => n,
            Err(e) => return ep.respond(tx, sdp_error_spec(&e, &host), now),
        };
        let cust_cfg = LegConfig {
            peer_rtp: offer.peer_rtp,
            peer_rtcp: offer.peer_rtcp,
            strict: false,
            media_timeout: self.cfg.media_timeout,
        };
        let agent_cfg = LegConfig { media_timeout: self.cfg.media_timeout, ..LegConfig::default() };
        let legs = match media.open_pair(cust_cfg, agent_cfg) {
            Ok(l) => l,
            Err(reason) => {
                tracing::warn!(%reason, "relay refused a call");
                ep.respond(tx, spec(503, Some("Media Relay Exhausted")).header("Retry-After", "5"), now);
                return;
            }
        };
        let n = match sdp::answer(&req.body, &self.cfg.codecs, legs.0.rtp.ip(), legs.0.rtp.port(), session_id, 1) {
            Ok(n) => n,
            Err(e) => {
                media.close(legs.0.id);
                media.close(legs.1.id);
                return ep.respond(tx, sdp_error_spec(&e, &host), now);
            }
        };
        let contact = Self::contact(ep, &queue);
        let target = format!("sip:{src}");
        let Some(dialog) = Dialog::uas(h, &local_tag, src, contact, target) else {
            media.close(legs.0.id);
            media.close(legs.1.id);
            return ep.respond(tx, spec(400, Some("Missing From, To or Call-ID")), now);
        };
        self.next_seq += 1;
        let id = CallId::new(self.shard, seq);
        let caller = msg::uri_of(from);
        let caller_display = msg::display_of(from).unwrap_or_else(|| msg::user_of(&caller).to_owned());
        let key = (dialog.call_id.clone(), local_tag);
        let sip_call_id = dialog.call_id.clone();
        let call = Call {
            queue: queue.clone(),
            mode,
            caller_display,
            cust: Customer { invite_tx: tx, final_sent: None, ringing_sent: false, dialog, sdp_version: 1, reinvite: None },
            agent: None,
            legs,
            chosen: n.chosen.clone(),
            ptime: n.ptime.unwrap_or(20),
            cust_sdp: n.answer.build(),
            session_id,
            hold_on: false,
            queued: false,
            offers: 0,
            srv: vec![tx],
            cli: Vec::new(),
            dialog_keys: vec![key.clone()],
        };
        self.srv.insert(tx, Srv { call: id, role: SrvRole::CustomerInvite, awaiting_ack: false });
        self.dialogs.insert(key, (id, Side::Customer));
        self.legs.insert(legs.0.id, id);
        self.legs.insert(legs.1.id, id);
        self.calls.insert(id, call);
        self.fact(CallFact::Arrived {
            call: id,
            queue,
            caller,
            priority_bonus: msg::priority_bonus(h.get("priority")),
            sip_call_id,
            at_ms: wall_ms,
        });
    }

    /// 200 to the customer's INVITE with the relay's SDP.
    fn answer_customer(&mut self, ep: &mut Endpoint, id: CallId, now: Instant) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        if call.cust.final_sent.is_some() {
            return;
        }
        let tx = call.cust.invite_tx;
        let mut s = ResponseSpec::new(200)
            .header("Contact", format!("<{}>", call.cust.dialog.contact))
            .header("Allow", ALLOWED_METHODS)
            .body("application/sdp", Bytes::from(call.cust_sdp.clone()));
        // §12.1.1: the Record-Route of the request goes back in the 2xx.
        for r in &call.cust.dialog.routes {
            s = s.header("Record-Route", r.clone());
        }
        ep.respond(tx, s, now);
        call.cust.final_sent = Some(200);
        if let Some(s) = self.srv.get_mut(&tx) {
            s.awaiting_ack = true;
        }
    }

    /// A final error to the customer's INVITE (no-op once answered).
    fn reject_customer(&mut self, ep: &mut Endpoint, id: CallId, s: ResponseSpec, now: Instant) -> bool {
        let Some(call) = self.calls.get_mut(&id) else { return false };
        if call.cust.final_sent.is_some() {
            return false;
        }
        call.cust.final_sent = Some(s.status);
        let tx = call.cust.invite_tx;
        ep.respond(tx, s, now);
        self.srv.remove(&tx);
        true
    }

    // ------------------------------------------------------- decisions

    pub fn on_decision(
        &mut self,
        ep: &mut Endpoint,
        media: &mut dyn MediaControl,
        d: Decision,
        now: Instant,
        wall_ms: u64,
    ) {
        let id = d.call();
        if !self.calls.contains_key(&id) {
            return; // ended already; the router has or will have the fact
        }
        match d {
            Decision::Queued { queue, .. } => {
                let mode = match self.cfg.queues.get(&queue) {
                    Some(m) => *m,
                    None => self.calls.get(&id).map_or(AnswerMode::Immediate, |c| c.mode),
                };
                let Some(call) = self.calls.get_mut(&id) else { return };
                if self.cfg.queues.contains_key(&queue) {
                    call.queue = queue;
                }
                call.mode = mode;
                call.queued = true;
                if call.cust.final_sent.is_some() || call.bridged() {
                    return;
                }
                match mode {
                    AnswerMode::Immediate => {
                        let (leg, q, pt) = (call.legs.0.id, call.queue.clone(), call.audio_pt());
                        call.hold_on = true;
                        self.answer_customer(ep, id, now);
                        media.start_hold(leg, &q, pt);
                    }
                    AnswerMode::OnAgent => {
                        if !call.cust.ringing_sent {
                            call.cust.ringing_sent = true;
                            let mut s = ResponseSpec::new(180).header("Contact", format!("<{}>", call.cust.dialog.contact));
                            for r in &call.cust.dialog.routes {
                                s = s.header("Record-Route", r.clone());
                            }
                            ep.respond(call.cust.invite_tx, s, now);
                        }
                    }
                }
            }
            Decision::Rejected { status, retry_after_s, .. } => {
                if self.calls.get(&id).is_some_and(Call::bridged) {
                    return; // too late to refuse: an agent has it
                }
                let mut s = spec(status, None);
                if let Some(r) = retry_after_s {
                    s = s.header("Retry-After", r.to_string());
                }
                if !self.reject_customer(ep, id, s, now) {
                    self.bye(ep, id, Side::Customer, now);
                }
                self.drop_agent(ep, id, now);
                self.finish(ep, media, id, now);
            }
            Decision::Offer { agent, targets, ring_timeout_ms, .. } => {
                self.offer(ep, id, agent, targets, ring_timeout_ms, now, wall_ms);
            }
            Decision::TimedOut { .. } => {
                if self.calls.get(&id).is_some_and(Call::bridged) {
                    return; // answered meanwhile: our Answered fact is on its way
                }
                if !self.reject_customer(ep, id, spec(408, Some("Maximum Wait Reached")), now) {
                    self.bye(ep, id, Side::Customer, now);
                }
                self.drop_agent(ep, id, now);
                self.finish(ep, media, id, now);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn offer(
        &mut self,
        ep: &mut Endpoint,
        id: CallId,
        agent: String,
        targets: Vec<(String, SocketAddr)>,
        ring_timeout_ms: u64,
        now: Instant,
        wall_ms: u64,
    ) {
        let domain = ep.config().domain.clone();
        let Some(call) = self.calls.get_mut(&id) else { return };
        let busy = call.agent.is_some() || call.cust.final_sent.is_some_and(|s| s >= 300);
        let Some((uri, dest)) = targets.into_iter().next().filter(|_| !busy) else {
            self.fact(CallFact::OfferResult { call: id, agent, result: OfferResult::Failed { status: None }, at_ms: wall_ms });
            return;
        };
        let uri = uri.trim().trim_start_matches('<').trim_end_matches('>').to_owned();
        let tag = self.ids.tag();
        let call_id = self.ids.call_id(&domain);
        let display = format!("{} ({})", msg::quote(&call.caller_display), msg::quote(&call.queue));
        let contact = format!("sip:{}@{}", call.queue, ep.config().local_addr);
        let mut dialog = Dialog {
            call_id: call_id.clone(),
            local_tag: tag.clone(),
            local: format!("\"{display}\" <sip:{}@{domain}>;tag={tag}", call.queue),
            remote: format!("<sip:{agent}@{domain}>"),
            target: uri,
            routes: Vec::new(),
            dest,
            cseq: 0,
            remote_cseq: None,
            contact,
        };
        let version = 1;
        let body = sdp::offer(
            &call.chosen,
            call.legs.1.rtp.ip(),
            call.legs.1.rtp.port(),
            Direction::SendRecv,
            call.ptime,
            call.session_id.wrapping_add(1),
            version,
        );
        let Some(req) = dialog.request("INVITE", Some(&body)) else {
            self.fact(CallFact::OfferResult { call: id, agent, result: OfferResult::Failed { status: None }, at_ms: wall_ms });
            return;
        };
        let tx = ep.send_request(req, dest, now);
        call.offers += 1;
        let seq = call.offers;
        let ring_at = now + Duration::from_millis(ring_timeout_ms);
        call.agent = Some(Agent {
            name: agent,
            tx,
            invite_cseq: dialog.cseq,
            dialog,
            answered: false,
            seq,
            sdp_version: version,
            reinvite: None,
        });
        call.cli.push(tx);
        self.cli.insert(tx, (id, CliRole::AgentInvite));
        self.timers.push(Reverse((ring_at, Timer::Ring(id, seq))));
    }

    // ------------------------------------------------------- responses

    #[allow(clippy::too_many_arguments)]
    fn on_response(
        &mut self,
        ep: &mut Endpoint,
        media: &mut dyn MediaControl,
        id: CallId,
        role: CliRole,
        tx: ClientTxId,
        resp: &rsip::Response,
        now: Instant,
        wall_ms: u64,
    ) {
        let status = resp.status_code.code();
        if status < 200 {
            return;
        }
        self.cli.remove(&tx);
        let h = Hdrs::of(&resp.headers);
        match role {
            CliRole::AgentInvite if status < 300 => self.agent_answered(ep, media, id, tx, &h, resp.body(), now, wall_ms),
            CliRole::AgentInvite => self.offer_failed(id, tx, offer_result(status), wall_ms),
            CliRole::ReInvite(side) => {
                let Some(call) = self.calls.get_mut(&id) else { return };
                match side {
                    Side::Customer => call.cust.reinvite = None,
                    Side::Agent => {
                        if let Some(a) = call.agent.as_mut() {
                            a.reinvite = None;
                        }
                    }
                }
                if status >= 300 {
                    return; // the transaction ACKed it
                }
                let leg = call.leg(side).id;
                let chosen = call.chosen.clone();
                let Some(d) = call.dialog_mut(side) else { return };
                let cseq = h.cseq().map_or(d.cseq, |c| c.0);
                if let Some(t) = h.get("contact").map(msg::uri_of).filter(|u| !u.is_empty()) {
                    d.target = t;
                }
                let (ack, dest) = (d.ack(cseq), d.dest);
                if let Some(ack) = ack {
                    self.send_ack(ep, tx, ack, dest, now);
                }
                if let Ok(a) = sdp::read_answer(resp.body(), &chosen) {
                    if a.rtp.is_some() {
                        media.set_peer(leg, a.rtp, a.rtcp);
                    }
                }
            }
        }
    }

    fn send_ack(&mut self, ep: &mut Endpoint, tx: ClientTxId, ack: rsip::Request, dest: SocketAddr, now: Instant) {
        ep.send_stateless(ack.clone(), dest);
        let until = now + ep.config().timers.t1x64() + Duration::from_millis(1);
        self.acks.insert(tx, (ack, dest, until));
        self.timers.push(Reverse((until, Timer::AckExpiry(tx))));
    }

    #[allow(clippy::too_many_arguments)]
    fn agent_answered(
        &mut self,
        ep: &mut Endpoint,
        media: &mut dyn MediaControl,
        id: CallId,
        tx: ClientTxId,
        h: &Hdrs,
        body: &[u8],
        now: Instant,
        wall_ms: u64,
    ) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(agent) = call.agent.as_mut().filter(|a| a.tx == tx && !a.answered) else { return };
        agent.dialog.confirm_uac(h);
        let (ack, dest) = (agent.dialog.ack(agent.invite_cseq), agent.dialog.dest);
        let answer = sdp::read_answer(body, &call.chosen);
        if let Some(ack) = ack {
            self.send_ack(ep, tx, ack, dest, now);
        }
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(agent) = call.agent.as_mut() else { return };
        let a = match answer {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(call = %id, error = %e, "agent answer unusable; hanging up the agent leg");
                let name = agent.name.clone();
                if let Some(agent) = call.agent.take() {
                    let mut d = agent.dialog;
                    if let Some(bye) = d.request("BYE", None) {
                        let t = ep.send_request(bye, d.dest, now);
                        self.orphan_cli.insert(t, Orphan::Plain);
                    }
                }
                self.fact(CallFact::OfferResult {
                    call: id,
                    agent: name,
                    result: OfferResult::Failed { status: Some(e.sip_status()) },
                    at_ms: wall_ms,
                });
                return;
            }
        };
        agent.answered = true;
        let name = agent.name.clone();
        let key = (agent.dialog.call_id.clone(), agent.dialog.local_tag.clone());
        call.dialog_keys.push(key.clone());
        self.dialogs.insert(key, (id, Side::Agent));
        if call.hold_on {
            media.stop_hold(call.legs.0.id);
            call.hold_on = false;
        }
        media.set_peer(call.legs.1.id, a.rtp, a.rtcp);
        media.bridge(call.legs.0.id, call.legs.1.id);
        self.fact(CallFact::OfferResult { call: id, agent: name, result: OfferResult::Answered, at_ms: wall_ms });
        self.answer_customer(ep, id, now);
    }

    /// The current offer ended without a bridge.
    fn offer_failed(&mut self, id: CallId, tx: ClientTxId, result: OfferResult, wall_ms: u64) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        if call.agent.as_ref().is_some_and(|a| a.tx == tx && !a.answered) {
            if let Some(a) = call.agent.take() {
                self.fact(CallFact::OfferResult { call: id, agent: a.name, result, at_ms: wall_ms });
            }
        }
    }

    fn orphan_response(&mut self, ep: &mut Endpoint, tx: ClientTxId, resp: &rsip::Response, now: Instant) {
        let status = resp.status_code.code();
        if status < 200 {
            return;
        }
        let Some(o) = self.orphan_cli.remove(&tx) else { return };
        if let (Orphan::Invite { mut dialog, cseq, bye }, 200..=299) = (o, status) {
            dialog.confirm_uac(&Hdrs::of(&resp.headers));
            if let Some(ack) = dialog.ack(cseq) {
                self.send_ack(ep, tx, ack, dialog.dest, now);
            }
            if bye {
                if let Some(req) = dialog.request("BYE", None) {
                    let t = ep.send_request(req, dialog.dest, now);
                    self.orphan_cli.insert(t, Orphan::Plain);
                }
            }
        }
    }

    // ------------------------------------------------------- in dialog

    #[allow(clippy::too_many_arguments)]
    fn in_dialog(
        &mut self,
        ep: &mut Endpoint,
        media: &mut dyn MediaControl,
        tx: ServerTxId,
        req: &rsip::Request,
        h: &Hdrs,
        now: Instant,
        wall_ms: u64,
    ) {
        let key = (h.get("call-id").unwrap_or("").to_owned(), h.tag("to").unwrap_or_default());
        let Some((id, side)) = self.dialogs.get(&key).copied() else {
            return ep.respond(tx, spec(481, None), now);
        };
        let seq = h.cseq().map_or(0, |c| c.0);
        let in_order = self.calls.get_mut(&id).and_then(|c| c.dialog_mut(side)).is_none_or(|d| d.accept_remote_cseq(seq));
        if !in_order {
            return ep.respond(tx, spec(500, Some("CSeq Out Of Order")), now);
        }
        match req.method {
            rsip::Method::Bye => {
                ep.respond(tx, ResponseSpec::new(200), now);
                let bridged = self.calls.get(&id).is_some_and(Call::bridged);
                if bridged {
                    let other = if side == Side::Customer { Side::Agent } else { Side::Customer };
                    self.bye(ep, id, other, now);
                    self.ended(media, id, side.party(), EndReason::Normal, wall_ms);
                    self.finish(ep, media, id, now);
                } else {
                    self.caller_gone(ep, media, id, now, wall_ms);
                }
            }
            rsip::Method::Invite => self.reinvite(ep, media, id, side, tx, req, now),
            rsip::Method::Info | rsip::Method::Options => ep.respond(tx, ResponseSpec::new(200), now),
            rsip::Method::Update if req.body.is_empty() => ep.respond(tx, ResponseSpec::new(200), now),
            rsip::Method::Update => ep.respond(tx, spec(501, Some("UPDATE With SDP Not Implemented")), now),
            _ => ep.respond(tx, spec(405, None).header("Allow", ALLOWED_METHODS), now),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn reinvite(
        &mut self,
        ep: &mut Endpoint,
        media: &mut dyn MediaControl,
        id: CallId,
        side: Side,
        tx: ServerTxId,
        req: &rsip::Request,
        now: Instant,
    ) {
        let host = ep.config().domain.clone();
        let Some(call) = self.calls.get_mut(&id) else { return };
        let pending = match side {
            Side::Customer => call.cust.reinvite.is_some() || call.cust.final_sent != Some(200),
            Side::Agent => call.agent.as_ref().is_some_and(|a| a.reinvite.is_some()),
        };
        if pending {
            return ep.respond(tx, spec(491, None).header("Retry-After", "1"), now);
        }
        let leg = call.leg(side);
        let session = call.session_id.wrapping_add(if side == Side::Agent { 1 } else { 0 });
        let version = match side {
            Side::Customer => {
                call.cust.sdp_version += 1;
                call.cust.sdp_version
            }
            Side::Agent => match call.agent.as_mut() {
                Some(a) => {
                    a.sdp_version += 1;
                    a.sdp_version
                }
                None => 1,
            },
        };
        let (body, dir) = if req.body.is_empty() {
            // Offerless re-INVITE: we offer, the ACK answers.
            let b = sdp::offer(&call.chosen, leg.rtp.ip(), leg.rtp.port(), Direction::SendRecv, call.ptime, session, version);
            (b, Direction::SendRecv)
        } else {
            let ours = sdp::codecs_of(&call.chosen);
            match sdp::answer(&req.body, &ours, leg.rtp.ip(), leg.rtp.port(), session, version) {
                Ok(n) => {
                    if n.peer_rtp.is_some() {
                        media.set_peer(leg.id, n.peer_rtp, n.peer_rtcp);
                    }
                    (n.answer.build(), n.offered_direction)
                }
                Err(e) => return ep.respond(tx, sdp_error_spec(&e, &host), now),
            }
        };
        let contact = call.cust.dialog.contact.clone();
        let contact = match side {
            Side::Customer => contact,
            Side::Agent => call.agent.as_ref().map_or(contact, |a| a.dialog.contact.clone()),
        };
        if let Some(t) = Hdrs::of(&req.headers).get("contact").map(msg::uri_of).filter(|u| !u.is_empty()) {
            if let Some(d) = call.dialog_mut(side) {
                d.target = t;
            }
        }
        let s = ResponseSpec::new(200)
            .header("Contact", format!("<{contact}>"))
            .body("application/sdp", Bytes::from(body));
        ep.respond(tx, s, now);
        call.srv.push(tx);
        self.srv.insert(tx, Srv { call: id, role: SrvRole::ReInvite(side), awaiting_ack: true });
        // Pass the new direction on to the other leg.
        if !call.bridged() || req.body.is_empty() {
            return;
        }
        let other = if side == Side::Customer { Side::Agent } else { Side::Customer };
        let oleg = call.leg(other);
        let osession = call.session_id.wrapping_add(if other == Side::Agent { 1 } else { 0 });
        let (chosen, ptime) = (call.chosen.clone(), call.ptime);
        let over = match other {
            Side::Customer if call.cust.reinvite.is_none() => {
                call.cust.sdp_version += 1;
                Some(call.cust.sdp_version)
            }
            Side::Agent => call.agent.as_mut().filter(|a| a.reinvite.is_none()).map(|a| {
                a.sdp_version += 1;
                a.sdp_version
            }),
            _ => None,
        };
        let Some(over) = over else { return };
        let offer = sdp::offer(&chosen, oleg.rtp.ip(), oleg.rtp.port(), dir, ptime, osession, over);
        let Some(d) = call.dialog_mut(other) else { return };
        let dest = d.dest;
        let Some(r) = d.request("INVITE", Some(&offer)) else { return };
        let otx = ep.send_request(r, dest, now);
        match other {
            Side::Customer => call.cust.reinvite = Some(otx),
            Side::Agent => {
                if let Some(a) = call.agent.as_mut() {
                    a.reinvite = Some(otx);
                }
            }
        }
        call.cli.push(otx);
        self.cli.insert(otx, (id, CliRole::ReInvite(other)));
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
        let Event::MediaTimeout { leg, .. } = ev else { return false };
        let Some(id) = self.legs.get(leg).copied() else { return false };
        let Some(call) = self.calls.get(&id) else { return false };
        let is_customer = call.legs.0.id == *leg;
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
        let _ = media;
        while let Some(Reverse((at, t))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match t {
                Timer::AckExpiry(tx) => {
                    if self.acks.get(&tx).is_some_and(|(_, _, until)| *until <= now) {
                        self.acks.remove(&tx);
                    }
                }
                Timer::Ring(id, seq) => {
                    let Some(call) = self.calls.get_mut(&id) else { continue };
                    if !call.agent.as_ref().is_some_and(|a| a.seq == seq && !a.answered) {
                        continue;
                    }
                    if let Some(name) = self.drop_agent(ep, id, now) {
                        self.fact(CallFact::OfferResult { call: id, agent: name, result: OfferResult::NoAnswer, at_ms: wall_ms });
                    }
                }
            }
        }
    }

    // ------------------------------------------------------- endings

    /// Cancel a ringing agent leg (its INVITE becomes an orphan that ACKs
    /// and BYEs a late 2xx) or BYE an answered one.
    fn drop_agent(&mut self, ep: &mut Endpoint, id: CallId, now: Instant) -> Option<String> {
        let call = self.calls.get_mut(&id)?;
        let mut a = call.agent.take()?;
        let name = a.name.clone();
        if a.answered {
            if let Some(req) = a.dialog.request("BYE", None) {
                let t = ep.send_request(req, a.dialog.dest, now);
                self.orphan_cli.insert(t, Orphan::Plain);
            }
            return Some(name);
        }
        self.cli.remove(&a.tx);
        if let Some(c) = ep.cancel(a.tx, now) {
            self.orphan_cli.insert(c, Orphan::Plain);
        }
        self.orphan_cli.insert(a.tx, Orphan::Invite { dialog: Box::new(a.dialog), cseq: a.invite_cseq, bye: true });
        Some(name)
    }

    /// BYE one confirmed leg.
    fn bye(&mut self, ep: &mut Endpoint, id: CallId, side: Side, now: Instant) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        if side == Side::Customer && call.cust.final_sent != Some(200) {
            return;
        }
        let Some(d) = call.dialog_mut(side) else { return };
        let dest = d.dest;
        if let Some(req) = d.request("BYE", None) {
            let t = ep.send_request(req, dest, now);
            self.orphan_cli.insert(t, Orphan::Plain);
        }
    }

    /// The caller hung up (CANCEL, or BYE before the bridge): 487 to a
    /// pending INVITE, cancel the agent, `Abandoned`.
    fn caller_gone(&mut self, ep: &mut Endpoint, media: &mut dyn MediaControl, id: CallId, now: Instant, wall_ms: u64) {
        self.reject_customer(ep, id, spec(487, None), now);
        self.drop_agent(ep, id, now);
        self.fact(CallFact::Abandoned { call: id, at_ms: wall_ms });
        self.finish(ep, media, id, now);
    }

    /// We end the call: BYE/408 the caller, BYE or cancel the agent, and
    /// tell the router `Ended` (bridged) or `Failed`.
    #[allow(clippy::too_many_arguments)]
    fn engine_hangup(
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
        if !self.reject_customer(ep, id, spec(500, Some(why)), now) {
            self.bye(ep, id, Side::Customer, now);
        }
        self.drop_agent(ep, id, now);
        if bridged {
            self.ended(media, id, Party::Engine, reason, wall_ms);
        } else {
            self.fact(CallFact::Failed { call: id, at_ms: wall_ms, reason: why.to_owned() });
        }
        self.finish(ep, media, id, now);
    }

    fn ended(&mut self, media: &mut dyn MediaControl, id: CallId, hangup: Party, reason: EndReason, wall_ms: u64) {
        let Some(call) = self.calls.get(&id) else { return };
        let rtp = media.rtp_counts(call.legs.0.id, call.legs.1.id);
        self.fact(CallFact::Ended { call: id, at_ms: wall_ms, hangup, reason, rtp });
    }

    /// Remove the call and every index entry; close its relay legs.
    /// Transactions still running become orphans so their ends are absorbed.
    fn finish(&mut self, ep: &mut Endpoint, media: &mut dyn MediaControl, id: CallId, now: Instant) {
        let Some(mut call) = self.calls.remove(&id) else { return };
        if let Some(a) = call.agent.take() {
            // Callers drop the agent first; this is the safety net.
            self.cli.remove(&a.tx);
            if !a.answered {
                if let Some(c) = ep.cancel(a.tx, now) {
                    self.orphan_cli.insert(c, Orphan::Plain);
                }
                self.orphan_cli.insert(a.tx, Orphan::Invite { dialog: Box::new(a.dialog), cseq: a.invite_cseq, bye: true });
            }
        }
        media.close(call.legs.0.id);
        media.close(call.legs.1.id);
        self.legs.remove(&call.legs.0.id);
        self.legs.remove(&call.legs.1.id);
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
