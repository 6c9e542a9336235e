//! The human table and the machine JSON of one run.

use std::fmt::Write as _;

use serde_json::{json, Map, Value};

use crate::hist::{self, Stats};

pub fn percentiles(h: &hdrhistogram::Histogram<u64>) -> Value {
    let us = |v: u64| (v as f64 / 100.0).round() / 10.0; // µs, 0.1 resolution
    json!({
        "count": h.len(),
        "p50_us": us(h.value_at_quantile(0.5)),
        "p90_us": us(h.value_at_quantile(0.9)),
        "p99_us": us(h.value_at_quantile(0.99)),
        "p99_9_us": us(h.value_at_quantile(0.999)),
        "max_us": us(h.max()),
        "mean_us": (h.mean() / 100.0).round() / 10.0,
    })
}

pub fn stats_json(s: &Stats) -> Value {
    let mut hs = Map::new();
    for (k, h) in &s.hist {
        hs.insert(k.clone(), percentiles(h));
    }
    json!({
        "histograms": hs,
        "failures": s.fail,
        "failures_total": s.failures(),
        "counts": s.count,
    })
}

fn fmt_us(ns: u64) -> String {
    let us = ns as f64 / 1000.0;
    if us >= 10_000.0 {
        format!("{:.1}ms", us / 1000.0)
    } else if us >= 100.0 {
        format!("{us:.0}µs")
    } else {
        format!("{us:.1}µs")
    }
}

/// The human table: percentiles, failures, counts, engine cost.
pub fn table(s: &Stats, header: &str, engine: &Value) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{header}");
    let _ = writeln!(o, "{:<50} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}", "latency", "count", "p50", "p90", "p99", "p99.9", "max");
    for (k, _) in hist::FIGURES {
        if let Some(h) = s.hist.get(*k) {
            let _ = writeln!(
                o,
                "{:<50} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
                hist::label(k),
                h.len(),
                fmt_us(h.value_at_quantile(0.5)),
                fmt_us(h.value_at_quantile(0.9)),
                fmt_us(h.value_at_quantile(0.99)),
                fmt_us(h.value_at_quantile(0.999)),
                fmt_us(h.max())
            );
        }
    }
    let _ = writeln!(o, "failures: {}", s.failures());
    for (k, v) in &s.fail {
        let _ = writeln!(o, "  {k:<48} {v}");
    }
    let _ = writeln!(o, "counts:");
    for (k, v) in &s.count {
        let _ = writeln!(o, "  {k:<48} {v}");
    }
    if let Some(e) = engine.as_object() {
        let _ = writeln!(o, "engine:");
        for (k, v) in e {
            let _ = writeln!(o, "  {k:<48} {v}");
        }
    }
    o
}
