//! SDP (RFC 4566) parse/build and the offer/answer rules we need (RFC 3264).
//!
//! Only what a call-center B2BUA needs is modelled: `v=`, `o=`, `s=`, `c=`,
//! `t=`, `m=audio`, `a=rtpmap`, `a=fmtp`, `a=ptime`, direction attributes and
//! `a=rtcp`; any other line is kept verbatim so a round trip loses nothing.
//! IPv4 and IPv6 (`IN IP4` / `IN IP6`). Sans-IO and allocation-light.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// SDP errors and the SIP answer each one maps to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// Malformed SDP → `400 Bad Request`, naming the line.
    #[error("malformed SDP at line {line_no}: {line:?}: {reason}")]
    Malformed { line_no: usize, line: String, reason: &'static str },
    /// No codec in common → `488 Not Acceptable Here` with a Warning header.
    #[error("no common codec (offered: {offered})")]
    NoCommonCodec { offered: String },
    /// The offer has no audio stream we can use → 488.
    #[error("no usable audio stream in the offer")]
    NoAudio,
}

impl SdpError {
    /// The SIP status code to answer with.
    pub fn sip_status(&self) -> u16 {
        match self {
            SdpError::Malformed { .. } => 400,
            SdpError::NoCommonCodec { .. } | SdpError::NoAudio => 488,
        }
    }
    /// Value for a `Warning:` header (RFC 3261 §20.43), or the reason phrase
    /// for 400.
    pub fn warning(&self, host: &str) -> String {
        match self {
            SdpError::Malformed { .. } => format!("399 {host} \"{self}\""),
            SdpError::NoCommonCodec { .. } => format!("305 {host} \"Incompatible media format: no common codec\""),
            SdpError::NoAudio => format!("304 {host} \"Media type not available\""),
        }
    }
}

/// Media direction attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
    /// The direction an answer uses for this offered direction (RFC 3264 §6.1).
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }
    /// True for hold (the offerer will not receive media).
    pub fn is_hold(self) -> bool {
        matches!(self, Direction::SendOnly | Direction::Inactive)
    }
}

/// `a=rtpmap:<pt> <name>/<rate>[/<channels>]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub pt: u8,
    pub name: String,
    pub rate: u32,
    pub channels: Option<u8>,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub kind: String,
    pub port: u16,
    pub proto: String,
    /// Payload types in offer order (non-numeric formats are kept as raw text in `other`).
    pub formats: Vec<u8>,
    pub connection: Option<IpAddr>,
    pub rtpmaps: Vec<RtpMap>,
    pub fmtps: Vec<(u8, String)>,
    pub ptime: Option<u32>,
    /// Explicit direction attribute, if present.
    pub direction: Option<Direction>,
    /// `a=rtcp:<port> [IN IP4 <addr>]`
    pub rtcp: Option<(u16, Option<IpAddr>)>,
    /// Other lines of this section, verbatim (without the trailing CRLF).
    pub other: Vec<String>,
}

/// A session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// `o=` fields: username, session id, version, address.
    pub origin_user: String,
    pub session_id: u64,
    pub session_version: u64,
    pub origin_addr: IpAddr,
    pub session_name: String,
    pub connection: Option<IpAddr>,
    /// Session-level direction attribute, if present.
    pub direction: Option<Direction>,
    /// Other session-level lines verbatim (t=, b=, a=…).
    pub other: Vec<String>,
    pub media: Vec<Media>,
}

fn malformed(line_no: usize, line: &str, reason: &'static str) -> SdpError {
    SdpError::Malformed { line_no, line: line.chars().take(120).collect(), reason }
}

fn parse_addr(nettype: &str, addrtype: &str, addr: &str) -> Option<IpAddr> {
    if nettype != "IN" {
        return None;
    }
    // strip a multicast TTL suffix (`/127`), which we do not support otherwise
    let addr = addr.split('/').next()?;
    match addrtype {
        "IP4" => addr.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
        "IP6" => addr.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6),
        _ => None,
    }
}

fn addr_type(a: &IpAddr) -> &'static str {
    if a.is_ipv4() {
        "IP4"
    } else {
        "IP6"
    }
}

