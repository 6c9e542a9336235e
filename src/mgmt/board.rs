//! What the management plane shows: samples published by each executor.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

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
pub struct Board {
    /// One slot per publisher (each signalling shard, then routing).
    slots: Vec<Mutex<Arc<Vec<Sample>>>>,
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
            agents: Mutex::new(Arc::new(Vec::new())),
            queues: Mutex::new(Arc::new(serde_json::Value::Null)),
        }
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

    /// Prometheus text exposition, samples with the same name and labels
    /// summed across publishers.
    pub fn render_metrics(&self) -> String {
        let mut sums: BTreeMap<(&'static str, String), u64> = BTreeMap::new();
        for slot in &self.slots {
            let snap = slot.lock().map(|g| g.clone()).unwrap_or_default();
            for s in snap.iter() {
                *sums.entry((s.name, s.labels.clone())).or_default() += s.value;
            }
        }
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
}
