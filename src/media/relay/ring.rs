//! The io_uring relay loop: one ring per shard, the I/O part only. What to
//! do with a packet, a command or the passing time is the leg table's
//! decision (`table.rs`); this file submits and completes.
//!
//! * Every relay socket has exactly one multishot `RECVMSG` armed, with
//!   `BUFFER_SELECT` from the provided buffer ring (`pool.rs`), so an
//!   armed receive holds no buffer until a datagram arrives.
//! * A received buffer is sent on as is (`IORING_OP_SEND` with a
//!   destination): the payload is never copied in user space. The buffer
//!   goes back to the provided ring when the send completes.
//! * All SQEs produced while handling a batch of completions are submitted by
//!   one `io_uring_enter` per loop turn, which also waits: for one completion
//!   beyond the sends it submits (they complete inline), so a forwarded
//!   packet costs one enter, not two.
//! * No allocation and no lock per packet: sockets, relay legs, send headers
//!   and buffers are preallocated; control commands arrive over an mpsc
//!   channel plus an eventfd read kept armed in the ring.
//! * Fairness: a socket whose receive failed for lack of buffers goes into a
//!   FIFO and is re-armed as soon as any buffer returns, so no socket is ever
//!   left without a receive (no socket starves under overload).
//! * Without a provided buffer ring (refused by the kernel) every socket
//!   receives into a buffer of its own instead (`own_buffer`).
//! * The variants measured in bench/RESULTS.md (one-shot receive, `SEND_ZC`,
//!   busy-polling, adaptive spin, kernel batch window) are built only with
//!   the `relay-bench-modes` feature (`bench_modes`).

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use self::own_buffer::OwnBuf;
use super::pool::Pool;
use super::sockaddr::{from_storage, to_storage, zeroed_storage, STORAGE_LEN};
use super::stats::DropReason;
use super::table::{HoldTx, Table, HOLD_FRAME, NO_SOCKET, RTCP, RTP};
use crate::media::{Command, Event, RelayLegConfig, RelayLegId, RecvMode, RelayConfig, RelayCounters};

const TAG_RECV: u64 = 1;
const TAG_SEND: u64 = 2;
const TAG_HOLD: u64 = 3;
const TAG_WAKE: u64 = 4;
const TAG_CANCEL: u64 = 5;
const TAG_TIMER: u64 = 6;
const TAG_SEND_OWN: u64 = 7;
const BGID: u16 = 7;
/// Offset of the payload in a multishot buffer: io_uring_recvmsg_out (16) + name (128).
const MS_PAYLOAD_OFF: usize = 16 + STORAGE_LEN;

type Ring = IoUring<squeue::Entry, cqueue::Entry>;

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

#[cfg(feature = "relay-bench-modes")]
mod bench_modes;
mod own_buffer;

#[inline]
fn ud(tag: u64, sock: u32, bid: u16) -> u64 {
    (tag << 56) | ((sock as u64) << 16) | bid as u64
}
#[inline]
fn ud_split(u: u64) -> (u64, u32, u16) {
    (u >> 56, ((u >> 16) & 0xFF_FFFF_FFFF) as u32, (u & 0xFFFF) as u16)
}

