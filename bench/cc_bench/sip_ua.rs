//! The little SIP a load generator needs: parse a datagram into start line,
//! headers and body (no allocation beyond the header index), build requests
//! and responses as text, and answer digest challenges with the engine's own
//! `cc_engine::sip::auth` client helpers.

use cc_engine::sip::auth::{self, Algorithm, DigestResponse};

pub struct Msg<'a> {
    pub first: &'a str,
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: &'a [u8],
    pub text: &'a str,
}

fn long_name(n: &str) -> &str {
    match n {
        "v" | "V" => "via",
        "f" | "F" => "from",
        "t" | "T" => "to",
        "i" | "I" => "call-id",
        "m" | "M" => "contact",
        "l" | "L" => "content-length",
        "c" | "C" => "content-type",
        _ => n,
    }
}

impl<'a> Msg<'a> {
    pub fn parse(buf: &'a [u8]) -> Option<Msg<'a>> {
        let end = find(buf, b"\r\n\r\n")?;
        let head = std::str::from_utf8(&buf[..end]).ok()?;
        let body = &buf[end + 4..];
        let mut lines = head.split("\r\n");
        let first = lines.next()?;
        let mut headers = Vec::with_capacity(16);
        for l in lines {
            if l.starts_with(' ') || l.starts_with('\t') {
                continue; // folded lines: none from the engine
            }
            let (n, v) = l.split_once(':')?;
            headers.push((n.trim(), v.trim()));
        }
        Some(Msg {
            first,
            headers,
            body,
            text: head,
        })
    }

    pub fn is_response(&self) -> bool {
        self.first.starts_with("SIP/2.0 ")
    }

    pub fn code(&self) -> u16 {
        self.first
            .get(8..11)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }

    pub fn method(&self) -> &'a str {
        self.first.split(' ').next().unwrap_or("")
    }

    /// Request-URI.
    pub fn ruri(&self) -> &'a str {
        self.first.split(' ').nth(1).unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| long_name(n).eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    pub fn all(&self, name: &'a str) -> impl Iterator<Item = &'a str> + '_ {
        self.headers
            .iter()
            .filter(move |(n, _)| long_name(n).eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    pub fn call_id(&self) -> &'a str {
        self.header("call-id").unwrap_or("")
    }

    pub fn cseq(&self) -> (u32, &'a str) {
        let v = self.header("cseq").unwrap_or("");
        let mut it = v.split_whitespace();
        let n = it.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        (n, it.next().unwrap_or(""))
    }

    /// Branch of the top Via.
    pub fn branch(&self) -> &'a str {
        self.header("via")
            .and_then(|v| param(v, "branch"))
            .unwrap_or("")
    }

    pub fn to_tag(&self) -> Option<&'a str> {
        self.header("to").and_then(|v| param(v, "tag"))
    }

    /// URI inside the first Contact (`<...>` or bare).
    pub fn contact_uri(&self) -> Option<&'a str> {
        self.header("contact").map(uri_of)
    }
}

/// The URI of a name-addr or addr-spec header value.
pub fn uri_of(v: &str) -> &str {
    if let Some(s) = v.find('<') {
        if let Some(e) = v[s..].find('>') {
            return &v[s + 1..s + e];
        }
    }
    v.split(';').next().unwrap_or(v).trim()
}

/// `;name=value` parameter of a header value (after the URI part).
pub fn param<'a>(v: &'a str, name: &str) -> Option<&'a str> {
    let tail = match v.find('>') {
        Some(i) => &v[i..],
        None => v,
    };
    tail.split(';').skip(1).find_map(|p| {
        let (k, val) = p.split_once('=')?;
        if k.trim().eq_ignore_ascii_case(name) {
            Some(val.trim().split([',', ' ']).next().unwrap_or(""))
        } else {
            None
        }
    })
}

pub fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// Host:port of a sip URI (`sip:user@host:port;params`), if it has a port.
pub fn uri_addr(uri: &str) -> Option<std::net::SocketAddr> {
    let rest = uri.strip_prefix("sip:")?;
    let rest = rest.rsplit('@').next()?;
    let hp = rest.split([';', '?', '>']).next()?;
    hp.parse().ok()
}

/// A digest challenge (one `WWW-Authenticate: Digest ...` value).
#[derive(Clone, Debug)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub algorithm: Algorithm,
    pub qop_auth: bool,
    pub opaque: Option<String>,
}

/// Parses `Digest k=v, k="v"...`. Unknown algorithms → None.
pub fn parse_challenge(v: &str) -> Option<Challenge> {
    let rest = v.trim().strip_prefix("Digest")?.trim_start();
    let mut realm = None;
    let mut nonce = None;
    let mut alg = Algorithm::Md5;
    let mut qop_auth = false;
    let mut opaque = None;
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b' ' || b[i] == b',') {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' {
            i += 1;
        }
        let key = rest[ks..i].trim();
        i += 1;
        let val;
        if i < b.len() && b[i] == b'"' {
            let vs = i + 1;
            i = vs;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            val = rest.get(vs..i.min(b.len()))?;
            i += 1;
        } else {
            let vs = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            val = rest.get(vs..i)?.trim();
        }
        match key.to_ascii_lowercase().as_str() {
            "realm" => realm = Some(val.to_string()),
            "nonce" => nonce = Some(val.to_string()),
            "algorithm" => alg = Algorithm::parse(val)?,
            "qop" => qop_auth = val.split(',').any(|q| q.trim() == "auth"),
            "opaque" => opaque = Some(val.to_string()),
            _ => {}
        }
    }
    Some(Challenge {
        realm: realm?,
        nonce: nonce?,
        algorithm: alg,
        qop_auth,
        opaque,
    })
}

