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
//! once, in its record.
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
use hashbrown::HashTable;

/// Key parts: branch, sent-by, method; merge parts: Call-ID, CSeq method,
/// From tag (the CSeq number is kept as a number).
const PARTS: usize = 6;

struct Record {
    /// The six parts, concatenated; `ends[i]` is where part `i` ends.
    text: Box<str>,
    ends: [u32; PARTS],
    cseq: u32,
    has_merge: bool,
    response: Bytes,
    dest: SocketAddr,
    expiry: Instant,
}

impl Record {
    fn part(&self, i: usize) -> &str {
        let start = match i {
            0 => 0,
            _ => self.ends.get(i - 1).map_or(0, |e| *e as usize),
        };
        let end = self.ends.get(i).map_or(0, |e| *e as usize);
        self.text.get(start..end).unwrap_or("")
    }

    fn key(&self) -> [&str; 3] {
        [self.part(0), self.part(1), self.part(2)]
    }

    fn merge(&self) -> Option<(&str, u32, &str, &str)> {
        self.has_merge
            .then(|| (self.part(3), self.cseq, self.part(4), self.part(5)))
    }
}

/// (Call-ID, CSeq number, CSeq method, From tag), borrowed.
pub type MergeRef<'a> = (&'a str, u32, &'a str, &'a str);

/// Completed non-INVITE server transactions of one endpoint.
pub struct Completed {
    records: VecDeque<Record>,
    /// Sequence number of `records[0]`; record `s` is at `s - head`.
    head: u64,
    /// (hash, sequence number) by key and by merge key. The hash is kept
    /// so that growing a table never rehashes the key text.
    by_key: HashTable<(u64, u64)>,
    by_merge: HashTable<(u64, u64)>,
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
            by_key: HashTable::new(),
            by_merge: HashTable::new(),
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
        let i = usize::try_from(seq.checked_sub(self.head)?).ok()?;
        self.records.get(i)
    }

    fn key_hash(&self, key: [&str; 3]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn merge_hash(&self, m: MergeRef<'_>) -> u64 {
        self.hasher.hash_one(m)
    }

    /// The response to resend for a retransmission of `key`, and where.
    pub fn find(&self, key: [&str; 3]) -> Option<(&Bytes, SocketAddr)> {
        let h = self.key_hash(key);
        let &(_, seq) = self.by_key.find(h, |&(hh, s)| {
            hh == h && self.get(s).is_some_and(|r| r.key() == key)
        })?;
        self.get(seq).map(|r| (&r.response, r.dest))
    }

    /// Whether a record has this merge key (§8.2.2.2).
    pub fn has_merge(&self, m: MergeRef<'_>) -> bool {
        let h = self.merge_hash(m);
        self.by_merge
            .find(h, |&(hh, s)| {
                hh == h && self.get(s).is_some_and(|r| r.merge() == Some(m))
            })
            .is_some()
    }

    /// Records a transaction that just sent its final `response` at `now`.
    /// A record with the same key (or merge key) is superseded: lookups
    /// find the new one, and the old one just waits to expire.
    pub fn insert(
        &mut self,
        key: [&str; 3],
        merge: Option<MergeRef<'_>>,
        response: Bytes,
        dest: SocketAddr,
        now: Instant,
    ) {
        let due = now + self.lifetime;
        let expiry = match self.records.back() {
            Some(last) if last.expiry >= due => last.expiry,
            _ => due + self.batch,
        };
        let (call_id, cseq, cseq_method, from_tag) = merge.unwrap_or(("", 0, "", ""));
        let parts = [key[0], key[1], key[2], call_id, cseq_method, from_tag];
        let mut text = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        let mut ends = [0u32; PARTS];
        for (p, end) in parts.iter().zip(ends.iter_mut()) {
            text.push_str(p);
            // A datagram is far below 4 GiB, so the ends fit.
            *end = u32::try_from(text.len()).unwrap_or(u32::MAX);
        }
        let seq = self.head + self.records.len() as u64;
        self.records.push_back(Record {
            text: text.into_boxed_str(),
            ends,
            cseq,
            has_merge: merge.is_some(),
            response,
            dest,
            expiry,
        });
        let h = self.key_hash(key);
        self.unindex_key(h, key);
        self.by_key.insert_unique(h, (h, seq), |&(hh, _)| hh);
        if let Some(m) = merge {
            let h = self.merge_hash(m);
            self.unindex_merge(h, m);
            self.by_merge.insert_unique(h, (h, seq), |&(hh, _)| hh);
        }
    }

    fn unindex_key(&mut self, h: u64, key: [&str; 3]) {
        let (records, head) = (&self.records, self.head);
        let at = |s: u64| records.get(usize::try_from(s.wrapping_sub(head)).ok()?);
        if let Ok(e) = self.by_key.find_entry(h, |&(hh, s)| {
            hh == h && at(s).is_some_and(|r| r.key() == key)
        }) {
            e.remove();
        }
    }

    fn unindex_merge(&mut self, h: u64, m: MergeRef<'_>) {
        let (records, head) = (&self.records, self.head);
        let at = |s: u64| records.get(usize::try_from(s.wrapping_sub(head)).ok()?);
        if let Ok(e) = self.by_merge.find_entry(h, |&(hh, s)| {
            hh == h && at(s).is_some_and(|r| r.merge() == Some(m))
        }) {
            e.remove();
        }
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
                let h = self.hasher.hash_one(r.key());
                if let Ok(e) = self.by_key.find_entry(h, |&(_, s)| s == seq) {
                    e.remove();
                }
                if let Some(m) = r.merge() {
                    let h = self.hasher.hash_one(m);
                    if let Ok(e) = self.by_merge.find_entry(h, |&(_, s)| s == seq) {
                        e.remove();
                    }
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
        for t in [&mut self.by_key, &mut self.by_merge] {
            if t.capacity() > 64 && t.len() < t.capacity() / 4 {
                t.shrink_to(t.len() * 2, |&(h, _)| h);
            }
        }
    }
}
