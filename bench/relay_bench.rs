//! Relay benchmark tool.
//!
//! `relay-bench relay …` runs the engine's io_uring relay (src/media) with
//! N bridged leg pairs laid out like `relay-baseline`: leg A of stream i on
//! base+4i (the load sends to it), leg B on base+4i+2 (sends to --peer).
//!
//! `relay-bench load …` is the load generator / receiver (run it pinned to
//! the other core): paced sends at --rate packets/s spread round-robin over
//! --streams, 200-byte RTP packets carrying their send time; the receiver
//! takes kernel receive timestamps (SO_TIMESTAMPNS) for the one-way latency,
//! counts loss per stream, and reads the relay's CPU time from
//! /proc/<relay-pid>/task/*/schedstat over the measurement window.
//!
//! relay-bench relay --streams N --base PORT --peer IP:PORT [--cpu C] [--secs T]
//!                   [--own-buffers] [--wait-sends] [--no-fixed-files] [--buffers N]
//!   built with `--features relay-bench-modes`, also:
//!                   [--oneshot] [--zc] [--register] [--busy] [--spin-us US]
//!                   [--batch-wait-us US] [--batch N]
//! relay-bench load  --streams N --base PORT --rx-port P --rate PPS --secs T
//!                   [--size 200] [--relay-pid PID] [--direct] [--overload SECS]

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use cc_engine::media::{Event, RelayLegConfig, PortRange, RecvMode, RelayConfig, RelayHandle};

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}
fn flag(args: &[String], name: &str) -> bool {
    args.iter().any(|a| a == name)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("relay") => relay(&args),
        Some("load") => load(&args),
        _ => eprintln!("usage: relay-bench relay|load … (see source header)"),
    }
}

fn relay(args: &[String]) {
    let streams: usize = arg(args, "--streams", 100);
    let base: u16 = arg(args, "--base", 20000);
    let peer: SocketAddr = arg(args, "--peer", "127.0.0.1:19000".parse().unwrap());
    let secs: u64 = arg(args, "--secs", 3600);
    let cpu: i64 = arg(args, "--cpu", -1);
    let cfg = RelayConfig {
        range: PortRange { start: base, end: base + 4 * streams as u16 },
        // the port layout below (stream i on base + 4i) needs the first pair first
        first_pair: Some(0),
        recv_mode: if flag(args, "--own-buffers") { RecvMode::OwnBuffer } else { RecvMode::Multishot },
        wait_past_sends: !flag(args, "--wait-sends"),
        fixed_files: !flag(args, "--no-fixed-files"),
        cpu: if cpu >= 0 { Some(cpu as usize) } else { None },
        pool_buffers: arg(args, "--buffers", 1024),
        max_legs: 2 * streams,
        tick: Duration::from_millis(200),
        ..Default::default()
    };
    let cfg = bench_modes(args, cfg);
    eprintln!("relay-bench relay pid {} {:?}", std::process::id(), cfg);
    let mut h = RelayHandle::spawn(cfg).expect("relay");
    for i in 0..streams {
        let (a, b) = h
            .open_pair(RelayLegConfig::default(), RelayLegConfig { peer_rtp: Some(peer), ..Default::default() }, Instant::now())
            .expect("open pair");
        assert_eq!(a.rtp.port(), base + 4 * i as u16, "port layout");
        assert_eq!(b.rtp.port(), base + 4 * i as u16 + 2);
        h.bridge(a.id, b.id);
    }
    eprintln!("relay-bench relay ready: {streams} streams");
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(500));
    }
    h.request_counters();
    while let Some(e) = h.wait_event(Duration::from_secs(1)) {
        if let Event::Counters(c) = e {
            eprintln!("relay counters: {c:?}");
            break;
        }
    }
    h.shutdown();
}

/// The loop's benchmark-only variants (`--features relay-bench-modes`).
#[cfg(feature = "relay-bench-modes")]
fn bench_modes(args: &[String], cfg: RelayConfig) -> RelayConfig {
    RelayConfig {
        recv_mode: if flag(args, "--oneshot") { RecvMode::OneShot } else { cfg.recv_mode },
        send_zc: flag(args, "--zc"),
        register_buffers: flag(args, "--register") || flag(args, "--zc"),
        busy_poll: flag(args, "--busy"),
        batch_wait_us: arg(args, "--batch-wait-us", 0),
        batch: arg(args, "--batch", 16),
        spin_us: arg(args, "--spin-us", 0),
        ..cfg
    }
}

#[cfg(not(feature = "relay-bench-modes"))]
fn bench_modes(args: &[String], cfg: RelayConfig) -> RelayConfig {
    const MODES: [&str; 7] = ["--oneshot", "--zc", "--register", "--busy", "--batch-wait-us", "--batch", "--spin-us"];
    if let Some(m) = MODES.iter().find(|m| flag(args, m)) {
        eprintln!("relay-bench: {m} needs a build with `--features relay-bench-modes`");
        std::process::exit(2);
    }
    cfg
}

/// Sum of run time (ns) over all threads of `pid`.
fn schedstat_ns(pid: u32) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                total += s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            }
        }
    }
    total
}

