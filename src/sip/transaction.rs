//! RFC 3261 §17 transactions over UDP, sans-IO.
//!
//! Four machines (client/server × INVITE/non-INVITE) with timers A–K, plus
//! the RFC 6026 "Accepted" states: a server INVITE transaction that sent a
//! 2xx retransmits it (T1 doubling, capped at T2) until the ACK arrives or
//! Timer L (64·T1) fires, and a client INVITE transaction that got a 2xx
//! keeps passing 2xx retransmissions to the TU until Timer M. This puts the
//! 2xx retransmission the TU would otherwise own (§13.3.1.4) here, where the
//! other timers already are.
//!
//! Timers live in one min-heap of (deadline, transaction). An entry is pushed
//! whenever a transaction's earliest deadline changes; entries left behind by
//! a change are stale and cost at most a spurious wake-up.
//!
//! Non-INVITE server transactions, the bulk of the traffic (REGISTER), stay
//! out of that heap: every one has the same deadlines (64·T1 to be answered,
//! then Timer J), so two FIFOs hold them in deadline order. Once answered
//! finally, such a transaction is only a compact record (completed.rs) that
//! resends its response to retransmissions until Timer J.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::output::{Counters, Output};
pub use super::output::{ClientTxId, ServerTxId};
use super::message::{scan, Scanned};
use super::view::View;
use super::response::ResponseBase;

mod completed;
mod index;
mod key;

use index::HashIndex;
use completed::Completed;
use key::KeyText;
pub use key::{MergeKey, ServerKey};

/// Timer base values (RFC 3261 Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
    /// Timer D: wait for response retransmissions after a non-2xx INVITE
    /// final; at least 32 s over UDP.
    pub d: Duration,
    /// Guard on an INVITE client transaction in Proceeding, restarted by each
    /// provisional (RFC 3261 Timer C, > 3 min). RFC 3261 leaves a UAC waiting
    /// forever for the TU to CANCEL; a bounded wait means nothing leaks
    /// when a TU or a peer misbehaves.
    pub c: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            d: Duration::from_secs(32),
            c: Duration::from_secs(181),
        }
    }
}

impl Timers {
    /// B, F, H, J, L, M.
    pub fn t1x64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
}

/// §17.1.3 client key: our branch and the CSeq method.
#[derive(Debug, Clone)]
pub struct ClientKey {
    pub branch: String,
    pub method: String,
}

impl ClientKey {
    /// The key of a request we sent, read back from its scan.
    pub fn of(msg: &Scanned<'_>) -> Option<ClientKey> {
        let branch = msg.top_via()?.branch?.to_owned();
        let (_, method) = msg.cseq()?.ok()?;
        Some(ClientKey {
            branch,
            method: method.to_owned(),
        })
    }
}

/// A client key seen as three strings, so the map keyed by owned keys can
/// be searched with borrowed `[&str; 3]`: no allocation per response
/// lookup (the `Borrow<dyn Trait>` idiom). Server keys live in key.rs.
pub trait KeyParts {
    fn parts(&self) -> [&str; 3];
}

impl KeyParts for ClientKey {
    fn parts(&self) -> [&str; 3] {
        [&self.branch, "", &self.method]
    }
}

impl KeyParts for [&str; 3] {
    fn parts(&self) -> [&str; 3] {
        *self
    }
}

impl std::hash::Hash for dyn KeyParts + '_ {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.parts().hash(h)
    }
}

impl PartialEq for dyn KeyParts + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn KeyParts + '_ {}

macro_rules! key_impls {
    ($t:ty) => {
        impl std::hash::Hash for $t {
            fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
                self.parts().hash(h)
            }
        }
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                self.parts() == other.parts()
            }
        }
        impl Eq for $t {}
        impl<'a> std::borrow::Borrow<dyn KeyParts + 'a> for $t {
            fn borrow(&self) -> &(dyn KeyParts + 'a) {
                self
            }
        }
    };
}
key_impls!(ClientKey);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    Trying,
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Calling (INVITE) or Trying (non-INVITE).
    Calling,
    Proceeding,
    Completed,
    Accepted,
}

