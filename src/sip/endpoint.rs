//! The per-shard sans-IO SIP endpoint: datagrams, timers and TU decisions
//! in; datagrams, forwards and TU events out.
//!
//! ```text
//! shell ──handle_datagram/handle_forwarded/handle_timeout──▶ Endpoint
//! shell ◀──poll_output: Transmit | Forward ────────────────── Endpoint
//! TU    ◀──poll_output: Request | Cancelled | Ack | AckTimeout
//!                       | Response | ClientTimeout ─────────── Endpoint
//! TU    ──respond / send / cancel / send_ack_2xx
//!         / send_out_of_transaction / transmit ──────────────▶ Endpoint
//! ```
//!
//! Requests, ACKs and responses reach the TU as `Message`: the datagram's
//! bytes with the scan's positions, read through `View`. Peers' requests
//! and responses are still fully validated by rsip first (a 400, or a
//! drop, when it refuses them). The TU's requests (`OutRequest`) are
//! written once, with our Via, by `build.rs`.
//!
//! Drive it like quinn-proto: after any input, drain `poll_output` until
//! `None`, then sleep until `poll_timeout` and call `handle_timeout`.
//!
//! What the endpoint does by itself:
//! - keep-alives and garbage are counted and dropped (`Counters`);
//! - messages owned by another shard (ids.rs) become `Output::Forward`;
//!   `handle_forwarded` input is never forwarded again;
//! - broken requests get their RFC error response statelessly (400, 405
//!   with Allow, 415 with Accept, 416, 420 with Unsupported, 482 for a
//!   merged request, 483, 505, 513);
//! - OPTIONS outside a dialog → 200 with Allow and Accept (no Supported:
//!   we implement no extension);
//! - CANCEL → 200 and `Output::Cancelled` for the INVITE it hit (the TU
//!   answers that INVITE 487), or 481 when it hits nothing;
//! - retransmissions are absorbed by the transactions (transaction.rs),
//!   including the 2xx retransmission of INVITE until its ACK arrives
//!   (`Output::Ack`) or 64·T1 passes (`Output::AckTimeout`: send BYE).
//!
//! Everything else that parses (REGISTER, INVITE, BYE, INFO, UPDATE,
//! in-dialog OPTIONS) is `Output::Request`; the TU must `respond` to each,
//! 481 when it knows no such dialog. TU duties the endpoint cannot do:
//! - a 2xx to INVITE carries a Contact (pass it in `ResponseSpec::headers`);
//! - an INVITE has no server-side deadline (a caller may queue for long):
//!   answer it eventually, and send a provisional at least every minute
//!   (§13.3.1.1). Unanswered non-INVITE transactions end after 64·T1;
//! - on every 2xx `Output::Response` to an INVITE call `send_ack_2xx`
//!   (retransmitted 2xx included); `cancel` only after a provisional.
//!
//! Responses go to the packet's source address (RFC 3581 symmetric
//! response), which is right behind NAT and on loopback.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::build::{write_request, OutRequest, ViaOut};
use super::ids::{owner_of, IdGen, MAGIC_COOKIE};
use super::message::{check_request, scan, DropReason, Scanned, ALLOWED_METHODS};
use super::msg::Message;
pub use super::output::{Counters, Output};
use super::response::{reason_phrase, ResponseBase};
use super::transaction::{build_cancel, ClientKey, NewServerTx, ResponseFate, ServerKey, ServerState, Transactions};
pub use super::transaction::{ClientTxId, ServerTxId, Timers};
use super::view::{uri_of, View};

mod rsip_send;

#[derive(Debug, Clone)]
pub struct EndpointConfig {
    pub shard: u16,
    pub shards: u16,
    pub local_addr: SocketAddr,
    /// Host for our Call-IDs.
    pub domain: String,
    pub user_agent: String,
    /// Larger datagrams get 513 (or are dropped when unanswerable).
    pub max_datagram: usize,
    /// Our TLS port: the Contact of a dialog on TLS names it.
    pub tls_port: u16,
    pub timers: Timers,
    /// Seed of the id generator; a fixed seed makes a simulation replayable.
    pub rng_seed: u64,
}

impl EndpointConfig {
    /// One shard on `local_addr`, RFC timers, 8 KiB datagrams.
    pub fn new(local_addr: SocketAddr) -> Self {
        EndpointConfig {
            shard: 0,
            shards: 1,
            local_addr,
            domain: local_addr.ip().to_string(),
            user_agent: "cc-engine".to_owned(),
            max_datagram: 8192,
            tls_port: 5061,
            timers: Timers::default(),
            rng_seed: 0,
        }
    }
}

