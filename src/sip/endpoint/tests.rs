use crate::sip::view::View;
use super::*;
use std::time::Duration;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const UA: &str = "192.0.2.50:5070";

fn ep(shard: u16, shards: u16) -> Endpoint {
    let mut cfg = EndpointConfig::new(addr("192.0.2.1:5060"));
    cfg.shard = shard;
    cfg.shards = shards;
    cfg.rng_seed = 7;
    Endpoint::new(cfg)
}

fn req_with(method: &str, branch: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} sip:support@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.50:5070;branch={branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:cust@x>;tag=c1\r\nTo: <sip:support@192.0.2.1>\r\nCall-ID: call-1\r\n\
         CSeq: 1 {method}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn req(method: &str) -> Vec<u8> {
    req_with(method, "z9hG4bKua1", "", "")
}

fn outputs(e: &mut Endpoint) -> Vec<Output> {
    std::iter::from_fn(|| e.poll_output()).collect()
}

/// The single response the endpoint sent, parsed back.
fn one_response(e: &mut Endpoint) -> rsip::Response {
    let outs = outputs(e);
    assert_eq!(outs.len(), 1, "{outs:?}");
    let Some(Output::Transmit { dest, data }) = outs.into_iter().next() else {
        panic!("not a transmit")
    };
    assert_eq!(dest, addr(UA));
    rsip::Response::try_from(data.as_ref()).expect("response parses back")
}

fn header(r: &rsip::Response, name: &str) -> Option<String> {
    r.headers.iter().map(|h| h.to_string()).find(|h| {
        h.to_ascii_lowercase()
            .starts_with(&format!("{}:", name.to_ascii_lowercase()))
    })
}

#[test]
fn keepalive_and_garbage_are_silent() {
    let mut e = ep(0, 1);
    let now = Instant::now();
    for d in [
        &b""[..],
        b"\r\n\r\n",
        b"\r\n",
        b"\x00\x01\xff",
        b"GET / HTTP/1.1\r\n\r\n",
        b"SIP/2.0 abc\r\n\r\n",
    ] {
        e.handle_datagram(d, addr(UA), now);
    }
    assert!(outputs(&mut e).is_empty());
    let c = e.counters();
    assert_eq!(c.keepalives, 2);
    assert_eq!(c.dropped(DropReason::Empty), 1);
    assert_eq!(c.dropped(DropReason::NotUtf8), 1);
    assert_eq!(c.dropped(DropReason::NotSip), 1);
    assert_eq!(c.dropped(DropReason::BadStartLine), 1);
}

#[test]
fn options_gets_200_with_capabilities_and_retransmission_same_answer() {
    let mut e = ep(0, 1);
    let now = Instant::now();
    e.handle_datagram(&req("OPTIONS"), addr(UA), now);
    let outs = outputs(&mut e);
    let [Output::Transmit { data, .. }] = &outs[..] else {
        panic!("{outs:?}")
    };
    let r = rsip::Response::try_from(data.as_ref()).unwrap();
    assert_eq!(r.status_code, rsip::StatusCode::OK);
    assert_eq!(
        header(&r, "Allow").unwrap(),
        format!("Allow: {ALLOWED_METHODS}")
    );
    assert!(header(&r, "Accept").unwrap().contains("application/sdp"));
    assert!(header(&r, "Server").unwrap().contains("cc-engine"));
    assert!(header(&r, "To").unwrap().contains(";tag=cc0-"));
    assert!(header(&r, "Via")
        .unwrap()
        .contains("rport=5070;received=192.0.2.50"));
    e.handle_datagram(&req("OPTIONS"), addr(UA), now);
    assert!(matches!(&outputs(&mut e)[..], [Output::Transmit { data: d, .. }] if d == data));
    assert_eq!(e.counters().retransmissions_absorbed, 1);
    e.handle_timeout(now + Duration::from_secs(33));
    assert_eq!(e.transactions(), (0, 0));
    assert_eq!(e.completed_transactions(), 0);
}

#[test]
fn error_responses() {
    let now = Instant::now();
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (
            String::from_utf8(req("INVITE"))
                .unwrap()
                .replace("SIP/2.0\r\nVia", "SIP/3.0\r\nVia")
                .into_bytes(),
            505,
        ),
        (
            String::from_utf8(req("INVITE"))
                .unwrap()
                .replace("Call-ID: call-1\r\n", "")
                .into_bytes(),
            400,
        ),
        (
            String::from_utf8(req("INVITE"))
                .unwrap()
                .replace("CSeq: 1 INVITE", "CSeq: x INVITE")
                .into_bytes(),
            400,
        ),
        (
            String::from_utf8(req("INVITE"))
                .unwrap()
                .replace("CSeq: 1 INVITE", "CSeq: 1 BYE")
                .into_bytes(),
            400,
        ),
        (
            String::from_utf8(req("INVITE"))
                .unwrap()
                .replace("Content-Length: 0", "Content-Length: 10")
                .into_bytes(),
            400,
        ),
        (
            String::from_utf8(req("INVITE"))
                .unwrap()
                .replace("Content-Length: 0", "Content-Length: zz")
                .into_bytes(),
            400,
        ),
        (
            String::from_utf8(req("INVITE"))
                .unwrap()
                .replace("Max-Forwards: 70", "Max-Forwards: 0")
                .into_bytes(),
            483,
        ),
        (
            req_with("INVITE", "z9hG4bKa", "Require: 100rel\r\n", ""),
            420,
        ),
        (
            req_with(
                "INVITE",
                "z9hG4bKa",
                "Content-Type: text/html\r\n",
                "<html>",
            ),
            415,
        ),
        (req("PUBLISH"), 405),
        (req("FOO"), 405),
        (
            req_with(
                "INVITE",
                "z9hG4bKa",
                &format!("X-Pad: {}\r\n", "a".repeat(9000)),
                "",
            ),
            513,
        ),
    ];
    for (data, status) in cases {
        let mut e = ep(0, 1);
        e.handle_datagram(&data, addr(UA), now);
        let r = one_response(&mut e);
        assert_eq!(
            r.status_code.code(),
            status,
            "{}",
            String::from_utf8_lossy(&data)
        );
        match status {
            420 => assert_eq!(header(&r, "Unsupported").unwrap(), "Unsupported: 100rel"),
            415 => assert!(header(&r, "Accept").unwrap().contains("application/sdp")),
            405 => assert!(header(&r, "Allow").is_some()),
            _ => {}
        }
        assert_eq!(e.transactions(), (0, 0), "errors are stateless");
        assert_eq!(e.completed_transactions(), 0, "errors are stateless");
        assert_eq!(e.counters().responses_sent[usize::from(status / 100)], 1);
    }
}

