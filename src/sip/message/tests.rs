use crate::sip::view::View;
use super::*;

const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
    Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds;rport\r\n\
    Max-Forwards: 70\r\n\
    To: Bob <sip:bob@example.com>\r\n\
    From: Alice <sip:alice@example.com>;tag=1928301774\r\n\
    Call-ID: a84b4c76e66710@pc33.example.com\r\n\
    CSeq: 314159 INVITE\r\n\
    Contact: <sip:alice@10.0.0.1>\r\n\
    Content-Type: application/sdp\r\n\
    Content-Length: 4\r\n\r\nv=0\n";

fn with(from: &str, to: &str) -> Vec<u8> {
    INVITE.replacen(from, to, 1).into_bytes()
}

fn check(data: &[u8]) -> Result<(), Reject> {
    check_request(&scan(data).unwrap(), false)
}

#[test]
fn valid_invite_scans() {
    let m = scan(INVITE.as_bytes()).unwrap();
    assert_eq!(m.method(), Some("INVITE"));
    let via = m.top_via().unwrap();
    assert_eq!(via.host, "10.0.0.1");
    assert_eq!(via.port, Some(5060));
    assert_eq!(via.branch, Some("z9hG4bK776asdhds"));
    assert!(via.rport);
    assert_eq!(m.from_tag(), Some("1928301774"));
    assert_eq!(m.to_tag(), None);
    assert_eq!(m.cseq(), Some(Ok((314159, "INVITE"))));
    assert_eq!(m.body, b"v=0\n");
    assert_eq!(check(INVITE.as_bytes()), Ok(()));
}

#[test]
fn empty_and_keepalive() {
    assert_eq!(scan(b"").unwrap_err(), ScanError::Empty);
    assert_eq!(scan(b"\r\n\r\n").unwrap_err(), ScanError::KeepAlive);
    assert_eq!(scan(b"\r\n").unwrap_err(), ScanError::KeepAlive);
    assert_eq!(ScanError::KeepAlive.drop_reason(), None);
}