/// What the TU answers to a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseSpec {
    pub status: u16,
    /// `None`: the standard phrase.
    pub reason: Option<String>,
    pub headers: Vec<(String, String)>,
    /// (Content-Type, body).
    pub body: Option<(String, Bytes)>,
}

impl ResponseSpec {
    pub fn new(status: u16) -> Self {
        ResponseSpec {
            status,
            ..Default::default()
        }
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, content_type: impl Into<String>, body: Bytes) -> Self {
        self.body = Some((content_type.into(), body));
        self
    }
}

pub struct Endpoint {
    cfg: EndpointConfig,
    ids: IdGen,
    txs: Transactions,
    out: VecDeque<Output>,
    counters: Counters,
}

/// §17.2.3 key; requests without the RFC 3261 cookie (RFC 2543 peers) are
/// keyed by what identifies their transaction instead.
fn server_key<'a>(msg: &'a Scanned<'_>, method: &'a str) -> Option<(Cow<'a, str>, &'a str, &'a str)> {
    let via = msg.top_via()?;
    let branch = match via.branch {
        Some(b) if b.starts_with(MAGIC_COOKIE) => Cow::Borrowed(b),
        _ => {
            let (seq, _) = msg.cseq()?.ok()?;
            Cow::Owned(format!(
                "2543:{}:{}:{}",
                msg.call_id()?,
                seq,
                msg.from_tag().unwrap_or("")
            ))
        }
    };
    let method = if method == "ACK" { "INVITE" } else { method };
    Some((branch, via.sent_by, method))
}

/// Full validation of a peer's request by rsip (the scan is lenient on
/// purpose); `None` when rsip rejects it.
fn parse_request(bytes: &[u8]) -> Option<()> {
    // rsip is third-party parsing of hostile bytes: contain any panic.
    let parsed = std::panic::catch_unwind(|| rsip::Request::try_from(bytes)).ok()?;
    parsed.ok().map(drop)
}

fn parse_response(bytes: &[u8]) -> Option<()> {
    let parsed = std::panic::catch_unwind(|| rsip::Response::try_from(bytes)).ok()?;
    parsed.ok().map(drop)
}

impl Endpoint {
    pub fn new(cfg: EndpointConfig) -> Self {
        Endpoint {
            ids: IdGen::new(cfg.shard, cfg.rng_seed),
            txs: Transactions::new(cfg.timers),
            out: VecDeque::new(),
            counters: Counters::default(),
            cfg,
        }
    }