/// Queue one SQE, flushing the submission queue to the kernel while it is full.
#[inline]
fn push_sqe(ring: &mut Ring, counters: &mut RelayCounters, inline_sends: &mut u32, e: &squeue::Entry) {
    loop {
        // SAFETY: every buffer, msghdr and address an SQE points to stays
        // valid until its CQE: pool buffers live as long as the relay (the
        // ring is dropped first), a socket's boxed MsgMeta/hold frame/own
        // buffer until the socket's last operation completed (`maybe_free`),
        // `send_meta[bid]` while buffer `bid` is on a send (one at a time),
        // the wake buffer as long as the relay.
        if unsafe { ring.submission().push(e) }.is_ok() {
            return;
        }
        counters.sq_full_flushes += 1;
        *inline_sends = 0;
        if let Err(err) = ring.submit() {
            tracing::error!("io_uring submit: {err}");
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
        // SAFETY: msghdr, iovec and sockaddr_storage are plain integers and
        // raw pointers: all-zero (null pointers, zero lengths) is valid.
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

/// Outgoing hold-audio frame of one socket (boxed: stable while in flight).
struct HoldBuf {
    meta: MsgMeta,
    buf: [u8; HOLD_FRAME],
    inflight: bool,
}

struct Sock {
    /// Owns the fd (closed when the entry is dropped, after the last CQE).
    #[allow(dead_code)]
    sock: UdpSocket,
    fd: RawFd,
    /// Relay leg index in the table ([`NO_SOCKET`] once the leg is closed).
    leg: u32,
    /// Stream index: [`RTP`] or [`RTCP`].
    kind: usize,
    armed: bool,
    starved: bool,
    closing: bool,
    /// In the registered file table at index = socket index.
    fixed: bool,
    inflight: u32,
    meta: Box<MsgMeta>,
    hold: Option<Box<HoldBuf>>,
    /// `RecvMode::OwnBuffer`: this socket's single receive buffer.
    own: Option<Box<OwnBuf>>,
}

/// The relay of one shard. Built and run on its own thread (see
/// [`crate::media::RelayHandle::spawn`]); not `Send` (it owns raw buffers).
pub struct Relay {
    // Declared before `pool`: the ring is dropped first, which ends every
    // operation and unregisters the buffer ring before the buffers go.
    ring: Ring,
    cfg: RelayConfig,
    pool: Pool,
    send_meta: Box<[MsgMeta]>,
    socks: Vec<Option<Sock>>,
    free_socks: Vec<u32>,
    table: Table,
    starved: VecDeque<u32>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    wake_fd: OwnedFd,
    wake_buf: Box<u64>,
    wake_armed: bool,
    shutdown: bool,
    counters: RelayCounters,
    /// Where the tick leaves the relay-wide traffic for `/metrics`.
    totals: std::sync::Arc<super::stats::RelayTotals>,
    ms_payload_off: usize,
    /// Size of the registered (sparse) file table; 0 if unavailable.
    files: usize,
    /// Sends pushed since the last submit: they complete inline, so their
    /// CQEs are posted by the same `io_uring_enter` that submits them.
    inline_sends: u32,
}

impl Relay {
    pub(crate) fn new(
        cfg: RelayConfig,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<Event>,
        wake_fd: OwnedFd,
        totals: std::sync::Arc<super::stats::RelayTotals>,
    ) -> io::Result<Relay> {
        let entries = cfg.ring_entries.max(64).next_power_of_two();
        let ring = {
            let mut b = IoUring::builder();
            // TASKRUN_FLAG: the kernel sets IORING_SQ_TASKRUN in shared memory
            // when completions wait to be run (polled by the adaptive spin)
            b.setup_single_issuer().setup_coop_taskrun().setup_taskrun_flag().setup_cqsize(entries * 4);
            if !busy_poll(&cfg) {
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
        // SAFETY: the ring memory is a page-aligned mapping of `entries`
        // slots owned by `pool`, which outlives the ring (field order of
        // `Relay`; on an error return both are dropped, ring first).
        match unsafe { ring.submitter().register_buf_ring_with_flags(pool.ring_addr(), pool.entries(), BGID, 0) } {
            Ok(()) => {
                for bid in 0..pool.count() as u16 {
                    pool.recycle(bid);
                }
                pool.publish();
            }
            Err(e) => {
                tracing::warn!("provided buffer ring unavailable ({e}); relay falls back to one buffer per socket");
                cfg.recv_mode = RecvMode::OwnBuffer;
            }
        }
        #[cfg(feature = "relay-bench-modes")]
        bench_modes::register_buffers(&cfg, &ring, &mut pool);
        let send_meta: Box<[MsgMeta]> = (0..pool.count()).map(|_| MsgMeta::new()).collect();
        let mut r = Relay {
            ring,
            pool,
            send_meta,
            socks: Vec::with_capacity(cfg.max_legs * 2),
            free_socks: Vec::with_capacity(cfg.max_legs * 2),
            table: Table::new(cfg.tick, cfg.max_legs, Instant::now()),
            starved: VecDeque::with_capacity(cfg.max_legs * 2),
            commands,
            events,
            wake_fd,
            wake_buf: Box::new(0),
            wake_armed: false,
            shutdown: false,
            counters: RelayCounters::default(),
            totals,
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
        push_sqe(&mut self.ring, &mut self.counters, &mut self.inline_sends, &e);
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
            #[cfg(feature = "relay-bench-modes")]
            RecvMode::OneShot => bench_modes::oneshot_recv(sock, s, self.pool.size()),
            RecvMode::OwnBuffer => {
                let Some(own) = sock.own.as_mut() else { return };
                sock.meta.link(STORAGE_LEN as libc::socklen_t);
                sock.meta.iov.iov_base = own.buf.as_mut_ptr() as *mut libc::c_void;
                sock.meta.iov.iov_len = own.buf.len();
                let hdr = &mut sock.meta.hdr as *mut libc::msghdr;
                on_fd!(sock, s, |f| opcode::RecvMsg::new(f, hdr).build())
            }
            RecvMode::Multishot => {
                sock.meta.link(STORAGE_LEN as libc::socklen_t);
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
        #[cfg(feature = "relay-bench-modes")]
        let mut tuning = bench_modes::Tuning::new();
        loop {
            #[cfg(feature = "relay-bench-modes")]
            let now = self.before_wait(&mut tuning, Instant::now());
            #[cfg(not(feature = "relay-bench-modes"))]
            let now = Instant::now();
            // one enter per turn: the sends submitted now post their CQEs
            // inline, so wait for one completion beyond them
            let extra = if self.cfg.wait_past_sends { self.inline_sends as usize + self.ring.completion().len() } else { 0 };
            self.inline_sends = 0;
            #[cfg(feature = "relay-bench-modes")]
            let r = self.enter_tuned(&mut tuning, now, extra);
            #[cfg(not(feature = "relay-bench-modes"))]
            let r = self.enter(now, extra);
            match r {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)) => {}
                Err(e) => {
                    tracing::error!("io_uring_enter: {e}");
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            self.counters.loop_turns += 1;
            #[cfg(feature = "relay-bench-modes")]
            if self.busy_idle(&mut tuning) {
                continue;
            }
            let now = Instant::now();
            loop {
                let mut n = 0;
                {
                    let mut cq = self.ring.completion();
                    for (slot, c) in batch.iter_mut().zip(&mut cq) {
                        *slot = (c.user_data(), c.result(), c.flags());
                        n += 1;
                    }
                }
                for &(u, res, flags) in batch.iter().take(n) {
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
            if !self.starved.is_empty() && self.pool.out < self.pool.count() {
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
            if self.table.next_hold().is_some_and(|h| now >= h) {
                self.run_hold(now);
            }
            if now >= self.table.next_tick() {
                self.table.on_tick(now);
                self.totals.store(&self.table.traffic());
                self.flush_events();
            }
            if self.shutdown {
                break;
            }
        }
        // close everything: dropping the ring cancels outstanding operations
        // and only then are sockets/buffers dropped (field order irrelevant:
        // ring drop waits for nothing, so drain explicitly)
        for id in self.table.ids() {
            self.close_leg(id);
        }
        self.flush_events();
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

    /// Submit and wait: until the next hold frame is due while hold audio
    /// plays, else for `1 + extra` completions.
    fn enter(&mut self, now: Instant, extra: usize) -> io::Result<usize> {
        if let Some(h) = self.table.next_hold() {
            // hold playout: wake exactly when the next frame is due
            let wait = types::Timespec::from(h.saturating_duration_since(now).max(Duration::from_micros(20)));
            let args = types::SubmitArgs::new().timespec(&wait);
            self.ring.submitter().submit_with_args(1 + extra, &args)
        } else {
            self.ring.submit_and_wait(1 + extra)
        }
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
            self.table.sent(sock.leg, sock.kind, bytes);
        }
    }
    fn count_tx_error(&mut self, s: u32) {
        self.counters.send_errors += 1;
        if let Some(Some(sock)) = self.socks.get(s as usize) {
            self.table.send_failed(sock.leg, sock.kind);
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

    fn on_recv(&mut self, s: u32, res: i32, flags: u32, now: Instant) {
        let bid = cqueue::buffer_select(flags);
        let more = cqueue::more(flags);
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
            self.table.dropped(l, k, DropReason::Short);
            return;
        };
        if closing {
            self.pool.recycle(bid);
            self.maybe_free(s);
            return;
        }
        // locate payload and source
        #[cfg(feature = "relay-bench-modes")]
        let oneshot = self.cfg.recv_mode == RecvMode::OneShot;
        #[cfg(not(feature = "relay-bench-modes"))]
        let oneshot = false;
        let (src, off, len, truncated) = if !oneshot {
            let buf = self.pool.bytes(bid, 0, res as usize);
            match types::RecvMsgOut::parse(buf, &sock.meta.hdr) {
                Ok(out) => {
                    let name = out.name_data();
                    let mut st = zeroed_storage();
                    let nl = name.len().min(STORAGE_LEN);
                    // SAFETY: nl ≤ both the name's length and the size of
                    // `st`; a fresh local cannot overlap the pool buffer.
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
        let (leg, kind) = (sock.leg, sock.kind);
        if !more {
            self.arm_recv(s);
        }
        self.counters.rx += 1;
        let data = self.pool.bytes(bid, off, len);
        match self.table.on_packet(leg, kind, src, truncated, data, now) {
            Some((out_sock, dest)) => self.send_buf(out_sock, bid, off, len, dest),
            None => self.pool.recycle(bid),
        }
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
        let Some(m) = self.send_meta.get_mut(bid as usize) else {
            self.pool.recycle(bid);
            return;
        };
        sock.inflight += 1;
        let ptr = self.pool.buf(bid).wrapping_add(off);
        let nl = to_storage(&dest, &mut m.addr);
        let addr = &m.addr as *const _ as *const libc::sockaddr;
        #[cfg(feature = "relay-bench-modes")]
        let e = if self.cfg.send_zc {
            let idx = if self.pool.registered { Some(0) } else { None };
            on_fd!(sock, s, |f| opcode::SendZc::new(f, ptr, len as u32).dest_addr(addr).dest_addr_len(nl).buf_index(idx).build())
        } else {
            on_fd!(sock, s, |f| opcode::Send::new(f, ptr, len as u32).dest_addr(addr).dest_addr_len(nl).build())
        };
        // IORING_OP_SEND with a destination: no msghdr to copy in
        #[cfg(not(feature = "relay-bench-modes"))]
        let e = on_fd!(sock, s, |f| opcode::Send::new(f, ptr, len as u32).dest_addr(addr).dest_addr_len(nl).build());
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
        let mut io = HoldIo { ring: &mut self.ring, socks: &mut self.socks, counters: &mut self.counters, inline_sends: &mut self.inline_sends };
        self.table.poll_hold(now, &mut io);
    }

    /// Hand the table's notifications to the shard.
    fn flush_events(&mut self) {
        while let Some(ev) = self.table.poll_event() {
            let _ = self.events.send(ev);
        }
    }

    fn drain_commands(&mut self, now: Instant) {
        while let Ok(c) = self.commands.try_recv() {
            self.command(c, now);
            self.flush_events();
        }
    }

    fn command(&mut self, c: Command, now: Instant) {
        match c {
            Command::Open { id, rtp, rtcp, cfg } => self.open_leg(id, rtp, rtcp, cfg, now),
            Command::AttachRtcp { id, rtcp } => self.attach_rtcp(id, rtcp),
            Command::SetPeer { id, rtp, rtcp, strict } => self.table.set_peer(id, rtp, rtcp, strict),
            Command::Bridge { a, b } => self.table.bridge(a, b),
            Command::Unbridge { id } => self.table.unbridge(id),
            Command::StartHold { id, audio, pt } => {
                let Some(s) = self.table.start_hold(id, audio, pt, now) else { return };
                if let Some(Some(sock)) = self.socks.get_mut(s as usize) {
                    if sock.hold.is_none() {
                        sock.hold = Some(Box::new(HoldBuf { meta: MsgMeta::new(), buf: [0; HOLD_FRAME], inflight: false }));
                    }
                }
            }
            Command::StopHold { id } => self.table.stop_hold(id),
            Command::Close { id } => self.close_leg(id),
            Command::Stats { id } => self.table.request_stats(id),
            Command::Counters => {
                let mut c = self.counters.clone();
                c.buffers_out = self.pool.out;
                c.starved_now = self.starved.len();
                let _ = self.events.send(Event::Counters(c));
            }
            Command::Shutdown => self.shutdown = true,
        }
    }

    fn add_sock(&mut self, sock: UdpSocket, leg: u32, kind: usize) -> u32 {
        let fd = sock.as_raw_fd();
        let mut entry = Sock { sock, fd, leg, kind, armed: false, starved: false, closing: false, fixed: false, inflight: 0, meta: Box::new(MsgMeta::new()), hold: None, own: None };
        if self.cfg.recv_mode == RecvMode::OwnBuffer {
            entry.own = Some(Box::new(OwnBuf::new(self.pool.size())));
        }
        let i = match self.free_socks.pop() {
            Some(i) => {
                if let Some(slot) = self.socks.get_mut(i as usize) {
                    *slot = Some(entry);
                }
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

    fn reserve_starved(&mut self) {
        if self.starved.capacity() < self.socks.len() {
            self.starved.reserve(self.socks.len() - self.starved.len());
        }
    }

    fn open_leg(&mut self, id: RelayLegId, rtp: UdpSocket, rtcp: Option<UdpSocket>, cfg: RelayLegConfig, now: Instant) {
        let li = self.table.open(id, &cfg, now);
        let s0 = self.add_sock(rtp, li, RTP);
        self.table.set_socket(li, RTP, s0);
        // NO_SOCKET until `AttachRtcp`: every lookup of a socket index
        // treats it as absent (RTCP for it is dropped as having no socket).
        let s1 = rtcp.map_or(NO_SOCKET, |r| self.add_sock(r, li, RTCP));
        self.table.set_socket(li, RTCP, s1);
        self.reserve_starved();
        self.arm_recv(s0);
        self.arm_recv(s1);
    }

    /// The deferred RTCP socket of a relay leg (bound at bridge time).
    fn attach_rtcp(&mut self, id: RelayLegId, rtcp: UdpSocket) {
        // closed meanwhile, or already attached: the socket drops
        let Some(li) = self.table.rtcp_pending(id) else { return };
        let s1 = self.add_sock(rtcp, li, RTCP);
        self.table.set_socket(li, RTCP, s1);
        self.reserve_starved();
        self.arm_recv(s1);
    }

    fn close_leg(&mut self, id: RelayLegId) {
        let Some(socks) = self.table.close(id) else { return };
        for s in socks {
            let mut cancel = None;
            if let Some(Some(sock)) = self.socks.get_mut(s as usize) {
                sock.closing = true;
                sock.leg = NO_SOCKET;
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
    }
}

/// The ring's side of hold audio: frame buffers of the sockets, sends.
struct HoldIo<'a> {
    ring: &'a mut Ring,
    socks: &'a mut [Option<Sock>],
    counters: &'a mut RelayCounters,
    inline_sends: &'a mut u32,
}

impl HoldTx for HoldIo<'_> {
    fn frame(&mut self, sock: u32) -> Option<&mut [u8; HOLD_FRAME]> {
        let h = self.socks.get_mut(sock as usize)?.as_mut()?.hold.as_mut()?;
        if h.inflight {
            return None;
        }
        Some(&mut h.buf)
    }

    fn send(&mut self, s: u32, dest: SocketAddr, len: usize) {
        let Some(Some(sock)) = self.socks.get_mut(s as usize) else { return };
        let Some(h) = sock.hold.as_mut() else { return };
        let nl = to_storage(&dest, &mut h.meta.addr);
        h.meta.link(nl);
        h.meta.iov.iov_base = h.buf.as_mut_ptr() as *mut libc::c_void;
        h.meta.iov.iov_len = len.min(HOLD_FRAME);
        h.inflight = true;
        sock.inflight += 1;
        let hdr = &h.meta.hdr as *const libc::msghdr;
        let e = on_fd!(sock, s, |f| opcode::SendMsg::new(f, hdr).build()).user_data(ud(TAG_HOLD, s, 0));
        push_sqe(self.ring, self.counters, self.inline_sends, &e);
    }
}

#[cfg(feature = "relay-bench-modes")]
fn busy_poll(cfg: &RelayConfig) -> bool {
    cfg.busy_poll
}
#[cfg(not(feature = "relay-bench-modes"))]
fn busy_poll(_: &RelayConfig) -> bool {
    false
}

/// Create a nonblocking eventfd (for waking the relay).
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes no pointers; the result is checked below.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd that nothing else owns.
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