/// Picks the challenge to answer: `prefer` if offered, else the first we know.
pub fn pick_challenge<'a>(m: &Msg<'a>, prefer: Option<Algorithm>) -> Option<Challenge> {
    let all: Vec<Challenge> = m
        .all("www-authenticate")
        .filter_map(parse_challenge)
        .collect();
    if let Some(p) = prefer {
        if let Some(c) = all.iter().find(|c| c.algorithm == p) {
            return Some(c.clone());
        }
    }
    all.into_iter().next()
}

/// The `Authorization` value answering `ch` for `method uri`.
pub fn authorization(
    ch: &Challenge,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
) -> String {
    let mut r = DigestResponse {
        username: user.to_string(),
        realm: ch.realm.clone(),
        nonce: ch.nonce.clone(),
        uri: uri.to_string(),
        response: String::new(),
        algorithm: ch.algorithm,
        cnonce: ch.qop_auth.then(|| cnonce.to_string()),
        nc: ch.qop_auth.then(|| "00000001".to_string()),
        qop: ch.qop_auth.then(|| "auth".to_string()),
        opaque: ch.opaque.clone(),
    };
    r.response = auth::compute_response(&r, method, password);
    auth::format_authorization(&r)
}

/// A response to request `req`, echoing Via/From/Call-ID/CSeq and `To` with
/// `to_tag` added when the request had none.
pub fn response(
    req: &Msg,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut s = format!("SIP/2.0 {code} {reason}\r\n");
    for v in req.all("via") {
        s.push_str("Via: ");
        s.push_str(v);
        s.push_str("\r\n");
    }
    s.push_str(&format!("From: {}\r\n", req.header("from").unwrap_or("")));
    let to = req.header("to").unwrap_or("");
    match (to_tag, param(to, "tag")) {
        (Some(t), None) => s.push_str(&format!("To: {to};tag={t}\r\n")),
        _ => s.push_str(&format!("To: {to}\r\n")),
    }
    s.push_str(&format!("Call-ID: {}\r\n", req.call_id()));
    s.push_str(&format!("CSeq: {}\r\n", req.header("cseq").unwrap_or("")));
    s.push_str(extra);
    s.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut v = s.into_bytes();
    v.extend_from_slice(body);
    v
}

/// PCMU-only SDP offer/answer for `addr`.
pub fn sdp(addr: std::net::SocketAddr, sess: u64) -> String {
    format!(
        "v=0\r\no=ccbench {sess} 1 IN IP4 {ip}\r\ns=cc-bench\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
        ip = addr.ip(),
        port = addr.port()
    )
}

/// `c=` address and `m=audio` port of an SDP body.
pub fn sdp_addr(body: &[u8]) -> Option<std::net::SocketAddr> {
    let s = std::str::from_utf8(body).ok()?;
    let mut ip = None;
    let mut port = None;
    for l in s.lines() {
        if let Some(r) = l.strip_prefix("c=IN IP4 ") {
            if ip.is_none() {
                ip = r.trim().parse::<std::net::Ipv4Addr>().ok();
            }
        } else if let Some(r) = l.strip_prefix("m=audio ") {
            port = r.split(' ').next().and_then(|p| p.parse::<u16>().ok());
        }
    }
    Some(std::net::SocketAddr::new(ip?.into(), port?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_response_and_challenges() {
        let raw = b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 127.0.0.1:5;branch=z9hG4bKx;rport=5\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:a@h>;tag=2\r\nCall-ID: c1\r\nCSeq: 7 REGISTER\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"n1\", algorithm=MD5, qop=\"auth\"\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"n1\", algorithm=SHA-256, qop=\"auth\"\r\nContent-Length: 0\r\n\r\n";
        let m = Msg::parse(raw).unwrap();
        assert!(m.is_response());
        assert_eq!(m.code(), 401);
        assert_eq!(m.cseq(), (7, "REGISTER"));
        assert_eq!(m.branch(), "z9hG4bKx");
        assert_eq!(m.to_tag(), Some("2"));
        let c = pick_challenge(&m, Some(Algorithm::Sha256)).unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert_eq!(c.nonce, "n1");
        assert!(c.qop_auth);
        let c = pick_challenge(&m, None).unwrap();
        assert_eq!(c.algorithm, Algorithm::Md5);
    }

    #[test]
    fn authorization_verifies_with_engine_code() {
        let ch = Challenge {
            realm: "r".into(),
            nonce: "n".into(),
            algorithm: Algorithm::Sha256,
            qop_auth: true,
            opaque: None,
        };
        let h = authorization(&ch, "agent0001", "pw", "REGISTER", "sip:h", "cn");
        let parsed = auth::parse_authorization(&h).unwrap();
        assert!(auth::verify(&parsed, "REGISTER", "pw", "r"));
        assert!(!auth::verify(&parsed, "REGISTER", "bad", "r"));
    }

    #[test]
    fn sdp_round_trip() {
        let a: std::net::SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(sdp_addr(sdp(a, 1).as_bytes()), Some(a));
        assert_eq!(
            uri_addr("sip:agent0001@127.0.0.1:5070;transport=udp"),
            Some("127.0.0.1:5070".parse().unwrap())
        );
    }
}
