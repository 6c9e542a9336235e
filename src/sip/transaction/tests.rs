use super::*;
use crate::sip::message::scan;

const PEER: &str = "192.0.2.9:5060";

fn peer() -> SocketAddr {
    PEER.parse().unwrap()
}

fn request(method: &str, branch: &str) -> Bytes {
    Bytes::from(format!(
        "{method} sip:bob@192.0.2.9 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch={branch};rport\r\n\
         Route: <sip:proxy;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:alice@h>;tag=a1\r\nTo: <sip:bob@h>\r\n\
         Call-ID: cid-1\r\nCSeq: 42 {method}\r\nContent-Length: 0\r\n\r\n"
    ))
}

struct Rig {
    txs: Transactions,
    out: VecDeque<Output>,
    c: Counters,
    t0: Instant,
}

impl Rig {
    fn new() -> Self {
        Rig {
            txs: Transactions::new(Timers::default()),
            out: VecDeque::new(),
            c: Counters::default(),
            t0: Instant::now(),
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// Runs timers until `until_ms`; returns (ms, output) of everything emitted.
    fn run(&mut self, until_ms: u64) -> Vec<(u64, Output)> {
        let until = self.at(until_ms);
        let mut seen = Vec::new();
        while let Some(t) = self.txs.next_timeout() {
            if t > until {
                break;
            }
            self.txs.handle_timeout(t, &mut self.out, &mut self.c);
            let ms = (t - self.t0).as_millis() as u64;
            seen.extend(self.out.drain(..).map(|o| (ms, o)));
        }
        seen
    }

    fn transmits(&mut self, until_ms: u64) -> (Vec<u64>, Vec<Output>) {
        let mut times = Vec::new();
        let mut other = Vec::new();
        for (ms, o) in self.run(until_ms) {
            match o {
                Output::Transmit { .. } => times.push(ms),
                o => other.push(o),
            }
        }
        (times, other)
    }

    fn client(&mut self, method: &str) -> ClientTxId {
        let key = ClientKey {
            branch: "z9hG4bK-cc0-1".into(),
            method: method.into(),
        };
        let id = self.txs.client_new(
            key,
            request(method, "z9hG4bK-cc0-1"),
            peer(),
            self.t0,
            &mut self.out,
        );
        assert!(matches!(
            self.out.pop_front(),
            Some(Output::Transmit { .. })
        ));
        id
    }

    fn server(&mut self, method: &str) -> ServerTxId {
        self.server_with_branch(method, "z9hG4bKpeer")
    }

    /// A REGISTER server transaction created at `ms`.
    fn server_at(&mut self, branch: &str, ms: u64) -> ServerTxId {
        let data = request("REGISTER", branch);
        let msg = scan(&data).unwrap();
        let new = NewServerTx {
            key: ServerKey {
                branch,
                sent_by: "192.0.2.1:5060",
                method: "REGISTER",
            },
            base: ResponseBase::from_request(&msg, peer()),
            to_tag: "cc0-t".into(),
            ack_key: None,
            dest: peer(),
            merge_key: None,
        };
        let at = self.at(ms);
        self.txs.server_new(new, at, &mut self.out, &mut self.c)
    }

    fn server_with_branch(&mut self, method: &str, branch: &str) -> ServerTxId {
        let data = request(method, branch);
        let msg = scan(&data).unwrap();
        let key = ServerKey {
            branch,
            sent_by: "192.0.2.1:5060",
            method,
        };
        let base = ResponseBase::from_request(&msg, peer());
        let new = NewServerTx {
            key,
            base,
            to_tag: "cc0-t".into(),
            ack_key: Some(("cid-1".into(), 42)),
            dest: peer(),
            merge_key: None,
        };
        self.txs
            .server_new(new, self.t0, &mut self.out, &mut self.c)
    }

    fn respond(&mut self, id: ServerTxId, status: u16, ms: u64) {
        let data = self
            .txs
            .server_base(id)
            .unwrap()
            .build(status, "X", Some("cc0-t"), [], None);
        assert!(self
            .txs
            .server_respond(id, status, data, self.at(ms), &mut self.out, &mut self.c));
    }
}

#[test]
fn timer_a_doubles_until_b() {
    let mut r = Rig::new();
    let id = r.client("INVITE");
    let (times, other) = r.transmits(40_000);
    assert_eq!(times, vec![500, 1500, 3500, 7500, 15500, 31500]);
    assert_eq!(other, vec![Output::ClientTimeout { tx: id }]);
    assert!(r.txs.is_empty());
    assert_eq!(r.c.client_timeouts, 1);
}

#[test]
fn timer_e_capped_at_t2_until_f() {
    let mut r = Rig::new();
    let id = r.client("REGISTER");
    let (times, other) = r.transmits(40_000);
    assert_eq!(
        times,
        vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert_eq!(other, vec![Output::ClientTimeout { tx: id }]);
    assert!(r.txs.is_empty());
}

#[test]
fn non_invite_proceeding_then_final_then_k() {
    let mut r = Rig::new();
    let id = r.client("BYE");
    let fate = r
        .txs
        .client_response(id, 100, "<sip:b@h>", r.at(100), &mut r.out, &mut r.c);
    assert_eq!(fate, ResponseFate::Deliver(id));
    let (times, _) = r.transmits(9_000);
    assert_eq!(times, vec![500, 4500, 8500]);
    let fate = r
        .txs
        .client_response(id, 200, "<sip:b@h>", r.at(9_000), &mut r.out, &mut r.c);
    assert_eq!(fate, ResponseFate::Deliver(id));
    // A retransmitted final is absorbed.
    let fate = r
        .txs
        .client_response(id, 200, "<sip:b@h>", r.at(9_100), &mut r.out, &mut r.c);
    assert_eq!(fate, ResponseFate::Absorbed);
    let (times, other) = r.transmits(13_999);
    assert!(times.is_empty() && other.is_empty());
    assert_eq!(r.txs.len(), 1);
    r.run(14_000); // K = T4 after the final
    assert!(r.txs.is_empty());
}

#[test]
fn invite_client_non_2xx_acks_and_waits_d() {
    let mut r = Rig::new();
    let id = r.client("INVITE");
    let to = "<sip:bob@h>;tag=b9";
    assert_eq!(
        r.txs
            .client_response(id, 180, to, r.at(200), &mut r.out, &mut r.c),
        ResponseFate::Deliver(id)
    );
    // Proceeding: A and B are off, nothing fires before Timer C.
    assert!(r.run(60_000).is_empty());
    assert_eq!(
        r.txs
            .client_response(id, 486, to, r.at(60_000), &mut r.out, &mut r.c),
        ResponseFate::Deliver(id)
    );
    let Some(Output::Transmit { data, dest }) = r.out.pop_front() else {
        panic!("no ACK")
    };
    assert_eq!(dest, peer());
    let ack = std::str::from_utf8(&data).unwrap();
    assert!(
        ack.starts_with("ACK sip:bob@192.0.2.9 SIP/2.0\r\n"),
        "{ack}"
    );
    assert!(ack.contains("Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-cc0-1;rport\r\n"));
    assert!(ack.contains("Route: <sip:proxy;lr>\r\n"));
    assert!(ack.contains("To: <sip:bob@h>;tag=b9\r\n"));
    assert!(ack.contains("CSeq: 42 ACK\r\n"));
    assert!(rsip::Request::try_from(ack).is_ok());
    // The final again: ACK again, not delivered.
    assert_eq!(
        r.txs
            .client_response(id, 486, to, r.at(61_000), &mut r.out, &mut r.c),
        ResponseFate::Absorbed
    );
    assert!(matches!(r.out.pop_front(), Some(Output::Transmit { data: d, .. }) if d == data));
    assert!(r.run(91_999).is_empty());
    assert_eq!(r.txs.len(), 1);
    assert!(r.run(92_000).is_empty()); // D: no timeout report
    assert!(r.txs.is_empty());
}

#[test]
fn invite_client_2xx_accepted_until_m() {
    let mut r = Rig::new();
    let id = r.client("INVITE");
    assert_eq!(
        r.txs
            .client_response(id, 200, "<sip:b@h>;tag=x", r.at(100), &mut r.out, &mut r.c),
        ResponseFate::Deliver(id)
    );
    assert!(r.out.is_empty(), "no ACK from the transaction for 2xx");
    assert_eq!(
        r.txs.client_request(id).map(|b| b.len()),
        Some(0),
        "dropped once final"
    );
    assert_eq!(
        r.txs
            .client_response(id, 200, "<sip:b@h>;tag=x", r.at(600), &mut r.out, &mut r.c),
        ResponseFate::Deliver(id)
    );
    assert!(r.run(32_099).is_empty());
    assert_eq!(r.txs.len(), 1);
    assert!(r.run(32_100).is_empty());
    assert!(r.txs.is_empty());
}

#[test]
fn server_non_invite_absorbs_and_resends_until_j() {
    let mut r = Rig::new();
    let id = r.server("REGISTER");
    assert!(r.out.is_empty(), "no 100 for non-INVITE");
    assert_eq!(
        r.txs
            .server_request(id, false, r.at(100), &mut r.out, &mut r.c),
        Absorbed::Retransmission
    );
    assert!(r.out.is_empty(), "Trying absorbs silently");
    r.respond(id, 200, 200);
    let Some(Output::Transmit { data, .. }) = r.out.pop_front() else {
        panic!()
    };
    // Completed: only a compact record is left, found by key.
    assert_eq!((r.txs.server_len(), r.txs.completed_len()), (0, 1));
    assert_eq!(
        r.txs
            .server_find("z9hG4bKpeer", "192.0.2.1:5060", "REGISTER"),
        None
    );
    assert!(r.txs.completed_request(
        "z9hG4bKpeer",
        "192.0.2.1:5060",
        "REGISTER",
        &mut r.out,
        &mut r.c
    ));
    assert!(
        matches!(r.out.pop_front(), Some(Output::Transmit { data: d, dest }) if d == data && dest == peer())
    );
    assert!(!r.txs.completed_request(
        "z9hG4bKpeer",
        "192.0.2.1:5060",
        "OPTIONS",
        &mut r.out,
        &mut r.c
    ));
    assert!(!r
        .txs
        .server_respond(id, 500, Bytes::new(), r.at(400), &mut r.out, &mut r.c));
    assert!(r.out.is_empty());
    // Timer J from the final (200 ms), rounded up by at most T1/4.
    assert_eq!(r.txs.next_timeout(), Some(r.at(200 + 32_000 + 125)));
    assert!(r.run(32_324).is_empty());
    assert_eq!(r.txs.completed_len(), 1);
    r.run(32_325);
    assert!(r.txs.is_empty());
    assert_eq!(r.txs.next_timeout(), None);
    assert!(!r.txs.completed_request(
        "z9hG4bKpeer",
        "192.0.2.1:5060",
        "REGISTER",
        &mut r.out,
        &mut r.c
    ));
    assert_eq!(r.c.retransmissions_absorbed, 2);
    assert_eq!(r.c.retransmissions_sent, 1);
}

#[test]
fn answered_non_invite_leaves_no_timer_behind() {
    let mut r = Rig::new();
    let id = r.server("BYE");
    assert_eq!(r.txs.next_timeout(), Some(r.at(32_000)), "64·T1 guard");
    r.respond(id, 200, 10);
    // The guard is gone with the live state: the next wake-up is Timer J.
    assert_eq!(r.txs.next_timeout(), Some(r.at(10 + 32_000 + 125)));
    assert_eq!(r.txs.heap.len(), 0);
    assert!(r.txs.guards.is_empty());
}

#[test]
fn completed_records_expire_in_order_under_load() {
    // 5,000 REGISTERs over 10 s, each answered 1 ms after it arrived.
    let mut r = Rig::new();
    let n = 5_000u64;
    let branch = |i: u64| format!("z9hG4bKmany{i}");
    for i in 0..n {
        let id = r.server_at(&branch(i), 2 * i);
        r.respond(id, 200, 2 * i + 1);
    }
    r.out.clear();
    assert_eq!((r.txs.server_len(), r.txs.completed_len()), (0, n as usize));
    // Every record is found until its Timer J, none after J + T1/4, and
    // every wake-up is due: the deadline reported is one that empties
    // something.
    let mut wakeups = 0;
    let mut left = n as usize;
    while let Some(t) = r.txs.next_timeout() {
        assert!(wakeups < 1_000, "bounded");
        wakeups += 1;
        let ms = (t - r.t0).as_millis() as u64;
        for i in 0..n {
            let answered = 2 * i + 1;
            let found = r
                .txs
                .completed
                .find(ServerKey {
                    branch: &branch(i),
                    sent_by: "192.0.2.1:5060",
                    method: "REGISTER",
                })
                .is_some();
            if answered + 32_000 > ms {
                assert!(found, "record {i} gone before Timer J at {ms} ms");
            }
            if answered + 32_000 + 125 < ms {
                assert!(!found, "record {i} kept past J + T1/4 at {ms} ms");
            }
        }
        r.txs.handle_timeout(t, &mut r.out, &mut r.c);
        let now_left = r.txs.completed_len();
        assert!(now_left < left, "wake-up at {ms} ms expired nothing");
        left = now_left;
    }
    assert!(r.txs.is_empty());
    // 10 s of records in batches of T1/4: about 80 wake-ups, not 5,000.
    assert!(wakeups <= 10_000 / 125 + 1, "{wakeups} wake-ups");
    assert!(r.out.is_empty());
}

#[test]
fn completed_non_invite_still_detects_merged_requests() {
    let mut r = Rig::new();
    let data = request("REGISTER", "z9hG4bKm1");
    let msg = scan(&data).unwrap();
    let merge: MergeKey = ("cid-1", 42, "REGISTER", "a1");
    let new = NewServerTx {
        key: ServerKey {
            branch: "z9hG4bKm1",
            sent_by: "192.0.2.1:5060",
            method: "REGISTER",
        },
        base: ResponseBase::from_request(&msg, peer()),
        to_tag: "cc0-t".into(),
        ack_key: None,
        dest: peer(),
        merge_key: Some(merge),
    };
    let id = r.txs.server_new(new, r.t0, &mut r.out, &mut r.c);
    assert!(r.txs.is_merged(merge));
    r.respond(id, 200, 0);
    assert!(
        r.txs.is_merged(merge),
        "§8.2.2.2: still an ongoing transaction"
    );
    let other: MergeKey = ("cid-1", 43, "REGISTER", "a1");
    assert!(!r.txs.is_merged(other));
    r.run(40_000);
    assert!(!r.txs.is_merged(merge));
    assert!(r.txs.is_empty());
}

#[test]
fn server_invite_sends_100_and_g_until_h() {
    let mut r = Rig::new();
    let id = r.server("INVITE");
    let Some(Output::Transmit { data: trying, .. }) = r.out.pop_front() else {
        panic!("no 100")
    };
    assert!(trying.starts_with(b"SIP/2.0 100 Trying\r\n"));
    assert!(
        !std::str::from_utf8(&trying).unwrap().contains("tag=cc0-t"),
        "no tag on 100"
    );
    r.txs
        .server_request(id, false, r.at(50), &mut r.out, &mut r.c);
    assert!(matches!(r.out.pop_front(), Some(Output::Transmit { data, .. }) if data == trying));
    r.respond(id, 486, 0);
    r.out.clear();
    let (times, other) = r.transmits(40_000);
    assert_eq!(
        times,
        vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert!(other.is_empty());
    assert!(r.txs.is_empty());
    assert_eq!(r.c.server_timeouts, 1);
}

#[test]
fn server_invite_ack_stops_g_then_i() {
    let mut r = Rig::new();
    let id = r.server("INVITE");
    r.respond(id, 404, 0);
    r.out.clear();
    let (times, _) = r.transmits(1_000);
    assert_eq!(times, vec![500]);
    assert_eq!(
        r.txs
            .server_request(id, true, r.at(1_000), &mut r.out, &mut r.c),
        Absorbed::Ack
    );
    assert_eq!(r.txs.server_state(id), Some(ServerState::Confirmed));
    // ACK retransmission absorbed too.
    assert_eq!(
        r.txs
            .server_request(id, true, r.at(1_100), &mut r.out, &mut r.c),
        Absorbed::Ack
    );
    assert!(r.out.is_empty());
    assert!(r.run(5_999).is_empty());
    assert_eq!(r.txs.len(), 1);
    r.run(6_000); // I = T4
    assert!(r.txs.is_empty());
}

#[test]
fn server_invite_2xx_retransmitted_until_ack() {
    let mut r = Rig::new();
    let id = r.server("INVITE");
    r.respond(id, 200, 0);
    r.out.clear();
    let (times, _) = r.transmits(8_000);
    assert_eq!(times, vec![500, 1500, 3500, 7500]);
    // INVITE retransmission in Accepted: absorbed, nothing sent.
    r.txs
        .server_request(id, false, r.at(8_000), &mut r.out, &mut r.c);
    assert!(r.out.is_empty());
    assert_eq!(r.txs.ack_2xx("cid-1", 41), None);
    assert_eq!(r.txs.ack_2xx("cid-1", 42), Some(id));
    // Stays until Timer L (RFC 6026 §7.1), absorbing late INVITE copies,
    // sending nothing and reporting no AckTimeout.
    assert_eq!(r.txs.ack_2xx("cid-1", 42), None);
    r.txs
        .server_request(id, false, r.at(9_000), &mut r.out, &mut r.c);
    assert!(r.out.is_empty());
    assert_eq!(r.txs.len(), 1);
    assert!(r.run(100_000).is_empty());
    assert!(r.txs.is_empty());
}

#[test]
fn server_invite_2xx_without_ack_reports_timeout() {
    let mut r = Rig::new();
    let id = r.server("INVITE");
    r.respond(id, 180, 0);
    r.respond(id, 200, 100);
    r.out.clear();
    let (_, other) = r.transmits(40_000);
    assert_eq!(other, vec![Output::AckTimeout { tx: id }]);
    assert!(r.txs.is_empty());
    assert_eq!(r.txs.ack_2xx("cid-1", 42), None);
}

#[test]
fn cancel_is_built_from_the_original() {
    let c = build_cancel(&request("INVITE", "z9hG4bK-cc0-9")).unwrap();
    let c = std::str::from_utf8(&c).unwrap();
    assert!(c.starts_with("CANCEL sip:bob@192.0.2.9 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-cc0-9;rport\r\n"));
    assert!(c.contains("To: <sip:bob@h>\r\n"));
    assert!(c.contains("CSeq: 42 CANCEL\r\n"));
    assert!(rsip::Request::try_from(c).is_ok());
    assert_eq!(build_cancel(b"garbage"), None);
}

#[test]
fn invite_proceeding_bounded_by_timer_c_and_cancel() {
    let mut r = Rig::new();
    let id = r.client("INVITE");
    r.txs.client_response(
        id,
        180,
        "<sip:b@h>;tag=1",
        r.at(1_000),
        &mut r.out,
        &mut r.c,
    );
    r.txs.client_response(
        id,
        183,
        "<sip:b@h>;tag=1",
        r.at(100_000),
        &mut r.out,
        &mut r.c,
    );
    assert!(r.run(280_999).is_empty(), "C restarts on each provisional");
    assert_eq!(
        r.run(281_000),
        vec![(281_000, Output::ClientTimeout { tx: id })]
    );
    assert!(r.txs.is_empty());

    let mut r = Rig::new();
    let id = r.client("INVITE");
    r.txs.client_response(
        id,
        180,
        "<sip:b@h>;tag=1",
        r.at(1_000),
        &mut r.out,
        &mut r.c,
    );
    r.txs.client_cancelled(id, r.at(2_000));
    r.txs.client_response(
        id,
        180,
        "<sip:b@h>;tag=1",
        r.at(3_000),
        &mut r.out,
        &mut r.c,
    );
    assert_eq!(
        r.run(40_000),
        vec![(34_000, Output::ClientTimeout { tx: id })]
    );
    assert!(r.txs.is_empty());
}

#[test]
fn unanswered_non_invite_is_abandoned_after_64_t1() {
    let mut r = Rig::new();
    r.server("BYE");
    let inv = r.server_with_branch("INVITE", "z9hG4bKother");
    r.out.clear();
    assert!(r.run(31_999).is_empty());
    assert_eq!(r.txs.server_len(), 2);
    assert!(r.run(32_000).is_empty());
    assert_eq!(r.txs.server_len(), 1, "the INVITE waits for its TU");
    assert_eq!(r.txs.server_state(inv), Some(ServerState::Proceeding));
    assert_eq!(r.c.server_unanswered, 1);
}

#[test]
fn transport_error_ends_only_unanswered_clients_to_that_destination() {
    let mut r = Rig::new();
    let id = r.client("INVITE");
    // Another destination is untouched.
    let other: SocketAddr = "192.0.2.77:5060".parse().unwrap();
    assert_eq!(r.txs.client_transport_error(other, &mut r.out, &mut r.c), 0);
    assert!(r.out.is_empty());
    // The unanswered INVITE ends at once, reported like Timer B, counted.
    assert_eq!(r.txs.client_transport_error(peer(), &mut r.out, &mut r.c), 1);
    assert!(matches!(r.out.pop_front(), Some(Output::ClientTimeout { tx }) if tx == id));
    assert_eq!((r.c.client_transport_errors, r.c.client_timeouts), (1, 0));
    assert!(r.txs.is_empty());
    // No retransmission or second report later.
    assert!(r.run(64_000).is_empty());
}

#[test]
fn transport_error_after_a_response_is_ignored() {
    let mut r = Rig::new();
    let id = r.client("INVITE");
    r.txs.client_response(id, 180, "<sip:b@h>;tag=b9", r.at(100), &mut r.out, &mut r.c);
    r.out.clear();
    // The peer answered: a stray ICMP must not end the exchange.
    assert_eq!(r.txs.client_transport_error(peer(), &mut r.out, &mut r.c), 0);
    assert!(r.out.is_empty());
    assert_eq!(r.txs.client_state(id), Some(ClientState::Proceeding));
}

#[test]
fn reliable_transport_client_does_not_retransmit_but_times_out() {
    let mut r = Rig::new();
    let key = ClientKey { branch: "z9hG4bK-cc0-t".into(), method: "INVITE".into() };
    let data = Bytes::from(
        String::from_utf8(request("INVITE", "z9hG4bK-cc0-t").to_vec()).unwrap().replace("SIP/2.0/UDP", "SIP/2.0/TCP"),
    );
    let id = r.txs.client_new(key, data, peer(), r.t0, &mut r.out);
    assert!(matches!(r.out.pop_front(), Some(Output::Transmit { .. })));
    let (times, other) = r.transmits(40_000);
    assert!(times.is_empty(), "no Timer A over TCP: {times:?}");
    assert_eq!(other, vec![Output::ClientTimeout { tx: id }]);
}

#[test]
fn reliable_transport_server_sends_its_error_response_once() {
    let mut r = Rig::new();
    let data = Bytes::from(
        String::from_utf8(request("INVITE", "z9hG4bKtcp").to_vec()).unwrap().replace("SIP/2.0/UDP", "SIP/2.0/TLS"),
    );
    let msg = scan(&data).unwrap();
    let new = NewServerTx {
        key: ServerKey { branch: "z9hG4bKtcp", sent_by: "192.0.2.1:5060", method: "INVITE" },
        base: ResponseBase::from_request(&msg, peer()),
        to_tag: "cc0-t".into(),
        ack_key: Some(("cid-1".into(), 42)),
        dest: peer(),
        merge_key: None,
    };
    let id = r.txs.server_new(new, r.t0, &mut r.out, &mut r.c);
    r.respond(id, 486, 0);
    r.out.clear();
    let (times, _) = r.transmits(40_000);
    assert!(times.is_empty(), "no Timer G over TLS: {times:?}");
    assert!(r.txs.is_empty(), "Timer H still ends it");
}