    pub fn config(&self) -> &EndpointConfig {
        &self.cfg
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Live transactions (server, client). Server transactions that only
    /// wait out Timer J are not in it: see `completed_transactions`.
    pub fn transactions(&self) -> (usize, usize) {
        (self.txs.server_len(), self.txs.client_len())
    }

    /// Non-INVITE server transactions answered finally and kept, as compact
    /// records, to answer retransmissions until Timer J.
    pub fn completed_transactions(&self) -> usize {
        self.txs.completed_len()
    }

    /// The local tag responses on `tx` carry: the UAS dialog's local tag.
    pub fn local_tag(&self, tx: ServerTxId) -> Option<&str> {
        self.txs.server_to_tag(tx)
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.txs.next_timeout()
    }

    /// The kernel reported `dest` unreachable (see
    /// `Transactions::client_transport_error`).
    pub fn handle_transport_error(&mut self, dest: SocketAddr) {
        let n = self.txs.client_transport_error(dest, &mut self.out, &mut self.counters);
        tracing::debug!(%dest, ended = n, "destination unreachable");
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.txs
            .handle_timeout(now, &mut self.out, &mut self.counters);
    }

    fn dropped(&mut self, reason: DropReason, src: SocketAddr) {
        self.counters.drop(reason);
        tracing::debug!(%src, reason = reason.as_str(), "SIP datagram dropped");
    }

    /// A datagram from the socket.
    pub fn handle_datagram(&mut self, data: &[u8], src: SocketAddr, now: Instant) {
        self.handle(data, src, now, true, self.cfg.max_datagram);
    }

    /// One whole message framed off a TCP/TLS connection (`sip::stream`,
    /// which already enforced the stream's size limit).
    pub fn handle_stream(&mut self, data: &[u8], src: SocketAddr, now: Instant) {
        self.handle(data, src, now, true, usize::MAX);
    }

    /// A datagram another shard forwarded: processed here whatever it says.
    pub fn handle_forwarded(&mut self, data: &[u8], src: SocketAddr, now: Instant) {
        self.handle(data, src, now, false, self.cfg.max_datagram);
    }

    fn handle(&mut self, data: &[u8], src: SocketAddr, now: Instant, may_forward: bool, max_len: usize) {
        let msg = match scan(data) {
            Ok(m) => m,
            Err(e) => {
                match e.drop_reason() {
                    Some(r) => self.dropped(r, src),
                    None => self.counters.keepalives += 1,
                }
                return;
            }
        };
        if may_forward {
            if let Some(owner) = owner_of(&msg) {
                if owner != self.cfg.shard && owner < self.cfg.shards {
                    self.counters.forwarded += 1;
                    self.out.push_back(Output::Forward {
                        shard: owner,
                        data: Bytes::copy_from_slice(data),
                        src,
                    });
                    return;
                }
            }
        }
        let oversize = data.len() > max_len;
        match msg.method() {
            None => self.handle_response(&msg, data, src, oversize, now),
            Some("ACK") => self.handle_ack(&msg, data, src, now),
            Some(method) => self.handle_request(&msg, method, data, src, oversize, now),
        }
    }

    fn handle_response(
        &mut self,
        msg: &Scanned<'_>,
        data: &[u8],
        src: SocketAddr,
        oversize: bool,
        now: Instant,
    ) {
        self.counters.responses_in += 1;
        let (Some(status), Some(via), Some(Ok((_, method)))) =
            (msg.status(), msg.top_via(), msg.cseq())
        else {
            return self.dropped(DropReason::BadResponse, src);
        };
        if oversize {
            return self.dropped(DropReason::Oversize, src);
        }
        if !msg.version().eq_ignore_ascii_case("SIP/2.0") {
            return self.dropped(DropReason::BadResponse, src);
        }
        let Some(branch) = via.branch else {
            return self.dropped(DropReason::StrayResponse, src);
        };
        let Some(id) = self.txs.client_find(branch, method) else {
            return self.dropped(DropReason::StrayResponse, src);
        };
        // rsip validates what peers send; the TU reads our scan of it.
        if parse_response(data.get(..msg.msg_len).unwrap_or(data)).is_none() {
            return self.dropped(DropReason::ParseFailed, src);
        }
        let response = Message::from_scan(msg, data);
        let to = msg.header("to").unwrap_or("");
        match self
            .txs
            .client_response(id, status, to, now, &mut self.out, &mut self.counters)
        {
            ResponseFate::Deliver(tx) => self.out.push_back(Output::Response { tx, response }),
            ResponseFate::Absorbed => {}
        }
    }

    fn handle_ack(&mut self, msg: &Scanned<'_>, data: &[u8], src: SocketAddr, now: Instant) {
        self.counters.requests_in += 1;
        let (Some((branch, sent_by, method)), Some(Ok((seq, "ACK"))), Some(call_id)) =
            (server_key(msg, "ACK"), msg.cseq(), msg.call_id())
        else {
            return self.dropped(DropReason::BadAck, src);
        };
        if let Some(id) = self.txs.server_find(&branch, sent_by, method) {
            if self.txs.server_state(id) != Some(ServerState::Accepted) {
                self.txs
                    .server_request(id, true, now, &mut self.out, &mut self.counters);
                return;
            }
        }
        match self.txs.ack_2xx(call_id, seq) {
            Some(tx) => match parse_request(data.get(..msg.msg_len).unwrap_or(data)) {
                Some(()) => {
                    let request = Message::from_scan(msg, data);
                    self.out.push_back(Output::Ack { tx, request, src })
                }
                None => self.dropped(DropReason::ParseFailed, src),
            },
            None => self.dropped(DropReason::UnmatchedAck, src),
        }
    }

    fn handle_request(
        &mut self,
        msg: &Scanned<'_>,
        method: &str,
        data: &[u8],
        src: SocketAddr,
        oversize: bool,
        now: Instant,
    ) {
        self.counters.requests_in += 1;
        if !msg.addressable() {
            let reason = if oversize {
                DropReason::Oversize
            } else {
                DropReason::Unaddressable
            };
            return self.dropped(reason, src);
        }
        if let Err(rej) = check_request(msg, oversize) {
            let extra = rej.header.as_ref().map(|(n, v)| (*n, v.as_str()));
            return self.reject(msg, src, rej.status, rej.reason, extra);
        }
        let Some((branch, sent_by, key_method)) = server_key(msg, method) else {
            return self.dropped(DropReason::Unaddressable, src);
        };
        if let Some(id) = self.txs.server_find(&branch, sent_by, key_method) {
            self.txs
                .server_request(id, false, now, &mut self.out, &mut self.counters);
            return;
        }
        if self.txs.completed_request(
            &branch,
            sent_by,
            key_method,
            &mut self.out,
            &mut self.counters,
        ) {
            return;
        }
        // CANCEL is matched to its INVITE by branch; merging makes no sense.
        let merge_key = match (msg.to_tag(), msg.call_id(), msg.cseq(), msg.from_tag()) {
            (None, Some(c), Some(Ok((seq, m))), Some(f)) if m != "CANCEL" => Some((c, seq, m, f)),
            _ => None,
        };
        if merge_key.is_some_and(|k| self.txs.is_merged(k)) {
            // §8.2.2.2: the same request again by another path (new branch).
            return self.reject(msg, src, 482, "Loop Detected", None);
        }
        let base = ResponseBase::from_request(msg, src);
        if parse_request(data.get(..msg.msg_len).unwrap_or(data)).is_none() {
            // Our scanner was happy but rsip is not: still answerable.
            return self.reject(msg, src, 400, "Bad Request", None);
        }
        // §9.2: the 200 to a CANCEL carries the To tag of the INVITE's
        // responses.
        let cancelled = (method == "CANCEL")
            .then(|| self.txs.server_find(&branch, sent_by, "INVITE"))
            .flatten();
        let to_tag = match (
            msg.to_tag(),
            cancelled.and_then(|i| self.txs.server_to_tag(i)),
        ) {
            (Some(t), _) | (None, Some(t)) => t.to_owned(),
            (None, None) => self.ids.tag(),
        };
        // Only an INVITE's 2xx is ACKed outside its transaction.
        let ack_key = match (method, msg.call_id(), msg.cseq()) {
            ("INVITE", Some(c), Some(Ok((seq, _)))) => Some((c.to_owned(), seq)),
            _ => None,
        };
        let in_dialog = msg.to_tag().is_some();
        let key = ServerKey {
            branch: &branch,
            sent_by,
            method: key_method,
        };
        let new = NewServerTx {
            key,
            base,
            to_tag,
            ack_key,
            dest: src,
            merge_key,
        };
        let id = self
            .txs
            .server_new(new, now, &mut self.out, &mut self.counters);
        match method {
            "OPTIONS" if !in_dialog => {
                let spec = ResponseSpec::new(200)
                    .header("Allow", ALLOWED_METHODS)
                    .header("Accept", "application/sdp");
                self.respond(id, spec, now);
            }
            "CANCEL" => match cancelled {
                Some(invite) => {
                    self.respond(id, ResponseSpec::new(200), now);
                    if self.txs.server_state(invite) == Some(ServerState::Proceeding) {
                        self.out.push_back(Output::Cancelled { tx: invite });
                    }
                }
                None => self.respond(id, ResponseSpec::new(481), now),
            },
            _ => self.out.push_back(Output::Request {
                tx: id,
                request: Message::from_scan(msg, data),
                src,
            }),
        }
    }

    /// A stateless error response: nothing to remember for a request we
    /// refuse (a retransmission is simply refused again).
    fn reject(
        &mut self,
        msg: &Scanned<'_>,
        src: SocketAddr,
        status: u16,
        reason: &str,
        extra: Option<(&str, &str)>,
    ) {
        let base = ResponseBase::from_request(msg, src);
        let tag = self.ids.tag();
        let data = base.build(status, reason, Some(&tag), extra, None);
        self.counters.count_response_sent(status);
        self.out.push_back(Output::Transmit { dest: src, data });
    }

    /// The TU's answer to request `tx`. Ignored when the transaction is gone
    /// or already answered finally.
    pub fn respond(&mut self, tx: ServerTxId, resp: ResponseSpec, now: Instant) {
        if !(100..=699).contains(&resp.status) {
            tracing::warn!(
                status = resp.status,
                "TU gave an invalid status code; response dropped"
            );
            return;
        }
        let Some(base) = self.txs.server_base(tx) else {
            return;
        };
        let tag = self.txs.server_to_tag(tx);
        let reason = resp
            .reason
            .as_deref()
            .unwrap_or_else(|| reason_phrase(resp.status));
        let has = |n: &str| resp.headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(n));
        let server = (!has("server")).then_some(("Server", self.cfg.user_agent.as_str()));
        let headers = resp
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .chain(server);
        let body = resp.body.as_ref().map(|(ct, b)| (ct.as_str(), b.as_ref()));
        let data = base.build(resp.status, reason, tag, headers, body);
        self.txs.server_respond(
            tx,
            resp.status,
            data,
            now,
            &mut self.out,
            &mut self.counters,
        );
    }

