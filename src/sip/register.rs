//! REGISTER on the wire ⇄ the registrar's plain data.
//!
//! The registrar does not know SIP syntax; this is the one place that reads
//! the headers it needs (To, Contact list, Expires, Authorization, Call-ID,
//! CSeq, User-Agent) from the scanned message and writes its reply back as
//! a SIP response.

use std::net::SocketAddr;

use crate::acd::{ContactParam, ContactSet, RegisterReply, RegisterRequest};
use crate::sip::endpoint::ResponseSpec;
use crate::sip::message::full_name;
use crate::sip::msg::Message;
use crate::sip::view::{ListItems, View};

/// Why a REGISTER cannot be read; `reason` is the phrase of its 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("Bad To Header")]
    BadTo,
    #[error("Missing To Header")]
    MissingTo,
    #[error("Bad Contact Header")]
    BadContact,
    #[error("Bad Contact URI")]
    BadContactUri,
    #[error("Bad Contact Expires")]
    BadContactExpires,
    #[error("Bad Contact q")]
    BadContactQ,
    #[error("Contact * Mixed With Contacts")]
    StarMixedWithContacts,
    #[error("Bad Expires Header")]
    BadExpires,
    #[error("Missing Call-ID Header")]
    MissingCallId,
    #[error("Bad CSeq Header")]
    BadCSeq,
    #[error("Missing CSeq Header")]
    MissingCSeq,
}

impl RegisterError {
    /// The reason phrase of the 400 this error is answered with.
    pub fn reason(self) -> &'static str {
        match self {
            RegisterError::BadTo => "Bad To Header",
            RegisterError::MissingTo => "Missing To Header",
            RegisterError::BadContact => "Bad Contact Header",
            RegisterError::BadContactUri => "Bad Contact URI",
            RegisterError::BadContactExpires => "Bad Contact Expires",
            RegisterError::BadContactQ => "Bad Contact q",
            RegisterError::StarMixedWithContacts => "Contact * Mixed With Contacts",
            RegisterError::BadExpires => "Bad Expires Header",
            RegisterError::MissingCallId => "Missing Call-ID Header",
            RegisterError::BadCSeq => "Bad CSeq Header",
            RegisterError::MissingCSeq => "Missing CSeq Header",
        }
    }
}

/// Reads a REGISTER, header lines in order (the first broken one decides
/// the error).
pub fn to_registrar(req: &Message, src: SocketAddr) -> Result<RegisterRequest, RegisterError> {
    let mut user = None;
    let mut contacts: Option<Vec<ContactParam>> = None;
    let mut star = false;
    let mut expires = None;
    let mut authorizations = Vec::new();
    let mut call_id = None;
    let mut cseq = None;
    let mut user_agent = None;
    for (name, value) in req.lines() {
        let name = full_name(name);
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("to") {
            user = Some(uri_user(value).ok_or(RegisterError::BadTo)?);
        } else if is("contact") {
            for item in ListItems::new(value) {
                if item == "*" {
                    star = true;
                } else {
                    contacts.get_or_insert_with(Vec::new).push(contact_param(item)?);
                }
            }
        } else if is("expires") {
            expires = Some(value.trim().parse::<u32>().map_err(|_| RegisterError::BadExpires)?);
        } else if is("authorization") {
            authorizations.push(value.to_string());
        } else if is("call-id") {
            call_id = Some(value.trim().to_string());
        } else if is("cseq") {
            let num = value.split_whitespace().next().unwrap_or("");
            cseq = Some(num.parse::<u32>().map_err(|_| RegisterError::BadCSeq)?);
        } else if is("user-agent") {
            user_agent = Some(value.to_string());
        }
    }
    let contacts = match (star, contacts) {
        (true, Some(_)) => return Err(RegisterError::StarMixedWithContacts),
        (true, None) => ContactSet::Star,
        (false, Some(list)) => ContactSet::List(list),
        (false, None) => ContactSet::None,
    };
    Ok(RegisterRequest {
        user: user.ok_or(RegisterError::MissingTo)?,
        contacts,
        expires,
        authorizations,
        method_uri: req.request_uri().unwrap_or("").to_string(),
        call_id: call_id.ok_or(RegisterError::MissingCallId)?,
        cseq: cseq.ok_or(RegisterError::MissingCSeq)?,
        source: src,
        user_agent,
    })
}

