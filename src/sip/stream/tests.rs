use std::time::{Duration, Instant};

use super::*;

const INVITE: &[u8] = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: 4\r\n\r\nv=0\n";
const OPTIONS: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nl: 0\r\n\r\n";

fn all(f: &mut Framer, now: Instant) -> Vec<Frame> {
    let mut v = Vec::new();
    for _ in 0..100 {
        match f.poll(now).unwrap() {
            Some(fr) => v.push(fr),
            None => break,
        }
    }
    v
}

#[test]
fn split_across_segments() {
    let now = Instant::now();
    for cut in 1..INVITE.len() {
        let mut f = Framer::new(4096);
        f.push(&INVITE[..cut], now);
        assert_eq!(all(&mut f, now), vec![], "cut at {cut}");
        assert_eq!(f.partial_since(), Some(now));
        f.push(&INVITE[cut..], now);
        assert_eq!(all(&mut f, now), vec![Frame::Message(Bytes::from_static(INVITE))], "cut at {cut}");
        assert_eq!(f.partial_since(), None);
        assert_eq!(f.buffered(), 0);
    }
}

#[test]
fn byte_by_byte() {
    let now = Instant::now();
    let mut f = Framer::new(4096);
    let mut got = Vec::new();
    for b in INVITE.iter().chain(OPTIONS) {
        f.push(&[*b], now);
        got.extend(all(&mut f, now));
    }
    assert_eq!(got, vec![Frame::Message(Bytes::from_static(INVITE)), Frame::Message(Bytes::from_static(OPTIONS))]);
}

#[test]
fn two_messages_in_one_segment() {
    let now = Instant::now();
    let mut f = Framer::new(4096);
    let mut seg = INVITE.to_vec();
    seg.extend_from_slice(OPTIONS);
    seg.extend_from_slice(&INVITE[..10]);
    f.push(&seg, now);
    assert_eq!(all(&mut f, now), vec![Frame::Message(Bytes::from_static(INVITE)), Frame::Message(Bytes::from_static(OPTIONS))]);
    // The start of a third one is left, and its clock runs.
    let later = now + Duration::from_secs(1);
    assert_eq!(f.buffered(), 10);
    f.push(&INVITE[10..], later);
    assert_eq!(all(&mut f, later), vec![Frame::Message(Bytes::from_static(INVITE))]);
}

#[test]
fn keepalives() {
    let now = Instant::now();
    let mut f = Framer::new(4096);
    f.push(b"\r\n\r\n", now);
    assert_eq!(all(&mut f, now), vec![Frame::Ping]);
    // A ping split in two, then a lone CRLF (a pong) before a message.
    f.push(b"\r\n", now);
    assert_eq!(all(&mut f, now), vec![]);
    assert_eq!(f.partial_since(), None, "keep-alive bytes are not a partial message");
    f.push(b"\r\n", now);
    assert_eq!(all(&mut f, now), vec![Frame::Ping]);
    f.push(b"\r\n", now);
    f.push(OPTIONS, now);
    assert_eq!(all(&mut f, now), vec![Frame::Message(Bytes::from_static(OPTIONS))]);
}

#[test]
fn oversized_headers_and_body() {
    let now = Instant::now();
    let mut f = Framer::new(64);
    f.push(&[b'A'; 65], now);
    assert_eq!(f.poll(now), Err(FrameError::Oversize { max: 64 }));
    assert_eq!(f.poll(now), Err(FrameError::Oversize { max: 64 }), "errors are final");

    let mut f = Framer::new(64);
    f.push(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 1000\r\n\r\n", now);
    assert_eq!(f.poll(now), Err(FrameError::Oversize { max: 64 }), "refused before the body arrives");
}

#[test]
fn missing_or_bad_content_length() {
    let now = Instant::now();
    let mut f = Framer::new(4096);
    f.push(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n", now);
    assert_eq!(f.poll(now), Err(FrameError::MissingContentLength));
    for bad in ["Content-Length: x", "Content-Length: -1", "Content-Length:", "Content-Length: 1\r\nl: 2"] {
        let mut f = Framer::new(4096);
        f.push(format!("OPTIONS sip:a@b SIP/2.0\r\n{bad}\r\n\r\n").as_bytes(), now);
        assert_eq!(f.poll(now), Err(FrameError::BadContentLength), "{bad}");
    }
}

#[test]
fn content_length_forms() {
    let now = Instant::now();
    for h in ["content-length : 2", "CONTENT-LENGTH:2", "l:   2", "Content-Length:\r\n  2", "Content-Length: 2\r\nContent-Length: 2"] {
        let msg = format!("MESSAGE sip:a@b SIP/2.0\r\n{h}\r\n\r\nhi");
        let mut f = Framer::new(4096);
        f.push(msg.as_bytes(), now);
        assert_eq!(all(&mut f, now), vec![Frame::Message(Bytes::from(msg.clone()))], "{h}");
    }
}