    /// Starts a client transaction for `req`: its bytes are written once,
    /// with our Via on top, and that Via's branch keys the transaction.
    pub fn send(&mut self, req: OutRequest<'_>, now: Instant) -> ClientTxId {
        let (data, key) = self.write(&req);
        self.txs.client_new(key, Bytes::from(data), req.dest, now, &mut self.out)
    }

    /// Sends `req` outside any transaction (the ACK of a 2xx, §13.2.2.4)
    /// and returns its bytes, which `transmit` can send again.
    pub fn send_out_of_transaction(&mut self, req: OutRequest<'_>) -> Bytes {
        let (data, _) = self.write(&req);
        let data = Bytes::from(data);
        self.transmit(req.dest, data.clone());
        data
    }

    /// Sends bytes built before (a retransmitted 2xx ACK).
    pub fn transmit(&mut self, dest: SocketAddr, data: Bytes) {
        self.out.push_back(Output::Transmit { dest, data });
    }

    fn write(&mut self, req: &OutRequest<'_>) -> (Vec<u8>, ClientKey) {
        let branch = self.ids.branch();
        let via = ViaOut {
            sent_by: self.cfg.local_addr,
            branch: &branch,
        };
        let ids = &mut self.ids;
        write_request(req, via, || ids.tag())
    }

