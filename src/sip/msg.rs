//! A scanned message that owns its bytes: what the endpoint hands to the
//! TU (requests, ACKs, responses). It keeps the scan's positions, so the
//! typed accessors of `View` read it without scanning or copying again.

use std::fmt;

use bytes::Bytes;

use super::message::{scan, ContentLength, ScanError, Scanned, StartLine};
use super::view::View;

/// Byte range `[start, end)` in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span(u32, u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    Request { method: Span, uri: Span, version: Span },
    Response { version: Span, code: u16, reason: Span },
}

#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    data: Bytes,
    start: Start,
    headers: Vec<(Span, Span)>,
    body: Span,
    content_length: ContentLength,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Message({:?})", String::from_utf8_lossy(&self.data))
    }
}

/// The whole message as text (a non-UTF-8 body lossily), as it came.
impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.data))
    }
}

impl Message {
    /// Keeps `scanned`, the scan of `data`: the message (cut to its
    /// Content-Length) is copied once, positions are kept.
    pub fn from_scan(scanned: &Scanned<'_>, data: &[u8]) -> Message {
        let kept = Bytes::copy_from_slice(data.get(..scanned.msg_len).unwrap_or(data));
        Message::index(scanned, data, kept)
    }

    /// Scans `data` and keeps it (no copy).
    pub fn parse(data: Bytes) -> Result<Message, ScanError> {
        let scanned = scan(&data)?;
        let kept = data.slice(..scanned.msg_len.min(data.len()));
        Ok(Message::index(&scanned, &data, kept))
    }

    /// `s` is the scan of `orig`; `kept` holds the same bytes (a prefix).
    fn index(s: &Scanned<'_>, orig: &[u8], kept: Bytes) -> Message {
        let limit = kept.len();
        let span = |part: &[u8]| -> Span {
            let at = offset_in_bytes(orig, part).min(limit);
            Span(at as u32, (at + part.len()).min(limit) as u32)
        };
        let start = match s.start {
            StartLine::Request { method, uri, version } => Start::Request {
                method: span(method.as_bytes()),
                uri: span(uri.as_bytes()),
                version: span(version.as_bytes()),
            },
            StartLine::Response { version, code, reason } => Start::Response {
                version: span(version.as_bytes()),
                code,
                reason: span(reason.as_bytes()),
            },
        };
        let headers = s
            .header_lines()
            .iter()
            .map(|(n, v)| (span(n.as_bytes()), span(v.as_bytes())))
            .collect();
        Message {
            start,
            headers,
            body: span(s.body),
            content_length: s.content_length,
            data: kept,
        }
    }

    /// The message's bytes, as received (cut to its Content-Length).
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    pub fn bytes(&self) -> &Bytes {
        &self.data
    }

    fn text(&self, s: Span) -> &str {
        self.data
            .get(s.0 as usize..s.1 as usize)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }
}

/// Where `part`, a slice of `data`, starts in it. Out-of-range offsets
/// (never expected) read as the end: an empty span.
fn offset_in_bytes(data: &[u8], part: &[u8]) -> usize {
    let at = (part.as_ptr() as usize).wrapping_sub(data.as_ptr() as usize);
    if at.checked_add(part.len()).is_some_and(|end| end <= data.len()) {
        at
    } else {
        data.len()
    }
}

impl<'a> View<'a> for &'a Message {
    fn lines(self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.headers.iter().map(move |(n, v)| (self.text(*n), self.text(*v)))
    }

    fn start(self) -> StartLine<'a> {
        match self.start {
            Start::Request { method, uri, version } => StartLine::Request {
                method: self.text(method),
                uri: self.text(uri),
                version: self.text(version),
            },
            Start::Response { version, code, reason } => StartLine::Response {
                version: self.text(version),
                code,
                reason: self.text(reason),
            },
        }
    }

    fn body(self) -> &'a [u8] {
        self.data.get(self.body.0 as usize..self.body.1 as usize).unwrap_or(&[])
    }

    fn content_length(self) -> ContentLength {
        self.content_length
    }
}

impl<'a> View<'a> for &'a Scanned<'a> {
    fn lines(self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.header_lines().iter().copied()
    }

    fn start(self) -> StartLine<'a> {
        self.start
    }

    fn body(self) -> &'a [u8] {
        self.body
    }

    fn content_length(self) -> ContentLength {
        self.content_length
    }
}
