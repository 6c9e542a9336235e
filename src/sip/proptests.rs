//! Property tests: hostile datagrams never panic and only ever produce
//! well-formed responses; transactions over a lossy, duplicating, reordering
//! network give each request exactly one outcome and drain to zero.

use crate::sip::view::View;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;

use super::endpoint::{Endpoint, EndpointConfig, Output, ResponseSpec};
use super::ids::IdRng;
use super::message::scan;
use super::transaction::{ClientTxId, ServerTxId};

fn cases(default: u32) -> u32 {
    std::env::var("SIP_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|_| unreachable!())
}

const SEEDS: &[&str] = &[
    "INVITE sip:support@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.50:5070;branch=z9hG4bKa1;rport\r\n\
     Max-Forwards: 70\r\nFrom: \"Cust\" <sip:cust@x>;tag=c1\r\nTo: <sip:support@192.0.2.1>\r\n\
     Call-ID: call-1@x\r\nCSeq: 1 INVITE\r\nContact: <sip:cust@192.0.2.50:5070>\r\n\
     Content-Type: application/sdp\r\nContent-Length: 31\r\n\r\nv=0\r\no=- 1 1 IN IP4 192.0.2.50\r\n",
    "REGISTER sip:192.0.2.1 SIP/2.0\r\nv: SIP/2.0/UDP 192.0.2.50:5070;branch=z9hG4bKr1\r\n\
     f: <sip:agent@x>;tag=r1\r\nt: <sip:agent@x>\r\ni: reg-1\r\nCSeq: 7 REGISTER\r\n\
     m: <sip:agent@192.0.2.50:5070>;expires=300\r\nl: 0\r\n\r\n",
    "OPTIONS sip:192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKo1\r\n\
     From: <sip:p@x>;tag=o1\r\nTo: <sip:192.0.2.1>\r\nCall-ID: o-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 0\r\n\r\n",
    "BYE sip:support@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.50:5070;branch=z9hG4bKb1\r\n\
     From: <sip:cust@x>;tag=c1\r\nTo: <sip:support@192.0.2.1>;tag=cc0-1\r\nCall-ID: call-1@x\r\n\
     CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
    "ACK sip:support@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.50:5070;branch=z9hG4bKa1\r\n\
     From: <sip:cust@x>;tag=c1\r\nTo: <sip:support@192.0.2.1>;tag=cc0-1\r\nCall-ID: call-1@x\r\n\
     CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
    "CANCEL sip:support@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.50:5070;branch=z9hG4bKa1\r\n\
     From: <sip:cust@x>;tag=c1\r\nTo: <sip:support@192.0.2.1>\r\nCall-ID: call-1@x\r\n\
     CSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
];

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    Flip(usize, u8),
    DupLine(usize),
    DelLine(usize),
    ContentLength(u32),
    Insert(usize, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0usize..600).prop_map(Mutation::Truncate),
        (0usize..600, any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (0usize..12).prop_map(Mutation::DupLine),
        (0usize..12).prop_map(Mutation::DelLine),
        prop_oneof![0u32..100, Just(u32::MAX), Just(70_000)].prop_map(Mutation::ContentLength),
        (0usize..600, proptest::collection::vec(any::<u8>(), 0..16))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
    ]
}