fn parse_direction(attr: &str) -> Option<Direction> {
    Some(match attr {
        "sendrecv" => Direction::SendRecv,
        "sendonly" => Direction::SendOnly,
        "recvonly" => Direction::RecvOnly,
        "inactive" => Direction::Inactive,
        _ => return None,
    })
}

impl SessionDescription {
    /// Parse SDP text (CRLF or LF line ends).
    pub fn parse(text: &str) -> Result<Self, SdpError> {
        let mut sd = SessionDescription {
            origin_user: String::new(),
            session_id: 0,
            session_version: 0,
            origin_addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            session_name: String::new(),
            connection: None,
            direction: None,
            other: Vec::new(),
            media: Vec::new(),
        };
        let (mut seen_v, mut seen_o) = (false, false);
        for (i, raw) in text.split('\n').enumerate() {
            let line_no = i + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.is_empty() {
                continue;
            }
            let bytes = line.as_bytes();
            if bytes.len() < 2 || bytes[1] != b'=' || !bytes[0].is_ascii_lowercase() {
                return Err(malformed(line_no, line, "expected <type>=<value>"));
            }
            let (ty, val) = (bytes[0], &line[2..]);
            if !seen_v {
                if ty != b'v' || val != "0" {
                    return Err(malformed(line_no, line, "SDP must start with v=0"));
                }
                seen_v = true;
                continue;
            }
            match ty {
                b'o' => {
                    let f: Vec<&str> = val.split(' ').collect();
                    if f.len() != 6 {
                        return Err(malformed(line_no, line, "o= needs 6 fields"));
                    }
                    sd.origin_user = f[0].to_string();
                    sd.session_id = f[1].parse().map_err(|_| malformed(line_no, line, "bad session id"))?;
                    sd.session_version = f[2].parse().map_err(|_| malformed(line_no, line, "bad session version"))?;
                    sd.origin_addr = parse_addr(f[3], f[4], f[5])
                        .or_else(|| if f[3] == "IN" { Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)) } else { None })
                        .ok_or_else(|| malformed(line_no, line, "bad o= address"))?;
                    seen_o = true;
                }
                b's' => sd.session_name = val.to_string(),
                b'c' => {
                    let f: Vec<&str> = val.split(' ').collect();
                    if f.len() != 3 {
                        return Err(malformed(line_no, line, "c= needs 3 fields"));
                    }
                    let a = parse_addr(f[0], f[1], f[2]).ok_or_else(|| malformed(line_no, line, "bad c= address"))?;
                    match sd.media.last_mut() {
                        Some(m) => m.connection = Some(a),
                        None => sd.connection = Some(a),
                    }
                }
                b'm' => {
                    let f: Vec<&str> = val.split(' ').collect();
                    if f.len() < 3 {
                        return Err(malformed(line_no, line, "m= needs media, port, proto"));
                    }
                    let port_s = f[1].split('/').next().unwrap_or("");
                    let port: u16 = port_s.parse().map_err(|_| malformed(line_no, line, "bad m= port"))?;
                    let mut formats = Vec::new();
                    let mut other = Vec::new();
                    let rtp = f[2].contains("RTP");
                    for fmt in &f[3..] {
                        if fmt.is_empty() {
                            continue;
                        }
                        match fmt.parse::<u8>() {
                            Ok(pt) if pt < 128 => formats.push(pt),
                            _ if rtp => return Err(malformed(line_no, line, "bad RTP payload type")),
                            _ => other.push(format!("x-fmt:{fmt}")),
                        }
                    }
                    sd.media.push(Media {
                        kind: f[0].to_string(),
                        port,
                        proto: f[2].to_string(),
                        formats,
                        connection: None,
                        rtpmaps: Vec::new(),
                        fmtps: Vec::new(),
                        ptime: None,
                        direction: None,
                        rtcp: None,
                        other,
                    });
                }
                b'a' => {
                    let (name, value) = match val.find(':') {
                        Some(p) => (&val[..p], Some(&val[p + 1..])),
                        None => (val, None),
                    };
                    if let Some(d) = parse_direction(name) {
                        match sd.media.last_mut() {
                            Some(m) => m.direction = Some(d),
                            None => sd.direction = Some(d),
                        }
                        continue;
                    }
                    let Some(m) = sd.media.last_mut() else {
                        sd.other.push(line.to_string());
                        continue;
                    };
                    match (name, value) {
                        ("rtpmap", Some(v)) => {
                            let (pt, enc) = v.split_once(' ').ok_or_else(|| malformed(line_no, line, "bad rtpmap"))?;
                            let pt: u8 = pt.parse().ok().filter(|p| *p < 128).ok_or_else(|| malformed(line_no, line, "bad rtpmap payload type"))?;
                            let mut it = enc.trim().split('/');
                            let name = it.next().unwrap_or("").to_string();
                            let rate: u32 = it.next().and_then(|r| r.parse().ok()).ok_or_else(|| malformed(line_no, line, "bad rtpmap clock rate"))?;
                            let channels = match it.next() {
                                Some(c) => Some(c.parse::<u8>().map_err(|_| malformed(line_no, line, "bad rtpmap channels"))?),
                                None => None,
                            };
                            if name.is_empty() {
                                return Err(malformed(line_no, line, "bad rtpmap encoding name"));
                            }
                            m.rtpmaps.push(RtpMap { pt, name, rate, channels });
                        }
                        ("fmtp", Some(v)) => {
                            let (pt, params) = v.split_once(' ').unwrap_or((v, ""));
                            let pt: u8 = pt.parse().map_err(|_| malformed(line_no, line, "bad fmtp payload type"))?;
                            m.fmtps.push((pt, params.to_string()));
                        }
                        ("ptime", Some(v)) => {
                            m.ptime = Some(v.trim().parse().map_err(|_| malformed(line_no, line, "bad ptime"))?);
                        }
                        ("rtcp", Some(v)) => {
                            let f: Vec<&str> = v.split(' ').collect();
                            let port: u16 = f[0].parse().map_err(|_| malformed(line_no, line, "bad rtcp port"))?;
                            let addr = if f.len() >= 4 {
                                Some(parse_addr(f[1], f[2], f[3]).ok_or_else(|| malformed(line_no, line, "bad rtcp address"))?)
                            } else {
                                None
                            };
                            m.rtcp = Some((port, addr));
                        }
                        _ => m.other.push(line.to_string()),
                    }
                }
                b'v' => return Err(malformed(line_no, line, "duplicate v=")),
                _ => match sd.media.last_mut() {
                    Some(m) => m.other.push(line.to_string()),
                    None => sd.other.push(line.to_string()),
                },
            }
        }
        if !seen_v {
            return Err(malformed(1, "", "empty SDP"));
        }
        if !seen_o {
            return Err(malformed(1, "", "missing o= line"));
        }
        for (i, m) in sd.media.iter().enumerate() {
            if m.port != 0 && m.connection.is_none() && sd.connection.is_none() {
                return Err(SdpError::Malformed {
                    line_no: 0,
                    line: format!("m={} (stream {})", m.kind, i + 1),
                    reason: "no c= line for this stream",
                });
            }
        }
        Ok(sd)
    }

    /// Serialise (CRLF line ends).
    pub fn build(&self) -> String {
        let mut s = String::with_capacity(256);
        let _ = write!(s, "v=0\r\n");
        let _ = write!(
            s,
            "o={} {} {} IN {} {}\r\n",
            if self.origin_user.is_empty() { "-" } else { &self.origin_user },
            self.session_id,
            self.session_version,
            addr_type(&self.origin_addr),
            self.origin_addr
        );
        let _ = write!(s, "s={}\r\n", if self.session_name.is_empty() { "-" } else { &self.session_name });
        if let Some(c) = self.connection {
            let _ = write!(s, "c=IN {} {}\r\n", addr_type(&c), c);
        }
        let mut has_t = false;
        for o in &self.other {
            if o.starts_with("t=") {
                has_t = true;
            }
        }
        if !has_t {
            s.push_str("t=0 0\r\n");
        }
        for o in &self.other {
            let _ = write!(s, "{o}\r\n");
        }
        if let Some(d) = self.direction {
            let _ = write!(s, "a={}\r\n", d.as_str());
        }
        for m in &self.media {
            let _ = write!(s, "m={} {} {}", m.kind, m.port, m.proto);
            for f in &m.formats {
                let _ = write!(s, " {f}");
            }
            for o in &m.other {
                if let Some(f) = o.strip_prefix("x-fmt:") {
                    let _ = write!(s, " {f}");
                }
            }
            s.push_str("\r\n");
            if let Some(c) = m.connection {
                let _ = write!(s, "c=IN {} {}\r\n", addr_type(&c), c);
            }
            for r in &m.rtpmaps {
                let _ = write!(s, "a=rtpmap:{} {}/{}", r.pt, r.name, r.rate);
                if let Some(c) = r.channels {
                    let _ = write!(s, "/{c}");
                }
                s.push_str("\r\n");
            }
            for (pt, p) in &m.fmtps {
                let _ = write!(s, "a=fmtp:{pt} {p}\r\n");
            }
            if let Some(p) = m.ptime {
                let _ = write!(s, "a=ptime:{p}\r\n");
            }
            if let Some((port, addr)) = m.rtcp {
                match addr {
                    Some(a) => {
                        let _ = write!(s, "a=rtcp:{port} IN {} {a}\r\n", addr_type(&a));
                    }
                    None => {
                        let _ = write!(s, "a=rtcp:{port}\r\n");
                    }
                }
            }
            if let Some(d) = m.direction {
                let _ = write!(s, "a={}\r\n", d.as_str());
            }
            for o in &m.other {
                if !o.starts_with("x-fmt:") {
                    let _ = write!(s, "{o}\r\n");
                }
            }
        }
        s
    }

    /// Index of the first usable audio stream (RTP/AVP, port ≠ 0).
    pub fn audio_index(&self) -> Option<usize> {
        self.media.iter().position(|m| m.kind == "audio" && m.port != 0 && m.proto.starts_with("RTP/"))
    }

    /// Connection address of stream `i` (media level wins over session level).
    pub fn stream_addr(&self, i: usize) -> Option<IpAddr> {
        let m = self.media.get(i)?;
        m.connection.or(self.connection)
    }

    /// Effective direction of stream `i` (media attr, else session attr, else sendrecv;
    /// `c=0.0.0.0` counts as hold, RFC 2543 style).
    pub fn stream_direction(&self, i: usize) -> Direction {
        let d = self.media.get(i).and_then(|m| m.direction).or(self.direction).unwrap_or_default();
        if self.stream_addr(i).is_some_and(|a| a.is_unspecified()) && d == Direction::SendRecv {
            Direction::SendOnly
        } else {
            d
        }
    }

    /// Where the peer wants its RTP for stream `i`: `None` on hold with
    /// `c=0.0.0.0`, port 0, or no address.
    pub fn rtp_target(&self, i: usize) -> Option<SocketAddr> {
        let a = self.stream_addr(i)?;
        let m = self.media.get(i)?;
        if a.is_unspecified() || m.port == 0 {
            return None;
        }
        Some(SocketAddr::new(a, m.port))
    }

    /// Where the peer wants its RTCP for stream `i` (`a=rtcp`, else port+1).
    pub fn rtcp_target(&self, i: usize) -> Option<SocketAddr> {
        let rtp = self.rtp_target(i)?;
        let m = self.media.get(i)?;
        match m.rtcp {
            Some((p, a)) => Some(SocketAddr::new(a.unwrap_or(rtp.ip()), p)),
            None => Some(SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1))),
        }
    }

    /// Rewrite every address of stream `i` (and the session/origin) to the
    /// relay's `addr:port` (RTCP on port+1). A hold address `0.0.0.0` is kept,
    /// so hold passes through.
    pub fn rewrite_for_relay(&mut self, i: usize, addr: IpAddr, port: u16) {
        let hold_addr = self.stream_addr(i).is_some_and(|a| a.is_unspecified());
        let new = if hold_addr { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { addr };
        self.origin_addr = addr;
        self.connection = Some(new);
        if let Some(m) = self.media.get_mut(i) {
            m.connection = None;
            m.port = port;
            if m.rtcp.is_some() {
                m.rtcp = Some((port.wrapping_add(1), None));
            }
        }
    }
}

