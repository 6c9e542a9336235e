//! What the management plane shows: samples published by each executor.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One counter or gauge value, Prometheus style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub name: &'static str,
    /// Rendered label set without braces, e.g. `reason="garbage"`; may be empty.
    pub labels: String,
    pub value: u64,
}

impl Sample {
    pub fn new(name: &'static str, labels: impl Into<String>, value: u64) -> Sample {
        Sample { name, labels: labels.into(), value }
    }
}

/// Snapshots written by executors, read by the HTTP thread.
///
/// Publishing is on demand: a snapshot of 2,000 agents cost the routing
/// shard about 10 % of its CPU when it was rebuilt every 100 ms under
/// load (perf, 2026-11-24). A reader asks ([`Board::request`]), each
/// publisher sees the new request number at its next housekeeping tick
/// ([`Board::wanted`]), publishes, and acknowledges it; the reader waits for
/// every acknowledgement, bounded, then renders.
pub struct Board {
    /// One slot per publisher (each signalling shard, then routing).
    slots: Vec<Mutex<Arc<Vec<Sample>>>>,
    /// The latest request number handed out to a reader.
    requested: AtomicU64,
    /// Per slot: the request number its latest publication answers.
    answered: Vec<AtomicU64>,
    /// One JSON object per binding, with `expires_at_ms` (wall clock); the
    /// reader turns that into `expires_in` so the routing shard publishes
    /// only on change, not every second.
    agents: Mutex<Arc<Vec<serde_json::Value>>>,
    /// The router's snapshot (agents' ACD status, queues), as JSON.
    queues: Mutex<Arc<serde_json::Value>>,
}

impl Board {
    pub fn new(publishers: usize) -> Board {
        Board {
            slots: (0..publishers).map(|_| Mutex::new(Arc::new(Vec::new()))).collect(),
            requested: AtomicU64::new(0),
            answered: (0..publishers).map(|_| AtomicU64::new(0)).collect(),
            agents: Mutex::new(Arc::new(Vec::new())),
            queues: Mutex::new(Arc::new(serde_json::Value::Null)),
        }
    }

    /// For a publisher's tick: the request number to answer when a reader
    /// asked since `last` (then publish and [`Board::answered`] it).
    pub fn wanted(&self, last: u64) -> Option<u64> {
        let r = self.requested.load(Ordering::Acquire);
        (r != last).then_some(r)
    }

    /// Marks `slot`'s publication (made after reading `request`) as done.
    pub fn answered(&self, slot: usize, request: u64) {
        if let Some(a) = self.answered.get(slot) {
            a.store(request, Ordering::Release);
        }
    }

