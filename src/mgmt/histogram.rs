//! A fixed-bucket histogram that any thread records into with a few atomic
//! adds (no lock, no allocation), read by the management plane's `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Most upper bounds a histogram has (one more bucket holds the rest).
const MAX_BOUNDS: usize = 15;

pub struct Histogram {
    /// Upper bounds in seconds, ascending.
    bounds: &'static [f64],
    /// Per bucket, not cumulative; the last one is above every bound.
    counts: [AtomicU64; MAX_BOUNDS + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    /// `bounds` beyond [`MAX_BOUNDS`] are ignored.
    pub const fn new(bounds: &'static [f64]) -> Histogram {
        Histogram { bounds, counts: [const { AtomicU64::new(0) }; MAX_BOUNDS + 1], sum_ns: AtomicU64::new(0) }
    }

    fn bounds(&self) -> &[f64] {
        self.bounds.get(..MAX_BOUNDS).unwrap_or(self.bounds)
    }

    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = self.bounds().iter().position(|b| s <= *b).unwrap_or(self.bounds().len());
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_ns.fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// (sum in seconds, count, per-bucket counts with their upper bounds,
    /// the last one +Inf) for the Prometheus encoder.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut buckets: Vec<(f64, u64)> =
            self.bounds().iter().zip(&self.counts).map(|(b, c)| (*b, c.load(Ordering::Relaxed))).collect();
        let over = self.counts.get(buckets.len()).map_or(0, |c| c.load(Ordering::Relaxed));
        buckets.push((f64::INFINITY, over));
        let count = buckets.iter().map(|(_, c)| c).sum();
        (self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9, count, buckets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket() {
        static H: Histogram = Histogram::new(&[0.001, 0.01]);
        H.observe(Duration::from_micros(500));
        H.observe(Duration::from_millis(1));
        H.observe(Duration::from_millis(5));
        H.observe(Duration::from_secs(2));
        let (sum, count, b) = H.snapshot();
        assert_eq!(count, 4);
        assert_eq!(b, vec![(0.001, 2), (0.01, 1), (f64::INFINITY, 1)]);
        assert!((sum - 2.0065).abs() < 1e-9, "{sum}");
    }
}
