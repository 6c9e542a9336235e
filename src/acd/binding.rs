//! Registrar data: what a REGISTER asks for, what a binding is, what changed.

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};

/// One Contact of a REGISTER, already split out of the header by the integrator.
#[derive(Clone, Debug, PartialEq)]
pub struct ContactParam {
    /// The URI inside `<...>`, without header parameters.
    pub uri: String,
    /// Contact header parameter `expires=`; overrides the Expires header.
    pub expires: Option<u32>,
    pub q: Option<f32>,
    /// RFC 5626 `ob`: the UA asks us to use the flow it registered over.
    pub ob: bool,
}

/// The Contact header(s) of a REGISTER.
#[derive(Clone, Debug, PartialEq)]
pub enum ContactSet {
    /// `Contact: *` (the integrator must answer 400 itself when `*` is mixed
    /// with other contacts; it cannot be represented here).
    Star,
    List(Vec<ContactParam>),
    /// No Contact header: a query for the current bindings.
    None,
}

/// A registered contact of an agent: where the call layer sends INVITEs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Binding {
    pub agent: String,
    pub contact_uri: String,
    /// Where to send requests: the packet source when the UA is behind NAT
    /// (see `resolve_target`), else the contact's IP literal and port.
    pub target: SocketAddr,
    /// Set when `target` was taken from the packet source rather than the Contact.
    pub received: Option<SocketAddr>,
    /// Wall-clock unix ms: bindings outlive restarts, so monotonic time is wrong here.
    pub expires_at_ms: u64,
    pub call_id: String,
    pub cseq: u32,
    pub user_agent: Option<String>,
    /// First registration of this contact (kept across refreshes).
    pub registered_at_ms: u64,
    #[serde(default)]
    pub q: Option<f32>,
}

impl Binding {
    /// Seconds left, rounded up so a live binding never reports 0.
    pub fn remaining_secs(&self, now_ms: u64) -> u32 {
        let ms = self.expires_at_ms.saturating_sub(now_ms);
        u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX)
    }

    pub fn key(&self) -> String {
        binding_key(&self.agent, &self.contact_uri)
    }
}

/// Store key: `agent NUL contact`. NUL cannot occur in a SIP user or URI, so
/// the split is unambiguous and all bindings of an agent sort together.
pub fn binding_key(agent: &str, contact: &str) -> String {
    format!("{agent}\0{contact}")
}

/// A mutation for the store. The registrar emits these; it never does I/O.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Upsert(Binding),
    Remove { agent: String, contact: String },
}

impl Change {
    pub fn key(&self) -> String {
        match self {
            Change::Upsert(b) => b.key(),
            Change::Remove { agent, contact } => binding_key(agent, contact),
        }
    }
}

/// Host part of a SIP URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UriHost {
    Ip(IpAddr),
    Name(String),
}

/// `(host, port, has ;ob)` of a `sip:`/`sips:` URI; `None` for anything else.
/// Port defaults to 5060 (5061 for sips). Deliberately minimal: the registrar
/// only needs to know where to send, and it must never panic on odd input.
pub fn parse_sip_uri(uri: &str) -> Option<(UriHost, u16, bool)> {
    let u = uri.trim().trim_start_matches('<').trim_end_matches('>');
    let (rest, default_port) = if let Some(r) = strip_prefix_ci(u, "sips:") {
        (r, 5061)
    } else {
        (strip_prefix_ci(u, "sip:")?, 5060)
    };
    let rest = rest.split('?').next().unwrap_or("");
    // userinfo may contain ';' (tel-style users) but never a raw '@'.
    let after_user = match rest.find('@') {
        Some(i) => rest.get(i + 1..)?,
        None => rest,
    };
    let mut parts = after_user.split(';');
    let hostport = parts.next().unwrap_or("");
    let ob = parts.any(|p| p.trim().eq_ignore_ascii_case("ob"));
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let end = v6.find(']')?;
        let ip: IpAddr = v6.get(..end)?.parse().ok()?;
        let tail = v6.get(end + 1..)?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if tail.is_empty() => default_port,
            None => return None,
        };
        (UriHost::Ip(ip), port)
    } else {
        let (h, p) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (hostport, default_port),
        };
        if h.is_empty() {
            return None;
        }
        match h.parse::<IpAddr>() {
            Ok(ip) => (UriHost::Ip(ip), p),
            Err(_) => (UriHost::Name(h.to_ascii_lowercase()), p),
        }
    };
    Some((host, port, ob))
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

/// Addresses a UA behind NAT typically puts in its Contact: not reachable
/// from here unless it is also where the packet came from.
pub fn looks_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64/10 carrier-grade NAT
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return looks_private(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
        }
    }
}

