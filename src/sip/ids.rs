//! Shard-owned identifiers.
//!
//! Every branch, To/From tag and Call-ID we generate carries the number of the
//! shard that created it, so any shard can tell who owns an incoming message
//! without a shared map (DESIGN.md, "Affinity"):
//!
//! - branch:  `z9hG4bK-cc<shard>-<16 hex>`
//! - tag:     `cc<shard>-<16 hex>`
//! - Call-ID: `cc<shard>-<16 hex>@<host>`

use std::fmt::Write as _;

use super::message::Scanned;
use super::view::View;

/// RFC 3261 magic cookie that marks a §17 branch.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// SplitMix64: tiny, fast and seedable, so a simulation replays exactly.
/// Not cryptographic; ids only need to be unique, not secret.
#[derive(Debug, Clone)]
pub struct IdRng(u64);

impl IdRng {
    pub fn new(seed: u64) -> Self {
        IdRng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Generates the ids owned by one shard.
#[derive(Debug, Clone)]
pub struct IdGen {
    shard: u16,
    rng: IdRng,
}

impl IdGen {
    pub fn new(shard: u16, seed: u64) -> Self {
        // Mix the shard in so shards seeded alike still diverge.
        IdGen {
            shard,
            rng: IdRng::new(seed ^ (u64::from(shard) << 48)),
        }
    }

    pub fn shard(&self) -> u16 {
        self.shard
    }

    pub fn branch(&mut self) -> String {
        let mut s = String::with_capacity(32);
        let _ = write!(
            s,
            "{MAGIC_COOKIE}-cc{}-{:016x}",
            self.shard,
            self.rng.next_u64()
        );
        s
    }

    pub fn tag(&mut self) -> String {
        let mut s = String::with_capacity(24);
        let _ = write!(s, "cc{}-{:016x}", self.shard, self.rng.next_u64());
        s
    }

    pub fn call_id(&mut self, host: &str) -> String {
        let mut s = String::with_capacity(24 + host.len());
        let _ = write!(s, "cc{}-{:016x}@{host}", self.shard, self.rng.next_u64());
        s
    }
}

/// Shard encoded in one of our tags or Call-IDs (`cc<shard>-...`).
pub fn shard_of_tag(tag: &str) -> Option<u16> {
    let rest = tag.strip_prefix("cc")?;
    let (num, tail) = rest.split_once('-')?;
    if num.is_empty() || num.len() > 5 || tail.is_empty() {
        return None;
    }
    num.parse().ok()
}

/// Shard encoded in one of our branches (`z9hG4bK-cc<shard>-...`).
pub fn shard_of_branch(branch: &str) -> Option<u16> {
    shard_of_tag(branch.strip_prefix(MAGIC_COOKIE)?.strip_prefix('-')?)
}

/// Which shard owns this message, if any of our ids is in it.
///
/// Responses: by the top Via branch (only we put it there). Requests: by the
/// To tag (in-dialog requests and ACKs carry our local tag there), else by
/// our Call-ID. CANCEL and out-of-dialog requests carry none → `None`, handle
/// locally (the kernel already keeps one source address on one shard).
pub fn owner_of(msg: &Scanned<'_>) -> Option<u16> {
    if msg.is_response() {
        return msg
            .top_via()
            .and_then(|v| v.branch)
            .and_then(shard_of_branch);
    }
    msg.to_tag()
        .and_then(shard_of_tag)
        .or_else(|| msg.call_id().and_then(shard_of_tag))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::scan;

    #[test]
    fn ids_carry_shard_and_are_deterministic() {
        let mut a = IdGen::new(3, 42);
        let mut b = IdGen::new(3, 42);
        let br = a.branch();
        assert_eq!(br, b.branch());
        assert!(br.starts_with("z9hG4bK-cc3-"));
        assert_eq!(shard_of_branch(&br), Some(3));
        let t = a.tag();
        assert_eq!(shard_of_tag(&t), Some(3));
        let c = a.call_id("example.com");
        assert!(c.ends_with("@example.com"));
        assert_eq!(shard_of_tag(&c), Some(3));
        assert_ne!(a.tag(), a.tag());
        assert_ne!(IdGen::new(4, 42).tag(), IdGen::new(3, 42).tag());
    }

    #[test]
    fn foreign_ids_have_no_owner() {
        assert_eq!(shard_of_tag("abc"), None);
        assert_eq!(shard_of_tag("cc-x"), None);
        assert_eq!(shard_of_tag("cc99999999-x"), None);
        assert_eq!(shard_of_tag("cc1-"), None);
        assert_eq!(shard_of_branch("z9hG4bK776asdhds"), None);
        assert_eq!(shard_of_branch("z9hG4bK-cc7-ab"), Some(7));
    }

    fn req(extra: &str) -> Vec<u8> {
        format!(
            "BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\n\
             From: <sip:x@y>;tag=1\r\n{extra}Call-ID: abc\r\nCSeq: 2 BYE\r\n\
             Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn owner_of_messages() {
        let d = req("To: <sip:a@b>;tag=cc2-ff\r\n");
        assert_eq!(owner_of(&scan(&d).unwrap()), Some(2));
        let d = req("To: <sip:a@b>\r\n");
        assert_eq!(owner_of(&scan(&d).unwrap()), None);
        let d = req("To: <sip:a@b>;tag=theirs\r\n");
        assert_eq!(owner_of(&scan(&d).unwrap()), None);
        let r = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-cc5-aa\r\n\
                  From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
        assert_eq!(owner_of(&scan(r).unwrap()), Some(5));
    }
}
