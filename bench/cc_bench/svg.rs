//! Latency by percentile, the HdrHistogram plotter's way: x = percentile on
//! a log scale of 1/(1−p) (50%, 90%, 99%, 99.9%, 99.99%...), y = latency
//! (log scale, µs), one curve per figure.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

const W: f64 = 900.0;
const H: f64 = 520.0;
const L: f64 = 80.0;
const R: f64 = 260.0;
const T: f64 = 40.0;
const B: f64 = 60.0;
const COLORS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

pub fn plot(title: &str, series: &[(&str, &Histogram<u64>)]) -> String {
    let max_x = 5.0f64; // up to 99.999%
    let mut lo = f64::MAX;
    let mut hi = 1.0f64;
    for (_, h) in series {
        if h.is_empty() {
            continue;
        }
        lo = lo.min((h.min().max(1000) as f64) / 1000.0);
        hi = hi.max(h.max() as f64 / 1000.0);
    }
    if lo == f64::MAX {
        lo = 1.0;
    }
    let ylo = lo.log10().floor();
    let yhi = (hi.log10().ceil()).max(ylo + 1.0);
    let px = |x: f64| L + (x / max_x).min(1.0) * (W - L - R);
    let py = |us: f64| T + (1.0 - (us.max(1e-3).log10() - ylo) / (yhi - ylo)) * (H - T - B);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"22\" font-size=\"15\">{}</text>\n",
        L,
        esc(title)
    );
    for (i, lab) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
    {
        let x = px(i as f64);
        let _ = writeln!(s, "<line x1=\"{x}\" y1=\"{T}\" x2=\"{x}\" y2=\"{}\" stroke=\"#ddd\"/><text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{lab}</text>", H - B, H - B + 16.0);
    }
    let mut e = ylo;
    while e <= yhi {
        let y = py(10f64.powf(e));
        let lab = match e as i32 {
            0 => "1 µs".to_string(),
            1 => "10 µs".to_string(),
            2 => "100 µs".to_string(),
            3 => "1 ms".to_string(),
            4 => "10 ms".to_string(),
            5 => "100 ms".to_string(),
            6 => "1 s".to_string(),
            k => format!("1e{k} µs"),
        };
        let _ = writeln!(s, "<line x1=\"{L}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{lab}</text>", W - R, L - 6.0, y + 4.0);
        e += 1.0;
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">percentile</text>",
        (L + W - R) / 2.0,
        H - 20.0
    );
    for (i, (name, h)) in series.iter().enumerate() {
        if h.is_empty() {
            continue;
        }
        let c = COLORS[i % COLORS.len()];
        let mut pts = String::new();
        for v in h.iter_quantiles(5) {
            let q = v.quantile_iterated_to();
            let x = if q >= 1.0 {
                max_x
            } else {
                (1.0 / (1.0 - q)).log10()
            };
            let _ = write!(
                pts,
                "{:.1},{:.1} ",
                px(x),
                py(v.value_iterated_to() as f64 / 1000.0)
            );
        }
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{pts}\"/>"
        );
        let ly = T + 10.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            "<line x1=\"{}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{c}\" stroke-width=\"3\"/><text x=\"{}\" y=\"{}\">{} (n={})</text>",
            W - R + 10.0,
            W - R + 30.0,
            W - R + 35.0,
            ly + 4.0,
            esc(name),
            h.len()
        );
    }
    s.push_str("</svg>\n");
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
