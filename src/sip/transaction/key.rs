//! A server transaction's identity in one allocation.
//!
//! The §17.2.3 key (branch, sent-by, method) and, for a request without a
//! To tag, the §8.2.2.2 merge key (Call-ID, CSeq, CSeq method, From tag)
//! are written once into one string. The live transaction owns it, the
//! lookup tables only hold (hash, id) and compare through it, and when a
//! non-INVITE is answered finally the same allocation moves into its
//! Completed record: one allocation per transaction instead of a dozen
//! (owned key, its clone as a map key, the same for the merge key).

use std::fmt;

/// §17.2.3 server key, borrowed from the request. `method` is INVITE for
/// an ACK so the ACK of a non-2xx final finds its INVITE; CANCEL keys
/// separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServerKey<'a> {
    pub branch: &'a str,
    pub sent_by: &'a str,
    pub method: &'a str,
}

impl<'a> ServerKey<'a> {
    pub fn parts(&self) -> [&'a str; 3] {
        [self.branch, self.sent_by, self.method]
    }
}

/// (Call-ID, CSeq number, CSeq method, From tag), borrowed.
pub type MergeKey<'a> = (&'a str, u32, &'a str, &'a str);

/// Key parts, then merge parts (the CSeq number is kept as a number).
const PARTS: usize = 6;

pub struct KeyText {
    /// The six parts, concatenated; `ends[i]` is where part `i` ends.
    text: Box<str>,
    ends: [u32; PARTS],
    cseq: u32,
    has_merge: bool,
}

impl KeyText {
    pub fn new(key: ServerKey<'_>, merge: Option<MergeKey<'_>>) -> Self {
        let (call_id, cseq, cseq_method, from_tag) = merge.unwrap_or(("", 0, "", ""));
        let parts = [
            key.branch,
            key.sent_by,
            key.method,
            call_id,
            cseq_method,
            from_tag,
        ];
        let mut text = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        let mut ends = [0u32; PARTS];
        for (p, end) in parts.iter().zip(ends.iter_mut()) {
            text.push_str(p);
            // A datagram is far below 4 GiB, so the ends fit.
            *end = u32::try_from(text.len()).unwrap_or(u32::MAX);
        }
        KeyText {
            text: text.into_boxed_str(),
            ends,
            cseq,
            has_merge: merge.is_some(),
        }
    }

    fn part(&self, i: usize) -> &str {
        let start = match i.checked_sub(1) {
            Some(prev) => self.ends.get(prev).map_or(0, |e| *e as usize),
            None => 0,
        };
        let end = self.ends.get(i).map_or(0, |e| *e as usize);
        self.text.get(start..end).unwrap_or("")
    }

    pub fn key(&self) -> ServerKey<'_> {
        ServerKey {
            branch: self.part(0),
            sent_by: self.part(1),
            method: self.part(2),
        }
    }

    pub fn merge(&self) -> Option<MergeKey<'_>> {
        self.has_merge
            .then(|| (self.part(3), self.cseq, self.part(4), self.part(5)))
    }
}

impl fmt::Debug for KeyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyText")
            .field("key", &self.key())
            .field("merge", &self.merge())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip_including_empty_ones() {
        let key = ServerKey {
            branch: "z9hG4bKa",
            sent_by: "",
            method: "REGISTER",
        };
        let k = KeyText::new(key, Some(("cid@h", 7, "REGISTER", "")));
        assert_eq!(k.key(), key);
        assert_eq!(k.merge(), Some(("cid@h", 7, "REGISTER", "")));
        let k = KeyText::new(key, None);
        assert_eq!((k.key(), k.merge()), (key, None));
    }
}