/// A codec we are willing to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    pub name: String,
    pub rate: u32,
    /// Static payload type, if any (PCMU 0, PCMA 8).
    pub static_pt: Option<u8>,
}

impl Codec {
    /// `name/rate`, static payload type looked up for PCMU/PCMA.
    pub fn new(name: &str, rate: u32) -> Self {
        let static_pt = match (name.to_ascii_uppercase().as_str(), rate) {
            ("PCMU", 8000) => Some(0),
            ("PCMA", 8000) => Some(8),
            ("G722", 8000) => Some(9),
            _ => None,
        };
        Codec { name: name.to_string(), rate, static_pt }
    }
    /// True for telephone-event (RFC 4733), which is not an audio codec.
    pub fn is_dtmf(&self) -> bool {
        self.name.eq_ignore_ascii_case("telephone-event")
    }
}

/// The default codec list: PCMU, PCMA, telephone-event.
pub fn default_codecs() -> Vec<Codec> {
    vec![Codec::new("PCMU", 8000), Codec::new("PCMA", 8000), Codec::new("telephone-event", 8000)]
}

/// A payload type chosen for the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub pt: u8,
    pub codec: Codec,
}

/// Result of answering an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The answer SDP (addresses rewritten to the relay).
    pub answer: SessionDescription,
    /// Chosen payload types in the offerer's order; the first is the audio codec.
    pub chosen: Vec<Chosen>,
    /// The offerer's RTP/RTCP destinations (`None` on hold/0.0.0.0).
    pub peer_rtp: Option<SocketAddr>,
    pub peer_rtcp: Option<SocketAddr>,
    /// The offered direction.
    pub offered_direction: Direction,
    /// The offered ptime.
    pub ptime: Option<u32>,
}

