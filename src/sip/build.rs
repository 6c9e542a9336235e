//! Outgoing requests written once, straight to bytes, with the client
//! transaction key they open: the endpoint neither parses nor re-serialises
//! what the TU asked for. (Responses are written once by `response.rs`.)

use std::fmt::Write as _;
use std::net::SocketAddr;

use super::message::{addr_params, param};
use super::transaction::ClientKey;
use super::transport::Transport;

/// A request the TU sends: everything but our Via, which the endpoint adds
/// with a fresh branch.
#[derive(Debug, Clone, Copy)]
pub struct OutRequest<'a> {
    pub method: &'a str,
    /// Request-URI.
    pub uri: &'a str,
    /// Where the request goes.
    pub dest: SocketAddr,
    /// What it travels on: written into our Via, where the shell reads it.
    pub transport: Transport,
    /// Route header values, in order.
    pub routes: &'a [String],
    /// From header value; a tag of ours is added when it has none.
    pub from: &'a str,
    pub to: &'a str,
    pub call_id: &'a str,
    pub cseq: u32,
    /// Contact URI, written as `<uri>`.
    pub contact: Option<&'a str>,
    /// (Content-Type, body).
    pub body: Option<(&'a str, &'a [u8])>,
}

/// Our Via: what identifies us and the transaction.
#[derive(Debug, Clone, Copy)]
pub struct ViaOut<'a> {
    pub sent_by: SocketAddr,
    pub branch: &'a str,
}

/// Writes `req` with `via` on top; `new_tag` supplies a From tag when the
/// From has none. Returns the bytes and the §17.1.3 client key (our branch
/// and the CSeq method), the key the transaction layer derives from them.
pub fn write_request(req: &OutRequest<'_>, via: ViaOut<'_>, new_tag: impl FnOnce() -> String) -> (Vec<u8>, ClientKey) {
    let body = req.body.map_or(&[][..], |(_, b)| b);
    let mut s = String::with_capacity(384 + req.routes.iter().map(String::len).sum::<usize>() + req.from.len() + req.to.len());
    let _ = write!(
        s,
        "{} {} SIP/2.0\r\nVia: SIP/2.0/{} {};branch={};rport\r\nMax-Forwards: 70\r\n",
        req.method, req.uri, req.transport.via_token(), via.sent_by, via.branch
    );
    for r in req.routes {
        let _ = write!(s, "Route: {r}\r\n");
    }
    let _ = write!(s, "From: {}", req.from);
    if param(addr_params(req.from), "tag").is_none() {
        let _ = write!(s, ";tag={}", new_tag());
    }
    let _ = write!(
        s,
        "\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} {}\r\n",
        req.to, req.call_id, req.cseq, req.method
    );
    if let Some(c) = req.contact {
        let _ = write!(s, "Contact: <{c}>\r\n");
    }
    if let Some((ct, _)) = req.body {
        let _ = write!(s, "Content-Type: {ct}\r\n");
    }
    let _ = write!(s, "Content-Length: {}\r\n\r\n", body.len());
    let mut data = s.into_bytes();
    data.extend_from_slice(body);
    let key = ClientKey {
        branch: via.branch.to_owned(),
        method: req.method.to_owned(),
    };
    (data, key)
}

#[cfg(test)]
mod tests;
