//! Datagram scanning and validation.
//!
//! `scan` is a lenient, allocation-light, zero-copy header scanner. It runs on
//! every datagram before rsip: it finds the start line, the headers and the
//! body (cut to Content-Length), which is enough to address a response and to
//! route the message to its transaction or shard even when rsip would reject
//! the message (a bad Content-Length must still get its 400).
//! `check_request` then applies RFC 3261 §8.2 / §18.3 rules in RFC order and
//! says which error response, if any, the request deserves.
//!
//! Nothing here indexes or slices input with unchecked offsets: every
//! split goes through `split_once`/`get`, so hostile bytes cannot panic.

use super::view::View;

/// RFC 3261 §7.3.3 compact header names → full names (lower case).
const COMPACT: &[(&str, &str)] = &[
    ("v", "via"),
    ("f", "from"),
    ("t", "to"),
    ("i", "call-id"),
    ("l", "content-length"),
    ("c", "content-type"),
    ("e", "content-encoding"),
    ("k", "supported"),
    ("m", "contact"),
    ("s", "subject"),
];

/// Why a datagram was dropped without an answer. Indexes `Counters::drops`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum DropReason {
    Empty = 0,
    NotUtf8,
    BadStartLine,
    NotSip,
    /// A request too broken to answer: no usable Via to send a response to.
    Unaddressable,
    /// An invalid ACK: ACK never gets a response.
    BadAck,
    /// A response with an unusable Via/CSeq or a SIP version we don't speak.
    BadResponse,
    /// A response that matches none of our client transactions.
    StrayResponse,
    /// An ACK that matches no server transaction and no sent 2xx.
    UnmatchedAck,
    /// Oversized and unaddressable.
    Oversize,
    /// rsip rejected a message our scanner accepted and no answer is possible.
    ParseFailed,
}

impl DropReason {
    pub const COUNT: usize = 11;
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Empty,
        DropReason::NotUtf8,
        DropReason::BadStartLine,
        DropReason::NotSip,
        DropReason::Unaddressable,
        DropReason::BadAck,
        DropReason::BadResponse,
        DropReason::StrayResponse,
        DropReason::UnmatchedAck,
        DropReason::Oversize,
        DropReason::ParseFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Empty => "empty",
            DropReason::NotUtf8 => "not_utf8",
            DropReason::BadStartLine => "bad_start_line",
            DropReason::NotSip => "not_sip",
            DropReason::Unaddressable => "unaddressable",
            DropReason::BadAck => "bad_ack",
            DropReason::BadResponse => "bad_response",
            DropReason::StrayResponse => "stray_response",
            DropReason::UnmatchedAck => "unmatched_ack",
            DropReason::Oversize => "oversize",
            DropReason::ParseFailed => "parse_failed",
        }
    }
}

/// What `scan` could not make sense of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("empty datagram")]
    Empty,
    /// RFC 5626 §3.5.1 CRLF keep-alive: not an error, no answer.
    #[error("keep-alive")]
    KeepAlive,
    #[error("header section is not UTF-8")]
    NotUtf8,
    #[error("unparsable start line")]
    BadStartLine,
    #[error("not a SIP message")]
    NotSip,
}

impl ScanError {
    /// `None` for keep-alives, which are counted but are not drops.
    pub fn drop_reason(self) -> Option<DropReason> {
        match self {
            ScanError::Empty => Some(DropReason::Empty),
            ScanError::KeepAlive => None,
            ScanError::NotUtf8 => Some(DropReason::NotUtf8),
            ScanError::BadStartLine => Some(DropReason::BadStartLine),
            ScanError::NotSip => Some(DropReason::NotSip),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'a> {
    Request {
        method: &'a str,
        uri: &'a str,
        version: &'a str,
    },
    Response {
        version: &'a str,
        code: u16,
        reason: &'a str,
    },
}

/// One parsed Via value (a header line may hold several, comma-separated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// `SIP/2.0/UDP`
    pub protocol: &'a str,
    /// `host[:port]` as written.
    pub sent_by: &'a str,
    pub host: &'a str,
    pub port: Option<u16>,
    pub branch: Option<&'a str>,
    /// `rport` present (with or without a value), RFC 3581.
    pub rport: bool,
    /// `received` parameter, when present.
    pub received: Option<&'a str>,
    /// Everything after the first `;`, without it.
    pub params: &'a str,
}

/// Content-Length as found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentLength {
    Absent,
    Invalid,
    /// Declared length exceeds the bytes we got.
    Truncated(usize),
    Ok(usize),
}

