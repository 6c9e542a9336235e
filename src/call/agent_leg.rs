//! The agent leg: the INVITEs for an `Offer` or a `RingAll` (with one relay
//! leg opened for it), their responses (bridge on 2xx, `OfferResult` otherwise, closing the
//! relay leg), our ACKs of 2xx (§13.2.2.4), re-INVITE responses, and late
//! answers to INVITEs we gave up on.

use std::cmp::Reverse;

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::INVITE_TO_AGENT;
use super::call::{Agent, Fork, Side};
use super::dialog::Dialog;
use super::msg;
use crate::sip::{Message, Transport, View};
use super::sdp;
use super::table::{offer_result, CliRole, Orphan, Timer};
use super::{CallTable, MediaControl};
use crate::acd::facts::{CallFact, CallId, OfferResult};
use crate::media::sdp::Direction;
use crate::media::RelayLegConfig;
use crate::sip::{ClientTxId, Endpoint};

impl CallTable {
    /// Rings `agents` (one for an `Offer`, several for a `RingAll`), each on
    /// all its targets, on one agent-side relay leg. An agent none of whose
    /// phones could be rung is answered for at once.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn offer(
        &mut self,
        ep: &mut Endpoint,
        media: &mut dyn MediaControl,
        id: CallId,
        agents: Vec<(String, Vec<(String, SocketAddr)>)>,
        ring_timeout_ms: u64,
        now: Instant,
        wall_ms: u64,
    ) {
        let Some(call) = self.calls.get(&id) else { return };
        let busy = call.agent.is_some() || call.cust.final_sent.is_some_and(|s| s >= 300);
        if busy || agents.iter().all(|(_, t)| t.is_empty()) {
            for (agent, _) in agents {
                self.offer_result(id, agent, OfferResult::Failed { status: None }, wall_ms);
            }
            return;
        }
        // The agent-side relay leg exists only while an offer does; every
        // contact is offered the same ports, and the one that answers sets
        // the peer.
        let cfg = RelayLegConfig {
            media_timeout: self.cfg.media_timeout,
            ..RelayLegConfig::default()
        };
        let leg = match media.open_leg(cfg, now) {
            Ok(l) => l,
            Err(reason) => {
                tracing::warn!(call = %id, %reason, "no relay leg for the agent; the call stays queued");
                for (agent, _) in agents {
                    self.offer_result(id, agent, OfferResult::MediaUnavailable, wall_ms);
                }
                return;
            }
        };
        self.legs.insert(leg.id, id);
        let mut forks = Vec::new();
        let mut unrung = Vec::new();
        for (agent, targets) in agents {
            let before = forks.len();
            for (uri, dest) in targets {
                if let Some(f) = self.invite_contact(ep, id, &agent, &leg, uri, dest, now) {
                    forks.push(f);
                }
            }
            if forks.len() == before {
                unrung.push(agent);
            }
        }
        for agent in unrung {
            self.offer_result(id, agent, OfferResult::Failed { status: None }, wall_ms);
        }
        let mut forks = forks.into_iter();
        let Some(first) = forks.next() else {
            self.close_leg(media, leg.id, now);
            return;
        };
        let forks: Vec<Fork> = forks.collect();
        let Some(call) = self.calls.get_mut(&id) else { return };
        call.offers += 1;
        let seq = call.offers;
        if seq == 1 {
            INVITE_TO_AGENT.observe(now.saturating_duration_since(call.arrived));
        }
        let ring_at = now + Duration::from_millis(ring_timeout_ms);
        for f in std::iter::once(&first).chain(forks.iter()) {
            call.cli.push(f.tx);
            self.cli.insert(f.tx, (id, CliRole::AgentInvite));
        }
        call.agent = Some(Agent {
            name: first.agent,
            leg,
            tx: first.tx,
            invite_cseq: first.invite_cseq,
            dialog: first.dialog,
            answered: false,
            seq,
            sdp_version: 1,
            reinvite: None,
            queued_dir: None,
            forks,
            failures: Vec::new(),
        });
        self.timers.push(Reverse((ring_at, Timer::Ring(id, seq))));
    }

    /// INVITE one contact of the agent: its own Call-ID and tag, so each
    /// contact is a dialog of its own.
    #[allow(clippy::too_many_arguments)]
    fn invite_contact(
        &mut self,
        ep: &mut Endpoint,
        id: CallId,
        agent: &str,
        leg: &crate::media::RelayLegPorts,
        uri: String,
        dest: SocketAddr,
        now: Instant,
    ) -> Option<Fork> {
        let domain = ep.config().domain.clone();
        let uri = uri.trim().trim_start_matches('<').trim_end_matches('>').to_owned();
        let tag = self.ids.tag();
        let call_id = self.ids.call_id(&domain);
        let call = self.calls.get(&id)?;
        let display = format!("{} ({})", msg::quote(&call.caller_display), msg::quote(&call.queue));
        let transport = Transport::of_uri(&uri);
        let contact = Self::contact(ep, &call.queue, transport, super::dialog::is_sips(&uri));
        let mut dialog = Dialog {
            call_id,
            local_tag: tag.clone(),
            local: format!("\"{display}\" <sip:{}@{domain}>;tag={tag}", call.queue),
            remote: format!("<sip:{agent}@{domain}>"),
            transport,
            contact,
            target: uri,
            routes: Vec::new(),
            dest,
            cseq: 0,
            remote_cseq: None,
        };
        let body = sdp::offer(
            &call.chosen,
            leg.rtp.ip(),
            leg.rtp.port(),
            Direction::SendRecv,
            call.ptime,
            call.session_id.wrapping_add(1),
            1,
        );
        let req = dialog.request("INVITE", Some(&body))?;
        let tx = ep.send(req, now);
        Some(Fork {
            agent: agent.to_owned(),
            tx,
            invite_cseq: dialog.cseq,
            dialog,
        })
    }

    fn offer_result(&mut self, call: CallId, agent: String, result: OfferResult, at_ms: u64) {
        self.fact(CallFact::OfferResult {
            call,
            agent,
            result,
            at_ms,
        });
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_response(
        &mut self,
        ep: &mut Endpoint,
        media: &mut dyn MediaControl,
        id: CallId,
        role: CliRole,
        tx: ClientTxId,
        resp: &Message,
        now: Instant,
        wall_ms: u64,
    ) {
        let status = resp.status().unwrap_or(0);
        if status < 200 {
            return;
        }
        self.cli.remove(&tx);
        let h = resp;
        match role {
            CliRole::AgentInvite if status < 300 => {
                self.agent_answered(ep, media, id, tx, h, resp.body(), now, wall_ms)
            }
            CliRole::AgentInvite => self.offer_failed(media, id, tx, offer_result(status), now, wall_ms),
            CliRole::ReInvite(side) => {
                let queued = self.reinvite_done(id, side);
                if status < 300 {
                    self.reinvite_answered(ep, media, id, side, tx, h, resp.body(), now);
                }
                // (a non-2xx was ACKed by the transaction)
                if let Some(dir) = queued {
                    self.send_reinvite(ep, id, side, dir, now);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn reinvite_answered(
        &mut self,
        ep: &mut Endpoint,
        media: &mut dyn MediaControl,
        id: CallId,
        side: Side,
        tx: ClientTxId,
        h: &Message,
        body: &[u8],
        now: Instant,
    ) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(leg) = call.leg(side).map(|l| l.id) else { return };
        let chosen = call.chosen.clone();
        let Some(d) = call.dialog_mut(side) else { return };
        let cseq = h.cseq_number().unwrap_or(d.cseq);
        if let Some(t) = h.header("contact").map(msg::uri_of).filter(|u| !u.is_empty()) {
            d.target = t;
        }
        let (ack, dest) = (d.ack(cseq).map(|a| ep.send_out_of_transaction(a)), d.dest);
        if let Some(ack) = ack {
            self.remember_ack(ep, tx, ack, dest, now);
        }
        if let Ok(a) = sdp::read_answer(body, &chosen) {
            if a.rtp.is_some() {
                media.set_peer(leg, a.rtp, a.rtcp);
            }
        }
    }

    /// Keeps the bytes of a 2xx ACK just sent, to send them again for each
    /// 2xx retransmission until 64·T1.
    pub(super) fn remember_ack(&mut self, ep: &mut Endpoint, tx: ClientTxId, ack: Bytes, dest: SocketAddr, now: Instant) {
        let until = now + ep.config().timers.t1x64() + Duration::from_millis(1);
        self.acks.insert(tx, (ack, dest, until));
        self.timers.push(Reverse((until, Timer::AckExpiry(tx))));
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn agent_answered(
        &mut self,
        ep: &mut Endpoint,
        media: &mut dyn MediaControl,
        id: CallId,
        tx: ClientTxId,
        h: &Message,
        body: &[u8],
        now: Instant,
        wall_ms: u64,
    ) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(agent) = call.agent.as_mut().filter(|a| a.rings_on(tx)) else {
            return;
        };
        // The first contact to answer wins: it becomes the agent's dialog
        // and every other contact still ringing is cancelled (a 200 that
        // crosses our CANCEL is ACKed and BYEd as an orphan).
        if agent.tx != tx {
            if let Some(i) = agent.forks.iter().position(|f| f.tx == tx) {
                let won = agent.forks.swap_remove(i);
                agent.forks.push(Fork {
                    agent: std::mem::replace(&mut agent.name, won.agent),
                    tx: std::mem::replace(&mut agent.tx, won.tx),
                    invite_cseq: std::mem::replace(&mut agent.invite_cseq, won.invite_cseq),
                    dialog: std::mem::replace(&mut agent.dialog, won.dialog),
                });
            }
        }
        let losers = std::mem::take(&mut agent.forks);
        let winner = agent.name.clone();
        // Ring-all: the other agents lost the race; the router hears so
        // before it hears of the winner, and frees them without a miss.
        let mut lost: Vec<String> = Vec::new();
        for f in &losers {
            if f.agent != winner && !lost.contains(&f.agent) {
                lost.push(f.agent.clone());
            }
        }
        for f in losers {
            self.cancel_fork(ep, f, now);
        }
        for a in lost {
            self.offer_result(id, a, OfferResult::Cancelled, wall_ms);
        }
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(agent) = call.agent.as_mut() else { return };
        agent.dialog.confirm_uac(h);
        let ack = agent.dialog.ack(agent.invite_cseq).map(|a| ep.send_out_of_transaction(a));
        let dest = agent.dialog.dest;
        let answer = sdp::read_answer(body, &call.chosen);
        if let Some(ack) = ack {
            self.remember_ack(ep, tx, ack, dest, now);
        }
        let a = match answer {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(call = %id, error = %e, "agent answer unusable; hanging up the agent leg");
                if let Some(agent) = self.take_agent(media, id, now) {
                    let mut d = agent.dialog;
                    if let Some(bye) = d.request("BYE", None) {
                        let t = ep.send(bye, now);
                        self.orphan_cli.insert(t, Orphan::Plain);
                    }
                    let failed = OfferResult::Failed {
                        status: Some(e.sip_status()),
                    };
                    self.offer_result(id, agent.name, failed, wall_ms);
                }
                return;
            }
        };
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(agent) = call.agent.as_mut() else { return };
        agent.answered = true;
        let name = agent.name.clone();
        let key = (agent.dialog.call_id.clone(), agent.dialog.local_tag.clone());
        call.dialog_keys.push(key.clone());
        self.dialogs.insert(key, (id, Side::Agent));
        let (cust_leg, agent_leg) = (call.leg.id, agent.leg.id);
        if call.hold_on {
            media.stop_hold(cust_leg);
            call.hold_on = false;
        }
        media.set_peer(agent_leg, a.rtp, a.rtcp);
        media.bridge(cust_leg, agent_leg);
        self.fact(CallFact::OfferResult {
            call: id,
            agent: name,
            result: OfferResult::Answered,
            at_ms: wall_ms,
        });
        self.answer_customer(ep, id, now);
    }

    /// The current offer ended without a bridge: the call is back to
    /// waiting, with its customer leg only.
    pub(super) fn offer_failed(
        &mut self,
        media: &mut dyn MediaControl,
        id: CallId,
        tx: ClientTxId,
        result: OfferResult,
        now: Instant,
        wall_ms: u64,
    ) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(agent) = call.agent.as_mut().filter(|a| a.rings_on(tx)) else {
            return;
        };
        let Some(who) = agent.agent_of(tx).map(str::to_owned) else { return };
        agent.note_failure(&who, result);
        if agent.tx == tx && agent.forks.is_empty() {
            // The last phone ringing: the offer is over.
            if let Some(a) = self.take_agent(media, id, now) {
                let result = a.failure_of(&who);
                self.offer_result(id, who, result, wall_ms);
            }
            return;
        }
        // Other contacts still ring: the offer goes on without this one.
        if agent.tx == tx {
            if let Some(next) = agent.forks.pop() {
                agent.name = next.agent;
                agent.tx = next.tx;
                agent.invite_cseq = next.invite_cseq;
                agent.dialog = next.dialog;
            }
        } else {
            agent.forks.retain(|f| f.tx != tx);
        }
        // Every phone of `who` gave up while other agents' still ring
        // (ring-all): `who` is done with this call.
        if !agent.rings_for(&who) {
            let result = agent.failure_of(&who);
            self.offer_result(id, who, result, wall_ms);
        }
    }

    pub(super) fn orphan_response(&mut self, ep: &mut Endpoint, tx: ClientTxId, resp: &Message, now: Instant) {
        let status = resp.status().unwrap_or(0);
        if status < 200 {
            return;
        }
        let Some(o) = self.orphan_cli.remove(&tx) else { return };
        if let (Orphan::Invite { mut dialog, cseq, bye }, 200..=299) = (o, status) {
            dialog.confirm_uac(resp);
            if let Some(ack) = dialog.ack(cseq).map(|a| ep.send_out_of_transaction(a)) {
                self.remember_ack(ep, tx, ack, dialog.dest, now);
            }
            if bye {
                if let Some(req) = dialog.request("BYE", None) {
                    let t = ep.send(req, now);
                    self.orphan_cli.insert(t, Orphan::Plain);
                }
            }
        }
    }
}
