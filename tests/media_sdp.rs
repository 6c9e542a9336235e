//! SDP parse/build, offer/answer, codec intersection, hold, IPv6, malformed.

use std::net::{IpAddr, SocketAddr};

use cc_engine::media::sdp::{self, Codec, Direction, SdpError, SessionDescription};

const OFFER: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n\
s=-\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 18 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

fn relay_ip() -> IpAddr {
    "203.0.113.5".parse().unwrap()
}

#[test]
fn parse_fields() {
    let sd = SessionDescription::parse(OFFER).unwrap();
    assert_eq!(sd.origin_user, "alice");
    assert_eq!(sd.session_id, 2890844526);
    assert_eq!(sd.connection, Some("192.0.2.10".parse().unwrap()));
    let i = sd.audio_index().unwrap();
    let m = &sd.media[i];
    assert_eq!(m.port, 49170);
    assert_eq!(m.formats, vec![0, 8, 18, 101]);
    assert_eq!(m.rtpmaps.len(), 4);
    assert_eq!(m.fmtps, vec![(18, "annexb=no".to_string()), (101, "0-16".to_string())]);
    assert_eq!(m.ptime, Some(20));
    assert_eq!(sd.stream_direction(i), Direction::SendRecv);
    assert_eq!(sd.rtp_target(i), Some("192.0.2.10:49170".parse().unwrap()));
    assert_eq!(sd.rtcp_target(i), Some("192.0.2.10:49171".parse().unwrap()));
}

#[test]
fn round_trip_build_parse() {
    let sd = SessionDescription::parse(OFFER).unwrap();
    let text = sd.build();
    let again = SessionDescription::parse(&text).unwrap();
    assert_eq!(sd, again);
    assert_eq!(text, again.build());
    // LF-only input parses the same
    let lf = OFFER.replace("\r\n", "\n");
    assert_eq!(SessionDescription::parse(&lf).unwrap(), sd);
    // unknown lines survive
    let extra = format!("{OFFER}a=x-custom:42\r\n");
    let sd2 = SessionDescription::parse(&extra).unwrap();
    assert!(sd2.build().contains("a=x-custom:42\r\n"));
}

#[test]
fn answer_intersects_and_rewrites() {
    let offer = SessionDescription::parse(OFFER).unwrap();
    let n = sdp::answer(&offer, &sdp::default_codecs(), relay_ip(), 30000, 1).unwrap();
    let pts: Vec<u8> = n.chosen.iter().map(|c| c.pt).collect();
    assert_eq!(pts, vec![0, 8, 101], "G729 dropped, offer order kept");
    assert_eq!(n.audio().unwrap().codec.name, "PCMU");
    assert_eq!(n.peer_rtp, Some("192.0.2.10:49170".parse().unwrap()));
    let text = n.answer.build();
    assert!(text.contains("c=IN IP4 203.0.113.5\r\n"), "{text}");
    assert!(text.contains("m=audio 30000 RTP/AVP 0 8 101\r\n"), "{text}");
    assert!(text.contains("a=rtpmap:101 telephone-event/8000\r\n"));
    assert!(text.contains("a=fmtp:101 0-16\r\n"));
    assert!(!text.contains("G729") && !text.contains("annexb"));
    assert!(!text.contains("192.0.2.10"), "no peer address leaks: {text}");
    assert!(text.contains("a=sendrecv\r\n"));
    let parsed = SessionDescription::parse(&text).unwrap();
    assert_eq!(parsed.rtp_target(0), Some(SocketAddr::new(relay_ip(), 30000)));
}

