//! The call layer driven through a real `Endpoint` with raw SIP text from a
//! customer and an agent, a fake relay, and time passed in.

use crate::sip::view::View;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::acd::facts::{CallFact, CallId, Decision, EndReason, OfferResult, Party, RtpCounts};
use crate::media::sdp::default_codecs;
use crate::sip::message::scan;
use crate::sip::{Endpoint, EndpointConfig, Output};

const ENGINE: &str = "192.0.2.1:5060";
const CUSTOMER: &str = "198.51.100.7:5060";
const AGENT: &str = "203.0.113.5:5070";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[derive(Default)]
struct FakeMedia {
    next: u64,
    open: HashSet<RelayLegId>,
    /// Legs opened with RTCP deferred (not yet bridged).
    deferred_rtcp: HashSet<RelayLegId>,
    last: Option<RelayLegPorts>,
    exhausted: bool,
    hold: HashSet<RelayLegId>,
    bridged: Vec<(RelayLegId, RelayLegId)>,
    peers: HashMap<RelayLegId, Option<SocketAddr>>,
    closed: usize,
    hold_pt: Option<u8>,
}

impl MediaControl for FakeMedia {
    fn open_leg(&mut self, cfg: RelayLegConfig, _now: Instant) -> Result<RelayLegPorts, OpenError> {
        if self.exhausted {
            let range = crate::media::PortRange { start: 30000, end: 30001 };
            return Err(OpenError::Ports(crate::media::PortError::Exhausted { range, in_use: 1 }));
        }
        self.next += 1;
        let id = RelayLegId(self.next);
        self.open.insert(id);
        if cfg.defer_rtcp {
            self.deferred_rtcp.insert(id);
        }
        let port = 30000 + 2 * self.next as u16;
        let leg = RelayLegPorts {
            id,
            rtp: SocketAddr::new(addr(ENGINE).ip(), port),
            rtcp: SocketAddr::new(addr(ENGINE).ip(), port + 1),
        };
        self.last = Some(leg);
        Ok(leg)
    }
    fn set_peer(&mut self, leg: RelayLegId, rtp: Option<SocketAddr>, _rtcp: Option<SocketAddr>) {
        assert!(self.open.contains(&leg), "set_peer on closed leg");
        self.peers.insert(leg, rtp);
    }
    fn start_hold(&mut self, leg: RelayLegId, queue: &str, pt: u8) {
        assert!(self.open.contains(&leg));
        assert_eq!(queue, "support");
        self.hold_pt = Some(pt);
        self.hold.insert(leg);
    }
    fn stop_hold(&mut self, leg: RelayLegId) {
        self.hold.remove(&leg);
    }
    fn bridge(&mut self, a: RelayLegId, b: RelayLegId) {
        assert!(self.open.contains(&a) && self.open.contains(&b), "bridge of a closed leg");
        self.hold.remove(&a);
        self.hold.remove(&b);
        self.deferred_rtcp.remove(&a);
        self.deferred_rtcp.remove(&b);
        self.bridged.push((a, b));
    }
    fn close(&mut self, leg: RelayLegId, _now: Instant) {
        assert!(self.open.remove(&leg), "leg closed twice or never opened");
        self.hold.remove(&leg);
        self.deferred_rtcp.remove(&leg);
        self.closed += 1;
    }
    fn rtp_counts(&mut self, _c: RelayLegId, _a: RelayLegId) -> RtpCounts {
        RtpCounts {
            caller_to_agent: 10,
            agent_to_caller: 20,
        }
    }
}

struct H {
    ep: Endpoint,
    calls: CallTable,
    media: FakeMedia,
    now: Instant,
    wall: u64,
    sent: Vec<(SocketAddr, String)>,
    facts: Vec<CallFact>,
    unhandled: Vec<Output>,
}

fn sdp_body(port: u16, codecs: &str, dir: &str) -> String {
    let mut s = format!(
        "v=0\r\no=u 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio {port} RTP/AVP {codecs}\r\n"
    );
    for pt in codecs.split_whitespace() {
        match pt {
            "0" => s.push_str("a=rtpmap:0 PCMU/8000\r\n"),
            "8" => s.push_str("a=rtpmap:8 PCMA/8000\r\n"),
            "101" => s.push_str("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"),
            "18" => s.push_str("a=rtpmap:18 G729/8000\r\n"),
            _ => {}
        }
    }
    s.push_str(&format!("a={dir}\r\n"));
    s
}

fn hdr(msg: &str, name: &str) -> Option<String> {
    scan(msg.as_bytes()).ok()?.header(name).map(str::to_owned)
}

fn first_line(msg: &str) -> &str {
    msg.lines().next().unwrap_or("")
}

fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// A response to `req` (copied Via/From/To/Call-ID/CSeq).
fn reply(req: &str, status: u16, to_tag: Option<&str>, sdp: Option<&str>) -> String {
    let m = scan(req.as_bytes()).unwrap();
    let mut s = format!("SIP/2.0 {status} X\r\n");
    for v in m.via_values() {
        s.push_str(&format!("Via: {v}\r\n"));
    }
    let to = m.header("to").unwrap();
    let to = match to_tag {
        Some(t) if m.to_tag().is_none() => format!("{to};tag={t}"),
        _ => to.to_owned(),
    };
    s.push_str(&format!(
        "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:1001@{AGENT}>\r\n",
        m.header("from").unwrap(),
        m.call_id().unwrap(),
        m.header("cseq").unwrap()
    ));
    match sdp {
        Some(b) => s.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => s.push_str("Content-Length: 0\r\n\r\n"),
    }
    s
}

#[allow(clippy::too_many_arguments)]
/// An in-dialog request from the peer that received `our` request or
/// response in dialog: `from`/`to` swapped as the peer sees them.
fn peer_request(
    method: &str,
    ruri: &str,
    via: &str,
    from: &str,
    to: &str,
    call_id: &str,
    cseq: u32,
    sdp: Option<&str>,
) -> String {
    let mut s = format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK{method}{cseq}x\r\nMax-Forwards: 70\r\n\
         From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
    );
    match sdp {
        Some(b) => s.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => s.push_str("Content-Length: 0\r\n\r\n"),
    }
    s
}

impl H {
    fn new(mode: AnswerMode) -> H {
        H::sharded(mode, 0, 1)
    }

    fn sharded(mode: AnswerMode, shard: u16, shards: u16) -> H {
        let mut cfg = EndpointConfig::new(addr(ENGINE));
        cfg.rng_seed = 3;
        cfg.shard = shard;
        cfg.shards = shards;
        let ccfg = CallConfig {
            queues: [("support".to_owned(), mode)].into_iter().collect(),
            codecs: default_codecs(),
            media_timeout: Some(Duration::from_secs(60)),
            trusted_sources: vec![crate::config::Cidr::parse("198.51.100.7/32").unwrap()],
            feature_tone: None,
        };
        H {
            ep: Endpoint::new(cfg),
            calls: CallTable::new(ccfg, shard, 9),
            media: FakeMedia::default(),
            now: Instant::now(),
            wall: 1_700_000_000_000,
            sent: Vec::new(),
            facts: Vec::new(),
            unhandled: Vec::new(),
        }
    }

    fn pump(&mut self) {
        while let Some(o) = self.ep.poll_output() {
            match self
                .calls
                .on_output(&mut self.ep, &mut self.media, o, self.now, self.wall)
            {
                Handled::Done => {}
                Handled::NotMine(Output::Transmit { dest, data }) => {
                    self.sent.push((dest, String::from_utf8(data.to_vec()).unwrap()))
                }
                Handled::NotMine(o) => self.unhandled.push(o),
            }
        }
        while let Some(f) = self.calls.poll_fact() {
            self.facts.push(f);
        }
    }

    fn recv(&mut self, from: &str, text: &str) {
        self.ep.handle_datagram(text.as_bytes(), addr(from), self.now);
        self.pump();
    }

