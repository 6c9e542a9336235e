//! Which registered contacts still answer. The routing shard owns the
//! bindings, so it decides when each contact is probed and what a run of
//! failures means; a signalling shard sends the OPTIONS (it owns sockets
//! and transactions) and reports back. An unreachable contact is left out
//! of the contact set the router sees, so it gets no offer, until it
//! answers a probe again or registers again. The probes also keep NAT
//! bindings open. Pure: time is passed in.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

/// A probe older than this without a result is forgotten (the shard that
/// sent it was lost); the contact is probed afresh.
const PROBE_FORGET_MS: u64 = 120_000;

/// One OPTIONS to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub id: u64,
    pub uri: String,
    pub dest: SocketAddr,
}

type Key = (String, String);

#[derive(Debug)]
pub struct Liveness {
    interval_ms: u64,
    max_failures: u32,
    next_round_ms: u64,
    next_id: u64,
    /// Probe id → (agent, contact URI, sent at).
    pending: HashMap<u64, (Key, u64)>,
    failures: HashMap<Key, u32>,
    unreachable: HashSet<Key>,
}

impl Liveness {
    /// `interval_s` 0: no probes.
    pub fn new(interval_s: u32, max_failures: u32, now_ms: u64) -> Liveness {
        let interval_ms = u64::from(interval_s) * 1000;
        Liveness {
            interval_ms,
            max_failures: max_failures.max(1),
            next_round_ms: now_ms.saturating_add(interval_ms),
            next_id: 1,
            pending: HashMap::new(),
            failures: HashMap::new(),
            unreachable: HashSet::new(),
        }
    }

    /// When the next round of probes is due.
    pub fn next_timeout(&self) -> Option<u64> {
        (self.interval_ms > 0).then_some(self.next_round_ms)
    }

    /// A round, if due: one probe per contact (`(agent, uri, target)`) that
    /// has none outstanding.
    pub fn round<'a>(
        &mut self,
        contacts: impl Iterator<Item = (&'a str, &'a str, SocketAddr)>,
        now_ms: u64,
    ) -> Vec<Probe> {
        if self.interval_ms == 0 || now_ms < self.next_round_ms {
            return Vec::new();
        }
        self.next_round_ms = now_ms.saturating_add(self.interval_ms);
        self.pending.retain(|_, (_, sent)| now_ms.saturating_sub(*sent) < PROBE_FORGET_MS);
        let busy: HashSet<&Key> = self.pending.values().map(|(k, _)| k).collect();
        // Probe ids in a fixed order whatever order the bindings came in:
        // a run replays the same from the same inputs.
        let mut contacts: Vec<_> = contacts.collect();
        contacts.sort_unstable();
        let mut probes = Vec::new();
        let mut keys = Vec::new();
        for (agent, uri, dest) in contacts {
            let key = (agent.to_owned(), uri.to_owned());
            if busy.contains(&key) {
                continue;
            }
            probes.push(Probe { id: self.next_id, uri: uri.to_owned(), dest });
            keys.push((self.next_id, key));
            self.next_id += 1;
        }
        for (id, key) in keys {
            self.pending.insert(id, (key, now_ms));
        }
        probes
    }

    /// A probe's outcome (`ok`: any response from the contact). Returns
    /// the agent whose reachable contacts changed.
    pub fn result(&mut self, id: u64, ok: bool) -> Option<String> {
        let (key, _) = self.pending.remove(&id)?;
        if ok {
            self.failures.remove(&key);
            return self.unreachable.remove(&key).then(|| key.0);
        }
        let n = self.failures.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        if *n >= self.max_failures && !self.unreachable.contains(&key) {
            let agent = key.0.clone();
            self.unreachable.insert(key);
            return Some(agent);
        }
        None
    }

    /// The contact registered again (or went away): it starts afresh.
    /// True if it had been unreachable.
    pub fn reset(&mut self, agent: &str, uri: &str) -> bool {
        let key = (agent.to_owned(), uri.to_owned());
        self.failures.remove(&key);
        self.unreachable.remove(&key)
    }

    pub fn is_unreachable(&self, agent: &str, uri: &str) -> bool {
        !self.unreachable.is_empty() && self.unreachable.contains(&(agent.to_owned(), uri.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest() -> SocketAddr {
        "127.0.0.1:5070".parse().unwrap()
    }

    #[test]
    fn failures_in_a_row_make_a_contact_unreachable_until_it_answers() {
        let mut l = Liveness::new(30, 2, 0);
        assert_eq!(l.next_timeout(), Some(30_000));
        let c = || [("alice", "sip:alice@h", dest())].into_iter();
        assert!(l.round(c(), 29_999).is_empty());
        let p = l.round(c(), 30_000);
        assert_eq!(p.len(), 1);
        // Still outstanding: the next round does not pile another on.
        assert!(l.round(c(), 60_000).is_empty());
        assert_eq!(l.result(p[0].id, false), None);
        let p = l.round(c(), 90_000);
        assert_eq!(l.result(p[0].id, false), Some("alice".into()));
        assert!(l.is_unreachable("alice", "sip:alice@h"));
        // A third failure changes nothing; an answer brings it back.
        let p = l.round(c(), 120_000);
        assert_eq!(l.result(p[0].id, false), None);
        let p = l.round(c(), 150_000);
        assert_eq!(l.result(p[0].id, true), Some("alice".into()));
        assert!(!l.is_unreachable("alice", "sip:alice@h"));
        assert_eq!(l.result(p[0].id, true), None, "a result counts once");
    }

    #[test]
    fn registering_again_clears_it_and_zero_interval_is_off() {
        let mut l = Liveness::new(1, 1, 0);
        let p = l.round([("a", "sip:a@h", dest())].into_iter(), 1_000);
        assert_eq!(l.result(p[0].id, false), Some("a".into()));
        assert!(l.reset("a", "sip:a@h"));
        assert!(!l.is_unreachable("a", "sip:a@h"));
        let mut off = Liveness::new(0, 3, 0);
        assert_eq!(off.next_timeout(), None);
        assert!(off.round([("a", "sip:a@h", dest())].into_iter(), u64::MAX).is_empty());
    }
}