impl Negotiated {
    /// The first non-DTMF codec (the call's audio codec).
    pub fn audio(&self) -> Option<&Chosen> {
        self.chosen.iter().find(|c| !c.codec.is_dtmf())
    }
}

fn offered_codec(m: &Media, pt: u8) -> Option<(String, u32)> {
    if let Some(r) = m.rtpmaps.iter().find(|r| r.pt == pt) {
        return Some((r.name.clone(), r.rate));
    }
    match pt {
        0 => Some(("PCMU".into(), 8000)),
        8 => Some(("PCMA".into(), 8000)),
        9 => Some(("G722".into(), 8000)),
        _ => None,
    }
}

/// Intersect the offered payload types of `m` with `ours` (case-insensitive
/// name and clock rate). Offer order is kept.
pub fn intersect(m: &Media, ours: &[Codec]) -> Vec<Chosen> {
    let mut out = Vec::new();
    for &pt in &m.formats {
        let Some((name, rate)) = offered_codec(m, pt) else { continue };
        if let Some(c) = ours.iter().find(|c| c.name.eq_ignore_ascii_case(&name) && c.rate == rate) {
            if !out.iter().any(|x: &Chosen| x.codec == *c) {
                out.push(Chosen { pt, codec: c.clone() });
            }
        }
    }
    out
}

