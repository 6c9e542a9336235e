//! SIP over a byte stream (TCP, TLS): bytes in, whole messages out
//! (RFC 3261 §18.3), sans-IO.
//!
//! On a stream nothing but Content-Length says where a message ends, so it
//! is mandatory here (a datagram may omit it). CRLFs between messages are
//! RFC 5626 keep-alives: a double CRLF is a ping the shell answers with a
//! single CRLF (the pong); a lone CRLF is skipped. A message that grows past
//! `max` bytes, or whose length cannot be read, is a framing error: the
//! stream cannot be resynchronised, so the shell closes the connection.
//!
//! Time is passed in: [`Framer::partial_since`] says since when a message
//! has been incomplete, so the shell can cut off a sender that trickles
//! bytes (slow-loris) without the framer owning a clock.

use std::time::Instant;

use bytes::{Bytes, BytesMut};

/// What the framer found next in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One whole SIP message (headers and body), ready for the parser.
    Message(Bytes),
    /// A CRLFCRLF keep-alive: answer with CRLF.
    Ping,
}

/// Why a stream cannot be framed any further.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("message larger than {max} bytes")]
    Oversize { max: usize },
    #[error("message without Content-Length")]
    MissingContentLength,
    #[error("unreadable or conflicting Content-Length")]
    BadContentLength,
}

impl FrameError {
    /// Label for metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            FrameError::Oversize { .. } => "oversize",
            FrameError::MissingContentLength => "missing_content_length",
            FrameError::BadContentLength => "bad_content_length",
        }
    }
}

/// One connection's receive side.
#[derive(Debug)]
pub struct Framer {
    buf: BytesMut,
    max: usize,
    /// How far the search for the end of the headers got (no rescans when
    /// headers arrive in many pieces).
    scanned: usize,
    /// Since when a started message has been waiting for its end.
    partial_since: Option<Instant>,
    /// A framing error is final: the stream is out of step.
    failed: Option<FrameError>,
}

impl Framer {
    /// `max`: the largest message (headers and body) accepted.
    pub fn new(max: usize) -> Framer {
        Framer { buf: BytesMut::new(), max, scanned: 0, partial_since: None, failed: None }
    }

    /// Appends bytes read from the stream at `now`.
    pub fn push(&mut self, data: &[u8], now: Instant) {
        if self.failed.is_some() {
            return;
        }
        self.buf.extend_from_slice(data);
        if self.partial_since.is_none() && self.started() {
            self.partial_since = Some(now);
        }
    }

    /// Since when an incomplete message has been buffered (`None`: none is,
    /// keep-alive CRLFs do not count).
    pub fn partial_since(&self) -> Option<Instant> {
        self.partial_since
    }

    /// Bytes buffered and not yet framed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn started(&self) -> bool {
        self.buf.iter().any(|b| *b != b'\r' && *b != b'\n')
    }

    /// The next frame, `Ok(None)` when more bytes are needed. After an
    /// error every call returns that error again.
    pub fn poll(&mut self, now: Instant) -> Result<Option<Frame>, FrameError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        match self.poll_inner() {
            Ok(f) => {
                if f.is_some() {
                    // What is left is the start of the next message.
                    self.partial_since = self.started().then_some(now);
                }
                Ok(f)
            }
            Err(e) => {
                self.failed = Some(e);
                self.buf.clear();
                self.partial_since = None;
                Err(e)
            }
        }
    }

    fn poll_inner(&mut self) -> Result<Option<Frame>, FrameError> {
        // Keep-alives before (or between) messages.
        while let Some(b'\r' | b'\n') = self.buf.first() {
            if self.buf.starts_with(b"\r\n\r\n") {
                let _ = self.buf.split_to(4);
                self.scanned = 0;
                return Ok(Some(Frame::Ping));
            }
            if self.buf.len() < 4 && b"\r\n\r\n".starts_with(&self.buf) {
                // Maybe the first half of a ping: wait for the rest.
                return Ok(None);
            }
            // A lone CRLF (a pong, or RFC 3261 §7.5 leading CRLF): skip it.
            let skip = if self.buf.starts_with(b"\r\n") { 2 } else { 1 };
            let _ = self.buf.split_to(skip);
            self.scanned = 0;
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        let from = self.scanned.saturating_sub(3);
        let end = match find(self.buf.get(from..).unwrap_or(&[]), b"\r\n\r\n") {
            Some(i) => from + i + 4,
            None => {
                self.scanned = self.buf.len();
                if self.buf.len() > self.max {
                    return Err(FrameError::Oversize { max: self.max });
                }
                return Ok(None);
            }
        };
        let head = self.buf.get(..end).unwrap_or(&[]);
        let body = content_length(head)?;
        let total = end.checked_add(body).ok_or(FrameError::BadContentLength)?;
        if total > self.max {
            return Err(FrameError::Oversize { max: self.max });
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        self.scanned = 0;
        Ok(Some(Frame::Message(self.buf.split_to(total).freeze())))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The Content-Length of a message head (start line, headers, blank line):
/// `Content-Length` or its compact form `l`, folded lines allowed; several
/// headers must agree.
fn content_length(head: &[u8]) -> Result<usize, FrameError> {
    let mut found: Option<usize> = None;
    let mut lines = head.split(|b| *b == b'\n').skip(1).peekable();
    while let Some(line) = lines.next() {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let name = line.get(..colon).unwrap_or(&[]).trim_ascii();
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let mut value = line.get(colon + 1..).unwrap_or(&[]).trim_ascii().to_vec();
        // Folded continuation lines start with white space.
        while let Some(next) = lines.peek() {
            if !matches!(next.first(), Some(b' ') | Some(b'\t')) {
                break;
            }
            value.extend_from_slice(next.trim_ascii());
            lines.next();
        }
        let n = std::str::from_utf8(&value)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or(FrameError::BadContentLength)?;
        if found.is_some_and(|f| f != n) {
            return Err(FrameError::BadContentLength);
        }
        found = Some(n);
    }
    found.ok_or(FrameError::MissingContentLength)
}

#[cfg(test)]
mod tests;