#[test]
fn garbage_is_dropped() {
    assert_eq!(
        scan(b"\x00\x01\x02garbage").unwrap_err(),
        ScanError::NotUtf8
    );
    assert_eq!(
        scan(b"\xff\xfe\xfd\r\n\r\n").unwrap_err(),
        ScanError::NotUtf8
    );
    assert_eq!(scan(b"hello world").unwrap_err(), ScanError::BadStartLine);
    assert_eq!(
        scan(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap_err(),
        ScanError::NotSip
    );
    assert_eq!(
        scan(b"HTTP/1.1 200 OK\r\n\r\n").unwrap_err(),
        ScanError::NotSip
    );
    assert_eq!(
        scan(b"SIP/2.0 abc OK\r\n\r\n").unwrap_err(),
        ScanError::BadStartLine
    );
    assert_eq!(
        scan(b"SIP/2.0 99 OK\r\n\r\n").unwrap_err(),
        ScanError::BadStartLine
    );
    assert_eq!(scan(b"SIP/2.0\r\n").unwrap_err(), ScanError::BadStartLine);
}

#[test]
fn version_not_2_is_505() {
    let d = with(
        "INVITE sip:bob@example.com SIP/2.0",
        "INVITE sip:bob@example.com SIP/3.0",
    );
    assert_eq!(check(&d).unwrap_err().status, 505);
}

#[test]
fn missing_headers() {
    for h in [
        "To: Bob <sip:bob@example.com>\r\n",
        "From: Alice <sip:alice@example.com>;tag=1928301774\r\n",
        "Call-ID: a84b4c76e66710@pc33.example.com\r\n",
        "CSeq: 314159 INVITE\r\n",
    ] {
        let d = with(h, "");
        let m = scan(&d).unwrap();
        assert!(m.addressable());
        assert_eq!(check_request(&m, false).unwrap_err().status, 400, "{h}");
    }
    let d = with(
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds;rport\r\n",
        "",
    );
    let m = scan(&d).unwrap();
    assert!(!m.addressable());
}

#[test]
fn bad_cseq_is_400() {
    let d = with("CSeq: 314159 INVITE", "CSeq: abc INVITE");
    assert_eq!(check(&d).unwrap_err().reason, "Bad CSeq");
    let d = with("CSeq: 314159 INVITE", "CSeq: 314159 BYE");
    assert_eq!(check(&d).unwrap_err().reason, "CSeq Method Mismatch");
    let d = with("CSeq: 314159 INVITE", "CSeq: 4294967295 INVITE");
    assert_eq!(check(&d).unwrap_err().status, 400);
}

#[test]
fn content_length() {
    let d = with("Content-Length: 4", "Content-Length: 400");
    assert_eq!(check(&d).unwrap_err().reason, "Truncated Body");
    let d = with("Content-Length: 4", "Content-Length: x");
    assert_eq!(check(&d).unwrap_err().reason, "Bad Content-Length");
    // Smaller: the body is cut and the request accepted (§18.3).
    let d = with("Content-Length: 4", "Content-Length: 2");
    let m = scan(&d).unwrap();
    assert_eq!(m.body, b"v=");
    assert_eq!(m.msg_len, d.len() - 2);
    assert_eq!(check_request(&m, false), Ok(()));
}

#[test]
fn oversize_is_513() {
    assert_eq!(
        check_request(&scan(INVITE.as_bytes()).unwrap(), true)
            .unwrap_err()
            .status,
        513
    );
}

#[test]
fn max_forwards_zero() {
    let d = with("Max-Forwards: 70", "Max-Forwards: 0");
    assert_eq!(check(&d).unwrap_err().status, 483);
    let opt = INVITE
        .replace("INVITE", "OPTIONS")
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    assert_eq!(check(opt.as_bytes()), Ok(()));
}

#[test]
fn uri_scheme_is_416() {
    let d = with(
        "INVITE sip:bob@example.com SIP/2.0",
        "INVITE tel:+15551234 SIP/2.0",
    );
    assert_eq!(check(&d).unwrap_err().status, 416);
}

#[test]
fn require_is_420() {
    let d = with(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nRequire: 100rel, timer\r\n",
    );
    let r = check(&d).unwrap_err();
    assert_eq!(r.status, 420);
    assert_eq!(r.header, Some(("Unsupported", "100rel, timer".to_owned())));
}

#[test]
fn content_type_is_415() {
    let d = with("application/sdp", "text/plain");
    let r = check(&d).unwrap_err();
    assert_eq!(
        (r.status, r.header.unwrap().1.as_str()),
        (415, "application/sdp")
    );
    let d = with(
        "Content-Type: application/sdp\r\n",
        "Content-Type: application/sdp\r\nContent-Encoding: gzip\r\n",
    );
    assert_eq!(check(&d).unwrap_err().status, 415);
}

#[test]
fn unknown_method_is_405() {
    let d = INVITE.replace("INVITE", "PUBLISH");
    let r = check(d.as_bytes()).unwrap_err();
    assert_eq!(r.status, 405);
    assert_eq!(r.header.unwrap().0, "Allow");
}

#[test]
fn duplicate_singletons_and_out_of_range_max_forwards() {
    let d = with(
        "Call-ID: a84b4c76e66710@pc33.example.com\r\n",
        "Call-ID: a\r\ni: b\r\n",
    );
    assert_eq!(check(&d).unwrap_err().reason, "Duplicate Header");
    let d = with("Content-Length: 4\r\n", "Content-Length: 4\r\nl: 4\r\n");
    assert_eq!(check(&d).unwrap_err().reason, "Duplicate Header");
    let d = with("Max-Forwards: 70", "Max-Forwards: 300");
    assert_eq!(check(&d).unwrap_err().reason, "Bad Max-Forwards");
    let d = with("Max-Forwards: 70", "Max-Forwards: 255");
    assert_eq!(check(&d), Ok(()));
}

/// A few RFC 4475 torture messages (abridged), with the answer §3 asks for.
#[test]
fn rfc4475_torture() {
    let msg = |start: &str, extra: &str, body: &str| {
        format!(
            "{start}\r\nVia: SIP/2.0/UDP host5.example.net;branch=z9hG4bK2d4790\r\nMax-Forwards: 70\r\n\
             To: <sip:j.user@example.com>\r\nFrom: <sip:caller@example.net>;tag=134161461246\r\n\
             Call-ID: torture\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let cases: &[(&str, String, Option<u16>)] = &[
        // intmeth: a strange but legal method token → 405
        ("intmeth", msg("!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0",
            "CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~\r\n", ""), Some(405)),
        ("badvers", msg("OPTIONS sip:t.watson@example.org SIP/7.0", "CSeq: 1 OPTIONS\r\n", ""), Some(505)),
        ("unksm", msg("INVITE isbn:2983792873 SIP/2.0", "CSeq: 1 INVITE\r\n", ""), Some(416)),
        ("novelsc", msg("OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0", "CSeq: 1 OPTIONS\r\n", ""), Some(416)),
        ("mismatch01", msg("OPTIONS sip:user@example.com SIP/2.0", "CSeq: 8 INVITE\r\n", ""), Some(400)),
        ("ncl", msg("INVITE sip:user@example.com SIP/2.0", "CSeq: 1 INVITE\r\n", "").replace("Content-Length: 0", "Content-Length: -999"), Some(400)),
        ("invut", msg("INVITE sip:user@example.com SIP/2.0", "CSeq: 1 INVITE\r\nContent-Type: application/unknownformat\r\n", "<audio> <pcmu port=\"443\"/> </audio>"), Some(415)),
        ("bext01", msg("OPTIONS sip:user@example.com SIP/2.0", "CSeq: 1 OPTIONS\r\nRequire: nothingSupportsThis, nothingSupportsThisEither\r\n", ""), Some(420)),
        ("zeromf", msg("OPTIONS sip:user@example.com SIP/2.0", "CSeq: 1 OPTIONS\r\n", "").replace("Max-Forwards: 70", "Max-Forwards: 0"), None),
        ("inv2543", msg("INVITE sip:UserB@example.com SIP/2.0", "CSeq: 1 INVITE\r\n", "").replace(";branch=z9hG4bK2d4790", ""), None),
        ("lwsdisp", msg("OPTIONS sip:user@example.com SIP/2.0", "CSeq: 1 OPTIONS\r\n", "").replace("From: <sip:caller", "From: caller<sip:caller"), None),
    ];
    for (name, data, want) in cases {
        let m = scan(data.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            check_request(&m, false).err().map(|r| r.status),
            *want,
            "{name}"
        );
    }
}

#[test]
fn compact_and_folded_headers() {
    let d = b"OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP [::1]:5070;branch=z9hG4bKa\r\n\
              f: <sip:x@y>;tag=9\r\nt: sip:a@b\r\ni: cid\r\nCSeq: 1\r\n  OPTIONS\r\nl: 0\r\n\r\n";
    let m = scan(d).unwrap();
    let v = m.top_via().unwrap();
    assert_eq!((v.host, v.port), ("::1", Some(5070)));
    assert_eq!(m.from_tag(), Some("9"));
    assert_eq!(m.call_id(), Some("cid"));
    assert_eq!(m.content_length, ContentLength::Ok(0));
}

#[test]
fn via_parsing() {
    assert!(parse_via("SIP/2.0/UDP").is_none());
    assert!(parse_via("SIP/2.0/UDP host:99999").is_none());
    assert!(parse_via("SIP/2.0/UDP [::1").is_none());
    let v = parse_via("SIP/2.0/UDP h;received=1.1.1.1;rport=5;branch=z9hG4bKx").unwrap();
    assert!(v.rport);
    assert_eq!(v.port, None);
    assert_eq!(v.branch, Some("z9hG4bKx"));
}
