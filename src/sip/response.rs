//! Building responses to a request (RFC 3261 §8.2.6, RFC 3581).
//!
//! Responses are written straight to bytes from the request's header views:
//! no rsip round trip on the hot path, and a response can be built even when
//! rsip could not parse the request (that is when 400s are needed most).

use std::fmt::Write as _;
use std::net::SocketAddr;

use bytes::Bytes;

use super::message::{addr_params, param, parse_via, Scanned};
use super::view::View;

/// Standard reason phrase for a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => match status / 100 {
            1 => "Trying",
            2 => "OK",
            3 => "Redirect",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Global Failure",
        },
    }
}

/// The parts of a request that every response to it copies, owned so a
/// server transaction can keep them for its whole life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseBase {
    /// `Via:` lines (top one rewritten per RFC 3581), `From:`, `Call-ID:`,
    /// `CSeq:`, each ending in CRLF.
    head: String,
    /// To header value as received.
    to: String,
    to_has_tag: bool,
}

/// Rewrite the top Via for the response: `received=` when the sent-by host
/// is not the source IP or rport was asked for, `rport=<port>` filled in.
fn write_top_via(out: &mut String, value: &str, src: SocketAddr) {
    let Some(via) = parse_via(value) else {
        let _ = write!(out, "Via: {}\r\n", value.trim());
        return;
    };
    let _ = write!(out, "Via: {} {}", via.protocol, via.sent_by);
    for p in via
        .params
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let name = p.split_once('=').map_or(p, |(n, _)| n).trim();
        if name.eq_ignore_ascii_case("received") {
            continue;
        }
        if name.eq_ignore_ascii_case("rport") {
            let _ = write!(out, ";rport={}", src.port());
        } else {
            let _ = write!(out, ";{p}");
        }
    }
    let same_host = via
        .host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip == src.ip());
    if via.rport || !same_host {
        let _ = write!(out, ";received={}", src.ip());
    }
    out.push_str("\r\n");
}

impl ResponseBase {
    /// Copies what §8.2.6.2 needs. Missing headers are simply left out: a
    /// 400 for "missing From" still goes back with the rest.
    pub fn from_request(msg: &Scanned<'_>, src: SocketAddr) -> Self {
        let mut head = String::with_capacity(256);
        for (i, v) in msg.via_values().enumerate() {
            if i == 0 {
                write_top_via(&mut head, v, src);
            } else {
                let _ = write!(head, "Via: {v}\r\n");
            }
        }
        if let Some(v) = msg.header("from") {
            let _ = write!(head, "From: {v}\r\n");
        }
        if let Some(v) = msg.header("call-id") {
            let _ = write!(head, "Call-ID: {v}\r\n");
        }
        if let Some(v) = msg.header("cseq") {
            let _ = write!(head, "CSeq: {v}\r\n");
        }
        let to = msg.header("to").unwrap_or("").to_owned();
        let to_has_tag = param(addr_params(&to), "tag").is_some();
        ResponseBase {
            head,
            to,
            to_has_tag,
        }
    }

    pub fn to_has_tag(&self) -> bool {
        self.to_has_tag
    }

