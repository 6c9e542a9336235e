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
    let _ = writeln!(
        o,
        "{:<50} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "latency", "count", "p50", "p90", "p99", "p99.9", "max"
    );
    for (k, _) in hist::FIGURES {
        if let Some(h) = s.hist.get(*k) {
            let [p50, p90, p99, p999, max] = row(h);
            let _ = writeln!(
                o,
                "{:<50} {:>8} {p50:>9} {p90:>9} {p99:>9} {p999:>9} {max:>9}",
                hist::label(k),
                h.len()
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

/// A markdown block for bench/RESULTS.md: the command, where it ran, the
/// percentile table, failures and engine cost.
pub fn markdown(title: &str, s: &Stats, engine: &Value, run: &Value) -> String {
    let mut o = String::new();
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|x| String::from_utf8_lossy(&x.stdout).trim().to_string())
        .unwrap_or_default();
    let _ = writeln!(o, "### {title}\n");
    let _ = writeln!(o, "`{}`  ", run["command"].as_str().unwrap_or(""));
    let _ = writeln!(
        o,
        "{date}; engine shards {}, engine CPUs {}, bench workers {} on CPUs {}.\n",
        engine["shards"].as_str().unwrap_or("?"),
        engine["cpus_allowed"].as_str().unwrap_or("?"),
        run["bench_workers"],
        run["bench_cores"]
    );
    if !s.hist.is_empty() {
        let _ = writeln!(o, "| latency | count | p50 | p90 | p99 | p99.9 | max |\n|---|---:|---:|---:|---:|---:|---:|");
        for (k, _) in hist::FIGURES {
            if let Some(h) = s.hist.get(*k) {
                let [p50, p90, p99, p999, max] = row(h);
                let _ = writeln!(o, "| {} | {} | {p50} | {p90} | {p99} | {p999} | {max} |", hist::label(k), h.len());
            }
        }
        o.push('\n');
    }
    let fails: Vec<String> = s.fail.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let _ = writeln!(
        o,
        "Failures: {}{}  ",
        s.failures(),
        if fails.is_empty() {
            String::new()
        } else {
            format!(" ({})", fails.join(", "))
        }
    );
    let pick = [
        "achieved_registrations_per_s",
        "achieved_calls_per_s",
        "cpu_us_per_registration",
        "cpu_us_per_REGISTER_request",
        "cpu_us_per_call",
        "cpu_us_per_call_without_media_threads",
        "media_thread_cpu_us_per_packet_received",
        "cpu_share_of_one_core",
        "idle_cpu_us_per_s",
        "peak_concurrent_calls",
        "peak_bridged_calls",
        "rss_base_kib",
        "rss_peak_kib",
        "rss_kib_per_concurrent_call",
    ];
    let mut parts = Vec::new();
    for k in pick {
        if let Some(v) = engine.get(k) {
            if let Some(f) = v.as_f64() {
                parts.push(format!(
                    "{k} = {}",
                    if f.fract() == 0.0 {
                        format!("{f:.0}")
                    } else {
                        format!("{f:.2}")
                    }
                ));
            }
        }
    }
    if let Some(w) = engine.get("relay_window") {
        for k in [
            "packets_per_s",
            "engine_cpu_us_per_relayed_packet",
            "engine_cpu_share_of_one_core",
            "window_s",
        ] {
            if let Some(f) = w.get(k).and_then(Value::as_f64) {
                parts.push(format!("relay {k} = {f:.2}"));
            }
        }
    }
    let _ = writeln!(o, "Engine: {}  ", parts.join(", "));
    let keys = [
        "calls attempted",
        "calls answered (200)",
        "calls offered to an agent",
        "agent answers (200)",
        "rtp sent",
        "rtp received",
        "rtp lost (gaps)",
        "rtp reordered",
        "hold audio packets",
        "registrations",
    ];
    let counts: Vec<String> = keys
        .iter()
        .filter_map(|k| s.count.get(*k).map(|v| format!("{k}: {v}")))
        .collect();
    let _ = writeln!(o, "Counts: {}  ", counts.join(", "));
    let skipped = s
        .count
        .get("rtp ticks skipped (bench overloaded)")
        .copied()
        .unwrap_or(0);
    if skipped > 0 {
        let _ = writeln!(
            o,
            "Note: the load generator fell behind for {skipped} ms of 1 ms RTP ticks (its core was saturated), so the offered RTP load was below nominal; the engine's CPU per packet is still exact."
        );
    }
    o.push('\n');
    o
}

/// p50, p90, p99, p99.9 and max of a histogram, formatted, for both tables.
fn row(h: &hdrhistogram::Histogram<u64>) -> [String; 5] {
    let q = |x| fmt_us(h.value_at_quantile(x));
    [q(0.5), q(0.9), q(0.99), q(0.999), fmt_us(h.max())]
}