fn realtime_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

struct Rx {
    sock: UdpSocket,
    bufs: Vec<[u8; 2048]>,
    ctrl: Vec<[u8; 64]>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

impl Rx {
    fn new(port: u16) -> Rx {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        let _ = s.set_recv_buffer_size(8 << 20);
        unsafe {
            let sz: libc::c_int = 8 << 20;
            libc::setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &sz as *const _ as *const _, 4);
            let on: libc::c_int = 1;
            libc::setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, &on as *const _ as *const _, 4);
        }
        s.set_nonblocking(true).unwrap();
        s.bind(&SocketAddr::from(([127, 0, 0, 1], port)).into()).expect("bind rx");
        let n = 64;
        let mut r = Rx { sock: s.into(), bufs: vec![[0; 2048]; n], ctrl: vec![[0; 64]; n], iovs: Vec::new(), msgs: vec![unsafe { std::mem::zeroed() }; n] };
        r.iovs = r.bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr() as *mut _, iov_len: 2048 }).collect();
        r
    }
    /// Drain; calls f(packet, kernel rx time ns) per datagram. Returns count.
    fn drain(&mut self, mut f: impl FnMut(&[u8], u64)) -> usize {
        let mut total = 0;
        loop {
            for j in 0..self.msgs.len() {
                let h = &mut self.msgs[j].msg_hdr;
                h.msg_name = std::ptr::null_mut();
                h.msg_namelen = 0;
                h.msg_iov = &mut self.iovs[j];
                h.msg_iovlen = 1;
                h.msg_control = self.ctrl[j].as_mut_ptr() as *mut _;
                h.msg_controllen = 64;
            }
            let m = unsafe { libc::recvmmsg(self.sock.as_raw_fd(), self.msgs.as_mut_ptr(), self.msgs.len() as u32, libc::MSG_DONTWAIT, std::ptr::null_mut()) };
            if m <= 0 {
                return total;
            }
            for j in 0..m as usize {
                let len = self.msgs[j].msg_len as usize;
                let mut ts = 0u64;
                unsafe {
                    let h = &self.msgs[j].msg_hdr;
                    let mut c = libc::CMSG_FIRSTHDR(h);
                    while !c.is_null() {
                        if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                            let t = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                            ts = t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64;
                        }
                        c = libc::CMSG_NXTHDR(h, c);
                    }
                }
                f(&self.bufs[j][..len.min(2048)], ts);
            }
            total += m as usize;
            if (m as usize) < self.msgs.len() {
                return total;
            }
        }
    }
}