#[test]
fn unanswerable_requests_are_dropped() {
    let now = Instant::now();
    let mut e = ep(0, 1);
    let no_via = String::from_utf8(req("INVITE")).unwrap().replace(
        "Via: SIP/2.0/UDP 192.0.2.50:5070;branch=z9hG4bKua1;rport\r\n",
        "",
    );
    e.handle_datagram(no_via.as_bytes(), addr(UA), now);
    let big = no_via.replace(
        "Max-Forwards",
        &format!("X-Pad: {}\r\nMax-Forwards", "a".repeat(9000)),
    );
    e.handle_datagram(big.as_bytes(), addr(UA), now);
    let bad_ack = String::from_utf8(req("ACK"))
        .unwrap()
        .replace("CSeq: 1 ACK", "CSeq: 1 INVITE");
    e.handle_datagram(bad_ack.as_bytes(), addr(UA), now);
    e.handle_datagram(&req("ACK"), addr(UA), now);
    assert!(outputs(&mut e).is_empty());
    let c = e.counters();
    assert_eq!(c.dropped(DropReason::Unaddressable), 1);
    assert_eq!(c.dropped(DropReason::Oversize), 1);
    assert_eq!(c.dropped(DropReason::BadAck), 1);
    assert_eq!(c.dropped(DropReason::UnmatchedAck), 1);
}

#[test]
fn stray_responses_are_dropped() {
    let mut e = ep(0, 1);
    let resp = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-cc0-ab\r\nFrom: <sip:a@b>;tag=1\r\n\
                 To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    e.handle_datagram(resp, addr(UA), Instant::now());
    e.handle_datagram(b"SIP/2.0 200 OK\r\n\r\n", addr(UA), Instant::now());
    assert!(outputs(&mut e).is_empty());
    assert_eq!(e.counters().dropped(DropReason::StrayResponse), 1);
    assert_eq!(e.counters().dropped(DropReason::BadResponse), 1);
}