    /// CANCEL for client transaction `tx` (§9.1). Send it only after a
    /// provisional response (§9.1); `None` when `tx` is gone or final.
    pub fn cancel(&mut self, tx: ClientTxId, now: Instant) -> Option<ClientTxId> {
        if !matches!(
            self.txs.client_state(tx)?,
            super::transaction::ClientState::Calling | super::transaction::ClientState::Proceeding
        ) {
            return None;
        }
        let data = build_cancel(self.txs.client_request(tx)?)?;
        let dest = self.txs.client_dest(tx)?;
        let key = ClientKey::of(&scan(&data).ok()?)?;
        self.txs.client_cancelled(tx, now);
        Some(self.txs.client_new(key, data, dest, now, &mut self.out))
    }

    /// Sends the ACK of a 2xx response to our INVITE (§13.2.2.4): to the
    /// 2xx's Contact, Route from its Record-Route reversed, a new branch,
    /// the INVITE's CSeq number. Call it for every 2xx the TU is given
    /// (retransmissions included). False when it is not a response to an
    /// INVITE or has no usable Contact.
    pub fn send_ack_2xx(&mut self, response: &Message, dest: SocketAddr) -> bool {
        let target = response.contacts().next().map_or("", uri_of);
        let (Some(Ok((seq, "INVITE"))), Some(from), Some(to), Some(call_id)) =
            (response.cseq(), response.from(), response.to(), response.call_id())
        else {
            return false;
        };
        if target.is_empty() {
            return false;
        }
        let mut s = String::with_capacity(response.as_bytes().len());
        let _ = write!(
            s,
            "ACK {target} SIP/2.0\r\nVia: SIP/2.0/{} {};branch={};rport\r\nMax-Forwards: 70\r\n",
            super::transport::Transport::of_uri(target).via_token(),
            self.cfg.local_addr,
            self.ids.branch()
        );
        let routes: Vec<&str> = response
            .headers_named("record-route")
            .flat_map(|v| v.split(','))
            .collect();
        for r in routes.iter().rev() {
            let _ = write!(s, "Route: {}\r\n", r.trim());
        }
        let _ = write!(
            s,
            "From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {seq} ACK\r\nContent-Length: 0\r\n\r\n"
        );
        self.out.push_back(Output::Transmit {
            dest,
            data: Bytes::from(s),
        });
        true
    }
}

#[cfg(test)]
mod tests;