fn apply(mut data: Vec<u8>, m: &Mutation) -> Vec<u8> {
    match m {
        Mutation::Truncate(n) => data.truncate(*n),
        Mutation::Flip(i, b) => {
            if let Some(x) = data.get_mut(*i) {
                *x ^= b | 1;
            }
        }
        Mutation::Insert(i, v) => {
            let at = (*i).min(data.len());
            data.splice(at..at, v.iter().copied());
        }
        Mutation::DupLine(i) | Mutation::DelLine(i) => {
            let text = String::from_utf8_lossy(&data).into_owned();
            let mut lines: Vec<&str> = text.split("\r\n").collect();
            let i = 1 + i % lines.len().max(1);
            if i < lines.len() {
                if matches!(m, Mutation::DupLine(_)) {
                    let l = lines[i];
                    lines.insert(i, l);
                } else {
                    lines.remove(i);
                }
            }
            data = lines.join("\r\n").into_bytes();
        }
        Mutation::ContentLength(n) => {
            let text = String::from_utf8_lossy(&data).into_owned();
            let mut out = Vec::new();
            for l in text.split("\r\n") {
                let lower = l.to_ascii_lowercase();
                if lower.starts_with("content-length:") || lower.starts_with("l:") {
                    out.push(format!("Content-Length: {n}"));
                } else {
                    out.push(l.to_owned());
                }
            }
            data = out.join("\r\n").into_bytes();
        }
    }
    data
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..1500),
        (0..SEEDS.len(), proptest::collection::vec(mutation(), 0..4)).prop_map(|(s, ms)| {
            ms.iter().fold(SEEDS[s].as_bytes().to_vec(), apply)
        }),
        // A response to the client transaction the fuzz endpoint has open.
        (proptest::collection::vec(mutation(), 0..3), 100u16..700).prop_map(
            |(ms, code)| {
                let r = format!(
                    "SIP/2.0 {code} Whatever\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=BRANCH;rport=5060\r\n\
                     From: <sip:q@192.0.2.1>;tag=x\r\nTo: <sip:a@b>;tag=y\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
                     Content-Length: 0\r\n\r\n"
                );
                ms.iter().fold(r.into_bytes(), apply)
            }
        ),
    ]
}

fn fuzz_endpoint(t0: Instant) -> (Endpoint, String) {
    let mut cfg = EndpointConfig::new(addr("192.0.2.1:5060"));
    cfg.shards = 2;
    let mut e = Endpoint::new(cfg);
    let invite = rsip::Request::try_from(
        "INVITE sip:a@192.0.2.50 SIP/2.0\r\nFrom: <sip:q@192.0.2.1>\r\nTo: <sip:a@b>\r\n\r\n",
    )
    .unwrap_or_else(|_| unreachable!());
    e.send_request(invite, addr("192.0.2.50:5070"), t0);
    let mut branch = String::new();
    while let Some(o) = e.poll_output() {
        if let Output::Transmit { data, .. } = o {
            let text = String::from_utf8_lossy(&data).into_owned();
            if let Some(v) = scan(text.as_bytes())
                .ok()
                .and_then(|m| m.top_via().and_then(|v| v.branch).map(str::to_owned))
            {
                branch = v;
            }
        }
    }
    (e, branch)
}

/// Checks every output; the TU answers every request 486 so the server
/// transactions can end.
fn check_outputs(e: &mut Endpoint, now: Instant) -> Result<(), TestCaseError> {
    let mut to_answer = Vec::new();
    while let Some(o) = e.poll_output() {
        match o {
            Output::Transmit { data, .. } => {
                let text = std::str::from_utf8(&data)
                    .map_err(|_| TestCaseError::fail("non-UTF-8 output"))?;
                let msg = rsip::SipMessage::try_from(text).map_err(|err| {
                    TestCaseError::fail(format!("unparsable output {err}: {text}"))
                })?;
                match msg {
                    rsip::SipMessage::Response(r) => {
                        let code = r.status_code.code();
                        prop_assert!((100..700).contains(&code), "{text}");
                    }
                    // Retransmissions of our own INVITE / ACK of a non-2xx.
                    rsip::SipMessage::Request(r) => {
                        prop_assert!(
                            matches!(r.method, rsip::Method::Invite | rsip::Method::Ack),
                            "{text}"
                        )
                    }
                }
            }
            Output::Forward { shard, .. } => prop_assert_eq!(shard, 1),
            Output::Request { tx, .. } => to_answer.push(tx),
            _ => {}
        }
    }
    for tx in to_answer {
        e.respond(tx, ResponseSpec::new(486), now);
        check_outputs(e, now)?;
    }
    Ok(())
}