#[test]
fn invite_flow_with_2xx_retransmission_and_ack() {
    let mut e = ep(0, 1);
    let t0 = Instant::now();
    let sdp = "v=0\r\n";
    e.handle_datagram(
        &req_with(
            "INVITE",
            "z9hG4bKinv",
            "Content-Type: application/sdp\r\n",
            sdp,
        ),
        addr(UA),
        t0,
    );
    let outs = outputs(&mut e);
    assert_eq!(outs.len(), 2, "{outs:?}");
    assert!(
        matches!(&outs[0], Output::Transmit { data, .. } if data.starts_with(b"SIP/2.0 100 Trying"))
    );
    let Output::Request { tx, request, src } = &outs[1] else {
        panic!()
    };
    assert_eq!((request.method(), *src), (Some("INVITE"), addr(UA)));
    assert_eq!(request.body(), sdp.as_bytes());
    let tx = *tx;
    let tag = e.local_tag(tx).unwrap().to_owned();
    e.respond(tx, ResponseSpec::new(180), t0);
    let r180 = one_response(&mut e);
    e.respond(
        tx,
        ResponseSpec::new(200).body("application/sdp", Bytes::from_static(b"v=0\r\n")),
        t0,
    );
    let r200 = one_response(&mut e);
    assert_eq!(header(&r180, "To"), header(&r200, "To"));
    assert!(header(&r200, "To").unwrap().contains(&tag));
    assert_eq!(r200.body, b"v=0\r\n");
    e.handle_timeout(t0 + Duration::from_millis(500));
    assert_eq!(one_response(&mut e).status_code.code(), 200);
    let ack = String::from_utf8(req("ACK"))
        .unwrap()
        .replace("branch=z9hG4bKua1", "branch=z9hG4bKack")
        .replace(
            "To: <sip:support@192.0.2.1>",
            &format!("To: <sip:support@192.0.2.1>;tag={tag}"),
        );
    e.handle_datagram(ack.as_bytes(), addr(UA), t0 + Duration::from_millis(600));
    assert!(matches!(&outputs(&mut e)[..], [Output::Ack { tx: t, .. }] if *t == tx));
    // RFC 6026: Accepted lasts until Timer L, so an INVITE retransmission
    // delayed past the ACK is absorbed, not taken for a new call.
    assert_eq!(e.transactions(), (1, 0));
    let invite = req_with("INVITE", "z9hG4bKinv", "Content-Type: application/sdp\r\n", sdp);
    e.handle_datagram(&invite, addr(UA), t0 + Duration::from_millis(700));
    assert!(outputs(&mut e).is_empty());
    e.handle_timeout(t0 + Duration::from_secs(100));
    assert!(outputs(&mut e).is_empty());
    assert_eq!(e.transactions(), (0, 0));
    assert_eq!(e.completed_transactions(), 0);
}

#[test]
fn cancel_hits_invite_or_gets_481() {
    let mut e = ep(0, 1);
    let t0 = Instant::now();
    e.handle_datagram(&req("CANCEL"), addr(UA), t0);
    assert_eq!(one_response(&mut e).status_code.code(), 481);
    e.handle_datagram(&req_with("INVITE", "z9hG4bKinv", "", ""), addr(UA), t0);
    let outs = outputs(&mut e);
    let Some(Output::Request { tx: inv, .. }) = outs.last() else {
        panic!()
    };
    let inv = *inv;
    e.handle_datagram(&req_with("CANCEL", "z9hG4bKinv", "", ""), addr(UA), t0);
    let outs = outputs(&mut e);
    assert_eq!(outs.len(), 2, "{outs:?}");
    let Output::Transmit { data, .. } = &outs[0] else {
        panic!()
    };
    assert!(data.starts_with(b"SIP/2.0 200 OK"));
    let tag = e.local_tag(inv).unwrap().to_owned();
    assert!(
        std::str::from_utf8(data)
            .unwrap()
            .contains(&format!(";tag={tag}\r\n")),
        "§9.2 same To tag"
    );
    assert_eq!(outs[1], Output::Cancelled { tx: inv });
    e.respond(inv, ResponseSpec::new(487), t0);
    assert_eq!(one_response(&mut e).status_code.code(), 487);
    // The ACK of the 487 is absorbed by the INVITE transaction.
    e.handle_datagram(&req_with("ACK", "z9hG4bKinv", "", ""), addr(UA), t0);
    assert!(outputs(&mut e).is_empty());
    e.handle_timeout(t0 + Duration::from_secs(40));
    assert_eq!(e.transactions(), (0, 0));
    assert_eq!(e.completed_transactions(), 0);
    assert_eq!(e.counters().server_timeouts, 0);
}

