//! One side of a call as a SIP dialog (RFC 3261 §12): identifiers, the
//! local CSeq, the remote target and route set, and the requests built
//! inside it (BYE, re-INVITE, the ACK of a 2xx per §13.2.2.4).
//!
//! In-dialog requests go to `dest`: the customer's source address (RFC 3581
//! style, right behind NAT and through an outbound proxy alike) or the agent
//! target the router gave. The Route set is written as received, so loose
//! routers on the path still see it.

use std::fmt::Write as _;
use std::net::SocketAddr;

use super::msg::{self, Hdrs};

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
    /// Last CSeq number we used.
    pub cseq: u32,
    /// Highest CSeq number the peer used (§12.2.2).
    pub remote_cseq: Option<u32>,
    /// Our Contact URI.
    pub contact: String,
}

impl Dialog {
    /// UAS side, from the customer's INVITE.
    pub fn uas(h: &Hdrs, local_tag: &str, src: SocketAddr, contact: String, fallback_target: String) -> Option<Dialog> {
        let to = h.get("to")?;
        Some(Dialog {
            call_id: h.get("call-id")?.to_owned(),
            local_tag: local_tag.to_owned(),
            local: format!("{to};tag={local_tag}"),
            remote: h.get("from")?.to_owned(),
            target: h
                .get("contact")
                .map(msg::uri_of)
                .filter(|u| !u.is_empty())
                .unwrap_or(fallback_target),
            routes: h.all_split("record-route"),
            dest: src,
            cseq: 0,
            remote_cseq: h.cseq().map(|c| c.0),
            contact,
        })
    }

    /// UAC side confirmed by a 2xx (`h` are the response's headers): remote
    /// tag from To, target from Contact, route set = Record-Route reversed.
    pub fn confirm_uac(&mut self, h: &Hdrs) {
        if let Some(to) = h.get("to") {
            self.remote = to.to_owned();
        }
        if let Some(c) = h.get("contact").map(msg::uri_of).filter(|u| !u.is_empty()) {
            self.target = c;
        }
        let mut rr = h.all_split("record-route");
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

    fn head(&self, method: &str, cseq: u32) -> String {
        let mut s = String::with_capacity(512);
        let _ = write!(s, "{method} {} SIP/2.0\r\nMax-Forwards: 70\r\n", self.target);
        for r in &self.routes {
            let _ = write!(s, "Route: {r}\r\n");
        }
        let _ = write!(
            s,
            "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n",
            self.local, self.remote, self.call_id
        );
        s
    }

    /// A new in-dialog request (next CSeq), with an optional SDP body.
    pub fn request(&mut self, method: &str, sdp: Option<&str>) -> Option<rsip::Request> {
        self.cseq += 1;
        let mut s = self.head(method, self.cseq);
        if method == "INVITE" {
            let _ = write!(s, "Contact: <{}>\r\n", self.contact);
        }
        finish(&mut s, sdp);
        msg::request(&s)
    }

    /// The ACK of a 2xx to our INVITE with CSeq `cseq` (§13.2.2.4).
    pub fn ack(&self, cseq: u32) -> Option<rsip::Request> {
        let mut s = self.head("ACK", cseq);
        finish(&mut s, None);
        msg::request(&s)
    }
}

fn finish(s: &mut String, sdp: Option<&str>) {
    match sdp {
        Some(b) => {
            let _ = write!(
                s,
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            );
        }
        None => s.push_str("Content-Length: 0\r\n\r\n"),
    }
}