/// A scanned datagram: borrowed views into the input.
#[derive(Debug, Clone)]
pub struct Scanned<'a> {
    pub start: StartLine<'a>,
    headers: Vec<(&'a str, &'a str)>,
    /// The body, cut to Content-Length when that is smaller (§18.3).
    pub body: &'a [u8],
    /// Length of the message proper (headers + body as cut).
    pub msg_len: usize,
    pub content_length: ContentLength,
    /// A header line without a colon or with an invalid name was skipped.
    pub malformed_header: bool,
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

/// Position just past the blank line ending the headers, and the header
/// section length; accepts bare LF line ends, as RFC 3261 §7.5 tolerates.
fn split_head(data: &[u8]) -> (usize, usize) {
    let mut i = 0;
    while let Some(rest) = data.get(i..) {
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            break;
        };
        let line_end = i + nl;
        let next = line_end + 1;
        let after = data.get(next..).unwrap_or(&[]);
        if after.starts_with(b"\r\n") {
            return (line_end, next + 2);
        }
        if after.starts_with(b"\n") {
            return (line_end, next + 1);
        }
        i = next;
    }
    // No blank line: the whole datagram is header section, no body.
    (data.len(), data.len())
}

fn parse_start_line(line: &str) -> Result<StartLine<'_>, ScanError> {
    let line = line.trim_end_matches('\r');
    if line.starts_with("SIP/") {
        let (version, rest) = line.split_once(' ').ok_or(ScanError::BadStartLine)?;
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ScanError::BadStartLine);
        }
        let code: u16 = code.parse().map_err(|_| ScanError::BadStartLine)?;
        if !(100..=699).contains(&code) {
            return Err(ScanError::BadStartLine);
        }
        return Ok(StartLine::Response {
            version,
            code,
            reason,
        });
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        if line.starts_with("HTTP/") || line.contains(" HTTP/") {
            return Err(ScanError::NotSip);
        }
        return Err(ScanError::BadStartLine);
    };
    if version.starts_with("HTTP/") || method.starts_with("HTTP/") {
        return Err(ScanError::NotSip);
    }
    if !version.starts_with("SIP/") {
        return Err(ScanError::NotSip);
    }
    if !is_token(method) || uri.is_empty() || !uri.contains(':') {
        return Err(ScanError::BadStartLine);
    }
    Ok(StartLine::Request {
        method,
        uri,
        version,
    })
}

/// Where `part`, a subslice of `base`, starts in it.
pub(crate) fn offset_in(base: &str, part: &str) -> usize {
    (part.as_ptr() as usize).saturating_sub(base.as_ptr() as usize)
}