#[test]
fn foreign_messages_are_forwarded_once() {
    let mut e = ep(0, 2);
    let t0 = Instant::now();
    let bye = String::from_utf8(req("BYE"))
        .unwrap()
        .replace("To: <sip:support@192.0.2.1>", "To: <sip:s@h>;tag=cc1-abc");
    e.handle_datagram(bye.as_bytes(), addr(UA), t0);
    let outs = outputs(&mut e);
    assert!(
        matches!(&outs[..], [Output::Forward { shard: 1, data, src }] if data.as_ref() == bye.as_bytes() && *src == addr(UA))
    );
    assert_eq!(e.counters().forwarded, 1);
    e.handle_forwarded(bye.as_bytes(), addr(UA), t0);
    assert!(matches!(&outputs(&mut e)[..], [Output::Request { .. }]));
    // A response to a shard-1 branch.
    let resp = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-cc1-ab\r\nFrom: <sip:a@b>;tag=1\r\n\
                 To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    e.handle_datagram(resp, addr(UA), t0);
    assert!(matches!(
        &outputs(&mut e)[..],
        [Output::Forward { shard: 1, .. }]
    ));
}

/// Delivers every Transmit from `from` to `to` (as coming from `src`);
/// returns the other outputs.
fn pump(from: &mut Endpoint, to: &mut Endpoint, src: SocketAddr, now: Instant) -> Vec<Output> {
    let mut other = Vec::new();
    for o in outputs(from) {
        match o {
            Output::Transmit { data, .. } => to.handle_datagram(&data, src, now),
            o => other.push(o),
        }
    }
    other
}

fn invite_request() -> rsip::Request {
    let text = "INVITE sip:agent@192.0.2.50:5070 SIP/2.0\r\nFrom: <sip:queue@192.0.2.1>\r\nTo: <sip:agent@192.0.2.50>\r\n\
                Contact: <sip:queue@192.0.2.1:5060>\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n";
    rsip::Request::try_from(text).unwrap()
}

#[test]
fn uac_to_uas_round_trip_with_cancel() {
    let (ca, sa) = (addr("192.0.2.1:5060"), addr(UA));
    let mut client = ep(0, 1);
    let mut cfg = EndpointConfig::new(sa);
    cfg.rng_seed = 99;
    let mut server = Endpoint::new(cfg);
    let t0 = Instant::now();
    let ctx = client.send_request(invite_request(), sa, t0);
    let outs = outputs(&mut client);
    let [Output::Transmit { data, dest }] = &outs[..] else {
        panic!()
    };
    assert_eq!(*dest, sa);
    let text = std::str::from_utf8(data).unwrap();
    assert!(text.contains(";branch=z9hG4bK-cc0-"), "{text}");
    assert!(text.contains("From: <sip:queue@192.0.2.1>;tag=cc0-"));
    assert!(text.contains("Call-ID: cc0-"));
    assert!(text.contains("CSeq: 1 INVITE\r\n"));
    assert!(text.ends_with("Content-Length: 5\r\n\r\nv=0\r\n"));
    server.handle_datagram(data, ca, t0);
    let outs = pump(&mut server, &mut client, sa, t0);
    let [Output::Request { tx: stx, .. }] = &outs[..] else {
        panic!("{outs:?}")
    };
    let stx = *stx;
    let outs = outputs(&mut client);
    assert!(
        matches!(&outs[..], [Output::Response { response, .. }] if response.status().unwrap() == 100)
    );
    server.respond(stx, ResponseSpec::new(180), t0);
    pump(&mut server, &mut client, sa, t0);
    let outs = outputs(&mut client);
    assert!(
        matches!(&outs[..], [Output::Response { tx, response }] if *tx == ctx && response.status().unwrap() == 180)
    );
    let cancel_tx = client.cancel(ctx, t0).unwrap();
    let outs = pump(&mut client, &mut server, ca, t0);
    assert!(outs.is_empty());
    let outs = pump(&mut server, &mut client, sa, t0);
    assert_eq!(outs, vec![Output::Cancelled { tx: stx }]);
    let outs = outputs(&mut client);
    assert!(
        matches!(&outs[..], [Output::Response { tx, response }] if *tx == cancel_tx && response.status().unwrap() == 200)
    );
    server.respond(stx, ResponseSpec::new(487), t0);
    pump(&mut server, &mut client, sa, t0);
    let outs = pump(&mut client, &mut server, ca, t0); // the ACK
    assert!(
        matches!(&outs[..], [Output::Response { tx, response }] if *tx == ctx && response.status().unwrap() == 487)
    );
    assert!(outputs(&mut server).is_empty(), "ACK absorbed");
    let later = t0 + Duration::from_secs(60);
    client.handle_timeout(later);
    server.handle_timeout(later);
    assert!(outputs(&mut client).is_empty());
    assert_eq!(
        (client.transactions(), server.transactions()),
        ((0, 0), (0, 0))
    );
    assert_eq!(server.completed_transactions(), 0, "the CANCEL's 200 too");
}

