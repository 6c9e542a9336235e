//! Typed reads over a scanned message, shared by the borrowed scan of a
//! datagram (`Scanned`) and the owned `Message` the TU and the registrar
//! get. Everything returned borrows the message's bytes: nothing is copied.
//!
//! Header names match case-insensitively, compact forms (§7.3.3) included.
//! A header that is a comma-separated list (Via, Contact, Route,
//! Record-Route) reads the same whether it came as one line or several
//! (§7.3.1). A folded value keeps its line break, which the accessors read
//! as whitespace.

use super::auth::{parse_authorization, AuthError, DigestResponse};
use super::message::{addr_params, full_name, is_token, param, parse_via, ContentLength, StartLine, Via};

/// Read access to one message. Implemented for `&Scanned` and `&Message`;
/// the provided methods are the typed accessors.
pub trait View<'a>: Copy {
    /// Header lines in order: (name as written, value trimmed).
    fn lines(self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a;
    fn start(self) -> StartLine<'a>;
    /// The body, cut to Content-Length.
    fn body(self) -> &'a [u8];
    fn content_length(self) -> ContentLength;

    fn is_response(self) -> bool {
        matches!(self.start(), StartLine::Response { .. })
    }

    fn method(self) -> Option<&'a str> {
        match self.start() {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    fn status(self) -> Option<u16> {
        match self.start() {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// Request-URI of a request.
    fn request_uri(self) -> Option<&'a str> {
        match self.start() {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    fn version(self) -> &'a str {
        match self.start() {
            StartLine::Request { version, .. } | StartLine::Response { version, .. } => version,
        }
    }

    /// All header lines named `name` (lower-case full name; compact forms
    /// match too).
    fn headers_named<'n>(self, name: &'n str) -> impl Iterator<Item = &'a str> + 'n
    where
        'a: 'n,
    {
        self.lines()
            .filter(move |(n, _)| full_name(n).eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    fn header(self, name: &str) -> Option<&'a str> {
        self.headers_named(name).next()
    }

    /// Items of list header `name` over all its lines, split at commas
    /// outside quotes and `<…>`.
    fn list<'n>(self, name: &'n str) -> impl Iterator<Item = &'a str> + 'n
    where
        'a: 'n,
    {
        self.headers_named(name).flat_map(ListItems::new)
    }

    /// Comma-separated option tags of all `name` headers.
    fn tokens<'n>(self, name: &'n str) -> impl Iterator<Item = &'a str> + 'n
    where
        'a: 'n,
    {
        self.headers_named(name)
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }

    /// Every Via value, top first, splitting comma-joined lines.
    fn via_values(self) -> impl Iterator<Item = &'a str> + 'a {
        self.headers_named("via")
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }

    fn top_via(self) -> Option<Via<'a>> {
        parse_via(self.via_values().next()?)
    }

    fn call_id(self) -> Option<&'a str> {
        self.header("call-id").filter(|v| !v.is_empty())
    }

    fn from(self) -> Option<&'a str> {
        self.header("from")
    }

    fn to(self) -> Option<&'a str> {
        self.header("to")
    }

    // The From header's tag, not a conversion.
    #[allow(clippy::wrong_self_convention)]
    fn from_tag(self) -> Option<&'a str> {
        param(addr_params(self.header("from")?), "tag").filter(|t| !t.is_empty())
    }

    fn to_tag(self) -> Option<&'a str> {
        param(addr_params(self.header("to")?), "tag").filter(|t| !t.is_empty())
    }

    /// `Some(Ok((seq, method)))` when well-formed, `Some(Err(()))` when
    /// present but broken.
    #[allow(clippy::result_unit_err)]
    fn cseq(self) -> Option<Result<(u32, &'a str), ()>> {
        let v = self.header("cseq")?;
        let mut it = v.split_whitespace();
        let parsed = match (it.next(), it.next(), it.next()) {
            (Some(n), Some(m), None) if is_token(m) => match n.parse::<u32>() {
                // §8.1.1.5: the sequence number must be below 2**31.
                Ok(n) if n < (1 << 31) => Ok((n, m)),
                _ => Err(()),
            },
            _ => Err(()),
        };
        Some(parsed)
    }

    /// The CSeq number, when the CSeq is well-formed.
    fn cseq_number(self) -> Option<u32> {
        self.cseq()?.ok().map(|(n, _)| n)
    }

    #[allow(clippy::result_unit_err)]
    fn max_forwards(self) -> Option<Result<u32, ()>> {
        self.header("max-forwards").map(|v| v.parse::<u32>().map_err(|_| ()))
    }

    /// The Expires header (§20.19).
    #[allow(clippy::result_unit_err)]
    fn expires(self) -> Option<Result<u32, ()>> {
        self.header("expires").map(|v| v.trim().parse::<u32>().map_err(|_| ()))
    }

    /// Every Contact item (`*` included), all lines.
    fn contacts(self) -> impl Iterator<Item = &'a str> + 'a {
        self.list("contact")
    }

    /// URI of the first Contact.
    fn contact_uri(self) -> Option<&'a str> {
        Some(uri_of(self.contacts().next()?)).filter(|u| !u.is_empty())
    }

    fn record_route(self) -> impl Iterator<Item = &'a str> + 'a {
        self.list("record-route")
    }

    fn route(self) -> impl Iterator<Item = &'a str> + 'a {
        self.list("route")
    }

    fn content_type(self) -> Option<&'a str> {
        self.header("content-type")
    }

    /// Authorization values, each a credentials string for `sip::auth`.
    fn authorizations(self) -> impl Iterator<Item = &'a str> + 'a {
        self.headers_named("authorization")
    }

    /// Authorization values parsed by `sip::auth` (digest credentials), in
    /// order; a broken one is an `Err` in its place.
    fn credentials(self) -> impl Iterator<Item = Result<DigestResponse, AuthError>> + 'a {
        self.authorizations().map(parse_authorization)
    }

    fn user_agent(self) -> Option<&'a str> {
        self.header("user-agent")
    }

    /// Enough to send a response back (§8.2.6): a request with a usable
    /// Via. ACK is never answered.
    fn addressable(self) -> bool {
        matches!(self.start(), StartLine::Request { method, .. } if method != "ACK") && self.top_via().is_some()
    }
}

