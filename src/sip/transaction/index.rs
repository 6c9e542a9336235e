//! An index from a key's hash to the id of whoever holds the key text.
//!
//! Live server transactions and Completed records both index their key and
//! merge key this way, so a request's key is stored once (key.rs) and the
//! table holds only (hash, id). The hash is kept so that growing a table
//! never rehashes key text. What "matches" means is the caller's: it looks
//! the id up and compares the key it holds.

use hashbrown::HashTable;

#[derive(Debug, Default)]
pub(super) struct HashIndex(HashTable<(u64, u64)>);

impl HashIndex {
    /// The id under hash `h` whose key `is` says matches.
    pub fn find(&self, h: u64, is: impl Fn(u64) -> bool) -> Option<u64> {
        self.0.find(h, |&(hh, id)| hh == h && is(id)).map(|&(_, id)| id)
    }

    /// Points the entry whose key `is` says matches at `id`, or adds one:
    /// what a map insert does, superseding the previous owner of the key.
    pub fn point(&mut self, h: u64, id: u64, is: impl Fn(u64) -> bool) {
        match self.0.find_entry(h, |&(hh, i)| hh == h && is(i)) {
            Ok(mut e) => *e.get_mut() = (h, id),
            Err(_) => {
                self.0.insert_unique(h, (h, id), |&(hh, _)| hh);
            }
        }
    }

    /// Removes the entry under `h` that points at `id`, if any; an entry
    /// since pointed at a newer owner of the same key stays.
    pub fn remove(&mut self, h: u64, id: u64) {
        if let Ok(e) = self.0.find_entry(h, |&(_, i)| i == id) {
            e.remove();
        }
    }

    /// Gives memory back after a burst: at a quarter of its capacity the
    /// table is halved (amortised O(1); never below 64 slots).
    pub fn shrink(&mut self) {
        let t = &mut self.0;
        if t.capacity() > 64 && t.len() < t.capacity() / 4 {
            t.shrink_to(t.len() * 2, |&(h, _)| h);
        }
    }
}
