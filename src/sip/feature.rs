//! A feature-code INVITE on the wire ⇄ the routing shard's plain data
//! (`acd::feature`), like `sip::register` for REGISTER.

use std::net::SocketAddr;

use super::endpoint::ResponseSpec;
use super::message::full_name;
use super::msg::Message;
use super::register::uri_user;
use super::view::View;
use crate::acd::feature::{FeatureReply, FeatureRequest};

/// Why a feature-code INVITE cannot be read; answered 400 with this phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FeatureReadError {
    #[error("Bad From Header")]
    BadFrom,
    #[error("Bad Request-URI")]
    BadUri,
}

/// Reads the agent (From user), the dialled code (Request-URI user) and the
/// credentials (`Authorization`, or `Proxy-Authorization` from phones that
/// answer every INVITE challenge as a proxy's).
pub fn to_request(req: &Message, src: SocketAddr) -> Result<FeatureRequest, FeatureReadError> {
    let uri = req.request_uri().unwrap_or("");
    let code = uri_user(uri).ok_or(FeatureReadError::BadUri)?;
    let mut user = None;
    let mut authorizations = Vec::new();
    for (name, value) in req.lines() {
        let name = full_name(name);
        if name.eq_ignore_ascii_case("from") {
            user = uri_user(value);
        } else if name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case("proxy-authorization") {
            authorizations.push(value.to_string());
        }
    }
    Ok(FeatureRequest {
        user: user.ok_or(FeatureReadError::BadFrom)?,
        code,
        request_uri: uri.to_string(),
        authorizations,
        source: src,
    })
}

/// The routing shard's refusal as a response (a `Done` is answered by the
/// call layer with SDP, see `call::feature_leg`).
pub fn to_response(reply: &FeatureReply) -> ResponseSpec {
    let reason = match reply {
        FeatureReply::Done { .. } => "OK".to_string(),
        FeatureReply::Challenge { .. } => "Unauthorized".to_string(),
        FeatureReply::Forbidden(_) => "Forbidden".to_string(),
        FeatureReply::UnknownCode => "No Such Feature Code".to_string(),
        FeatureReply::Refused(r) => r.clone(),
        FeatureReply::BadRequest(r) => (*r).to_string(),
    };
    let mut spec = ResponseSpec { reason: Some(reason), ..ResponseSpec::new(reply.status()) };
    if let FeatureReply::Challenge { www_authenticate } = reply {
        for c in www_authenticate {
            spec.headers.push(("WWW-Authenticate".into(), c.clone()));
        }
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn invite(uri: &str, extra: &str) -> Message {
        let text = format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-f\r\n\
             f: \"Alice\" <sip:alice@127.0.0.1>;tag=f\r\nTo: <{uri}>\r\nCall-ID: f1\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Message::parse(Bytes::from(text)).unwrap()
    }

    #[test]
    fn reads_agent_code_and_both_credential_headers() {
        let src = "127.0.0.1:5070".parse().unwrap();
        let m = invite("sip:*55*3@127.0.0.1", "Authorization: Digest a\r\nProxy-Authorization: Digest b\r\n");
        let r = to_request(&m, src).unwrap();
        assert_eq!((r.user.as_str(), r.code.as_str()), ("alice", "*55*3"));
        assert_eq!(r.request_uri, "sip:*55*3@127.0.0.1");
        assert_eq!(r.authorizations, vec!["Digest a".to_string(), "Digest b".to_string()]);
        assert_eq!(to_request(&invite("sip:127.0.0.1", ""), src).unwrap_err(), FeatureReadError::BadUri);
    }

    #[test]
    fn refusals_carry_their_status_and_challenge() {
        let c = to_response(&FeatureReply::Challenge { www_authenticate: vec!["Digest x".into()] });
        assert_eq!(c.status, 401);
        assert_eq!(c.headers, vec![("WWW-Authenticate".to_string(), "Digest x".to_string())]);
        assert_eq!(to_response(&FeatureReply::Forbidden("wrong credentials")).status, 403);
        assert_eq!(to_response(&FeatureReply::UnknownCode).status, 404);
        let r = to_response(&FeatureReply::Refused("Not Paused".into()));
        assert_eq!((r.status, r.reason.as_deref()), (480, Some("Not Paused")));
    }
}
