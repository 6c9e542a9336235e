//! The io_uring relay loop: one ring per shard, the thin I/O part.
//!
//! * Every relay socket has exactly one receive armed (one-shot `RECVMSG`
//!   or multishot `RECVMSG`), with `BUFFER_SELECT` from a provided buffer
//!   ring, so an armed receive holds no buffer until a datagram arrives.
//! * A received buffer is sent on as is (`SENDMSG`, or `SEND_ZC` when
//!   enabled): the payload is never copied in user space. The buffer goes
//!   back to the provided ring when the send completes (for `SEND_ZC`, on
//!   the notification).
//! * All SQEs produced while handling a batch of completions are submitted by
//!   one `io_uring_enter` per loop turn, which also waits: for one completion
//!   beyond the sends it submits (they complete inline), so a forwarded
//!   packet costs one enter, not two.
//! * Optional, measured in bench/RESULTS.md: an adaptive spin on the shared
//!   `IORING_SQ_TASKRUN` flag (`spin_us`) and an adaptive kernel batch
//!   window (`batch_wait_us`).
//! * No allocation and no lock per packet: sockets, legs, send headers and
//!   buffers are preallocated; control commands arrive over an mpsc channel
//!   plus an eventfd read kept armed in the ring.
//! * Fairness: a socket whose receive failed for lack of buffers goes into a
//!   FIFO and is re-armed as soon as any buffer returns, so no socket is ever
//!   left without a receive (no socket starves under overload).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::stats::DropReason;
use super::stream::{Kind, StreamState, Verdict};
use crate::media::{Command, Event, LegConfig, LegId, RecvMode, RelayConfig, RelayCounters};
use crate::media::playout::{HoldAudio, Playout, HEADER, SAMPLES};

const TAG_RECV: u64 = 1;
const TAG_SEND: u64 = 2;
const TAG_HOLD: u64 = 3;
const TAG_WAKE: u64 = 4;
const TAG_CANCEL: u64 = 5;
const TAG_TIMER: u64 = 6;
const TAG_SEND_OWN: u64 = 7;
const NONE: u32 = u32::MAX;
/// Adaptive spin budget (`RelayConfig::spin_us`): share of each window.
const SPIN_WINDOW: Duration = Duration::from_millis(10);
const SPIN_SHARE: f32 = 0.5;
const BGID: u16 = 7;
/// Offset of the payload in a multishot buffer: io_uring_recvmsg_out (16) + name (128).
const MS_NAME_LEN: usize = std::mem::size_of::<libc::sockaddr_storage>();
const MS_PAYLOAD_OFF: usize = 16 + MS_NAME_LEN;

/// Build an SQE against a socket, through the registered file table when
/// the socket is in it (no fget/fput per operation), else by fd.
macro_rules! on_fd {
    ($sock:expr, $s:expr, |$f:ident| $body:expr) => {
        if $sock.fixed {
            let $f = types::Fixed($s);
            $body
        } else {
            let $f = types::Fd($sock.fd);
            $body
        }
    };
}

#[inline]
fn ud(tag: u64, sock: u32, bid: u16) -> u64 {
    (tag << 56) | ((sock as u64) << 16) | bid as u64
}
#[inline]
fn ud_split(u: u64) -> (u64, u32, u16) {
    (u >> 56, ((u >> 16) & 0xFF_FFFF_FFFF) as u32, (u & 0xFFFF) as u16)
}