/// Decides where requests for a contact go: `(target, received)`.
///
/// We use the packet source (and record it as `received`) when
/// - the contact has `;ob` (RFC 5626: reuse the registration flow), or
/// - the host is a name: we never resolve DNS on the routing path, and the
///   source is where this UA demonstrably is, or
/// - the contact IP differs from the source IP and either looks private or
///   its port also differs from the source port (a NAT rewrote the packet).
///
/// Same IP but a different port is trusted as written: a UA may send from
/// one socket and listen on another.
pub fn resolve_target(
    contact_uri: &str,
    ob: bool,
    source: SocketAddr,
) -> (SocketAddr, Option<SocketAddr>) {
    let nat = (source, Some(source));
    let Some((host, port, uri_ob)) = parse_sip_uri(contact_uri) else {
        return nat;
    };
    if ob || uri_ob {
        return nat;
    }
    match host {
        UriHost::Name(_) => nat,
        UriHost::Ip(ip) if ip == source.ip() => (SocketAddr::new(ip, port), None),
        UriHost::Ip(ip) if looks_private(ip) || port != source.port() => nat,
        UriHost::Ip(ip) => (SocketAddr::new(ip, port), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn uri_parsing() {
        let ip = |s: &str| UriHost::Ip(s.parse().unwrap());
        assert_eq!(
            parse_sip_uri("sip:1001@10.0.0.5:5070;transport=udp"),
            Some((ip("10.0.0.5"), 5070, false))
        );
        assert_eq!(
            parse_sip_uri("<SIPS:1001@[2001:db8::1]>"),
            Some((ip("2001:db8::1"), 5061, false))
        );
        assert_eq!(
            parse_sip_uri("sip:[::1]:6000;ob"),
            Some((ip("::1"), 6000, true))
        );
        assert_eq!(
            parse_sip_uri("sip:+1;phone-context=x@Host.Example?h=1"),
            Some((UriHost::Name("host.example".into()), 5060, false))
        );
        for bad in [
            "",
            "tel:+123",
            "sip:",
            "sip:a@",
            "sip:h:99999",
            "sip:[::1",
            "sip:[::1]x",
            "sip:h:",
            "sé",
            "sip:[zz]",
        ] {
            assert_eq!(parse_sip_uri(bad), None, "{bad}");
        }
    }

    #[test]
    fn nat_decisions() {
        let src = sa("203.0.113.7:40000");
        // Private contact, other IP: NAT.
        assert_eq!(
            resolve_target("sip:a@192.168.1.10:5060", false, src),
            (src, Some(src))
        );
        // Public contact, other IP, same port: trust the contact (e.g. third party).
        let pub_same_port = sa("198.51.100.1:40000");
        assert_eq!(
            resolve_target("sip:a@198.51.100.1:40000", false, src),
            (pub_same_port, None)
        );
        // Public contact, other IP, other port: NAT.
        assert_eq!(
            resolve_target("sip:a@198.51.100.1:5060", false, src),
            (src, Some(src))
        );
        // Same IP as source: trust as written, even on another port.
        assert_eq!(
            resolve_target("sip:a@203.0.113.7:5060", false, src),
            (sa("203.0.113.7:5060"), None)
        );
        // ob, hostnames and junk: source.
        assert_eq!(
            resolve_target("sip:a@203.0.113.7:5060", true, src),
            (src, Some(src))
        );
        assert_eq!(
            resolve_target("sip:a@203.0.113.7:5060;ob", false, src),
            (src, Some(src))
        );
        assert_eq!(
            resolve_target("sip:a@phone.example", false, src),
            (src, Some(src))
        );
        // Loopback deployments (the default config) are not NAT.
        let lo = sa("127.0.0.1:5080");
        assert_eq!(
            resolve_target("sip:a@127.0.0.1:5080", false, lo),
            (lo, None)
        );
    }

    #[test]
    fn private_ranges() {
        for p in [
            "10.1.1.1",
            "172.16.0.1",
            "192.168.0.1",
            "127.0.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:192.168.1.1",
        ] {
            assert!(looks_private(p.parse().unwrap()), "{p}");
        }
        for p in ["8.8.8.8", "100.128.0.1", "2001:db8::1", "::ffff:8.8.8.8"] {
            assert!(!looks_private(p.parse().unwrap()), "{p}");
        }
    }

    #[test]
    fn remaining_rounds_up() {
        let b = Binding {
            agent: "a".into(),
            contact_uri: "sip:a@h".into(),
            target: sa("127.0.0.1:5060"),
            received: None,
            expires_at_ms: 10_001,
            call_id: "c".into(),
            cseq: 1,
            user_agent: None,
            registered_at_ms: 0,
            q: None,
        };
        assert_eq!(b.remaining_secs(0), 11);
        assert_eq!(b.remaining_secs(10_000), 1);
        assert_eq!(b.remaining_secs(20_000), 0);
    }
}
