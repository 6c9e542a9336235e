//! Variants of the loop kept for the benchmarks (feature
//! `relay-bench-modes`; figures in bench/RESULTS.md "Media relay"): one-shot
//! receives, `SEND_ZC` from a registered pool, busy-polling, an adaptive
//! spin on the ring's `IORING_SQ_TASKRUN` flag (`spin_us`) and an adaptive
//! kernel batch window (`batch_wait_us`). None of them won at RTP sizes.

use std::io;
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types};

use super::{Relay, Ring, Sock, BGID};
use crate::media::relay::pool::Pool;
use crate::media::RelayConfig;

/// Adaptive spin budget (`RelayConfig::spin_us`): share of each window.
const SPIN_WINDOW: Duration = Duration::from_millis(10);
const SPIN_SHARE: f32 = 0.5;

/// Register the pool as one fixed buffer (locked memory) for `SEND_ZC`.
pub(super) fn register_buffers(cfg: &RelayConfig, ring: &Ring, pool: &mut Pool) {
    if !cfg.register_buffers {
        return;
    }
    let iov = pool.iovec();
    // SAFETY: the iovec covers the pool's mapping, which outlives the ring
    // (field order of `Relay`).
    match unsafe { ring.submitter().register_buffers(&[iov]) } {
        Ok(()) => pool.registered = true,
        Err(e) => tracing::warn!(
            "could not register {} KiB of relay buffers ({e}); using plain buffers. Raise LimitMEMLOCK for the service.",
            pool.mem_len() / 1024
        ),
    }
}

/// One `RECVMSG` for one datagram, with a buffer selected from the pool.
pub(super) fn oneshot_recv(sock: &mut Sock, s: u32, size: usize) -> squeue::Entry {
    sock.meta.link(std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t);
    sock.meta.iov.iov_base = std::ptr::null_mut();
    sock.meta.iov.iov_len = size;
    let hdr = &mut sock.meta.hdr as *mut libc::msghdr;
    on_fd!(sock, s, |f| opcode::RecvMsg::new(f, hdr).buf_group(BGID).build()).flags(squeue::Flags::BUFFER_SELECT)
}

/// State of the adaptive spin and batch window: the recent gap between
/// received packets.
pub(super) struct Tuning {
    idle_spins: u64,
    last_rx_turn: Instant,
    /// Mean gap per received packet (EWMA, ns).
    gap_ewma_ns: u64,
    rx_before: u64,
    /// Spin budget: at most SPIN_SHARE of each 10 ms window, so a busy
    /// SCHED_FIFO relay never runs into RT throttling or starves ksoftirqd.
    window: Instant,
    spun: Duration,
}

impl Tuning {
    pub(super) fn new() -> Tuning {
        let now = Instant::now();
        Tuning { idle_spins: 0, last_rx_turn: now, gap_ewma_ns: u64::MAX / 2, rx_before: 0, window: now, spun: Duration::ZERO }
    }
}

impl Relay {
    /// Update the packet gap; spin if it is short. Returns the current time.
    pub(super) fn before_wait(&mut self, t: &mut Tuning, mut now: Instant) -> Instant {
        let got = self.counters.rx != t.rx_before;
        if got {
            // mean gap per received packet since the last turn with packets
            let k = (self.counters.rx - t.rx_before).max(1);
            let g = (now.saturating_duration_since(t.last_rx_turn).as_nanos().min(u64::MAX as u128 / 4) as u64) / k;
            t.gap_ewma_ns = if t.gap_ewma_ns >= u64::MAX / 4 { g } else { (t.gap_ewma_ns * 7 + g) / 8 };
            t.last_rx_turn = now;
        } else if now.saturating_duration_since(t.last_rx_turn) > Duration::from_millis(1) {
            t.gap_ewma_ns = u64::MAX / 2; // idle: no batching, no spin
        }
        t.rx_before = self.counters.rx;
        let spin = Duration::from_micros(self.cfg.spin_us as u64);
        if self.cfg.spin_us > 0 && !self.cfg.busy_poll && self.table.next_hold().is_none() {
            if now.saturating_duration_since(t.window) >= SPIN_WINDOW {
                t.window = now;
                t.spun = Duration::ZERO;
            }
            if got && t.gap_ewma_ns <= spin.as_nanos() as u64 && t.spun < SPIN_WINDOW.mul_f32(SPIN_SHARE) {
                let after = self.spin_wait(now + spin);
                t.spun += after.saturating_duration_since(now);
                now = after;
            }
        }
        now
    }

    /// `enter` with busy-polling or the kernel batch window when enabled.
    pub(super) fn enter_tuned(&mut self, t: &mut Tuning, now: Instant, extra: usize) -> io::Result<usize> {
        if self.cfg.busy_poll {
            return self.ring.submit();
        }
        if self.table.next_hold().is_none() && self.cfg.batch_wait_us > 0 && t.gap_ewma_ns.saturating_mul(2) <= self.cfg.batch_wait_us as u64 * 1000 {
            // kernel-side batching (6.12+), only while the recent rate
            // fills the window with ≥ 2 packets: return once the packets
            // expected in batch_wait_us are ready, or after batch_wait_us
            // if at least one is
            let want = ((self.cfg.batch_wait_us as u64 * 1000) / t.gap_ewma_ns.max(1)).clamp(2, self.cfg.batch.max(2) as u64) as usize;
            let args = types::SubmitArgs::new().min_wait_usec(self.cfg.batch_wait_us);
            self.counters.batched_waits += 1;
            return self.ring.submitter().submit_with_args(want + extra, &args);
        }
        self.enter(now, extra)
    }

    /// Busy-polling found nothing to do: go round again without handling
    /// completions (yielding now and then).
    pub(super) fn busy_idle(&mut self, t: &mut Tuning) -> bool {
        if self.cfg.busy_poll
            && self.ring.completion().is_empty()
            && self.table.next_hold().is_none_or(|h| Instant::now() < h)
            && Instant::now() < self.table.next_tick()
        {
            t.idle_spins += 1;
            if t.idle_spins.is_multiple_of(64) {
                // let same-priority threads (e.g. SCHED_FIFO control thread) run
                std::thread::yield_now();
            }
            return true;
        }
        t.idle_spins = 0;
        false
    }

    /// Adaptive spin: hand the queued SQEs to the kernel, reap their inline
    /// completions, then poll the shared `IORING_SQ_TASKRUN` flag (set by
    /// the kernel when a completion is waiting to be run) until `deadline`,
    /// without a syscall. Returns the current time.
    fn spin_wait(&mut self, deadline: Instant) -> Instant {
        if !self.ring.submission().is_empty() {
            self.inline_sends = 0;
            if let Err(e) = self.ring.submit() {
                tracing::error!("io_uring submit: {e}");
            }
        }
        let mut now = Instant::now();
        let mut k = 0;
        loop {
            let c = self.ring.completion().next().map(|c| (c.user_data(), c.result(), c.flags()));
            let Some((u, res, fl)) = c else { break };
            self.on_cqe(u, res, fl, now);
            k += 1;
        }
        if k > 0 {
            self.counters.cqes += k;
            self.pool.publish();
        }
        let mut i = 0u32;
        while !self.ring.submission().taskrun() {
            std::hint::spin_loop();
            i += 1;
            if i.is_multiple_of(32) {
                now = Instant::now();
                if now >= deadline {
                    self.counters.spin_misses += 1;
                    return now;
                }
            }
        }
        self.counters.spin_hits += 1;
        Instant::now()
    }
}