proptest! {
    // SIP_FUZZ_CASES raises the count for a longer soak.
    #![proptest_config(ProptestConfig { cases: cases(2000), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn hostile_datagrams_never_panic(inputs in proptest::collection::vec(input(), 1..4)) {
        let t0 = Instant::now();
        let (mut e, branch) = fuzz_endpoint(t0);
        let src = addr("192.0.2.50:5070");
        for (i, d) in inputs.iter().enumerate() {
            let d = String::from_utf8_lossy(d).replace("BRANCH", &branch);
            let now = t0 + Duration::from_millis(i as u64 * 300);
            e.handle_datagram(d.as_bytes(), src, now);
            e.handle_forwarded(d.as_bytes(), src, now);
            check_outputs(&mut e, now)?;
            // Raw bytes too (the lossy round trip hides invalid UTF-8).
            e.handle_datagram(&inputs[i], src, now);
            check_outputs(&mut e, now)?;
            e.handle_timeout(now);
            check_outputs(&mut e, now)?;
        }
        let end = t0 + Duration::from_secs(300);
        e.handle_timeout(end);
        check_outputs(&mut e, end)?;
        prop_assert_eq!(e.transactions(), (0, 0));
        prop_assert_eq!(e.completed_transactions(), 0);
    }
}

// ------------------------------------------------------------ lossy network

struct Net {
    rng: IdRng,
    loss: u64,
    dup: u64,
    seq: u64,
    /// (deliver at, seq) → (to server?, data)
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    packets: HashMap<u64, (bool, Bytes)>,
}

impl Net {
    fn chance(&mut self, percent: u64) -> bool {
        self.rng.next_u64() % 100 < percent
    }

    fn send(&mut self, to_server: bool, data: Bytes, now: Instant) {
        if self.chance(self.loss) {
            return;
        }
        let copies = if self.chance(self.dup) { 2 } else { 1 };
        for _ in 0..copies {
            let delay = Duration::from_millis(self.rng.next_u64() % 400);
            self.seq += 1;
            self.queue.push(Reverse((now + delay, self.seq)));
            self.packets.insert(self.seq, (to_server, data.clone()));
        }
    }
}

#[derive(Default, Debug)]
struct Outcome {
    finals: Vec<u16>,
    timeouts: u32,
}