#[derive(Debug)]
struct ServerTx {
    /// Key and merge key, in one allocation the lookup tables point into.
    key: KeyText,
    invite: bool,
    state: ServerState,
    base: ResponseBase,
    to_tag: String,
    dest: SocketAddr,
    last_response: Option<Bytes>,
    /// (Call-ID, CSeq) the ACK of our 2xx will carry (INVITE only).
    ack_key: Option<(String, u32)>,
    retransmit_at: Option<Instant>,
    interval: Duration,
    timeout_at: Option<Instant>,
    /// Accepted and ACKed: kept until Timer L only to absorb late
    /// retransmissions of the INVITE (RFC 6026 §7.1), which must not
    /// start a second transaction (and a second call).
    acked: bool,
}

#[derive(Debug)]
struct ClientTx {
    key: ClientKey,
    invite: bool,
    state: ClientState,
    request: Bytes,
    ack: Option<Bytes>,
    /// A CANCEL was sent for it: 64·T1 left for a final (§9.1).
    cancelled: bool,
    dest: SocketAddr,
    retransmit_at: Option<Instant>,
    interval: Duration,
    timeout_at: Option<Instant>,
}

/// Whether a message travels on a reliable transport (its top Via says
/// TCP or TLS).
fn reliable(data: &[u8]) -> bool {
    super::transport::top_via_transport(data).is_some_and(|(t, _)| t.is_stream())
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TxRef {
    Server(u64),
    Client(u64),
}

/// What a new server transaction is made of.
#[derive(Debug, Clone)]
pub struct NewServerTx<'a> {
    pub key: ServerKey<'a>,
    /// What every response copies from the request.
    pub base: ResponseBase,
    /// Tag added to To in responses when the request had none.
    pub to_tag: String,
    /// (Call-ID, CSeq) an ACK of our 2xx will carry (INVITE only).
    pub ack_key: Option<(String, u32)>,
    /// Where responses go.
    pub dest: SocketAddr,
    /// (Call-ID, CSeq number, method, From tag) of a request without To
    /// tag, for merged-request detection (§8.2.2.2).
    pub merge_key: Option<MergeKey<'a>>,
}

/// What a request matching an existing server transaction amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absorbed {
    /// A retransmission; the last response (if any) was re-sent.
    Retransmission,
    /// The ACK of a non-2xx final response: absorbed (§17.2.1).
    Ack,
}

/// What a response matching a client transaction amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFate {
    /// Give it to the TU.
    Deliver(ClientTxId),
    /// A retransmission the transaction handled (ACK re-sent or ignored).
    Absorbed,
}

/// All transactions of one endpoint.
#[derive(Debug)]
pub struct Transactions {
    timers: Timers,
    next_id: u64,
    server: HashMap<u64, ServerTx>,
    /// (hash, id) by key and by merge key; the keys themselves are in the
    /// transactions (key.rs), so a request's key is stored once.
    server_keys: HashIndex,
    merged: HashIndex,
    /// SipHash with a random key: keys are chosen by whoever sends us
    /// datagrams.
    hasher: RandomState,
    accepted: HashMap<(String, u32), u64>,
    client: HashMap<u64, ClientTx>,
    client_keys: HashMap<ClientKey, u64>,
    heap: BinaryHeap<Reverse<(Instant, TxRef)>>,
    /// (64·T1 after creation, id) of non-INVITE server transactions, in
    /// creation order. Entries of transactions answered since are skipped.
    guards: VecDeque<(Instant, u64)>,
    /// Non-INVITE server transactions in Completed, until Timer J.
    completed: Completed,
}

