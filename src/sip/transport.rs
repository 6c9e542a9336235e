//! Which transport a message travels on (RFC 3261 §18): UDP, TCP or TLS.
//!
//! The core never touches a socket; it only says which transport a request
//! is for, in the Via it writes (`SIP/2.0/TCP`), and the shell reads that
//! token back to pick the socket or the connection.

/// A SIP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// The Via protocol token.
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// A connection-oriented transport: responses and requests ride on the
    /// connection, not on the datagram socket.
    pub fn is_stream(self) -> bool {
        self != Transport::Udp
    }

    /// Label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    fn of_token(token: &[u8]) -> Option<Transport> {
        [Transport::Udp, Transport::Tcp, Transport::Tls]
            .into_iter()
            .find(|t| token.eq_ignore_ascii_case(t.via_token().as_bytes()))
    }

    /// The transport a URI asks for (RFC 3263 §4.1): `sips:` is TLS, else
    /// its `transport=` parameter, else UDP. Unknown transports are UDP.
    pub fn of_uri(uri: &str) -> Transport {
        let u = uri.trim().trim_start_matches('<');
        if u.get(..5).is_some_and(|s| s.eq_ignore_ascii_case("sips:")) {
            return Transport::Tls;
        }
        let u = u.split(['?', '>']).next().unwrap_or("");
        u.split(';')
            .skip(1)
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("transport"))
            .and_then(|(_, v)| Transport::of_token(v.trim().as_bytes()))
            .unwrap_or(Transport::Udp)
    }

    /// The protocol of a Via header value (`SIP/2.0/TCP host;...`).
    pub fn of_via(protocol: &str) -> Transport {
        let token = protocol.rsplit('/').next().unwrap_or("").trim();
        let token = token.split(|c: char| c.is_ascii_whitespace()).next().unwrap_or("");
        Transport::of_token(token.as_bytes()).unwrap_or(Transport::Udp)
    }
}

/// Where the transport token of a message's top Via is: `(transport, offset
/// of the token in data)`. `None` when there is no readable Via.
pub fn top_via_transport(data: &[u8]) -> Option<(Transport, usize)> {
    let mut pos = 0;
    for line in data.split(|b| *b == b'\n') {
        let start = pos;
        pos += line.len() + 1;
        if line.is_empty() || line == b"\r" {
            return None;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let name = line.get(..colon)?.trim_ascii();
        if !(name.eq_ignore_ascii_case(b"via") || name.eq_ignore_ascii_case(b"v")) {
            continue;
        }
        // `SIP / 2.0 / TCP`: the token follows the second slash.
        let value = line.get(colon + 1..)?;
        let first = value.iter().position(|b| *b == b'/')?;
        let second = first + 1 + value.get(first + 1..)?.iter().position(|b| *b == b'/')?;
        let after = value.get(second + 1..)?;
        let lead = after.iter().take_while(|b| b.is_ascii_whitespace()).count();
        let token = after.get(lead..)?;
        let len = token.iter().take_while(|b| b.is_ascii_alphanumeric()).count();
        let t = Transport::of_token(token.get(..len)?)?;
        return Some((t, start + colon + 1 + second + 1 + lead));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_transport() {
        assert_eq!(Transport::of_uri("sip:a@1.2.3.4:5060"), Transport::Udp);
        assert_eq!(Transport::of_uri("<sip:a@1.2.3.4;transport=TCP>"), Transport::Tcp);
        assert_eq!(Transport::of_uri("sip:a@h;lr;transport=tls;ob"), Transport::Tls);
        assert_eq!(Transport::of_uri("SIPS:a@h"), Transport::Tls);
        assert_eq!(Transport::of_uri("sip:a@h;transport=sctp"), Transport::Udp);
        assert_eq!(Transport::of_uri("sip:a@h?x=1;transport=tcp"), Transport::Udp);
    }

    #[test]
    fn via_transport() {
        assert_eq!(Transport::of_via("SIP/2.0/TCP"), Transport::Tcp);
        assert_eq!(Transport::of_via("SIP / 2.0 / tls"), Transport::Tls);
        assert_eq!(Transport::of_via("SIP/2.0/UDP"), Transport::Udp);
        let msg = b"BYE sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\nv: SIP/2.0/ TCP h:5060;branch=z9hG4bKx\r\nVia: SIP/2.0/UDP g\r\n\r\n";
        let (t, at) = top_via_transport(msg).unwrap();
        assert_eq!(t, Transport::Tcp);
        assert_eq!(&msg[at..at + 3], b"TCP");
        assert_eq!(top_via_transport(b"SIP/2.0 200 OK\r\n\r\nVia: SIP/2.0/TCP h\r\n"), None, "not in the body");
    }
}
