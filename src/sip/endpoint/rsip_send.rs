//! Requests handed over as `rsip::Request` (test agents and tools that
//! build requests with rsip): serialised here, filling what is missing.
//! The call layer sends through `Endpoint::send`, which writes bytes once.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::super::message::{addr_params, param, scan};
use super::super::transaction::ClientKey;
use super::{ClientTxId, Endpoint, Output};

impl Endpoint {
    /// Serialises `req`, filling what is missing: a top Via with a new
    /// branch of ours, From tag, Call-ID, CSeq `1 <method>`, Max-Forwards,
    /// and the Content-Length.
    fn serialise(&mut self, req: &rsip::Request) -> String {
        let method = req.method.to_string();
        let mut has_via = false;
        let mut has_call_id = false;
        let mut has_cseq = false;
        let mut has_mf = false;
        let mut lines = String::with_capacity(512);
        for h in req.headers.iter() {
            match h {
                rsip::Header::ContentLength(_) => continue,
                rsip::Header::Via(_) => has_via = true,
                rsip::Header::CallId(_) => has_call_id = true,
                rsip::Header::CSeq(_) => has_cseq = true,
                rsip::Header::MaxForwards(_) => has_mf = true,
                _ => {}
            }
            let line = h.to_string();
            let _ = write!(lines, "{line}");
            if let rsip::Header::From(f) = h {
                let v = rsip::headers::UntypedHeader::value(f);
                if param(addr_params(v), "tag").is_none() {
                    let _ = write!(lines, ";tag={}", self.ids.tag());
                }
            }
            lines.push_str("\r\n");
        }
        let mut s = String::with_capacity(lines.len() + 256 + req.body.len());
        let _ = write!(s, "{method} {} SIP/2.0\r\n", req.uri);
        if !has_via {
            let _ = write!(
                s,
                "Via: SIP/2.0/UDP {};branch={};rport\r\n",
                self.cfg.local_addr,
                self.ids.branch()
            );
        }
        if !has_mf {
            s.push_str("Max-Forwards: 70\r\n");
        }
        s.push_str(&lines);
        if !has_call_id {
            let _ = write!(s, "Call-ID: {}\r\n", self.ids.call_id(&self.cfg.domain));
        }
        if !has_cseq {
            let _ = write!(s, "CSeq: 1 {method}\r\n");
        }
        let _ = write!(s, "Content-Length: {}\r\n\r\n", req.body.len());
        s
    }

    /// Starts a client transaction for `req` to `dest` (see `serialise` for
    /// what is filled in). Requests without a usable branch get a top Via.
    pub fn send_request(
        &mut self,
        req: rsip::Request,
        dest: SocketAddr,
        now: Instant,
    ) -> ClientTxId {
        let mut text = self.serialise(&req);
        let mut key = self.client_key(text.as_bytes());
        if key.is_none() {
            // The caller's Via had no usable branch: put ours on top.
            let branch = self.ids.branch();
            let via = format!(
                "Via: SIP/2.0/UDP {};branch={branch};rport\r\n",
                self.cfg.local_addr
            );
            if let Some(pos) = text.find("\r\n") {
                text.insert_str(pos + 2, &via);
            }
            key = self.client_key(text.as_bytes());
        }
        let key = key.unwrap_or_else(|| ClientKey {
            branch: self.ids.branch(),
            method: req.method.to_string(),
        });
        let mut data = text.into_bytes();
        data.extend_from_slice(&req.body);
        self.txs
            .client_new(key, Bytes::from(data), dest, now, &mut self.out)
    }

    fn client_key(&self, data: &[u8]) -> Option<ClientKey> {
        ClientKey::of(&scan(data).ok()?)
    }

    /// Sends a request outside any transaction (the ACK of a 2xx,
    /// §13.2.2.4), filling missing headers like `send_request`.
    pub fn send_stateless(&mut self, req: rsip::Request, dest: SocketAddr) {
        let mut data = self.serialise(&req).into_bytes();
        data.extend_from_slice(&req.body);
        self.out.push_back(Output::Transmit {
            dest,
            data: Bytes::from(data),
        });
    }
}
