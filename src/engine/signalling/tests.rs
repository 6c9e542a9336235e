//! The integrator's inputs that the call simulation does not reach: ICMP
//! news from the shard's own socket and from other shards, the flood guard,
//! REGISTER tickets, feature-code calls, and shutdown.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::acd::facts::{CallFact, RtpCounts};
use crate::acd::RegisterReply;
use crate::call::CallConfig;
use crate::config::AnswerMode;
use crate::media::sdp::default_codecs;
use crate::media::{RelayLegConfig, RelayLegId, RelayLegPorts, OpenError};
use crate::sip::EndpointConfig;

const ENGINE: &str = "192.0.2.1:5060";
const WALL: u64 = 1_800_000_000_000;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[derive(Default)]
struct Media {
    next: u64,
    open: BTreeSet<RelayLegId>,
}

impl MediaControl for Media {
    fn open_leg(&mut self, _cfg: RelayLegConfig, _now: Instant) -> Result<RelayLegPorts, OpenError> {
        self.next += 1;
        let id = RelayLegId(self.next);
        self.open.insert(id);
        let port = 30000 + 2 * self.next as u16;
        Ok(RelayLegPorts { id, rtp: SocketAddr::new(addr(ENGINE).ip(), port), rtcp: SocketAddr::new(addr(ENGINE).ip(), port + 1) })
    }
    fn set_peer(&mut self, _leg: RelayLegId, _rtp: Option<SocketAddr>, _rtcp: Option<SocketAddr>) {}
    fn start_hold(&mut self, _leg: RelayLegId, _queue: &str, _pt: u8) {}
    fn stop_hold(&mut self, _leg: RelayLegId) {}
    fn bridge(&mut self, _a: RelayLegId, _b: RelayLegId) {}
    fn close(&mut self, leg: RelayLegId, _now: Instant) {
        assert!(self.open.remove(&leg), "leg closed twice or never opened");
    }
    fn rtp_counts(&mut self, _c: RelayLegId, _a: RelayLegId) -> RtpCounts {
        RtpCounts::default()
    }
}

fn shard(id: u16, shards: u16, rate: u32, exempt_loopback: bool) -> Signalling<Media> {
    let mut ec = EndpointConfig::new(addr(ENGINE));
    ec.shard = id;
    ec.shards = shards;
    ec.rng_seed = 7;
    let cc = CallConfig {
        queues: [("support".to_owned(), AnswerMode::OnAgent)].into_iter().collect(),
        codecs: default_codecs(),
        media_timeout: None,
        trusted_sources: Vec::new(),
        feature_tone: None,
    };
    let sc = SignallingConfig {
        rate_limit_per_ip: rate,
        rate_limit_exempt_loopback: exempt_loopback,
        ..SignallingConfig::new(id, shards)
    };
    Signalling::new(sc, Endpoint::new(ec), CallTable::new(cc, id, 9), Media::default())
}

fn effects(s: &mut Signalling<Media>) -> Vec<Effect> {
    let mut v = Vec::new();
    while let Some(e) = s.poll_effect() {
        v.push(e);
    }
    v
}

fn sample(s: &Signalling<Media>, name: &str, labels: &str) -> u64 {
    s.samples()
        .into_iter()
        .find(|x| x.name == name && x.labels == labels)
        .map(|x| x.value)
        .unwrap_or_else(|| panic!("no sample {name}{{{labels}}}"))
}

