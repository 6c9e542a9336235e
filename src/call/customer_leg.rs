//! The customer leg: a new INVITE (checks, relay ports, `Arrived`), the
//! router's decisions about it (answer, ring, refuse, time out), and
//! requests inside either dialog (BYE, re-INVITE, INFO/OPTIONS/UPDATE).

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::call::{Call, Customer, Side};
use super::dialog::Dialog;
use super::msg;
use crate::sip::{Message, View};
use super::sdp;
use super::table::{sdp_error_spec, spec, CliRole, Srv, SrvRole};
use super::{CallTable, MediaControl};
use crate::acd::facts::{CallFact, CallId, Decision, EndReason, OPERATOR_HANGUP};
use crate::config::AnswerMode;
use crate::media::sdp::Direction;
use crate::media::RelayLegConfig;
use crate::sip::message::ALLOWED_METHODS;
use crate::sip::{Endpoint, ResponseSpec, ServerTxId};

impl CallTable {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new_invite(
        &mut self,
        ep: &mut Endpoint,
        media: &mut dyn MediaControl,
        tx: ServerTxId,
        req: &Message,
        h: &Message,
        src: SocketAddr,
        now: Instant,
        wall_ms: u64,
    ) {
        let host = ep.config().domain.clone();
        let queue = msg::user_of(req.request_uri().unwrap_or("")).to_owned();
        let Some(mode) = self.cfg.queues.get(&queue).copied() else {
            ep.respond(tx, spec(404, Some("No Such Queue")), now);
            return;
        };
        if req.body().is_empty() {
            let s = spec(488, None).header("Warning", format!("399 {host} \"an SDP offer is required\""));
            ep.respond(tx, s, now);
            return;
        }
        // Validate before reserving ports.
        let ip = ep.config().local_addr.ip();
        if let Err(e) = sdp::answer(req.body(), &self.cfg.codecs, ip, 0, 1, 1) {
            ep.respond(tx, sdp_error_spec(&e, &host), now);
            return;
        }
        let (Some(local_tag), Some(from)) = (ep.local_tag(tx).map(str::to_owned), h.header("from")) else {
            ep.respond(tx, spec(400, Some("Missing From or To")), now);
            return;
        };
        let seq = self.next_seq;
        let session_id = seq.wrapping_mul(2).wrapping_add(1);
        // Peer from the offer (validated above).
        let offer = match sdp::answer(req.body(), &self.cfg.codecs, ip, 0, session_id, 1) {
            Ok(n) => n,
            Err(e) => return ep.respond(tx, sdp_error_spec(&e, &host), now),
        };
        let cust_cfg = RelayLegConfig {
            peer_rtp: offer.peer_rtp,
            peer_rtcp: offer.peer_rtcp,
            strict: false,
            media_timeout: self.cfg.media_timeout,
            // Hold audio needs no RTCP: one socket while the caller waits.
            defer_rtcp: true,
        };
        // The agent's leg waits for an offer (`offer`).
        let leg = match media.open_leg(cust_cfg, now) {
            Ok(l) => l,
            Err(reason) => {
                tracing::warn!(%reason, "relay refused a call");
                ep.respond(
                    tx,
                    spec(503, Some("Media Relay Exhausted")).header("Retry-After", "5"),
                    now,
                );
                return;
            }
        };
        let n = match sdp::answer(
            req.body(),
            &self.cfg.codecs,
            leg.rtp.ip(),
            leg.rtp.port(),
            session_id,
            1,
        ) {
            Ok(n) => n,
            Err(e) => {
                media.close(leg.id, now);
                return ep.respond(tx, sdp_error_spec(&e, &host), now);
            }
        };
        let sips = h.contact_uri().is_some_and(super::dialog::is_sips);
        let contact = Self::contact(ep, &queue, Dialog::arrival_transport(h), sips);
        let target = format!("sip:{src}");
        let Some(dialog) = Dialog::uas(h, &local_tag, src, contact, target) else {
            media.close(leg.id, now);
            return ep.respond(tx, spec(400, Some("Missing From, To or Call-ID")), now);
        };
        self.next_seq += 1;
        let id = CallId::new(self.shard, seq);
        let caller = msg::uri_of(from);
        let caller_display = msg::display_of(from).unwrap_or_else(|| msg::user_of(&caller).to_owned());
        let key = (dialog.call_id.clone(), local_tag);
        let sip_call_id = dialog.call_id.clone();
        let call = Call {
            arrived: now,
            queue: queue.clone(),
            mode,
            caller_display,
            cust: Customer {
                invite_tx: tx,
                final_sent: None,
                ringing_sent: false,
                dialog,
                sdp_version: 1,
                reinvite: None,
                queued_dir: None,
            },
            agent: None,
            leg,
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
        self.srv.insert(
            tx,
            Srv {
                call: id,
                role: SrvRole::CustomerInvite,
                awaiting_ack: false,
            },
        );
        self.dialogs.insert(key, (id, Side::Customer));
        self.legs.insert(leg.id, id);
        self.calls.insert(id, call);
        let asks = self.caller_asks(h, src);
        self.fact(CallFact::Arrived {
            call: id,
            queue,
            caller,
            priority_bonus: asks.priority_bonus,
            skills: asks.skills,
            sip_call_id,
            at_ms: wall_ms,
        });
    }

    /// The caller's priority and skills headers, believed only from a
    /// trusted source: anyone else asking is ignored and counted.
    fn caller_asks(&mut self, h: &Message, src: SocketAddr) -> msg::CallerAsks {
        let (p, ccp, ccs) = (h.header("priority"), h.header("x-cc-priority"), h.header("x-cc-skills"));
        if self.cfg.trusted_sources.iter().any(|c| c.contains(src.ip())) {
            return msg::CallerAsks::read(p, ccp, ccs);
        }
        if msg::CallerAsks::asked(p, ccp, ccs) {
            self.untrusted_priority += 1;
            tracing::debug!(%src, "priority or skills headers from an untrusted source ignored");
        }
        msg::CallerAsks::default()
    }

    /// 200 to the customer's INVITE with the relay's SDP.
    pub(super) fn answer_customer(&mut self, ep: &mut Endpoint, id: CallId, now: Instant) {
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
    pub(super) fn reject_customer(&mut self, ep: &mut Endpoint, id: CallId, s: ResponseSpec, now: Instant) -> bool {
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        if call.cust.final_sent.is_some() {
            return false;
        }
        call.cust.final_sent = Some(s.status);
        let tx = call.cust.invite_tx;
        ep.respond(tx, s, now);
        self.srv.remove(&tx);
        true
    }

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
                        let (leg, q, pt) = (call.leg.id, call.queue.clone(), call.audio_pt());
                        call.hold_on = true;
                        self.answer_customer(ep, id, now);
                        media.start_hold(leg, &q, pt);
                    }
                    AnswerMode::OnAgent => {
                        if !call.cust.ringing_sent {
                            call.cust.ringing_sent = true;
                            let mut s =
                                ResponseSpec::new(180).header("Contact", format!("<{}>", call.cust.dialog.contact));
                            for r in &call.cust.dialog.routes {
                                s = s.header("Record-Route", r.clone());
                            }
                            ep.respond(call.cust.invite_tx, s, now);
                            self.timers.push(std::cmp::Reverse((
                                now + super::table::PROVISIONAL_REFRESH,
                                super::table::Timer::Provisional(id),
                            )));
                        }
                    }
                }
            }
            Decision::Rejected {
                status, retry_after_s, ..
            } => {
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
                self.drop_agent(ep, media, id, now);
                self.finish(ep, media, id, now);
            }
            Decision::Offer {
                agent,
                targets,
                ring_timeout_ms,
                ..
            } => {
                self.offer(ep, media, id, vec![(agent, targets)], ring_timeout_ms, now, wall_ms);
            }
            Decision::RingAll {
                agents, ring_timeout_ms, ..
            } => {
                self.offer(ep, media, id, agents, ring_timeout_ms, now, wall_ms);
            }
            Decision::TimedOut { .. } => {
                if self.calls.get(&id).is_some_and(Call::bridged) {
                    return; // answered meanwhile: our Answered fact is on its way
                }
                if !self.reject_customer(ep, id, spec(408, Some("Maximum Wait Reached")), now) {
                    self.bye(ep, id, Side::Customer, now);
                }
                self.drop_agent(ep, media, id, now);
                self.finish(ep, media, id, now);
            }
            Decision::MaxDuration { .. } => {
                if self.calls.get(&id).is_some_and(Call::bridged) {
                    let why = "maximum call duration";
                    self.engine_hangup(ep, media, id, EndReason::MaxDuration, why, now, wall_ms);
                }
            }
            Decision::Hangup { status, .. } => {
                if self.calls.get(&id).is_some_and(Call::bridged) {
                    let why = OPERATOR_HANGUP;
                    self.engine_hangup(ep, media, id, EndReason::OperatorHangup, why, now, wall_ms);
                    return;
                }
                // Unanswered: the operator's final response; on hold
                // audio (answered by us): a BYE.
                if !self.reject_customer(ep, id, spec(status, Some("Hung Up By Operator")), now) {
                    self.bye(ep, id, Side::Customer, now);
                }
                self.drop_agent(ep, media, id, now);
                self.fact(CallFact::Failed { call: id, at_ms: wall_ms, reason: OPERATOR_HANGUP.to_owned() });
                self.finish(ep, media, id, now);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn in_dialog(
        &mut self,
        ep: &mut Endpoint,
        media: &mut dyn MediaControl,
        tx: ServerTxId,
        req: &Message,
        h: &Message,
        now: Instant,
        wall_ms: u64,
    ) {
        let key = (
            h.header("call-id").unwrap_or("").to_owned(),
            h.to_tag().map(str::to_owned).unwrap_or_default(),
        );
        if self.feature_in_dialog(ep, media, tx, req, &key, now) {
            return;
        }
        let Some((id, side)) = self.dialogs.get(&key).copied() else {
            return ep.respond(tx, spec(481, None), now);
        };
        let seq = h.cseq_number().unwrap_or(0);
        let in_order = self
            .calls
            .get_mut(&id)
            .and_then(|c| c.dialog_mut(side))
            .is_none_or(|d| d.accept_remote_cseq(seq));
        if !in_order {
            return ep.respond(tx, spec(500, Some("CSeq Out Of Order")), now);
        }
        match req.method() {
            Some("BYE") => {
                ep.respond(tx, ResponseSpec::new(200), now);
                let bridged = self.calls.get(&id).is_some_and(Call::bridged);
                if bridged {
                    let other = if side == Side::Customer {
                        Side::Agent
                    } else {
                        Side::Customer
                    };
                    self.bye(ep, id, other, now);
                    self.ended(media, id, side.party(), EndReason::Normal, wall_ms);
                    self.finish(ep, media, id, now);
                } else {
                    self.caller_gone(ep, media, id, now, wall_ms);
                }
            }
            Some("INVITE") => self.reinvite(ep, media, id, side, tx, req, now),
            Some("INFO" | "OPTIONS") => ep.respond(tx, ResponseSpec::new(200), now),
            Some("UPDATE") if req.body().is_empty() => ep.respond(tx, ResponseSpec::new(200), now),
            Some("UPDATE") => ep.respond(tx, spec(501, Some("UPDATE With SDP Not Implemented")), now),
            _ => ep.respond(tx, spec(405, None).header("Allow", ALLOWED_METHODS), now),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn reinvite(
        &mut self,
        ep: &mut Endpoint,
        media: &mut dyn MediaControl,
        id: CallId,
        side: Side,
        tx: ServerTxId,
        req: &Message,
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
        let Some(leg) = call.leg(side) else {
            return ep.respond(tx, spec(481, None), now); // agent leg already gone
        };
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
        let (body, dir) = if req.body().is_empty() {
            // Offerless re-INVITE: we offer, the ACK answers.
            let b = sdp::offer(
                &call.chosen,
                leg.rtp.ip(),
                leg.rtp.port(),
                Direction::SendRecv,
                call.ptime,
                session,
                version,
            );
            (b, Direction::SendRecv)
        } else {
            let ours = sdp::codecs_of(&call.chosen);
            match sdp::answer(req.body(), &ours, leg.rtp.ip(), leg.rtp.port(), session, version) {
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
        if let Some(t) = req
            .header("contact")
            .map(msg::uri_of)
            .filter(|u| !u.is_empty())
        {
            if let Some(d) = call.dialog_mut(side) {
                d.target = t;
            }
        }
        let s = ResponseSpec::new(200)
            .header("Contact", format!("<{contact}>"))
            .body("application/sdp", Bytes::from(body));
        ep.respond(tx, s, now);
        call.srv.push(tx);
        self.srv.insert(
            tx,
            Srv {
                call: id,
                role: SrvRole::ReInvite(side),
                awaiting_ack: true,
            },
        );
        // Pass the new direction on to the other leg.
        if !call.bridged() || req.body().is_empty() {
            return;
        }
        let other = if side == Side::Customer {
            Side::Agent
        } else {
            Side::Customer
        };
        self.send_reinvite(ep, id, other, dir, now);
    }

    /// Re-INVITE `side` with our offer in direction `dir`. While one of ours
    /// is pending there, the newest direction waits and goes when it ends.
    pub(super) fn send_reinvite(&mut self, ep: &mut Endpoint, id: CallId, side: Side, dir: Direction, now: Instant) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        if !call.bridged() {
            return;
        }
        let Some(leg) = call.leg(side) else { return };
        let session = call.session_id.wrapping_add(if side == Side::Agent { 1 } else { 0 });
        let (chosen, ptime) = (call.chosen.clone(), call.ptime);
        let (pending, version, queued) = match side {
            Side::Customer => (
                call.cust.reinvite.is_some(),
                &mut call.cust.sdp_version,
                &mut call.cust.queued_dir,
            ),
            Side::Agent => match call.agent.as_mut() {
                Some(a) => (a.reinvite.is_some(), &mut a.sdp_version, &mut a.queued_dir),
                None => return,
            },
        };
        if pending {
            *queued = Some(dir);
            return;
        }
        *queued = None;
        *version += 1;
        let offer = sdp::offer(&chosen, leg.rtp.ip(), leg.rtp.port(), dir, ptime, session, *version);
        let Some(d) = call.dialog_mut(side) else { return };
        let Some(r) = d.request("INVITE", Some(&offer)) else {
            return;
        };
        let tx = ep.send(r, now);
        match side {
            Side::Customer => call.cust.reinvite = Some(tx),
            Side::Agent => {
                if let Some(a) = call.agent.as_mut() {
                    a.reinvite = Some(tx);
                }
            }
        }
        call.cli.push(tx);
        self.cli.insert(tx, (id, CliRole::ReInvite(side)));
    }
}
