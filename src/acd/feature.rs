//! A feature-code INVITE as the routing shard sees it (plain data, read off
//! the wire by `sip::feature`), and its answer. The routing shard checks the
//! digest with the registrar, parses the code (`config::FeaturesSection`)
//! and applies it as the operator's command would.

use std::net::SocketAddr;

/// A feature-code INVITE from an agent's phone.
#[derive(Debug, Clone)]
pub struct FeatureRequest {
    /// User part of the From URI: the agent who dials.
    pub user: String,
    /// User part of the Request-URI: the code as dialled (`*55*3`).
    pub code: String,
    /// Request-URI as sent; the digest `uri` must equal it.
    pub request_uri: String,
    /// Raw `Authorization` and `Proxy-Authorization` values, in order.
    pub authorizations: Vec<String>,
    pub source: SocketAddr,
}

/// The routing shard's answer to a [`FeatureRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeatureReply {
    /// Applied: 200, a confirmation tone, then BYE. `action` names it.
    Done { action: &'static str },
    /// 401 with one WWW-Authenticate value per algorithm (as REGISTER).
    Challenge { www_authenticate: Vec<String> },
    /// 403: wrong password, unknown agent or mismatched digest user; the
    /// reason is for logs.
    Forbidden(&'static str),
    /// 404: not a configured code.
    UnknownCode,
    /// 480: the agent cannot be moved to that state now (e.g. unpause
    /// when not paused); the reason is the phrase.
    Refused(String),
    /// 400 with a reason phrase.
    BadRequest(&'static str),
}

impl FeatureReply {
    pub fn status(&self) -> u16 {
        match self {
            FeatureReply::Done { .. } => 200,
            FeatureReply::Challenge { .. } => 401,
            FeatureReply::Forbidden(_) => 403,
            FeatureReply::UnknownCode => 404,
            FeatureReply::Refused(_) => 480,
            FeatureReply::BadRequest(_) => 400,
        }
    }

    /// Its label in `cc_feature_codes_total`.
    pub fn result(&self) -> &'static str {
        match self {
            FeatureReply::Done { .. } => "done",
            FeatureReply::Challenge { .. } => "challenged",
            FeatureReply::Forbidden(_) => "forbidden",
            FeatureReply::UnknownCode => "unknown",
            FeatureReply::Refused(_) => "refused",
            FeatureReply::BadRequest(_) => "bad_request",
        }
    }
}
