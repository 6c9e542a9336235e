//! The allocator with time passed in: hand-out order, quarantine, early
//! reuse, skipped and unreserved pairs.

use super::*;

const Q: Duration = Duration::from_secs(5);

fn range(pairs: u16) -> PortRange {
    PortRange { start: 20000, end: 20000 + 2 * pairs }
}

fn secs(t0: Instant, s: u64) -> Instant {
    t0 + Duration::from_secs(s)
}

#[test]
fn split_even_and_disjoint() {
    let r = split_range(10000, 10999, 2);
    assert_eq!(r, vec![PortRange { start: 10000, end: 10500 }, PortRange { start: 10500, end: 11000 }]);
    let r = split_range(10001, 10010, 3); // pairs 10002..=10009 → 4 pairs
    assert_eq!(r.iter().map(|x| x.pairs()).sum::<usize>(), 4);
    assert!(r.windows(2).all(|w| w[0].end == w[1].start));
    assert!(r.iter().all(|x| x.start % 2 == 0));
}

#[test]
fn refuses_only_when_every_pair_is_in_use() {
    let t0 = Instant::now();
    let mut a = PortAllocator::new(range(2), Q);
    assert_eq!((a.allocate(t0).unwrap(), a.allocate(t0).unwrap()), (20000, 20002));
    let e = a.allocate(t0).unwrap_err();
    assert!(e.to_string().contains("20000-20003"), "{e}");
    assert_eq!(e.sip_status(), 503);
    assert_eq!(a.exhausted_count, 1);
    a.release(20000, t0);
    a.release(20000, t0); // double release ignored
    a.release(20001, t0); // not a pair of ours: ignored
    assert_eq!((a.in_use(), a.quarantined()), (1, 1));
    // Only a quarantined pair left: reused early rather than refused.
    assert_eq!(a.allocate(secs(t0, 1)).unwrap(), 20000);
    assert_eq!((a.reused_early_count, a.exhausted_count), (1, 1));
    assert!(a.allocate(secs(t0, 1)).is_err());
    assert_eq!(a.exhausted_count, 2);
}

#[test]
fn quarantine_holds_while_other_pairs_are_free() {
    let t0 = Instant::now();
    let mut a = PortAllocator::new(range(3), Q);
    let p = a.allocate(t0).unwrap();
    a.release(p, t0);
    // Never-used pairs first, then the released one once it has waited.
    assert_eq!(a.allocate(t0).unwrap(), 20002);
    assert_eq!(a.allocate(t0).unwrap(), 20004);
    assert_eq!(a.allocate(secs(t0, 5)).unwrap(), p);
    assert_eq!(a.reused_early_count, 0);
    assert_eq!(a.quarantined(), 0);
}

#[test]
fn released_pairs_come_back_oldest_first() {
    let t0 = Instant::now();
    let mut a = PortAllocator::new(range(4), Q);
    for _ in 0..4 {
        a.allocate(t0).unwrap();
    }
    a.release(20004, t0);
    a.release(20000, secs(t0, 1));
    a.release(20006, secs(t0, 2));
    // All past quarantine, or none: the order is the release order.
    let mut late = PortAllocator::new(range(4), Q);
    for _ in 0..4 {
        late.allocate(t0).unwrap();
    }
    late.release(20004, t0);
    late.release(20000, secs(t0, 1));
    late.release(20006, secs(t0, 2));
    let order: Vec<u16> = (0..3).map(|_| a.allocate(secs(t0, 60)).unwrap()).collect();
    assert_eq!(order, vec![20004, 20000, 20006]);
    assert_eq!(a.reused_early_count, 0);
    let order: Vec<u16> = (0..3).map(|_| late.allocate(secs(t0, 3)).unwrap()).collect();
    assert_eq!(order, vec![20004, 20000, 20006]);
    assert_eq!(late.reused_early_count, 3);
    // A pair whose quarantine ended goes before one still in it.
    late.release(20000, secs(t0, 10));
    late.release(20004, secs(t0, 12));
    assert_eq!(late.allocate(secs(t0, 16)).unwrap(), 20000);
    assert_eq!(late.reused_early_count, 3);
    assert_eq!(late.allocate(secs(t0, 16)).unwrap(), 20004);
    assert_eq!(late.reused_early_count, 4);
}

#[test]
fn starts_at_an_offset_and_wraps() {
    let t0 = Instant::now();
    let mut a = PortAllocator::starting_at(range(4), Q, 2);
    let order: Vec<u16> = (0..4).map(|_| a.allocate(t0).unwrap()).collect();
    assert_eq!(order, vec![20004, 20006, 20000, 20002]);
    let mut b = PortAllocator::starting_at(range(4), Q, 7); // modulo the pairs
    assert_eq!(b.allocate(t0).unwrap(), 20006);
    let mut empty = PortAllocator::starting_at(range(0), Q, 5);
    assert!(empty.allocate(t0).is_err());
}

#[test]
fn taken_pairs_are_skipped_and_unused_ones_go_back_first() {
    let t0 = Instant::now();
    let mut a = PortAllocator::new(range(3), Q);
    let p = a.allocate(t0).unwrap();
    a.skip_taken(p, t0);
    assert_eq!((a.bind_skipped_count, a.in_use(), a.quarantined()), (1, 0, 1));
    let q = a.allocate(t0).unwrap();
    assert_ne!(q, p, "a taken pair is retried last");
    // No socket was made: the pair is next again, no quarantine.
    a.unreserve(q);
    assert_eq!((a.in_use(), a.quarantined()), (0, 1));
    assert_eq!(a.allocate(t0).unwrap(), q);
    a.unreserve(q);
    a.unreserve(q); // twice: ignored
    assert_eq!(a.in_use(), 0);
    a.skip_taken(q, t0); // not in use: ignored
    assert_eq!(a.bind_skipped_count, 1);
}