/// The registrar's answer as a response to the REGISTER.
/// `wall_ms` (unix ms, passed in like every clock) dates a 200.
pub fn to_response(reply: &RegisterReply, wall_ms: u64) -> ResponseSpec {
    let mut spec = ResponseSpec { reason: Some(reply.reason().to_string()), ..ResponseSpec::new(reply.status()) };
    match reply {
        RegisterReply::Ok { contacts } => {
            for (uri, secs) in contacts {
                spec.headers.push(("Contact".into(), format!("<{uri}>;expires={secs}")));
            }
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(wall_ms);
            spec.headers.push(("Date".into(), http_date(t)));
        }
        RegisterReply::Challenge { www_authenticate } => {
            for c in www_authenticate {
                spec.headers.push(("WWW-Authenticate".into(), c.clone()));
            }
        }
        RegisterReply::IntervalTooBrief { min_expires } => {
            spec.headers.push(("Min-Expires".into(), min_expires.to_string()));
        }
        _ => {}
    }
    spec
}

/// The user part of a name-addr or addr-spec (`"A" <sip:alice@h>;tag=x`).
pub(crate) fn uri_user(v: &str) -> Option<String> {
    let uri = match (v.find('<'), v.find('>')) {
        (Some(a), Some(b)) if a < b => v.get(a + 1..b)?,
        _ => v.split(';').next()?,
    };
    let rest = uri.trim().strip_prefix("sip:").or_else(|| uri.trim().strip_prefix("sips:"))?;
    let user = rest.split('@').next()?;
    if rest.contains('@') && !user.is_empty() {
        // The user part may carry a password (user:pw) or params.
        Some(user.split([':', ';']).next().unwrap_or(user).to_string())
    } else {
        None
    }
}

/// One Contact list item: `<uri>;expires=60;+sip.instance="..";ob` or a bare URI.
fn contact_param(item: &str) -> Result<ContactParam, RegisterError> {
    let item = item.trim();
    let (uri, params) = if let Some(start) = item.find('<') {
        let end = item.get(start..).and_then(|s| s.find('>')).ok_or(RegisterError::BadContact)? + start;
        (item.get(start + 1..end).ok_or(RegisterError::BadContact)?, item.get(end + 1..).unwrap_or(""))
    } else {
        // addr-spec form: parameters after ';' belong to the header (§20.10).
        match item.find(';') {
            Some(i) => (item.get(..i).unwrap_or(""), item.get(i..).unwrap_or("")),
            None => (item, ""),
        }
    };
    let uri = uri.trim();
    if !(uri.starts_with("sip:") || uri.starts_with("sips:")) || uri.len() < 5 {
        return Err(RegisterError::BadContactUri);
    }
    let mut p = ContactParam { uri: uri.to_string(), expires: None, q: None, ob: false };
    for param in params.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = match param.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
            None => (param, None),
        };
        if k.eq_ignore_ascii_case("expires") {
            p.expires = Some(v.and_then(|v| v.parse().ok()).ok_or(RegisterError::BadContactExpires)?);
        } else if k.eq_ignore_ascii_case("q") {
            p.q = Some(v.and_then(|v| v.parse().ok()).ok_or(RegisterError::BadContactQ)?);
        } else if k.eq_ignore_ascii_case("ob") {
            p.ob = true;
        }
    }
    Ok(p)
}