#[test]
fn rsip_rejects_but_we_still_answer_400() {
    let mut e = ep(0, 1);
    let d = String::from_utf8(req("INVITE"))
        .unwrap()
        .replace("sip:support@192.0.2.1 SIP", "sip:a@b:99999 SIP");
    assert!(rsip::Request::try_from(d.as_str()).is_err());
    e.handle_datagram(d.as_bytes(), addr(UA), Instant::now());
    assert_eq!(one_response(&mut e).status_code.code(), 400);
    assert_eq!(e.transactions(), (0, 0));
    assert_eq!(e.completed_transactions(), 0);
}

#[test]
fn short_content_length_cuts_the_body() {
    let mut e = ep(0, 1);
    let d = String::from_utf8(req_with(
        "INFO",
        "z9hG4bKi",
        "Content-Type: application/sdp\r\n",
        "v=0\r\nGARBAGE",
    ))
    .unwrap()
    .replace("Content-Length: 12", "Content-Length: 5");
    e.handle_datagram(d.as_bytes(), addr(UA), Instant::now());
    let outs = outputs(&mut e);
    assert!(
        matches!(&outs[..], [Output::Request { request, .. }] if request.body() == b"v=0\r\n"),
        "{outs:?}"
    );
}

#[test]
fn tu_headers_cannot_clobber_copied_ones() {
    let mut e = ep(0, 1);
    let t0 = Instant::now();
    e.handle_datagram(&req("REGISTER"), addr(UA), t0);
    let Some(Output::Request { tx, .. }) = outputs(&mut e).pop() else {
        panic!()
    };
    e.respond(
        tx,
        ResponseSpec::new(200)
            .header("To", "<sip:evil@x>")
            .header("Expires", "300"),
        t0,
    );
    let r = one_response(&mut e);
    assert!(!r.to_string().contains("evil"));
    assert_eq!(header(&r, "Expires").unwrap(), "Expires: 300");
    // A second final is ignored.
    e.respond(tx, ResponseSpec::new(500), t0);
    assert!(outputs(&mut e).is_empty());
}

#[test]
fn ack_for_2xx_follows_contact_and_record_route() {
    let mut e = ep(0, 1);
    let text = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-cc0-1\r\n\
                Record-Route: <sip:p1;lr>, <sip:p2;lr>\r\nFrom: <sip:q@h>;tag=a\r\nTo: <sip:b@h>;tag=b\r\n\
                Call-ID: c9\r\nCSeq: 5 INVITE\r\nContact: \"Agent\" <sip:agent@192.0.2.50:5070;transport=udp>\r\n\
                Content-Length: 0\r\n\r\n";
    let resp = Message::parse(Bytes::from(text)).unwrap();
    assert!(e.send_ack_2xx(&resp, addr(UA)));
    let outs = outputs(&mut e);
    let [Output::Transmit { data, .. }] = &outs[..] else {
        panic!()
    };
    let ack = std::str::from_utf8(data).unwrap();
    assert!(ack.starts_with("ACK sip:agent@192.0.2.50:5070;transport=udp SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-cc0-"), "{ack}");
    assert!(ack.contains("Route: <sip:p2;lr>\r\nRoute: <sip:p1;lr>\r\n"));
    assert!(ack.contains("To: <sip:b@h>;tag=b\r\nCall-ID: c9\r\nCSeq: 5 ACK\r\n"));
    assert!(rsip::Request::try_from(ack).is_ok());
    let no_contact = Message::parse(Bytes::from(text.replace("Contact", "X-C"))).unwrap();
    assert!(!e.send_ack_2xx(&no_contact, addr(UA)));
}