/// Answer an offer (RFC 3264 §6): pick the audio stream, intersect codecs,
/// rewrite to the relay's `addr:port`, mirror the direction (hold passes
/// through). Other streams are rejected with port 0.
pub fn answer(offer: &SessionDescription, ours: &[Codec], relay: IpAddr, port: u16, session_id: u64) -> Result<Negotiated, SdpError> {
    let i = offer.audio_index().ok_or(SdpError::NoAudio)?;
    let om = &offer.media[i];
    let chosen = intersect(om, ours);
    if !chosen.iter().any(|c| !c.codec.is_dtmf()) {
        let offered: Vec<String> = om
            .formats
            .iter()
            .map(|pt| offered_codec(om, *pt).map(|(n, r)| format!("{pt} {n}/{r}")).unwrap_or_else(|| pt.to_string()))
            .collect();
        return Err(SdpError::NoCommonCodec { offered: offered.join(", ") });
    }
    let dir = offer.stream_direction(i);
    let hold_addr = offer.stream_addr(i).is_some_and(|a| a.is_unspecified());
    let mut media = Vec::with_capacity(offer.media.len());
    for (j, m) in offer.media.iter().enumerate() {
        if j == i {
            media.push(audio_media(&chosen, om, port, dir.answer(), om.rtcp.is_some()));
        } else {
            media.push(Media {
                kind: m.kind.clone(),
                port: 0,
                proto: m.proto.clone(),
                formats: m.formats.iter().take(1).copied().collect(),
                connection: None,
                rtpmaps: Vec::new(),
                fmtps: Vec::new(),
                ptime: None,
                direction: None,
                rtcp: None,
                other: m.other.iter().filter(|o| o.starts_with("x-fmt:")).take(1).cloned().collect(),
            });
        }
    }
    let _ = hold_addr; // answer always carries our address; the hold is in the direction
    let answer = SessionDescription {
        origin_user: "cc-engine".into(),
        session_id,
        session_version: session_id,
        origin_addr: relay,
        session_name: "cc-engine".into(),
        connection: Some(relay),
        direction: None,
        other: vec!["t=0 0".into()],
        media,
    };
    Ok(Negotiated {
        answer,
        chosen,
        peer_rtp: offer.rtp_target(i),
        peer_rtcp: offer.rtcp_target(i),
        offered_direction: dir,
        ptime: om.ptime,
    })
}