/// Items of a comma-separated header value, split outside quotes (with
/// `\` escapes) and `<…>`, trimmed, empty items skipped.
#[derive(Debug, Clone)]
pub struct ListItems<'a> {
    rest: &'a str,
}

impl<'a> ListItems<'a> {
    pub fn new(value: &'a str) -> Self {
        ListItems { rest: value }
    }
}

impl<'a> Iterator for ListItems<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let (mut depth, mut quoted, mut escaped) = (0i32, false, false);
            let mut cut = None;
            for (i, c) in self.rest.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' if quoted => escaped = true,
                    '"' => quoted = !quoted,
                    '<' if !quoted => depth += 1,
                    '>' if !quoted => depth -= 1,
                    ',' if !quoted && depth <= 0 => {
                        cut = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let item = match cut {
                Some(i) => {
                    let item = self.rest.get(..i).unwrap_or("");
                    self.rest = self.rest.get(i + 1..).unwrap_or("");
                    item
                }
                None => std::mem::take(&mut self.rest),
            };
            let item = item.trim();
            if !item.is_empty() {
                return Some(item);
            }
        }
    }
}

/// The URI of a name-addr or addr-spec (`"A" <sip:a@h>;tag=x` → `sip:a@h`).
pub fn uri_of(value: &str) -> &str {
    let v = value.trim();
    if let Some((_, rest)) = v.split_once('<') {
        if let Some((uri, _)) = rest.split_once('>') {
            return uri.trim();
        }
    }
    v.split(';').next().unwrap_or("").trim()
}

/// User part of a SIP URI (`sip:alice@h` → `alice`).
pub fn user_of(uri: &str) -> &str {
    let rest = uri.split_once(':').map_or(uri, |(_, r)| r);
    match rest.split_once('@') {
        Some((u, _)) => u.split([':', ';']).next().unwrap_or(u),
        None => "",
    }
}

#[cfg(test)]
mod tests;