fn options(src: &str, n: u32) -> String {
    format!(
        "OPTIONS sip:{ENGINE} SIP/2.0\r\nVia: SIP/2.0/UDP {src};branch=z9hG4bKopt{n}\r\nMax-Forwards: 70\r\n\
         From: <sip:probe@{src}>;tag=p{n}\r\nTo: <sip:{ENGINE}>\r\nCall-ID: opt{n}@x\r\nCSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn invite(src: &str) -> String {
    let body = "v=0\r\no=c 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n\
                m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    format!(
        "INVITE sip:support@{ENGINE} SIP/2.0\r\nVia: SIP/2.0/UDP {src};branch=z9hG4bKinv1\r\nMax-Forwards: 70\r\n\
         From: <sip:c@{src}>;tag=c1\r\nTo: <sip:support@{ENGINE}>\r\nCall-ID: inv1@x\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:c@{src}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn status(data: &[u8]) -> Option<u16> {
    status_of(data)
}

#[test]
fn icmp_news_from_our_socket_is_told_to_every_other_shard() {
    let mut s = shard(1, 3, 0, true);
    let (a, b) = (addr("203.0.113.5:5070"), addr("203.0.113.6:5070"));
    s.handle(Input::Unreachable(vec![a, b]), Instant::now(), WALL);
    let mut told: Vec<(u16, SocketAddr)> = effects(&mut s)
        .into_iter()
        .map(|e| match e {
            Effect::Forward(shard, Forwarded::Unreachable { dest }) => (shard, dest),
            other => panic!("unexpected effect {other:?}"),
        })
        .collect();
    told.sort();
    assert_eq!(told, vec![(0, a), (0, b), (2, a), (2, b)]);
    assert_eq!(sample(&s, "cc_sip_icmp_unreachable_total", ""), 2);
}

#[test]
fn icmp_news_from_another_shard_is_not_passed_on() {
    let mut s = shard(0, 3, 0, true);
    let dest = addr("203.0.113.5:5070");
    s.handle(Input::Forwarded(Forwarded::Unreachable { dest }), Instant::now(), WALL);
    assert!(effects(&mut s).is_empty(), "a shard told by another must not tell the others again");
    assert_eq!(sample(&s, "cc_sip_icmp_unreachable_total", ""), 0);
}

#[test]
fn flood_guard_drops_a_source_over_its_rate_before_parsing() {
    // 2 per second, bursts of 4.
    let mut s = shard(0, 1, 2, true);
    let now = Instant::now();
    let src = "198.51.100.9:5060";
    let mut answered = 0;
    for n in 0..10 {
        s.handle(Input::Datagram { data: options(src, n).as_bytes(), src: addr(src) }, now, WALL);
        answered += effects(&mut s).iter().filter(|e| matches!(e, Effect::Send(..))).count();
    }
    assert_eq!(answered, 4, "the burst is let through, the rest dropped");
    assert_eq!(sample(&s, "cc_sip_dropped_total", "reason=\"rate_limited\""), 6);
    // Another source is not affected, and the bucket refills with time.
    let other = "198.51.100.10:5060";
    s.handle(Input::Datagram { data: options(other, 20).as_bytes(), src: addr(other) }, now, WALL);
    assert_eq!(effects(&mut s).len(), 1);
    let later = now + Duration::from_secs(1);
    s.handle(Input::Datagram { data: options(src, 21).as_bytes(), src: addr(src) }, later, WALL);
    assert_eq!(effects(&mut s).len(), 1);
}

#[test]
fn flood_guard_exempts_loopback_when_configured() {
    let now = Instant::now();
    let src = "127.0.0.1:5099";
    for (exempt, want) in [(true, 10), (false, 4)] {
        let mut s = shard(0, 1, 2, exempt);
        let mut answered = 0;
        for n in 0..10 {
            s.handle(Input::Datagram { data: options(src, n).as_bytes(), src: addr(src) }, now, WALL);
            answered += effects(&mut s).len();
        }
        assert_eq!(answered, want, "exempt_loopback={exempt}");
    }
}

#[test]
fn register_goes_to_routing_with_a_ticket_and_its_reply_comes_back() {
    let mut s = shard(0, 1, 0, true);
    let now = Instant::now();
    let src = "198.51.100.20:5062";
    let reg = format!(
        "REGISTER sip:{ENGINE} SIP/2.0\r\nVia: SIP/2.0/UDP {src};branch=z9hG4bKreg1\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@cc>;tag=r1\r\nTo: <sip:alice@cc>\r\nCall-ID: reg1@x\r\nCSeq: 1 REGISTER\r\n\
         Contact: <sip:alice@{src}>\r\nContent-Length: 0\r\n\r\n"
    );
    s.handle(Input::Datagram { data: reg.as_bytes(), src: addr(src) }, now, WALL);
    let tx = match effects(&mut s).as_slice() {
        [Effect::Route(ToRouting::Register { shard: 0, tx, req })] => {
            assert_eq!(req.user, "alice");
            *tx
        }
        other => panic!("want one Register for routing, got {other:?}"),
    };
    assert_eq!(sample(&s, "cc_routing_pending", ""), 1);
    let reply = RegisterReply::Ok { contacts: vec![(format!("sip:alice@{src}"), 3600)] };
    s.handle(Input::Routing(FromRouting::RegisterReply { tx, reply }), now, WALL);
    match effects(&mut s).as_slice() {
        [Effect::Send(dest, data)] => {
            assert_eq!(*dest, addr(src));
            assert_eq!(status(data), Some(200));
        }
        other => panic!("want the 200, got {other:?}"),
    }
    // A reply nobody waits for (its REGISTER was answered, or another
    // shard's) is counted, not sent.
    let reply = RegisterReply::NotFound;
    s.handle(Input::Routing(FromRouting::RegisterReply { tx, reply }), now, WALL);
    assert!(effects(&mut s).is_empty());
    assert_eq!(sample(&s, "cc_routing_replies_unmatched_total", ""), 1);
    assert_eq!(sample(&s, "cc_routing_pending", ""), 0);
}

#[test]
fn shutdown_hangs_up_every_call_and_tells_routing() {
    let mut s = shard(0, 1, 0, true);
    let now = Instant::now();
    let src = "198.51.100.7:5060";
    s.handle(Input::Datagram { data: invite(src).as_bytes(), src: addr(src) }, now, WALL);
    let first = effects(&mut s);
    assert!(
        first.iter().any(|e| matches!(e, Effect::Route(ToRouting::Call(CallFact::Arrived { .. })))),
        "the call is told to routing: {first:?}"
    );
    assert_eq!(s.media().open.len(), 1, "the caller's relay leg");
    assert_eq!(s.calls().active(), 1);
    // While a call exists, bridged legs' counters are refreshed.
    assert_eq!(s.next_stats, Some(now + STATS_INTERVAL));
    assert!(s.poll_timeout().is_some_and(|t| t <= now + STATS_INTERVAL));

    s.handle(Input::Shutdown, now, WALL + 10);
    let out = effects(&mut s);
    let sent: Vec<u16> = out
        .iter()
        .filter_map(|e| match e {
            Effect::Send(_, d) => status(d),
            _ => None,
        })
        .collect();
    assert_eq!(sent, vec![503], "the waiting caller is refused: {out:?}");
    assert!(
        out.iter().any(|e| matches!(e, Effect::Route(ToRouting::Call(CallFact::Failed { .. })))),
        "routing hears the call failed: {out:?}"
    );
    assert!(s.media().open.is_empty(), "its relay leg is closed");
    assert_eq!(s.calls().active(), 0);

    // Afterwards the stats timer fires once and is not re-armed.
    let t = now + STATS_INTERVAL;
    s.handle(Input::Timer, t, WALL + 1000);
    assert!(effects(&mut s).iter().all(|e| matches!(e, Effect::Send(..))));
    assert_eq!(s.next_stats, None, "no periodic wake-up once idle");
}

fn feature_invite(src: &str, code: &str, call: &str, body: &str) -> String {
    format!(
        "INVITE sip:{code}@{ENGINE} SIP/2.0\r\nVia: SIP/2.0/UDP {src};branch=z9hG4bK{call}\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@{src}>;tag=a1\r\nTo: <sip:{code}@{ENGINE}>\r\nCall-ID: {call}@x\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:alice@{src}>\r\nAuthorization: Digest username=\"alice\"\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn sent(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send(_, d) => Some(String::from_utf8_lossy(d).into_owned()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_feature_code_goes_to_routing_and_is_answered_with_a_tone_then_bye() {
    let mut s = shard(0, 1, 0, true);
    s.calls.set_config(CallConfig {
        queues: [("support".to_owned(), AnswerMode::OnAgent)].into_iter().collect(),
        codecs: default_codecs(),
        media_timeout: None,
        trusted_sources: Vec::new(),
        feature_tone: Some(Duration::from_millis(1000)),
    });
    let src = "198.51.100.7:5070";
    let body = "v=0\r\no=a 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n\
                m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let t0 = Instant::now();
    let inv = feature_invite(src, "*55*3", "f1", body);
    s.handle(Input::Datagram { data: inv.as_bytes(), src: addr(src) }, t0, WALL);
    let e = effects(&mut s);
    let ticket = e
        .iter()
        .find_map(|e| match e {
            Effect::Route(ToRouting::Feature { shard: 0, tx, req }) => {
                assert_eq!((req.user.as_str(), req.code.as_str()), ("alice", "*55*3"));
                assert_eq!(req.authorizations, vec!["Digest username=\"alice\"".to_string()]);
                Some(*tx)
            }
            _ => None,
        })
        .expect("told to routing");
    assert!(sent(&e).iter().all(|m| !m.starts_with("SIP/2.0 404")), "not taken for a queue");
    let reply = crate::acd::feature::FeatureReply::Done { action: "pause" };
    s.handle(Input::Routing(FromRouting::FeatureReply { tx: ticket, reply }), t0, WALL);
    let ok = sent(&effects(&mut s));
    assert!(ok.iter().any(|m| m.starts_with("SIP/2.0 200") && m.contains("m=audio 3")), "{ok:?}");
    assert_eq!(s.media().open.len(), 1, "a relay leg plays the tone");
    s.handle(Input::Timer, t0 + Duration::from_millis(1000), WALL);
    let bye = sent(&effects(&mut s));
    assert!(bye.iter().any(|m| m.starts_with("BYE sip:alice@198.51.100.7:5070")), "{bye:?}");
    assert!(s.media().open.is_empty(), "its leg closed");
    assert_eq!(s.calls().feature_calls(), 0);

    // A refusal is a final response; no media.
    let inv = feature_invite(src, "*56", "f2", body);
    s.handle(Input::Datagram { data: inv.as_bytes(), src: addr(src) }, t0, WALL);
    let ticket = effects(&mut s)
        .iter()
        .find_map(|e| match e {
            Effect::Route(ToRouting::Feature { tx, .. }) => Some(*tx),
            _ => None,
        })
        .unwrap();
    let reply = crate::acd::feature::FeatureReply::Forbidden("wrong credentials");
    s.handle(Input::Routing(FromRouting::FeatureReply { tx: ticket, reply }), t0, WALL);
    assert!(sent(&effects(&mut s)).iter().any(|m| m.starts_with("SIP/2.0 403")));
    assert!(s.media().open.is_empty());

    // Without an SDP offer nothing is asked of routing: 488.
    let inv = feature_invite(src, "*56", "f3", "");
    s.handle(Input::Datagram { data: inv.as_bytes(), src: addr(src) }, t0, WALL);
    let e = effects(&mut s);
    assert!(!e.iter().any(|e| matches!(e, Effect::Route(_))));
    assert!(sent(&e).iter().any(|m| m.starts_with("SIP/2.0 488")));
}

#[test]
fn with_feature_codes_off_a_star_code_is_just_no_queue() {
    let mut s = shard(0, 1, 0, true);
    let src = "198.51.100.7:5070";
    let body = "v=0\r\no=a 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n\
                m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let inv = feature_invite(src, "*55", "f1", body);
    s.handle(Input::Datagram { data: inv.as_bytes(), src: addr(src) }, Instant::now(), WALL);
    let e = effects(&mut s);
    assert!(!e.iter().any(|e| matches!(e, Effect::Route(_))));
    assert!(sent(&e).iter().any(|m| m.starts_with("SIP/2.0 404")));
}

fn register_over_tcp_keeps_the_flow_and_invite_over_tcp_is_answered_over_it() {
    let mut s = shard(0, 1, 0, true);
    let now = Instant::now();
    // The far end of a TCP connection (an ephemeral port), not the Contact's.
    let src = "198.51.100.20:40312";
    let reg = format!(
        "REGISTER sip:{ENGINE} SIP/2.0\r\nVia: SIP/2.0/TCP 198.51.100.20:5062;branch=z9hG4bKreg1\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@cc>;tag=r1\r\nTo: <sip:alice@cc>\r\nCall-ID: reg1@x\r\nCSeq: 1 REGISTER\r\n\
         Contact: <sip:alice@198.51.100.20:5062;transport=tcp>\r\nContent-Length: 0\r\n\r\n"
    );
    s.handle(Input::Stream { data: reg.as_bytes(), src: addr(src), transport: Transport::Tcp }, now, WALL);
    match effects(&mut s).as_slice() {
        [Effect::Route(ToRouting::Register { req, .. })] => match &req.contacts {
            crate::acd::ContactSet::List(l) => assert!(l.iter().all(|c| c.ob), "the flow is kept: {l:?}"),
            other => panic!("contacts: {other:?}"),
        },
        other => panic!("want one Register for routing, got {other:?}"),
    }
    // A customer's INVITE over TCP: the answers go to the connection's
    // far end, and our Contact asks for TCP.
    let inv = invite(src).replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    s.handle(Input::Stream { data: inv.as_bytes(), src: addr(src), transport: Transport::Tcp }, now, WALL);
    let sent: Vec<_> = effects(&mut s)
        .into_iter()
        .filter_map(|e| match e {
            Effect::Send(dest, data) => Some((dest, data)),
            _ => None,
        })
        .collect();
    assert!(!sent.is_empty());
    for (dest, data) in &sent {
        assert_eq!(*dest, addr(src));
        let text = std::str::from_utf8(data).unwrap();
        assert!(text.contains("Via: SIP/2.0/TCP"), "{text}");
    }
    assert_eq!(sample(&s, "cc_sip_stream_messages_total", "transport=\"tcp\""), 2);
}