/// Scan a datagram. Never panics, whatever the bytes.
pub fn scan(data: &[u8]) -> Result<Scanned<'_>, ScanError> {
    if data.is_empty() {
        return Err(ScanError::Empty);
    }
    if data.iter().all(|&b| b == b'\r' || b == b'\n') {
        return Err(ScanError::KeepAlive);
    }
    let (head_len, body_start) = split_head(data);
    let head = data.get(..head_len).unwrap_or(&[]);
    let head = std::str::from_utf8(head).map_err(|_| ScanError::NotUtf8)?;
    if head.contains('\0') {
        return Err(ScanError::NotUtf8);
    }
    // RFC 3261 §7.5: ignore CRLFs before the start line.
    let head = head.trim_start_matches(['\r', '\n']);
    let (first, rest) = head.split_once('\n').unwrap_or((head, ""));
    let start = parse_start_line(first)?;

    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(16);
    let mut malformed_header = false;
    // Byte offset in `rest` of the current header's value, so a folded
    // continuation (§7.3.1) can widen the value to cover it: the value then
    // holds the line break, which every accessor reads as whitespace.
    let mut value_at: Option<usize> = None;
    for raw in rest.split('\n') {
        let line = raw.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match (value_at, headers.last_mut()) {
                (Some(at), Some((_, value))) if !line.trim().is_empty() => {
                    let end = offset_in(rest, line) + line.trim_end().len();
                    *value = rest.get(at..end).map_or(*value, str::trim);
                }
                (Some(_), Some(_)) => {}
                _ => malformed_header = true,
            }
            continue;
        }
        match line.split_once(':') {
            Some((name, value)) if is_token(name.trim_end()) => {
                let value = value.trim();
                value_at = Some(offset_in(rest, value));
                headers.push((name.trim_end(), value));
            }
            _ => {
                value_at = None;
                malformed_header = true;
            }
        }
    }

    let body_all = data.get(body_start..).unwrap_or(&[]);
    let mut msg = Scanned {
        start,
        headers,
        body: body_all,
        msg_len: data.len(),
        content_length: ContentLength::Absent,
        malformed_header,
    };
    if let Some(v) = msg.header("content-length") {
        msg.content_length = match v.parse::<usize>() {
            Err(_) => ContentLength::Invalid,
            Ok(n) if n > body_all.len() => ContentLength::Truncated(n),
            Ok(n) => {
                msg.body = body_all.get(..n).unwrap_or(&[]);
                msg.msg_len = body_start + n;
                ContentLength::Ok(n)
            }
        };
    }
    Ok(msg)
}

pub(crate) fn full_name(name: &str) -> &str {
    if name.len() == 1 {
        for (c, full) in COMPACT {
            if name.eq_ignore_ascii_case(c) {
                return full;
            }
        }
    }
    name
}