    fn decide(&mut self, d: Decision) {
        self.calls
            .on_decision(&mut self.ep, &mut self.media, d, self.now, self.wall);
        self.pump();
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next = [self.ep.poll_timeout(), self.calls.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.ep.handle_timeout(self.now);
                    self.pump();
                    self.calls
                        .handle_timeout(&mut self.ep, &mut self.media, self.now, self.wall);
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = end;
    }

    fn take_sent(&mut self) -> Vec<(SocketAddr, String)> {
        std::mem::take(&mut self.sent)
    }

    fn take_facts(&mut self) -> Vec<CallFact> {
        std::mem::take(&mut self.facts)
    }

    /// Messages sent to `to` whose first line starts with `prefix`.
    fn sent_to(&self, to: &str, prefix: &str) -> Vec<String> {
        self.sent
            .iter()
            .filter(|(d, m)| *d == addr(to) && m.starts_with(prefix))
            .map(|(_, m)| m.clone())
            .collect()
    }

    fn one_sent(&self, to: &str, prefix: &str) -> String {
        let v = self.sent_to(to, prefix);
        assert_eq!(v.len(), 1, "expected one {prefix:?} to {to}, sent: {:#?}", self.sent);
        v.into_iter().next().unwrap()
    }

    fn customer_invite(&mut self, extra: &str, sdp: &str) {
        let s = format!(
            "INVITE sip:support@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP {CUSTOMER};branch=z9hG4bKc1;rport\r\n\
             Max-Forwards: 70\r\nFrom: \"Alice\" <sip:alice@example.com>;tag=a1\r\nTo: <sip:support@192.0.2.1>\r\n\
             Call-ID: cust-1@example.com\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{CUSTOMER}>\r\n{extra}\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        self.recv(CUSTOMER, &s);
    }

    fn arrive(&mut self) -> CallId {
        self.customer_invite("Priority: urgent\r\n", &sdp_body(40000, "0 8 101", "sendrecv"));
        let facts = self.take_facts();
        let [CallFact::Arrived {
            call,
            queue,
            caller,
            priority_bonus,
            sip_call_id,
            ..
        }] = &facts[..]
        else {
            panic!("{facts:?} / {:#?}", self.sent)
        };
        assert_eq!(queue, "support");
        assert_eq!(caller, "sip:alice@example.com");
        assert_eq!(*priority_bonus, 2);
        assert_eq!(sip_call_id, "cust-1@example.com");
        assert!(self.sent_to(CUSTOMER, "SIP/2.0 100").len() == 1);
        self.take_sent();
        *call
    }

    /// The customer's To (with our tag) from our final/provisional response.
    fn our_customer_to(resp: &str) -> String {
        hdr(resp, "to").unwrap()
    }

    fn customer_ack(&mut self, to: &str) {
        let s = format!(
            "ACK sip:support@{ENGINE} SIP/2.0\r\nVia: SIP/2.0/UDP {CUSTOMER};branch=z9hG4bKack1\r\nMax-Forwards: 70\r\n\
             From: \"Alice\" <sip:alice@example.com>;tag=a1\r\nTo: {to}\r\nCall-ID: cust-1@example.com\r\n\
             CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        );
        self.recv(CUSTOMER, &s);
    }

    fn customer_in_dialog(&mut self, method: &str, to: &str, cseq: u32, sdp: Option<&str>) {
        let s = peer_request(
            method,
            &format!("sip:support@{ENGINE}"),
            CUSTOMER,
            "\"Alice\" <sip:alice@example.com>;tag=a1",
            to,
            "cust-1@example.com",
            cseq,
            sdp,
        );
        self.recv(CUSTOMER, &s);
    }

    /// Queued in immediate mode + ACK: returns the customer dialog's To.
    fn queued_immediate(&mut self, call: CallId) -> String {
        self.decide(Decision::Queued {
            call,
            queue: "support".into(),
            position: 1,
        });
        let ok = self.one_sent(CUSTOMER, "SIP/2.0 200");
        assert!(body(&ok).contains("m=audio 30002 RTP/AVP 0 101"), "{ok}");
        assert!(hdr(&ok, "contact").unwrap().contains("sip:support@192.0.2.1:5060"));
        let to = Self::our_customer_to(&ok);
        self.take_sent();
        self.customer_ack(&to);
        assert!(self.take_sent().is_empty());
        to
    }

    fn offer(&mut self, call: CallId) -> String {
        self.decide(Decision::Offer {
            call,
            agent: "1001".into(),
            targets: vec![(format!("sip:1001@{AGENT};transport=udp"), addr(AGENT))],
            ring_timeout_ms: 15_000,
        });
        let inv = self.one_sent(AGENT, "INVITE ");
        assert!(
            inv.to_ascii_lowercase()
                .starts_with(&format!("invite sip:1001@{AGENT};transport=udp sip/2.0")),
            "{inv}"
        );
        let b = body(&inv);
        // The agent's relay leg is opened for this offer.
        let leg = self.media.last.expect("agent leg opened");
        assert!(self.media.open.contains(&leg.id));
        assert!(b.contains(&format!("m=audio {} RTP/AVP 0 101", leg.rtp.port())), "{b}");
        assert!(!b.contains("PCMA"));
        assert!(hdr(&inv, "from").unwrap().contains("Alice (support)"));
        assert!(hdr(&inv, "call-id").unwrap().starts_with("cc0-"));
        self.take_sent();
        self.recv(AGENT, &reply(&inv, 180, Some("ag1"), None));
        inv
    }

    /// The agent answers `inv` with 200: returns the 200.
    fn agent_answers(&mut self, inv: &str) -> String {
        let ok = reply(inv, 200, Some("ag1"), Some(&sdp_body(50000, "0 101", "sendrecv")));
        self.recv(AGENT, &ok);
        ok
    }

    /// An agent-side in-dialog request (agent → us) for the dialog of `inv`.
    fn agent_in_dialog(&mut self, inv: &str, method: &str, cseq: u32, sdp: Option<&str>) {
        let from = format!("{};tag=ag1", hdr(inv, "to").unwrap());
        let to = hdr(inv, "from").unwrap();
        let s = peer_request(
            method,
            &format!("sip:support@{ENGINE}"),
            AGENT,
            &from,
            &to,
            &hdr(inv, "call-id").unwrap(),
            cseq,
            sdp,
        );
        self.recv(AGENT, &s);
    }

    /// Lets every transaction and cache run out, then checks nothing is left.
    fn assert_clean(&mut self) {
        // Answer whatever BYEs are outstanding, then let time pass.
        self.advance(Duration::from_secs(100));
        let c = self.calls.counts();
        assert!(c.is_idle(), "{c:?}");
        assert!(self.media.open.is_empty(), "legs left open: {:?}", self.media.open);
        assert!(self.media.hold.is_empty());
        assert_eq!(self.ep.transactions(), (0, 0));
        assert_eq!(self.ep.completed_transactions(), 0);
        assert!(self.unhandled.is_empty(), "{:?}", self.unhandled);
    }
}

fn answer_byes(h: &mut H, to: &str) {
    for bye in h.sent_to(to, "BYE ") {
        h.recv(to, &reply(&bye, 200, None, None));
    }
}

#[test]
fn queued_immediate_answers_and_plays_hold_then_caller_hangs_up() {
    let mut h = H::new(AnswerMode::Immediate);
    let call = h.arrive();
    let to = h.queued_immediate(call);
    assert_eq!(h.media.hold.len(), 1);
    h.customer_in_dialog("BYE", &to, 2, None);
    h.one_sent(CUSTOMER, "SIP/2.0 200");
    assert_eq!(h.take_facts(), vec![CallFact::Abandoned { call, at_ms: h.wall }]);
    h.assert_clean();
}

#[test]
fn on_agent_caller_waiting_gets_a_180_every_minute() {
    // §13.3.1.1 (found by tests/sim_calls.rs): without a fresh provisional
    // the caller's INVITE gives up at Timer C while still queued.
    let mut h = H::new(AnswerMode::OnAgent);
    let call = h.arrive();
    h.decide(Decision::Queued {
        call,
        queue: "support".into(),
        position: 1,
    });
    assert_eq!(h.sent_to(CUSTOMER, "SIP/2.0 180").len(), 1);
    h.take_sent();
    h.advance(Duration::from_secs(59));
    assert!(h.sent_to(CUSTOMER, "SIP/2.0 180").is_empty());
    h.advance(Duration::from_secs(2));
    assert_eq!(h.sent_to(CUSTOMER, "SIP/2.0 180").len(), 1);
    h.advance(Duration::from_secs(60));
    assert_eq!(h.sent_to(CUSTOMER, "SIP/2.0 180").len(), 2);
    // Answered: no more 180s.
    h.take_sent();
    let inv = h.offer(call);
    h.agent_answers(&inv);
    assert_eq!(h.sent_to(CUSTOMER, "SIP/2.0 200").len(), 1);
    h.advance(Duration::from_secs(130));
    assert!(h.sent_to(CUSTOMER, "SIP/2.0 180").is_empty());
}

#[test]
fn on_agent_rings_then_answers_when_agent_does() {
    let mut h = H::new(AnswerMode::OnAgent);
    let call = h.arrive();
    h.decide(Decision::Queued {
        call,
        queue: "support".into(),
        position: 1,
    });
    let ringing = h.one_sent(CUSTOMER, "SIP/2.0 180");
    assert!(hdr(&ringing, "to").unwrap().contains(";tag=cc0-"));
    assert!(h.sent_to(CUSTOMER, "SIP/2.0 200").is_empty());
    assert!(h.media.hold.is_empty());
    h.take_sent();
    let inv = h.offer(call);
    let ok = h.agent_answers(&inv);
    let ack = h.one_sent(AGENT, "ACK ");
    assert!(hdr(&ack, "cseq").unwrap() == "1 ACK");
    assert!(hdr(&ack, "to").unwrap().contains("tag=ag1"));
    let cust_ok = h.one_sent(CUSTOMER, "SIP/2.0 200");
    assert!(body(&cust_ok).contains("m=audio 30002"));
    assert_eq!(h.media.bridged.len(), 1);
    assert_eq!(h.media.peers.get(&RelayLegId(2)), Some(&Some(addr("198.51.100.7:50000"))));
    assert_eq!(
        h.take_facts(),
        vec![CallFact::OfferResult {
            call,
            agent: "1001".into(),
            result: OfferResult::Answered,
            at_ms: h.wall
        }]
    );
    // The agent's 2xx retransmitted: ACKed again.
    h.take_sent();
    h.recv(AGENT, &ok);
    assert_eq!(h.sent_to(AGENT, "ACK ").len(), 1);
    h.take_sent();
    let to = H::our_customer_to(&cust_ok);
    h.customer_ack(&to);
    // Agent hangs up first.
    h.agent_in_dialog(&inv, "BYE", 2, None);
    assert_eq!(h.sent_to(AGENT, "SIP/2.0 200").len(), 1);
    let bye = h.one_sent(CUSTOMER, "BYE ");
    assert!(bye.starts_with(&format!("BYE sip:alice@{CUSTOMER} SIP/2.0")), "{bye}");
    assert!(hdr(&bye, "from").unwrap().contains(&to[to.find("tag=").unwrap()..]));
    assert_eq!(
        h.take_facts(),
        vec![CallFact::Ended {
            call,
            at_ms: h.wall,
            hangup: Party::Agent,
            reason: EndReason::Normal,
            rtp: RtpCounts {
                caller_to_agent: 10,
                agent_to_caller: 20
            }
        }]
    );
    answer_byes(&mut h, CUSTOMER);
    h.assert_clean();
}

#[test]
fn rejected_gets_status_and_retry_after() {
    let mut h = H::new(AnswerMode::Immediate);
    let call = h.arrive();
    // A retransmitted INVITE is absorbed: 100 again, no second call.
    h.customer_invite("Priority: urgent\r\n", &sdp_body(40000, "0 8 101", "sendrecv"));
    h.one_sent(CUSTOMER, "SIP/2.0 100");
    assert!(h.take_facts().is_empty());
    assert_eq!(h.calls.counts().arrived, 1);
    h.take_sent();
    h.decide(Decision::Rejected {
        call,
        status: 503,
        retry_after_s: Some(30),
    });
    let r = h.one_sent(CUSTOMER, "SIP/2.0 503");
    assert_eq!(hdr(&r, "retry-after").as_deref(), Some("30"));
    assert!(h.take_facts().is_empty());
    // The endpoint absorbs the ACK of the 503.
    h.customer_ack(&hdr(&r, "to").unwrap());
    h.assert_clean();
}

#[test]
fn unknown_queue_is_404_without_fact() {
    let mut h = H::new(AnswerMode::Immediate);
    let sdp = sdp_body(40000, "0", "sendrecv");
    let s = format!(
        "INVITE sip:sales@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP {CUSTOMER};branch=z9hG4bKz;rport\r\nMax-Forwards: 70\r\n\
         From: <sip:a@x>;tag=1\r\nTo: <sip:sales@192.0.2.1>\r\nCall-ID: z\r\nCSeq: 1 INVITE\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    h.recv(CUSTOMER, &s);
    h.one_sent(CUSTOMER, "SIP/2.0 404");
    assert!(h.take_facts().is_empty());
    assert_eq!(h.media.next, 0);
    h.assert_clean();
}

/// Offer → agent 200 → bridged → customer BYE.
#[test]
fn bridged_then_customer_bye() {
    let mut h = H::new(AnswerMode::Immediate);
    let call = h.arrive();
    let to = h.queued_immediate(call);
    let inv = h.offer(call);
    h.agent_answers(&inv);
    assert!(h.media.hold.is_empty(), "hold stops when the agent answers");
    assert_eq!(h.media.bridged, vec![(RelayLegId(1), RelayLegId(2))]);
    assert_eq!(h.calls.bridged_legs(), vec![(RelayLegId(1), RelayLegId(2))]);
    assert!(
        h.sent_to(CUSTOMER, "SIP/2.0 200").is_empty(),
        "the customer was answered before"
    );
    h.take_sent();
    h.take_facts();
    assert_eq!(h.calls.counts().bridged, 1);
    h.customer_in_dialog("BYE", &to, 2, None);
    h.one_sent(CUSTOMER, "SIP/2.0 200");
    let bye = h.one_sent(AGENT, "BYE ");
    assert!(bye.starts_with(&format!("BYE sip:1001@{AGENT}")), "{bye}");
    assert_eq!(hdr(&bye, "cseq").as_deref(), Some("2 BYE"));
    assert!(hdr(&bye, "to").unwrap().contains("tag=ag1"));
    let facts = h.take_facts();
    assert!(
        matches!(
            facts[..],
            [CallFact::Ended {
                hangup: Party::Caller,
                reason: EndReason::Normal,
                ..
            }]
        ),
        "{facts:?}"
    );
    answer_byes(&mut h, AGENT);
    h.assert_clean();
}

#[test]
fn ring_timeout_cancels_and_reports_no_answer_then_late_200_is_acked_and_byed() {
    let mut h = H::new(AnswerMode::Immediate);
    let call = h.arrive();
    let to = h.queued_immediate(call);
    let inv = h.offer(call);
    h.advance(Duration::from_millis(15_000));
    let cancel = h.one_sent(AGENT, "CANCEL ");
    assert_eq!(hdr(&cancel, "cseq").as_deref(), Some("1 CANCEL"));
    assert_eq!(
        h.take_facts(),
        vec![CallFact::OfferResult {
            call,
            agent: "1001".into(),
            result: OfferResult::NoAnswer,
            at_ms: h.wall
        }]
    );
    assert_eq!(h.calls.counts().waiting, 1);
    assert_eq!(h.media.hold.len(), 1, "hold audio continues");
    h.take_sent();
    // 200 for the CANCEL, then the INVITE answered anyway (race).
    h.recv(AGENT, &reply(&cancel, 200, Some("ag1"), None));
    h.agent_answers(&inv);
    h.one_sent(AGENT, "ACK ");
    let bye = h.one_sent(AGENT, "BYE ");
    assert!(hdr(&bye, "to").unwrap().contains("tag=ag1"));
    assert!(h.take_facts().is_empty());
    assert!(h.media.bridged.is_empty());
    answer_byes(&mut h, AGENT);
    h.take_sent();
    // The caller gives up later.
    h.customer_in_dialog("BYE", &to, 2, None);
    assert_eq!(h.take_facts(), vec![CallFact::Abandoned { call, at_ms: h.wall }]);
    h.assert_clean();
}

#[test]
fn agent_busy_and_declined() {
    for (status, result) in [
        (486, OfferResult::Busy),
        (600, OfferResult::Busy),
        (603, OfferResult::Declined),
        (408, OfferResult::NoAnswer),
        (500, OfferResult::Failed { status: Some(500) }),
    ] {
        let mut h = H::new(AnswerMode::Immediate);
        let call = h.arrive();
        let to = h.queued_immediate(call);
        let inv = h.offer(call);
        h.recv(AGENT, &reply(&inv, status, Some("ag1"), None));
        assert_eq!(h.sent_to(AGENT, "ACK ").len(), 1, "the transaction ACKs non-2xx");
        assert_eq!(
            h.take_facts(),
            vec![CallFact::OfferResult {
                call,
                agent: "1001".into(),
                result,
                at_ms: h.wall
            }]
        );
        assert_eq!(h.calls.counts().waiting, 1);
        h.take_sent();
        // Offered again, to the same agent: works.
        let inv2 = h.offer(call);
        assert_ne!(hdr(&inv2, "call-id"), hdr(&inv, "call-id"));
        h.decide(Decision::TimedOut { call });
        h.one_sent(AGENT, "CANCEL ");
        let bye = h.one_sent(CUSTOMER, "BYE ");
        assert!(hdr(&bye, "to").unwrap().contains("tag=a1"));
        assert!(hdr(&bye, "from").unwrap() == to, "{bye}");
        assert!(h.take_facts().is_empty(), "TimedOut: nothing more about the call");
        answer_byes(&mut h, CUSTOMER);
        h.recv(AGENT, &reply(&inv2, 487, Some("ag2"), None));
        h.assert_clean();
    }
}

#[test]
fn caller_cancel_while_waiting_on_agent_mode() {
    let mut h = H::new(AnswerMode::OnAgent);
    let call = h.arrive();
    h.decide(Decision::Queued {
        call,
        queue: "support".into(),
        position: 3,
    });
    h.take_sent();
    let cancel = format!(
        "CANCEL sip:support@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP {CUSTOMER};branch=z9hG4bKc1;rport\r\nMax-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@example.com>;tag=a1\r\nTo: <sip:support@192.0.2.1>\r\n\
         Call-ID: cust-1@example.com\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    );
    h.recv(CUSTOMER, &cancel);
    h.one_sent(CUSTOMER, "SIP/2.0 200");
    let t = h.one_sent(CUSTOMER, "SIP/2.0 487");
    assert_eq!(h.take_facts(), vec![CallFact::Abandoned { call, at_ms: h.wall }]);
    h.customer_ack(&hdr(&t, "to").unwrap());
    // A decision for the gone call is ignored.
    h.decide(Decision::Offer {
        call,
        agent: "1001".into(),
        targets: vec![("sip:1001@x".into(), addr(AGENT))],
        ring_timeout_ms: 1000,
    });
    assert!(h.sent_to(AGENT, "INVITE").is_empty());
    h.assert_clean();
}

#[test]
fn caller_bye_while_agent_rings_cancels_agent() {
    let mut h = H::new(AnswerMode::Immediate);
    let call = h.arrive();
    let to = h.queued_immediate(call);
    let inv = h.offer(call);
    assert_eq!(h.calls.counts().ringing, 1);
    h.customer_in_dialog("BYE", &to, 2, None);
    h.one_sent(CUSTOMER, "SIP/2.0 200");
    let cancel = h.one_sent(AGENT, "CANCEL ");
    assert_eq!(h.take_facts(), vec![CallFact::Abandoned { call, at_ms: h.wall }]);
    h.recv(AGENT, &reply(&cancel, 200, Some("ag1"), None));
    h.recv(AGENT, &reply(&inv, 487, Some("ag1"), None));
    assert_eq!(h.sent_to(AGENT, "ACK ").len(), 1);
    h.assert_clean();
}

#[test]
fn reinvite_hold_passes_through_both_ways() {
    let mut h = H::new(AnswerMode::Immediate);
    let call = h.arrive();
    let to = h.queued_immediate(call);
    let inv = h.offer(call);
    h.agent_answers(&inv);
    h.take_sent();
    h.take_facts();
    // The agent puts the caller on hold.
    h.agent_in_dialog(&inv, "INVITE", 2, Some(&sdp_body(50000, "0 101", "sendonly")));
    let ok = h.one_sent(AGENT, "SIP/2.0 200");
    assert!(body(&ok).contains("a=recvonly"), "{ok}");
    assert!(body(&ok).contains("m=audio 30004"));
    let re = h.one_sent(CUSTOMER, "INVITE ");
    assert!(body(&re).contains("a=sendonly"), "{re}");
    assert!(body(&re).contains("m=audio 30002"));
    assert!(hdr(&re, "from").unwrap() == to);
    h.take_sent();
    // ACK from the agent; the customer answers our re-INVITE.
    let ack = peer_request(
        "ACK",
        &format!("sip:support@{ENGINE}"),
        AGENT,
        &format!("{};tag=ag1", hdr(&inv, "to").unwrap()),
        &hdr(&inv, "from").unwrap(),
        &hdr(&inv, "call-id").unwrap(),
        2,
        None,
    );
    h.recv(AGENT, &ack);
    let cust_ok = {
        let m = scan(re.as_bytes()).unwrap();
        let via = m.via_values().next().unwrap().to_owned();
        let b = sdp_body(40000, "0 101", "recvonly");
        format!(
            "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: cust-1@example.com\r\nCSeq: {}\r\n\
             Contact: <sip:alice@{CUSTOMER}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
            m.header("from").unwrap(),
            m.header("to").unwrap(),
            m.header("cseq").unwrap(),
            b.len()
        )
    };
    h.recv(CUSTOMER, &cust_ok);
    let ack = h.one_sent(CUSTOMER, "ACK ");
    assert_eq!(hdr(&ack, "cseq").as_deref(), Some("1 ACK"));
    h.take_sent();
    // Unhold from the customer side this time; INFO/OPTIONS in dialog fine.
    h.customer_in_dialog("INFO", &to, 2, None);
    h.one_sent(CUSTOMER, "SIP/2.0 200");
    h.take_sent();
    h.customer_in_dialog("INVITE", &to, 3, Some(&sdp_body(40002, "0 101", "sendrecv")));
    let ok = h.one_sent(CUSTOMER, "SIP/2.0 200");
    assert!(body(&ok).contains("a=sendrecv"));
    assert_eq!(h.media.peers.get(&RelayLegId(1)), Some(&Some(addr("198.51.100.7:40002"))));
    let re = h.one_sent(AGENT, "INVITE ");
    assert!(body(&re).contains("a=sendrecv"));
    assert_eq!(hdr(&re, "cseq").as_deref(), Some("2 INVITE"));
    h.take_sent();
    h.recv(
        AGENT,
        &reply(&re, 200, None, Some(&sdp_body(50002, "0 101", "sendrecv"))),
    );
    h.one_sent(AGENT, "ACK ");
    assert_eq!(h.media.peers.get(&RelayLegId(2)), Some(&Some(addr("198.51.100.7:50002"))));
    h.take_sent();
    let cack = format!(
        "ACK sip:support@{ENGINE} SIP/2.0\r\nVia: SIP/2.0/UDP {CUSTOMER};branch=z9hG4bKack3\r\nMax-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@example.com>;tag=a1\r\nTo: {to}\r\nCall-ID: cust-1@example.com\r\n\
         CSeq: 3 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    h.recv(CUSTOMER, &cack);
    h.customer_in_dialog("BYE", &to, 4, None);
    answer_byes(&mut h, AGENT);
    assert!(matches!(
        h.take_facts()[..],
        [CallFact::Ended {
            hangup: Party::Caller,
            ..
        }]
    ));
    h.assert_clean();
}

#[test]
fn media_timeout_hangs_up_both_legs() {
    let mut h = H::new(AnswerMode::Immediate);
    let call = h.arrive();
    h.queued_immediate(call);
    let inv = h.offer(call);
    // Agent leg silent before the bridge: ignored.
    let ev = crate::media::Event::MediaTimeout {
        leg: RelayLegId(2),
        idle: Duration::from_secs(60),
    };
    assert!(h.calls.on_media_event(&mut h.ep, &mut h.media, &ev, h.now, h.wall));
    h.pump();
    assert!(h.take_facts().is_empty());
    h.agent_answers(&inv);
    h.take_sent();
    h.take_facts();
    assert!(h.calls.on_media_event(&mut h.ep, &mut h.media, &ev, h.now, h.wall));
    h.pump();
    h.one_sent(CUSTOMER, "BYE ");
    h.one_sent(AGENT, "BYE ");
    let facts = h.take_facts();
    assert!(
        matches!(
            facts[..],
            [CallFact::Ended {
                hangup: Party::Engine,
                reason: EndReason::MediaTimeout,
                ..
            }]
        ),
        "{facts:?}"
    );
    // Unknown legs are not ours.
    let other = crate::media::Event::MediaTimeout {
        leg: RelayLegId(99),
        idle: Duration::from_secs(1),
    };
    assert!(!h.calls.on_media_event(&mut h.ep, &mut h.media, &other, h.now, h.wall));
    answer_byes(&mut h, CUSTOMER);
    answer_byes(&mut h, AGENT);
    h.assert_clean();
}

#[test]
fn timed_out_before_answer_is_408() {
    let mut h = H::new(AnswerMode::OnAgent);
    let call = h.arrive();
    h.decide(Decision::Queued {
        call,
        queue: "support".into(),
        position: 1,
    });
    h.take_sent();
    h.decide(Decision::TimedOut { call });
    let r = h.one_sent(CUSTOMER, "SIP/2.0 408");
    assert!(h.take_facts().is_empty());
    h.customer_ack(&hdr(&r, "to").unwrap());
    h.assert_clean();
}

#[test]
fn no_ack_for_our_200_is_bye_and_failed() {
    let mut h = H::new(AnswerMode::Immediate);
    let call = h.arrive();
    h.decide(Decision::Queued {
        call,
        queue: "support".into(),
        position: 1,
    });
    h.take_sent();
    h.advance(Duration::from_millis(500 * 64 + 10));
    // Retransmitted with T1 doubling to T2 meanwhile.
    let retrans = h.sent_to(CUSTOMER, "SIP/2.0 200").len();
    assert!((7..=11).contains(&retrans), "{retrans}");
    h.one_sent(CUSTOMER, "BYE ");
    let facts = h.take_facts();
    assert!(
        matches!(&facts[..], [CallFact::Failed { call: c, .. }] if *c == call),
        "{facts:?}"
    );
    h.assert_clean();
}

#[test]
fn sdp_errors_and_relay_exhaustion() {
    // No common codec → 488 with Warning.
    let mut h = H::new(AnswerMode::Immediate);
    h.customer_invite("", &sdp_body(40000, "18", "sendrecv"));
    let r = h.one_sent(CUSTOMER, "SIP/2.0 488");
    assert!(hdr(&r, "warning").unwrap().starts_with("305 "), "{r}");
    assert!(h.take_facts().is_empty());
    assert_eq!(h.media.next, 0);
    h.customer_ack(&hdr(&r, "to").unwrap());
    h.assert_clean();

    // Malformed → 400 naming the line.
    let mut h = H::new(AnswerMode::Immediate);
    h.customer_invite("", "v=0\r\no=broken\r\ns=-\r\n");
    let r = h.one_sent(CUSTOMER, "SIP/2.0 400");
    assert!(first_line(&r).contains("line 2"), "{r}");
    assert!(h.take_facts().is_empty());
    h.customer_ack(&hdr(&r, "to").unwrap());
    h.assert_clean();

    // Relay exhausted → 503.
    let mut h = H::new(AnswerMode::Immediate);
    h.media.exhausted = true;
    h.customer_invite("", &sdp_body(40000, "0", "sendrecv"));
    let r = h.one_sent(CUSTOMER, "SIP/2.0 503");
    assert!(hdr(&r, "retry-after").is_some());
    assert!(h.take_facts().is_empty());
    h.customer_ack(&hdr(&r, "to").unwrap());
    h.assert_clean();
}

#[test]
fn in_dialog_odds_and_ends() {
    let mut h = H::new(AnswerMode::Immediate);
    // BYE for an unknown dialog → 481.
    h.customer_in_dialog("BYE", "<sip:support@192.0.2.1>;tag=nope", 2, None);
    h.one_sent(CUSTOMER, "SIP/2.0 481");
    h.take_sent();
    // Out-of-dialog BYE → 481 too.
    let s = peer_request(
        "BYE",
        "sip:support@192.0.2.1",
        CUSTOMER,
        "<sip:a@x>;tag=1",
        "<sip:support@192.0.2.1>",
        "q",
        1,
        None,
    );
    h.recv(CUSTOMER, &s);
    h.one_sent(CUSTOMER, "SIP/2.0 481");
    h.take_sent();
    let call = h.arrive();
    let to = h.queued_immediate(call);
    h.customer_in_dialog("OPTIONS", &to, 2, None);
    h.one_sent(CUSTOMER, "SIP/2.0 200");
    h.customer_in_dialog("UPDATE", &to, 3, Some(&sdp_body(40000, "0", "sendrecv")));
    h.one_sent(CUSTOMER, "SIP/2.0 501");
    h.take_sent();
    h.customer_in_dialog("INFO", &to, 1, None);
    h.one_sent(CUSTOMER, "SIP/2.0 500");
    h.take_sent();
    h.decide(Decision::TimedOut { call });
    h.one_sent(CUSTOMER, "BYE ");
    answer_byes(&mut h, CUSTOMER);
    h.assert_clean();
}

#[test]
fn agent_answer_without_common_codec_is_byed_and_failed() {
    let mut h = H::new(AnswerMode::Immediate);
    let call = h.arrive();
    let to = h.queued_immediate(call);
    let inv = h.offer(call);
    h.recv(
        AGENT,
        &reply(&inv, 200, Some("ag1"), Some(&sdp_body(50000, "18", "sendrecv"))),
    );
    h.one_sent(AGENT, "ACK ");
    h.one_sent(AGENT, "BYE ");
    assert_eq!(
        h.take_facts(),
        vec![CallFact::OfferResult {
            call,
            agent: "1001".into(),
            result: OfferResult::Failed { status: Some(488) },
            at_ms: h.wall
        }]
    );
    assert!(h.media.bridged.is_empty());
    assert_eq!(h.media.hold.len(), 1, "the caller keeps hearing hold audio");
    answer_byes(&mut h, AGENT);
    h.take_sent();
    // A second offer while one rings is refused at once.
    h.offer(call);
    h.decide(Decision::Offer {
        call,
        agent: "1002".into(),
        targets: vec![("sip:1002@x".into(), addr(AGENT))],
        ring_timeout_ms: 1000,
    });
    assert_eq!(
        h.take_facts(),
        vec![CallFact::OfferResult {
            call,
            agent: "1002".into(),
            result: OfferResult::Failed { status: None },
            at_ms: h.wall
        }]
    );
    h.customer_in_dialog("BYE", &to, 2, None);
    assert_eq!(h.take_facts(), vec![CallFact::Abandoned { call, at_ms: h.wall }]);
    h.one_sent(AGENT, "CANCEL ");
    h.assert_clean();
}

#[test]
fn on_agent_customer_never_acks_ends_bridged_call() {
    let mut h = H::new(AnswerMode::OnAgent);
    let call = h.arrive();
    h.decide(Decision::Queued {
        call,
        queue: "support".into(),
        position: 1,
    });
    let inv = h.offer(call);
    h.agent_answers(&inv);
    h.take_facts();
    h.take_sent();
    h.advance(Duration::from_millis(500 * 64 + 10));
    h.one_sent(CUSTOMER, "BYE ");
    h.one_sent(AGENT, "BYE ");
    let facts = h.take_facts();
    assert!(
        matches!(
            facts[..],
            [CallFact::Ended {
                hangup: Party::Engine,
                reason: EndReason::Failed,
                ..
            }]
        ),
        "{facts:?}"
    );
    h.assert_clean();
}

#[test]
fn silent_agent_times_out_as_no_answer() {
    let mut h = H::new(AnswerMode::Immediate);
    let call = h.arrive();
    let to = h.queued_immediate(call);
    // Ring longer than Timer B; the agent never answers anything.
    h.decide(Decision::Offer {
        call,
        agent: "1001".into(),
        targets: vec![(format!("sip:1001@{AGENT}"), addr(AGENT))],
        ring_timeout_ms: 60_000,
    });
    h.advance(Duration::from_secs(33));
    assert!(h.sent_to(AGENT, "INVITE ").len() > 3, "retransmitted (Timer A)");
    assert_eq!(
        h.take_facts(),
        vec![CallFact::OfferResult {
            call,
            agent: "1001".into(),
            result: OfferResult::NoAnswer,
            at_ms: h.wall
        }]
    );
    h.take_sent();
    // Media timeout while waiting (answered, hold audio): the engine gives up.
    let ev = crate::media::Event::MediaTimeout {
        leg: RelayLegId(1),
        idle: Duration::from_secs(60),
    };
    assert!(h.calls.on_media_event(&mut h.ep, &mut h.media, &ev, h.now, h.wall));
    h.pump();
    let bye = h.one_sent(CUSTOMER, "BYE ");
    assert_eq!(hdr(&bye, "from").unwrap(), to);
    assert!(matches!(&h.take_facts()[..], [CallFact::Failed { .. }]));
    h.assert_clean();
}

/// Many calls, each driven by a random mix of customer, agent, router and
/// relay inputs (valid or not, in any order), then forced to end. Checks
/// the fact stream per call and that nothing leaks once time has passed.
#[test]
fn random_call_scripts_leave_nothing_behind() {
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    for mode in [AnswerMode::Immediate, AnswerMode::OnAgent] {
        let mut h = H::new(mode);
        let mut all_facts: Vec<CallFact> = Vec::new();
        for n in 0..150u32 {
            let cust = format!("198.51.100.7:{}", 6000 + n);
            let agent = format!("203.0.113.5:{}", 7000 + n);
            let call_id = format!("c{n}@example.com");
            let from = format!("<sip:c{n}@example.com>;tag=a{n}");
            let sdp = sdp_body(40000, "0 101", "sendrecv");
            let invite = format!(
                "INVITE sip:support@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP {cust};branch=z9hG4bKc{n};rport\r\n\
                 Max-Forwards: 70\r\nFrom: {from}\r\nTo: <sip:support@192.0.2.1>\r\nCall-ID: {call_id}\r\n\
                 CSeq: 1 INVITE\r\nContact: <sip:c@{cust}>\r\nContent-Type: application/sdp\r\n\
                 Content-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            );
            h.recv(&cust, &invite);
            let facts = h.take_facts();
            let Some(CallFact::Arrived { call, .. }) = facts.first().cloned() else {
                panic!("{facts:?}")
            };
            all_facts.extend(facts);
            let cust_leg = RelayLegId(h.media.next);
            let mut cseq = 1u32;
            let mut acseq = 1u32;
            let our_to = |h: &H| {
                h.sent
                    .iter()
                    .filter(|(d, m)| *d == addr(&cust) && m.starts_with("SIP/2.0 ") && m.contains(&call_id))
                    .filter_map(|(_, m)| hdr(m, "to"))
                    .find(|t| t.contains("tag="))
            };
            let last_agent_invite = |h: &H| {
                h.sent
                    .iter()
                    .rev()
                    .find(|(d, m)| *d == addr(&agent) && m.starts_with("INVITE "))
                    .map(|(_, m)| m.clone())
            };
            for _ in 0..12 {
                // Weighted: build-up more likely than endings.
                const ACTION: [u64; 30] = [
                    0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 3, 3, 3, 3, 4, 5, 5, 6, 6, 7, 13, 8, 9, 14, 10, 11, 12, 12,
                ];
                match ACTION[next(30) as usize] {
                    0 => h.decide(Decision::Queued {
                        call,
                        queue: "support".into(),
                        position: 1,
                    }),
                    1 => {
                        // Now and then the relay has no leg for the offer.
                        h.media.exhausted = next(4) == 0;
                        h.decide(Decision::Offer {
                            call,
                            agent: "1001".into(),
                            targets: vec![(format!("sip:1001@{agent}"), addr(&agent))],
                            ring_timeout_ms: 15_000,
                        });
                        h.media.exhausted = false;
                    }
                    s @ 2..=4 => {
                        if let Some(inv) = last_agent_invite(&h) {
                            let status = [180, 200, 486][(s - 2) as usize];
                            let body = (status == 200).then(|| sdp_body(50000, "0 101", "sendrecv"));
                            h.recv(&agent, &reply(&inv, status, Some(&format!("ag{n}")), body.as_deref()));
                        }
                    }
                    5 => h.advance(Duration::from_millis(next(20_000))),
                    6 => {
                        if let Some(to) = our_to(&h) {
                            let s = format!(
                                "ACK sip:support@{ENGINE} SIP/2.0\r\nVia: SIP/2.0/UDP {cust};branch=z9hG4bKa{n}\r\n\
                                 Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
                                 CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
                            );
                            h.recv(&cust, &s);
                        }
                    }
                    m @ (7 | 13) => {
                        if let Some(to) = our_to(&h) {
                            cseq += 1;
                            let (method, body) = if m == 7 {
                                ("BYE", None)
                            } else {
                                ("INVITE", Some(sdp_body(40000, "0 101", "sendonly")))
                            };
                            let s = peer_request(
                                method,
                                "sip:support@192.0.2.1",
                                &cust,
                                &from,
                                &to,
                                &call_id,
                                cseq,
                                body.as_deref(),
                            );
                            h.recv(&cust, &s);
                        }
                    }
                    8 => {
                        let s = format!(
                            "CANCEL sip:support@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP {cust};branch=z9hG4bKc{n};rport\r\n\
                             Max-Forwards: 70\r\nFrom: {from}\r\nTo: <sip:support@192.0.2.1>\r\nCall-ID: {call_id}\r\n\
                             CSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
                        );
                        h.recv(&cust, &s);
                    }
                    m @ (9 | 14) => {
                        if let Some(inv) = last_agent_invite(&h) {
                            acseq += 1;
                            let afrom = format!("{};tag=ag{n}", hdr(&inv, "to").unwrap());
                            let (method, body) = if m == 9 {
                                ("BYE", None)
                            } else {
                                ("INVITE", Some(sdp_body(50000, "0 101", "sendonly")))
                            };
                            let s = peer_request(
                                method,
                                "sip:support@192.0.2.1",
                                &agent,
                                &afrom,
                                &hdr(&inv, "from").unwrap(),
                                &hdr(&inv, "call-id").unwrap(),
                                acseq,
                                body.as_deref(),
                            );
                            h.recv(&agent, &s);
                        }
                    }
                    10 => h.decide(Decision::TimedOut { call }),
                    11 => h.decide(Decision::Rejected {
                        call,
                        status: 486,
                        retry_after_s: None,
                    }),
                    _ => {
                        // The customer's leg, or the newest (maybe the agent's, maybe closed).
                        let leg = if next(2) == 0 { cust_leg } else { RelayLegId(h.media.next) };
                        let ev = crate::media::Event::MediaTimeout {
                            leg,
                            idle: Duration::from_secs(60),
                        };
                        h.calls.on_media_event(&mut h.ep, &mut h.media, &ev, h.now, h.wall);
                        h.pump();
                    }
                }
                all_facts.extend(h.take_facts());
            }
            // Force the end: the router gives up, the caller hangs up.
            h.decide(Decision::TimedOut { call });
            if let Some(to) = our_to(&h) {
                cseq += 1;
                let s = peer_request("BYE", "sip:support@192.0.2.1", &cust, &from, &to, &call_id, cseq, None);
                h.recv(&cust, &s);
            }
            all_facts.extend(h.take_facts());
            h.take_sent();
            assert!(!h.calls.contains(call), "call {n} still alive");
        }
        // Per call: Arrived first, at most one terminal fact, nothing after it.
        let mut by_call: HashMap<CallId, Vec<&CallFact>> = HashMap::new();
        for f in &all_facts {
            by_call.entry(f.call()).or_default().push(f);
        }
        for (call, fs) in &by_call {
            assert!(matches!(fs[0], CallFact::Arrived { .. }), "{call}: {fs:?}");
            let terminal = |f: &CallFact| {
                matches!(
                    f,
                    CallFact::Abandoned { .. } | CallFact::Ended { .. } | CallFact::Failed { .. }
                )
            };
            let n_term = fs.iter().filter(|f| terminal(f)).count();
            assert!(n_term <= 1, "{call}: {fs:?}");
            if n_term == 1 {
                assert!(terminal(fs.last().unwrap()), "{call}: {fs:?}");
            }
            let answered = fs.iter().any(|f| {
                matches!(
                    f,
                    CallFact::OfferResult {
                        result: OfferResult::Answered,
                        ..
                    }
                )
            });
            let ended = fs.iter().any(|f| matches!(f, CallFact::Ended { .. }));
            assert_eq!(answered, ended, "{call}: Answered and Ended go together: {fs:?}");
        }
        let kinds = |k: fn(&CallFact) -> bool| all_facts.iter().filter(|f| k(f)).count();
        let answered = kinds(|f| {
            matches!(
                f,
                CallFact::OfferResult {
                    result: OfferResult::Answered,
                    ..
                }
            )
        });
        let ended = kinds(|f| matches!(f, CallFact::Ended { .. }));
        let abandoned = kinds(|f| matches!(f, CallFact::Abandoned { .. }));
        let failed = kinds(|f| matches!(f, CallFact::Failed { .. }));
        let offers = kinds(|f| matches!(f, CallFact::OfferResult { .. }));
        let no_leg = kinds(|f| {
            matches!(
                f,
                CallFact::OfferResult {
                    result: OfferResult::MediaUnavailable,
                    ..
                }
            )
        });
        eprintln!(
            "{mode:?}: answered {answered} ended {ended} abandoned {abandoned} failed {failed} offer results {offers} (no relay leg {no_leg})"
        );
        assert!(
            answered > 5 && ended > 5 && abandoned > 5 && offers > 20 && no_leg > 3,
            "the scripts reach every ending"
        );
        h.advance(Duration::from_secs(400));
        let c = h.calls.counts();
        assert!(c.is_idle(), "{c:?}");
        assert!(h.media.open.is_empty());
        assert_eq!(h.media.closed as u64, h.media.next, "every leg opened was closed once");
        assert!(h.media.next > 150, "agent legs were opened too");
        assert_eq!(h.ep.transactions(), (0, 0));
        assert_eq!(h.ep.completed_transactions(), 0);
        assert!(h.unhandled.is_empty(), "{:?}", h.unhandled);
    }
}

#[test]
fn route_sets_follow_record_route() {
    let mut h = H::new(AnswerMode::Immediate);
    h.customer_invite(
        "Record-Route: <sip:edge1.example;lr>, <sip:edge2.example;lr>\r\n",
        &sdp_body(40000, "0 101", "sendrecv"),
    );
    let Some(CallFact::Arrived { call, .. }) = h.take_facts().into_iter().next() else {
        panic!()
    };
    h.take_sent();
    h.decide(Decision::Queued {
        call,
        queue: "support".into(),
        position: 1,
    });
    let ok200 = h.one_sent(CUSTOMER, "SIP/2.0 200");
    let rr: Vec<_> = scan(ok200.as_bytes())
        .unwrap()
        .headers_named("record-route")
        .map(str::to_owned)
        .collect();
    assert_eq!(
        rr,
        vec!["<sip:edge1.example;lr>", "<sip:edge2.example;lr>"],
        "§12.1.1: copied into the 2xx"
    );
    let to = hdr(&ok200, "to").unwrap();
    h.take_sent();
    h.customer_ack(&to);
    let inv = h.offer(call);
    let mut ok = reply(&inv, 200, Some("ag1"), Some(&sdp_body(50000, "0", "sendrecv")));
    ok = ok.replacen(
        "Contact:",
        "Record-Route: <sip:p1.example;lr>\r\nRecord-Route: <sip:p2.example;lr>\r\nContact:",
        1,
    );
    h.recv(AGENT, &ok);
    let ack = h.one_sent(AGENT, "ACK ");
    let routes: Vec<_> = scan(ack.as_bytes())
        .unwrap()
        .headers_named("route")
        .map(str::to_owned)
        .collect();
    assert_eq!(routes, vec!["<sip:p2.example;lr>", "<sip:p1.example;lr>"], "{ack}");
    h.take_sent();
    h.decide(Decision::TimedOut { call }); // ignored: bridged
    assert!(h.sent.is_empty());
    h.customer_in_dialog("BYE", &to, 2, None);
    let bye = h.one_sent(AGENT, "BYE ");
    let routes: Vec<_> = scan(bye.as_bytes())
        .unwrap()
        .headers_named("route")
        .map(str::to_owned)
        .collect();
    assert_eq!(routes, vec!["<sip:p2.example;lr>", "<sip:p1.example;lr>"]);
    answer_byes(&mut h, AGENT);
    h.take_sent();
    // And the customer side: its BYE (from a media timeout here) carries
    // the Record-Route of its INVITE in order.
    let mut h2 = H::new(AnswerMode::Immediate);
    h2.customer_invite(
        "Record-Route: <sip:edge1.example;lr>, <sip:edge2.example;lr>\r\n",
        &sdp_body(40000, "0 101", "sendrecv"),
    );
    let Some(CallFact::Arrived { call, .. }) = h2.take_facts().into_iter().next() else {
        panic!()
    };
    h2.take_sent();
    h2.queued_immediate(call);
    let ev = crate::media::Event::MediaTimeout {
        leg: RelayLegId(1),
        idle: Duration::from_secs(60),
    };
    h2.calls.on_media_event(&mut h2.ep, &mut h2.media, &ev, h2.now, h2.wall);
    h2.pump();
    let bye = h2.one_sent(CUSTOMER, "BYE ");
    let routes: Vec<_> = scan(bye.as_bytes())
        .unwrap()
        .headers_named("route")
        .map(str::to_owned)
        .collect();
    assert_eq!(
        routes,
        vec!["<sip:edge1.example;lr>", "<sip:edge2.example;lr>"],
        "{bye}"
    );
    h.assert_clean();
    h2.assert_clean();
}

#[test]
fn one_codec_end_to_end_pcma_caller() {
    let mut h = H::new(AnswerMode::Immediate);
    h.customer_invite("", &sdp_body(40000, "18 8 0 101", "sendrecv"));
    let Some(CallFact::Arrived {
        call,
        priority_bonus: 0,
        ..
    }) = h.take_facts().into_iter().next()
    else {
        panic!()
    };
    h.take_sent();
    h.decide(Decision::Queued {
        call,
        queue: "support".into(),
        position: 1,
    });
    let ok = h.one_sent(CUSTOMER, "SIP/2.0 200");
    assert!(body(&ok).contains("m=audio 30002 RTP/AVP 8 101\r\n"), "{ok}");
    assert!(!body(&ok).contains("PCMU"));
    assert_eq!(h.media.hold_pt, Some(8), "hold audio in the caller's law");
    let to = hdr(&ok, "to").unwrap();
    h.take_sent();
    h.customer_ack(&to);
    h.decide(Decision::Offer {
        call,
        agent: "1001".into(),
        targets: vec![(format!("sip:1001@{AGENT}"), addr(AGENT))],
        ring_timeout_ms: 15_000,
    });
    let inv = h.one_sent(AGENT, "INVITE ");
    assert!(body(&inv).contains("m=audio 30004 RTP/AVP 8 101\r\n"), "{inv}");
    // An agent answering with PCMU only cannot be bridged without transcoding.
    h.recv(
        AGENT,
        &reply(&inv, 200, Some("ag1"), Some(&sdp_body(50000, "0", "sendrecv"))),
    );
    h.one_sent(AGENT, "BYE ");
    assert!(matches!(
        &h.take_facts()[..],
        [CallFact::OfferResult {
            result: OfferResult::Failed { status: Some(488) },
            ..
        }]
    ));
    answer_byes(&mut h, AGENT);
    h.customer_in_dialog("BYE", &to, 2, None);
    assert!(matches!(&h.take_facts()[..], [CallFact::Abandoned { .. }]));
    h.assert_clean();
}

/// The agent's replies and requests land on another shard (the kernel
/// hashes by source address): our ids bring them back to the owner.
#[test]
fn agent_messages_on_another_shard_reach_the_owner() {
    let mut h = H::sharded(AnswerMode::Immediate, 1, 2);
    let mut other = Endpoint::new({
        let mut c = EndpointConfig::new(addr(ENGINE));
        c.shard = 0;
        c.shards = 2;
        c
    });
    let call = h.arrive();
    assert_eq!(call.shard(), 1);
    let to = h.queued_immediate(call);
    h.decide(Decision::Offer {
        call,
        agent: "1001".into(),
        targets: vec![(format!("sip:1001@{AGENT}"), addr(AGENT))],
        ring_timeout_ms: 15_000,
    });
    let inv = h.one_sent(AGENT, "INVITE ");
    assert!(hdr(&inv, "call-id").unwrap().starts_with("cc1-"));
    assert!(hdr(&inv, "from").unwrap().contains("tag=cc1-"));
    h.take_sent();
    // Via the wrong shard: forwarded, then handled by the owner.
    let mut via_other = |h: &mut H, text: &str| {
        other.handle_datagram(text.as_bytes(), addr(AGENT), h.now);
        let outs: Vec<_> = std::iter::from_fn(|| other.poll_output()).collect();
        assert_eq!(outs.len(), 1, "{outs:?}");
        let Output::Forward { shard: 1, data, src } = &outs[0] else {
            panic!("{outs:?}")
        };
        h.ep.handle_forwarded(data, *src, h.now);
        h.pump();
    };
    via_other(
        &mut h,
        &reply(&inv, 200, Some("ag1"), Some(&sdp_body(50000, "0 101", "sendrecv"))),
    );
    h.one_sent(AGENT, "ACK ");
    assert!(matches!(
        &h.take_facts()[..],
        [CallFact::OfferResult {
            result: OfferResult::Answered,
            ..
        }]
    ));
    h.take_sent();
    let bye = peer_request(
        "BYE",
        &format!("sip:support@{ENGINE}"),
        AGENT,
        &format!("{};tag=ag1", hdr(&inv, "to").unwrap()),
        &hdr(&inv, "from").unwrap(),
        &hdr(&inv, "call-id").unwrap(),
        2,
        None,
    );
    via_other(&mut h, &bye);
    h.one_sent(AGENT, "SIP/2.0 200");
    let cbye = h.one_sent(CUSTOMER, "BYE ");
    assert_eq!(hdr(&cbye, "from").unwrap(), to);
    assert!(matches!(
        &h.take_facts()[..],
        [CallFact::Ended {
            hangup: Party::Agent,
            ..
        }]
    ));
    answer_byes(&mut h, CUSTOMER);
    h.assert_clean();
}

/// The agent holds and unholds before the customer answered our first
/// re-INVITE: the unhold waits for it and then goes out.
#[test]
fn quick_hold_unhold_is_not_lost() {
    let mut h = H::new(AnswerMode::Immediate);
    let call = h.arrive();
    h.queued_immediate(call);
    let inv = h.offer(call);
    h.agent_answers(&inv);
    h.take_sent();
    h.take_facts();
    h.agent_in_dialog(&inv, "INVITE", 2, Some(&sdp_body(50000, "0 101", "sendonly")));
    let re1 = h.one_sent(CUSTOMER, "INVITE ");
    assert!(body(&re1).contains("a=sendonly"));
    h.take_sent();
    h.agent_in_dialog(&inv, "INVITE", 3, Some(&sdp_body(50000, "0 101", "sendrecv")));
    h.one_sent(AGENT, "SIP/2.0 200");
    assert!(h.sent_to(CUSTOMER, "INVITE ").is_empty(), "one re-INVITE at a time");
    h.take_sent();
    // The customer refuses the first one (491); the queued unhold follows.
    let m = scan(re1.as_bytes()).unwrap();
    let r491 = format!(
        "SIP/2.0 491 Request Pending\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: cust-1@example.com\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        m.via_values().next().unwrap(),
        m.header("from").unwrap(),
        m.header("to").unwrap(),
        m.header("cseq").unwrap()
    );
    h.recv(CUSTOMER, &r491);
    h.one_sent(CUSTOMER, "ACK ");
    let re2 = h.one_sent(CUSTOMER, "INVITE ");
    assert!(body(&re2).contains("a=sendrecv"), "{re2}");
    assert_eq!(hdr(&re2, "cseq").as_deref(), Some("2 INVITE"));
    h.take_sent();
    // The call ends with the second one unanswered: nothing leaks.
    h.agent_in_dialog(&inv, "BYE", 4, None);
    answer_byes(&mut h, CUSTOMER);
    assert!(matches!(
        &h.take_facts()[..],
        [CallFact::Ended {
            hangup: Party::Agent,
            ..
        }]
    ));
    h.assert_clean();
}

#[test]
fn register_and_foreign_outputs_are_not_mine() {
    let mut h = H::new(AnswerMode::Immediate);
    let reg = format!(
        "REGISTER sip:192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP {AGENT};branch=z9hG4bKr1\r\nMax-Forwards: 70\r\n\
         From: <sip:1001@192.0.2.1>;tag=r\r\nTo: <sip:1001@192.0.2.1>\r\nCall-ID: reg1\r\nCSeq: 1 REGISTER\r\n\
         Contact: <sip:1001@{AGENT}>\r\nContent-Length: 0\r\n\r\n"
    );
    h.recv(AGENT, &reg);
    let Some(Output::Request { tx, request, .. }) = h.unhandled.pop() else {
        panic!("{:?}", h.unhandled)
    };
    assert_eq!(request.method(), Some("REGISTER"));
    assert!(h.unhandled.is_empty());
    h.ep.respond(tx, crate::sip::ResponseSpec::new(200), h.now);
    h.pump();
    h.assert_clean();
}

#[test]
fn hangup_all_on_shutdown() {
    let mut h = H::new(AnswerMode::OnAgent);
    let call = h.arrive();
    h.decide(Decision::Queued {
        call,
        queue: "support".into(),
        position: 1,
    });
    h.offer(call);
    h.take_sent();
    h.calls.hangup_all(&mut h.ep, &mut h.media, h.now, h.wall);
    h.pump();
    let r = h.one_sent(CUSTOMER, "SIP/2.0 503");
    h.one_sent(AGENT, "CANCEL ");
    assert!(matches!(&h.take_facts()[..], [CallFact::Failed { reason, .. }] if reason.contains("shutting down")));
    h.customer_ack(&hdr(&r, "to").unwrap());
    h.assert_clean();
}

#[test]
fn a_waiting_call_holds_only_its_customer_leg() {
    let mut h = H::new(AnswerMode::Immediate);
    let call = h.arrive();
    let cust = RelayLegId(1);
    assert_eq!(h.media.open, HashSet::from([cust]), "no agent leg before an offer");
    assert!(h.media.deferred_rtcp.contains(&cust), "RTCP waits for the bridge");
    let to = h.queued_immediate(call);
    assert_eq!(h.media.hold, HashSet::from([cust]));
    assert_eq!((h.calls.counts().waiting, h.calls.counts().legs), (1, 1));
    let inv = h.offer(call);
    assert_eq!(h.media.open.len(), 2);
    assert_eq!(h.calls.counts().legs, 2);
    h.agent_answers(&inv);
    assert_eq!(h.media.bridged, vec![(cust, RelayLegId(2))]);
    assert!(h.media.deferred_rtcp.is_empty(), "bridged: RTCP bound");
    h.take_sent();
    h.customer_in_dialog("BYE", &to, 2, None);
    answer_byes(&mut h, AGENT);
    h.assert_clean();
    assert_eq!(h.media.closed, 2);
}

#[test]
fn a_call_back_in_the_queue_releases_its_agent_leg() {
    // Each way an offer ends without a bridge closes the agent leg at once.
    for how in ["486", "ring timeout", "408 timeout", "bad answer"] {
        let mut h = H::new(AnswerMode::Immediate);
        let call = h.arrive();
        let to = h.queued_immediate(call);
        let inv = h.offer(call);
        let agent_leg = h.media.last.unwrap().id;
        match how {
            "486" => h.recv(AGENT, &reply(&inv, 486, Some("ag1"), None)),
            "ring timeout" => h.advance(Duration::from_millis(15_000)),
            "408 timeout" => h.advance(Duration::from_secs(14)), // still ringing; its 408 comes below
            _ => {
                let bad = reply(&inv, 200, Some("ag1"), Some(&sdp_body(50000, "18", "sendrecv")));
                h.recv(AGENT, &bad);
            }
        }
        if how == "408 timeout" {
            // Still ringing: the leg is the offer's until it ends.
            assert!(h.media.open.contains(&agent_leg), "{how}");
            h.recv(AGENT, &reply(&inv, 408, Some("ag1"), None));
        }
        let facts = h.take_facts();
        assert!(
            matches!(&facts[..], [CallFact::OfferResult { result, .. }] if *result != OfferResult::Answered),
            "{how}: {facts:?}"
        );
        assert_eq!(h.media.open, HashSet::from([RelayLegId(1)]), "{how}: only the customer leg left");
        assert_eq!(h.calls.counts().legs, 1, "{how}");
        assert_eq!(h.calls.counts().waiting, 1, "{how}");
        assert_eq!(h.media.hold.len(), 1, "{how}: hold audio goes on");
        // Offered again: a fresh agent leg.
        h.take_sent();
        let inv2 = h.offer(call);
        assert_ne!(h.media.last.unwrap().id, agent_leg);
        h.agent_answers(&inv2);
        assert_eq!(h.media.bridged.len(), 1, "{how}");
        h.take_sent();
        h.customer_in_dialog("BYE", &to, 2, None);
        answer_byes(&mut h, AGENT);
        for c in h.sent_to(AGENT, "CANCEL ") {
            h.recv(AGENT, &reply(&c, 200, Some("ag1"), None));
        }
        if how == "ring timeout" {
            h.recv(AGENT, &reply(&inv, 487, Some("ag1"), None));
        }
        h.assert_clean();
    }
}

#[test]
fn offer_without_a_relay_leg_keeps_the_call_queued() {
    let mut h = H::new(AnswerMode::Immediate);
    let call = h.arrive();
    let to = h.queued_immediate(call);
    h.media.exhausted = true;
    h.decide(Decision::Offer {
        call,
        agent: "1001".into(),
        targets: vec![(format!("sip:1001@{AGENT}"), addr(AGENT))],
        ring_timeout_ms: 15_000,
    });
    assert!(h.sent.is_empty(), "the agent is not rung: {:?}", h.sent);
    assert_eq!(
        h.take_facts(),
        vec![CallFact::OfferResult {
            call,
            agent: "1001".into(),
            result: OfferResult::MediaUnavailable,
            at_ms: h.wall
        }]
    );
    let c = h.calls.counts();
    assert_eq!((c.waiting, c.ringing, c.legs, c.transactions), (1, 0, 1, 0));
    assert_eq!(h.media.hold.len(), 1, "the caller keeps hearing hold audio");
    // Ports free again: the router's next offer goes through.
    h.media.exhausted = false;
    let inv = h.offer(call);
    h.agent_answers(&inv);
    assert_eq!(h.media.bridged.len(), 1);
    h.take_sent();
    h.customer_in_dialog("BYE", &to, 2, None);
    answer_byes(&mut h, AGENT);
    h.assert_clean();
}

const AGENT2: &str = "203.0.113.6:5070";

impl H {
    /// Offers `call` to agent 1001 registered from two phones: returns the
    /// INVITEs to each.
    fn offer_two_phones(&mut self, call: CallId) -> (String, String) {
        self.decide(Decision::Offer {
            call,
            agent: "1001".into(),
            targets: vec![
                (format!("sip:1001@{AGENT}"), addr(AGENT)),
                (format!("sip:1001@{AGENT2}"), addr(AGENT2)),
            ],
            ring_timeout_ms: 15_000,
        });
        let a = self.one_sent(AGENT, "INVITE ");
        let b = self.one_sent(AGENT2, "INVITE ");
        assert_ne!(hdr(&a, "call-id"), hdr(&b, "call-id"), "each phone is a dialog of its own");
        assert_eq!(body(&a), body(&b), "both phones are offered the same relay leg");
        assert_eq!(self.media.open.len(), 2, "one relay leg for the customer, one for the agent");
        self.take_sent();
        self.recv(AGENT, &reply(&a, 180, Some("p1"), None));
        self.recv(AGENT2, &reply(&b, 180, Some("p2"), None));
        (a, b)
    }
}

#[test]
fn two_phones_ring_the_first_answer_wins_and_the_other_is_cancelled() {
    let mut h = H::new(AnswerMode::Immediate);
    let call = h.arrive();
    let to = h.queued_immediate(call);
    let (a, b) = h.offer_two_phones(call);
    assert!(h.take_facts().is_empty());
    // The second phone answers first.
    h.recv(AGENT2, &reply(&b, 200, Some("p2"), Some(&sdp_body(50002, "0 101", "sendrecv"))));
    h.one_sent(AGENT2, "ACK ");
    let cancel = h.one_sent(AGENT, "CANCEL ");
    assert_eq!(hdr(&cancel, "call-id"), hdr(&a, "call-id"));
    assert_eq!(h.media.bridged.len(), 1);
    assert_eq!(
        h.take_facts(),
        vec![CallFact::OfferResult {
            call,
            agent: "1001".into(),
            result: OfferResult::Answered,
            at_ms: h.wall
        }]
    );
    h.take_sent();
    h.recv(AGENT, &reply(&cancel, 200, None, None));
    h.recv(AGENT, &reply(&a, 487, Some("p1"), None));
    assert!(h.take_facts().is_empty(), "the cancelled phone is no fact");
    // The call is with the second phone: the caller's BYE goes there.
    h.customer_in_dialog("BYE", &to, 2, None);
    let bye = h.one_sent(AGENT2, "BYE ");
    assert!(hdr(&bye, "to").unwrap().contains("tag=p2"));
    assert!(h.sent_to(AGENT, "BYE ").is_empty());
    answer_byes(&mut h, AGENT2);
    h.assert_clean();
}

#[test]
fn two_phones_a_200_crossing_the_cancel_is_acked_and_byed() {
    let mut h = H::new(AnswerMode::Immediate);
    let call = h.arrive();
    let to = h.queued_immediate(call);
    let (a, b) = h.offer_two_phones(call);
    h.recv(AGENT, &reply(&a, 200, Some("p1"), Some(&sdp_body(50000, "0 101", "sendrecv"))));
    h.one_sent(AGENT, "ACK ");
    let cancel = h.one_sent(AGENT2, "CANCEL ");
    h.take_sent();
    // The other phone answered too, before it saw the CANCEL.
    h.recv(AGENT2, &reply(&cancel, 481, None, None));
    h.recv(AGENT2, &reply(&b, 200, Some("p2"), Some(&sdp_body(50002, "0 101", "sendrecv"))));
    h.one_sent(AGENT2, "ACK ");
    let bye = h.one_sent(AGENT2, "BYE ");
    assert!(hdr(&bye, "to").unwrap().contains("tag=p2"));
    assert_eq!(h.media.bridged.len(), 1, "exactly one bridge");
    let facts = h.take_facts();
    assert_eq!(facts.len(), 1, "{facts:?}");
    answer_byes(&mut h, AGENT2);
    h.take_sent();
    h.customer_in_dialog("BYE", &to, 2, None);
    answer_byes(&mut h, AGENT);
    h.assert_clean();
}

#[test]
fn two_phones_fail_once_both_have_with_the_most_telling_result() {
    for (s1, s2, result) in [
        (486, 603, OfferResult::Busy),
        (603, 500, OfferResult::Declined),
        (500, 486, OfferResult::Busy),
        (480, 408, OfferResult::NoAnswer),
        (500, 503, OfferResult::Failed { status: Some(500) }),
    ] {
        let mut h = H::new(AnswerMode::Immediate);
        let call = h.arrive();
        h.queued_immediate(call);
        let (a, b) = h.offer_two_phones(call);
        h.recv(AGENT, &reply(&a, s1, Some("p1"), None));
        assert!(h.take_facts().is_empty(), "the other phone still rings");
        assert_eq!(h.calls.counts().ringing, 1);
        assert!(h.sent_to(AGENT2, "CANCEL ").is_empty());
        h.recv(AGENT2, &reply(&b, s2, Some("p2"), None));
        assert_eq!(
            h.take_facts(),
            vec![CallFact::OfferResult {
                call,
                agent: "1001".into(),
                result,
                at_ms: h.wall
            }],
            "{s1} {s2}"
        );
        assert_eq!(h.calls.counts().waiting, 1);
        assert_eq!(h.media.open.len(), 1, "the agent's relay leg is closed");
        h.decide(Decision::TimedOut { call });
        answer_byes(&mut h, CUSTOMER);
        h.assert_clean();
    }
}

#[test]
fn two_phones_ring_out_together() {
    let mut h = H::new(AnswerMode::Immediate);
    let call = h.arrive();
    h.queued_immediate(call);
    let (a, b) = h.offer_two_phones(call);
    h.advance(Duration::from_millis(15_000));
    let c1 = h.one_sent(AGENT, "CANCEL ");
    let c2 = h.one_sent(AGENT2, "CANCEL ");
    assert_eq!(
        h.take_facts(),
        vec![CallFact::OfferResult {
            call,
            agent: "1001".into(),
            result: OfferResult::NoAnswer,
            at_ms: h.wall
        }]
    );
    h.take_sent();
    h.recv(AGENT, &reply(&c1, 200, None, None));
    h.recv(AGENT, &reply(&a, 487, Some("p1"), None));
    h.recv(AGENT2, &reply(&c2, 200, None, None));
    h.recv(AGENT2, &reply(&b, 487, Some("p2"), None));
    assert!(h.take_facts().is_empty());
    h.decide(Decision::TimedOut { call });
    answer_byes(&mut h, CUSTOMER);
    h.assert_clean();
}

#[test]
fn max_duration_byes_both_legs_and_reports_it() {
    let mut h = H::new(AnswerMode::Immediate);
    let call = h.arrive();
    h.queued_immediate(call);
    let inv = h.offer(call);
    h.agent_answers(&inv);
    h.take_sent();
    h.take_facts();
    h.decide(Decision::MaxDuration { call });
    h.one_sent(CUSTOMER, "BYE ");
    h.one_sent(AGENT, "BYE ");
    let facts = h.take_facts();
    assert!(
        matches!(
            facts[..],
            [CallFact::Ended {
                hangup: Party::Engine,
                reason: EndReason::MaxDuration,
                ..
            }]
        ),
        "{facts:?}"
    );
    answer_byes(&mut h, CUSTOMER);
    answer_byes(&mut h, AGENT);
    // Late: the call is gone; nothing happens.
    h.take_sent();
    h.decide(Decision::MaxDuration { call });
    assert!(h.take_sent().is_empty() && h.take_facts().is_empty());
    h.assert_clean();
}

#[test]
fn max_duration_leaves_a_call_not_bridged_alone() {
    let mut h = H::new(AnswerMode::Immediate);
    let call = h.arrive();
    h.queued_immediate(call);
    h.decide(Decision::MaxDuration { call });
    assert!(h.take_sent().is_empty() && h.take_facts().is_empty());
    assert_eq!(h.calls.counts().waiting, 1);
    h.decide(Decision::TimedOut { call });
    answer_byes(&mut h, CUSTOMER);
    h.assert_clean();
}

#[test]
fn priority_and_skills_headers_count_only_from_trusted_sources() {
    let asking = "Priority: emergency\r\nX-CC-Skills: french>=40, billing\r\n";
    let arrived = |h: &mut H| match &h.take_facts()[..] {
        [CallFact::Arrived { priority_bonus, skills, .. }] => {
            (*priority_bonus, skills.iter().map(ToString::to_string).collect::<Vec<_>>())
        }
        other => panic!("{other:?}"),
    };
    let mut h = H::new(AnswerMode::Immediate);
    h.customer_invite(asking, &sdp_body(40000, "0 8 101", "sendrecv"));
    assert_eq!(arrived(&mut h), (3, vec!["french>=40".to_owned(), "billing".to_owned()]));
    assert_eq!(h.calls.untrusted_priority(), 0);

    let mut h = H::new(AnswerMode::Immediate);
    h.calls.cfg.trusted_sources = vec![crate::config::Cidr::parse("198.51.100.0/31").unwrap()];
    h.customer_invite(asking, &sdp_body(40000, "0 8 101", "sendrecv"));
    assert_eq!(arrived(&mut h), (0, Vec::new()));
    assert_eq!(h.calls.untrusted_priority(), 1);
}

const AGENT3: &str = "203.0.113.7:5070";

fn offer_fact(call: CallId, agent: &str, result: OfferResult, at_ms: u64) -> CallFact {
    CallFact::OfferResult { call, agent: agent.into(), result, at_ms }
}

impl H {
    /// Ring-all of `call` to agent 1001 (on AGENT) and 1002 (on AGENT2, and
    /// on AGENT3 if `two_phones`): returns the INVITEs in that order.
    fn ring_all(&mut self, call: CallId, two_phones: bool) -> Vec<String> {
        let mut second = vec![(format!("sip:1002@{AGENT2}"), addr(AGENT2))];
        if two_phones {
            second.push((format!("sip:1002@{AGENT3}"), addr(AGENT3)));
        }
        self.decide(Decision::RingAll {
            call,
            agents: vec![
                ("1001".into(), vec![(format!("sip:1001@{AGENT}"), addr(AGENT))]),
                ("1002".into(), second),
            ],
            ring_timeout_ms: 15_000,
        });
        let mut invs = vec![self.one_sent(AGENT, "INVITE "), self.one_sent(AGENT2, "INVITE ")];
        if two_phones {
            invs.push(self.one_sent(AGENT3, "INVITE "));
        }
        assert!(invs.iter().all(|i| body(i) == body(&invs[0])), "one relay leg for all");
        assert!(hdr(&invs[0], "to").unwrap().contains("sip:1001@"));
        assert!(hdr(&invs[1], "to").unwrap().contains("sip:1002@"));
        assert_eq!(self.media.open.len(), 2, "one relay leg for the customer, one for the agents");
        self.take_sent();
        for (i, (inv, to)) in invs.iter().zip([AGENT, AGENT2, AGENT3]).enumerate() {
            self.recv(to, &reply(inv, 180, Some(&format!("r{i}")), None));
        }
        assert!(self.take_facts().is_empty());
        invs
    }
}

#[test]
fn ring_all_first_answer_wins_the_other_agent_is_cancelled_and_told_first() {
    let mut h = H::new(AnswerMode::Immediate);
    let call = h.arrive();
    let to = h.queued_immediate(call);
    let invs = h.ring_all(call, false);
    h.recv(AGENT2, &reply(&invs[1], 200, Some("r1"), Some(&sdp_body(50002, "0 101", "sendrecv"))));
    h.one_sent(AGENT2, "ACK ");
    let cancel = h.one_sent(AGENT, "CANCEL ");
    assert_eq!(hdr(&cancel, "call-id"), hdr(&invs[0], "call-id"));
    assert_eq!(h.media.bridged.len(), 1);
    assert_eq!(
        h.take_facts(),
        vec![
            offer_fact(call, "1001", OfferResult::Cancelled, h.wall),
            offer_fact(call, "1002", OfferResult::Answered, h.wall),
        ]
    );
    h.take_sent();
    h.recv(AGENT, &reply(&cancel, 200, None, None));
    h.recv(AGENT, &reply(&invs[0], 487, Some("r0"), None));
    assert!(h.take_facts().is_empty());
    h.customer_in_dialog("BYE", &to, 2, None);
    let bye = h.one_sent(AGENT2, "BYE ");
    assert!(hdr(&bye, "to").unwrap().contains("tag=r1"));
    assert!(h.sent_to(AGENT, "BYE ").is_empty());
    answer_byes(&mut h, AGENT2);
    h.assert_clean();
}

#[test]
fn ring_all_two_answers_at_once_one_bridge_the_late_200_is_acked_and_byed() {
    let mut h = H::new(AnswerMode::Immediate);
    let call = h.arrive();
    let to = h.queued_immediate(call);
    let invs = h.ring_all(call, false);
    h.recv(AGENT, &reply(&invs[0], 200, Some("r0"), Some(&sdp_body(50000, "0 101", "sendrecv"))));
    let cancel = h.one_sent(AGENT2, "CANCEL ");
    h.take_sent();
    h.recv(AGENT2, &reply(&cancel, 481, None, None));
    h.recv(AGENT2, &reply(&invs[1], 200, Some("r1"), Some(&sdp_body(50002, "0 101", "sendrecv"))));
    h.one_sent(AGENT2, "ACK ");
    let bye = h.one_sent(AGENT2, "BYE ");
    assert!(hdr(&bye, "to").unwrap().contains("tag=r1"));
    assert_eq!(h.media.bridged.len(), 1, "exactly one bridge");
    assert_eq!(
        h.take_facts(),
        vec![
            offer_fact(call, "1002", OfferResult::Cancelled, h.wall),
            offer_fact(call, "1001", OfferResult::Answered, h.wall),
        ]
    );
    answer_byes(&mut h, AGENT2);
    h.take_sent();
    h.customer_in_dialog("BYE", &to, 2, None);
    answer_byes(&mut h, AGENT);
    h.assert_clean();
}

#[test]
fn ring_all_an_agent_that_rejects_is_told_at_once_while_the_other_rings_on() {
    let mut h = H::new(AnswerMode::Immediate);
    let call = h.arrive();
    let to = h.queued_immediate(call);
    let invs = h.ring_all(call, true);
    // One of 1002's two phones refuses: 1002 still rings on the other.
    h.recv(AGENT3, &reply(&invs[2], 603, Some("r2"), None));
    assert!(h.take_facts().is_empty());
    h.recv(AGENT, &reply(&invs[0], 486, Some("r0"), None));
    assert_eq!(h.take_facts(), vec![offer_fact(call, "1001", OfferResult::Busy, h.wall)]);
    assert_eq!(h.calls.counts().ringing, 1);
    assert!(h.sent_to(AGENT2, "CANCEL ").is_empty());
    h.recv(AGENT2, &reply(&invs[1], 200, Some("r1"), Some(&sdp_body(50002, "0 101", "sendrecv"))));
    assert_eq!(h.take_facts(), vec![offer_fact(call, "1002", OfferResult::Answered, h.wall)]);
    assert_eq!(h.media.bridged.len(), 1);
    h.take_sent();
    h.customer_in_dialog("BYE", &to, 2, None);
    answer_byes(&mut h, AGENT2);
    h.assert_clean();
}

#[test]
fn ring_all_every_agent_fails_each_with_its_own_result() {
    let mut h = H::new(AnswerMode::Immediate);
    let call = h.arrive();
    h.queued_immediate(call);
    let invs = h.ring_all(call, true);
    h.recv(AGENT2, &reply(&invs[1], 486, Some("r1"), None));
    h.recv(AGENT, &reply(&invs[0], 480, Some("r0"), None));
    assert_eq!(
        h.take_facts(),
        vec![offer_fact(call, "1001", OfferResult::Failed { status: Some(480) }, h.wall)]
    );
    assert_eq!(h.media.open.len(), 2, "1002's other phone still rings");
    h.recv(AGENT3, &reply(&invs[2], 603, Some("r2"), None));
    assert_eq!(h.take_facts(), vec![offer_fact(call, "1002", OfferResult::Busy, h.wall)], "the most telling of 1002's");
    assert_eq!(h.calls.counts().waiting, 1);
    assert_eq!(h.media.open.len(), 1, "the agents' relay leg is closed");
    h.decide(Decision::TimedOut { call });
    answer_byes(&mut h, CUSTOMER);
    h.assert_clean();
}

#[test]
fn ring_all_rings_out_as_no_answer_for_every_agent() {
    let mut h = H::new(AnswerMode::Immediate);
    let call = h.arrive();
    h.queued_immediate(call);
    let invs = h.ring_all(call, false);
    h.advance(Duration::from_millis(15_000));
    let c1 = h.one_sent(AGENT, "CANCEL ");
    let c2 = h.one_sent(AGENT2, "CANCEL ");
    assert_eq!(
        h.take_facts(),
        vec![
            offer_fact(call, "1001", OfferResult::NoAnswer, h.wall),
            offer_fact(call, "1002", OfferResult::NoAnswer, h.wall),
        ]
    );
    h.take_sent();
    h.recv(AGENT, &reply(&c1, 200, None, None));
    h.recv(AGENT, &reply(&invs[0], 487, Some("r0"), None));
    h.recv(AGENT2, &reply(&c2, 200, None, None));
    h.recv(AGENT2, &reply(&invs[1], 487, Some("r1"), None));
    assert!(h.take_facts().is_empty());
    h.decide(Decision::TimedOut { call });
    answer_byes(&mut h, CUSTOMER);
    h.assert_clean();
}

#[test]
fn ring_all_without_a_relay_leg_answers_for_every_agent() {
    let mut h = H::new(AnswerMode::Immediate);
    let call = h.arrive();
    h.queued_immediate(call);
    h.media.exhausted = true;
    h.decide(Decision::RingAll {
        call,
        agents: vec![
            ("1001".into(), vec![(format!("sip:1001@{AGENT}"), addr(AGENT))]),
            ("1002".into(), Vec::new()),
        ],
        ring_timeout_ms: 15_000,
    });
    assert!(h.sent.is_empty());
    assert_eq!(
        h.take_facts(),
        vec![
            offer_fact(call, "1001", OfferResult::MediaUnavailable, h.wall),
            offer_fact(call, "1002", OfferResult::MediaUnavailable, h.wall),
        ]
    );
    // With ports, an agent without a phone is answered for at once and
    // the other rings.
    h.media.exhausted = false;
    h.decide(Decision::RingAll {
        call,
        agents: vec![
            ("1001".into(), vec![(format!("sip:1001@{AGENT}"), addr(AGENT))]),
            ("1002".into(), Vec::new()),
        ],
        ring_timeout_ms: 15_000,
    });
    assert_eq!(h.take_facts(), vec![offer_fact(call, "1002", OfferResult::Failed { status: None }, h.wall)]);
    let inv = h.one_sent(AGENT, "INVITE ");
    h.take_sent();
    h.recv(AGENT, &reply(&inv, 486, Some("r0"), None));
    assert_eq!(h.take_facts(), vec![offer_fact(call, "1001", OfferResult::Busy, h.wall)]);
    h.decide(Decision::TimedOut { call });
    answer_byes(&mut h, CUSTOMER);
    h.assert_clean();
}

fn an_operator_hangup_of_a_ringing_unanswered_call_gives_the_caller_its_status_and_cancels_the_agent() {
    let mut h = H::new(AnswerMode::OnAgent);
    let call = h.arrive();
    h.decide(Decision::Queued { call, queue: "support".into(), position: 1 });
    let inv = h.offer(call);
    h.take_sent();
    h.take_facts();
    h.decide(Decision::Hangup { call, status: 480 });
    h.one_sent(CUSTOMER, "SIP/2.0 480");
    h.one_sent(AGENT, "CANCEL ");
    let facts = h.take_facts();
    assert!(
        matches!(&facts[..], [CallFact::Failed { reason, .. }] if reason == crate::acd::facts::OPERATOR_HANGUP),
        "{facts:?}"
    );
    h.recv(AGENT, &reply(&inv, 487, Some("ag1"), None));
    // Late: the call is gone; nothing happens.
    h.take_sent();
    h.decide(Decision::Hangup { call, status: 480 });
    assert!(h.take_sent().is_empty() && h.take_facts().is_empty());
}

fn an_operator_hangup_of_a_bridged_call_byes_both_legs_and_reports_it() {
    let mut h = H::new(AnswerMode::Immediate);
    let call = h.arrive();
    h.queued_immediate(call);
    let inv = h.offer(call);
    h.agent_answers(&inv);
    h.take_sent();
    h.take_facts();
    h.decide(Decision::Hangup { call, status: 480 });
    h.one_sent(CUSTOMER, "BYE ");
    h.one_sent(AGENT, "BYE ");
    let facts = h.take_facts();
    assert!(
        matches!(facts[..], [CallFact::Ended { hangup: Party::Engine, reason: EndReason::OperatorHangup, .. }]),
        "{facts:?}"
    );
    answer_byes(&mut h, CUSTOMER);
    answer_byes(&mut h, AGENT);
    h.assert_clean();
}

fn an_operator_hangup_of_a_caller_on_hold_audio_byes_it() {
    let mut h = H::new(AnswerMode::Immediate);
    let call = h.arrive();
    h.queued_immediate(call);
    h.take_sent();
    h.take_facts();
    h.decide(Decision::Hangup { call, status: 480 });
    h.one_sent(CUSTOMER, "BYE ");
    assert!(h.sent_to(CUSTOMER, "SIP/2.0 480").is_empty(), "answered already: a BYE, not a final response");
    let facts = h.take_facts();
    assert!(
        matches!(&facts[..], [CallFact::Failed { reason, .. }] if reason == crate::acd::facts::OPERATOR_HANGUP),
        "{facts:?}"
    );
    answer_byes(&mut h, CUSTOMER);
    h.assert_clean();
}