/// sockaddr_storage → SocketAddr without allocation.
fn from_storage(st: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    match st.ss_family as i32 {
        libc::AF_INET if len as usize >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: family checked, storage is large enough
            let a = unsafe { &*(st as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(u32::from_be(a.sin_addr.s_addr).into(), u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 if len as usize >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above
            let a = unsafe { &*(st as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                a.sin6_addr.s6_addr.into(),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// SocketAddr → sockaddr_storage; returns the length.
fn to_storage(a: &SocketAddr, st: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match a {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned
            let s = unsafe { &mut *(st as *mut _ as *mut libc::sockaddr_in) };
            s.sin_family = libc::AF_INET as libc::sa_family_t;
            s.sin_port = v4.port().to_be();
            s.sin_addr = libc::in_addr { s_addr: u32::from(*v4.ip()).to_be() };
            s.sin_zero = [0; 8];
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above
            let s = unsafe { &mut *(st as *mut _ as *mut libc::sockaddr_in6) };
            s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            s.sin6_port = v6.port().to_be();
            s.sin6_addr = libc::in6_addr { s6_addr: v6.ip().octets() };
            s.sin6_flowinfo = v6.flowinfo();
            s.sin6_scope_id = v6.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// A msghdr with its own iovec and address storage (stable address: boxed
/// or in a boxed slice, never moved while an operation uses it).
struct MsgMeta {
    hdr: libc::msghdr,
    iov: libc::iovec,
    addr: libc::sockaddr_storage,
}

impl MsgMeta {
    fn new() -> Self {
        // SAFETY: all-zero is a valid msghdr/iovec/sockaddr_storage
        unsafe { std::mem::zeroed() }
    }
    /// Point hdr at own iov/addr.
    fn link(&mut self, namelen: libc::socklen_t) {
        self.hdr.msg_name = &mut self.addr as *mut _ as *mut libc::c_void;
        self.hdr.msg_namelen = namelen;
        self.hdr.msg_iov = &mut self.iov;
        self.hdr.msg_iovlen = 1;
        self.hdr.msg_control = std::ptr::null_mut();
        self.hdr.msg_controllen = 0;
        self.hdr.msg_flags = 0;
    }
}

/// The buffer pool: one mmap'ed region of `count × size` bytes, handed to
/// the kernel through a provided buffer ring, optionally also registered as
/// one fixed buffer (for SEND_ZC).
struct Pool {
    mem: *mut u8,
    mem_len: usize,
    size: usize,
    count: usize,
    ring: *mut types::BufRingEntry,
    ring_len: usize,
    mask: u16,
    tail: u16,
    /// Buffers currently owned by user space or in flight on a send.
    out: usize,
    registered: bool,
}

impl Pool {
    fn new(count: usize, size: usize) -> io::Result<Pool> {
        let count = count.clamp(8, 32768);
        let entries = count.next_power_of_two();
        let mem_len = count * size;
        let ring_len = (entries * std::mem::size_of::<types::BufRingEntry>()).max(4096);
        // SAFETY: plain anonymous mappings
        let mem = unsafe {
            libc::mmap(std::ptr::null_mut(), mem_len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        };
        if mem == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ring = unsafe {
            libc::mmap(std::ptr::null_mut(), ring_len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        };
        if ring == libc::MAP_FAILED {
            unsafe { libc::munmap(mem, mem_len) };
            return Err(io::Error::last_os_error());
        }
        Ok(Pool {
            mem: mem as *mut u8,
            mem_len,
            size,
            count,
            ring: ring as *mut types::BufRingEntry,
            ring_len,
            mask: (entries - 1) as u16,
            tail: 0,
            out: count,
            registered: false,
        })
    }
    fn entries(&self) -> u16 {
        self.mask.wrapping_add(1)
    }
    #[inline]
    fn buf(&self, bid: u16) -> *mut u8 {
        // SAFETY: caller passes bid < count (checked in `valid`)
        unsafe { self.mem.add(bid as usize * self.size) }
    }
    #[inline]
    fn valid(&self, bid: u16) -> bool {
        (bid as usize) < self.count
    }
    /// Give buffer `bid` back to the kernel (published by `publish`).
    #[inline]
    fn recycle(&mut self, bid: u16) {
        if !self.valid(bid) {
            return;
        }
        // SAFETY: ring has `entries` slots; index masked
        let e = unsafe { &mut *self.ring.add((self.tail & self.mask) as usize) };
        e.set_addr(self.buf(bid) as u64);
        e.set_len(self.size as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        self.out = self.out.saturating_sub(1);
    }
    #[inline]
    fn publish(&self) {
        // SAFETY: the tail field overlays entry 0's resv; the kernel reads it
        unsafe {
            let t = types::BufRingEntry::tail(self.ring) as *const AtomicU16;
            (*t).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        unsafe {
            libc::munmap(self.mem as *mut libc::c_void, self.mem_len);
            libc::munmap(self.ring as *mut libc::c_void, self.ring_len);
        }
    }
}

/// Outgoing hold-audio packet of one socket (boxed: stable while in flight).
struct HoldTx {
    meta: MsgMeta,
    buf: [u8; HEADER + SAMPLES],
    inflight: bool,
}

struct Sock {
    /// Owns the fd (closed when the entry is dropped, after the last CQE).
    #[allow(dead_code)]
    sock: UdpSocket,
    fd: RawFd,
    leg: u32,
    kind: usize,
    armed: bool,
    starved: bool,
    closing: bool,
    /// In the registered file table at index = socket index.
    fixed: bool,
    inflight: u32,
    meta: Box<MsgMeta>,
    hold: Option<Box<HoldTx>>,
    /// `RecvMode::OwnBuffer`: this socket's single receive buffer.
    own: Option<Box<OwnBuf>>,
}

/// A socket's own buffer (`RecvMode::OwnBuffer`, the comparison point for
/// the provided buffer ring): one datagram in flight per socket.
struct OwnBuf {
    buf: Vec<u8>,
    dest: libc::sockaddr_storage,
    out_sock: u32,
}

struct Leg {
    id: LegId,
    socks: [u32; 2],
    streams: [StreamState; 2],
    bridged: Option<u32>,
    playout: Option<Playout>,
    media_timeout: Option<Duration>,
    timeout_reported: bool,
    opened: Instant,
    /// Continuity of generated audio across successive holds.
    hold_ssrc: u32,
    hold_seq: u16,
    hold_ts: u32,
}

/// The relay of one shard. Built and run on its own thread (see
/// [`super::RelayHandle::spawn`]); not `Send` (it owns raw buffers).
pub struct Relay {
    ring: IoUring<squeue::Entry, cqueue::Entry>,
    cfg: RelayConfig,
    pool: Pool,
    send_meta: Box<[MsgMeta]>,
    socks: Vec<Option<Sock>>,
    free_socks: Vec<u32>,
    legs: Vec<Option<Leg>>,
    free_legs: Vec<u32>,
    by_id: HashMap<LegId, u32>,
    starved: VecDeque<u32>,
    holding: Vec<u32>,
    next_hold: Option<Instant>,
    next_tick: Instant,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    wake_fd: OwnedFd,
    wake_buf: Box<u64>,
    wake_armed: bool,
    shutdown: bool,
    counters: RelayCounters,
    ms_payload_off: usize,
    /// Size of the registered (sparse) file table; 0 if unavailable.
    files: usize,
    /// Sends pushed since the last submit: they complete inline, so their
    /// CQEs are posted by the same `io_uring_enter` that submits them.
    inline_sends: u32,
}

impl Relay {
    pub(crate) fn new(cfg: RelayConfig, commands: mpsc::Receiver<Command>, events: mpsc::Sender<Event>, wake_fd: OwnedFd) -> io::Result<Relay> {
        let entries = cfg.ring_entries.max(64).next_power_of_two();
        let ring = {
            let mut b = IoUring::builder();
            // TASKRUN_FLAG: the kernel sets IORING_SQ_TASKRUN in shared memory
            // when completions wait to be run (polled by the adaptive spin)
            b.setup_single_issuer().setup_coop_taskrun().setup_taskrun_flag().setup_cqsize(entries * 4);
            if !cfg.busy_poll {
                // completions are posted only when we enter to wait: batches
                b.setup_defer_taskrun();
            }
            match b.build(entries) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("io_uring with DEFER_TASKRUN unavailable ({e}); plain ring");
                    IoUring::builder().setup_cqsize(entries * 4).build(entries)?
                }
            }
        };
        let size = cfg.buf_size.max(MS_PAYLOAD_OFF + 256);
        let mut pool = Pool::new(cfg.pool_buffers, size)?;
        // provided buffer ring; without it (old kernel, or refused), every
        // socket gets its own buffer instead
        let mut cfg = cfg;
        match unsafe { ring.submitter().register_buf_ring_with_flags(pool.ring as u64, pool.entries(), BGID, 0) } {
            Ok(()) => {
                for bid in 0..pool.count as u16 {
                    pool.recycle(bid);
                }
                pool.publish();
            }
            Err(e) => {
                tracing::warn!("provided buffer ring unavailable ({e}); relay falls back to one buffer per socket");
                cfg.recv_mode = RecvMode::OwnBuffer;
            }
        }
        // fixed buffer registration (locked memory) for SEND_ZC: optional
        if cfg.register_buffers {
            let iov = libc::iovec { iov_base: pool.mem as *mut libc::c_void, iov_len: pool.mem_len };
            match unsafe { ring.submitter().register_buffers(&[iov]) } {
                Ok(()) => pool.registered = true,
                Err(e) => tracing::warn!(
                    "could not register {} KiB of relay buffers ({e}); using plain buffers. Raise LimitMEMLOCK for the service.",
                    pool.mem_len / 1024
                ),
            }
        }
        let send_meta: Box<[MsgMeta]> = (0..pool.count).map(|_| MsgMeta::new()).collect();
        let mut r = Relay {
            ring,
            pool,
            send_meta,
            socks: Vec::with_capacity(cfg.max_legs * 2),
            free_socks: Vec::with_capacity(cfg.max_legs * 2),
            legs: Vec::with_capacity(cfg.max_legs),
            free_legs: Vec::with_capacity(cfg.max_legs),
            by_id: HashMap::with_capacity(cfg.max_legs),
            starved: VecDeque::with_capacity(cfg.max_legs * 2),
            holding: Vec::with_capacity(cfg.max_legs),
            next_hold: None,
            next_tick: Instant::now() + cfg.tick,
            commands,
            events,
            wake_fd,
            wake_buf: Box::new(0),
            wake_armed: false,
            shutdown: false,
            counters: RelayCounters::default(),
            ms_payload_off: MS_PAYLOAD_OFF,
            files: 0,
            inline_sends: 0,
            cfg,
        };
        for m in r.send_meta.iter_mut() {
            m.link(0);
        }
        if r.cfg.fixed_files {
            let want = (r.cfg.max_legs * 2 + 64).clamp(64, 32768);
            match r.ring.submitter().register_files_sparse(want as u32) {
                Ok(()) => r.files = want,
                Err(e) => tracing::warn!("no registered file table ({e}); sockets used by fd"),
            }
        }
        r.counters.registered_buffers = r.pool.registered;
        Ok(r)
    }

    #[inline]
    fn push(&mut self, e: squeue::Entry) {
        loop {
            // SAFETY: every pointer in our SQEs stays valid until its CQE (see module docs)
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                return;
            }
            self.counters.sq_full_flushes += 1;
            self.inline_sends = 0;
            if let Err(err) = self.ring.submit() {
                tracing::error!("io_uring submit: {err}");
            }
        }
    }

    fn arm_wake(&mut self) {
        if self.wake_armed {
            return;
        }
        let e = opcode::Read::new(types::Fd(self.wake_fd.as_raw_fd()), &mut *self.wake_buf as *mut u64 as *mut u8, 8)
            .build()
            .user_data(ud(TAG_WAKE, 0, 0));
        self.push(e);
        self.wake_armed = true;
    }

    fn arm_recv(&mut self, s: u32) {
        let mode = self.cfg.recv_mode;
        let Some(Some(sock)) = self.socks.get_mut(s as usize) else { return };
        if sock.armed || sock.closing {
            return;
        }
        let e = match mode {
            RecvMode::OneShot => {
                sock.meta.link(std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t);
                sock.meta.iov.iov_base = std::ptr::null_mut();
                sock.meta.iov.iov_len = self.pool.size;
                let hdr = &mut sock.meta.hdr as *mut libc::msghdr;
                on_fd!(sock, s, |f| opcode::RecvMsg::new(f, hdr).buf_group(BGID).build()).flags(squeue::Flags::BUFFER_SELECT)
            }
            RecvMode::OwnBuffer => {
                let Some(own) = sock.own.as_mut() else { return };
                sock.meta.link(std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t);
                sock.meta.iov.iov_base = own.buf.as_mut_ptr() as *mut libc::c_void;
                sock.meta.iov.iov_len = own.buf.len();
                let hdr = &mut sock.meta.hdr as *mut libc::msghdr;
                on_fd!(sock, s, |f| opcode::RecvMsg::new(f, hdr).build())
            }
            RecvMode::Multishot => {
                sock.meta.link(MS_NAME_LEN as libc::socklen_t);
                sock.meta.hdr.msg_iov = std::ptr::null_mut();
                sock.meta.hdr.msg_iovlen = 0;
                let hdr = &sock.meta.hdr as *const libc::msghdr;
                on_fd!(sock, s, |f| opcode::RecvMsgMulti::new(f, hdr, BGID).build())
            }
        }
        .user_data(ud(TAG_RECV, s, 0));
        sock.armed = true;
        sock.inflight += 1;
        self.push(e);
    }

    /// Run until shutdown.
    pub fn run(mut self) {
        self.arm_wake();
        let mut batch: [(u64, i32, u32); 128] = [(0, 0, 0); 128];
        // periodic wake-up for the inactivity check: one multishot timeout
        // in the ring, so a plain wait needs no per-call timer
        let period = Box::new(types::Timespec::from(self.cfg.tick));
        let e = opcode::Timeout::new(&*period).count(0).flags(types::TimeoutFlags::MULTISHOT).build().user_data(ud(TAG_TIMER, 0, 0));
        self.push(e);
        let mut idle_spins = 0u64;
        // adaptive spin: gap between turns that received packets (EWMA, ns)
        let spin = Duration::from_micros(self.cfg.spin_us as u64);
        let mut last_rx_turn = Instant::now();
        let mut gap_ewma_ns: u64 = u64::MAX / 2;
        let mut rx_before = 0u64;
        // spin budget: at most SPIN_SHARE of each 10 ms window, so a busy
        // SCHED_FIFO relay never runs into RT throttling or starves ksoftirqd
        let mut window = Instant::now();
        let mut spun = Duration::ZERO;
        loop {
            let mut now = Instant::now();
            let got = self.counters.rx != rx_before;
            if got {
                // mean gap per received packet since the last turn with packets
                let k = (self.counters.rx - rx_before).max(1);
                let g = (now.saturating_duration_since(last_rx_turn).as_nanos().min(u64::MAX as u128 / 4) as u64) / k;
                gap_ewma_ns = if gap_ewma_ns >= u64::MAX / 4 { g } else { (gap_ewma_ns * 7 + g) / 8 };
                last_rx_turn = now;
            } else if now.saturating_duration_since(last_rx_turn) > Duration::from_millis(1) {
                gap_ewma_ns = u64::MAX / 2; // idle: no batching, no spin
            }
            rx_before = self.counters.rx;
            if self.cfg.spin_us > 0 && !self.cfg.busy_poll && self.next_hold.is_none() {
                if now.saturating_duration_since(window) >= SPIN_WINDOW {
                    window = now;
                    spun = Duration::ZERO;
                }
                if got && gap_ewma_ns <= spin.as_nanos() as u64 && spun < SPIN_WINDOW.mul_f32(SPIN_SHARE) {
                    let t = self.spin_wait(now + spin);
                    spun += t.saturating_duration_since(now);
                    now = t;
                }
            }
            // one enter per turn: the sends submitted now post their CQEs
            // inline, so wait for one completion beyond them
            let extra = if self.cfg.wait_past_sends { self.inline_sends as usize + self.ring.completion().len() } else { 0 };
            self.inline_sends = 0;
            let r = if self.cfg.busy_poll {
                self.ring.submit()
            } else if let Some(h) = self.next_hold {
                // hold playout: wake exactly when the next frame is due
                let wait = types::Timespec::from(h.saturating_duration_since(now).max(Duration::from_micros(20)));
                let args = types::SubmitArgs::new().timespec(&wait);
                self.ring.submitter().submit_with_args(1 + extra, &args)
            } else if self.cfg.batch_wait_us > 0 && gap_ewma_ns.saturating_mul(2) <= self.cfg.batch_wait_us as u64 * 1000 {
                // kernel-side batching (6.12+), only while the recent rate
                // fills the window with ≥ 2 packets: return once the packets
                // expected in batch_wait_us are ready, or after batch_wait_us
                // if at least one is
                let want = ((self.cfg.batch_wait_us as u64 * 1000) / gap_ewma_ns.max(1)).clamp(2, self.cfg.batch.max(2) as u64) as usize;
                let args = types::SubmitArgs::new().min_wait_usec(self.cfg.batch_wait_us);
                self.counters.batched_waits += 1;
                self.ring.submitter().submit_with_args(want + extra, &args)
            } else {
                self.ring.submit_and_wait(1 + extra)
            };
            match r {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)) => {}
                Err(e) => {
                    tracing::error!("io_uring_enter: {e}");
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            self.counters.loop_turns += 1;
            if self.cfg.busy_poll
                && self.ring.completion().is_empty()
                && !self.next_hold.is_some_and(|h| Instant::now() >= h)
                && Instant::now() < self.next_tick
            {
                idle_spins += 1;
                if idle_spins.is_multiple_of(64) {
                    // let same-priority threads (e.g. SCHED_FIFO control thread) run
                    std::thread::yield_now();
                }
                continue;
            }
            idle_spins = 0;
            let now = Instant::now();
            loop {
                let mut n = 0;
                {
                    let mut cq = self.ring.completion();
                    for c in &mut cq {
                        batch[n] = (c.user_data(), c.result(), c.flags());
                        n += 1;
                        if n == batch.len() {
                            break;
                        }
                    }
                }
                for &(u, res, flags) in &batch[..n] {
                    self.on_cqe(u, res, flags, now);
                }
                self.counters.cqes += n as u64;
                if n < batch.len() {
                    break;
                }
                // a long turn: hand the sends queued so far to the kernel now
                // (UDP sends complete inline, so their buffers come back in
                // the next chunk) instead of draining the pool first
                self.pool.publish();
                if !self.ring.submission().is_empty() {
                    self.counters.mid_turn_submits += 1;
                    self.inline_sends = 0;
                    if let Err(e) = self.ring.submit() {
                        tracing::error!("io_uring submit: {e}");
                    }
                }
            }
            self.pool.publish();
            if !self.starved.is_empty() && self.pool.out < self.pool.count {
                let k = self.starved.len();
                for _ in 0..k {
                    if let Some(s) = self.starved.pop_front() {
                        if let Some(Some(sock)) = self.socks.get_mut(s as usize) {
                            sock.starved = false;
                        }
                        self.counters.starved_rearms += 1;
                        self.arm_recv(s);
                    }
                }
            }
            if self.next_hold.is_some_and(|h| now >= h) {
                self.run_hold(now);
            }
            if now >= self.next_tick {
                self.tick(now);
            }
            if self.shutdown {
                break;
            }
        }
        // close everything: dropping the ring cancels outstanding operations
        // and only then are sockets/buffers dropped (field order irrelevant:
        // ring drop waits for nothing, so drain explicitly)
        let ids: Vec<LegId> = self.by_id.keys().copied().collect();
        for id in ids {
            self.close_leg(id);
        }
        let _ = self.ring.submit();
        let deadline = Instant::now() + Duration::from_millis(500);
        while self.socks.iter().any(|s| s.is_some()) && Instant::now() < deadline {
            let ts = types::Timespec::from(Duration::from_millis(10));
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            let cqes: Vec<(u64, i32, u32)> = self.ring.completion().map(|c| (c.user_data(), c.result(), c.flags())).collect();
            let now = Instant::now();
            for (u, r, f) in cqes {
                self.on_cqe(u, r, f, now);
            }
        }
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

    fn on_cqe(&mut self, u: u64, res: i32, flags: u32, now: Instant) {
        let (tag, s, bid) = ud_split(u);
        match tag {
            TAG_RECV if self.cfg.recv_mode == RecvMode::OwnBuffer => self.on_recv_own(s, res, now),
            TAG_RECV => self.on_recv(s, res, flags, now),
            TAG_SEND_OWN => self.on_send_own(s, res),
            TAG_SEND => self.on_send(s, bid, res, flags),
            TAG_HOLD => {
                if let Some(Some(sock)) = self.socks.get_mut(s as usize) {
                    if let Some(h) = sock.hold.as_mut() {
                        h.inflight = false;
                    }
                    sock.inflight = sock.inflight.saturating_sub(1);
                    if res < 0 {
                        self.count_tx_error(s);
                    } else {
                        self.count_tx(s, res as u64);
                    }
                    self.maybe_free(s);
                }
            }
            TAG_WAKE => {
                self.wake_armed = false;
                self.drain_commands(now);
                if !self.shutdown {
                    self.arm_wake();
                }
            }
            _ => {}
        }
    }

    fn count_tx(&mut self, s: u32, bytes: u64) {
        if let Some(Some(sock)) = self.socks.get(s as usize) {
            let (l, k) = (sock.leg, sock.kind);
            if let Some(Some(leg)) = self.legs.get_mut(l as usize) {
                leg.streams[k].stats.tx_packets += 1;
                leg.streams[k].stats.tx_bytes += bytes;
            }
        }
    }
    fn count_tx_error(&mut self, s: u32) {
        self.counters.send_errors += 1;
        if let Some(Some(sock)) = self.socks.get(s as usize) {
            let (l, k) = (sock.leg, sock.kind);
            if let Some(Some(leg)) = self.legs.get_mut(l as usize) {
                leg.streams[k].stats.drop(DropReason::SendError);
            }
        }
    }

    fn on_send(&mut self, s: u32, bid: u16, res: i32, flags: u32) {
        if !cqueue::notif(flags) {
            if res < 0 {
                self.count_tx_error(s);
            } else {
                self.count_tx(s, res as u64);
            }
        }
        if cqueue::more(flags) {
            return; // SEND_ZC: the buffer is still in use until the notification
        }
        self.pool.recycle(bid);
        if let Some(Some(sock)) = self.socks.get_mut(s as usize) {
            sock.inflight = sock.inflight.saturating_sub(1);
        }
        self.maybe_free(s);
    }

    /// `RecvMode::OwnBuffer`: the datagram is in socket `s`'s own buffer;
    /// forward it from there and re-arm the receive when the send completes.
    fn on_recv_own(&mut self, s: u32, res: i32, now: Instant) {
        let Some(Some(sock)) = self.socks.get_mut(s as usize) else { return };
        sock.armed = false;
        sock.inflight = sock.inflight.saturating_sub(1);
        if sock.closing || res < 0 {
            if res < 0 && -res != libc::ECANCELED {
                self.counters.recv_errors += 1;
                self.arm_recv(s);
            }
            self.maybe_free(s);
            return;
        }
        self.counters.rx += 1;
        let (leg_idx, kind) = (sock.leg, sock.kind);
        let src = from_storage(&sock.meta.addr, sock.meta.hdr.msg_namelen);
        let trunc = sock.meta.hdr.msg_flags & libc::MSG_TRUNC != 0;
        let Some(own) = sock.own.as_mut() else { return };
        let len = (res as usize).min(own.buf.len());
        let ptr = own.buf.as_ptr();
        let verdict = match (self.legs.get_mut(leg_idx as usize), src) {
            (Some(Some(leg)), Some(src)) if !trunc => {
                // SAFETY: len ≤ buffer length
                let data = unsafe { std::slice::from_raw_parts(ptr, len) };
                let v = leg.streams[kind].on_receive(src, data, now);
                if v != Verdict::Accept {
                    None
                } else if let Some(o) = leg.bridged {
                    Some(o)
                } else {
                    leg.streams[kind].stats.drop(DropReason::NotBridged);
                    None
                }
            }
            (Some(Some(leg)), _) => {
                leg.streams[kind].stats.drop(if trunc { DropReason::Truncated } else { DropReason::NotRtp });
                None
            }
            _ => None,
        };
        let target = verdict.and_then(|o| match self.legs.get(o as usize) {
            Some(Some(ol)) => Some((ol.streams[kind].destination(), ol.socks[kind])),
            _ => None,
        });
        let Some((Some(dest), out)) = target else {
            if let (Some(_), Some(Some(leg))) = (target, self.legs.get_mut(leg_idx as usize)) {
                leg.streams[kind].stats.drop(DropReason::NoDestination);
            }
            self.arm_recv(s);
            return;
        };
        let (out_fixed, out_fd) = match self.socks.get(out as usize) {
            Some(Some(o)) if !o.closing => (o.fixed, o.fd),
            _ => {
                self.arm_recv(s);
                return;
            }
        };
        let Some(Some(sock)) = self.socks.get_mut(s as usize) else { return };
        let Some(own) = sock.own.as_mut() else { return };
        let nl = to_storage(&dest, &mut own.dest);
        own.out_sock = out;
        let addr = &own.dest as *const _ as *const libc::sockaddr;
        sock.inflight += 1;
        let e = if out_fixed {
            opcode::Send::new(types::Fixed(out), ptr, len as u32).dest_addr(addr).dest_addr_len(nl).build()
        } else {
            opcode::Send::new(types::Fd(out_fd), ptr, len as u32).dest_addr(addr).dest_addr_len(nl).build()
        };
        self.counters.tx += 1;
        self.inline_sends += 1;
        self.push(e.user_data(ud(TAG_SEND_OWN, s, 0)));
    }

    fn on_send_own(&mut self, s: u32, res: i32) {
        let out = match self.socks.get_mut(s as usize) {
            Some(Some(sock)) => {
                sock.inflight = sock.inflight.saturating_sub(1);
                sock.own.as_ref().map(|o| o.out_sock).unwrap_or(NONE)
            }
            _ => return,
        };
        if res < 0 {
            self.count_tx_error(out);
        } else {
            self.count_tx(out, res as u64);
        }
        self.arm_recv(s);
        self.maybe_free(s);
    }

    fn on_recv(&mut self, s: u32, res: i32, flags: u32, now: Instant) {
        let bid = cqueue::buffer_select(flags);
        let more = cqueue::more(flags);
        let multishot = self.cfg.recv_mode == RecvMode::Multishot;
        if let Some(b) = bid {
            if self.pool.valid(b) {
                self.pool.out += 1;
            }
        }
        let Some(Some(sock)) = self.socks.get_mut(s as usize) else {
            if let Some(b) = bid {
                self.pool.recycle(b);
            }
            return;
        };
        if !more {
            sock.armed = false;
            sock.inflight = sock.inflight.saturating_sub(1);
        }
        let closing = sock.closing;
        if res < 0 {
            if let Some(b) = bid {
                self.pool.recycle(b);
            }
            match -res {
                libc::ENOBUFS => {
                    self.counters.enobufs += 1;
                    if !sock.starved && !closing {
                        sock.starved = true;
                        self.starved.push_back(s);
                    }
                }
                libc::ECANCELED => {}
                e => {
                    self.counters.recv_errors += 1;
                    tracing::debug!("relay recv error {e} on socket {s}");
                    if !closing && !more {
                        self.arm_recv(s);
                    }
                }
            }
            self.maybe_free(s);
            return;
        }
        let Some(bid) = bid.filter(|b| self.pool.valid(*b)) else {
            // a zero-length datagram completes without selecting a buffer
            let (l, k) = (sock.leg, sock.kind);
            if !closing && !more {
                self.arm_recv(s);
            }
            if let Some(Some(leg)) = self.legs.get_mut(l as usize) {
                leg.streams[k].stats.drop(DropReason::Short);
            }
            return;
        };
        if closing {
            self.pool.recycle(bid);
            self.maybe_free(s);
            return;
        }
        // locate payload and source
        let (src, off, len, truncated) = if multishot {
            let buf = unsafe { std::slice::from_raw_parts(self.pool.buf(bid), (res as usize).min(self.pool.size)) };
            match types::RecvMsgOut::parse(buf, &sock.meta.hdr) {
                Ok(out) => {
                    let name = out.name_data();
                    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
                    let nl = name.len().min(MS_NAME_LEN);
                    unsafe { std::ptr::copy_nonoverlapping(name.as_ptr(), &mut st as *mut _ as *mut u8, nl) };
                    let src = from_storage(&st, nl as libc::socklen_t);
                    (src, self.ms_payload_off, out.payload_data().len(), out.is_payload_truncated())
                }
                Err(()) => (None, 0, 0, true),
            }
        } else {
            let src = from_storage(&sock.meta.addr, sock.meta.hdr.msg_namelen);
            let trunc = sock.meta.hdr.msg_flags & libc::MSG_TRUNC != 0;
            (src, 0, res as usize, trunc)
        };
        let (leg_idx, kind) = (sock.leg, sock.kind);
        if !more {
            self.arm_recv(s);
        }
        self.counters.rx += 1;
        let Some(Some(leg)) = self.legs.get_mut(leg_idx as usize) else {
            self.pool.recycle(bid);
            return;
        };
        let Some(src) = src else {
            leg.streams[kind].stats.drop(DropReason::NotRtp);
            self.pool.recycle(bid);
            return;
        };
        if truncated {
            leg.streams[kind].stats.drop(DropReason::Truncated);
            self.pool.recycle(bid);
            return;
        }
        // SAFETY: off + len ≤ buffer size (recvmsg wrote at most size bytes)
        let data = unsafe { std::slice::from_raw_parts(self.pool.buf(bid).add(off), len.min(self.pool.size - off)) };
        let verdict = leg.streams[kind].on_receive(src, data, now);
        if leg.timeout_reported && verdict == Verdict::Accept && kind == 0 {
            leg.timeout_reported = false;
        }
        if verdict != Verdict::Accept {
            self.pool.recycle(bid);
            return;
        }
        let Some(other) = leg.bridged else {
            leg.streams[kind].stats.drop(DropReason::NotBridged);
            self.pool.recycle(bid);
            return;
        };
        let (dest, out_sock) = match self.legs.get(other as usize) {
            Some(Some(o)) => (o.streams[kind].destination(), o.socks[kind]),
            _ => (None, NONE),
        };
        let Some(dest) = dest else {
            if let Some(Some(leg)) = self.legs.get_mut(leg_idx as usize) {
                leg.streams[kind].stats.drop(DropReason::NoDestination);
            }
            self.pool.recycle(bid);
            return;
        };
        self.send_buf(out_sock, bid, off, len, dest);
    }

    /// Send pool buffer `bid[off..off+len]` from socket `s` to `dest`.
    #[inline]
    fn send_buf(&mut self, s: u32, bid: u16, off: usize, len: usize, dest: SocketAddr) {
        let Some(Some(sock)) = self.socks.get_mut(s as usize) else {
            self.pool.recycle(bid);
            return;
        };
        if sock.closing {
            self.pool.recycle(bid);
            return;
        }
        sock.inflight += 1;
        let ptr = unsafe { self.pool.buf(bid).add(off) };
        let m = &mut self.send_meta[bid as usize];
        let nl = to_storage(&dest, &mut m.addr);
        let addr = &m.addr as *const _ as *const libc::sockaddr;
        let e = if self.cfg.send_zc {
            let idx = if self.pool.registered { Some(0) } else { None };
            on_fd!(sock, s, |f| opcode::SendZc::new(f, ptr, len as u32).dest_addr(addr).dest_addr_len(nl).buf_index(idx).build())
        } else {
            // IORING_OP_SEND with a destination: no msghdr to copy in
            on_fd!(sock, s, |f| opcode::Send::new(f, ptr, len as u32).dest_addr(addr).dest_addr_len(nl).build())
        };
        self.counters.tx += 1;
        self.inline_sends += 1;
        self.push(e.user_data(ud(TAG_SEND, s, bid)));
    }

    fn maybe_free(&mut self, s: u32) {
        let free = matches!(self.socks.get(s as usize), Some(Some(sock)) if sock.closing && sock.inflight == 0);
        if free {
            if (s as usize) < self.files {
                let _ = self.ring.submitter().register_files_update(s, &[-1]);
            }
            if let Some(slot) = self.socks.get_mut(s as usize) {
                *slot = None; // drops the UdpSocket: fd closed
            }
            self.free_socks.push(s);
        }
    }

    fn run_hold(&mut self, now: Instant) {
        let mut next: Option<Instant> = None;
        let mut i = 0;
        while i < self.holding.len() {
            let l = self.holding[i];
            let Some(Some(leg)) = self.legs.get_mut(l as usize) else {
                self.holding.swap_remove(i);
                continue;
            };
            let Some(p) = leg.playout.as_mut() else {
                self.holding.swap_remove(i);
                continue;
            };
            let s = leg.socks[0];
            let dest = leg.streams[0].destination();
            let mut sent = None;
            if let Some(Some(sock)) = self.socks.get_mut(s as usize) {
                if let Some(h) = sock.hold.as_mut() {
                    if !h.inflight && now >= p.next_due() {
                        if let Some(n) = p.poll(now, &mut h.buf) {
                            if let Some(d) = dest {
                                let nl = to_storage(&d, &mut h.meta.addr);
                                h.meta.link(nl);
                                h.meta.iov.iov_base = h.buf.as_mut_ptr() as *mut libc::c_void;
                                h.meta.iov.iov_len = n;
                                h.inflight = true;
                                sock.inflight += 1;
                                let hdr = &h.meta.hdr as *const libc::msghdr;
                                sent = Some(on_fd!(sock, s, |f| opcode::SendMsg::new(f, hdr).build()).user_data(ud(TAG_HOLD, s, 0)));
                            }
                        }
                    }
                }
            }
            let due = p.next_due();
            leg.hold_seq = p.seq;
            leg.hold_ts = p.ts;
            next = Some(next.map_or(due, |x: Instant| x.min(due)));
            if let Some(e) = sent {
                self.push(e);
            }
            i += 1;
        }
        self.next_hold = next;
    }

    fn tick(&mut self, now: Instant) {
        self.next_tick = now + self.cfg.tick;
        for leg in self.legs.iter_mut().flatten() {
            let Some(t) = leg.media_timeout else { continue };
            if leg.timeout_reported {
                continue;
            }
            let last = leg.streams[0].stats.last_rx.unwrap_or(leg.opened).max(leg.opened);
            let idle = now.saturating_duration_since(last);
            if idle >= t {
                leg.timeout_reported = true;
                let _ = self.events.send(Event::MediaTimeout { leg: leg.id, idle });
            }
        }
    }

    fn drain_commands(&mut self, now: Instant) {
        while let Ok(c) = self.commands.try_recv() {
            self.command(c, now);
        }
    }

    fn command(&mut self, c: Command, now: Instant) {
        match c {
            Command::Open { id, rtp, rtcp, cfg } => self.open_leg(id, rtp, rtcp, cfg, now),
            Command::AttachRtcp { id, rtcp } => self.attach_rtcp(id, rtcp),
            Command::SetPeer { id, rtp, rtcp, strict } => {
                if let Some(leg) = self.leg_mut(id) {
                    leg.streams[0].set_peer(rtp, strict);
                    leg.streams[1].set_peer(rtcp, strict);
                }
            }
            Command::Bridge { a, b } => {
                let (Some(&ia), Some(&ib)) = (self.by_id.get(&a), self.by_id.get(&b)) else { return };
                for (x, y) in [(ia, ib), (ib, ia)] {
                    // unbridge previous partners
                    let prev = self.legs.get(x as usize).and_then(|l| l.as_ref()).and_then(|l| l.bridged);
                    if let Some(p) = prev.filter(|p| *p != y) {
                        if let Some(Some(pl)) = self.legs.get_mut(p as usize) {
                            pl.bridged = None;
                        }
                    }
                    if let Some(Some(l)) = self.legs.get_mut(x as usize) {
                        l.bridged = Some(y);
                        l.playout = None;
                    }
                }
            }
            Command::Unbridge { id } => {
                let Some(&i) = self.by_id.get(&id) else { return };
                let other = self.legs.get_mut(i as usize).and_then(|l| l.as_mut()).and_then(|l| l.bridged.take());
                if let Some(o) = other {
                    if let Some(Some(ol)) = self.legs.get_mut(o as usize) {
                        ol.bridged = None;
                    }
                }
            }
            Command::StartHold { id, audio, pt } => self.start_hold(id, audio, pt, now),
            Command::StopHold { id } => {
                if let Some(leg) = self.leg_mut(id) {
                    leg.playout = None;
                }
            }
            Command::Close { id } => self.close_leg(id),
            Command::Stats { id } => {
                if let Some(leg) = self.leg_mut(id) {
                    let ev = Event::Stats {
                        leg: id,
                        rtp: leg.streams[0].stats.clone(),
                        rtcp: leg.streams[1].stats.clone(),
                        rtp_dest: leg.streams[0].destination(),
                    };
                    let _ = self.events.send(ev);
                } else {
                    let _ = self.events.send(Event::UnknownLeg { leg: id });
                }
            }
            Command::Counters => {
                let mut c = self.counters.clone();
                c.buffers_out = self.pool.out;
                c.starved_now = self.starved.len();
                let _ = self.events.send(Event::Counters(c));
            }
            Command::Shutdown => self.shutdown = true,
        }
    }

    fn leg_mut(&mut self, id: LegId) -> Option<&mut Leg> {
        let i = *self.by_id.get(&id)?;
        self.legs.get_mut(i as usize)?.as_mut()
    }

    fn add_sock(&mut self, sock: UdpSocket, leg: u32, kind: usize) -> u32 {
        let fd = sock.as_raw_fd();
        let mut entry = Sock { sock, fd, leg, kind, armed: false, starved: false, closing: false, fixed: false, inflight: 0, meta: Box::new(MsgMeta::new()), hold: None, own: None };
        if self.cfg.recv_mode == RecvMode::OwnBuffer {
            entry.own = Some(Box::new(OwnBuf { buf: vec![0u8; self.pool.size], dest: unsafe { std::mem::zeroed() }, out_sock: NONE }));
        }
        let i = match self.free_socks.pop() {
            Some(i) => {
                self.socks[i as usize] = Some(entry);
                i
            }
            None => {
                self.socks.push(Some(entry));
                (self.socks.len() - 1) as u32
            }
        };
        if (i as usize) < self.files && self.ring.submitter().register_files_update(i, &[fd]).is_ok() {
            if let Some(Some(sk)) = self.socks.get_mut(i as usize) {
                sk.fixed = true;
            }
        }
        i
    }

    fn open_leg(&mut self, id: LegId, rtp: UdpSocket, rtcp: Option<UdpSocket>, cfg: LegConfig, now: Instant) {
        let li = match self.free_legs.pop() {
            Some(i) => i,
            None => {
                self.legs.push(None);
                (self.legs.len() - 1) as u32
            }
        };
        let s0 = self.add_sock(rtp, li, 0);
        // NONE until `AttachRtcp`: every lookup of a socket index treats it
        // as absent (RTCP for it is dropped as having no socket).
        let s1 = rtcp.map_or(NONE, |r| self.add_sock(r, li, 1));
        let ssrc: u32 = rand::random();
        self.legs[li as usize] = Some(Leg {
            id,
            socks: [s0, s1],
            streams: [StreamState::new(Kind::Rtp, cfg.peer_rtp, cfg.strict), StreamState::new(Kind::Rtcp, cfg.peer_rtcp, cfg.strict)],
            bridged: None,
            playout: None,
            media_timeout: cfg.media_timeout,
            timeout_reported: false,
            opened: now,
            hold_ssrc: ssrc,
            hold_seq: rand::random(),
            hold_ts: rand::random(),
        });
        self.by_id.insert(id, li);
        if self.starved.capacity() < self.socks.len() {
            self.starved.reserve(self.socks.len() - self.starved.len());
        }
        self.arm_recv(s0);
        self.arm_recv(s1);
    }

    /// The deferred RTCP socket of a leg (bound at bridge time).
    fn attach_rtcp(&mut self, id: LegId, rtcp: UdpSocket) {
        let Some(&li) = self.by_id.get(&id) else { return }; // closed meanwhile: the socket drops
        if !matches!(self.legs.get(li as usize), Some(Some(l)) if l.socks[1] == NONE) {
            return;
        }
        let s1 = self.add_sock(rtcp, li, 1);
        if let Some(Some(leg)) = self.legs.get_mut(li as usize) {
            leg.socks[1] = s1;
        }
        if self.starved.capacity() < self.socks.len() {
            self.starved.reserve(self.socks.len() - self.starved.len());
        }
        self.arm_recv(s1);
    }

    fn start_hold(&mut self, id: LegId, audio: HoldAudio, pt: u8, now: Instant) {
        let Some(&li) = self.by_id.get(&id) else { return };
        let Some(Some(leg)) = self.legs.get_mut(li as usize) else { return };
        let p = Playout::new(audio, pt, leg.hold_ssrc, leg.hold_seq, leg.hold_ts, now);
        leg.playout = Some(p);
        leg.bridged = None;
        let s = leg.socks[0];
        if let Some(Some(sock)) = self.socks.get_mut(s as usize) {
            if sock.hold.is_none() {
                sock.hold = Some(Box::new(HoldTx { meta: MsgMeta::new(), buf: [0; HEADER + SAMPLES], inflight: false }));
            }
        }
        if !self.holding.contains(&li) {
            self.holding.push(li);
        }
        self.next_hold = Some(now);
    }

    fn close_leg(&mut self, id: LegId) {
        let Some(li) = self.by_id.remove(&id) else { return };
        let Some(leg) = self.legs.get_mut(li as usize).and_then(|l| l.take()) else { return };
        if let Some(o) = leg.bridged {
            if let Some(Some(ol)) = self.legs.get_mut(o as usize) {
                ol.bridged = None;
            }
        }
        self.free_legs.push(li);
        for s in leg.socks {
            let mut cancel = None;
            if let Some(Some(sock)) = self.socks.get_mut(s as usize) {
                sock.closing = true;
                sock.leg = NONE;
                if sock.armed {
                    // By user_data, not by fd: the kernel finds a request
                    // by user_data in its cancel hash table, while an fd
                    // match walks every pending request. With 10,000
                    // armed sockets the fd walk (io_cancel_req_match) was
                    // ~1 ms of relay CPU per call. A socket has one armed
                    // receive, and its user_data is unique while it lives.
                    let b = types::CancelBuilder::user_data(ud(TAG_RECV, s, 0));
                    cancel = Some(opcode::AsyncCancel2::new(b).build().user_data(ud(TAG_CANCEL, s, 0)));
                }
            }
            if let Some(e) = cancel {
                self.push(e);
            }
            self.maybe_free(s);
        }
        let _ = self.events.send(Event::Closed { leg: id });
    }
}


/// Create a nonblocking eventfd (for waking the relay).
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd we own
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Bind a UDP socket for the relay.
pub(crate) fn bind_udp(ip: IpAddr, port: u16, rcvbuf: usize) -> io::Result<UdpSocket> {
    let domain = if ip.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    s.set_nonblocking(true)?;
    if rcvbuf > 0 {
        let _ = s.set_recv_buffer_size(rcvbuf);
    }
    s.bind(&SocketAddr::new(ip, port).into())?;
    Ok(s.into())
}