#[test]
fn intersection_follows_configured_list() {
    let offer = SessionDescription::parse(OFFER).unwrap();
    let only_pcma = vec![Codec::new("pcma", 8000)];
    let n = sdp::answer(&offer, &only_pcma, relay_ip(), 30000, 1).unwrap();
    assert_eq!(n.chosen.len(), 1);
    assert_eq!(n.chosen[0].pt, 8);
    // static payload types without rtpmap are understood
    let bare = OFFER.replace("a=rtpmap:0 PCMU/8000\r\n", "").replace("a=rtpmap:8 PCMA/8000\r\n", "");
    let n = sdp::answer(&SessionDescription::parse(&bare).unwrap(), &sdp::default_codecs(), relay_ip(), 30000, 1).unwrap();
    assert_eq!(n.chosen.iter().map(|c| c.pt).collect::<Vec<_>>(), vec![0, 8, 101]);
    // dynamic PT number of the offer is kept for telephone-event
    let dyn96 = OFFER.replace("101", "96");
    let n = sdp::answer(&SessionDescription::parse(&dyn96).unwrap(), &sdp::default_codecs(), relay_ip(), 30000, 1).unwrap();
    assert!(n.chosen.iter().any(|c| c.pt == 96 && c.codec.is_dtmf()));
}

#[test]
fn no_common_codec_is_488_with_warning() {
    let g729 = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18 101\r\na=rtpmap:18 G729/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    let e = sdp::answer(&SessionDescription::parse(g729).unwrap(), &sdp::default_codecs(), relay_ip(), 30000, 1).unwrap_err();
    assert!(matches!(e, SdpError::NoCommonCodec { .. }), "telephone-event alone is not enough");
    assert_eq!(e.sip_status(), 488);
    let w = e.warning("cc.example");
    assert!(w.starts_with("305 cc.example \""), "{w}");
    let video = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=video 4000 RTP/AVP 96\r\n";
    assert_eq!(sdp::answer(&SessionDescription::parse(video).unwrap(), &sdp::default_codecs(), relay_ip(), 1, 1).unwrap_err().sip_status(), 488);
}

#[test]
fn hold_passes_through() {
    // RFC 3264 hold: sendonly
    let sendonly = OFFER.replace("a=sendrecv", "a=sendonly");
    let offer = SessionDescription::parse(&sendonly).unwrap();
    let n = sdp::answer(&offer, &sdp::default_codecs(), relay_ip(), 30000, 1).unwrap();
    assert_eq!(n.offered_direction, Direction::SendOnly);
    assert!(n.answer.build().contains("a=recvonly\r\n"));
    // inactive
    let inactive = OFFER.replace("a=sendrecv", "a=inactive");
    let n = sdp::answer(&SessionDescription::parse(&inactive).unwrap(), &sdp::default_codecs(), relay_ip(), 30000, 1).unwrap();
    assert!(n.answer.build().contains("a=inactive\r\n"));
    // RFC 2543 hold: c=0.0.0.0 → no destination, hold direction, and the
    // rewritten offer to the other side keeps 0.0.0.0
    let zero = OFFER.replace("c=IN IP4 192.0.2.10", "c=IN IP4 0.0.0.0").replace("a=sendrecv\r\n", "");
    let mut offer = SessionDescription::parse(&zero).unwrap();
    let n = sdp::answer(&offer, &sdp::default_codecs(), relay_ip(), 30000, 1).unwrap();
    assert_eq!(n.peer_rtp, None);
    assert!(n.offered_direction.is_hold());
    offer.rewrite_for_relay(0, relay_ip(), 30002);
    let text = offer.build();
    assert!(text.contains("c=IN IP4 0.0.0.0\r\n"), "{text}");
    assert!(text.contains("m=audio 30002 "), "{text}");
    // session-level direction attribute
    let sess = OFFER.replace("a=sendrecv\r\n", "").replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n");
    let sd = SessionDescription::parse(&sess).unwrap();
    assert_eq!(sd.stream_direction(0), Direction::SendOnly);
}

#[test]
fn ipv6() {
    let v6 = "v=0\r\no=- 7 7 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 8\r\na=rtcp:5010 IN IP6 2001:db8::2\r\n";
    let offer = SessionDescription::parse(v6).unwrap();
    assert_eq!(offer.rtp_target(0), Some("[2001:db8::1]:5004".parse().unwrap()));
    assert_eq!(offer.rtcp_target(0), Some("[2001:db8::2]:5010".parse().unwrap()));
    let relay6: IpAddr = "2001:db8::100".parse().unwrap();
    let n = sdp::answer(&offer, &sdp::default_codecs(), relay6, 30000, 9).unwrap();
    let text = n.answer.build();
    assert!(text.contains("c=IN IP6 2001:db8::100\r\n"), "{text}");
    assert!(text.contains("o=cc-engine 9 9 IN IP6 2001:db8::100\r\n"), "{text}");
    assert!(text.contains("a=rtcp:30001\r\n"), "{text}");
    assert_eq!(SessionDescription::parse(&text).unwrap(), n.answer);
}

