//! Engine cost, read the exact way (DESIGN.md "How to measure honestly"):
//! on-CPU nanoseconds per thread from `/proc/PID/task/*/schedstat` (first
//! field, kept by the scheduler, not tick-sampled) and RSS from
//! `/proc/PID/status`.

use std::fs;

/// Sum of on-CPU ns over every thread of `pid` (threads that exited are
/// counted in neither sample, so sample while the engine is steady).
pub fn cpu_ns(pid: u32) -> Option<u64> {
    let dir = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0u64;
    for e in dir.flatten() {
        let p = e.path().join("schedstat");
        if let Ok(s) = fs::read_to_string(p) {
            if let Some(v) = s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
            {
                total += v;
            }
        }
    }
    Some(total)
}

/// On-CPU ns per thread: (tid, thread name, ns).
pub fn per_thread(pid: u32) -> Vec<(u32, String, u64)> {
    let mut v = Vec::new();
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return v;
    };
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let ns = fs::read_to_string(e.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
            .unwrap_or(0);
        let comm = fs::read_to_string(e.path().join("comm"))
            .unwrap_or_default()
            .trim()
            .to_string();
        v.push((tid, comm, ns));
    }
    v
}

/// Resident set size in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The CPUs `pid` may run on (its affinity mask), e.g. "0" or "0-1".
pub fn cpus_allowed(pid: u32) -> Option<String> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_string())
}

/// A CPU/RSS sample of the engine at one instant.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub cpu_ns: u64,
    pub rss_kib: u64,
}

pub fn sample(pid: Option<u32>) -> Option<Sample> {
    let pid = pid?;
    Some(Sample {
        cpu_ns: cpu_ns(pid)?,
        rss_kib: rss_kib(pid)?,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        let a = super::cpu_ns(pid).unwrap();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = super::cpu_ns(pid).unwrap();
        assert!(b > a);
        assert!(super::rss_kib(pid).unwrap() > 0);
    }
}