    /// A reader's request for fresh snapshots: waits until every publisher
    /// has answered it or `within` has passed (a stalled executor then
    /// shows its previous snapshot rather than blocking the reader).
    /// Returns whether all answered.
    pub fn request(&self, within: Duration) -> bool {
        let r = self.ask();
        let deadline = Instant::now() + within;
        loop {
            if self.all_answered(r) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The non-blocking half of [`Board::request`]: hands out a request
    /// number for the publishers; poll [`Board::all_answered`] with it.
    pub fn ask(&self) -> u64 {
        self.requested.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Whether every publisher has published since request `r` was asked.
    pub fn all_answered(&self, r: u64) -> bool {
        self.answered.iter().all(|a| a.load(Ordering::Acquire) >= r)
    }

    /// Every slot's latest samples, in slot order.
    pub fn snapshots(&self) -> Vec<Arc<Vec<Sample>>> {
        self.slots.iter().map(|s| s.lock().map(|g| g.clone()).unwrap_or_default()).collect()
    }

    /// The value of an unlabelled sample summed across publishers (None:
    /// nobody publishes it).
    pub fn total(&self, name: &str) -> Option<u64> {
        let mut found = None;
        for snap in self.snapshots() {
            for s in snap.iter().filter(|s| s.name == name && s.labels.is_empty()) {
                *found.get_or_insert(0) += s.value;
            }
        }
        found
    }

    /// Replaces publisher `slot`'s samples.
    pub fn publish(&self, slot: usize, samples: Vec<Sample>) {
        if let Some(s) = self.slots.get(slot) {
            if let Ok(mut g) = s.lock() {
                *g = Arc::new(samples);
            }
        }
    }

    pub fn publish_agents(&self, lines: Vec<serde_json::Value>) {
        if let Ok(mut g) = self.agents.lock() {
            *g = Arc::new(lines);
        }
    }

    pub fn publish_queues(&self, snapshot: serde_json::Value) {
        if let Ok(mut g) = self.queues.lock() {
            *g = Arc::new(snapshot);
        }
    }

    pub fn queues(&self) -> Arc<serde_json::Value> {
        self.queues.lock().map(|g| g.clone()).unwrap_or_default()
    }

    pub fn agents(&self) -> Arc<Vec<serde_json::Value>> {
        self.agents.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// JSON lines for `/agents`, with seconds left computed at `now_ms`.
    pub fn render_agents(&self, now_ms: u64) -> String {
        let mut out = String::new();
        for a in self.agents().iter() {
            let mut a = a.clone();
            if let Some(obj) = a.as_object_mut() {
                let at = obj.get("expires_at_ms").and_then(|v| v.as_u64()).unwrap_or(0);
                obj.insert("expires_in".into(), at.saturating_sub(now_ms).div_ceil(1000).into());
            }
            out.push_str(&a.to_string());
            out.push('\n');
        }
        out
    }

    /// Every series (name, rendered labels) summed across publishers, in
    /// name order so a family's series are adjacent.
    pub fn sums(&self) -> BTreeMap<(&'static str, String), u64> {
        let mut sums: BTreeMap<(&'static str, String), u64> = BTreeMap::new();
        for snap in self.snapshots() {
            for s in snap.iter() {
                *sums.entry((s.name, s.labels.clone())).or_default() += s.value;
            }
        }
        sums
    }

    /// Prometheus text exposition, samples with the same name and labels
    /// summed across publishers.
    pub fn render_metrics(&self) -> String {
        let sums = self.sums();
        let mut out = String::with_capacity(sums.len() * 48);
        for ((name, labels), v) in sums {
            if labels.is_empty() {
                out.push_str(&format!("{name} {v}\n"));
            } else {
                out.push_str(&format!("{name}{{{labels}}} {v}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_across_publishers() {
        let b = Board::new(2);
        b.publish(0, vec![Sample::new("x_total", "reason=\"a\"", 2), Sample::new("y", "", 1)]);
        b.publish(1, vec![Sample::new("x_total", "reason=\"a\"", 3)]);
        b.publish(7, vec![Sample::new("ignored", "", 9)]);
        let m = b.render_metrics();
        assert!(m.contains("x_total{reason=\"a\"} 5\n"), "{m}");
        assert!(m.contains("y 1\n"));
        assert!(!m.contains("ignored"));
    }

    #[test]
    fn a_request_waits_for_every_publisher() {
        let b = Arc::new(Board::new(2));
        assert_eq!(b.wanted(0), None, "nobody asked yet");
        // Nobody answers: the reader gives up after its bound.
        assert!(!b.request(Duration::from_millis(20)));
        let r = b.wanted(0).expect("a request is pending");
        b.answered(0, r);
        b.answered(1, r);
        assert_eq!(b.wanted(r), None, "answered requests are not wanted again");
        let publisher = {
            let b = b.clone();
            std::thread::spawn(move || {
                let mut last = r;
                for _ in 0..400 {
                    if let Some(r) = b.wanted(last) {
                        b.publish(0, vec![Sample::new("x", "", r)]);
                        b.answered(0, r);
                        b.answered(1, r);
                        last = r;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        assert!(b.request(Duration::from_secs(5)));
        assert!(b.render_metrics().contains("x 2\n"), "{}", b.render_metrics());
        let _ = publisher.join();
    }
}
