//! One side of a call as a SIP dialog (RFC 3261 §12): identifiers, the
//! local CSeq, the remote target and route set, and the requests built
//! inside it (BYE, re-INVITE, the ACK of a 2xx per §13.2.2.4).
//!
//! In-dialog requests go to `dest`: the customer's source address (RFC 3581
//! style, right behind NAT and through an outbound proxy alike) or the agent
//! target the router gave. The Route set is written as received, so loose
//! routers on the path still see it.

use std::net::SocketAddr;

use super::msg;
use crate::sip::{Message, OutRequest, Transport, View};

#[derive(Debug, Clone)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    /// Our From/To header value, tag included.
    pub local: String,
    /// Their From/To header value, tag included (may lack a tag while early).
    pub remote: String,
    /// Request-URI of in-dialog requests (the peer's Contact).
    pub target: String,
    /// Route set, in the order it goes into Route headers.
    pub routes: Vec<String>,
    pub dest: SocketAddr,
    /// The transport of the dialog's first request, kept for all of it: a
    /// peer on a TCP/TLS connection is reached over that connection.
    pub transport: Transport,
    /// Last CSeq number we used.
    pub cseq: u32,
    /// Highest CSeq number the peer used (§12.2.2).
    pub remote_cseq: Option<u32>,
    /// Our Contact URI.
    pub contact: String,
}

/// Whether a URI is a `sips:` one.
pub fn is_sips(uri: &str) -> bool {
    uri.trim().trim_start_matches('<').get(..5).is_some_and(|s| s.eq_ignore_ascii_case("sips:"))
}

impl Dialog {
    /// The transport a peer's request came on, as its Via says.
    pub fn arrival_transport(h: &Message) -> Transport {
        h.top_via().map_or(Transport::Udp, |v| Transport::of_via(v.protocol))
    }

    /// UAS side, from the customer's INVITE.
    pub fn uas(h: &Message, local_tag: &str, src: SocketAddr, contact: String, fallback_target: String) -> Option<Dialog> {
        let to = h.header("to")?;
        let transport = Dialog::arrival_transport(h);
        Some(Dialog {
            call_id: h.header("call-id")?.to_owned(),
            local_tag: local_tag.to_owned(),
            local: format!("{to};tag={local_tag}"),
            remote: h.header("from")?.to_owned(),
            target: h
                .header("contact")
                .map(msg::uri_of)
                .filter(|u| !u.is_empty())
                .unwrap_or(fallback_target),
            routes: h.record_route().map(str::to_owned).collect(),
            dest: src,
            transport,
            cseq: 0,
            remote_cseq: h.cseq_number(),
            contact,
        })
    }

    /// UAC side confirmed by a 2xx (`h` are the response's headers): remote
    /// tag from To, target from Contact, route set = Record-Route reversed.
    pub fn confirm_uac(&mut self, h: &Message) {
        if let Some(to) = h.header("to") {
            self.remote = to.to_owned();
        }
        if let Some(c) = h.header("contact").map(msg::uri_of).filter(|u| !u.is_empty()) {
            self.target = c;
        }
        let mut rr: Vec<String> = h.record_route().map(str::to_owned).collect();
        rr.reverse();
        self.routes = rr;
    }

    /// §12.2.2: a request with a CSeq below the last one is out of order.
    /// (Retransmissions never get here: the transactions absorb them.)
    pub fn accept_remote_cseq(&mut self, seq: u32) -> bool {
        if self.remote_cseq.is_some_and(|r| seq < r) {
            return false;
        }
        self.remote_cseq = Some(seq);
        true
    }

    fn out<'d>(&'d self, method: &'d str, cseq: u32, sdp: Option<&'d str>) -> Option<OutRequest<'d>> {
        if self.target.is_empty() {
            return None;
        }
        Some(OutRequest {
            method,
            uri: &self.target,
            dest: self.dest,
            transport: self.transport,
            routes: &self.routes,
            from: &self.local,
            to: &self.remote,
            call_id: &self.call_id,
            cseq,
            contact: (method == "INVITE").then_some(self.contact.as_str()),
            body: sdp.map(|b| ("application/sdp", b.as_bytes())),
        })
    }

    /// A new in-dialog request (next CSeq), with an optional SDP body.
    /// `None` when the dialog has no target to send it to.
    pub fn request<'d>(&'d mut self, method: &'d str, sdp: Option<&'d str>) -> Option<OutRequest<'d>> {
        self.cseq += 1;
        self.out(method, self.cseq, sdp)
    }

    /// The ACK of a 2xx to our INVITE with CSeq `cseq` (§13.2.2.4).
    pub fn ack(&self, cseq: u32) -> Option<OutRequest<'_>> {
        self.out("ACK", cseq, None)
    }
}