    /// Serialises a response. `to_tag` is added to To when the request had
    /// none and the status is not 100 (§8.2.6.2).
    ///
    /// The buffer is sized up front: a final response to a non-INVITE is
    /// kept until Timer J (tens of thousands at once under REGISTER load),
    /// and a buffer grown by doubling would keep up to half of it unused.
    pub fn build<'h, H>(
        &self,
        status: u16,
        reason: &str,
        to_tag: Option<&str>,
        headers: H,
        body: Option<(&str, &[u8])>,
    ) -> Bytes
    where
        H: IntoIterator<Item = (&'h str, &'h str)>,
        H::IntoIter: Clone,
    {
        let headers = headers.into_iter();
        let body_len = body.map_or(0, |(_, b)| b.len());
        let digits = |n: usize| n.checked_ilog10().map_or(1, |d| d as usize + 1);
        // Every line with its CRLF: exact, or a little over when a header
        // is skipped below or the To tag is not added.
        let capacity = "SIP/2.0  \r\n".len()
            + digits(usize::from(status))
            + reason.len()
            + self.head.len()
            + "To: ;tag=\r\n".len()
            + self.to.len()
            + to_tag.map_or(0, str::len)
            + headers
                .clone()
                .map(|(n, v)| n.len() + v.len() + ": \r\n".len())
                .sum::<usize>()
            + body.map_or(0, |(ct, _)| "Content-Type: \r\n".len() + ct.len())
            + "Content-Length: \r\n\r\n".len()
            + digits(body_len)
            + body_len;
        let mut s = String::with_capacity(capacity);
        let _ = write!(s, "SIP/2.0 {status} {reason}\r\n{}", self.head);
        if !self.to.is_empty() {
            let _ = write!(s, "To: {}", self.to);
            match to_tag {
                Some(tag) if !self.to_has_tag && status > 100 => {
                    let _ = write!(s, ";tag={tag}");
                }
                _ => {}
            }
            s.push_str("\r\n");
        }
        for (name, value) in headers {
            // Ours: copied from the request or computed from the body.
            const OURS: [&str; 7] = [
                "via",
                "from",
                "to",
                "call-id",
                "cseq",
                "content-length",
                "content-type",
            ];
            if OURS.iter().any(|o| name.eq_ignore_ascii_case(o)) {
                continue;
            }
            let _ = write!(s, "{name}: {value}\r\n");
        }
        if let Some((ct, _)) = body {
            let _ = write!(s, "Content-Type: {ct}\r\n");
        }
        let _ = write!(s, "Content-Length: {body_len}\r\n\r\n");
        let mut out = s.into_bytes();
        if let Some((_, b)) = body {
            out.extend_from_slice(b);
        }
        debug_assert!(out.len() <= capacity, "{} > {capacity}", out.len());
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::scan;

    fn req(via: &str, to: &str) -> Vec<u8> {
        format!(
            "INVITE sip:b@h SIP/2.0\r\nVia: {via}\r\nVia: SIP/2.0/UDP proxy:5060;branch=z9hG4bKp\r\n\
             From: <sip:a@h>;tag=f\r\nTo: {to}\r\nCall-ID: c1\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn src() -> SocketAddr {
        "192.0.2.1:40000".parse().unwrap()
    }

    #[test]
    fn copies_headers_adds_received_rport_and_tag() {
        let d = req(
            "SIP/2.0/UDP host.example:5060;branch=z9hG4bKa;rport",
            "<sip:b@h>",
        );
        let base = ResponseBase::from_request(&scan(&d).unwrap(), src());
        let r = base.build(
            180,
            "Ringing",
            Some("cc0-1"),
            [("Contact", "<sip:x@y>")],
            None,
        );
        let r = std::str::from_utf8(&r).unwrap();
        assert!(r.starts_with("SIP/2.0 180 Ringing\r\n"));
        assert!(r.contains(
            "Via: SIP/2.0/UDP host.example:5060;branch=z9hG4bKa;rport=40000;received=192.0.2.1\r\n\
             Via: SIP/2.0/UDP proxy:5060;branch=z9hG4bKp\r\n"
        ));
        assert!(r.contains("To: <sip:b@h>;tag=cc0-1\r\n"));
        assert!(r.contains("From: <sip:a@h>;tag=f\r\nCall-ID: c1\r\nCSeq: 7 INVITE\r\n"));
        assert!(r.ends_with("Contact: <sip:x@y>\r\nContent-Length: 0\r\n\r\n"));
        let parsed = rsip::SipMessage::try_from(r).unwrap();
        assert!(parsed.is_response());
    }

    #[test]
    fn no_received_when_host_matches_and_no_rport() {
        let d = req(
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa",
            "<sip:b@h>;tag=theirs",
        );
        let base = ResponseBase::from_request(&scan(&d).unwrap(), src());
        let r = base.build(100, "Trying", Some("cc0-1"), [], None);
        let r = std::str::from_utf8(&r).unwrap();
        assert!(r.contains("Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa\r\n"));
        assert!(r.contains("To: <sip:b@h>;tag=theirs\r\n"));
    }

    #[test]
    fn ipv6_sources() {
        let d = req(
            "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKa;rport",
            "<sip:b@h>",
        );
        let src: SocketAddr = "[2001:db8::1]:5062".parse().unwrap();
        let base = ResponseBase::from_request(&scan(&d).unwrap(), src);
        let r = base.build(200, "OK", Some("t"), [], None);
        let r = std::str::from_utf8(&r).unwrap();
        assert!(r.contains("Via: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKa;rport=5062;received=2001:db8::1\r\n"), "{r}");
        let d = req(
            "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKa",
            "<sip:b@h>",
        );
        let base = ResponseBase::from_request(&scan(&d).unwrap(), src);
        let r = base.build(200, "OK", Some("t"), [], None);
        assert!(!std::str::from_utf8(&r).unwrap().contains("received"));
    }

    #[test]
    fn body_and_length() {
        let d = req("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa", "<sip:b@h>");
        let base = ResponseBase::from_request(&scan(&d).unwrap(), src());
        let r = base.build(
            200,
            "OK",
            Some("t"),
            [("Content-Length", "99")],
            Some(("application/sdp", b"v=0\r\n")),
        );
        let r = std::str::from_utf8(&r).unwrap();
        assert!(r.ends_with("Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n"));
        assert!(!r.contains("99"));
    }
}