fn load(args: &[String]) {
    let streams: usize = arg(args, "--streams", 100);
    let base: u16 = arg(args, "--base", 20000);
    let rx_port: u16 = arg(args, "--rx-port", 19000);
    let rate: f64 = arg(args, "--rate", 50_000.0);
    let secs: f64 = arg(args, "--secs", 5.0);
    let size: usize = arg::<usize>(args, "--size", 200).clamp(24, 1400);
    let relay_pid: u32 = arg(args, "--relay-pid", 0);
    let overload: f64 = arg(args, "--overload", 0.0);
    let direct = flag(args, "--direct");
    let mut rx = Rx::new(rx_port);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.set_nonblocking(true).unwrap();
    let dests: Vec<SocketAddr> = (0..streams)
        .map(|i| if direct { SocketAddr::from(([127, 0, 0, 1], rx_port)) } else { SocketAddr::from(([127, 0, 0, 1], base + 4 * i as u16)) })
        .collect();
    let mut seqs = vec![0u16; streams];
    let mut pkt = vec![0u8; size];
    pkt[0] = 0x80;
    let send = |i: usize, phase: u8, pkt: &mut Vec<u8>, seqs: &mut Vec<u16>| -> bool {
        pkt[2..4].copy_from_slice(&seqs[i].to_be_bytes());
        pkt[8..12].copy_from_slice(&(i as u32).to_be_bytes());
        pkt[12..20].copy_from_slice(&realtime_ns().to_be_bytes());
        pkt[20] = phase;
        seqs[i] = seqs[i].wrapping_add(1);
        tx.send_to(pkt, dests[i]).is_ok()
    };
    // warm-up: latch every leg, let the relay settle
    for i in 0..streams {
        send(i, 0, &mut pkt, &mut seqs);
    }
    std::thread::sleep(Duration::from_millis(300));
    rx.drain(|_, _| {});

    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).unwrap();
    let mut per_stream = vec![[0u64; 3]; streams]; // received per phase (1 = measured/overload, 2 = recovery)
    let mut sent_phase = [0u64; 3];
    let cpu0 = if relay_pid > 0 { schedstat_ns(relay_pid) } else { 0 };
    let on_rx = |p: &[u8], ts: u64, hist: &mut hdrhistogram::Histogram<u64>, per: &mut Vec<[u64; 3]>| {
        if p.len() < 21 {
            return;
        }
        let s = u32::from_be_bytes([p[8], p[9], p[10], p[11]]) as usize;
        let phase = p[20] as usize;
        let t = u64::from_be_bytes([p[12], p[13], p[14], p[15], p[16], p[17], p[18], p[19]]);
        if let Some(c) = per.get_mut(s) {
            if let Some(x) = c.get_mut(phase) {
                *x += 1;
            }
        }
        if phase == 1 && overload == 0.0 && ts > t {
            let _ = hist.record(ts - t); // ns
        }
    };
    let t0 = Instant::now();
    if overload > 0.0 {
        // phase 1: as fast as this core can send, round-robin; phase 2: 50 pps per stream for 3 s
        let mut i = 0;
        while t0.elapsed().as_secs_f64() < overload {
            for _ in 0..64 {
                if send(i, 1, &mut pkt, &mut seqs) {
                    sent_phase[1] += 1;
                }
                i = (i + 1) % streams;
            }
            rx.drain(|p, ts| on_rx(p, ts, &mut hist, &mut per_stream));
        }
        let t1 = Instant::now();
        let mut k = 0u64;
        let rate2 = 50.0 * streams as f64;
        while t1.elapsed().as_secs_f64() < 3.0 {
            let due = ((t1.elapsed().as_secs_f64() * rate2) as u64).min(k + 32);
            while k < due {
                if send((k % streams as u64) as usize, 2, &mut pkt, &mut seqs) {
                    sent_phase[2] += 1;
                }
                k += 1;
            }
            rx.drain(|p, ts| on_rx(p, ts, &mut hist, &mut per_stream));
        }
    } else {
        let mut k = 0u64;
        let total = (rate * secs) as u64;
        while k < total {
            // at most 32 sends between two drains, so a late load never
            // overflows its own receive buffer while catching up
            let due = ((t0.elapsed().as_secs_f64() * rate) as u64).min(total).min(k + 32);
            while k < due {
                if send((k % streams as u64) as usize, 1, &mut pkt, &mut seqs) {
                    sent_phase[1] += 1;
                }
                k += 1;
            }
            rx.drain(|p, ts| on_rx(p, ts, &mut hist, &mut per_stream));
        }
    }
    let send_elapsed = t0.elapsed().as_secs_f64();
    let drain_end = Instant::now() + Duration::from_millis(300);
    while Instant::now() < drain_end {
        rx.drain(|p, ts| on_rx(p, ts, &mut hist, &mut per_stream));
    }
    let cpu_ns = if relay_pid > 0 { schedstat_ns(relay_pid) - cpu0 } else { 0 };
    let recv1: u64 = per_stream.iter().map(|c| c[1]).sum();
    let recv2: u64 = per_stream.iter().map(|c| c[2]).sum();
    let mode = if direct { "direct (no relay)" } else { "relayed" };
    println!("mode={mode} streams={streams} size={size}");
    if overload > 0.0 {
        let ratios: Vec<f64> = (0..streams).map(|s| per_stream[s][1] as f64 / (sent_phase[1] as f64 / streams as f64)).collect();
        let min = ratios.iter().cloned().fold(f64::MAX, f64::min);
        let max = ratios.iter().cloned().fold(0.0, f64::max);
        let zero2 = per_stream.iter().filter(|c| c[2] == 0).count();
        let min2 = per_stream.iter().map(|c| c[2]).min().unwrap_or(0);
        println!(
            "overload: sent {} in {:.1}s ({:.0} pps offered), forwarded {} ({:.0} pps), loss {:.1}%; per-stream delivery min {:.2} max {:.2} of fair share",
            sent_phase[1], overload, sent_phase[1] as f64 / overload, recv1, recv1 as f64 / overload,
            100.0 * (1.0 - recv1 as f64 / sent_phase[1].max(1) as f64), min, max
        );
        println!(
            "recovery (50 pps/stream, 3 s): sent {} received {} loss {:.3}%; streams silent {}; min per stream {} of {}",
            sent_phase[2], recv2, 100.0 * (1.0 - recv2 as f64 / sent_phase[2].max(1) as f64), zero2, min2, sent_phase[2] / streams as u64
        );
    } else {
        let loss = 100.0 * (1.0 - recv1 as f64 / sent_phase[1].max(1) as f64);
        println!(
            "rate: offered {:.0} pps for {:.2}s, sent {} received {} loss {:.3}%",
            sent_phase[1] as f64 / send_elapsed, send_elapsed, sent_phase[1], recv1, loss
        );
        if relay_pid > 0 {
            println!("relay cpu: {:.3} s = {:.2} us per forwarded packet ({:.0}% of a core)", cpu_ns as f64 / 1e9, cpu_ns as f64 / 1e3 / recv1.max(1) as f64, 100.0 * cpu_ns as f64 / 1e9 / (send_elapsed + 0.3));
        }
        println!(
            "latency us: p50 {:.1} p90 {:.1} p99 {:.1} p99.9 {:.1} max {:.1} (n={})",
            hist.value_at_quantile(0.5) as f64 / 1e3, hist.value_at_quantile(0.9) as f64 / 1e3, hist.value_at_quantile(0.99) as f64 / 1e3,
            hist.value_at_quantile(0.999) as f64 / 1e3, hist.max() as f64 / 1e3, hist.len()
        );
    }
}