/// Server-side ACK bookkeeping of one simulation: (ACKs matched, 2xx never ACKed).
fn simulate(
    seed: u64,
    loss: u64,
    dup: u64,
    methods: &[(bool, u16)],
) -> Result<(u32, u32), TestCaseError> {
    let (ca, sa) = (addr("192.0.2.1:5060"), addr("192.0.2.50:5070"));
    let mut ccfg = EndpointConfig::new(ca);
    ccfg.rng_seed = seed;
    let mut scfg = EndpointConfig::new(sa);
    scfg.rng_seed = seed ^ 1;
    let (mut client, mut server) = (Endpoint::new(ccfg), Endpoint::new(scfg));
    let mut net = Net {
        rng: IdRng::new(seed),
        loss,
        dup,
        seq: 0,
        queue: BinaryHeap::new(),
        packets: HashMap::new(),
    };
    let t0 = Instant::now();
    let mut outcomes: HashMap<ClientTxId, Outcome> = HashMap::new();
    let mut statuses: HashMap<String, u16> = HashMap::new();
    // Status 0: the UAS rings (180) and waits; the UAC cancels on the first
    // provisional; the UAS answers 487 to a CANCEL, or 480 after 60 s.
    let mut to_cancel: HashSet<ClientTxId> = HashSet::new();
    let mut ringing: HashMap<ServerTxId, Instant> = HashMap::new();
    let mut invites: HashSet<ClientTxId> = HashSet::new();
    for (i, (invite, status)) in methods.iter().enumerate() {
        let m = if *invite { "INVITE" } else { "REGISTER" };
        let text = format!("{m} sip:a@192.0.2.50 SIP/2.0\r\nFrom: <sip:q@192.0.2.1>\r\nTo: <sip:a@b>\r\nCall-ID: sim-{i}\r\n\r\n");
        let req = rsip::Request::try_from(text.as_str())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        statuses.insert(format!("sim-{i}"), *status);
        let tx = client.send_request(req, sa, t0);
        outcomes.insert(tx, Outcome::default());
        if *invite {
            invites.insert(tx);
            if *status == 0 {
                to_cancel.insert(tx);
            }
        }
    }
    let end = t0 + Duration::from_secs(200);
    let mut now = t0;
    let (mut acked, mut unacked) = (0u32, 0u32);
    loop {
        // Drain both endpoints.
        while let Some(o) = client.poll_output() {
            match o {
                Output::Transmit { data, .. } => net.send(true, data, now),
                Output::Response { tx, response } => {
                    let code = response.status().unwrap();
                    if code >= 200 {
                        outcomes.entry(tx).or_default().finals.push(code);
                    } else if to_cancel.remove(&tx) {
                        if let Some(c) = client.cancel(tx, now) {
                            outcomes.insert(c, Outcome::default());
                        }
                    }
                    if (200..300).contains(&code) && invites.contains(&tx) {
                        prop_assert!(client.send_ack_2xx(&response, sa));
                    }
                }
                Output::ClientTimeout { tx } => outcomes.entry(tx).or_default().timeouts += 1,
                other => prop_assert!(false, "client got {other:?}"),
            }
        }
        while let Some(o) = server.poll_output() {
            match o {
                Output::Transmit { data, .. } => net.send(false, data, now),
                Output::Request { tx, request, .. } => {
                    let call = request.call_id().unwrap_or("").to_owned();
                    let status = statuses.get(&call).copied().unwrap_or(500);
                    if request.method() == Some("INVITE") {
                        server.respond(tx, ResponseSpec::new(180), now);
                        if status == 0 {
                            ringing.insert(tx, now + Duration::from_secs(60));
                            continue;
                        }
                    }
                    let resp =
                        ResponseSpec::new(status).header("Contact", "<sip:a@192.0.2.50:5070>");
                    server.respond(tx, resp, now);
                }
                Output::Cancelled { tx } => {
                    prop_assert!(
                        ringing.remove(&tx).is_some(),
                        "CANCEL hit a non-ringing INVITE"
                    );
                    server.respond(tx, ResponseSpec::new(487), now);
                }
                Output::Ack { .. } => acked += 1,
                Output::AckTimeout { .. } => unacked += 1,
                other => prop_assert!(false, "server got {other:?}"),
            }
        }
        let next = [
            net.queue.peek().map(|Reverse((t, _))| *t),
            client.poll_timeout(),
            server.poll_timeout(),
            ringing.values().min().copied(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { break };
        if next > end {
            break;
        }
        now = now.max(next);
        while let Some(Reverse((t, seq))) = net.queue.peek().copied() {
            if t > now {
                break;
            }
            net.queue.pop();
            if let Some((to_server, data)) = net.packets.remove(&seq) {
                if to_server {
                    server.handle_datagram(&data, ca, now);
                } else {
                    client.handle_datagram(&data, sa, now);
                }
            }
        }
        client.handle_timeout(now);
        server.handle_timeout(now);
        let expired: Vec<ServerTxId> = ringing
            .iter()
            .filter(|(_, &t)| t <= now)
            .map(|(&tx, _)| tx)
            .collect();
        for tx in expired {
            ringing.remove(&tx);
            server.respond(tx, ResponseSpec::new(480), now);
        }
    }
    for (tx, o) in &outcomes {
        let ok = match (o.finals.first(), o.timeouts) {
            (None, 1) => true,
            (Some(&f), 0) if (200..300).contains(&f) => {
                o.finals.iter().all(|c| (200..300).contains(c))
            }
            (Some(_), 0) => o.finals.len() == 1,
            _ => false,
        };
        prop_assert!(ok, "tx {tx:?}: {o:?}");
    }
    prop_assert_eq!(client.transactions(), (0, 0));
    prop_assert_eq!(server.transactions(), (0, 0));
    prop_assert_eq!(client.completed_transactions(), 0);
    prop_assert_eq!(server.completed_transactions(), 0);
    Ok((acked, unacked))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(300), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn lossy_network_one_outcome_and_drain(
        seed in any::<u64>(),
        loss in 0u64..50,
        dup in 0u64..40,
        methods in proptest::collection::vec((any::<bool>(), prop_oneof![Just(200u16), Just(486), Just(404), Just(302), Just(0)]), 1..6),
    ) {
        simulate(seed, loss, dup, &methods)?;
    }
}

#[test]
fn lossless_network_delivers_every_final() {
    let acks = simulate(
        1,
        0,
        0,
        &[
            (true, 200),
            (false, 200),
            (true, 486),
            (true, 200),
            (true, 0),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(acks, (2, 0), "every 2xx ACKed exactly once, no ACK timeout");
}
