//! Non-INVITE server transactions after their final response (RFC 3261
//! §17.2.2 Completed), kept as compact records.
//!
//! A Completed non-INVITE transaction does one thing until Timer J: it
//! answers a retransmitted request with the same final response. It needs
//! its key, the response bytes (shared `Bytes`, never copied), where to send
//! them, and when to forget. It also still counts as an "ongoing
//! transaction" for merged-request detection (§8.2.2.2), so the record
//! keeps the merge key too. Everything else the live transaction held (the
//! response base, To tag, ids, timers) is dropped when the final is sent.
//!
//! Every record lives for the same Timer J (a constant per endpoint), so
//! expiries are monotonic in insertion order: records sit in a FIFO and
//! expire from its front, with no per-record timer and no scan. Records are
//! found through hash tables of sequence numbers; each key's text is stored
//! once, in its record (key.rs).
//!
//! Expiries are batched: a record shares the deadline of the record before
//! it when that one is at most `batch` later than its own Timer J. So a
//! record lives between J and J + `batch`, and at any request rate the
//! records cost at most one wake-up per `batch` (one per record before,
//! which at 6,000 REGISTER/s was most of the engine's idle CPU). Keeping a
//! Completed transaction a little longer than J only absorbs more
//! retransmissions; J is a lower bound on how long a retransmission must be
//! absorbed.

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::index::HashIndex;
use super::key::{KeyText, MergeKey, ServerKey};

struct Record {
    /// Moved here from the live transaction: no copy.
    key: KeyText,
    response: Bytes,
    dest: SocketAddr,
    expiry: Instant,
}

/// Record `seq` of a deque whose front is record `head`.
fn record_at(records: &VecDeque<Record>, head: u64, seq: u64) -> Option<&Record> {
    records.get(usize::try_from(seq.checked_sub(head)?).ok()?)
}

/// Completed non-INVITE server transactions of one endpoint.
pub struct Completed {
    records: VecDeque<Record>,
    /// Sequence number of `records[0]`; record `s` is at `s - head`.
    head: u64,
    /// Sequence numbers by key and by merge key.
    by_key: HashIndex,
    by_merge: HashIndex,
    /// SipHash with a random key: branches and Call-IDs are chosen by
    /// whoever sends us datagrams.
    hasher: RandomState,
    lifetime: Duration,
    batch: Duration,
}

impl std::fmt::Debug for Completed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completed")
            .field("len", &self.records.len())
            .field("next_expiry", &self.next_expiry())
            .finish()
    }
}

impl Completed {
    /// Records live `lifetime` (Timer J), plus at most `batch`.
    pub fn new(lifetime: Duration, batch: Duration) -> Self {
        Completed {
            records: VecDeque::new(),
            head: 0,
            by_key: HashIndex::default(),
            by_merge: HashIndex::default(),
            hasher: RandomState::new(),
            lifetime,
            batch,
        }
    }

    /// Records held, superseded ones included (they hold memory too).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn next_expiry(&self) -> Option<Instant> {
        self.records.front().map(|r| r.expiry)
    }

    fn get(&self, seq: u64) -> Option<&Record> {
        record_at(&self.records, self.head, seq)
    }

    /// The response to resend for a retransmission of `key`, and where.
    pub fn find(&self, key: ServerKey<'_>) -> Option<(&Bytes, SocketAddr)> {
        let h = self.hasher.hash_one(key);
        let seq = self.by_key.find(h, |s| self.get(s).is_some_and(|r| r.key.key() == key))?;
        self.get(seq).map(|r| (&r.response, r.dest))
    }

    /// Whether a record has this merge key (§8.2.2.2).
    pub fn has_merge(&self, m: MergeKey<'_>) -> bool {
        let h = self.hasher.hash_one(m);
        self.by_merge.find(h, |s| self.get(s).is_some_and(|r| r.key.merge() == Some(m))).is_some()
    }

    /// Records a transaction that just sent its final `response` at `now`.
    /// A record with the same key (or merge key) is superseded: lookups
    /// find the new one, and the old one just waits to expire.
    pub fn insert(&mut self, key: KeyText, response: Bytes, dest: SocketAddr, now: Instant) {
        let due = now + self.lifetime;
        let expiry = match self.records.back() {
            Some(last) if last.expiry >= due => last.expiry,
            _ => due + self.batch,
        };
        let seq = self.head + self.records.len() as u64;
        let (records, head) = (&self.records, self.head);
        let at = |s: u64| record_at(records, head, s);
        let k = key.key();
        self.by_key.point(self.hasher.hash_one(k), seq, |s| at(s).is_some_and(|r| r.key.key() == k));
        if let Some(m) = key.merge() {
            let h = self.hasher.hash_one(m);
            self.by_merge.point(h, seq, |s| at(s).is_some_and(|r| r.key.merge() == Some(m)));
        }
        self.records.push_back(Record {
            key,
            response,
            dest,
            expiry,
        });
    }

    /// Forgets every record whose deadline is at or before `now`; returns
    /// how many. Pops from the front only: O(expired records).
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while self.records.front().is_some_and(|r| r.expiry <= now) {
            let seq = self.head;
            if let Some(r) = self.records.front() {
                // Unindex only entries that still point at this record: a
                // newer record with the same key keeps its entry.
                self.by_key.remove(self.hasher.hash_one(r.key.key()), seq);
                if let Some(m) = r.key.merge() {
                    self.by_merge.remove(self.hasher.hash_one(m), seq);
                }
            }
            self.records.pop_front();
            self.head += 1;
            n += 1;
        }
        if n > 0 {
            self.shrink();
        }
        n
    }

    /// Gives memory back after a burst: a deque or table at a quarter of
    /// its capacity is halved (amortised O(1); never below 64 slots).
    fn shrink(&mut self) {
        let len = self.records.len();
        if self.records.capacity() > 64 && len < self.records.capacity() / 4 {
            self.records.shrink_to(len * 2);
        }
        self.by_key.shrink();
        self.by_merge.shrink();
    }
}
