//! Feature-code calls (an agent dialled `*55` and the like): once the
//! routing shard has accepted the code, the call is answered with the
//! relay's SDP, hears a short confirmation tone (the hold-audio playout
//! with a generated tone, `FEATURE_TONE`), and is hung up by us after
//! `CallConfig::feature_tone`. A refusal never gets here: it is a final
//! error response from the signalling integrator.

use std::cmp::Reverse;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::dialog::Dialog;
use super::sdp;
use super::table::{sdp_error_spec, spec, Orphan, Timer};
use super::{CallTable, MediaControl};
use crate::media::{RelayLegConfig, RelayLegId};
use crate::sip::message::ALLOWED_METHODS;
use crate::sip::{Endpoint, Message, ResponseSpec, ServerTxId, View};

/// The hold-library key of the confirmation tone: a space cannot be in a
/// queue name, so no queue's hold audio can shadow it.
pub const FEATURE_TONE: &str = " feature-confirm";

/// An answered feature-code call, until its BYE.
#[derive(Debug)]
pub(super) struct FeatureCall {
    dialog: Dialog,
    leg: RelayLegId,
    key: (String, String),
}

impl CallTable {
    /// Whether an out-of-dialog INVITE to this Request-URI user is a
    /// feature request for the routing shard rather than a queue call.
    pub fn is_feature_invite(&self, user: &str) -> bool {
        self.cfg.feature_tone.is_some() && crate::config::is_feature_user(user)
    }

    /// Whether the INVITE carries an SDP offer we can answer: checked before
    /// the routing shard applies the code, so a phone never gets an error
    /// for a change that was made.
    pub fn feature_offer_error(&self, ep: &Endpoint, req: &Message) -> Option<ResponseSpec> {
        let host = &ep.config().domain;
        if req.body().is_empty() {
            return Some(spec(488, None).header("Warning", format!("399 {host} \"an SDP offer is required\"")));
        }
        let ip = ep.config().local_addr.ip();
        sdp::answer(req.body(), &self.cfg.codecs, ip, 0, 1, 1).err().map(|e| sdp_error_spec(&e, host))
    }

    /// The code was applied: 200 with the relay's SDP, the tone, and a BYE
    /// from us after `feature_tone`.
    pub fn answer_feature(
        &mut self,
        ep: &mut Endpoint,
        media: &mut dyn MediaControl,
        tx: ServerTxId,
        req: &Message,
        src: SocketAddr,
        now: Instant,
    ) {
        let Some(tone) = self.cfg.feature_tone else {
            return ep.respond(tx, spec(200, None), now);
        };
        let host = ep.config().domain.clone();
        let offer = match sdp::answer(req.body(), &self.cfg.codecs, ep.config().local_addr.ip(), 0, 1, 1) {
            Ok(n) => n,
            Err(e) => return ep.respond(tx, sdp_error_spec(&e, &host), now),
        };
        let cfg = RelayLegConfig {
            peer_rtp: offer.peer_rtp,
            peer_rtcp: offer.peer_rtcp,
            strict: false,
            media_timeout: None,
            defer_rtcp: true,
        };
        let Ok(leg) = media.open_leg(cfg, now) else {
            // The change stands; only its tone is lost.
            tracing::warn!("no relay leg for a feature code's tone; answered without media");
            return ep.respond(tx, spec(503, Some("Media Relay Exhausted")), now);
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        let session_id = seq.wrapping_mul(2).wrapping_add(1);
        let n = match sdp::answer(req.body(), &self.cfg.codecs, leg.rtp.ip(), leg.rtp.port(), session_id, 1) {
            Ok(n) => n,
            Err(e) => {
                media.close(leg.id, now);
                return ep.respond(tx, sdp_error_spec(&e, &host), now);
            }
        };
        let user = super::msg::user_of(req.request_uri().unwrap_or("")).to_owned();
        let sips = req.contact_uri().is_some_and(super::dialog::is_sips);
        let contact = Self::contact(ep, &user, Dialog::arrival_transport(req), sips);
        let local_tag = ep.local_tag(tx).map(str::to_owned);
        let dialog = local_tag.as_deref().and_then(|t| Dialog::uas(req, t, src, contact, format!("sip:{src}")));
        let (Some(local_tag), Some(dialog)) = (local_tag, dialog) else {
            media.close(leg.id, now);
            return ep.respond(tx, spec(400, Some("Missing From, To or Call-ID")), now);
        };
        let mut s = ResponseSpec::new(200)
            .header("Contact", format!("<{}>", dialog.contact))
            .header("Allow", ALLOWED_METHODS)
            .body("application/sdp", Bytes::from(n.answer.build()));
        for r in &dialog.routes {
            s = s.header("Record-Route", r.clone());
        }
        ep.respond(tx, s, now);
        // Its ACK (or ACK timeout) needs nothing from us.
        self.orphan_srv.insert(tx);
        let pt = n.chosen.iter().find(|c| !c.codec.is_dtmf()).map_or(0, |c| c.pt);
        media.start_hold(leg.id, FEATURE_TONE, pt);
        let key = (dialog.call_id.clone(), local_tag);
        self.feature_dialogs.insert(key.clone(), seq);
        self.feature_calls.insert(seq, FeatureCall { dialog, leg: leg.id, key });
        self.timers.push(Reverse((now + tone, Timer::FeatureEnd(seq))));
    }

    /// An in-dialog request on a feature call: true if it was one.
    pub(super) fn feature_in_dialog(
        &mut self,
        ep: &mut Endpoint,
        media: &mut dyn MediaControl,
        tx: ServerTxId,
        req: &Message,
        key: &(String, String),
        now: Instant,
    ) -> bool {
        let Some(id) = self.feature_dialogs.get(key).copied() else {
            return false;
        };
        match req.method() {
            Some("BYE") => {
                ep.respond(tx, ResponseSpec::new(200), now);
                self.end_feature(ep, media, id, false, now);
            }
            // The call lasts a second: no media changes.
            Some("INVITE" | "UPDATE") => ep.respond(tx, spec(488, None), now),
            _ => ep.respond(tx, ResponseSpec::new(200), now),
        }
        true
    }

    /// The tone has played (or the phone hung up, `bye` false): close the
    /// relay leg and forget the call.
    pub(super) fn end_feature(
        &mut self,
        ep: &mut Endpoint,
        media: &mut dyn MediaControl,
        id: u64,
        bye: bool,
        now: Instant,
    ) {
        let Some(mut f) = self.feature_calls.remove(&id) else { return };
        self.feature_dialogs.remove(&f.key);
        media.close(f.leg, now);
        if bye {
            if let Some(req) = f.dialog.request("BYE", None) {
                let t = ep.send(req, now);
                self.orphan_cli.insert(t, Orphan::Plain);
            }
        }
    }

    /// Feature calls still playing their tone (metrics, leak checks).
    pub fn feature_calls(&self) -> usize {
        self.feature_calls.len()
    }
}