fn audio_media(chosen: &[Chosen], from: &Media, port: u16, dir: Direction, rtcp_attr: bool) -> Media {
    Media {
        kind: "audio".into(),
        port,
        proto: "RTP/AVP".into(),
        formats: chosen.iter().map(|c| c.pt).collect(),
        connection: None,
        rtpmaps: chosen
            .iter()
            .map(|c| RtpMap { pt: c.pt, name: c.codec.name.clone(), rate: c.codec.rate, channels: None })
            .collect(),
        fmtps: from.fmtps.iter().filter(|(pt, _)| chosen.iter().any(|c| c.pt == *pt)).cloned().collect(),
        ptime: Some(from.ptime.unwrap_or(20)),
        direction: Some(dir),
        rtcp: if rtcp_attr { Some((port.wrapping_add(1), None)) } else { None },
        other: Vec::new(),
    }
}

/// Build an offer from the relay's `addr:port` with `codecs` (e.g. what the
/// customer leg agreed, for the agent INVITE). Dynamic payload types are
/// taken from `chosen` (so DTMF keeps the customer's number).
pub fn offer(chosen: &[Chosen], relay: IpAddr, port: u16, dir: Direction, ptime: u32, session_id: u64) -> SessionDescription {
    let mut fmtps = Vec::new();
    for c in chosen {
        if c.codec.is_dtmf() {
            fmtps.push((c.pt, "0-16".to_string()));
        }
    }
    let mut m = audio_media(chosen, &Media { kind: String::new(), port: 0, proto: String::new(), formats: vec![], connection: None, rtpmaps: vec![], fmtps, ptime: Some(ptime), direction: None, rtcp: None, other: vec![] }, port, dir, true);
    m.fmtps = m.fmtps.clone();
    SessionDescription {
        origin_user: "cc-engine".into(),
        session_id,
        session_version: session_id,
        origin_addr: relay,
        session_name: "cc-engine".into(),
        connection: Some(relay),
        direction: None,
        other: vec!["t=0 0".into()],
        media: vec![m],
    }
}

/// Default `Chosen` list from a codec list, assigning 101 to telephone-event.
pub fn chosen_from(codecs: &[Codec]) -> Vec<Chosen> {
    let mut next = 101u8;
    codecs
        .iter()
        .map(|c| {
            let pt = c.static_pt.unwrap_or_else(|| {
                let p = next;
                next = next.saturating_add(1);
                p
            });
            Chosen { pt, codec: c.clone() }
        })
        .collect()
}
