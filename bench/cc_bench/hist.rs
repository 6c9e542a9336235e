//! Latency histograms (ns, 3 significant digits), failure and event counts,
//! merged across worker threads; `.hgrm` percentile files in HdrHistogram's
//! own text format (readable by its plotter).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// The figures, in report order: key, human label.
pub const FIGURES: &[(&str, &str)] = &[
    (
        "register_rtt",
        "REGISTER round trip (each request -> response)",
    ),
    ("registration", "registration REGISTER->401->REGISTER->200"),
    ("invite_200", "customer INVITE -> 200"),
    (
        "invite_agent_invite",
        "customer INVITE -> agent INVITE (queue+routing)",
    ),
    ("answer_to_media", "agent 200 -> customer hears agent RTP"),
    ("relay", "RTP relay one-way latency"),
];

pub fn label(key: &str) -> &str {
    FIGURES
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, l)| *l)
        .unwrap_or(key)
}

pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000_000, 3).expect("valid histogram bounds")
}

#[derive(Default)]
pub struct Stats {
    pub hist: BTreeMap<String, Histogram<u64>>,
    /// Failed operations by reason (`timeout`, `404`, `lost BYE`...).
    pub fail: BTreeMap<String, u64>,
    /// Plain event counts (sent, answered, packets...).
    pub count: BTreeMap<String, u64>,
}

impl Stats {
    pub fn record(&mut self, key: &str, ns: u64) {
        let h = self.hist.entry(key.to_string()).or_insert_with(new_hist);
        h.saturating_record(ns.max(1));
    }

    pub fn fail(&mut self, reason: &str) {
        *self.fail.entry(reason.to_string()).or_default() += 1;
    }

    pub fn inc(&mut self, key: &str, n: u64) {
        *self.count.entry(key.to_string()).or_default() += n;
    }

    pub fn get(&self, key: &str) -> u64 {
        self.count.get(key).copied().unwrap_or(0)
    }

    pub fn failures(&self) -> u64 {
        self.fail.values().sum()
    }

    pub fn merge(&mut self, o: Stats) {
        for (k, h) in o.hist {
            match self.hist.get_mut(&k) {
                Some(m) => {
                    let _ = m.add(&h);
                }
                None => {
                    self.hist.insert(k, h);
                }
            }
        }
        for (k, v) in o.fail {
            *self.fail.entry(k).or_default() += v;
        }
        for (k, v) in o.count {
            *self.count.entry(k).or_default() += v;
        }
    }
}

/// HdrHistogram's `outputPercentileDistribution` text, values in ms.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let ms = |v: u64| v as f64 / 1e6;
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        if q < 1.0 {
            let _ = writeln!(
                s,
                "{:12.4} {:2.12} {:10} {:14.2}",
                ms(v.value_iterated_to()),
                q,
                total,
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(
                s,
                "{:12.4} {:2.12} {:10}",
                ms(v.value_iterated_to()),
                q,
                total
            );
        }
    }
    let _ = writeln!(
        s,
        "#[Mean    = {:12.4}, StdDeviation   = {:12.4}]",
        h.mean() / 1e6,
        h.stdev() / 1e6
    );
    let _ = writeln!(
        s,
        "#[Max     = {:12.4}, Total count    = {:12}]",
        ms(h.max()),
        h.len()
    );
    let _ = writeln!(
        s,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        h.distinct_values()
    );
    s
}