#[test]
fn offer_for_agent_leg() {
    let offer = SessionDescription::parse(OFFER).unwrap();
    let n = sdp::answer(&offer, &sdp::default_codecs(), relay_ip(), 30000, 1).unwrap();
    // agent INVITE: only what the customer agreed, relay's agent-side port
    let o = sdp::offer(&n.chosen, relay_ip(), 30002, Direction::SendRecv, 20, 2);
    let text = o.build();
    assert!(text.contains("m=audio 30002 RTP/AVP 0 8 101\r\n"), "{text}");
    assert!(text.contains("a=fmtp:101 0-16\r\n"));
    assert!(text.contains("a=rtcp:30003\r\n"));
    let parsed = SessionDescription::parse(&text).unwrap();
    assert_eq!(parsed, o);
    // the agent answers with PCMA only
    let ans = text.replace("m=audio 30002 RTP/AVP 0 8 101", "m=audio 6000 RTP/AVP 8").replace("203.0.113.5", "198.51.100.7");
    let a = SessionDescription::parse(&ans).unwrap();
    assert_eq!(a.rtp_target(0), Some("198.51.100.7:6000".parse().unwrap()));
    assert_eq!(sdp::chosen_from(&sdp::default_codecs()).iter().map(|c| c.pt).collect::<Vec<_>>(), vec![0, 8, 101]);
}

fn malformed_line(text: &str) -> (usize, String) {
    match SessionDescription::parse(text) {
        Err(SdpError::Malformed { line_no, line, .. }) => (line_no, line),
        other => panic!("expected malformed, got {other:?}"),
    }
}

#[test]
fn malformed_names_the_line() {
    let cases: &[(&str, usize, &str)] = &[
        ("", 1, ""),
        ("v=1\r\n", 1, "v=1"),
        ("x\r\n", 1, "x"),
        ("v=0\r\ns=-\r\n", 1, ""), // missing o=
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 999.1.1.1\r\n", 3, "c=IN IP4 999.1.1.1"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n", 4, "m=audio 70000 RTP/AVP 0"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0 abc\r\n", 4, "m=audio 4000 RTP/AVP 0 abc"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n", 5, "a=rtpmap:0 PCMU"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\na=ptime:x\r\n", 5, "a=ptime:x"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:abc\r\n", 5, "a=rtcp:abc"),
        ("v=0\r\no=only three fields\r\n", 2, "o=only three fields"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP6 1.2.3.4\r\n", 3, "c=IN IP6 1.2.3.4"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\nm=audio\r\n", 4, "m=audio"),
    ];
    for (text, line_no, line) in cases {
        let (n, l) = malformed_line(text);
        assert_eq!((n, l.as_str()), (*line_no, *line), "for {text:?}");
    }
    // no c= anywhere for an active stream
    let e = SessionDescription::parse("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\n").unwrap_err();
    assert_eq!(e.sip_status(), 400);
    assert!(e.to_string().contains("m=audio"), "{e}");
}

#[test]
fn garbage_never_panics() {
    // a cheap fuzz: every prefix and random byte mutations of a valid offer
    for i in 0..OFFER.len() {
        let _ = SessionDescription::parse(&OFFER[..i]);
    }
    let mut rng = 0x1234_5678u32;
    for _ in 0..5000 {
        let mut b = OFFER.as_bytes().to_vec();
        for _ in 0..4 {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            let idx = rng as usize % b.len();
            b[idx] = (rng >> 8) as u8;
        }
        if let Ok(s) = std::str::from_utf8(&b) {
            if let Ok(sd) = SessionDescription::parse(s) {
                let _ = sdp::answer(&sd, &sdp::default_codecs(), relay_ip(), 1, 1);
                let _ = sd.build();
            }
        }
    }
}