#[test]
fn response_landing_on_the_wrong_shard_reaches_the_owner() {
    let (mut s0, mut s1) = (ep(0, 2), ep(1, 2));
    let t0 = Instant::now();
    let ctx = s1.send_request(invite_request(), addr(UA), t0);
    let outs = outputs(&mut s1);
    let [Output::Transmit { data, .. }] = &outs[..] else {
        panic!()
    };
    // The agent answers; the kernel hands its 180 to shard 0.
    let msg = scan(data).unwrap();
    let base = ResponseBase::from_request(&msg, addr("192.0.2.1:5060"));
    let ringing = base.build(180, "Ringing", Some("agent-tag"), [], None);
    s0.handle_datagram(&ringing, addr(UA), t0);
    let outs = outputs(&mut s0);
    let [Output::Forward {
        shard: 1,
        data,
        src,
    }] = &outs[..]
    else {
        panic!("{outs:?}")
    };
    s1.handle_forwarded(data, *src, t0);
    let outs = outputs(&mut s1);
    assert!(
        matches!(&outs[..], [Output::Response { tx, response }] if *tx == ctx && response.status().unwrap() == 180)
    );
    assert_eq!(s0.counters().forwarded, 1);
}

#[test]
fn merged_request_gets_482() {
    let mut e = ep(0, 1);
    let t0 = Instant::now();
    e.handle_datagram(&req_with("INVITE", "z9hG4bKpath1", "", ""), addr(UA), t0);
    assert_eq!(outputs(&mut e).len(), 2);
    e.handle_datagram(&req_with("INVITE", "z9hG4bKpath2", "", ""), addr(UA), t0);
    assert_eq!(one_response(&mut e).status_code.code(), 482);
    // The CANCEL shares Call-ID, From tag and CSeq number, not the method.
    e.handle_datagram(&req_with("CANCEL", "z9hG4bKpath1", "", ""), addr(UA), t0);
    assert_eq!(outputs(&mut e).len(), 2);
}

#[test]
fn register_retransmission_within_timer_j_gets_the_same_bytes() {
    let mut e = ep(0, 1);
    let t0 = Instant::now();
    let register = req("REGISTER");
    e.handle_datagram(&register, addr(UA), t0);
    let Some(Output::Request { tx, .. }) = outputs(&mut e).pop() else {
        panic!()
    };
    e.respond(tx, ResponseSpec::new(200).header("Expires", "60"), t0);
    let outs = outputs(&mut e);
    let [Output::Transmit { data: first, .. }] = &outs[..] else {
        panic!("{outs:?}")
    };
    assert_eq!(e.transactions(), (0, 0), "nothing live once answered");
    assert_eq!(e.completed_transactions(), 1);
    let j = t0 + Duration::from_secs(32);
    assert_eq!(e.poll_timeout(), Some(j + Duration::from_millis(125)));
    // Retransmissions up to Timer J: the same datagram (the same buffer,
    // shared), counted, and nothing for the TU.
    for at in [t0 + Duration::from_millis(500), j] {
        e.handle_timeout(at);
        e.handle_datagram(&register, addr(UA), at);
        let outs = outputs(&mut e);
        let [Output::Transmit { data, dest }] = &outs[..] else {
            panic!("{outs:?}")
        };
        assert_eq!((data, *dest), (first, addr(UA)));
        assert_eq!(data.as_ptr(), first.as_ptr(), "no copy");
    }
    assert_eq!(e.counters().retransmissions_absorbed, 2);
    assert_eq!(e.counters().retransmissions_sent, 2);
    // After Timer J the record is gone: the same request is a new one.
    let after = e.poll_timeout().unwrap();
    e.handle_timeout(after);
    assert_eq!(e.completed_transactions(), 0);
    assert_eq!(e.poll_timeout(), None);
    e.handle_datagram(&register, addr(UA), after);
    assert!(matches!(&outputs(&mut e)[..], [Output::Request { .. }]));
    assert_eq!(e.transactions(), (1, 0));
}

#[test]
fn merged_request_gets_482_while_the_first_is_completed() {
    let mut e = ep(0, 1);
    let t0 = Instant::now();
    e.handle_datagram(&req_with("REGISTER", "z9hG4bKpath1", "", ""), addr(UA), t0);
    let Some(Output::Request { tx, .. }) = outputs(&mut e).pop() else {
        panic!()
    };
    e.respond(tx, ResponseSpec::new(200), t0);
    assert_eq!(one_response(&mut e).status_code.code(), 200);
    e.handle_datagram(&req_with("REGISTER", "z9hG4bKpath2", "", ""), addr(UA), t0);
    assert_eq!(one_response(&mut e).status_code.code(), 482);
    let later = t0 + Duration::from_secs(33);
    e.handle_timeout(later);
    e.handle_datagram(&req_with("REGISTER", "z9hG4bKpath2", "", ""), addr(UA), later);
    assert!(matches!(&outputs(&mut e)[..], [Output::Request { .. }]));
}