/// Value of `name` in a `;`-separated parameter list (case-insensitive name).
/// A parameter without `=` yields `Some("")`.
pub fn param<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    params.split(';').find_map(|p| {
        let (n, v) = p.split_once('=').unwrap_or((p, ""));
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Header parameters of a From/To/Contact value: after the `>` of a
/// name-addr, or after the first `;` of an addr-spec.
pub fn addr_params(value: &str) -> &str {
    match value.rsplit_once('>') {
        Some((_, tail)) => tail,
        None => value.split_once(';').map(|(_, p)| p).unwrap_or(""),
    }
}

pub fn parse_via(value: &str) -> Option<Via<'_>> {
    let value = value.trim();
    let (sent, params) = value.split_once(';').unwrap_or((value, ""));
    let sent = sent.trim();
    let (protocol, sent_by) = sent.rsplit_once([' ', '\t'])?;
    let protocol = protocol.trim();
    let sip20 = protocol
        .get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("SIP/2.0/"));
    if !sip20 || sent_by.is_empty() {
        return None;
    }
    let (host, port) = if let Some(v6) = sent_by.strip_prefix('[') {
        let (addr, tail) = v6.split_once(']')?;
        let port = match tail.strip_prefix(':') {
            Some(p) => Some(p.parse::<u16>().ok()?),
            None if tail.is_empty() => None,
            None => return None,
        };
        (addr, port)
    } else {
        match sent_by.split_once(':') {
            Some((h, p)) => (h, Some(p.parse::<u16>().ok()?)),
            None => (sent_by, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some(Via {
        protocol,
        sent_by,
        host,
        port,
        branch: param(params, "branch").filter(|b| !b.is_empty()),
        rport: param(params, "rport").is_some(),
        received: param(params, "received").filter(|r| !r.is_empty()),
        params,
    })
}

impl<'a> Scanned<'a> {
    /// Header lines in order: (name as written, value trimmed).
    pub fn header_lines(&self) -> &[(&'a str, &'a str)] {
        &self.headers
    }
}

/// An error response the request deserves, chosen in RFC 3261 §8.2 order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub status: u16,
    pub reason: &'static str,
    /// Extra header (name, value), e.g. `Unsupported` for a 420.
    pub header: Option<(&'static str, String)>,
}

impl Reject {
    fn new(status: u16, reason: &'static str) -> Self {
        Reject {
            status,
            reason,
            header: None,
        }
    }
}

/// Methods the endpoint handles; everything else gets 405.
pub const ALLOWED_METHODS: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE";

pub fn is_allowed_method(m: &str) -> bool {
    matches!(
        m,
        "INVITE" | "ACK" | "CANCEL" | "BYE" | "OPTIONS" | "REGISTER" | "INFO" | "UPDATE"
    )
}

/// Checks a scanned request. `oversize` is whether the datagram exceeded the
/// configured maximum. `Ok(())` means the TU (or the endpoint) may process it.
pub fn check_request(msg: &Scanned<'_>, oversize: bool) -> Result<(), Reject> {
    let StartLine::Request {
        method, version, ..
    } = msg.start
    else {
        return Ok(());
    };
    if oversize {
        return Err(Reject::new(513, "Message Too Large"));
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err(Reject::new(505, "Version Not Supported"));
    }
    if msg.malformed_header {
        return Err(Reject::new(400, "Malformed Header"));
    }
    for name in ["via", "from", "to", "call-id", "cseq"] {
        if msg.header(name).is_none_or(str::is_empty) {
            return Err(Reject::new(400, "Missing Mandatory Header"));
        }
    }
    // RFC 4475 §3.1.2.11 (mcl01): a second copy of a singleton is an error.
    for name in [
        "from",
        "to",
        "call-id",
        "cseq",
        "content-length",
        "max-forwards",
    ] {
        if msg.headers_named(name).nth(1).is_some() {
            return Err(Reject::new(400, "Duplicate Header"));
        }
    }
    if msg.top_via().is_none() {
        return Err(Reject::new(400, "Bad Via"));
    }
    match msg.cseq() {
        Some(Ok((_, m))) if m == method => {}
        Some(Ok(_)) => return Err(Reject::new(400, "CSeq Method Mismatch")),
        _ => return Err(Reject::new(400, "Bad CSeq")),
    }
    match msg.content_length {
        ContentLength::Invalid => return Err(Reject::new(400, "Bad Content-Length")),
        ContentLength::Truncated(_) => return Err(Reject::new(400, "Truncated Body")),
        ContentLength::Absent | ContentLength::Ok(_) => {}
    }
    match msg.max_forwards() {
        // RFC 4475 §3.1.2.5 (scalar02): above 255 is out of range.
        Some(Err(())) => return Err(Reject::new(400, "Bad Max-Forwards")),
        Some(Ok(n)) if n > 255 => return Err(Reject::new(400, "Bad Max-Forwards")),
        // §16.3 spirit for a UAS: OPTIONS/REGISTER may still be answered.
        Some(Ok(0)) if !matches!(method, "OPTIONS" | "REGISTER") => {
            return Err(Reject::new(483, "Too Many Hops"))
        }
        _ => {}
    }
    // §8.2.1: method inspection before header inspection.
    if !is_allowed_method(method) {
        return Err(Reject {
            status: 405,
            reason: "Method Not Allowed",
            header: Some(("Allow", ALLOWED_METHODS.to_owned())),
        });
    }
    // §8.2.2.1: we only serve SIP URIs.
    if let StartLine::Request { uri, .. } = msg.start {
        let scheme = uri.split_once(':').map_or("", |(s, _)| s);
        if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
            return Err(Reject::new(416, "Unsupported URI Scheme"));
        }
    }
    // §8.2.2.3: Require is ignored on CANCEL and ACK. We support no extension.
    if !matches!(method, "CANCEL" | "ACK") {
        let mut unsupported = String::new();
        for tag in msg.tokens("require") {
            if !unsupported.is_empty() {
                unsupported.push_str(", ");
            }
            unsupported.push_str(tag);
        }
        if !unsupported.is_empty() {
            return Err(Reject {
                status: 420,
                reason: "Bad Extension",
                header: Some(("Unsupported", unsupported)),
            });
        }
    }
    // §8.2.3: we only understand SDP bodies, unencoded.
    if !msg.body.is_empty() && matches!(method, "INVITE" | "UPDATE" | "ACK" | "BYE" | "OPTIONS") {
        let ct_ok = msg.header("content-type").is_some_and(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/sdp"))
        });
        let enc_ok = msg
            .tokens("content-encoding")
            .all(|e| e.eq_ignore_ascii_case("identity"));
        if !ct_ok || !enc_ok {
            return Err(Reject {
                status: 415,
                reason: "Unsupported Media Type",
                header: Some(("Accept", "application/sdp".to_owned())),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