impl Transactions {
    pub fn new(timers: Timers) -> Self {
        Transactions {
            timers,
            next_id: 1,
            server: HashMap::new(),
            server_keys: HashIndex::default(),
            merged: HashIndex::default(),
            hasher: RandomState::new(),
            accepted: HashMap::new(),
            client: HashMap::new(),
            client_keys: HashMap::new(),
            heap: BinaryHeap::new(),
            guards: VecDeque::new(),
            // Batches of T1/4: Timer J ends at most T1/4 late, and the
            // records cost at most 4/T1 wake-ups per second.
            completed: Completed::new(timers.t1x64(), timers.t1 / 4),
        }
    }

    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    /// Server transactions in full state (not yet answered finally, or
    /// INVITE).
    pub fn server_len(&self) -> usize {
        self.server.len()
    }

    /// Non-INVITE server transactions in Completed (compact records).
    pub fn completed_len(&self) -> usize {
        self.completed.len()
    }

    pub fn client_len(&self) -> usize {
        self.client.len()
    }

    /// Live transactions of every kind; zero once everything has drained.
    pub fn len(&self) -> usize {
        self.server.len() + self.client.len() + self.completed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The earliest deadline: the front of the heap and of each FIFO.
    pub fn next_timeout(&self) -> Option<Instant> {
        let heap = self.heap.peek().map(|Reverse((at, _))| *at);
        let guard = self.guards.front().map(|(at, _)| *at);
        earliest(earliest(heap, guard), self.completed.next_expiry())
    }

    fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn schedule(&mut self, at: Option<Instant>, r: TxRef) {
        if let Some(at) = at {
            self.heap.push(Reverse((at, r)));
        }
    }

    // ---------------------------------------------------------------- server

    /// Looks up by (branch, sent-by, method), ACK already mapped to INVITE.
    pub fn server_find(&self, branch: &str, sent_by: &str, method: &str) -> Option<ServerTxId> {
        let key = ServerKey {
            branch,
            sent_by,
            method,
        };
        let h = self.hasher.hash_one(key);
        let server = &self.server;
        self.server_keys
            .find(h, |id| server.get(&id).is_some_and(|t| t.key.key() == key))
            .map(ServerTxId)
    }

    /// A live transaction for the same (Call-ID, CSeq, From tag): a request
    /// that reached us twice by different paths (§8.2.2.2 → 482).
    pub fn merged_with(&self, key: MergeKey<'_>) -> Option<ServerTxId> {
        let h = self.hasher.hash_one(key);
        let server = &self.server;
        self.merged
            .find(h, |id| server.get(&id).is_some_and(|t| t.key.merge() == Some(key)))
            .map(ServerTxId)
    }

    /// Whether any transaction, live or Completed, has this merge key.
    pub fn is_merged(&self, key: MergeKey<'_>) -> bool {
        self.merged_with(key).is_some() || self.completed.has_merge(key)
    }

    /// A request that matched a Completed non-INVITE transaction: its final
    /// response is sent again. False when no record has this key.
    pub fn completed_request(
        &mut self,
        branch: &str,
        sent_by: &str,
        method: &str,
        out: &mut VecDeque<Output>,
        counters: &mut Counters,
    ) -> bool {
        let key = ServerKey {
            branch,
            sent_by,
            method,
        };
        let Some((data, dest)) = self.completed.find(key) else {
            return false;
        };
        counters.retransmissions_absorbed += 1;
        counters.retransmissions_sent += 1;
        out.push_back(Output::Transmit {
            dest,
            data: data.clone(),
        });
        true
    }

    pub fn server_state(&self, id: ServerTxId) -> Option<ServerState> {
        self.server.get(&id.0).map(|t| t.state)
    }

    /// The To tag this transaction's responses carry (when the request had
    /// none): the dialog's local tag.
    pub fn server_to_tag(&self, id: ServerTxId) -> Option<&str> {
        self.server.get(&id.0).map(|t| t.to_tag.as_str())
    }

    pub fn server_base(&self, id: ServerTxId) -> Option<&ResponseBase> {
        self.server.get(&id.0).map(|t| &t.base)
    }

    /// A new server transaction. INVITE sends 100 Trying at once (§17.2.1:
    /// we cannot promise a final response within 200 ms).
    pub fn server_new(
        &mut self,
        new: NewServerTx,
        now: Instant,
        out: &mut VecDeque<Output>,
        counters: &mut Counters,
    ) -> ServerTxId {
        let NewServerTx {
            key,
            base,
            to_tag,
            ack_key,
            dest,
            merge_key,
        } = new;
        let invite = key.method == "INVITE";
        let id = self.alloc_id();
        let key = KeyText::new(key, merge_key);
        self.index(&key, id);
        // A non-INVITE the TU never answers is abandoned once the client
        // has given up (Timer F); an INVITE may wait in a queue for long,
        // so only the TU ends it.
        let guard = (!invite).then(|| now + self.timers.t1x64());
        if let Some(at) = guard {
            self.guards.push_back((at, id));
        }
        let mut tx = ServerTx {
            key,
            invite,
            state: if invite {
                ServerState::Proceeding
            } else {
                ServerState::Trying
            },
            base,
            to_tag,
            dest,
            last_response: None,
            ack_key: if invite { ack_key } else { None },
            retransmit_at: None,
            interval: self.timers.t1,
            // The guard of a non-INVITE is in `guards`, not the heap.
            timeout_at: None,
            acked: false,
        };
        if invite {
            let trying = tx.base.build(100, "Trying", None, [], None);
            counters.count_response_sent(100);
            tx.last_response = Some(trying.clone());
            out.push_back(Output::Transmit { dest, data: trying });
        }
        self.server.insert(id, tx);
        ServerTxId(id)
    }

    /// A request (or ACK) that matched `id`.
    pub fn server_request(
        &mut self,
        id: ServerTxId,
        is_ack: bool,
        now: Instant,
        out: &mut VecDeque<Output>,
        counters: &mut Counters,
    ) -> Absorbed {
        let t4 = self.timers.t4;
        let Some(tx) = self.server.get_mut(&id.0) else {
            return Absorbed::Retransmission;
        };
        if is_ack {
            if tx.invite && tx.state == ServerState::Completed {
                tx.state = ServerState::Confirmed;
                tx.retransmit_at = None;
                // Confirmed absorbs silently: the final is not sent again.
                tx.last_response = None;
                // Timer I: absorb further ACK retransmissions.
                tx.timeout_at = Some(now + t4);
                let at = tx.timeout_at;
                self.schedule(at, TxRef::Server(id.0));
            } else {
                counters.retransmissions_absorbed += 1;
            }
            return Absorbed::Ack;
        }
        counters.retransmissions_absorbed += 1;
        match tx.state {
            ServerState::Proceeding | ServerState::Completed => {
                if let Some(data) = tx.last_response.clone() {
                    counters.retransmissions_sent += 1;
                    out.push_back(Output::Transmit {
                        dest: tx.dest,
                        data,
                    });
                }
            }
            ServerState::Trying | ServerState::Confirmed | ServerState::Accepted => {}
        }
        Absorbed::Retransmission
    }

    /// The TU's response, already serialised. Returns false when the
    /// transaction is gone or already final (the response is then dropped).
    pub fn server_respond(
        &mut self,
        id: ServerTxId,
        status: u16,
        data: Bytes,
        now: Instant,
        out: &mut VecDeque<Output>,
        counters: &mut Counters,
    ) -> bool {
        let timers = self.timers;
        let Some(tx) = self.server.get_mut(&id.0) else {
            return false;
        };
        if !matches!(tx.state, ServerState::Trying | ServerState::Proceeding) {
            return false;
        }
        counters.count_response_sent(status);
        out.push_back(Output::Transmit {
            dest: tx.dest,
            data: data.clone(),
        });
        if !tx.invite && status >= 200 {
            // Completed until Timer J: only the response is still needed.
            if let Some(tx) = self.remove_server(id.0) {
                self.completed.insert(tx.key, data, tx.dest, now);
            }
            self.skip_answered_guards();
            return true;
        }
        tx.last_response = Some(data);
        if status < 200 {
            tx.state = ServerState::Proceeding;
            return true;
        }
        if status < 300 {
            tx.state = ServerState::Accepted;
            tx.interval = timers.t1;
            tx.retransmit_at = Some(now + timers.t1); // 2xx retransmission
            tx.timeout_at = Some(now + timers.t1x64()); // Timer L
            if let Some(k) = tx.ack_key.clone() {
                self.accepted.insert(k, id.0);
            }
        } else {
            tx.state = ServerState::Completed;
            tx.interval = timers.t1;
            // §17.2.1: Timer G only on an unreliable transport (the
            // response carries the request's Via, which says which).
            let g = !tx.last_response.as_ref().is_some_and(|r| reliable(r));
            tx.retransmit_at = g.then(|| now + timers.t1); // Timer G
            tx.timeout_at = Some(now + timers.t1x64()); // Timer H
        }
        let at = self
            .server
            .get(&id.0)
            .and_then(|t| earliest(t.retransmit_at, t.timeout_at));
        self.schedule(at, TxRef::Server(id.0));
        true
    }

    /// An ACK that matched no transaction: the ACK of one of our 2xx?
    /// Stops the 2xx retransmission. The transaction stays in Accepted
    /// until Timer L (RFC 6026 §7.1) so that a retransmission of the INVITE
    /// delayed past the ACK is absorbed instead of starting a new call;
    /// further copies of the ACK no longer match.
    pub fn ack_2xx(&mut self, call_id: &str, cseq: u32) -> Option<ServerTxId> {
        let id = self.accepted.remove(&(call_id.to_owned(), cseq))?;
        let at = match self.server.get_mut(&id) {
            Some(tx) => {
                tx.acked = true;
                tx.retransmit_at = None;
                // Kept until Timer L to absorb, not to resend: the 2xx
                // (with its SDP) can go.
                tx.last_response = None;
                tx.timeout_at
            }
            None => return None,
        };
        self.schedule(at, TxRef::Server(id));
        Some(ServerTxId(id))
    }

    /// Points the key (and merge key) of `key` at transaction `id`, in
    /// place of any transaction that had them (as a map insert would).
    fn index(&mut self, key: &KeyText, id: u64) {
        let server = &self.server;
        let k = key.key();
        let h = self.hasher.hash_one(k);
        self.server_keys.point(h, id, |i| server.get(&i).is_some_and(|t| t.key.key() == k));
        if let Some(m) = key.merge() {
            let h = self.hasher.hash_one(m);
            self.merged.point(h, id, |i| server.get(&i).is_some_and(|t| t.key.merge() == Some(m)));
        }
    }

    /// Removes transaction `id` and the table entries that point at it.
    fn remove_server(&mut self, id: u64) -> Option<ServerTx> {
        let tx = self.server.remove(&id)?;
        self.server_keys.remove(self.hasher.hash_one(tx.key.key()), id);
        if let Some(m) = tx.key.merge() {
            self.merged.remove(self.hasher.hash_one(m), id);
        }
        if let Some(k) = &tx.ack_key {
            if self.accepted.get(k) == Some(&id) {
                self.accepted.remove(k);
            }
        }
        Some(tx)
    }

    /// Drops guards of transactions answered since, from the front, so
    /// that `next_timeout` does not wake for them.
    fn skip_answered_guards(&mut self) {
        while let Some(&(_, id)) = self.guards.front() {
            if self.server.contains_key(&id) {
                break;
            }
            self.guards.pop_front();
        }
    }

    /// Non-INVITE transactions the TU never answered within 64·T1 are
    /// abandoned (the client gave up at Timer F).
    fn expire_guards(&mut self, now: Instant, counters: &mut Counters) {
        while let Some(&(at, id)) = self.guards.front() {
            let pending = self.server.contains_key(&id);
            if pending && at > now {
                break;
            }
            self.guards.pop_front();
            if pending {
                self.remove_server(id);
                counters.server_unanswered += 1;
            }
        }
    }

    fn server_timer(
        &mut self,
        id: u64,
        now: Instant,
        out: &mut VecDeque<Output>,
        counters: &mut Counters,
    ) {
        let t2 = self.timers.t2;
        let Some(tx) = self.server.get_mut(&id) else {
            return;
        };
        let mut fired = false;
        if tx.timeout_at.is_some_and(|t| t <= now) {
            // H, I, J or L: the transaction ends. L without an ACK is
            // reported: the TU must tear the dialog down (§13.3.1.4).
            let (state, invite, acked) = (tx.state, tx.invite, tx.acked);
            self.remove_server(id);
            match state {
                ServerState::Accepted if acked => {}
                ServerState::Accepted => out.push_back(Output::AckTimeout { tx: ServerTxId(id) }),
                ServerState::Completed if invite => counters.server_timeouts += 1, // H
                ServerState::Trying | ServerState::Proceeding => counters.server_unanswered += 1,
                _ => {}
            }
            return;
        }
        if tx.retransmit_at.is_some_and(|t| t <= now) {
            fired = true;
            // G, or the 2xx retransmission: resend, double, cap at T2.
            if let Some(data) = tx.last_response.clone() {
                counters.retransmissions_sent += 1;
                out.push_back(Output::Transmit {
                    dest: tx.dest,
                    data,
                });
            }
            tx.interval = tx.interval.saturating_mul(2).min(t2);
            tx.retransmit_at = Some(now + tx.interval);
        }
        if fired {
            let at = earliest(tx.retransmit_at, tx.timeout_at);
            self.schedule(at, TxRef::Server(id));
        }
    }

    // ---------------------------------------------------------------- client

    pub fn client_state(&self, id: ClientTxId) -> Option<ClientState> {
        self.client.get(&id.0).map(|t| t.state)
    }

    /// The request as sent, for CANCEL building; empty once a final
    /// response arrived (nothing is sent or CANCELled after it).
    pub fn client_request(&self, id: ClientTxId) -> Option<&Bytes> {
        self.client.get(&id.0).map(|t| &t.request)
    }

    pub fn client_dest(&self, id: ClientTxId) -> Option<SocketAddr> {
        self.client.get(&id.0).map(|t| t.dest)
    }

    /// Starts a client transaction and sends the request. A key clash (the
    /// caller reused a branch) replaces nothing: the old one keeps the key.
    pub fn client_new(
        &mut self,
        key: ClientKey,
        request: Bytes,
        dest: SocketAddr,
        now: Instant,
        out: &mut VecDeque<Output>,
    ) -> ClientTxId {
        let timers = self.timers;
        let id = self.alloc_id();
        let invite = key.method == "INVITE";
        // §17.1.1.2, §17.1.2.2: over TCP/TLS the transport retransmits,
        // so Timers A and E are not started (B and F still bound the wait).
        let retransmit_at = (!reliable(&request)).then(|| now + timers.t1);
        out.push_back(Output::Transmit {
            dest,
            data: request.clone(),
        });
        let tx = ClientTx {
            key: key.clone(),
            invite,
            state: ClientState::Calling,
            request,
            ack: None,
            cancelled: false,
            dest,
            interval: timers.t1,
            retransmit_at,                          // A or E
            timeout_at: Some(now + timers.t1x64()), // B or F
        };
        let at = earliest(tx.retransmit_at, tx.timeout_at);
        if let Entry::Vacant(e) = self.client_keys.entry(key) {
            e.insert(id);
        }
        self.client.insert(id, tx);
        self.schedule(at, TxRef::Client(id));
        ClientTxId(id)
    }

    /// Notes that a CANCEL was sent for `id`: per §9.1 the transaction
    /// gives up 64·T1 later if no final response arrives.
    pub fn client_cancelled(&mut self, id: ClientTxId, now: Instant) {
        let limit = now + self.timers.t1x64();
        let Some(tx) = self.client.get_mut(&id.0) else {
            return;
        };
        tx.cancelled = true;
        if matches!(tx.state, ClientState::Calling | ClientState::Proceeding) {
            let at = Some(tx.timeout_at.map_or(limit, |t| t.min(limit)));
            tx.timeout_at = at;
            self.schedule(at, TxRef::Client(id.0));
        }
    }

    pub fn client_find(&self, branch: &str, method: &str) -> Option<ClientTxId> {
        let key: &dyn KeyParts = &[branch, "", method];
        self.client_keys.get(key).copied().map(ClientTxId)
    }

    /// A response for client transaction `id`. `to` is the response's To
    /// header value, used in the ACK of a non-2xx final.
    pub fn client_response(
        &mut self,
        id: ClientTxId,
        status: u16,
        to: &str,
        now: Instant,
        out: &mut VecDeque<Output>,
        counters: &mut Counters,
    ) -> ResponseFate {
        let timers = self.timers;
        let Some(tx) = self.client.get_mut(&id.0) else {
            return ResponseFate::Absorbed;
        };
        let fate = match (tx.invite, tx.state, status) {
            (_, ClientState::Calling | ClientState::Proceeding, 100..=199) => {
                tx.state = ClientState::Proceeding;
                if tx.invite {
                    // §17.1.1.2: A and B stop; the TU owns the wait now,
                    // bounded by Timer C (and by 64·T1 once cancelled).
                    tx.retransmit_at = None;
                    let c = now + timers.c;
                    tx.timeout_at = Some(match tx.timeout_at {
                        Some(t) if tx.cancelled => t.min(c),
                        _ => c,
                    });
                } else if let Some(at) = tx.retransmit_at {
                    // §17.1.2.2: E keeps firing, at T2.
                    tx.interval = timers.t2;
                    tx.retransmit_at = Some(at.min(now + timers.t2));
                }
                ResponseFate::Deliver(id)
            }
            (true, ClientState::Calling | ClientState::Proceeding, 200..=299) => {
                tx.state = ClientState::Accepted;
                tx.retransmit_at = None;
                // Final: the request is never sent or CANCELled again.
                tx.request = Bytes::new();
                tx.timeout_at = Some(now + timers.t1x64()); // Timer M
                ResponseFate::Deliver(id)
            }
            (true, ClientState::Accepted, 200..=299) => ResponseFate::Deliver(id),
            (true, ClientState::Calling | ClientState::Proceeding, _) => {
                let ack = build_ack(&tx.request, to);
                if let Some(ack) = &ack {
                    out.push_back(Output::Transmit {
                        dest: tx.dest,
                        data: ack.clone(),
                    });
                }
                tx.ack = ack;
                tx.state = ClientState::Completed;
                tx.retransmit_at = None;
                tx.request = Bytes::new();
                tx.timeout_at = Some(now + timers.d);
                ResponseFate::Deliver(id)
            }
            (true, ClientState::Completed, 300..) => {
                if let Some(ack) = tx.ack.clone() {
                    counters.retransmissions_sent += 1;
                    out.push_back(Output::Transmit {
                        dest: tx.dest,
                        data: ack,
                    });
                }
                counters.retransmissions_absorbed += 1;
                ResponseFate::Absorbed
            }
            (false, ClientState::Calling | ClientState::Proceeding, _) => {
                tx.state = ClientState::Completed;
                tx.retransmit_at = None;
                tx.request = Bytes::new();
                tx.timeout_at = Some(now + timers.t4); // Timer K
                ResponseFate::Deliver(id)
            }
            _ => {
                counters.retransmissions_absorbed += 1;
                ResponseFate::Absorbed
            }
        };
        let at = earliest(tx.retransmit_at, tx.timeout_at);
        if matches!(fate, ResponseFate::Deliver(_)) {
            self.schedule(at, TxRef::Client(id.0));
        }
        fate
    }

    fn remove_client(&mut self, id: u64) {
        if let Some(tx) = self.client.remove(&id) {
            if self.client_keys.get(&tx.key) == Some(&id) {
                self.client_keys.remove(&tx.key);
            }
        }
    }

    /// The network said `dest` cannot be reached (ICMP port or host
    /// unreachable, reported by the kernel for a datagram we sent there).
    /// Client transactions to `dest` that have had no response yet end as
    /// if Timer B/F fired (§8.1.3.1: a transport error is a failure of the
    /// request), so the TU acts now instead of after 32 s or a ring
    /// timeout. One that got a response already is left alone: the peer
    /// was there, and a stray ICMP must not kill a live exchange. Returns
    /// how many ended.
    pub fn client_transport_error(
        &mut self,
        dest: SocketAddr,
        out: &mut VecDeque<Output>,
        counters: &mut Counters,
    ) -> usize {
        let mut ended: Vec<u64> = self
            .client
            .iter()
            .filter(|(_, t)| t.dest == dest && t.state == ClientState::Calling && !t.cancelled)
            .map(|(id, _)| *id)
            .collect();
        ended.sort_unstable();
        for id in &ended {
            self.remove_client(*id);
            counters.client_transport_errors += 1;
            out.push_back(Output::ClientTimeout { tx: ClientTxId(*id) });
        }
        ended.len()
    }

    fn client_timer(
        &mut self,
        id: u64,
        now: Instant,
        out: &mut VecDeque<Output>,
        counters: &mut Counters,
    ) {
        let t2 = self.timers.t2;
        let Some(tx) = self.client.get_mut(&id) else {
            return;
        };
        if tx.timeout_at.is_some_and(|t| t <= now) {
            let timed_out = matches!(tx.state, ClientState::Calling | ClientState::Proceeding);
            self.remove_client(id);
            if timed_out {
                // B or F.
                counters.client_timeouts += 1;
                out.push_back(Output::ClientTimeout { tx: ClientTxId(id) });
            }
            return;
        }
        if tx.retransmit_at.is_some_and(|t| t <= now) {
            counters.retransmissions_sent += 1;
            out.push_back(Output::Transmit {
                dest: tx.dest,
                data: tx.request.clone(),
            });
            // A doubles without cap (§17.1.1.2); E is capped at T2.
            let doubled = tx.interval.saturating_mul(2);
            tx.interval = if tx.invite { doubled } else { doubled.min(t2) };
            tx.retransmit_at = Some(now + tx.interval);
            let at = earliest(tx.retransmit_at, tx.timeout_at);
            self.schedule(at, TxRef::Client(id));
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        out: &mut VecDeque<Output>,
        counters: &mut Counters,
    ) {
        while let Some(Reverse((at, r))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            match r {
                TxRef::Server(id) => self.server_timer(id, now, out, counters),
                TxRef::Client(id) => self.client_timer(id, now, out, counters),
            }
        }
        self.expire_guards(now, counters);
        self.completed.expire(now);
    }
}

/// Writes the common part of ACK/CANCEL (§17.1.1.3, §9.1): request line
/// with the original Request-URI, the original top Via only (same branch),
/// Route, From, Call-ID, CSeq with the original number.
fn build_hop_request(original: &[u8], method: &str, to: Option<&str>) -> Option<Bytes> {
    let msg = scan(original).ok()?;
    let super::message::StartLine::Request { uri, .. } = msg.start else {
        return None;
    };
    let (seq, _) = msg.cseq()?.ok()?;
    let mut s = String::with_capacity(original.len().min(1024));
    let _ = write!(
        s,
        "{method} {uri} SIP/2.0\r\nVia: {}\r\n",
        msg.via_values().next()?
    );
    for r in msg.headers_named("route") {
        let _ = write!(s, "Route: {r}\r\n");
    }
    let _ = write!(
        s,
        "Max-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {seq} {method}\r\nContent-Length: 0\r\n\r\n",
        msg.header("from")?,
        to.or(msg.header("to"))?,
        msg.call_id()?,
    );
    Some(Bytes::from(s))
}

/// ACK for a non-2xx final response (§17.1.1.3): To from the response.
pub fn build_ack(original: &[u8], response_to: &str) -> Option<Bytes> {
    build_hop_request(original, "ACK", Some(response_to))
}

/// CANCEL for a pending request (§9.1): everything from the original.
pub fn build_cancel(original: &[u8]) -> Option<Bytes> {
    build_hop_request(original, "CANCEL", None)
}

#[cfg(test)]
mod tests;