/// RFC 7231 IMF-fixdate, as SIP's Date header wants (RFC 3261 §20.17).
fn http_date(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MO: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let wd = WD.get(days.rem_euclid(7) as usize).unwrap_or(&"Thu");
    let mon = MO.get((mo - 1) as usize).unwrap_or(&"Jan");
    format!("{wd}, {d:02} {mon} {y} {h:02}:{m:02}:{s:02} GMT")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn register(headers: &str) -> Message {
        let text = format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-r\r\n\
             From: <sip:alice@127.0.0.1>;tag=f\r\nCall-ID: r1\r\nCSeq: 4 REGISTER\r\n{headers}Content-Length: 0\r\n\r\n"
        );
        Message::parse(Bytes::from(text)).unwrap()
    }

    fn src() -> SocketAddr {
        "127.0.0.1:5070".parse().unwrap()
    }

    #[test]
    fn reads_a_register_through_the_view() {
        let m = register(
            "t: \"Alice\" <sip:alice@127.0.0.1>\r\nm: <sip:alice@10.0.0.1:5062>;expires=60, <sip:alice@10.0.0.2>\r\n\
             CONTACT: sip:alice@10.0.0.3;q=0.5\r\nExpires: 300\r\n\
             Authorization: Digest username=\"alice\", realm=\"r\"\r\nUser-Agent: ua/1\r\n",
        );
        let r = to_registrar(&m, src()).unwrap();
        assert_eq!(r.user, "alice");
        let ContactSet::List(list) = &r.contacts else { panic!("{:?}", r.contacts) };
        let uris: Vec<_> = list.iter().map(|c| (c.uri.as_str(), c.expires, c.q)).collect();
        assert_eq!(
            uris,
            vec![
                ("sip:alice@10.0.0.1:5062", Some(60), None),
                ("sip:alice@10.0.0.2", None, None),
                ("sip:alice@10.0.0.3", None, Some(0.5))
            ]
        );
        assert_eq!((r.expires, r.cseq, r.call_id.as_str()), (Some(300), 4, "r1"));
        assert_eq!(r.authorizations, vec!["Digest username=\"alice\", realm=\"r\"".to_owned()]);
        assert_eq!((r.method_uri.as_str(), r.user_agent.as_deref()), ("sip:127.0.0.1", Some("ua/1")));
        let star = to_registrar(&register("To: <sip:alice@h>\r\nContact: *\r\nExpires: 0\r\n"), src()).unwrap();
        assert!(matches!(star.contacts, ContactSet::Star));
    }

    #[test]
    fn typed_errors_keep_their_400_phrase() {
        let cases = [
            ("To: <sip:h>\r\n", RegisterError::BadTo, "Bad To Header"),
            ("To: <sip:a@h>\r\nExpires: soon\r\n", RegisterError::BadExpires, "Bad Expires Header"),
            ("To: <sip:a@h>\r\nContact: *, <sip:a@h>\r\n", RegisterError::StarMixedWithContacts, "Contact * Mixed With Contacts"),
            ("To: <sip:a@h>\r\nContact: <mailto:a@h>\r\n", RegisterError::BadContactUri, "Bad Contact URI"),
            ("Contact: <sip:a@h>\r\n", RegisterError::MissingTo, "Missing To Header"),
        ];
        for (headers, want, phrase) in cases {
            let err = to_registrar(&register(headers), src()).unwrap_err();
            assert_eq!((err, err.reason(), err.to_string()), (want, phrase, phrase.to_owned()), "{headers}");
        }
    }

    #[test]
    fn splits_contacts_outside_quotes_and_brackets() {
        let v: Vec<_> = ListItems::new(r#""A, b" <sip:a@h;x=1,2>;expires=5, <sip:b@h>"#).collect();
        assert_eq!(v.len(), 2, "{v:?}");
        let c = contact_param(v[0]).unwrap();
        assert_eq!(c.uri, "sip:a@h;x=1,2");
        assert_eq!(c.expires, Some(5));
    }

    #[test]
    fn contact_params() {
        let c = contact_param("<sip:alice@10.0.0.1:5062;transport=udp>;ob;q=0.5").unwrap();
        assert!(c.ob);
        assert_eq!(c.q, Some(0.5));
        assert_eq!(c.uri, "sip:alice@10.0.0.1:5062;transport=udp");
        let bare = contact_param("sip:bob@h;expires=0").unwrap();
        assert_eq!((bare.uri.as_str(), bare.expires), ("sip:bob@h", Some(0)));
        assert!(contact_param("<mailto:x@y>").is_err());
        assert!(contact_param("<sip:x@y").is_err());
        assert!(contact_param("<sip:x@y>;expires=soon").is_err());
    }

    #[test]
    fn user_of_to_header() {
        assert_eq!(uri_user("\"Alice\" <sip:alice@127.0.0.1>;tag=1").as_deref(), Some("alice"));
        assert_eq!(uri_user("sip:bob@h;tag=2").as_deref(), Some("bob"));
        assert_eq!(uri_user("<sip:127.0.0.1>"), None);
    }

    #[test]
    fn date_format() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
